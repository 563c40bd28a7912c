//! The CLI while the daemon works hardest: every definition due at one
//! slot, the real daemon claiming them in batches and running them, and
//! meanwhile CLI reads (`status`, `history`) and writes (`def add`,
//! `def set`, `def rm`, each on a definition of its own) in loops, each
//! call a process of its own. Every call must succeed: reads take no lock
//! and never wait on the writer (SQLite WAL, read-only open), opening a
//! store with nothing to migrate takes no write lock, and a write waits
//! for the lock within the busy timeout instead of failing with "database
//! is locked".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, Utc};
use snapsched::domain::definition::Source;

use crate::support::{db, fixtures, TestEnv};

/// Definitions in the always-on test. In a debug build on two shared cores
/// the daemon takes about 15 s (SQLite) to 25 s (PostgreSQL) to claim
/// 10,000 slots while it runs them, so the loops below run inside the
/// claiming the whole time; one `status`, which reads every definition,
/// takes about as long. The whole test stays near 25 s on SQLite and 35 s on
/// PostgreSQL there; 100,000 (the next test) takes minutes.
const DEFINITIONS: usize = 10_000;

/// How long the CLI loops run at most; they stop earlier once the daemon
/// has claimed every slot.
const LOOP_FOR: Duration = Duration::from_secs(20);

const CONFIG: &str = r#"
[daemon]
database = "snapsched.db"
timezone = "UTC"
log_level = "warn,snapsched::daemon=info"
shutdown_grace = "1s"

[providers.lab]
kind = "fake"
"#;

#[test]
fn cli_reads_and_writes_succeed_while_the_daemon_claims_every_definition_at_once() {
    under_load(DEFINITIONS);
}

/// 100,000 definitions due at once. A debug build on two cores fills the
/// store and claims for minutes (one `status` alone takes about two), so
/// it runs on request: `cargo test --test it cli_under_load -- --ignored`.
#[test]
#[ignore = "100,000 definitions: minutes in a debug build; run with --ignored"]
fn cli_reads_and_writes_succeed_while_the_daemon_claims_100000_due_runs() {
    under_load(100_000);
}

/// A six-field expression that fires once a year, at `at`.
fn at_expression(at: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    format!(
        "{} {} {} {} {} *",
        at.second(),
        at.minute(),
        at.hour(),
        at.day(),
        at.month()
    )
}

/// Runs claimed so far and runs final so far, read from the store.
fn progress(rt: &tokio::runtime::Runtime, env: &TestEnv) -> (i64, i64) {
    rt.block_on(async {
        let claimed = db::scalar(&env.db(), "SELECT COUNT(*) FROM runs").await;
        let done = db::scalar(
            &env.db(),
            "SELECT COUNT(*) FROM runs WHERE state IN ('succeeded', 'failed')",
        )
        .await;
        (claimed, done)
    })
}

/// One CLI call that failed: its arguments, exit code and stderr.
type Failure = (Vec<String>, i32, String);

/// Run `args`; a non-zero exit or "locked" on stderr is recorded, and the
/// longest call is kept in `slowest`.
fn call(
    env: &TestEnv,
    args: &[&str],
    failures: &Mutex<Vec<Failure>>,
    slowest: &mut Duration,
) -> String {
    let started = Instant::now();
    let (code, out, err) = env.run(args);
    *slowest = (*slowest).max(started.elapsed());
    if code != 0 || err.contains("locked") {
        failures.lock().expect("failures").push((
            args.iter().map(|a| (*a).to_owned()).collect(),
            code,
            err,
        ));
    }
    out
}

fn under_load(n: usize) {
    let env = TestEnv::new(CONFIG);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let filled = Instant::now();
    // Every definition's slot is the next whole second after its edit; the
    // daemon, started once the store is filled, finds them all due at once.
    let edited = Utc::now();
    let slot = edited
        .duration_trunc(chrono::Duration::seconds(1))
        .expect("whole second")
        + chrono::Duration::seconds(1);
    let expr = at_expression(slot);
    rt.block_on(async {
        let store = db::open(&env.db()).await;
        let ids: Vec<usize> = (0..n).collect();
        for chunk in ids.chunks(10_000) {
            let specs: Vec<_> = chunk
                .iter()
                .map(|i| {
                    fixtures::spec("lab", &format!("vm{i}"), &format!("d{i}"))
                        .schedule(&expr)
                        .build()
                })
                .collect();
            store
                .insert_new_definitions(&specs, Source::Cli, edited)
                .await
                .expect("definitions inserted");
        }
        store.close().await;
    });
    eprintln!("{n} definitions in {:.1}s", filled.elapsed().as_secs_f64());

    let started = Instant::now();
    let mut daemon = env.daemon();
    daemon.wait_for_log("scheduler started", Duration::from_secs(120));
    // The loops start with the first claim.
    let deadline = Instant::now() + Duration::from_secs(120);
    while progress(&rt, &env).0 == 0 {
        daemon.assert_running();
        assert!(Instant::now() < deadline, "no run claimed within 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "first claim {:.1}s after the start",
        started.elapsed().as_secs_f64()
    );

    let failures = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let (mut reads, mut statuses, mut writes) = (0, 0, 0);
    let (mut read_max, mut status_max, mut write_max) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let before = progress(&rt, &env);
    let looped = Instant::now();
    std::thread::scope(|s| {
        let history = s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                call(
                    &env,
                    &["history", "--limit", "5", "--json"],
                    &failures,
                    &mut read_max,
                );
                reads += 1;
            }
        });
        let status = s.spawn(|| {
            // At least one whole `status`, however long it takes.
            loop {
                call(&env, &["status", "--json"], &failures, &mut status_max);
                statuses += 1;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        });
        let writer = s.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("cli{i}");
                let target = format!("cli-vm{i}");
                call(
                    &env,
                    &[
                        "def",
                        "add",
                        &name,
                        "--provider",
                        "lab",
                        "--target",
                        &target,
                        "--schedule",
                        "0 0 1 1 *",
                        "--retention",
                        "3",
                    ],
                    &failures,
                    &mut write_max,
                );
                call(
                    &env,
                    &["def", "set", &name, "retention=4"],
                    &failures,
                    &mut write_max,
                );
                call(&env, &["def", "rm", &name], &failures, &mut write_max);
                writes += 1;
                i += 1;
            }
        });
        while looped.elapsed() < LOOP_FOR && progress(&rt, &env).0 < n as i64 {
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
        for t in [history, status, writer] {
            t.join().expect("loop thread");
        }
    });
    let after = progress(&rt, &env);
    eprintln!(
        "{:.1}s of CLI calls: {reads} history, {statuses} status, {writes} add/set/rm; \
         runs claimed {} -> {}, final {} -> {}; slowest call: history {:.2}s, status {:.2}s, \
         def {:.2}s",
        looped.elapsed().as_secs_f64(),
        before.0,
        after.0,
        before.1,
        after.1,
        read_max.as_secs_f64(),
        status_max.as_secs_f64(),
        write_max.as_secs_f64()
    );
    daemon.assert_running();
    let failures = failures.into_inner().expect("failures");
    assert!(
        failures.is_empty(),
        "{} CLI calls failed under load, first: {:?}\ndaemon log:\n{}",
        failures.len(),
        failures.first(),
        daemon.tail(20)
    );
    assert!(reads > 0 && statuses > 0 && writes > 0, "a loop never ran");
    assert!(
        after.0 > before.0 && after.1 > before.1,
        "the daemon was not claiming and running during the loop: claimed {before:?} -> {after:?} (claimed, final)"
    );
    let log = daemon.log();
    assert!(
        !log.contains("locked"),
        "the daemon hit a locked store:\n{}",
        log.lines()
            .filter(|l| l.contains("locked"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    daemon.terminate(Duration::from_secs(30));
}
