//! The store on both backends: every test runs on a fresh SQLite file and,
//! when `SNAPSCHED_TEST_POSTGRES_URL` names a server, on a fresh schema of
//! it too. A URL whose server does not answer fails the tests.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tempfile::TempDir;

use super::runs::Update;
use super::*;
use crate::domain::definition::{DefinitionSpec, RawDefinition, Source};
use crate::domain::ProviderKind;
use crate::domain::{Claim, Trigger};

const URL_VAR: &str = "SNAPSCHED_TEST_POSTGRES_URL";

fn server() -> Option<PgConnectOptions> {
    let url = std::env::var(URL_VAR).ok().filter(|u| !u.is_empty())?;
    Some(PgConnectOptions::from_str(&url).expect("SNAPSCHED_TEST_POSTGRES_URL parses"))
}

/// Run `sql` on the test server outside any store.
async fn admin(server: &PgConnectOptions, sql: &str) {
    let mut conn = server
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot reach the PostgreSQL server of {URL_VAR}: {e}"));
    sqlx::raw_sql(sql)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    conn.close().await.ok();
}

/// A new, empty schema on the test server (named so that the integration
/// suite's sweep drops it once this process has exited).
async fn fresh_schema(server: &PgConnectOptions) -> (String, PgConnectOptions) {
    let name = format!("t_{}_{:016x}", std::process::id(), rand::random::<u64>());
    admin(server, &format!("CREATE SCHEMA \"{name}\"")).await;
    let options = server.clone().options([("search_path", name.as_str())]);
    (name, options)
}

/// A fresh location on each configured backend, with what keeps it alive.
async fn locations() -> Vec<(Location, Option<TempDir>)> {
    let dir = TempDir::new().expect("temp dir");
    let mut out = vec![(Location::Sqlite(dir.path().join("s.db")), Some(dir))];
    if let Some(server) = server() {
        let (_, options) = fresh_schema(&server).await;
        out.push((Location::Postgres(Box::new(options)), None));
    }
    out
}

/// A fresh store on each configured backend.
async fn stores() -> Vec<(Store, Option<TempDir>)> {
    let mut out = Vec::new();
    for (location, dir) in locations().await {
        let store = Store::connect(&location)
            .await
            .unwrap_or_else(|e| panic!("{location}: {e}"));
        out.push((store, dir));
    }
    out
}

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, h, m, 0)
        .single()
        .expect("valid time")
}

fn spec(name: &str, target: &str) -> DefinitionSpec {
    RawDefinition {
        name: name.into(),
        provider: "fake".into(),
        target: target.into(),
        schedule: Some("*/5 * * * *".into()),
        timezone: Some("Europe/Bratislava".into()),
        retention: Some(3),
        desc: Some("a \"quoted\" description".into()),
        fsfreeze: Some(true),
        max_age: Some("1d".into()),
        tags: Some(vec!["db".into(), "prod".into()]),
        ..RawDefinition::default()
    }
    .validate(ProviderKind::Fake)
    .expect("valid definition")
}

fn claimed(c: &Claim) -> &Run {
    match c {
        Claim::Claimed(run) => run,
        other => panic!("not claimed: {other:?}"),
    }
}

use crate::domain::Run;

#[tokio::test]
async fn a_claim_queued_behind_another_write_is_stamped_when_it_writes() {
    let dir = TempDir::new().expect("temp dir");
    let store = Store::open(&dir.path().join("s.db")).await.expect("opens");
    let Pool::Sqlite(_, writer) = &store.pool else {
        unreachable!("a file is a SQLite store")
    };
    let (clock, stepper) = crate::clock::Clock::stepped(at(5, 0));
    let id = spec("daily", "vm1").identity;
    // Another write holds the writer; the claim queues behind it.
    let other = store.pool.begin_write().await.expect("begins");
    let claim = {
        let (store, id) = (store.clone(), id.clone());
        tokio::spawn(async move {
            store
                .claim_runs_now(&[(&id, at(5, 0), Trigger::Schedule)], clock)
                .await
        })
    };
    while writer.queued() == 0 {
        tokio::task::yield_now().await;
    }
    // An hour passes on the claim's clock while it waits.
    stepper.step(chrono::Duration::hours(1));
    other.commit().await.expect("commits");
    let (claims, stamped) = claim.await.expect("joins").expect("claims");
    assert!(
        stamped >= at(6, 0),
        "stamped {stamped} before it could write"
    );
    let run = claimed(&claims[0]);
    let stored = store.get_run(run.id).await.expect("reads").expect("stored");
    assert_eq!(stored.created_at, run.created_at);
    assert!(
        stored.created_at >= at(6, 0),
        "stored {}",
        stored.created_at
    );
}

#[tokio::test]
async fn a_batch_claims_across_statements_and_names_taken_and_busy_slots() {
    for (store, _dir) in stores().await {
        let b = store.backend();
        // More than one statement's worth of rows on either backend.
        let ids: Vec<Identity> = (0..600)
            .map(|i| spec("daily", &format!("vm{i:03}")).identity)
            .collect();
        let first: Vec<_> = ids
            .iter()
            .map(|id| (id, at(5, 0), Trigger::Schedule))
            .collect();
        let claims = store.claim_runs(&first, at(5, 0)).await.expect("claims");
        assert_eq!(claims.len(), 600, "{b:?}");
        for (claim, id) in claims.iter().zip(&ids) {
            let run = claimed(claim);
            assert_eq!(&run.identity, id, "{b:?}: claims answer in order");
            assert_eq!(run.slot, at(5, 0));
            assert_eq!(run.state, RunState::Pending);
            assert_eq!(run.owner_pid, Some(std::process::id()));
            // The claim builds the run from what it bound: it must be the
            // row as stored, field for field.
            let stored = store.get_run(run.id).await.expect("reads").expect("stored");
            assert_eq!(run, &stored, "{b:?}");
        }
        // The same slots again: taken. A later slot: busy with the first.
        let again: Vec<_> = ids[..2]
            .iter()
            .map(|id| (id, at(5, 0), Trigger::Schedule))
            .chain([(&ids[2], at(5, 5), Trigger::Schedule)])
            .collect();
        let claims = store.claim_runs(&again, at(5, 5)).await.expect("claims");
        assert!(matches!(claims[0], Claim::AlreadyRan), "{b:?}: {claims:?}");
        assert!(matches!(claims[1], Claim::AlreadyRan), "{b:?}: {claims:?}");
        match &claims[2] {
            Claim::Busy(run) => assert_eq!(run.slot, at(5, 0), "{b:?}"),
            other => panic!("{b:?}: not busy: {other:?}"),
        }
        // Two slots of one definition in one batch: the second finds the
        // first in flight.
        let fresh = spec("hourly", "vm-x").identity;
        let claims = store
            .claim_runs(
                &[
                    (&fresh, at(6, 0), Trigger::Schedule),
                    (&fresh, at(7, 0), Trigger::Catchup),
                ],
                at(7, 0),
            )
            .await
            .expect("claims");
        claimed(&claims[0]);
        assert!(
            matches!(&claims[1], Claim::Busy(r) if r.slot == at(6, 0)),
            "{b:?}"
        );
        // New slots between taken ones, in one statement: each new run is
        // the row as stored.
        let mixed_ids: Vec<Identity> = (0..5)
            .map(|i| spec("mixed", &format!("vm-m{i}")).identity)
            .collect();
        let taken = store
            .claim_runs(
                &[
                    (&mixed_ids[1], at(8, 0), Trigger::Schedule),
                    (&mixed_ids[3], at(8, 0), Trigger::Schedule),
                ],
                at(8, 0),
            )
            .await
            .expect("claims");
        assert_eq!(taken.len(), 2);
        let mixed: Vec<_> = mixed_ids
            .iter()
            .map(|id| (id, at(8, 0), Trigger::Manual))
            .collect();
        let claims = store.claim_runs(&mixed, at(8, 1)).await.expect("claims");
        for (i, (claim, id)) in claims.iter().zip(&mixed_ids).enumerate() {
            if i % 2 == 1 {
                assert!(matches!(claim, Claim::AlreadyRan), "{b:?}: {claim:?}");
                continue;
            }
            let run = claimed(claim);
            assert_eq!(&run.identity, id, "{b:?}");
            assert_eq!(run.trigger, Trigger::Manual, "{b:?}");
            let stored = store.get_run(run.id).await.expect("reads").expect("stored");
            assert_eq!(run, &stored, "{b:?}");
        }
        store.close().await;
    }
}

/// Slots asked in any order are inserted in the order of the runs indexes
/// (identity, then slot), across statements, and answered in the order
/// asked: the new ids ascend with the identity, and every run is its row.
#[tokio::test]
async fn a_batch_in_any_order_is_inserted_in_index_order_and_answered_as_asked() {
    for (store, _dir) in stores().await {
        let b = store.backend();
        let ids: Vec<Identity> = (0..600)
            .map(|i| spec("daily", &format!("vm{i:03}")).identity)
            .collect();
        // Taken before: every 7th slot.
        let taken: Vec<_> = ids
            .iter()
            .step_by(7)
            .map(|id| (id, at(5, 0), Trigger::Schedule))
            .collect();
        store.claim_runs(&taken, at(5, 0)).await.expect("claims");
        // Asked in an order far from the index's: odd ones descending,
        // then even ones ascending.
        let asked: Vec<&Identity> = ids
            .iter()
            .enumerate()
            .rev()
            .filter(|(i, _)| i % 2 == 1)
            .chain(ids.iter().enumerate().filter(|(i, _)| i % 2 == 0))
            .map(|(_, id)| id)
            .collect();
        let slots: Vec<_> = asked
            .iter()
            .map(|id| (*id, at(5, 0), Trigger::Schedule))
            .collect();
        let claims = store.claim_runs(&slots, at(5, 1)).await.expect("claims");
        assert_eq!(claims.len(), slots.len(), "{b:?}");
        let mut new: Vec<(&Identity, i64)> = Vec::new();
        for (claim, id) in claims.iter().zip(&asked) {
            let index = ids.iter().position(|i| &i == id).expect("known");
            if index % 7 == 0 {
                assert!(
                    matches!(claim, Claim::AlreadyRan),
                    "{b:?} {id:?}: {claim:?}"
                );
                continue;
            }
            let run = claimed(claim);
            assert_eq!(&&run.identity, id, "{b:?}: claims answer as asked");
            let stored = store.get_run(run.id).await.expect("reads").expect("stored");
            assert_eq!(run, &stored, "{b:?}");
            new.push((&ids[index], run.id));
        }
        new.sort();
        assert!(
            new.windows(2).all(|w| w[0].1 < w[1].1),
            "{b:?}: ids ascend with the identity: {new:?}"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn a_single_claim_is_a_batch_of_one() {
    for (store, _dir) in stores().await {
        let b = store.backend();
        let id = spec("daily", "vm1").identity;
        let run = match store
            .claim_run(&id, at(5, 0), Trigger::Manual, at(5, 0))
            .await
            .expect("claim")
        {
            Claim::Claimed(run) => run,
            other => panic!("{b:?}: {other:?}"),
        };
        assert_eq!(run.trigger, Trigger::Manual);
        let busy = store
            .claim_run(&id, at(5, 1), Trigger::Manual, at(5, 1))
            .await
            .expect("claim");
        assert!(matches!(&busy, Claim::Busy(r) if r.id == run.id), "{b:?}");
        store
            .update_run(
                &run,
                Update {
                    state: Some(RunState::Succeeded),
                    ..Default::default()
                },
                at(5, 2),
            )
            .await
            .expect("finish");
        let taken = store
            .claim_run(&id, at(5, 0), Trigger::Manual, at(5, 3))
            .await
            .expect("claim");
        assert!(matches!(taken, Claim::AlreadyRan), "{b:?}: {taken:?}");
        claimed(
            &store
                .claim_run(&id, at(5, 4), Trigger::Manual, at(5, 4))
                .await
                .expect("claim"),
        );
        store.close().await;
    }
}

/// The schema's per-definition lock (`runs_one_active`, spelled out in the
/// migrations) and the store's queries (from `RunState::ACTIVE`) agree on
/// which states are in flight.
#[tokio::test]
async fn the_in_flight_index_and_active_states_agree() {
    let all = [
        RunState::Pending,
        RunState::Creating,
        RunState::Waiting,
        RunState::Pruning,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Skipped,
        RunState::Missed,
        RunState::Interrupted,
    ];
    for (store, _dir) in stores().await {
        let b = store.backend();
        for (i, state) in all.into_iter().enumerate() {
            let id = spec(state.as_str(), &format!("vm{i}")).identity;
            let run = claimed(
                &store
                    .claim_run(&id, at(1, 0), Trigger::Schedule, at(1, 0))
                    .await
                    .expect("claim"),
            )
            .clone();
            store
                .update_run(
                    &run,
                    Update {
                        state: Some(state),
                        ..Default::default()
                    },
                    at(1, 1),
                )
                .await
                .expect("update");
            let next = store
                .claim_run(&id, at(2, 0), Trigger::Schedule, at(2, 0))
                .await
                .expect("claim");
            let active = store.active_run(&id).await.expect("active run");
            if RunState::ACTIVE.contains(&state) {
                assert!(matches!(next, Claim::Busy(_)), "{b:?} {state}: {next:?}");
                assert_eq!(active.map(|r| r.id), Some(run.id), "{b:?} {state}");
            } else {
                assert!(matches!(next, Claim::Claimed(_)), "{b:?} {state}: {next:?}");
            }
        }
        let unfinished: Vec<RunState> = store
            .unfinished_runs()
            .await
            .expect("unfinished")
            .iter()
            .map(|r| r.state)
            .filter(|s| *s != RunState::Pending)
            .collect();
        assert_eq!(
            unfinished,
            [RunState::Creating, RunState::Waiting, RunState::Pruning],
            "{b:?}"
        );
        store.close().await;
    }
}

/// On SQLite the runs in flight are found by owner through the in-flight
/// index (`runs_one_active`), which holds exactly those runs: the owner's
/// own index is gone, and no owner query scans the whole history.
#[tokio::test]
async fn runs_by_owner_are_read_through_the_in_flight_index_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("s.db")).await.expect("open");
    let pool = store.sqlite_pool().expect("sqlite");
    let indexes: Vec<(String,)> =
        sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs'")
            .fetch_all(pool)
            .await
            .expect("indexes");
    assert!(
        !indexes.iter().any(|(n,)| n == "runs_in_flight_by_owner"),
        "{indexes:?}"
    );
    let active = active_states();
    for query in [
        format!("SELECT id FROM runs WHERE owner_node = 'n1' AND state IN ({active})"),
        format!(
            "SELECT n.id, (SELECT COUNT(*) FROM runs WHERE runs.owner_node = n.id
                              AND runs.state IN ({active})) FROM nodes n"
        ),
    ] {
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {query}"))
                .fetch_all(pool)
                .await
                .expect("plan");
        let on_runs: Vec<&str> = plan
            .iter()
            .map(|(.., detail)| detail.as_str())
            .filter(|d| d.contains(" runs"))
            .collect();
        assert!(
            !on_runs.is_empty()
                && on_runs
                    .iter()
                    .all(|d| d.contains("USING INDEX runs_one_active")),
            "{query}: {plan:?}"
        );
    }
    store.close().await;
}

/// A WAL that a long read kept from starting over grows past its limit;
/// once checkpointed, the next write starts it over and cuts the file back
/// to the limit instead of keeping it at its largest.
#[tokio::test]
async fn the_wal_is_cut_back_to_its_limit_when_it_starts_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.db");
    let wal = dir.path().join("s.db-wal");
    let store = Store::open(&path).await.expect("open");
    let pool = store.sqlite_pool().expect("sqlite");
    let wal_size = || std::fs::metadata(&wal).expect("the WAL").len();
    sqlx::query("CREATE TABLE filler (b BLOB)")
        .execute(pool)
        .await
        .expect("table");
    // A read that began before the writes: no checkpoint may copy them,
    // so the WAL cannot start over and grows with every write.
    let mut reader = pool.acquire().await.expect("connection");
    sqlx::query("BEGIN")
        .execute(&mut *reader)
        .await
        .expect("begin");
    sqlx::query("SELECT COUNT(*) FROM filler")
        .execute(&mut *reader)
        .await
        .expect("read");
    for _ in 0..3 {
        sqlx::query("INSERT INTO filler VALUES (zeroblob(4000000))")
            .execute(pool)
            .await
            .expect("write");
    }
    let grown = wal_size();
    assert!(
        grown > JOURNAL_SIZE_LIMIT_BYTES,
        "the WAL grew to {grown} bytes only"
    );
    sqlx::query("COMMIT")
        .execute(&mut *reader)
        .await
        .expect("commit");
    drop(reader);
    sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .execute(pool)
        .await
        .expect("checkpoint");
    sqlx::query("DELETE FROM filler")
        .execute(pool)
        .await
        .expect("write");
    let after = wal_size();
    assert!(
        after <= JOURNAL_SIZE_LIMIT_BYTES,
        "the WAL stayed at {after} bytes after starting over (it had grown to {grown})"
    );
    store.close().await;
}

#[tokio::test]
async fn definitions_round_trip_and_sort_bytewise() {
    for (store, _dir) in stores().await {
        let b = store.backend();
        let g0 = store.definitions_generation().await.expect("generation");
        for name in ["b", "B", "a", "9x", "A"] {
            store
                .insert_definition(&spec(name, "vm1"), Source::Cli, None, at(1, 0))
                .await
                .expect("insert");
        }
        let g1 = store.definitions_generation().await.expect("generation");
        assert!(g1 > g0, "{b:?}: inserts bump the generation");
        let names: Vec<String> = store
            .list_definitions()
            .await
            .expect("list")
            .into_iter()
            .map(|d| d.spec.identity.name)
            .collect();
        assert_eq!(names, ["9x", "A", "B", "a", "b"], "{b:?}");
        let d = store
            .get_definition(&spec("a", "vm1").identity)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(d.spec, spec("a", "vm1"), "{b:?}");
        assert_eq!(d.created_at, at(1, 0));

        let dup = store
            .insert_definition(&spec("a", "vm1"), Source::Cli, None, at(1, 0))
            .await;
        assert!(
            matches!(dup, Err(StoreError::Duplicate(_))),
            "{b:?}: {dup:?}"
        );
        // A duplicate in a batch leaves the batch (and its transaction) going.
        let inserted = store
            .insert_new_definitions(
                &[spec("c", "vm1"), spec("a", "vm1"), spec("d", "vm1")],
                Source::Cli,
                at(2, 0),
            )
            .await
            .expect("batch");
        assert_eq!(inserted, [true, false, true], "{b:?}");

        let mut changed = spec("a", "vm1");
        changed.retention = 9;
        changed.timezone = None;
        changed.tags.clear();
        assert!(store
            .update_definition(&changed, at(3, 0))
            .await
            .expect("update"));
        let g2 = store.definitions_generation().await.expect("generation");
        assert!(g2 > g1, "{b:?}: an update bumps the generation");
        let d = store
            .get_definition(&changed.identity)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(d.spec, changed, "{b:?}");
        assert_eq!(d.updated_at, at(3, 0));
        assert!(store
            .delete_definition(&changed.identity)
            .await
            .expect("delete"));
        assert!(!store
            .delete_definition(&changed.identity)
            .await
            .expect("delete"));
        assert!(store.definitions_generation().await.expect("generation") > g2);
        store.close().await;
    }
}

#[tokio::test]
async fn reconciling_the_config_file_adds_updates_and_removes() {
    for (store, _dir) in stores().await {
        let b = store.backend();
        store
            .insert_definition(&spec("cli", "vm1"), Source::Cli, None, at(1, 0))
            .await
            .expect("insert");
        let file = [spec("cli", "vm1"), spec("one", "vm1"), spec("two", "vm1")];
        let r = store
            .reconcile_config(&file, "/etc/snapsched/config.toml", at(2, 0))
            .await
            .expect("reconcile");
        assert_eq!(r.added.len(), 2, "{b:?}: {r:?}");
        assert_eq!(
            r.updated,
            [spec("cli", "vm1").identity],
            "{b:?}: taken over"
        );
        let r = store
            .reconcile_config(&file[1..2], "/etc/snapsched/config.toml", at(3, 0))
            .await
            .expect("reconcile");
        assert_eq!(r.unchanged, 1, "{b:?}: {r:?}");
        assert_eq!(r.removed.len(), 2, "{b:?}: {r:?}");
        let left: Vec<_> = store
            .list_definitions()
            .await
            .expect("list")
            .into_iter()
            .map(|d| (d.spec.identity.name, d.source))
            .collect();
        assert_eq!(left, [("one".to_owned(), Source::Config)], "{b:?}");
        store.close().await;
    }
}

#[tokio::test]
async fn history_snapshots_and_trimming_agree_on_both_backends() {
    use crate::domain::{RecordState, RemoteSnapshot, SnapshotStatus};
    for (store, _dir) in stores().await {
        let b = store.backend();
        let id = spec("daily", "vm1").identity;
        for h in 1..=5 {
            let run = claimed(
                &store
                    .claim_run(&id, at(h, 0), Trigger::Schedule, at(h, 0))
                    .await
                    .expect("claim"),
            )
            .clone();
            let snap = RemoteSnapshot {
                id: format!("r{h}"),
                name: format!("s{h}"),
                created_at: at(h, 1),
                status: SnapshotStatus::Ok,
                size_bytes: Some(1 << 40),
                note: None,
            };
            store
                .record_snapshot(&id, &snap, Some(run.id), false, at(h, 1))
                .await
                .expect("record");
            let done = store
                .update_run(
                    &run,
                    Update {
                        state: Some(RunState::Succeeded),
                        snapshot_name: Some(&snap.name),
                        add_attempt: true,
                        started: true,
                        ..Default::default()
                    },
                    at(h, 2),
                )
                .await
                .expect("finish");
            assert_eq!(done.attempts, 1);
            assert_eq!(done.finished_at, Some(at(h, 2)), "{b:?}");
            assert_eq!(done.owner_pid, None, "{b:?}: a final run has no owner");
        }
        assert!(store
            .record_not_run(&id, at(6, 0), RunState::Missed, "down", Some(2), at(7, 0))
            .await
            .expect("missed"));
        assert!(!store
            .record_not_run(&id, at(6, 0), RunState::Missed, "down", Some(2), at(7, 0))
            .await
            .expect("missed again"));
        let (last, success) = store.last_runs(&id).await.expect("last runs");
        assert_eq!(last.map(|r| r.slot), Some(at(5, 0)), "{b:?}");
        assert_eq!(success.map(|r| r.slot), Some(at(5, 0)), "{b:?}");
        assert_eq!(
            store.last_slots().await.expect("last slots"),
            [(id.clone(), at(6, 0))],
            "{b:?}"
        );
        assert_eq!(store.last_failures().await.expect("failures"), [], "{b:?}");
        // A failure after the successes: the last-failure gauge sees it, the
        // last-success one does not move.
        let failing = claimed(
            &store
                .claim_run(&id, at(5, 30), Trigger::Manual, at(5, 30))
                .await
                .expect("claim"),
        )
        .clone();
        store
            .update_run(
                &failing,
                Update {
                    state: Some(RunState::Failed),
                    error: Some(("permanent", "droplet 99 not found")),
                    ..Default::default()
                },
                at(5, 40),
            )
            .await
            .expect("fail");
        assert_eq!(
            store.last_failures().await.expect("failures"),
            [(id.clone(), at(5, 40))],
            "{b:?}"
        );
        assert_eq!(
            store.last_successes().await.expect("successes"),
            [(id.clone(), at(5, 2))],
            "{b:?}"
        );
        assert_eq!(
            store
                .history(Some("daily"), 3)
                .await
                .expect("history")
                .len(),
            3
        );
        assert_eq!(store.trim_history(&id, 2).await.expect("trim"), 5, "{b:?}");
        assert_eq!(store.history(None, 100).await.expect("history").len(), 2);

        store
            .mark_snapshot(&id, "s1", RecordState::Deleted, Some("retention"), at(8, 0))
            .await
            .expect("mark");
        assert_eq!(store.owned_count(&id).await.expect("count"), 4, "{b:?}");
        assert_eq!(
            store.owned_counts().await.expect("counts"),
            [(id.clone(), 4)],
            "{b:?}"
        );
        store
            .mark_snapshot_present(&id, "s1")
            .await
            .expect("present");
        let records = store
            .snapshot_records(Some("daily"))
            .await
            .expect("records");
        let names: Vec<_> = records.iter().map(|r| r.snapshot.as_str()).collect();
        assert_eq!(names, ["s1", "s2", "s3", "s4", "s5"], "{b:?}");
        assert_eq!(records[0].state, RecordState::Present);
        assert_eq!(records[0].size_bytes, Some(1 << 40));
        assert_eq!(
            store
                .snapshot_records_on("fake", "vm1", 1)
                .await
                .expect("on disk")
                .len(),
            5
        );
        store.close().await;
    }
}

#[tokio::test]
async fn every_last_run_agrees_with_each_identitys_last_runs() {
    for (store, _dir) in stores().await {
        let b = store.backend();
        let claim = |id: Identity, slot: DateTime<Utc>, trigger: Trigger| {
            let store = store.clone();
            async move {
                claimed(
                    &store
                        .claim_run(&id, slot, trigger, slot)
                        .await
                        .expect("claim"),
                )
                .clone()
            }
        };
        let finish = |run: Run, state: RunState| {
            let store = store.clone();
            async move {
                store
                    .update_run(
                        &run,
                        Update {
                            state: Some(state),
                            ..Default::default()
                        },
                        at(9, 0),
                    )
                    .await
                    .expect("finish")
            }
        };
        // daily: succeeded 01:00 and 02:00, then a failed manual run.
        let daily = spec("daily", "vm1").identity;
        finish(
            claim(daily.clone(), at(1, 0), Trigger::Schedule).await,
            RunState::Succeeded,
        )
        .await;
        let success = finish(
            claim(daily.clone(), at(2, 0), Trigger::Schedule).await,
            RunState::Succeeded,
        )
        .await;
        let failed = finish(
            claim(daily.clone(), at(2, 30), Trigger::Manual).await,
            RunState::Failed,
        )
        .await;
        assert!(store
            .record_not_run(
                &daily,
                at(3, 0),
                RunState::Skipped,
                "overlap",
                None,
                at(3, 0)
            )
            .await
            .expect("skipped"));
        // other: one run in flight, never a success.
        let other = spec("other", "vm2").identity;
        let pending = claim(other.clone(), at(4, 0), Trigger::Schedule).await;
        // quiet: only a missed slot, which is no run.
        let quiet = spec("quiet", "vm3").identity;
        store
            .record_not_run(
                &quiet,
                at(4, 0),
                RunState::Missed,
                "down",
                Some(1),
                at(4, 1),
            )
            .await
            .expect("missed");

        let every = store.every_last_run().await.expect("every last run");
        let ids = |r: &(Option<Run>, Option<Run>)| {
            (r.0.as_ref().map(|r| r.id), r.1.as_ref().map(|r| r.id))
        };
        assert_eq!(
            every.get(&daily).map(ids),
            Some((Some(failed.id), Some(success.id))),
            "{b:?}"
        );
        assert_eq!(
            every.get(&other).map(ids),
            Some((Some(pending.id), None)),
            "{b:?}"
        );
        assert!(!every.contains_key(&quiet), "{b:?}");
        assert_eq!(every.len(), 2, "{b:?}");
        for id in [&daily, &other, &quiet] {
            let one = store.last_runs(id).await.expect("last runs");
            assert_eq!(
                every.get(id).map(ids).unwrap_or_default(),
                ids(&one),
                "{b:?}: {}",
                id.name
            );
        }
        store.close().await;
    }
}

#[tokio::test]
async fn reopening_migrates_once_and_concurrent_opens_all_succeed() {
    for (location, _dir) in locations().await {
        let opens = (0..4).map(|_| Store::connect(&location));
        for result in futures_util::future::join_all(opens).await {
            result
                .unwrap_or_else(|e| panic!("{location}: {e}"))
                .close()
                .await;
        }
        let store = Store::connect(&location).await.expect("reopen");
        store
            .insert_definition(&spec("a", "vm1"), Source::Cli, None, at(1, 0))
            .await
            .expect("insert");
        store.close().await;
        let store = Store::connect(&location).await.expect("reopen");
        assert_eq!(store.list_definitions().await.expect("list").len(), 1);
        store.close().await;
    }
}

/// Opening a store whose schema is already current takes no lock: while
/// another process holds SQLite's write lock (a daemon writing hard) or
/// the PostgreSQL schema's migration lock, a command that opens the store
/// to change it opens at once, and its write waits for the lock instead of
/// failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_current_store_takes_no_lock_and_a_write_waits_for_it() {
    for (location, _dir) in locations().await {
        Store::connect(&location)
            .await
            .expect("created")
            .close()
            .await;
        let holder = hold_store_lock(&location).await;
        let opened = tokio::time::timeout(Duration::from_secs(10), Store::connect(&location)).await;
        let store = match opened {
            Ok(store) => store.unwrap_or_else(|e| panic!("{location}: {e}")),
            Err(_) => panic!("{location}: opening waited for the lock held by another process"),
        };
        let write = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .insert_definition(&spec("a", "vm1"), Source::Cli, None, at(1, 0))
                    .await
            }
        });
        holder.release().await;
        write
            .await
            .expect("write task")
            .unwrap_or_else(|e| panic!("{location}: the write failed: {e}"));
        assert_eq!(store.list_definitions().await.expect("list").len(), 1);
        store.close().await;
    }
}

/// A connection of another process holding the lock a migration takes.
enum LockHolder {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

async fn hold_store_lock(location: &Location) -> LockHolder {
    match location {
        Location::Sqlite(path) => {
            let mut conn = SqliteConnectOptions::new()
                .filename(path)
                .connect()
                .await
                .expect("connect");
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .expect("write lock");
            LockHolder::Sqlite(conn)
        }
        Location::Postgres(options) => {
            let mut conn = options.connect().await.expect("connect");
            sqlx::raw_sql(
                "BEGIN; SELECT pg_advisory_xact_lock(
                     hashtextextended('snapsched.migrate:' || current_schema(), 0))",
            )
            .execute(&mut conn)
            .await
            .expect("migration lock");
            LockHolder::Postgres(conn)
        }
    }
}

impl LockHolder {
    async fn release(self) {
        match self {
            LockHolder::Sqlite(mut c) => {
                sqlx::query("ROLLBACK")
                    .execute(&mut c)
                    .await
                    .expect("unlock");
                c.close().await.ok();
            }
            LockHolder::Postgres(mut c) => {
                sqlx::query("ROLLBACK")
                    .execute(&mut c)
                    .await
                    .expect("unlock");
                c.close().await.ok();
            }
        }
    }
}

#[tokio::test]
async fn a_postgres_schema_holding_other_tables_is_refused() {
    let Some(server) = server() else {
        eprintln!("{URL_VAR} unset: PostgreSQL not tested");
        return;
    };
    let (name, options) = fresh_schema(&server).await;
    admin(
        &server,
        &format!("CREATE TABLE \"{name}\".customers (id BIGINT PRIMARY KEY, name TEXT)"),
    )
    .await;
    let location = Location::Postgres(Box::new(options.clone().password("s3cr3t-pw")));
    let err = Store::connect(&location).await.expect_err("foreign schema");
    assert!(matches!(err, StoreError::Foreign { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("not a snapsched database"), "{text}");
    assert!(text.contains("database or schema"), "{text}");
    assert!(!text.contains("s3cr3t"), "{text}");

    // A meta table that is not ours is foreign too.
    let (name, options) = fresh_schema(&server).await;
    admin(
        &server,
        &format!(
            "CREATE TABLE \"{name}\".meta (key TEXT PRIMARY KEY, value TEXT);
             INSERT INTO \"{name}\".meta VALUES ('application', 'other')"
        ),
    )
    .await;
    let err = Store::connect(&Location::Postgres(Box::new(options)))
        .await
        .expect_err("foreign meta");
    assert!(matches!(err, StoreError::Foreign { .. }), "{err:?}");

    // No table was created in either.
    let (_, options) = fresh_schema(&server).await;
    let store = Store::connect(&Location::Postgres(Box::new(options)))
        .await
        .expect("a fresh schema is ours");
    store.close().await;
}

#[tokio::test]
async fn postgres_errors_never_show_the_password() {
    let Some(server) = server() else {
        eprintln!("{URL_VAR} unset: PostgreSQL not tested");
        return;
    };
    // Nothing listens on port 1.
    let location = Location::Postgres(Box::new(server.clone().port(1).password("s3cr3t-pw")));
    let err = Store::connect_with(
        &location,
        &PoolSettings {
            acquire_timeout: Duration::from_secs(5),
        },
    )
    .await
    .expect_err("nothing listens on port 1");
    let text = err.to_string();
    assert!(
        text.starts_with("cannot open database postgres://"),
        "{text}"
    );
    assert!(text.contains(":1/"), "{text}");
    assert!(text.contains("refused"), "the server's answer: {text}");
    for text in [text, format!("{err:?}")] {
        assert!(!text.contains("s3cr3t"), "{text}");
    }
    // A schema that does not exist: a clear message, no password.
    let location = Location::Postgres(Box::new(
        server
            .clone()
            .password("s3cr3t-pw")
            .options([("search_path", "t_no_such_schema")]),
    ));
    let err = Store::connect(&location).await.expect_err("no schema");
    let text = err.to_string();
    assert!(text.contains("search_path"), "{text}");
    assert!(!text.contains("s3cr3t"), "{text}");
    // A store that opened keeps it out of its debug output too.
    let (_, options) = fresh_schema(&server).await;
    let store = Store::connect(&Location::Postgres(Box::new(options.password("s3cr3t-pw"))))
        .await
        .expect("opens (trust authentication ignores the password)");
    assert!(!format!("{store:?}").contains("s3cr3t"));
    store.close().await;
}

fn node(id: &str) -> crate::domain::NodeInfo {
    crate::domain::NodeInfo {
        id: id.to_owned(),
        hostname: "host-a".to_owned(),
        pid: 4242,
        version: "test".to_owned(),
        role: crate::domain::NodeRole::Daemon,
    }
}

/// Two nodes on one store: a run claimed by node A and taken over by node B
/// after A expired can no longer be changed by A (fencing), A learns that
/// it lost its lease, and a second takeover from the same stale view fails.
#[tokio::test]
async fn a_run_taken_over_from_an_expired_node_is_fenced_against_it() {
    for (location, _dir) in locations().await {
        let a = Store::connect(&location).await.expect("node a opens");
        let b = Store::connect(&location).await.expect("node b opens");
        let bk = a.backend();
        a.register_node(&node("a"), at(5, 0))
            .await
            .expect("register a");
        a.set_node_id(Some("a".into()));
        b.register_node(&node("b"), at(5, 0))
            .await
            .expect("register b");
        b.set_node_id(Some("b".into()));
        let id = spec("daily", "vm1").identity;
        let Claim::Claimed(run) = a
            .claim_run(&id, at(5, 0), Trigger::Schedule, at(5, 0))
            .await
            .expect("claim")
        else {
            panic!("{bk:?}: not claimed");
        };
        assert_eq!((run.owner_node.as_deref(), run.lease_epoch), (Some("a"), 1));
        assert!(
            b.orphaned_runs().await.expect("orphans").is_empty(),
            "{bk:?}"
        );
        assert_eq!(
            b.live_daemons(Duration::from_secs(60)).await.expect("live"),
            ["a", "b"]
        );

        assert!(b.expire_node("a").await.expect("expire"), "{bk:?}");
        let orphans = b.orphaned_runs().await.expect("orphans");
        assert_eq!(orphans.len(), 1, "{bk:?}");
        let taken = b
            .take_over_run(&orphans[0], at(5, 1))
            .await
            .expect("take over")
            .expect("b takes the run");
        assert_eq!(
            (taken.owner_node.as_deref(), taken.lease_epoch),
            (Some("b"), 2)
        );
        assert!(
            b.take_over_run(&orphans[0], at(5, 1))
                .await
                .expect("second take over")
                .is_none(),
            "{bk:?}: a stale view took the run twice"
        );

        let stale = a
            .update_run(
                &run,
                Update {
                    state: Some(RunState::Creating),
                    ..Default::default()
                },
                at(5, 2),
            )
            .await;
        assert!(
            matches!(stale, Err(StoreError::Fenced { run_id }) if run_id == run.id),
            "{bk:?}: {stale:?}"
        );
        assert!(!a.renew_node("a").await.expect("renew"), "{bk:?}");
        assert!(b.renew_node("b").await.expect("renew"), "{bk:?}");
        let done = b
            .update_run(
                &taken,
                Update {
                    state: Some(RunState::Succeeded),
                    ..Default::default()
                },
                at(5, 3),
            )
            .await
            .expect("the new owner finishes the run");
        assert_eq!(done.state, RunState::Succeeded);
        let nodes = b.nodes().await.expect("nodes");
        let states: Vec<_> = nodes.iter().map(|n| (n.id.as_str(), n.state)).collect();
        assert_eq!(
            states,
            [
                ("a", crate::domain::NodeState::Expired),
                ("b", crate::domain::NodeState::Live)
            ],
            "{bk:?}"
        );
        a.close().await;
        b.close().await;
    }
}

/// A node whose heartbeat is older than the lease by the database's clock
/// is expired by the sweep; a fresh one is not; a node that left cleanly is
/// not live and its runs are orphans at once.
#[tokio::test]
async fn stale_heartbeats_expire_and_a_clean_leave_frees_runs_at_once() {
    for (store, _dir) in stores().await {
        let bk = store.backend();
        store
            .register_node(&node("old"), at(5, 0))
            .await
            .expect("register");
        assert!(store
            .expire_stale_nodes(Duration::from_secs(3600))
            .await
            .expect("sweep")
            .is_empty());
        // The database's clock moves on in real time: poll (bounded) until
        // the heartbeat is older than a zero lease.
        let mut expired = Vec::new();
        for _ in 0..1000 {
            expired = store
                .expire_stale_nodes(Duration::ZERO)
                .await
                .expect("sweep");
            if !expired.is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(expired, ["old"], "{bk:?}");

        store
            .register_node(&node("leaver"), at(5, 0))
            .await
            .expect("register");
        store.set_node_id(Some("leaver".into()));
        let id = spec("daily", "vm2").identity;
        claimed(
            &store
                .claim_run(&id, at(6, 0), Trigger::Schedule, at(6, 0))
                .await
                .expect("claim"),
        );
        let nodes = store.nodes().await.expect("nodes");
        let leaver = nodes.iter().find(|n| n.id == "leaver").expect("listed");
        assert_eq!(leaver.runs_held, 1, "{bk:?}");
        assert!(store.orphaned_runs().await.expect("orphans").is_empty());
        store.leave_node("leaver").await.expect("leave");
        assert_eq!(
            store.orphaned_runs().await.expect("orphans").len(),
            1,
            "{bk:?}"
        );
        assert!(store
            .live_daemons(Duration::from_secs(60))
            .await
            .expect("live")
            .is_empty());
        store.close().await;
    }
}

fn windows(per_short: u32, short: std::time::Duration, per_long: u32) -> [BudgetWindow; 2] {
    [
        BudgetWindow {
            limit: per_short,
            length: short,
        },
        BudgetWindow {
            limit: per_long,
            length: std::time::Duration::from_secs(3600),
        },
    ]
}

#[tokio::test]
async fn the_api_budget_grants_up_to_each_window_and_releases_as_the_database_clock_moves() {
    let short = std::time::Duration::from_millis(300);
    let w = windows(2, short, 3);
    for (store, _dir) in stores().await {
        let b = store.backend();
        for _ in 0..2 {
            assert_eq!(
                store.grant_request("a", &w).await.unwrap(),
                Grant::Granted,
                "{b:?}"
            );
        }
        let wait = match store.grant_request("a", &w).await.unwrap() {
            Grant::RetryIn(d) => d,
            g => panic!("{b:?}: a third grant within {short:?}: {g:?}"),
        };
        assert!(!wait.is_zero() && wait <= short, "{b:?}: {wait:?}");
        // Another token's bucket has a budget of its own.
        assert_eq!(
            store.grant_request("z", &w).await.unwrap(),
            Grant::Granted,
            "{b:?}"
        );
        // The refusal recorded nothing; once the database's clock has moved
        // past the wait it named, the short window has room.
        assert_eq!(store.budget_grants("a").await.unwrap().len(), 2, "{b:?}");
        tokio::time::sleep(wait).await;
        assert_eq!(
            store.grant_request("a", &w).await.unwrap(),
            Grant::Granted,
            "{b:?}"
        );
        // Three in the hour: the long window holds even when the short has room.
        tokio::time::sleep(short).await;
        match store.grant_request("a", &w).await.unwrap() {
            Grant::RetryIn(d) => assert!(d > std::time::Duration::from_secs(3500), "{b:?}: {d:?}"),
            g => panic!("{b:?}: a fourth grant within the hour: {g:?}"),
        }
        let at = store.budget_grants("a").await.unwrap();
        assert_eq!(at.len(), 3, "{b:?}");
        assert!(at[2] - at[0] >= 300, "{b:?}: {at:?}");
    }
}

#[tokio::test]
async fn concurrent_grants_from_separate_handles_never_exceed_the_budget() {
    let w = windows(10, std::time::Duration::from_secs(60), 1000);
    for (location, _dir) in locations().await {
        let mut handles = Vec::new();
        for _ in 0..3 {
            handles.push(Store::connect(&location).await.expect("opens"));
        }
        let attempts = handles.iter().flat_map(|s| {
            (0..8).map(move |_| {
                let s = s.clone();
                async move { s.grant_request("shared", &w).await }
            })
        });
        let answers = futures_util::future::join_all(attempts).await;
        let granted = answers
            .iter()
            .filter(|a| matches!(a, Ok(Grant::Granted)))
            .count();
        assert!(answers.iter().all(Result::is_ok), "{location}: {answers:?}");
        assert_eq!(granted, 10, "{location}: {answers:?}");
        assert_eq!(handles[0].budget_grants("shared").await.unwrap().len(), 10);
    }
}

#[tokio::test]
async fn a_ping_answers_while_open_and_fails_once_closed() {
    for (store, _dir) in stores().await {
        let bk = store.backend();
        let within = Duration::from_secs(2);
        store
            .ping(within)
            .await
            .unwrap_or_else(|e| panic!("{bk:?}: {e}"));
        store.close().await;
        let err = store.ping(within).await.expect_err("a closed store");
        assert!(
            matches!(err, StoreError::Sqlx(sqlx::Error::PoolClosed)),
            "{bk:?}: {err:?}"
        );
    }
}

/// A config file offered to the store from `host`, modified at `mtime`.
fn config_file<'a>(
    specs: &'a [DefinitionSpec],
    host: &'a str,
    mtime: DateTime<Utc>,
) -> ConfigFile<'a> {
    ConfigFile {
        specs,
        path: "/etc/snapsched/config.toml",
        mtime,
        hostname: host,
    }
}

fn names(defs: &[crate::domain::definition::Definition]) -> Vec<&str> {
    defs.iter().map(|d| d.spec.identity.name.as_str()).collect()
}

#[test]
fn the_config_digest_is_of_the_definitions_not_their_order() {
    let (one, two) = (spec("one", "vm1"), spec("two", "vm1"));
    let d = config_state::digest(&[one.clone(), two.clone()]);
    assert_eq!(d, config_state::digest(&[two.clone(), one.clone()]));
    assert_ne!(d, config_state::digest(std::slice::from_ref(&one)));
    let mut changed = two;
    changed.retention += 1;
    assert_ne!(d, config_state::digest(&[one, changed]));
}

#[tokio::test]
async fn a_daemon_applies_only_a_different_and_newer_config_file() {
    for (store, _dir) in stores().await {
        let b = store.backend();
        let (file_a, file_b) = ([spec("a", "vm1")], [spec("b", "vm1")]);
        let daemon = ApplyMode::IfNewer;
        let outcome = store
            .apply_config_file(config_file(&file_a, "web01", at(1, 0)), daemon, at(5, 0))
            .await
            .expect("apply a");
        assert!(
            matches!(outcome, ConfigOutcome::Applied { replaced: None, .. }),
            "{b:?}: {outcome:?}"
        );

        // B differs but is older (and then just as old): drift, nothing changes.
        for mtime in [at(0, 30), at(1, 0)] {
            let outcome = store
                .apply_config_file(config_file(&file_b, "web02", mtime), daemon, at(6, 0))
                .await
                .expect("offer b");
            let ConfigOutcome::Drift { applied } = outcome else {
                panic!("{b:?}: older file applied: {outcome:?}");
            };
            assert_eq!(
                (applied.hostname.as_str(), applied.file_mtime),
                ("web01", at(1, 0))
            );
        }
        assert_eq!(
            names(&store.list_definitions().await.expect("list")),
            ["a"],
            "{b:?}"
        );

        // B newer: applies; A again (older now): no flap.
        let outcome = store
            .apply_config_file(config_file(&file_b, "web02", at(2, 0)), daemon, at(7, 0))
            .await
            .expect("offer newer b");
        let ConfigOutcome::Applied {
            replaced: Some(replaced),
            ..
        } = outcome
        else {
            panic!("{b:?}: newer file not applied: {outcome:?}");
        };
        assert_eq!(replaced.hostname, "web01");
        let outcome = store
            .apply_config_file(config_file(&file_a, "web01", at(1, 0)), daemon, at(8, 0))
            .await
            .expect("offer a again");
        assert!(
            matches!(outcome, ConfigOutcome::Drift { .. }),
            "{b:?}: {outcome:?}"
        );
        assert_eq!(
            names(&store.list_definitions().await.expect("list")),
            ["b"],
            "{b:?}"
        );
        let applied = store
            .applied_config()
            .await
            .expect("state")
            .expect("applied");
        assert_eq!(
            (applied.hostname.as_str(), applied.applied_at),
            ("web02", at(7, 0))
        );

        // The same version from an older file re-reconciles, keeping its record.
        let outcome = store
            .apply_config_file(config_file(&file_b, "web03", at(0, 0)), daemon, at(9, 0))
            .await
            .expect("offer b elsewhere");
        assert!(
            matches!(outcome, ConfigOutcome::Applied { replaced: None, .. }),
            "{b:?}: {outcome:?}"
        );
        assert_eq!(store.applied_config().await.expect("state"), Some(applied));

        // An explicit apply wins, however old the file.
        let outcome = store
            .apply_config_file(
                config_file(&file_a, "web01", at(0, 0)),
                ApplyMode::Always,
                at(10, 0),
            )
            .await
            .expect("apply a");
        assert!(
            matches!(
                outcome,
                ConfigOutcome::Applied {
                    replaced: Some(_),
                    ..
                }
            ),
            "{b:?}: {outcome:?}"
        );
        assert_eq!(
            names(&store.list_definitions().await.expect("list")),
            ["a"],
            "{b:?}"
        );
        // ... and stays: a file edited before the apply is older than it.
        let outcome = store
            .apply_config_file(config_file(&file_b, "web02", at(9, 0)), daemon, at(11, 0))
            .await
            .expect("offer b after the apply");
        assert!(
            matches!(outcome, ConfigOutcome::Drift { .. }),
            "{b:?}: {outcome:?}"
        );
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_starting_at_once_do_not_both_apply() {
    for (location, _dir) in locations().await {
        // Two stores (two pools), as two daemons have.
        let one = Store::connect(&location).await.expect("open");
        let two = Store::connect(&location).await.expect("open");
        for round in 0..10u32 {
            let (file_a, file_b) = (
                [spec(&format!("a{round}"), "vm1")],
                [spec(&format!("b{round}"), "vm1")],
            );
            let mtime = at(round + 1, 0);
            let (ra, rb) = tokio::join!(
                one.apply_config_file(
                    config_file(&file_a, "web01", mtime),
                    ApplyMode::IfNewer,
                    at(12, 0)
                ),
                two.apply_config_file(
                    config_file(&file_b, "web02", mtime),
                    ApplyMode::IfNewer,
                    at(12, 0)
                ),
            );
            let applied = [ra.expect("a"), rb.expect("b")]
                .iter()
                .filter(|o| matches!(o, ConfigOutcome::Applied { .. }))
                .count();
            assert_eq!(
                applied, 1,
                "{location} round {round}: files of one age both applied"
            );
            assert_eq!(one.list_definitions().await.expect("list").len(), 1);
        }
        one.close().await;
        two.close().await;
    }
}

/// Several processes opening a new SQLite file at once (a CLI command and
/// the daemon's first start) all succeed: switching the file to WAL is
/// retried rather than failing "database is locked".
#[test]
fn concurrent_first_opens_of_a_sqlite_file_all_succeed() {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    for round in 0..20 {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("snapsched.db");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    runtime().block_on(async {
                        barrier.wait();
                        let store = Store::open(&path).await?;
                        store.close().await;
                        Ok::<_, StoreError>(())
                    })
                })
            })
            .collect();
        for (i, open) in opens.into_iter().enumerate() {
            let result = open.join().expect("open thread");
            result.unwrap_or_else(|e| panic!("round {round}, open {i}: {e}"));
        }
        let mode: String = runtime().block_on(async {
            let mut conn = SqliteConnectOptions::new()
                .filename(&path)
                .connect()
                .await
                .unwrap();
            sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut conn)
                .await
                .unwrap()
        });
        assert_eq!(mode, "wal", "round {round}");
    }
}

/// Finish a new run of `id` at slot `h:00` in `state`.
async fn finish_run(store: &Store, id: &Identity, h: u32, state: RunState) -> Run {
    let run = claimed(
        &store
            .claim_run(id, at(h, 0), Trigger::Schedule, at(h, 0))
            .await
            .expect("claim"),
    )
    .clone();
    let error = (state != RunState::Succeeded).then_some(("permanent", "the API said no"));
    store
        .update_run(
            &run,
            Update {
                state: Some(state),
                error,
                started: true,
                ..Default::default()
            },
            at(h, 1),
        )
        .await
        .expect("finish")
}

fn kinds(queued: &[QueuedEvent]) -> Vec<&'static str> {
    queued.iter().map(|e| e.kind.as_str()).collect()
}

#[tokio::test]
async fn final_states_queue_rate_limited_events_only_while_a_webhook_is_configured() {
    use crate::domain::event::EventKind;
    for (store, _dir) in stores().await {
        let b = store.backend();
        store
            .register_node(&node("n1"), at(0, 0))
            .await
            .expect("node");
        store.set_node_id(Some("n1".into()));
        let id = spec("daily", "vm1").identity;
        finish_run(&store, &id, 1, RunState::Failed).await;
        assert!(
            store.notify_queued().await.expect("queue").is_empty(),
            "{b:?}: queued without a webhook"
        );
        store.set_notify_queue(Some(100));
        for h in 2..=4 {
            finish_run(&store, &id, h, RunState::Failed).await;
        }
        let f = store
            .notify_failing(&id)
            .await
            .expect("failing")
            .expect("failing");
        assert_eq!(f.failures, 3, "{b:?}");
        let recovered = finish_run(&store, &id, 5, RunState::Succeeded).await;
        assert!(store.notify_failing(&id).await.expect("failing").is_none());
        finish_run(&store, &id, 6, RunState::Interrupted).await;
        let queued = store.notify_queued().await.expect("queue");
        assert_eq!(
            kinds(&queued),
            ["run_failed", "run_recovered", "run_failed"],
            "{b:?}"
        );
        let body: serde_json::Value = serde_json::from_str(&queued[1].payload).expect("json");
        assert_eq!(body["event"], "run_recovered");
        assert_eq!(body["run"]["id"], recovered.id);
        assert_eq!(body["failures"]["count"], 3, "{b:?}: {body}");
        assert_eq!(body["node"]["id"], "n1");
        assert_eq!(body["node"]["hostname"], "host-a");
        assert_eq!(queued[0].kind, EventKind::RunFailed);
        assert!(queued.windows(2).all(|w| w[0].id < w[1].id));

        // Delivery removes the head; an attempt is counted.
        store
            .notify_attempt_failed(queued[0].id, "HTTP 503")
            .await
            .expect("attempt");
        assert_eq!(store.notify_head(1).await.expect("head")[0].attempts, 1);
        assert!(store
            .notify_delivered(queued[0].id)
            .await
            .expect("delivered"));
        assert!(!store.notify_delivered(queued[0].id).await.expect("again"));
        assert_eq!(store.notify_depth().await.expect("depth"), 2, "{b:?}");
        assert_eq!(store.notify_dropped_total().await.expect("dropped"), 0);
    }
}

#[tokio::test]
async fn a_full_queue_drops_the_oldest_and_counts_them() {
    for (store, _dir) in stores().await {
        let b = store.backend();
        store.set_notify_queue(Some(2));
        // Each definition fails once: one run_failed each.
        for (h, name) in [(1, "a"), (2, "b"), (3, "c"), (4, "d")] {
            let id = spec(name, "vm1").identity;
            finish_run(&store, &id, h, RunState::Failed).await;
        }
        let queued = store.notify_queued().await.expect("queue");
        let names: Vec<&str> = queued.iter().map(|e| e.def_name.as_str()).collect();
        assert_eq!(names, ["c", "d"], "{b:?}");
        assert_eq!(
            store.notify_dropped_total().await.expect("dropped"),
            2,
            "{b:?}"
        );
    }
}

#[tokio::test]
async fn a_fenced_final_update_queues_nothing() {
    for (location, _dir) in locations().await {
        let a = Store::connect(&location).await.expect("open");
        a.set_notify_queue(Some(10));
        a.register_node(&node("a"), at(5, 0))
            .await
            .expect("register");
        a.set_node_id(Some("a".into()));
        let id = spec("daily", "vm1").identity;
        let run = claimed(
            &a.claim_run(&id, at(5, 0), Trigger::Schedule, at(5, 0))
                .await
                .expect("claim"),
        )
        .clone();
        let stale = Run {
            lease_epoch: run.lease_epoch + 1,
            ..run
        };
        let r = a
            .update_run(
                &stale,
                Update {
                    state: Some(RunState::Failed),
                    ..Default::default()
                },
                at(5, 1),
            )
            .await;
        assert!(matches!(r, Err(StoreError::Fenced { .. })), "{r:?}");
        assert!(a.notify_queued().await.expect("queue").is_empty());
        assert!(a.notify_failing(&id).await.expect("failing").is_none());
    }
}

#[tokio::test]
async fn a_present_snapshot_marked_gone_queues_one_event() {
    use crate::domain::{RecordState, RemoteSnapshot, SnapshotStatus};
    for (store, _dir) in stores().await {
        let b = store.backend();
        store.set_notify_queue(Some(10));
        let id = spec("daily", "vm1").identity;
        let snap = RemoteSnapshot {
            id: "r1".into(),
            name: "s1".into(),
            created_at: at(1, 0),
            status: SnapshotStatus::Ok,
            size_bytes: None,
            note: None,
        };
        store
            .record_snapshot(&id, &snap, Some(7), false, at(1, 0))
            .await
            .expect("record");
        for _ in 0..2 {
            store
                .mark_snapshot(&id, "s1", RecordState::Gone, Some("not listed"), at(2, 0))
                .await
                .expect("gone");
        }
        store
            .mark_snapshot(&id, "missing", RecordState::Gone, None, at(2, 0))
            .await
            .expect("unknown name");
        let queued = store.notify_queued().await.expect("queue");
        assert_eq!(kinds(&queued), ["snapshot_gone"], "{b:?}");
        let body: serde_json::Value = serde_json::from_str(&queued[0].payload).expect("json");
        assert_eq!(body["snapshot"]["name"], "s1");
        assert_eq!(body["snapshot"]["id"], "r1");
        assert_eq!(body["snapshot"]["run_id"], 7);
        assert_eq!(body["definition"]["name"], "daily", "{body}");
    }
}

#[tokio::test]
async fn the_sender_is_the_longest_running_live_daemon() {
    for (store, _dir) in stores().await {
        let b = store.backend();
        let ttl = Duration::from_secs(60);
        assert_eq!(store.notify_sender(ttl).await.expect("sender"), None);
        store
            .register_node(&node("late"), at(6, 0))
            .await
            .expect("late");
        store
            .register_node(&node("early"), at(5, 0))
            .await
            .expect("early");
        let mut cli = node("cli");
        cli.role = crate::domain::NodeRole::Cli;
        store.register_node(&cli, at(4, 0)).await.expect("cli");
        assert_eq!(
            store.notify_sender(ttl).await.expect("sender").as_deref(),
            Some("early"),
            "{b:?}"
        );
        store.leave_node("early").await.expect("leave");
        assert_eq!(
            store.notify_sender(ttl).await.expect("sender").as_deref(),
            Some("late"),
            "{b:?}"
        );
    }
}

#[tokio::test]
async fn hook_settings_and_hook_progress_round_trip() {
    use crate::domain::hooks::{Consistency, HookState};
    for (store, _dir) in stores().await {
        let b = store.backend();
        let mut s = spec("db", "db01");
        for (k, v) in [
            (
                "pre_hook",
                r#"["/usr/local/sbin/pg-start", "--fast", "a b"]"#,
            ),
            ("post_hook", "/usr/local/sbin/pg-stop"),
            ("hook_timeout", "90s"),
            ("on_pre_hook_failure", "continue"),
            ("on_failure", "/usr/bin/logger"),
        ] {
            assert!(s.hooks.set_text(k, v).expect("valid"), "{k}");
        }
        let def = store
            .insert_definition(&s, Source::Cli, None, at(1, 0))
            .await
            .expect("insert");
        assert_eq!(def.spec, s, "{b:?}");
        s.hooks.set_text("pre_hook", "default").expect("valid");
        assert!(store.update_definition(&s, at(1, 1)).await.expect("update"));
        let back = store.get_definition(&s.identity).await.expect("get");
        assert_eq!(back.map(|d| d.spec), Some(s.clone()), "{b:?}");

        let run = claimed(
            &store
                .claim_run(&s.identity, at(2, 0), Trigger::Schedule, at(2, 0))
                .await
                .expect("claim"),
        )
        .clone();
        assert_eq!((run.consistency, run.hook_state), (None, None), "{b:?}");
        let run = store
            .update_run(
                &run,
                Update {
                    hook_state: Some(HookState::Pre),
                    consistency: Some(Consistency::App),
                    hook_output: Some("pre: exited with status 0\nfrozen"),
                    ..Default::default()
                },
                at(2, 1),
            )
            .await
            .expect("update");
        // Fields not named keep their values.
        let run = store
            .update_run(
                &run,
                Update {
                    hook_state: Some(HookState::Done),
                    ..Default::default()
                },
                at(2, 2),
            )
            .await
            .expect("update");
        let read = store.get_run(run.id).await.expect("get").expect("run");
        assert_eq!(read.hook_state, Some(HookState::Done), "{b:?}");
        assert_eq!(read.consistency, Some(Consistency::App), "{b:?}");
        assert_eq!(
            read.hook_output.as_deref(),
            Some("pre: exited with status 0\nfrozen"),
            "{b:?}"
        );
    }
}

#[tokio::test]
async fn holds_are_kept_once_and_released_once_on_both_backends() {
    use crate::domain::{RemoteSnapshot, SnapshotStatus};
    for (store, _dir) in stores().await {
        let b = store.backend();
        let id = spec("daily", "vm1").identity;
        let other = spec("weekly", "vm1").identity;
        for (owner, name) in [(&id, "s1"), (&id, "s2"), (&other, "w1")] {
            let snap = RemoteSnapshot {
                id: format!("r-{name}"),
                name: name.into(),
                created_at: at(1, 0),
                status: SnapshotStatus::Ok,
                size_bytes: None,
                note: None,
            };
            store
                .record_snapshot(owner, &snap, None, false, at(1, 0))
                .await
                .expect("record");
        }
        assert!(store
            .hold_snapshot(&id, "s1", "ticket 7", at(2, 0))
            .await
            .expect("hold"));
        assert!(
            !store
                .hold_snapshot(&id, "s1", "again", at(3, 0))
                .await
                .expect("hold again"),
            "{b:?}: a second hold must not replace the first"
        );
        assert!(
            !store
                .hold_snapshot(&id, "w1", "", at(2, 0))
                .await
                .expect("hold another's"),
            "{b:?}: a definition cannot hold another definition's snapshot"
        );
        let records = store
            .snapshot_records(Some("daily"))
            .await
            .expect("records");
        let hold = records[0].hold.clone().expect("s1 held");
        assert_eq!(
            (hold.reason.as_str(), hold.held_at),
            ("ticket 7", at(2, 0)),
            "{b:?}"
        );
        assert_eq!(records[1].hold, None, "{b:?}");
        let on_disk = store
            .snapshot_records_on("fake", "vm1", 1)
            .await
            .expect("on disk");
        let held: Vec<(&str, &str)> = on_disk
            .iter()
            .filter_map(|r| {
                r.hold
                    .as_ref()
                    .map(|h| (r.snapshot.as_str(), h.reason.as_str()))
            })
            .collect();
        assert_eq!(held, [("s1", "ticket 7")], "{b:?}");

        assert!(store.release_snapshot(&id, "s1").await.expect("release"));
        assert!(!store
            .release_snapshot(&id, "s1")
            .await
            .expect("release again"));
        let records = store
            .snapshot_records(Some("daily"))
            .await
            .expect("records");
        assert!(records.iter().all(|r| r.hold.is_none()), "{b:?}");
        store.close().await;
    }
}

#[tokio::test]
async fn the_latest_prune_decides_whether_a_definition_is_blocked_on_both_backends() {
    use crate::domain::run::PRUNE_BLOCKED;
    for (store, _dir) in stores().await {
        let b = store.backend();
        let id = spec("daily", "vm1").identity;
        let finish = |run: Run, state: RunState, error: Option<(&'static str, &'static str)>, h| {
            let store = store.clone();
            async move {
                store
                    .update_run(
                        &run,
                        Update {
                            state: Some(state),
                            error,
                            ..Default::default()
                        },
                        at(h, 1),
                    )
                    .await
                    .expect("finish")
            }
        };
        let claim = |h, trigger| {
            let store = store.clone();
            let id = id.clone();
            async move {
                claimed(
                    &store
                        .claim_run(&id, at(h, 0), trigger, at(h, 0))
                        .await
                        .expect("claim"),
                )
                .clone()
            }
        };
        assert!(store.blocked_prunes().await.expect("blocked").is_empty());
        let run = claim(1, Trigger::Schedule).await;
        finish(
            run,
            RunState::Succeeded,
            Some((PRUNE_BLOCKED, "blocked: 12 > 10")),
            1,
        )
        .await;
        // A later run that failed before its prune does not clear it.
        let run = claim(2, Trigger::Schedule).await;
        finish(
            run,
            RunState::Failed,
            Some(("permanent", "no such disk")),
            2,
        )
        .await;
        let blocked = store.blocked_prunes().await.expect("blocked");
        assert_eq!(
            blocked.get(&id).and_then(|r| r.error.clone()).as_deref(),
            Some("blocked: 12 > 10"),
            "{b:?}"
        );
        // A prune that applied the plan clears it.
        let run = claim(3, Trigger::Prune).await;
        finish(run, RunState::Succeeded, None, 3).await;
        assert!(
            store.blocked_prunes().await.expect("blocked").is_empty(),
            "{b:?}"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn copies_and_regions_round_trip_and_the_latest_copy_per_region_decides_on_both_backends() {
    use crate::domain::{CopyState, RemoteSnapshot, SnapshotCopy, SnapshotStatus};
    for (store, _dir) in stores().await {
        let b = store.backend();
        let mut def = spec("daily", "vm1");
        def.copy_regions = vec!["ams3".into(), "fra1".into()];
        store
            .insert_definition(&def, Source::Cli, None, at(0, 0))
            .await
            .expect("insert");
        let back = store
            .find_definitions("daily", &Default::default())
            .await
            .expect("find");
        assert_eq!(back[0].spec.copy_regions, ["ams3", "fra1"], "{b:?}");
        let id = def.identity.clone();
        for name in ["s1", "s2"] {
            let snap = RemoteSnapshot {
                id: format!("r-{name}"),
                name: name.into(),
                created_at: at(1, 0),
                status: SnapshotStatus::Ok,
                size_bytes: None,
                note: None,
            };
            store
                .record_snapshot(&id, &snap, None, false, at(1, 0))
                .await
                .expect("record");
        }
        let copy = |snapshot: &str, region: &str, state: CopyState| SnapshotCopy {
            identity: id.clone(),
            snapshot: snapshot.into(),
            remote_id: format!("r-{snapshot}"),
            region: region.into(),
            run_id: Some(1),
            state,
            operation_id: Some("77".into()),
            attempts: 1,
            error: (state == CopyState::Failed).then(|| "errored".to_owned()),
            updated_at: at(2, 0),
        };
        store
            .save_copy(&copy("s1", "fra1", CopyState::Sending))
            .await
            .expect("save");
        // The same (snapshot, region) is one row, updated.
        store
            .save_copy(&copy("s1", "fra1", CopyState::Failed))
            .await
            .expect("save");
        store
            .save_copy(&copy("s1", "ams3", CopyState::Done))
            .await
            .expect("save");
        let rows = store.copies_of(&id, "s1").await.expect("copies");
        assert_eq!(rows.len(), 2, "{b:?}: {rows:#?}");
        assert_eq!(rows[1], copy("s1", "fra1", CopyState::Failed), "{b:?}");
        let failed = store.failed_copies().await.expect("failed");
        assert_eq!(failed[&id].len(), 1, "{b:?}: {failed:#?}");
        assert_eq!(failed[&id][0].region, "fra1");
        // A later snapshot that reached fra1 clears it.
        store
            .save_copy(&copy("s2", "fra1", CopyState::Done))
            .await
            .expect("save");
        assert!(
            store.failed_copies().await.expect("failed").is_empty(),
            "{b:?}"
        );
        store
            .set_snapshot_regions(&id, "s1", &["nyc3".into(), "ams3".into()])
            .await
            .expect("regions");
        let records = store
            .snapshot_records(Some("daily"))
            .await
            .expect("records");
        let s1 = records.iter().find(|r| r.snapshot == "s1").expect("s1");
        let s2 = records.iter().find(|r| r.snapshot == "s2").expect("s2");
        assert_eq!(
            s1.regions.as_deref(),
            Some(&["nyc3".to_owned(), "ams3".to_owned()][..]),
            "{b:?}"
        );
        assert_eq!(s2.regions, None, "{b:?}");
    }
}

#[tokio::test]
async fn a_postgres_connection_dropped_while_idle_is_replaced_before_it_is_used() {
    let Some(server) = server() else {
        eprintln!("{URL_VAR} unset: PostgreSQL not tested");
        return;
    };
    let (_, options) = fresh_schema(&server).await;
    let app = format!("snapsched-test-{:016x}", rand::random::<u64>());
    let store = Store::connect(&Location::Postgres(Box::new(
        options.application_name(&app),
    )))
    .await
    .expect("opens");
    let Pool::Postgres(pool) = &store.pool else {
        unreachable!("a PostgreSQL store")
    };
    // A few connections, all idle in the pool.
    let held = futures_util::future::join_all((0..3).map(|_| pool.acquire())).await;
    for conn in held {
        conn.expect("a connection");
    }
    // Dropped connections go back to the pool in a task of their own.
    while pool.num_idle() < 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut admin_conn = server.connect().await.expect("admin connection");
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&app)
    .fetch_all(&mut admin_conn)
    .await
    .expect("terminate the store's connections");
    assert!(
        ended.len() >= 3,
        "the pool held {} connections",
        ended.len()
    );
    // The server has closed them.
    loop {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
                .bind(&app)
                .fetch_one(&mut admin_conn)
                .await
                .expect("count connections");
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Idle for longer than PING_AFTER_IDLE: the state under test, not a
    // synchronisation.
    tokio::time::sleep(PING_AFTER_IDLE + Duration::from_millis(100)).await;
    for i in 0..=ended.len() {
        store.list_definitions().await.unwrap_or_else(|e| {
            panic!("query {i} after the server dropped the idle connections: {e}")
        });
    }
    admin_conn.close().await.ok();
    store.close().await;
}
