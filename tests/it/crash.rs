//! Crash recovery end to end: the real `snapsched daemon` against the fake
//! DigitalOcean API on loopback, killed with SIGKILL at random moments over
//! and over, then restarted once more to finish what it left.
//!
//! A tag target (`tag:crash` over two droplets, one tag request a slot)
//! runs among the definitions, so the kills also land inside fan-outs.
//!
//! What must hold afterwards, whatever the kills interrupted:
//! - no snapshot name (one per slot) exists twice on a droplet or volume;
//! - every snapshot the provider holds is recorded, with a succeeded run;
//! - every run reached a final state, and a succeeded run's snapshot exists.
//!
//! The kill moments come from a seeded generator; the seed is printed and
//! `SNAPSCHED_CRASH_SEED` replays a failing sequence. `SNAPSCHED_CRASH_ROUNDS`
//! sets how many kills (default 12).

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use snapsched::domain::Trigger;
use snapsched::store::runs::slot_text;
use snapsched::store::Store;
use snapsched_fake_api::digitalocean::{
    FakeConfig, FakeDigitalOcean, FakeHandle, Fault, FaultRule, Resource,
};
use uuid::Uuid;

use crate::support::TestEnv;

const TOKEN: &str = "crash-test-token";
const DROPLETS: [u64; 3] = [31, 32, 33];
/// Droplets carrying the tag `crash`, covered by the definition `tg`.
const TAGGED: [u64; 2] = [41, 42];
const FINAL_STATES: [&str; 5] = ["succeeded", "failed", "skipped", "missed", "interrupted"];

fn volume() -> Uuid {
    Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0001)
}

/// The whole configuration; `schedule` for the droplets and the volume.
fn config(api_url: &str, droplet_schedule: &str, volume_schedule: &str) -> String {
    let mut text = format!(
        r#"
[daemon]
database = "snapsched.db"
timezone = "UTC"
catch_up_deadline = "10s"
shutdown_grace = "2s"
run_timeout = "1m"
max_concurrent_runs = 8
log_level = "debug"

[providers.do]
kind = "digitalocean"
token_env = "SNAPSCHED_TEST_DO_TOKEN"
api_url = "{api_url}"
poll_interval = "100ms"
poll_max_interval = "300ms"
action_timeout = "30s"
requests_per_minute = 100000
requests_per_hour = 1000000
"#
    );
    for id in DROPLETS {
        text.push_str(&format!(
            r#"
[[definitions]]
name = "d{id}"
provider = "do"
target = "droplet:{id}"
schedule = "{droplet_schedule}"
retention = 0
"#
        ));
    }
    text.push_str(&format!(
        r#"
[[definitions]]
name = "vol"
provider = "do"
target = "volume:{}"
schedule = "{volume_schedule}"
retention = 0
"#,
        volume()
    ));
    text
}

/// The tag target `tg` over the droplets tagged `crash`.
fn tag_definition(schedule: &str) -> String {
    format!(
        r#"
[[definitions]]
name = "tg"
provider = "do"
target = "tag:crash"
schedule = "{schedule}"
retention = 0
"#
    )
}

fn spawn_daemon(env: &TestEnv, round: usize) -> Child {
    let log =
        std::fs::File::create(env.path().join(format!("round-{round}.log"))).expect("log file");
    env.command(&["daemon"])
        .env("SNAPSCHED_TEST_DO_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn snapsched daemon")
}

/// The last lines of every round's log, for a failure message.
fn logs(env: &TestEnv) -> String {
    let mut out = String::new();
    let mut round = 0;
    while let Ok(text) = std::fs::read_to_string(env.path().join(format!("round-{round}.log"))) {
        let lines: Vec<&str> = text.lines().collect();
        out.push_str(&format!("--- round {round} ---\n"));
        for l in &lines[lines.len().saturating_sub(
            if std::env::var_os("SNAPSCHED_CRASH_FULL_LOGS").is_some() {
                usize::MAX
            } else {
                15
            },
        )..]
        {
            out.push_str(l);
            out.push('\n');
        }
        round += 1;
    }
    out
}

/// The daemon's store, on the suite's backend.
async fn open_db(env: &TestEnv) -> Store {
    crate::support::db::open(&env.db()).await
}

#[derive(Debug)]
struct RunRow {
    def_name: String,
    /// What the snapshot is of (`droplet:41` for a tag member); the
    /// fan-out of a tag target has `tag:<name>` and makes no snapshot.
    resource: String,
    slot: String,
    state: String,
    snapshot_name: Option<String>,
    snapshot_id: Option<String>,
}

async fn runs(db: &Store) -> Vec<RunRow> {
    let mut all = db.history(None, u32::MAX).await.expect("read runs");
    all.reverse();
    all.into_iter()
        .filter(|r| r.trigger != Trigger::Prune)
        .map(|r| RunRow {
            resource: resource(&r.identity.target),
            def_name: r.identity.name,
            slot: slot_text(r.slot),
            state: r.state.as_str().to_owned(),
            snapshot_name: r.snapshot_name,
            snapshot_id: r.snapshot_id,
        })
        .collect()
}

/// The resource a stored target acts on: a tag member's droplet.
fn resource(target: &str) -> String {
    snapsched::domain::Target::from_canonical(target)
        .map(|t| t.resource().to_string())
        .unwrap_or_else(|| target.to_owned())
}

/// A snapshot: (resource, name), names being unique per resource only
/// (every member of a tag slot has the slot's name).
type Key = (String, String);

/// Snapshot records by (resource, name): (remote id, state).
async fn recorded(db: &Store) -> BTreeMap<Key, (Option<String>, String)> {
    db.snapshot_records(None)
        .await
        .expect("read snapshots")
        .into_iter()
        .map(|r| {
            (
                (resource(&r.identity.target), r.snapshot),
                (r.remote_id, r.state.as_str().to_owned()),
            )
        })
        .collect()
}

/// Every snapshot at the provider: ((resource, name), id).
fn ours(fake: &FakeHandle) -> Vec<(Key, String)> {
    let mut all = Vec::new();
    for id in DROPLETS.into_iter().chain(TAGGED) {
        for s in fake.snapshots_of(Resource::Droplet(id)) {
            all.push(((format!("droplet:{id}"), s.name), s.id));
        }
    }
    for s in fake.snapshots_of(Resource::Volume(volume())) {
        all.push(((format!("volume:{}", volume()), s.name), s.id));
    }
    all
}

/// The fake DigitalOcean API in real time with the droplets and the volume,
/// its droplet actions taking `action`.
async fn start_fake(action: Duration) -> FakeHandle {
    let fake = FakeDigitalOcean::start(FakeConfig {
        token: TOKEN.to_owned(),
        action_duration: action,
        real_time: true,
        per_minute: 100_000,
        per_hour: 1_000_000,
        check_contract: true,
    })
    .await
    .expect("start fake DigitalOcean");
    for id in DROPLETS {
        fake.add_droplet(id, &format!("web-{id}"));
    }
    for id in TAGGED {
        fake.add_droplet(id, &format!("tagged-{id}"));
        fake.tag_droplet(id, "crash");
    }
    fake.add_volume(volume(), "data");
    fake
}

fn is_final(r: &RunRow) -> bool {
    FINAL_STATES.contains(&r.state.as_str())
}

/// Poll the runs table until `done` holds; fail with `what` and the logs
/// after `within`.
async fn wait_for_runs(
    db: &Store,
    env: &TestEnv,
    within: Duration,
    what: &str,
    done: impl Fn(&[RunRow]) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        let all = runs(db).await;
        if done(&all) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {within:?}: {all:#?}\n{}",
            logs(env)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGTERM the daemon once it has started and require a clean exit.
fn stop_daemon(mut child: Child, env: &TestEnv, round: usize) {
    let log = env.path().join(format!("round-{round}.log"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("scheduler started")) {
        assert!(
            Instant::now() < deadline,
            "the daemon did not start within 60s\n{}",
            logs(env)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = crate::support::process::wait_exit(&mut child, Duration::from_secs(20));
    assert!(status.success(), "SIGTERM: exit {status}\n{}", logs(env));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_neither_duplicates_nor_loses_snapshots() {
    let seed = std::env::var("SNAPSCHED_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let rounds: usize = std::env::var("SNAPSCHED_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    eprintln!("crash test: seed {seed}, {rounds} kills (SNAPSCHED_CRASH_SEED replays)");
    let mut rng = StdRng::seed_from_u64(seed);

    // Droplet actions take a second, so kills land before, during and after
    // them; volume snapshots are immediate.
    let fake = start_fake(Duration::from_secs(1)).await;
    // Creates take effect at once but answer late, which opens the window
    // where the provider has the request and the store has no operation id.
    for route in [
        "POST /v2/droplets/{droplet_id}/actions",
        "POST /v2/droplets/actions",
        "POST /v2/volumes/{volume_id}/snapshots",
    ] {
        fake.inject(FaultRule::new(
            Some(route),
            Fault::SlowAnswer(Duration::from_millis(400)),
            u32::MAX,
        ));
    }

    let env = TestEnv::new(
        &(config(fake.url(), "*/2 * * * * *", "* * * * * *") + &tag_definition("*/2 * * * * *")),
    );
    let env_ref = &env;
    for round in 0..rounds {
        let mut child = spawn_daemon(env_ref, round);
        // The kill moment is the thing under test, not a synchronisation.
        let life = Duration::from_millis(rng.random_range(100..2_500));
        tokio::time::sleep(life).await;
        child.kill().expect("SIGKILL the daemon");
        let status = child.wait().expect("reap the daemon");
        assert!(
            status.code().is_none(),
            "round {round}: the daemon exited by itself ({status}) before the kill\n{}",
            logs(env_ref)
        );
    }

    // One last start with schedules that do not fire: the daemon only
    // resumes what the kills left behind.
    env.write_config(
        &(config(fake.url(), "0 0 1 1 *", "0 0 1 1 *") + &tag_definition("0 0 1 1 *")),
    );
    let child = spawn_daemon(env_ref, rounds);
    let db = open_db(env_ref).await;
    wait_for_runs(
        &db,
        env_ref,
        Duration::from_secs(90),
        "runs still unfinished after the final restart",
        |all| all.iter().all(is_final),
    )
    .await;
    // A droplet action still running at the provider would add a snapshot
    // after the check.
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.actions_in_progress() > 0 {
        assert!(Instant::now() < deadline, "provider actions never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_daemon(child, env_ref, rounds);

    let runs = runs(&db).await;
    let recorded = recorded(&db).await;
    let at_provider = ours(&fake);
    let report = || {
        format!(
            "seed {seed}\nruns: {runs:#?}\nprovider: {at_provider:?}\nrecorded: {recorded:?}\n{}",
            logs(env_ref)
        )
    };

    // Every slot at most one snapshot per resource: names carry the slot.
    let mut names = BTreeSet::new();
    for (key, _) in &at_provider {
        assert!(
            names.insert(key.clone()),
            "snapshot {key:?} exists twice\n{}",
            report()
        );
    }
    // Every snapshot created is recorded, with a succeeded run.
    let succeeded: BTreeMap<Key, &RunRow> = runs
        .iter()
        .filter(|r| r.state == "succeeded")
        .filter_map(|r| {
            r.snapshot_name
                .as_deref()
                .map(|n| ((r.resource.clone(), n.to_owned()), r))
        })
        .collect();
    for (key, id) in &at_provider {
        let rec = recorded.get(key);
        assert!(
            matches!(rec, Some((Some(rid), state)) if rid == id && state == "present"),
            "snapshot {key:?} ({id}) at the provider is recorded as {rec:?}\n{}",
            report()
        );
        assert!(
            succeeded.contains_key(key),
            "snapshot {key:?} has no succeeded run\n{}",
            report()
        );
    }
    // No run lost: all final, and what succeeded exists.
    for r in &runs {
        assert!(
            is_final(r),
            "run {} {} left in {}\n{}",
            r.def_name,
            r.slot,
            r.state,
            report()
        );
        // A tag target's fan-out makes no snapshot of its own.
        if r.state == "succeeded" && !r.resource.starts_with("tag:") {
            let name = r.snapshot_name.as_deref().unwrap_or_default();
            assert!(
                at_provider.iter().any(|((res, n), id)| res == &r.resource
                    && n == name
                    && Some(id) == r.snapshot_id.as_ref()),
                "run {} {} succeeded with {name} but the provider does not have it\n{}",
                r.def_name,
                r.slot,
                report()
            );
        }
    }
    // The kills must have hit real work, or this test proves nothing.
    assert!(
        succeeded.len() >= rounds,
        "only {} runs succeeded over {rounds} rounds\n{}",
        succeeded.len(),
        report()
    );
    let droplet_runs = succeeded.keys().filter(|(_, n)| n.starts_with('d')).count();
    assert!(
        droplet_runs > 0,
        "no droplet snapshot completed\n{}",
        report()
    );
    let tagged_runs = succeeded
        .keys()
        .filter(|(_, n)| n.starts_with("tg-"))
        .count();
    assert!(
        tagged_runs > 0,
        "no snapshot of a tagged droplet completed\n{}",
        report()
    );
    assert!(
        fake.contract_violations().is_empty(),
        "contract violations: {:?}",
        fake.contract_violations()
    );
    eprintln!(
        "crash test: {} runs, {} succeeded, {} snapshots at the provider, states {:?}",
        runs.len(),
        succeeded.len(),
        at_provider.len(),
        runs.iter()
            .fold(BTreeMap::<&str, usize>::new(), |mut m, r| {
                *m.entry(r.state.as_str()).or_default() += 1;
                m
            })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_leaves_a_waiting_run_resumable_and_the_next_start_finishes_it() {
    let fake = start_fake(Duration::from_secs(4)).await;
    let env = TestEnv::new(&config(fake.url(), "* * * * * *", "0 0 1 1 *"));
    let env_ref = &env;
    // A command that changes the store creates it, so the test can open it
    // first (read commands never create it).
    env.ok(&["config", "apply"]);
    let db = open_db(env_ref).await;
    let child = spawn_daemon(env_ref, 0);

    wait_for_runs(
        &db,
        env_ref,
        Duration::from_secs(30),
        "every droplet's run waiting on its action",
        |all| all.iter().filter(|r| r.state == "waiting").count() == DROPLETS.len(),
    )
    .await;
    stop_daemon(child, env_ref, 0);
    let left: Vec<RunRow> = runs(&db)
        .await
        .into_iter()
        .filter(|r| !is_final(r))
        .collect();
    assert!(
        left.len() >= DROPLETS.len() && left.iter().all(|r| r.state == "waiting"),
        "runs are not left waiting for the next start: {left:#?}\n{}",
        logs(env_ref)
    );

    env.write_config(&config(fake.url(), "0 0 1 1 *", "0 0 1 1 *"));
    let child = spawn_daemon(env_ref, 1);
    wait_for_runs(
        &db,
        env_ref,
        Duration::from_secs(30),
        "runs resumed and finished",
        |all| all.iter().all(is_final),
    )
    .await;
    stop_daemon(child, env_ref, 1);

    let all = runs(&db).await;
    let succeeded = all.iter().filter(|r| r.state == "succeeded").count();
    assert!(succeeded >= DROPLETS.len(), "{all:#?}");
    assert_eq!(
        fake.requests("POST /v2/droplets/{droplet_id}/actions") as usize,
        succeeded,
        "a resumed run asked for a second snapshot: {all:#?}"
    );
    let names: BTreeSet<Key> = ours(&fake).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), succeeded, "{names:?} vs {all:#?}");
}
