//! `snapsched run`, `status` and `history` through the real binary: manual
//! runs against the in-memory fake provider and the fake DigitalOcean API,
//! the per-definition lock shared with the daemon, and what the read
//! commands report afterwards.

use chrono::{DateTime, Timelike, Utc};
use serde_json::Value;
use snapsched::domain::definition::Identity;
use snapsched::domain::{Claim, Trigger};
use snapsched_fake_api::digitalocean::{FakeConfig, FakeDigitalOcean};

use crate::support::fake::{add_web, volume_web};
use crate::support::fixtures::config_with_do_api;
use crate::support::process::assert_no_panic;
use crate::support::TestEnv;

fn with_web() -> TestEnv {
    let env = TestEnv::base();
    add_web(&env, "fake", "vm1");
    env
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("not an RFC 3339 time: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_runs_show_in_history_and_status_and_prune_to_retention() {
    let (fake, env) = volume_web().await;
    tokio::task::block_in_place(|| manual_runs_then_reports(&env));
    assert_eq!(
        fake.snapshots().len(),
        2,
        "the provider keeps the two newest: {:?}",
        fake.snapshots()
    );
}

fn manual_runs_then_reports(env: &TestEnv) {
    let token = [("SNAPSCHED_TEST_DO_TOKEN", "fake-do-token")];
    let mut names = Vec::new();
    // Three runs in quick succession: each gets its own second, so its own
    // slot and snapshot name.
    for _ in 0..3 {
        let (code, out, err) = env.run_env(&["run", "web", "--wait", "--json"], &token);
        assert_eq!(code, 0, "run failed: {err}");
        let run: Value = serde_json::from_str(&out).expect("run --json");
        assert_eq!(run["state"], "succeeded", "{run}");
        assert_eq!(run["trigger"], "manual", "{run}");
        let name = run["snapshot_name"]
            .as_str()
            .expect("snapshot name")
            .to_owned();
        let slot = time(&run["slot"]);
        assert_eq!(name, format!("web-{}", slot.format("%Y%m%d_%H%M%S")));
        names.push(name);
    }
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(unique.len(), 3, "snapshot names repeat: {names:?}");

    let history = env.json(&["history", "web"]);
    let history = history.as_array().expect("history is an array");
    let listed: Vec<&str> = history
        .iter()
        .map(|r| r["snapshot_name"].as_str().unwrap_or_default())
        .collect();
    let newest_first: Vec<&str> = names.iter().rev().map(String::as_str).collect();
    assert_eq!(listed, newest_first, "history is newest first");
    let limited = env.json(&["history", "web", "--limit", "1"]);
    assert_eq!(limited.as_array().map(Vec::len), Some(1), "{limited}");
    // An unknown name is an error, as in every command, not an empty table.
    let err = env.usage_error(&["history", "nosuch"]);
    assert!(err.contains("no definition named 'nosuch'"), "{err}");

    let status = env.json(&["status"]);
    let web = &status[0];
    assert_eq!(web["name"], "web", "{status}");
    assert_eq!(web["active"], true);
    assert_eq!(web["schedule"], "0 3 * * *");
    assert_eq!(web["timezone"], "UTC");
    assert_eq!(web["last_run"]["state"], "succeeded", "{web}");
    assert_eq!(web["last_run"]["snapshot_name"], names[2].as_str());
    assert_eq!(web["last_success"]["snapshot_name"], names[2].as_str());
    assert_eq!(web["snapshots"], 2, "retention 2 keeps two: {web}");
    assert!(web["last_error"].is_null(), "{web}");
    let next = time(&web["next_fire"]);
    assert_eq!((next.hour(), next.minute(), next.second()), (3, 0, 0));
    let ahead = next - Utc::now();
    assert!(
        ahead > chrono::Duration::zero() && ahead <= chrono::Duration::hours(24),
        "next fire {next} is not the next 03:00"
    );

    let table = env.ok(&["status"]);
    assert!(
        table.contains("web") && table.contains("0 3 * * * (UTC)") && table.contains("succeeded"),
        "status table: {table}"
    );
    // One zone for every time, shown with it; relative times; compact by
    // default, every column with --wide.
    let wide = env.ok(&["status", "--wide", "--utc"]);
    let header = wide.lines().next().unwrap_or_default();
    assert!(
        header.contains("Active") && header.contains("Last error"),
        "{wide}"
    );
    let row = wide.lines().nth(2).unwrap_or_default();
    assert!(
        row.contains(" UTC (in ") && (row.contains(" ago)") || row.contains(" UTC (now)")),
        "wide row lacks zoned and relative times: {row}"
    );
    assert!(!row.contains("+00:00") && !row.contains("+01:00"), "{row}");
    let compact = env.ok(&["status", "--utc"]);
    assert!(
        !compact
            .lines()
            .next()
            .unwrap_or_default()
            .contains("Active"),
        "{compact}"
    );
    let crow = compact.lines().nth(2).unwrap_or_default();
    assert!(
        crow.contains("succeeded") && (crow.contains(" ago") || crow.contains("succeeded now")),
        "{crow}"
    );
    assert!(
        crow.len() < row.len(),
        "compact {crow:?} not narrower than wide {row:?}"
    );
    let table = env.ok(&["history"]);
    for n in &names {
        assert!(
            table.contains(n.as_str()),
            "history table lacks {n}: {table}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_refused_while_another_run_of_the_definition_is_in_flight() {
    let env = with_web();
    let store = crate::support::db::open(&env.db()).await;
    let id = Identity {
        provider: "fake".to_owned(),
        target: "vm1".to_owned(),
        disk_id: 1,
        name: "web".to_owned(),
    };
    // This process holds a pending run, as a live daemon driving one
    // would (a run whose owner is gone would be taken over instead).
    let _node = snapsched::cluster::Membership::join(
        &store,
        snapsched::domain::NodeRole::Daemon,
        std::time::Duration::from_secs(60),
    )
    .await
    .expect("join");
    let now = Utc::now() - chrono::Duration::minutes(1);
    let held = match store
        .claim_run(&id, now, Trigger::Schedule, now)
        .await
        .expect("claim")
    {
        Claim::Claimed(run) => run,
        other => panic!("not claimed: {other:?}"),
    };
    let env_ref = &env;
    let (code, _out, err) = tokio::task::block_in_place(|| env_ref.run(&["run", "web", "--wait"]));
    assert_eq!(code, 1, "stderr: {err}");
    assert_no_panic(&err);
    assert!(
        err.contains("already running") && err.contains(&format!("run {}", held.id)),
        "the refusal does not name the run in flight: {err}"
    );
    let history = store.history(Some("web"), 10).await.expect("history");
    assert_eq!(history.len(), 1, "a second run was recorded: {history:#?}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_exits_1_with_the_provider_message_and_is_recorded() {
    let fake = FakeDigitalOcean::start(FakeConfig::default())
        .await
        .expect("fake DigitalOcean");
    fake.add_droplet(3164444, "web-01");
    let env = TestEnv::new(&config_with_do_api(fake.url()));
    env.add_droplet("web", 3164444);
    let env_ref = &env;
    let (code, out, err) = tokio::task::block_in_place(|| {
        env_ref.run_env(
            &["run", "web", "--wait"],
            &[("SNAPSCHED_TEST_DO_TOKEN", "not-the-right-token")],
        )
    });
    assert_eq!(code, 1, "stderr: {err}");
    // Said once, clearly, and no snapshot name as if one existed.
    let all = format!("{out}{err}");
    assert_eq!(
        all.matches("Unable to authenticate you").count(),
        1,
        "the failure is not said exactly once:\n{all}"
    );
    assert!(
        !all.contains("web-20"),
        "a failed run shows a snapshot name:\n{all}"
    );
    assert_no_panic(&err);
    assert!(
        err.contains("Unable to authenticate you"),
        "DigitalOcean's message is lost: {err}"
    );
    assert!(
        !err.contains("not-the-right-token"),
        "the token leaked: {err}"
    );
    let history = tokio::task::block_in_place(|| env_ref.json(&["history", "web"]));
    assert_eq!(history[0]["state"], "failed", "{history}");
    assert_eq!(history[0]["error_class"], "permanent", "{history}");
    let status = tokio::task::block_in_place(|| env_ref.json(&["status"]));
    assert!(
        status[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("Unable to authenticate you")),
        "{status}"
    );
    assert!(status[0]["last_success"].is_null(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_left_by_a_killed_run_command_is_finished_by_the_next_one() {
    // The droplet action stays in progress until the test moves the
    // fake's clock, so the first `snapsched run` is caught waiting.
    let fake = FakeDigitalOcean::start(FakeConfig::default())
        .await
        .expect("fake DigitalOcean");
    fake.add_droplet(3164444, "web-01");
    let config = config_with_do_api(fake.url()).replace(
        "kind = \"digitalocean\"\n",
        "kind = \"digitalocean\"\npoll_interval = \"100ms\"\npoll_max_interval = \"200ms\"\n",
    );
    let env = TestEnv::new(&config);
    env.add_droplet("web", 3164444);
    let store = crate::support::db::open(&env.db()).await;
    let token = crate::support::fake::DO_TOKEN;
    let mut first = env
        .command(&["run", "web"])
        .env(token.0, token.1)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn snapsched run");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let left = loop {
        let runs = store.history(Some("web"), 10).await.expect("history");
        if let Some(r) = runs.iter().find(|r| r.state.as_str() == "waiting") {
            break r.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never reached waiting: {runs:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    fake.advance(std::time::Duration::from_secs(600));
    fake.set_action_duration(std::time::Duration::ZERO);

    let env_ref = &env;
    let (code, out, err) = tokio::task::block_in_place(|| {
        env_ref.run_env(&["run", "web", "--json"], &[crate::support::fake::DO_TOKEN])
    });
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert_no_panic(&err);
    assert!(
        err.contains(&format!("run {} of", left.id)) && err.contains("finishing it first"),
        "{err}"
    );
    let finished = store.get_run(left.id).await.expect("run").expect("row");
    assert_eq!(finished.state.as_str(), "succeeded", "{finished:?}");
    let mine: Value = serde_json::from_str(&out).expect("run --json");
    assert_eq!(mine["state"], "succeeded", "{mine}");
    assert_ne!(mine["id"], left.id, "{mine}");
    let names: Vec<String> = fake.snapshots().into_iter().map(|s| s.name).collect();
    assert_eq!(names.len(), 2, "one snapshot per run: {names:?}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_says_when_a_live_daemon_holds_requests_back_for_the_budget() {
    let env = TestEnv::new(&config_with_do_api("http://127.0.0.1:9"));
    env.add_droplet("web", 3164444);
    let store = crate::support::db::open(&env.db()).await;
    let node = snapsched::cluster::Membership::join(
        &store,
        snapsched::domain::NodeRole::Daemon,
        std::time::Duration::from_secs(60),
    )
    .await
    .expect("join");
    let since: DateTime<Utc> = "2026-01-01T08:00:00Z".parse().expect("time");
    store
        .record_budget_waits(node.id(), &[("do".to_owned(), 3, since)])
        .await
        .expect("recorded");
    let env_ref = &env;
    let table = tokio::task::block_in_place(|| env_ref.ok(&["status", "--utc"]));
    assert!(
        table.contains("3 requests of provider do wait for the API request budget since 2026-01-01 08:00:00 UTC"),
        "{table}"
    );
    let json = tokio::task::block_in_place(|| env_ref.json(&["status"]));
    assert_eq!(json[0]["budget_wait"]["waiting"], 3, "{json}");

    // The budget lets requests through again: the node records nothing.
    store
        .record_budget_waits(node.id(), &[])
        .await
        .expect("recorded");
    let table = tokio::task::block_in_place(|| env_ref.ok(&["status"]));
    assert!(!table.contains("request budget"), "{table}");

    // A wait recorded by a node that is gone is not shown.
    store
        .record_budget_waits(node.id(), &[("do".to_owned(), 2, since)])
        .await
        .expect("recorded");
    node.leave().await.expect("leave");
    let json = tokio::task::block_in_place(|| env_ref.json(&["status"]));
    assert!(json[0]["budget_wait"].is_null(), "{json}");
    store.close().await;
}
