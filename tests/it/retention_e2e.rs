//! Pruning through a real store: the in-memory fake provider for every rule
//! of retention, then end to end through the DigitalOcean and Erigones fakes
//! over loopback HTTP.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use snapsched::domain::definition::DefinitionSpec;
use snapsched::domain::RecordState;
use snapsched::domain::{RemoteSnapshot, Target};
use snapsched::provider::fake::{Call, FakeProvider};
use snapsched::provider::{CreateOutcome, CreateRequest, PollOutcome, Provider, ProviderError};
use snapsched::prune;
use snapsched::run::snapshot_name;
use snapsched::store::Store;
use tempfile::TempDir;

use crate::support::fixtures;

const VM: &str = "vm1.example.com";

struct Env {
    _dir: TempDir,
    store: Store,
    provider: FakeProvider,
}

async fn env() -> Env {
    let dir = TempDir::new().expect("temp dir");
    let store = crate::support::db::open(&dir.path().join("snapsched.db")).await;
    Env {
        _dir: dir,
        store,
        provider: FakeProvider::default(),
    }
}

fn spec_on(provider: &str, target: &str, name: &str, retention: u32) -> DefinitionSpec {
    fixtures::spec(provider, target, name)
        .retention(retention)
        .build()
}

fn spec(name: &str, retention: u32) -> DefinitionSpec {
    spec_on("fake", VM, name, retention)
}

fn vm() -> Target {
    Target::Vm(VM.to_owned())
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("valid time")
}

fn day(n: i64) -> DateTime<Utc> {
    t0() + TimeDelta::days(n)
}

async fn listed(p: &FakeProvider, name: &str) -> RemoteSnapshot {
    p.list_snapshots(&vm(), 1)
        .await
        .expect("listing")
        .into_iter()
        .find(|s| s.name == name)
        .expect("snapshot listed")
}

/// A snapshot snapsched made for `spec` at `at`: on the disk and recorded.
async fn made(env: &Env, spec: &DefinitionSpec, at: DateTime<Utc>) -> String {
    let name = snapshot_name(&spec.identity.name, at);
    env.provider.insert(&vm(), 1, &name, at);
    let snap = listed(&env.provider, &name).await;
    env.store
        .record_snapshot(&spec.identity, &snap, None, false, at)
        .await
        .expect("recorded");
    name
}

async fn states(env: &Env, spec: &DefinitionSpec) -> BTreeMap<String, RecordState> {
    env.store
        .snapshot_records(Some(&spec.identity.name))
        .await
        .expect("records")
        .into_iter()
        .filter(|r| r.identity == spec.identity)
        .map(|r| (r.snapshot, r.state))
        .collect()
}

fn deleted_names(report: &prune::PruneReport) -> Vec<String> {
    let mut v: Vec<String> = report
        .deletions
        .iter()
        .map(|d| d.snapshot.name.clone())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn prune_never_touches_manual_or_other_definitions_snapshots() {
    let env = env().await;
    let daily = spec("daily", 2);
    let weekly = spec("weekly", 1);
    env.provider.insert(&vm(), 1, "before upgrade", day(-100));
    env.provider
        .insert(&vm(), 1, "daily-20260101_000000-copy", day(-90));
    env.provider
        .insert(&vm(), 1, "daily2-20251201_000000", day(-80));
    // Another definition's snapshot whose name fits `daily`'s pattern (a
    // definition renamed by hand): recorded for weekly, never adopted.
    env.provider
        .insert(&vm(), 1, "daily-20251101_000000", day(-70));
    let foreign = listed(&env.provider, "daily-20251101_000000").await;
    env.store
        .record_snapshot(&weekly.identity, &foreign, None, false, day(-70))
        .await
        .expect("recorded");
    let weekly_own = made(&env, &weekly, day(-60)).await;
    // Same name pattern on another disk: a different listing altogether.
    env.provider
        .insert(&vm(), 2, "daily-20251201_000000", day(-50));

    let mut own = Vec::new();
    for d in 0..5 {
        own.push(made(&env, &daily, day(d)).await);
    }

    let report = prune::after_success(&env.store, &env.provider, &daily, &vm(), Tz::UTC, day(5))
        .await
        .expect("prune succeeds");
    assert_eq!(deleted_names(&report), own[..3].to_vec());
    assert!(report.adopted.is_empty(), "{:?}", report.adopted);

    let left = env.provider.names(&vm(), 1);
    for keep in [
        "before upgrade",
        "daily-20260101_000000-copy",
        "daily2-20251201_000000",
        "daily-20251101_000000",
        weekly_own.as_str(),
        own[3].as_str(),
        own[4].as_str(),
    ] {
        assert!(
            left.iter().any(|n| n == keep),
            "{keep} was deleted: {left:?}"
        );
    }
    assert_eq!(left.len(), 7);
    assert_eq!(env.provider.names(&vm(), 2).len(), 1);

    let st = states(&env, &daily).await;
    for name in &own[..3] {
        assert_eq!(st[name], RecordState::Deleted);
    }
    assert_eq!(st[&own[4]], RecordState::Present);
    let weekly_states = states(&env, &weekly).await;
    assert!(weekly_states.values().all(|s| *s == RecordState::Present));
}

#[tokio::test]
async fn a_lost_database_adopts_exact_names_only_and_prunes_them() {
    let env = env().await;
    let daily = spec("daily", 3);
    for d in 0..5 {
        env.provider
            .insert(&vm(), 1, &snapshot_name("daily", day(d)), day(d));
    }
    env.provider
        .insert(&vm(), 1, "daily-20261341_000000", day(-10));
    env.provider
        .insert(&vm(), 1, "daily-20260101_000000-copy", day(-10));

    let report = prune::after_success(&env.store, &env.provider, &daily, &vm(), Tz::UTC, day(5))
        .await
        .expect("prune succeeds");
    let mut adopted: Vec<&str> = report.adopted.iter().map(|s| s.name.as_str()).collect();
    adopted.sort_unstable();
    assert_eq!(
        adopted,
        (0..5)
            .map(|d| snapshot_name("daily", day(d)))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        deleted_names(&report),
        vec![
            snapshot_name("daily", day(0)),
            snapshot_name("daily", day(1))
        ]
    );
    let records = env
        .store
        .snapshot_records(Some("daily"))
        .await
        .expect("records");
    assert_eq!(records.len(), 5);
    assert!(records.iter().all(|r| r.adopted));
    assert_eq!(
        records
            .iter()
            .filter(|r| r.state == RecordState::Deleted)
            .count(),
        2
    );
    let left = env.provider.names(&vm(), 1);
    assert!(left.contains(&"daily-20261341_000000".to_owned()));
    assert!(left.contains(&"daily-20260101_000000-copy".to_owned()));
    assert_eq!(left.len(), 5);
}

#[tokio::test]
async fn lowering_retention_from_30_to_3_prunes_the_27_oldest_at_the_next_prune() {
    let env = env().await;
    let mut daily = spec("daily", 30);
    let mut own = Vec::new();
    for d in 0..30 {
        own.push(made(&env, &daily, day(d)).await);
    }
    let report = prune::after_success(&env.store, &env.provider, &daily, &vm(), Tz::UTC, day(30))
        .await
        .expect("prune succeeds");
    assert!(report.deletions.is_empty());
    assert_eq!(env.provider.calls(Call::Delete), 0);

    daily.retention = 3;
    let report = prune::after_success(&env.store, &env.provider, &daily, &vm(), Tz::UTC, day(30))
        .await
        .expect("prune succeeds");
    assert_eq!(deleted_names(&report), own[..27].to_vec());
    assert_eq!(env.provider.names(&vm(), 1), own[27..].to_vec());
    let records = env
        .store
        .snapshot_records(Some("daily"))
        .await
        .expect("records");
    let deleted: Vec<_> = records
        .iter()
        .filter(|r| r.state == RecordState::Deleted)
        .collect();
    assert_eq!(deleted.len(), 27);
    assert!(deleted
        .iter()
        .all(|r| r.delete_reason.as_deref() == Some("beyond retention 3")));
    assert_eq!(env.provider.calls(Call::Delete), 1);
}

#[tokio::test]
async fn a_failed_listing_prunes_nothing_and_says_why() {
    let env = env().await;
    let daily = spec("daily", 1);
    for d in 0..4 {
        made(&env, &daily, day(d)).await;
    }
    env.provider.fail_next(
        Call::List,
        ProviderError::transient("listing stopped at page 2 of 3"),
    );
    let err = prune::after_success(&env.store, &env.provider, &daily, &vm(), Tz::UTC, day(4))
        .await
        .expect_err("prune fails");
    let text = format!("{err:#}");
    assert!(text.contains("nothing was pruned"), "{text}");
    assert!(text.contains("page 2 of 3"), "{text}");
    assert_eq!(env.provider.calls(Call::Delete), 0);
    assert_eq!(env.provider.names(&vm(), 1).len(), 4);
    assert!(states(&env, &daily)
        .await
        .values()
        .all(|s| *s == RecordState::Present));
}

#[tokio::test]
async fn a_snapshot_deleted_by_hand_is_marked_gone_and_not_counted() {
    let env = env().await;
    let daily = spec("daily", 3);
    let mut own = Vec::new();
    for d in 0..4 {
        own.push(made(&env, &daily, day(d)).await);
    }
    // Someone deletes the second newest in the provider's console.
    let by_hand = listed(&env.provider, &own[2]).await;
    let results = env.provider.delete_snapshots(&vm(), 1, &[by_hand]).await;
    assert!(results.iter().all(Result::is_ok));

    let report = prune::after_success(&env.store, &env.provider, &daily, &vm(), Tz::UTC, day(4))
        .await
        .expect("prune succeeds");
    assert_eq!(report.gone, vec![own[2].clone()]);
    // Three remain, which is the retention: nothing more is deleted.
    assert!(report.deletions.is_empty(), "{:?}", report.deletions);
    let st = states(&env, &daily).await;
    assert_eq!(st[&own[2]], RecordState::Gone);
    assert_eq!(
        env.store.owned_count(&daily.identity).await.expect("count"),
        3
    );
}

#[tokio::test]
async fn max_age_deletes_within_the_count_but_never_the_newest() {
    let env = env().await;
    let mut daily = spec("daily", 0);
    daily.max_age = Some(Duration::from_secs(7 * 86_400));
    let mut own = Vec::new();
    for d in [0, 2, 9, 10] {
        own.push(made(&env, &daily, day(d)).await);
    }
    let report = prune::after_success(&env.store, &env.provider, &daily, &vm(), Tz::UTC, day(11))
        .await
        .expect("prune succeeds");
    assert_eq!(deleted_names(&report), own[..2].to_vec());
    let records = env
        .store
        .snapshot_records(Some("daily"))
        .await
        .expect("records");
    assert!(records
        .iter()
        .filter(|r| r.state == RecordState::Deleted)
        .all(|r| r.delete_reason.as_deref() == Some("older than max_age 7d")));

    // Long after the last snapshot: all are too old, the newest stays.
    let report = prune::after_success(&env.store, &env.provider, &daily, &vm(), Tz::UTC, day(100))
        .await
        .expect("prune succeeds");
    assert_eq!(deleted_names(&report), vec![own[2].clone()]);
    assert_eq!(env.provider.names(&vm(), 1), vec![own[3].clone()]);
}

#[tokio::test]
async fn retention_zero_keeps_everything() {
    let env = env().await;
    let daily = spec("daily", 0);
    for d in 0..40 {
        made(&env, &daily, day(d)).await;
    }
    let report = prune::after_success(&env.store, &env.provider, &daily, &vm(), Tz::UTC, day(40))
        .await
        .expect("prune succeeds");
    assert!(report.deletions.is_empty());
    assert_eq!(env.provider.names(&vm(), 1).len(), 40);
    assert_eq!(env.provider.calls(Call::Delete), 0);
}

#[tokio::test]
async fn a_dry_run_deletes_and_records_nothing() {
    let env = env().await;
    let daily = spec("daily", 2);
    for d in 0..3 {
        made(&env, &daily, day(d)).await;
    }
    // One more that only the name rule would adopt.
    env.provider
        .insert(&vm(), 1, &snapshot_name("daily", day(-5)), day(-5));
    let report = prune::prune(
        &env.store,
        &env.provider,
        &daily,
        &vm(),
        Tz::UTC,
        day(3),
        true,
    )
    .await
    .expect("dry run succeeds");
    assert!(report.dry_run);
    assert_eq!(report.planned_deletions(), 2);
    assert_eq!(report.adopted.len(), 1);
    assert!(report.deletions.is_empty());
    assert_eq!(env.provider.calls(Call::Delete), 0);
    assert_eq!(env.provider.names(&vm(), 1).len(), 4);
    let records = env
        .store
        .snapshot_records(Some("daily"))
        .await
        .expect("records");
    assert_eq!(records.len(), 3, "a dry run recorded an adoption");
    assert!(records.iter().all(|r| r.state == RecordState::Present));
}

#[tokio::test]
async fn a_failed_deletion_is_an_error_and_leaves_the_snapshot_recorded_present() {
    let env = env().await;
    let daily = spec("daily", 1);
    let mut own = Vec::new();
    for d in 0..3 {
        own.push(made(&env, &daily, day(d)).await);
    }
    env.provider
        .fail_next(Call::Delete, ProviderError::transient("HTTP 503"));
    let err = prune::after_success(&env.store, &env.provider, &daily, &vm(), Tz::UTC, day(3))
        .await
        .expect_err("deletions failed");
    assert!(
        format!("{err:#}").contains("2 of 2 deletions failed"),
        "{err:#}"
    );
    assert!(states(&env, &daily)
        .await
        .values()
        .all(|s| *s == RecordState::Present));

    // The next prune deletes them.
    let report = prune::after_success(&env.store, &env.provider, &daily, &vm(), Tz::UTC, day(3))
        .await
        .expect("prune succeeds");
    assert_eq!(deleted_names(&report), own[..2].to_vec());
}

#[tokio::test]
async fn deleting_all_of_a_definitions_snapshots_spares_everything_else() {
    let env = env().await;
    let daily = spec("daily", 30);
    let weekly = spec("weekly", 30);
    env.provider.insert(&vm(), 1, "manual", day(-1));
    let w = made(&env, &weekly, day(0)).await;
    for d in 0..3 {
        made(&env, &daily, day(d)).await;
    }
    let report = prune::delete_all_snapshots(&env.store, &env.provider, &daily, &vm(), day(3))
        .await
        .expect("delete succeeds");
    assert_eq!(report.deletions.len(), 3);
    assert!(report.check().is_ok());
    assert_eq!(env.provider.names(&vm(), 1), vec!["manual".to_owned(), w]);
    let records = env
        .store
        .snapshot_records(Some("daily"))
        .await
        .expect("records");
    assert!(records.iter().all(|r| r.state == RecordState::Deleted
        && r.delete_reason.as_deref() == Some("definition removed with --delete-snapshots")));
}

mod digitalocean_e2e {
    use super::*;
    use snapsched::clock::ManualClock;
    use snapsched::provider::digitalocean::{DigitalOcean, DigitalOceanSettings};
    use snapsched::provider::ratelimit::RateLimiter;
    use snapsched::secret::Secret;
    use snapsched_fake_api::digitalocean::{FakeConfig, FakeDigitalOcean, FakeHandle, Resource};

    const TOKEN: &str = "dop_v1_retention_test_token";
    const DROPLET: u64 = 3164444;

    async fn create(p: &DigitalOcean, fake: &FakeHandle, req: &CreateRequest) -> RemoteSnapshot {
        let op = match p.create_snapshot(req).await.expect("create accepted") {
            CreateOutcome::Done(s) => return s,
            CreateOutcome::Pending(op) => op,
        };
        for _ in 0..20 {
            fake.advance(Duration::from_secs(60));
            if let PollOutcome::Done(s) = p.poll(req, &op).await.expect("poll") {
                return s;
            }
        }
        panic!("action {} still pending after 20 fake minutes", op.id);
    }

    #[tokio::test]
    async fn manual_snapshots_on_the_same_droplet_are_never_deleted() {
        let fake = FakeDigitalOcean::start(FakeConfig {
            token: TOKEN.to_owned(),
            ..FakeConfig::default()
        })
        .await
        .expect("fake DigitalOcean starts");
        fake.add_droplet(DROPLET, "web-01");
        let now = fake.now();
        let manual = [
            ("before upgrade", 400),
            ("web-01-manual", 300),
            ("daily-20240101_000000-keep", 200),
        ];
        for (name, days) in manual {
            fake.add_snapshot(
                Resource::Droplet(DROPLET),
                name,
                now - TimeDelta::days(days),
            );
        }
        let mut settings = DigitalOceanSettings::new("do", Secret::new(TOKEN));
        settings.api_url = fake.url().parse().expect("fake URL parses");
        let limiter = Arc::new(RateLimiter::with_clock(
            settings.limits,
            Arc::new(ManualClock::new()),
        ));
        let p = DigitalOcean::with_limiter(settings, limiter).expect("provider builds");

        let dir = TempDir::new().expect("temp dir");
        let store = crate::support::db::open(&dir.path().join("s.db")).await;
        let target = Target::Droplet(DROPLET);
        let daily = spec_on("do", &target.to_string(), "daily", 2);

        let mut own = Vec::new();
        for _ in 0..4 {
            fake.advance(Duration::from_secs(86_400));
            let slot = fake.now();
            let req = CreateRequest {
                target: target.clone(),
                disk_id: 1,
                name: snapshot_name("daily", slot),
                note: "snapsched: definition daily".to_owned(),
                fsfreeze: false,
                tags: Vec::new(),
                may_exist: false,
            };
            let snap = create(&p, &fake, &req).await;
            store
                .record_snapshot(&daily.identity, &snap, None, false, slot)
                .await
                .expect("recorded");
            own.push(snap.name.clone());
            prune::after_success(&store, &p, &daily, &target, Tz::UTC, fake.now())
                .await
                .expect("prune succeeds");
        }

        let mut left: Vec<String> = fake
            .snapshots_of(Resource::Droplet(DROPLET))
            .into_iter()
            .map(|s| s.name)
            .collect();
        left.sort();
        let mut expected: Vec<String> = manual.iter().map(|(n, _)| n.to_string()).collect();
        expected.extend(own[2..].iter().cloned());
        expected.sort();
        assert_eq!(left, expected);
        let v = fake.contract_violations();
        assert!(v.is_empty(), "contract violations: {v:#?}");
    }
}

mod erigones_e2e {
    use super::*;
    use snapsched::provider::erigones::{Erigones, ErigonesSettings};
    use snapsched::provider::PollPolicy;
    use snapsched::secret::Secret;
    use snapsched_fake_api::erigones::{self as fake, FakeErigonesConfig, FakeSnapshot};

    const KEY: &str = "es-retention-test-key";
    const HOST: &str = "web01.example.com";

    #[tokio::test]
    async fn manual_and_other_snapshots_on_the_same_disk_are_never_deleted() {
        let fake = fake::start(FakeErigonesConfig {
            api_key: KEY.to_owned(),
            ..FakeErigonesConfig::default()
        })
        .await
        .expect("fake Erigones starts");
        fake.state.add_vm(HOST, 2);
        let now = fake.state.now();
        fake.state.add_snapshot(
            HOST,
            FakeSnapshot::manual("backup1", 1, now - TimeDelta::days(30)),
        );
        fake.state.add_snapshot(
            HOST,
            FakeSnapshot::auto(
                "hourly-20251201_000000",
                1,
                "hourly",
                now - TimeDelta::days(20),
            ),
        );
        // Our name on the other disk: another listing, never touched.
        fake.state.add_snapshot(
            HOST,
            FakeSnapshot::manual("daily-20251201_000000", 2, now - TimeDelta::days(20)),
        );
        let p = Erigones::new(ErigonesSettings {
            provider_name: "dc1".to_owned(),
            api_url: url::Url::parse(&fake.base_url).expect("fake url parses"),
            api_key: Secret::new(KEY),
            poll: PollPolicy {
                initial: Duration::from_millis(2),
                max: Duration::from_millis(20),
                timeout: Duration::from_secs(2),
            },
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            max_response_bytes: snapsched::provider::DEFAULT_MAX_RESPONSE_BYTES,
        })
        .expect("provider builds");

        let dir = TempDir::new().expect("temp dir");
        let store = crate::support::db::open(&dir.path().join("s.db")).await;
        let target = Target::Vm(HOST.to_owned());
        let daily = spec_on("dc1", HOST, "daily", 2);

        let mut own = Vec::new();
        for _ in 0..4 {
            fake.state.advance(Duration::from_secs(86_400));
            let req = CreateRequest {
                target: target.clone(),
                disk_id: 1,
                name: snapshot_name("daily", fake.state.now()),
                note: "snapsched: definition daily".to_owned(),
                fsfreeze: false,
                tags: Vec::new(),
                may_exist: false,
            };
            let op = match p.create_snapshot(&req).await.expect("create accepted") {
                CreateOutcome::Done(s) => Err(s),
                CreateOutcome::Pending(op) => Ok(op),
            };
            let snap = match op {
                Err(s) => s,
                Ok(op) => {
                    let mut done = None;
                    for _ in 0..10 {
                        fake.state.advance(Duration::from_secs(20));
                        if let PollOutcome::Done(s) = p.poll(&req, &op).await.expect("poll") {
                            done = Some(s);
                            break;
                        }
                    }
                    done.expect("task done within 200 fake seconds")
                }
            };
            store
                .record_snapshot(&daily.identity, &snap, None, false, fake.state.now())
                .await
                .expect("recorded");
            own.push(snap.name.clone());
            prune::after_success(&store, &p, &daily, &target, Tz::UTC, fake.state.now())
                .await
                .expect("prune succeeds");
        }

        let mut disk1: Vec<String> = fake
            .state
            .snapshots(HOST, 1)
            .into_iter()
            .map(|s| s.name)
            .collect();
        disk1.sort();
        let mut expected = vec!["backup1".to_owned(), "hourly-20251201_000000".to_owned()];
        expected.extend(own[2..].iter().cloned());
        expected.sort();
        assert_eq!(disk1, expected);
        assert_eq!(fake.state.snapshots(HOST, 2).len(), 1);
    }
}

#[tokio::test]
async fn a_dry_run_shows_the_tier_that_keeps_each_snapshot() {
    let env = env().await;
    let mut tiered = spec("daily", 0);
    tiered.keep.daily = 2;
    for d in 0..4 {
        made(&env, &tiered, day(d)).await;
    }
    let report = prune::prune(
        &env.store,
        &env.provider,
        &tiered,
        &vm(),
        Tz::UTC,
        day(4),
        true,
    )
    .await
    .expect("dry run succeeds");
    let reasons: Vec<(bool, String)> = report
        .decisions
        .iter()
        .map(|d| (d.keep, snapsched::retention::join_reasons(&d.reasons)))
        .collect();
    assert_eq!(
        reasons,
        [
            (false, "kept by no rule (daily 2)".to_owned()),
            (false, "kept by no rule (daily 2)".to_owned()),
            (true, "daily 2/2".to_owned()),
            (true, "newest ready snapshot, daily 1/2".to_owned()),
        ]
    );
    assert_eq!(env.provider.calls(Call::Delete), 0);
}
