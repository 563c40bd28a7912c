//! `snapsched check` through the real binary: every exit code reached from
//! store states built through the store API with explicit timestamps (a
//! success so long ago, a definition created so long ago), and the
//! performance data parsed back.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use snapsched::domain::definition::{Identity, Source};
use snapsched::domain::{Claim, NodeInfo, NodeRole, RunState, Trigger};
use snapsched::store::runs::Update;
use snapsched::store::Store;

use crate::support::fixtures::spec;
use crate::support::process::assert_no_panic;
use crate::support::{db, TestEnv};

const DAEMON: &str = "dddd0000-0000-4000-8000-000000000001";
/// The fixtures' schedule, `0 0 * * *`: a nominal interval of a day.
const DAY: i64 = 86_400;

fn id(target: &str, name: &str) -> Identity {
    Identity {
        provider: "fake".to_owned(),
        target: target.to_owned(),
        disk_id: 1,
        name: name.to_owned(),
    }
}

/// A test directory and its store, with a daemon heartbeat when `daemon`.
async fn setup(daemon: bool) -> (TestEnv, Store) {
    let env = TestEnv::base();
    let store = db::open(&env.db()).await;
    if daemon {
        let info = NodeInfo {
            id: DAEMON.to_owned(),
            hostname: "web01".to_owned(),
            pid: 4242,
            version: "9.8.7".to_owned(),
            role: NodeRole::Daemon,
        };
        store
            .register_node(&info, Utc::now())
            .await
            .expect("register");
    }
    (env, store)
}

/// Insert definition `name` on `target`, created `ago` before now.
async fn define(store: &Store, target: &str, name: &str, ago: Duration, active: bool) {
    store
        .insert_definition(
            &spec("fake", target, name).active(active).build(),
            Source::Cli,
            None,
            Utc::now() - ago,
        )
        .await
        .expect("insert definition");
}

/// A run of `trigger` for `slot` that ended `state` at `at`.
async fn record(
    store: &Store,
    id: &Identity,
    trigger: Trigger,
    at: DateTime<Utc>,
    state: RunState,
    error: Option<(&str, &str)>,
) {
    let run = match store.claim_run(id, at, trigger, at).await.expect("claim") {
        Claim::Claimed(run) => run,
        other => panic!("not claimed: {other:?}"),
    };
    store
        .update_run(
            &run,
            Update {
                state: Some(state),
                error,
                ..Default::default()
            },
            at,
        )
        .await
        .expect("update run");
}

async fn succeeded(store: &Store, id: &Identity, ago: Duration) {
    let at = Utc::now() - ago;
    record(store, id, Trigger::Schedule, at, RunState::Succeeded, None).await;
}

fn secs(s: f64) -> Duration {
    Duration::seconds(s as i64)
}

/// `snapsched check ARGS`: (exit code, stdout), after checking there is no
/// panic and nothing on stderr.
fn check(env: &TestEnv, args: &[&str]) -> (i32, String) {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    let (code, out, err) = env.run(&all);
    assert_no_panic(&err);
    assert!(err.is_empty(), "check {args:?} wrote to stderr: {err}");
    (code, out)
}

/// The status line.
fn status_line(out: &str) -> &str {
    out.lines().next().unwrap_or("")
}

/// Performance data: label → (value in seconds, warning, critical).
fn perfdata(out: &str) -> HashMap<String, (i64, Option<i64>, Option<i64>)> {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("| "))
        .unwrap_or_else(|| panic!("no performance data in:\n{out}"));
    line.split_whitespace()
        .map(|item| {
            let (label, rest) = item
                .rsplit_once('=')
                .unwrap_or_else(|| panic!("perfdata item {item}"));
            let label = label
                .strip_prefix('\'')
                .and_then(|l| l.strip_suffix('\''))
                .unwrap_or_else(|| panic!("unquoted label {label}"));
            let mut fields = rest.split(';');
            let value = fields
                .next()
                .and_then(|v| v.strip_suffix('s'))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("perfdata value in {item}"));
            let mut threshold = || fields.next().and_then(|v| v.parse().ok());
            let (warn, crit) = (threshold(), threshold());
            (label.to_owned(), (value, warn, crit))
        })
        .collect()
}

/// `age` is `want` seconds, give or take the time the test took.
fn assert_age(age: i64, want: i64) {
    assert!(
        (want..want + 120).contains(&age),
        "age {age}s, want about {want}s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_is_ok_after_a_fresh_success_with_a_live_daemon() {
    let (env, store) = setup(true).await;
    define(&store, "vm1", "daily", Duration::days(30), true).await;
    succeeded(&store, &id("vm1", "daily"), Duration::hours(1)).await;
    // Inactive definitions are not checked, however stale.
    define(&store, "vm2", "off", Duration::days(30), false).await;

    let (code, out) = check(&env, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        status_line(&out),
        "SNAPSCHED OK - 1 definition fresh, daemon up"
    );
    assert!(
        out.contains("OK vm1/daily: last success 1h ago (interval 1d)"),
        "{out}"
    );
    let perf = perfdata(&out);
    let (age, warn, crit) = perf["vm1/daily_age"];
    assert_age(age, 3600);
    assert_eq!((warn, crit), (Some(129_600), Some(172_800)));
    assert!(perf["daemon_heartbeat_age"].0 < 60, "{out}");
    assert!(!perf.contains_key("vm2/off_age"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_past_the_warning_multiple_and_honours_the_flags() {
    let (env, store) = setup(true).await;
    define(&store, "vm1", "daily", Duration::days(30), true).await;
    succeeded(&store, &id("vm1", "daily"), secs(1.6 * DAY as f64)).await;

    let (code, out) = check(&env, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        status_line(&out).starts_with(
            "SNAPSCHED WARNING - 1 of 1 definition stale: vm1/daily last success 1d 14h ago (interval 1d)"
        ),
        "{out}"
    );
    assert_age(perfdata(&out)["vm1/daily_age"].0, (1.6 * DAY as f64) as i64);

    // A lower critical multiple makes the same age critical; a higher
    // warning multiple makes it OK.
    let (code, out) = check(&env, &["--critical", "1.55", "--warning", "1.2"]);
    assert_eq!(code, 2, "{out}");
    let (_, warn, crit) = perfdata(&out)["vm1/daily_age"];
    assert_eq!((warn, crit), (Some(103_680), Some(133_920)));
    let (code, out) = check(&env, &["--warning", "1.7", "--critical", "3"]);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_is_critical_past_the_critical_multiple_and_a_prune_is_no_success() {
    let (env, store) = setup(true).await;
    define(&store, "vm1", "daily", Duration::days(30), true).await;
    define(&store, "vm2", "daily", Duration::days(30), true).await;
    let stale = id("vm1", "daily");
    succeeded(&store, &stale, secs(2.5 * DAY as f64)).await;
    // A prune run takes no snapshot: its success must not refresh the age.
    let pruned = Utc::now() - Duration::minutes(5);
    record(
        &store,
        &stale,
        Trigger::Prune,
        pruned,
        RunState::Succeeded,
        None,
    )
    .await;
    succeeded(&store, &id("vm2", "daily"), Duration::hours(2)).await;

    let (code, out) = check(&env, &[]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(
        status_line(&out),
        "SNAPSCHED CRITICAL - 1 of 2 definitions stale: vm1/daily last success 2d 12h ago (interval 1d)"
    );
    assert!(out.contains("\nOK vm2/daily: "), "{out}");
    let perf = perfdata(&out);
    assert_age(perf["vm1/daily_age"].0, (2.5 * DAY as f64) as i64);
    assert_age(perf["vm2/daily_age"].0, 7200);

    // NAME narrows the check to the fresh one.
    let (code, out) = check(&env, &["daily", "--target", "vm2"]);
    assert_eq!(code, 0, "{out}");

    let v: Value = serde_json::from_str(&check(&env, &["--json"]).1).expect("JSON");
    assert_eq!(v["status"], "CRITICAL");
    assert_eq!(v["exit_code"], 2);
    let d = v["definitions"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["target"] == "vm1"))
        .unwrap_or_else(|| panic!("vm1 missing: {v}"));
    assert_eq!(d["name"], "daily");
    assert_eq!(d["provider"], "fake");
    assert_eq!(d["disk_id"], 1);
    assert_eq!(d["state"], "CRITICAL");
    assert_eq!(d["interval_seconds"], DAY);
    assert_age(
        d["age_seconds"].as_i64().expect("age"),
        (2.5 * DAY as f64) as i64,
    );
    assert!(d["last_success"].is_string(), "{d}");
    assert!(
        d["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("last success 2d 12h ago")),
        "{d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_is_critical_when_the_last_run_failed_permanently() {
    let (env, store) = setup(true).await;
    define(&store, "vm1", "daily", Duration::days(30), true).await;
    let daily = id("vm1", "daily");
    succeeded(&store, &daily, Duration::hours(3)).await;
    let failed_at = Utc::now() - Duration::hours(1);
    record(
        &store,
        &daily,
        Trigger::Manual,
        failed_at,
        RunState::Failed,
        Some(("permanent", "volume not found")),
    )
    .await;

    let (code, out) = check(&env, &[]);
    assert_eq!(code, 2, "{out}");
    let line = status_line(&out);
    assert!(
        line.starts_with("SNAPSCHED CRITICAL - 1 of 1 definition failed: vm1/daily last run"),
        "{out}"
    );
    assert!(
        line.ends_with("failed permanently: volume not found"),
        "{out}"
    );
    // The age still counts from the last success.
    assert_age(perfdata(&out)["vm1/daily_age"].0, 3 * 3600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_is_critical_when_a_definition_never_succeeded_in_twice_its_interval() {
    let (env, store) = setup(true).await;
    define(&store, "vm1", "old", secs(2.5 * DAY as f64), true).await;
    // Young and not yet run: not a problem.
    define(&store, "vm2", "new", Duration::hours(20), true).await;
    // Failed, but only transiently: staleness decides.
    record(
        &store,
        &id("vm1", "old"),
        Trigger::Schedule,
        Utc::now() - Duration::hours(4),
        RunState::Failed,
        Some(("transient", "503")),
    )
    .await;

    let (code, out) = check(&env, &[]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(
        status_line(&out),
        "SNAPSCHED CRITICAL - 1 of 2 definitions never succeeded: vm1/old never succeeded, created 2d 12h ago (interval 1d)"
    );
    assert!(
        out.contains("\nOK vm2/new: never succeeded, created 20h ago"),
        "{out}"
    );
    let perf = perfdata(&out);
    assert_age(perf["vm1/old_age"].0, (2.5 * DAY as f64) as i64);
    assert_age(perf["vm2/new_age"].0, 20 * 3600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_is_critical_without_a_live_daemon_heartbeat() {
    // No daemon ever joined.
    let (env, store) = setup(false).await;
    define(&store, "vm1", "daily", Duration::days(30), true).await;
    succeeded(&store, &id("vm1", "daily"), Duration::hours(1)).await;
    let (code, out) = check(&env, &[]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(
        status_line(&out),
        "SNAPSCHED CRITICAL - no daemon heartbeat in the store (no daemon has joined it)"
    );

    // A daemon that stopped renewing 5 minutes ago (killed, or its host gone).
    let info = NodeInfo {
        id: DAEMON.to_owned(),
        hostname: "web01".to_owned(),
        pid: 4242,
        version: "9.8.7".to_owned(),
        role: NodeRole::Daemon,
    };
    store
        .register_node(&info, Utc::now())
        .await
        .expect("register");
    assert_eq!(check(&env, &[]).0, 0);
    db::age_heartbeat(&store, &env.db(), DAEMON, 300).await;
    let (code, out) = check(&env, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        status_line(&out).starts_with("SNAPSCHED CRITICAL - no daemon heartbeat for 5m"),
        "{out}"
    );
    let age = perfdata(&out)["daemon_heartbeat_age"].0;
    assert!((300..420).contains(&age), "{out}");

    // A CLI node's heartbeat is no daemon's.
    let cli = NodeInfo {
        id: "cccc0000-0000-4000-8000-000000000002".to_owned(),
        role: NodeRole::Cli,
        ..info
    };
    store
        .register_node(&cli, Utc::now())
        .await
        .expect("register");
    assert_eq!(check(&env, &[]).0, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_is_unknown_when_the_store_cannot_be_opened_or_the_name_is_unknown() {
    let (env, store) = setup(true).await;
    define(&store, "vm1", "daily", Duration::days(30), true).await;
    succeeded(&store, &id("vm1", "daily"), Duration::hours(1)).await;
    define(&store, "vm2", "off", Duration::days(30), false).await;

    for name in ["nosuch", "off"] {
        let (code, out) = check(&env, &[name]);
        assert_eq!(code, 3, "{out}");
        assert_eq!(
            status_line(&out),
            format!(
                "SNAPSCHED UNKNOWN - no active definition named '{name}'; see `snapsched def list`"
            )
        );
    }

    // The database path lies in a "directory" that is a file.
    env.write("plain", "not a directory\n", 0o600);
    let inside = env.path().join("plain").join("snapsched.db");
    let inside = inside.to_str().expect("utf-8 path");
    let (code, out) = check(&env, &["--database", inside]);
    assert_eq!(code, 3, "{out}");
    let line = status_line(&out);
    assert!(
        line.starts_with("SNAPSCHED UNKNOWN - cannot open the store: ") && line.contains("plain"),
        "{out}"
    );
    let v: Value =
        serde_json::from_str(&check(&env, &["--database", inside, "--json"]).1).expect("JSON");
    assert_eq!(v["status"], "UNKNOWN");
    assert_eq!(v["exit_code"], 3);

    // A missing SQLite store is not created by the check.
    let missing = env.path().join("missing.db");
    let (code, out) = check(&env, &["--database", missing.to_str().expect("utf-8")]);
    assert_eq!(code, 3, "{out}");
    assert!(!missing.exists());

    // Bad multipliers are the check's own failure, not a CRITICAL.
    let (code, out) = check(&env, &["--warning", "soon"]);
    assert_eq!(code, 3, "{out}");
    assert!(status_line(&out).contains("--warning soon"), "{out}");
}
