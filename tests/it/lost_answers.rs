//! Lost answers: the Erigones fake does the work a request asks for and
//! then cuts the connection, so snapsched never hears that its deletion (or
//! its create) went through. Runs are driven by the real run engine against
//! the fake over loopback, with lost answers injected at random (seeded;
//! `SNAPSCHED_LOST_SEED` replays a sequence).
//!
//! What must hold: every run succeeds (a create whose answer was lost is
//! adopted by name on retry); every snapshot the daemon's own retention
//! deleted is recorded `deleted` with its reason, never `gone`; a snapshot
//! deleted by hand is still recorded `gone`; each run has one record.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use snapsched::clock::Clock;
use snapsched::domain::definition::Source;
use snapsched::domain::{Claim, RecordState, RunState, Target, Trigger};
use snapsched::provider::erigones::{Erigones, ErigonesSettings};
use snapsched::provider::{PollPolicy, Provider};
use snapsched::run::{Ended, RunOptions, Runner};
use snapsched::secret::Secret;
use snapsched_fake_api::erigones::{self as fake, route, FakeErigonesConfig, Fault, FaultKind};
use tokio_util::sync::CancellationToken;

use crate::support::fixtures;

const KEY: &str = "lost-answers-key";
const VM: &str = "web01";
const ROUNDS: usize = 24;

fn provider(base: &str) -> Erigones {
    Erigones::new(ErigonesSettings {
        provider_name: "dc1".to_owned(),
        api_url: base.parse().expect("fake URL"),
        api_key: Secret::new(KEY),
        poll: PollPolicy {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(20),
            timeout: Duration::from_secs(5),
        },
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        max_response_bytes: snapsched::provider::DEFAULT_MAX_RESPONSE_BYTES,
    })
    .expect("provider builds")
}

fn seed() -> u64 {
    std::env::var("SNAPSCHED_LOST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_deletion_the_daemon_made_is_recorded_as_its_own_when_answers_are_lost() {
    let seed = seed();
    eprintln!("lost answers: seed {seed} (SNAPSCHED_LOST_SEED replays it)");
    let mut rng = StdRng::seed_from_u64(seed);
    let fake = fake::start(FakeErigonesConfig {
        api_key: KEY.to_owned(),
        synchronous_create: true,
        ..FakeErigonesConfig::default()
    })
    .await
    .expect("fake Erigones");
    fake.state.add_vm(VM, 1);
    let provider = provider(&fake.base_url);
    let dir = tempfile::tempdir().expect("dir");
    let store = crate::support::db::open(&dir.path().join("snapsched.db")).await;
    let spec = fixtures::spec("dc1", VM, "web").retention(2).build();
    store
        .insert_definition(&spec, Source::Cli, None, Utc::now())
        .await
        .expect("definition");
    let target = Target::Vm(VM.to_owned());
    let base: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().expect("time");

    let mut lost = 0;
    let mut by_hand = None;
    for round in 0..ROUNDS {
        fake.state.advance(Duration::from_secs(60));
        // Lose the answer to the next bulk delete or single delete, now and
        // then; the deletion itself goes through.
        if rng.random_bool(0.5) {
            lost += 1;
            let route = if rng.random_bool(0.7) {
                route::BULK_DELETE
            } else {
                route::DELETE_SNAPSHOT
            };
            fake.state.inject(Fault {
                route: Some(route.to_owned()),
                kind: FaultKind::DropAfterWork,
                times: 1,
            });
        }
        // And now and then the answer to the create: the retry must adopt
        // the snapshot the lost request made, not make a second one.
        if rng.random_bool(0.3) {
            lost += 1;
            fake.state.inject(Fault {
                route: Some(route::CREATE_SNAPSHOT.to_owned()),
                kind: FaultKind::DropAfterWork,
                times: 1,
            });
        }
        let slot = base + chrono::Duration::minutes(round as i64);
        let run = match store
            .claim_run(&spec.identity, slot, Trigger::Schedule, Utc::now())
            .await
            .expect("claim")
        {
            Claim::Claimed(run) => run,
            other => panic!("slot {slot} not claimed: {other:?}"),
        };
        let runner = Runner {
            store: &store,
            provider: &provider,
            spec: &spec,
            target: target.clone(),
            clock: Clock::System,
            options: RunOptions {
                run_timeout: Duration::from_secs(30),
                retry_initial: Duration::from_millis(10),
                retry_max: Duration::from_millis(50),
                ..RunOptions::default()
            },
            shutdown: CancellationToken::new(),
            lease: None,
        };
        let run = match runner.drive(run).await.expect("store works") {
            Ended::Final(run) => run,
            Ended::Suspended(run) => panic!("suspended: {run:?}"),
        };
        assert_eq!(run.state, RunState::Succeeded, "round {round}: {run:?}");
        if round == ROUNDS / 2 {
            // Someone deletes the newest snapshot by hand.
            let listed = provider.list_snapshots(&target, 1).await.expect("listing");
            let newest = listed
                .iter()
                .max_by_key(|s| s.created_at)
                .expect("a snapshot")
                .clone();
            let results = provider
                .delete_snapshots(&target, 1, std::slice::from_ref(&newest))
                .await;
            assert!(results.iter().all(Result::is_ok), "{results:?}");
            by_hand = Some(newest.name);
        }
    }
    // One more prune with no fault settles the last lost answer.
    snapsched::prune::prune(
        &store,
        &provider,
        &spec,
        &target,
        chrono_tz::UTC,
        Utc::now(),
        false,
    )
    .await
    .expect("final prune");

    let by_hand = by_hand.expect("a snapshot was deleted by hand");
    let records = store.snapshot_records(Some("web")).await.expect("records");
    let listed: BTreeSet<String> = provider
        .list_snapshots(&target, 1)
        .await
        .expect("listing")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(listed.len(), 2, "retention 2: {listed:?}");
    assert_eq!(records.len(), ROUNDS, "one record per run: {records:#?}");
    let mut failures = Vec::new();
    for r in &records {
        let expected = if listed.contains(&r.snapshot) {
            RecordState::Present
        } else if r.snapshot == by_hand {
            RecordState::Gone
        } else {
            RecordState::Deleted
        };
        if r.state != expected {
            failures.push(format!(
                "{}: recorded {:?}, expected {expected:?} ({:?})",
                r.snapshot, r.state, r.delete_reason
            ));
        }
        if r.state == RecordState::Deleted
            && !r
                .delete_reason
                .as_deref()
                .is_some_and(|reason| reason.contains("retention"))
        {
            failures.push(format!(
                "{}: deleted without the retention reason: {:?}",
                r.snapshot, r.delete_reason
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "seed {seed}, {lost} lost answers:\n{}",
        failures.join("\n")
    );
    assert!(
        lost > 0,
        "seed {seed}: no answer was lost, nothing was tested"
    );
    store.close().await;
}
