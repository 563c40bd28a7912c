//! The blast-radius guard through the real binary against the fake
//! DigitalOcean API: a post-run prune that would delete more than
//! `max_deletes_per_run` deletes nothing and leaves a `prune_blocked`
//! warning on a succeeded run; `snapsched prune` applies the plan only with
//! `--yes` off a terminal; a definition's own limit overrides the daemon's.

use chrono::{TimeZone, Utc};
use serde_json::Value;
use snapsched_fake_api::digitalocean::{FakeConfig, FakeDigitalOcean, FakeHandle, Resource};

use crate::support::fake::{DO_TOKEN, VOLUME};
use crate::support::fixtures::config_with_do_api;
use crate::support::process::assert_no_panic;
use crate::support::TestEnv;

/// The fake API with the volume and four snapshots `web` adopts by name,
/// and an environment whose daemon limit is 2 with `web` (retention 1, plus
/// `extra` flags) on the volume. A run makes a fifth snapshot, so its prune
/// plans four deletions.
async fn four_old_snapshots(extra: &[&str]) -> (FakeHandle, TestEnv) {
    let fake = FakeDigitalOcean::start(FakeConfig::default())
        .await
        .expect("fake DigitalOcean");
    let volume = VOLUME.parse().expect("uuid");
    fake.add_volume(volume, "data");
    for day in 1..=4 {
        let at = Utc
            .with_ymd_and_hms(2026, 1, day, 3, 0, 0)
            .single()
            .expect("valid time");
        fake.add_snapshot(
            Resource::Volume(volume),
            &format!("web-{}", at.format("%Y%m%d_%H%M%S")),
            at,
        );
    }
    let config =
        config_with_do_api(fake.url()).replace("[daemon]\n", "[daemon]\nmax_deletes_per_run = 2\n");
    let env = TestEnv::new(&config);
    let target = format!("volume:{VOLUME}");
    let mut add = vec![
        "def",
        "add",
        "web",
        "--provider",
        "do",
        "--target",
        &target,
        "--schedule",
        "0 3 * * *",
        "--retention",
        "1",
    ];
    add.extend_from_slice(extra);
    env.ok(&add);
    (fake, env)
}

fn run_web(env: &TestEnv) -> Value {
    let (code, out, err) = env.run_env(&["run", "web", "--wait", "--json"], &[DO_TOKEN]);
    assert_eq!(code, 0, "run failed: {err}");
    serde_json::from_str(&out).expect("run --json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_beyond_the_limit_is_blocked_until_applied_with_yes() {
    let (fake, env) = four_old_snapshots(&[]).await;
    tokio::task::block_in_place(|| {
        let run = run_web(&env);
        assert_eq!(run["state"], "succeeded", "{run}");
        assert_eq!(run["error_class"], "prune_blocked", "{run}");
        let error = run["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("deletes 4 snapshots") && error.contains("max_deletes_per_run 2"),
            "{error}"
        );
        assert_eq!(
            fake.snapshots().len(),
            5,
            "a blocked prune deleted something"
        );
        assert_blocked(&env, true);

        // Off a terminal, applying the plan takes --yes.
        let (code, _out, err) = env.run_env(&["prune", "web"], &[DO_TOKEN]);
        assert_eq!(code, 2, "{err}");
        assert_no_panic(&err);
        assert!(
            err.contains("deletes 4 snapshots") && err.contains("--yes"),
            "the refusal does not say how to apply: {err}"
        );
        assert_eq!(fake.snapshots().len(), 5);

        let (code, out, err) = env.run_env(&["prune", "web", "--yes", "--json"], &[DO_TOKEN]);
        assert_eq!(code, 0, "{err}");
        let report: Value = serde_json::from_str(&out).expect("prune --json");
        assert_eq!(
            report["deletions"].as_array().map(Vec::len),
            Some(4),
            "{report}"
        );
        let left: Vec<String> = fake.snapshots().into_iter().map(|s| s.name).collect();
        assert_eq!(left, [run["snapshot_name"].as_str().unwrap_or_default()]);
        assert_blocked(&env, false);
    });
}

/// `status` (JSON and text) and `check` show the blocked prune, or not.
fn assert_blocked(env: &TestEnv, blocked: bool) {
    let status = env.json(&["status"]);
    let web = &status[0];
    assert_eq!(web["prune_blocked"].is_object(), blocked, "{status}");
    if blocked {
        let message = web["prune_blocked"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("deletes 4 snapshots"), "{status}");
    }
    let text = env.ok(&["status"]);
    assert_eq!(text.contains("prune blocked: web"), blocked, "{text}");

    // No daemon runs, so the whole verdict is CRITICAL either way; the
    // definition's own line says why.
    let (code, out, err) = env.run(&["check", "--json"]);
    assert_eq!(code, 2, "{out}{err}");
    let verdict: Value = serde_json::from_str(&out).expect("check --json");
    let def = &verdict["definitions"][0];
    let reason = def["reason"].as_str().unwrap_or_default();
    assert_eq!(reason.contains("prune blocked"), blocked, "{verdict}");
    assert_eq!(
        def["state"],
        if blocked { "CRITICAL" } else { "OK" },
        "{verdict}"
    );
    if blocked {
        assert!(
            reason.contains("snapsched prune web --yes"),
            "the check does not say how to apply the plan: {reason}"
        );
        let summary = verdict["summary"].as_str().unwrap_or_default();
        assert!(summary.contains("prune blocked"), "{summary}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_within_the_limit_needs_no_confirmation() {
    let (fake, env) = four_old_snapshots(&["--max-deletes-per-run", "4"]).await;
    tokio::task::block_in_place(|| {
        // Without a run, retention 1 plans three deletions of the four.
        let shown = env.json(&["def", "show", "web"]);
        assert_eq!(shown["max_deletes_per_run"], 4, "{shown}");
        env.ok(&["def", "set", "web", "max_deletes_per_run=2"]);
        let (code, _out, err) = env.run_env(&["prune", "web"], &[DO_TOKEN]);
        assert_eq!(code, 2, "3 planned > 2, so --yes is needed: {err}");
        assert_eq!(fake.snapshots().len(), 4);
        env.ok(&["def", "set", "web", "max_deletes_per_run=3"]);
        let (code, _out, err) = env.run_env(&["prune", "web"], &[DO_TOKEN]);
        assert_eq!(code, 0, "3 planned within a limit of 3: {err}");
        assert_eq!(fake.snapshots().len(), 1);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definition_limit_of_zero_turns_the_guard_off() {
    let (fake, env) = four_old_snapshots(&["--max-deletes-per-run", "0"]).await;
    tokio::task::block_in_place(|| {
        let run = run_web(&env);
        assert_eq!(run["state"], "succeeded", "{run}");
        assert!(run["error_class"].is_null(), "{run}");
        assert_eq!(fake.snapshots().len(), 1);
        env.ok(&["def", "set", "web", "max_deletes_per_run=default"]);
        assert!(env.json(&["def", "show", "web"])["max_deletes_per_run"].is_null());
        let err = env.usage_error(&["def", "set", "web", "max_deletes_per_run=-1"]);
        assert!(
            err.contains("max_deletes_per_run: -1 is out of range"),
            "{err}"
        );
    });
}
