//! Cross-region copies of droplet snapshots, end to end: the real binary
//! (`snapsched run`) against the fake DigitalOcean API over loopback, on
//! the suite's store backend. Transfers are image actions at the fake; its
//! contract check must see no violation.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use snapsched::domain::{CopyState, Target};
use snapsched::provider::digitalocean::{DigitalOcean, DigitalOceanSettings};
use snapsched::provider::{CopyPoll, CopyRequest, CopyStart, Provider};
use snapsched::secret::Secret;
use snapsched_fake_api::digitalocean::{FakeConfig, FakeDigitalOcean, FakeHandle, Resource};

use crate::support::fake::{DO_TOKEN, VOLUME};
use crate::support::fixtures::config_with_do_api;
use crate::support::process::assert_no_panic;
use crate::support::TestEnv;

const DROPLET: u64 = 3164444;
const POST_TRANSFER: &str = "POST /v2/images/{image_id}/actions";

/// The fake with one droplet; its actions (snapshots and transfers) take
/// `action`, in real time or only as the test advances the clock.
async fn fake(action: Duration, real_time: bool) -> FakeHandle {
    let fake = FakeDigitalOcean::start(FakeConfig {
        action_duration: action,
        real_time,
        ..FakeConfig::default()
    })
    .await
    .expect("fake DigitalOcean");
    fake.add_droplet(DROPLET, "web-01");
    fake
}

/// An environment whose `web` definition snapshots the droplet and copies
/// each snapshot to ams3 and fra1, polling every 100-200 ms.
fn env_for(fake: &FakeHandle) -> TestEnv {
    let config = config_with_do_api(fake.url()).replace(
        "kind = \"digitalocean\"\n",
        "kind = \"digitalocean\"\npoll_interval = \"100ms\"\npoll_max_interval = \"200ms\"\n",
    );
    let env = TestEnv::new(&config);
    env.ok(&[
        "def",
        "add",
        "web",
        "--provider",
        "do",
        "--target",
        &format!("droplet:{DROPLET}"),
        "--schedule",
        "0 3 * * *",
        "--retention",
        "5",
        "--copy-regions",
        "ams3,fra1",
    ]);
    env
}

fn assert_contract(fake: &FakeHandle) {
    let v = fake.contract_violations();
    assert!(v.is_empty(), "contract violations: {v:#?}");
}

fn regions(row: &Value) -> Vec<String> {
    row["regions"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect()
}

/// No image got two transfers to one region.
fn assert_one_transfer_per_region(fake: &FakeHandle) {
    let all = fake.transfers();
    let distinct: BTreeSet<_> = all.iter().map(|t| (&t.image, &t.region)).collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "a region got a second transfer: {all:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_is_copied_to_every_region_and_listed_with_them() {
    let fake = fake(Duration::from_millis(300), true).await;
    let env = env_for(&fake);
    let env_ref = &env;
    let (code, out, err) =
        tokio::task::block_in_place(|| env_ref.run_env(&["run", "web", "--json"], &[DO_TOKEN]));
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert_no_panic(&err);
    let run: Value = serde_json::from_str(&out).expect("run --json");
    assert_eq!(run["state"], "succeeded", "{run}");
    assert!(run["error_class"].is_null(), "{run}");

    let snaps = fake.snapshots_of(Resource::Droplet(DROPLET));
    assert_eq!(snaps.len(), 1, "{snaps:#?}");
    assert_eq!(snaps[0].regions, ["nyc3", "ams3", "fra1"]);
    assert_eq!(fake.requests(POST_TRANSFER), 2);
    assert_one_transfer_per_region(&fake);

    let rows = tokio::task::block_in_place(|| env_ref.json(&["snapshots", "web"]));
    let row = &rows[0];
    assert_eq!(regions(row), ["nyc3", "ams3", "fra1"], "{rows}");
    let copies = row["copies"].as_array().expect("copies");
    assert_eq!(copies.len(), 2, "{rows}");
    assert!(copies.iter().all(|c| c["state"] == "done"), "{rows}");
    let table = tokio::task::block_in_place(|| env_ref.ok(&["snapshots", "web", "--utc"]));
    assert!(table.contains("nyc3, ams3, fra1"), "{table}");
    // Created in the output's one zone, named, as every human time.
    let created =
        chrono::DateTime::parse_from_rfc3339(row["created_at"].as_str().expect("created_at"))
            .expect("RFC 3339")
            .with_timezone(&chrono::Utc);
    let shown = created.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    assert!(table.contains(&shown), "{shown} in\n{table}");
    assert_eq!(check_state(env_ref), "OK");
    assert_contract(&fake);
}

/// `check web`'s verdict on the definition (no daemon runs, so the whole
/// verdict is CRITICAL for that).
fn check_state(env: &TestEnv) -> String {
    let (_, out, err) = tokio::task::block_in_place(|| env.run(&["check", "web", "--json"]));
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    format!(
        "{}{}",
        v["definitions"][0]["state"].as_str().unwrap_or("?"),
        match v["definitions"][0]["reason"].as_str() {
            Some(r) if v["definitions"][0]["state"] != "OK" => format!(": {r}"),
            _ => String::new(),
        }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_that_fails_every_attempt_is_a_copy_failed_warning() {
    let fake = fake(Duration::from_millis(300), true).await;
    fake.fail_transfers_to("fra1", snapsched::run::COPY_ATTEMPTS);
    let env = env_for(&fake);
    let env_ref = &env;
    let (code, out, err) =
        tokio::task::block_in_place(|| env_ref.run_env(&["run", "web", "--json"], &[DO_TOKEN]));
    assert_eq!(
        code, 0,
        "the snapshot is made: stdout: {out}\nstderr: {err}"
    );
    let run: Value = serde_json::from_str(&out).expect("run --json");
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["error_class"], "copy_failed", "{run}");
    assert!(
        run["error"].as_str().is_some_and(|e| e.contains("fra1")),
        "{run}"
    );
    assert!(err.contains("copy_failed"), "no warning logged: {err}");

    let snaps = fake.snapshots_of(Resource::Droplet(DROPLET));
    assert_eq!(snaps[0].regions, ["nyc3", "ams3"]);
    let to_fra1 = fake
        .transfers()
        .iter()
        .filter(|t| t.region == "fra1")
        .count();
    assert_eq!(to_fra1 as u32, snapsched::run::COPY_ATTEMPTS);

    let rows = tokio::task::block_in_place(|| env_ref.json(&["snapshots", "web"]));
    assert_eq!(regions(&rows[0]), ["nyc3", "ams3"], "{rows}");
    let fra1 = rows[0]["copies"]
        .as_array()
        .expect("copies")
        .iter()
        .find(|c| c["region"] == "fra1")
        .cloned()
        .expect("fra1 copy");
    assert_eq!(fra1["state"], "failed", "{rows}");
    assert_eq!(fra1["attempts"], snapsched::run::COPY_ATTEMPTS, "{rows}");
    let table = tokio::task::block_in_place(|| env_ref.ok(&["snapshots", "web"]));
    assert!(table.contains("fra1 failed"), "{table}");

    // Not a full success: check warns, naming the region.
    let state = check_state(env_ref);
    assert!(
        state.starts_with("WARNING: latest copy failed to fra1"),
        "{state}"
    );
    let (_, out, _) = tokio::task::block_in_place(|| env_ref.run(&["check", "web"]));
    assert!(out.contains("copy failed") && out.contains("fra1"), "{out}");

    // The next snapshot reaches fra1: check is OK again.
    let (code, out, err) =
        tokio::task::block_in_place(|| env_ref.run_env(&["run", "web", "--json"], &[DO_TOKEN]));
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert_eq!(check_state(env_ref), "OK");
    assert_contract(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_while_transfers_are_in_flight_resumes_them_without_a_second_transfer() {
    // Frozen clock: the snapshot and the transfers end only when the test
    // moves it.
    let fake = fake(Duration::from_secs(180), false).await;
    let env = env_for(&fake);
    let store = crate::support::db::open(&env.db()).await;
    let mut first = env
        .command(&["run", "web"])
        .env(DO_TOKEN.0, DO_TOKEN.1)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn snapsched run");
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.actions_in_progress() == 0 {
        assert!(Instant::now() < deadline, "no snapshot action started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fake.advance(Duration::from_secs(200));
    let copying = loop {
        let copies = store.copies(Some("web")).await.expect("copies");
        if copies.len() == 2 && copies.iter().all(|c| c.state == CopyState::Copying) {
            break copies;
        }
        assert!(
            Instant::now() < deadline,
            "the transfers never got under way: {copies:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    assert_eq!(fake.transfers_in_progress(), 2);
    assert_eq!(fake.requests(POST_TRANSFER), 2);

    // The next `snapsched run` finishes the killed run first, then makes
    // its own snapshot; the clock moves until it is done.
    let mut second = env
        .command(&["run", "web"])
        .env(DO_TOKEN.0, DO_TOKEN.1)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn snapsched run");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = second.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the second run did not end");
        fake.advance(Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut err = String::new();
    if let Some(mut e) = second.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "{err}");
    assert_no_panic(&err);

    // Each snapshot: one transfer per region, and in every region.
    assert_one_transfer_per_region(&fake);
    let snaps = fake.snapshots_of(Resource::Droplet(DROPLET));
    assert_eq!(snaps.len(), 2, "{snaps:#?}");
    for s in &snaps {
        assert_eq!(s.regions, ["nyc3", "ams3", "fra1"], "{s:#?}");
    }
    let killed = &copying[0].snapshot;
    let after = store.copies(Some("web")).await.expect("copies");
    let of_killed: Vec<_> = after.iter().filter(|c| &c.snapshot == killed).collect();
    assert!(
        of_killed.len() == 2
            && of_killed
                .iter()
                .all(|c| c.state == CopyState::Done && c.attempts == 1),
        "{after:#?}"
    );
    // The resumed copies polled the recorded actions.
    for c in &copying {
        let same = after
            .iter()
            .find(|a| a.snapshot == c.snapshot && a.region == c.region)
            .expect("row");
        assert_eq!(same.operation_id, c.operation_id);
    }
    assert_contract(&fake);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_may_have_been_sent_follows_the_transfer_under_way() {
    let fake = fake(Duration::from_secs(180), false).await;
    let image = fake.add_snapshot(Resource::Droplet(DROPLET), "web-1", fake.now());
    let mut settings = DigitalOceanSettings::new("do", Secret::new("fake-do-token"));
    settings.api_url = fake.url().parse().expect("url");
    let p = DigitalOcean::new(settings).expect("provider");
    let req = |region: &str, may_exist: bool| CopyRequest {
        target: Target::Droplet(DROPLET),
        snapshot_id: image.clone(),
        region: region.to_owned(),
        may_exist,
    };
    let CopyStart::Started(op) = p.start_copy(&req("ams3", false)).await.expect("start") else {
        panic!("the image is not in ams3 yet");
    };
    // A retry (or a resumed run) that does not know whether its request
    // arrived: the transfer under way is followed, not sent again.
    let again = p.start_copy(&req("ams3", true)).await.expect("start again");
    assert_eq!(again, CopyStart::Started(op.clone()));
    assert_eq!(fake.requests(POST_TRANSFER), 1);
    assert_eq!(
        p.poll_copy(&req("ams3", true), &op).await.expect("poll"),
        CopyPoll::Pending
    );
    fake.advance(Duration::from_secs(200));
    assert_eq!(
        p.poll_copy(&req("ams3", true), &op).await.expect("poll"),
        CopyPoll::Done
    );
    // Done before: found in the image's regions.
    assert_eq!(
        p.start_copy(&req("ams3", true)).await.expect("start"),
        CopyStart::AlreadyThere
    );
    // Sent blind: the API's 422 for a region the image is in is a copy done.
    assert_eq!(
        p.start_copy(&req("ams3", false)).await.expect("start"),
        CopyStart::AlreadyThere
    );
    assert_eq!(
        p.snapshot_regions(&Target::Droplet(DROPLET), &image)
            .await
            .expect("regions"),
        ["nyc3", "ams3"]
    );
    // An unknown region is refused for good.
    let e = p.start_copy(&req("xyz9", false)).await.unwrap_err();
    assert!(!e.is_transient(), "{e}");
    assert!(e.message.contains("xyz9"), "{e}");
    // A volume snapshot is no image.
    let vol = CopyRequest {
        target: Target::Volume(VOLUME.parse().expect("uuid")),
        ..req("ams3", false)
    };
    assert!(p
        .start_copy(&vol)
        .await
        .unwrap_err()
        .message
        .contains("volume snapshots"));
    // The 422 answers are the spec's default error body; the one unknown
    // region passes the request's anyOf (see fake-api/spec/README.md).
    assert_contract(&fake);
}

#[test]
fn copy_regions_on_a_volume_are_refused_naming_key_and_value() {
    let volume_def = format!(
        "[[definitions]]\nname = \"db\"\nprovider = \"do\"\ntarget = \"volume:{VOLUME}\"\nschedule = \"0 3 * * *\"\nretention = 3\ncopy_regions = [\"ams3\"]\n"
    );
    let env = TestEnv::base_with(&volume_def);
    let err = env.usage_error(&["config", "check"]);
    assert!(
        err.contains("copy_regions")
            && err.contains("ams3")
            && err.contains("volume snapshots cannot be transferred"),
        "{err}"
    );

    let env = TestEnv::base();
    let err = env.usage_error(&[
        "def",
        "add",
        "db",
        "--provider",
        "do",
        "--target",
        &format!("volume:{VOLUME}"),
        "--schedule",
        "0 3 * * *",
        "--retention",
        "3",
        "--copy-regions",
        "ams3",
    ]);
    assert!(
        err.contains("copy_regions") && err.contains("ams3") && err.contains("volume"),
        "{err}"
    );
    crate::support::fake::add_web(&env, "do", &format!("volume:{VOLUME}"));
    let err = env.usage_error(&["def", "set", "web", "copy_regions=fra1"]);
    assert!(
        err.contains("copy_regions") && err.contains("fra1") && err.contains("volume"),
        "{err}"
    );
    let err = env.usage_error(&["def", "set", "web", "--copy-regions", "fra1"]);
    assert!(err.contains("copy_regions"), "{err}");
    // A droplet takes them, and they show.
    env.add_droplet("app", DROPLET);
    env.ok(&["def", "set", "app", "copy_regions=ams3,fra1"]);
    let show = env.json(&["def", "show", "app"]);
    assert_eq!(
        show["copy_regions"],
        serde_json::json!(["ams3", "fra1"]),
        "{show}"
    );
    env.ok(&["def", "set", "app", "copy_regions=none"]);
    let show = env.json(&["def", "show", "app"]);
    assert_eq!(show["copy_regions"], serde_json::json!([]), "{show}");
}
