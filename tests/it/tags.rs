//! Tag targets (`target = "tag:web"`) on tokio's paused clock with the
//! in-memory fake provider standing in for DigitalOcean: each slot covers
//! the droplets carrying the tag at that moment, one tag request starts
//! their snapshots, and every droplet is its own unit of runs, snapshots
//! and retention. The same over loopback against the fake DigitalOcean API
//! is in `crash` (a tag target among the definitions killed at random).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use snapsched::clock::Clock;
use snapsched::domain::definition::{DefinitionSpec, Source};
use snapsched::domain::{ProviderKind, Run, RunState, Target};
use snapsched::provider::fake::{Call, FakeProvider};
use snapsched::scheduler::{Providers, Scheduler};
use snapsched::store::Store;
use snapsched_fake_api::digitalocean::{FakeConfig, FakeDigitalOcean, FakeHandle, Resource};
use tokio_util::sync::CancellationToken;

use crate::support::fake::DO_TOKEN;
use crate::support::fixtures::{self, config_with_do_api};
use crate::support::paused::{env, settings, utc, Env};
use crate::support::TestEnv;

/// A tag definition `web` on provider `do` (a DigitalOcean kind backed by
/// the in-memory fake), hourly, keeping `keep` per droplet.
fn tag_spec(keep: u32) -> DefinitionSpec {
    fixtures::spec("do", "tag:web", "web")
        .schedule("0 * * * *")
        .retention(keep)
        .build()
}

fn scheduler(env: &Env, clock: Clock) -> Scheduler<FakeProvider> {
    let map = HashMap::from([(
        "do".to_owned(),
        (env.fake.clone(), ProviderKind::DigitalOcean),
    )]);
    Scheduler::new(
        env.store.clone(),
        Providers::new(map),
        clock,
        settings(),
        CancellationToken::new(),
    )
}

/// Runs of `web` at `slot`, by target (the fan-out is `tag:web`).
async fn runs_at(store: &Store, slot: DateTime<Utc>) -> HashMap<String, Run> {
    store
        .history(Some("web"), 10_000)
        .await
        .expect("history")
        .into_iter()
        .filter(|r| r.slot == slot)
        .map(|r| (r.identity.target.clone(), r))
        .collect()
}

fn droplet_names(fake: &FakeProvider, droplet: u64) -> Vec<String> {
    fake.names(&Target::Droplet(droplet), 1)
}

/// Move virtual time a second at a time (giving the store's threads real
/// time in between) until `done` holds, for at most ten virtual minutes.
async fn advance_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 10 minutes"
        );
        for _ in 0..2000 {
            tokio::task::yield_now().await;
        }
        tokio::time::advance(Duration::from_secs(1)).await;
    }
}

/// Fire the slot at `slot` and run its fan-out and members to their ends.
async fn fire(s: &mut Scheduler<FakeProvider>, env: &Env, clock: Clock, slot: DateTime<Utc>) {
    let now = clock.now();
    tokio::time::advance((slot - now).to_std().expect("slot ahead")).await;
    assert_eq!(s.fire_due().await.expect("fire"), 1, "the tag slot fires");
    settle(env, slot).await;
    s.drain().await;
}

/// Wait until the fan-out of `slot` is final (it ends after its members).
async fn settle(env: &Env, slot: DateTime<Utc>) {
    advance_until("the slot's runs end", async || {
        runs_at(&env.store, slot)
            .await
            .get("tag:web")
            .is_some_and(|r| r.state.is_final())
    })
    .await;
}

async fn start(
    env: &Env,
    spec: &DefinitionSpec,
    at: DateTime<Utc>,
) -> (Scheduler<FakeProvider>, Clock) {
    env.store
        .insert_definition(spec, Source::Cli, None, at)
        .await
        .expect("definition inserted");
    let clock = Clock::tokio(at);
    let mut s = scheduler(env, clock);
    s.start().await.expect("start");
    (s, clock)
}

#[tokio::test]
async fn one_tag_request_per_slot_and_each_droplet_keeps_its_own_retention() {
    let env = env(Duration::from_secs(20)).await;
    for d in [1, 2, 3] {
        env.fake.tag_droplet(d, "web");
    }
    env.fake.tag_droplet(9, "db");
    let t0 = utc(2026, 3, 1, 0, 0, 30);
    let (mut s, clock) = start(&env, &tag_spec(2), t0).await;

    let mut slot = utc(2026, 3, 1, 1, 0, 0);
    for _ in 0..3 {
        fire(&mut s, &env, clock, slot).await;
        let runs = runs_at(&env.store, slot).await;
        assert_eq!(runs.len(), 4, "the fan-out and three members: {runs:#?}");
        for r in runs.values() {
            assert_eq!(r.state, RunState::Succeeded, "{r:#?}");
        }
        slot += chrono::Duration::hours(1);
    }
    assert_eq!(
        env.fake.calls(Call::TagCreate),
        3,
        "one tag request per slot"
    );
    assert_eq!(env.fake.calls(Call::Create), 0, "no droplet asked alone");
    for d in [1, 2, 3] {
        assert_eq!(
            droplet_names(&env.fake, d),
            vec!["web-20260301_020000", "web-20260301_030000"],
            "droplet {d} keeps its own newest two"
        );
    }
    assert!(
        droplet_names(&env.fake, 9).is_empty(),
        "untagged droplet untouched"
    );

    // Droplet 2 leaves the tag and droplet 4 joins it.
    env.fake.untag_droplet(2, "web");
    env.fake.tag_droplet(4, "web");
    fire(&mut s, &env, clock, slot).await;
    let runs = runs_at(&env.store, slot).await;
    let targets: Vec<&str> = {
        let mut t: Vec<&str> = runs.keys().map(String::as_str).collect();
        t.sort();
        t
    };
    assert_eq!(
        targets,
        vec![
            "tag:web",
            "tag:web/droplet:1",
            "tag:web/droplet:3",
            "tag:web/droplet:4"
        ]
    );
    assert_eq!(droplet_names(&env.fake, 4), vec!["web-20260301_040000"]);
    assert_eq!(
        droplet_names(&env.fake, 2),
        vec!["web-20260301_020000", "web-20260301_030000"],
        "a droplet that left keeps its snapshots"
    );
    let parent = tag_spec(2).identity;
    let current: Vec<String> = {
        let mut c: Vec<String> = env
            .store
            .current_members(&parent)
            .await
            .expect("members")
            .into_iter()
            .map(|m| m.target)
            .collect();
        c.sort();
        c
    };
    assert_eq!(
        current,
        vec![
            "tag:web/droplet:1",
            "tag:web/droplet:3",
            "tag:web/droplet:4"
        ]
    );
    assert_eq!(
        env.store.members_of(&parent).await.expect("members").len(),
        4
    );
}

#[tokio::test]
async fn a_locked_droplet_is_left_out_of_the_tag_request_and_retried_alone() {
    let env = env(Duration::from_secs(20)).await;
    for d in [1, 2, 3] {
        env.fake.tag_droplet(d, "web");
    }
    env.fake.lock_droplet(2, true);
    let t0 = utc(2026, 3, 1, 0, 0, 30);
    let (mut s, clock) = start(&env, &tag_spec(5), t0).await;
    let slot = utc(2026, 3, 1, 1, 0, 0);
    tokio::time::advance((slot - clock.now()).to_std().expect("ahead")).await;
    assert_eq!(s.fire_due().await.expect("fire"), 1);
    // The lone create of droplet 2 meets the pending event, then the lock
    // is released and its retry goes through.
    advance_until("droplet 2 tried alone", async || {
        env.fake.calls(Call::Create) > 0
    })
    .await;
    env.fake.lock_droplet(2, false);
    settle(&env, slot).await;
    s.drain().await;

    let runs = runs_at(&env.store, slot).await;
    for r in runs.values() {
        assert_eq!(r.state, RunState::Succeeded, "{r:#?}");
    }
    assert_eq!(runs.len(), 4, "{runs:#?}");
    assert_eq!(env.fake.calls(Call::TagCreate), 1);
    assert_eq!(env.fake.calls(Call::Create), 2, "one refused, one accepted");
    assert_eq!(
        runs["tag:web/droplet:2"].attempts, 3,
        "the tag request, the refused create, the accepted one"
    );
    for d in [1, 2, 3] {
        assert_eq!(droplet_names(&env.fake, d), vec!["web-20260301_010000"]);
    }
}

#[tokio::test]
async fn with_hooks_each_droplet_snapshots_on_its_own() {
    let env = env(Duration::from_secs(20)).await;
    for d in [1, 2] {
        env.fake.tag_droplet(d, "web");
    }
    let mut spec = tag_spec(5);
    assert!(spec
        .hooks
        .set_text("pre_hook", r#"["/bin/true"]"#)
        .expect("pre_hook"));
    let t0 = utc(2026, 3, 1, 0, 0, 30);
    let (mut s, clock) = start(&env, &spec, t0).await;
    let slot = utc(2026, 3, 1, 1, 0, 0);
    fire(&mut s, &env, clock, slot).await;
    let runs = runs_at(&env.store, slot).await;
    assert_eq!(runs.len(), 3, "{runs:#?}");
    for r in runs.values() {
        assert_eq!(r.state, RunState::Succeeded, "{r:#?}");
    }
    assert_eq!(env.fake.calls(Call::TagCreate), 0);
    assert_eq!(env.fake.calls(Call::Create), 2);
}

#[tokio::test]
async fn a_failed_droplet_fails_the_slot_and_names_it_while_the_others_succeed() {
    let env = env(Duration::ZERO).await;
    for d in [1, 2] {
        env.fake.tag_droplet(d, "web");
    }
    let t0 = utc(2026, 3, 1, 0, 0, 30);
    let (mut s, clock) = start(&env, &tag_spec(5), t0).await;
    // The tag request fails outright: each droplet creates on its own, and
    // the first of them is refused for good.
    env.fake.fail_next(
        Call::TagCreate,
        snapsched::provider::ProviderError::transient("503 from the tag request"),
    );
    env.fake.fail_next(
        Call::Create,
        snapsched::provider::ProviderError::permanent("droplet 1 not found"),
    );
    let slot = utc(2026, 3, 1, 1, 0, 0);
    fire(&mut s, &env, clock, slot).await;
    let runs = runs_at(&env.store, slot).await;
    let parent = &runs["tag:web"];
    assert_eq!(parent.state, RunState::Failed, "{parent:#?}");
    // Which droplet's create meets the failure is up to the store's timing.
    let failed: Vec<&Run> = runs
        .values()
        .filter(|r| r.state == RunState::Failed && r.identity.target != "tag:web")
        .collect();
    assert_eq!(failed.len(), 1, "{runs:#?}");
    let droplet = failed[0]
        .identity
        .target
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let error = parent.error.as_deref().unwrap_or_default();
    assert_eq!(
        error,
        format!("1 of 2 droplets failed: {droplet}: droplet 1 not found")
    );
    let succeeded = runs
        .values()
        .filter(|r| r.state == RunState::Succeeded)
        .count();
    assert_eq!(succeeded, 1, "{runs:#?}");
}

/// The fake DigitalOcean API in real time (actions of 200 ms) with droplets
/// 1-3 tagged `web` and 9 tagged `db`, and a definition `web` (added with
/// the CLI) covering `tag:web`, keeping two snapshots per droplet.
async fn fake_fleet() -> (FakeHandle, TestEnv) {
    let fake = FakeDigitalOcean::start(FakeConfig {
        action_duration: Duration::from_millis(200),
        real_time: true,
        ..FakeConfig::default()
    })
    .await
    .expect("fake DigitalOcean");
    for d in [1, 2, 3, 9] {
        fake.add_droplet(d, &format!("node-{d}"));
        fake.tag_droplet(d, if d == 9 { "db" } else { "web" });
    }
    let config = config_with_do_api(fake.url()).replacen(
        "api_url = \"",
        "poll_interval = \"100ms\"\npoll_max_interval = \"200ms\"\napi_url = \"",
        1,
    );
    let env = TestEnv::new(&config);
    let (code, _, err) = env.run_env(
        &[
            "def",
            "add",
            "web",
            "--provider",
            "do",
            "--target",
            "tag:web",
            "--schedule",
            "0 3 * * *",
            "--retention",
            "2",
        ],
        &[DO_TOKEN],
    );
    assert_eq!(code, 0, "{err}");
    (fake, env)
}

fn json_do(env: &TestEnv, args: &[&str]) -> Value {
    let (code, out, err) = env.run_env(args, &[DO_TOKEN]);
    assert_eq!(code, 0, "snapsched {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: bad JSON ({e}): {out}"))
}

fn names_of(fake: &FakeHandle, droplet: u64) -> Vec<String> {
    let mut v: Vec<String> = fake
        .snapshots_of(Resource::Droplet(droplet))
        .into_iter()
        .map(|s| s.name)
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_binary_a_tag_target_snapshots_each_droplet_and_orphans_one_that_leaves() {
    let (fake, env) = fake_fleet().await;
    for _ in 0..3 {
        let run = json_do(&env, &["run", "web", "--wait", "--json"]);
        assert_eq!(run["state"], "succeeded", "{run}");
        assert_eq!(run["target"], "tag:web", "{run}");
    }
    assert_eq!(
        fake.requests("POST /v2/droplets/actions"),
        3,
        "one tag request a run"
    );
    assert_eq!(fake.requests("POST /v2/droplets/{droplet_id}/actions"), 0);
    for d in [1, 2, 3] {
        assert_eq!(
            names_of(&fake, d).len(),
            2,
            "droplet {d}: {:?}",
            names_of(&fake, d)
        );
    }
    assert!(names_of(&fake, 9).is_empty());

    let status = json_do(&env, &["status", "--json"]);
    let web = &status[0];
    assert_eq!(web["snapshots"], 6, "{web}");
    let members = web["members"].as_array().expect("members");
    let shown: Vec<(&str, bool, i64)> = members
        .iter()
        .map(|m| {
            (
                m["target"].as_str().unwrap_or_default(),
                m["current"].as_bool().unwrap_or_default(),
                m["snapshots"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        vec![
            ("tag:web/droplet:1", true, 2),
            ("tag:web/droplet:2", true, 2),
            ("tag:web/droplet:3", true, 2)
        ]
    );
    let table = env.ok(&["status"]);
    assert!(
        table.contains("droplet 2") && table.contains("tag:web/droplet:2"),
        "{table}"
    );

    // Droplet 2 leaves the tag: the next run does not cover it, its two
    // snapshots stay and are listed as orphaned, never pruned.
    fake.untag_droplet(2, "web");
    let run = json_do(&env, &["run", "web", "--wait", "--json"]);
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(names_of(&fake, 2).len(), 2);
    let orphaned = json_do(&env, &["snapshots", "--orphaned", "--json"]);
    let orphaned: Vec<&str> = orphaned
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["target"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(orphaned, vec!["tag:web/droplet:2"; 2]);
    let listed = json_do(&env, &["snapshots", "web", "--json"]);
    let present = listed
        .as_array()
        .expect("array")
        .iter()
        .filter(|s| s["state"] == "present")
        .count();
    assert_eq!(present, 6, "{listed}");
    let status = json_do(&env, &["status", "--json"]);
    assert_eq!(status[0]["members"][1]["current"], true);
    assert_eq!(
        status[0]["members"][2]["target"], "tag:web/droplet:2",
        "the departed member is listed last"
    );
    assert_eq!(status[0]["members"][2]["current"], false);

    // Pruning is per droplet.
    let (code, _, err) = env.run_env(&["prune", "web", "--dry-run"], &[DO_TOKEN]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--target tag:web/droplet:ID"), "{err}");
    let plan = json_do(
        &env,
        &[
            "prune",
            "web",
            "--target",
            "tag:web/droplet:1",
            "--dry-run",
            "--json",
        ],
    );
    assert!(plan.to_string().contains("web-"), "{plan}");

    // Removing the definition with its snapshots deletes every member's,
    // the departed droplet's included.
    let (code, _, err) = env.run_env(
        &["def", "rm", "web", "--delete-snapshots", "--yes"],
        &[DO_TOKEN],
    );
    assert_eq!(code, 0, "{err}");
    for d in [1, 2, 3] {
        assert!(
            names_of(&fake, d).is_empty(),
            "droplet {d}: {:?}",
            names_of(&fake, d)
        );
    }
    assert!(
        fake.contract_violations().is_empty(),
        "{:?}",
        fake.contract_violations()
    );
}
