//! Webhook notifications through the real binary: runs driven by
//! `snapsched run` against the fake DigitalOcean API queue events in the
//! store; `snapsched daemon` delivers them to a receiver on 127.0.0.1 that
//! the test starts and switches between accepting, answering 503 and not
//! answering at all. Each event arrives once and in order, across a daemon
//! restart; a failing definition sends one failure until it recovers; no
//! token (header or URL path) appears in a payload or a log.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::Value;
use snapsched_fake_api::digitalocean::{
    FakeConfig, FakeDigitalOcean, FakeHandle, Fault, FaultRule, Resource,
};

use crate::support::cluster::{Cluster, STARTED};
use crate::support::db;
use crate::support::fake::{DO_TOKEN, VOLUME};
use crate::support::receiver::{Mode, Receiver};
use crate::support::write_file;

/// The token the receiver expects in `Authorization`, from the headers file.
const TOKEN: &str = "Bearer hook-t0ken-5f3a9c";
/// A token in the URL's path, as chat webhooks have it.
const PATH_SECRET: &str = "path-s3cret-81d2";
const CREATE: &str = "POST /v2/volumes/{volume_id}/snapshots";
const WAIT: Duration = Duration::from_secs(30);
/// The line the daemon logs once its delivery task runs.
const DELIVERING: &str = "webhook notifications on";

/// The fake API, the receiver, and `n` daemons sharing one store whose
/// definition `web` (retention `retention`) snapshots the fake's volume.
struct Setup {
    fake: FakeHandle,
    receiver: Receiver,
    cluster: Cluster,
    store_path: PathBuf,
    _shared: tempfile::TempDir,
}

impl Setup {
    async fn new(n: usize, mode: Mode, daemon_extra: &str, retention: u32) -> Setup {
        let fake = FakeDigitalOcean::start(FakeConfig::default())
            .await
            .expect("fake DigitalOcean");
        fake.add_volume(VOLUME.parse().expect("uuid"), "data");
        let receiver = Receiver::start(mode).await;
        let shared = tempfile::tempdir().expect("temp dir");
        let store_path = shared.path().join("snapsched.db");
        let headers = shared.path().join("webhook.headers");
        write_file(
            &headers,
            &format!("# the receiver's token\nAuthorization: {TOKEN}\n"),
            0o600,
        );
        let config = format!(
            r#"
[daemon]
database = "{database}"
timezone = "UTC"
shutdown_grace = "2s"
log_level = "info"
{daemon_extra}

[notify]
webhook_url = "{url}"
webhook_headers_file = "{headers}"
timeout = "2s"
retry_initial = "50ms"
retry_max = "250ms"

[providers.do]
kind = "digitalocean"
token_env = "{token_var}"
api_url = "{api}"
"#,
            database = db::database_setting(&store_path),
            url = receiver.url(&format!("/hooks/T0/{PATH_SECRET}")),
            headers = headers.display(),
            token_var = DO_TOKEN.0,
            api = fake.url(),
        );
        let cluster = Cluster::new(n, &[DO_TOKEN], |_| config.clone());
        let setup = Setup {
            fake,
            receiver,
            cluster,
            store_path,
            _shared: shared,
        };
        // A schedule that does not fire while the test runs: every run here
        // is a manual one.
        let target = format!("volume:{VOLUME}");
        let retention = retention.to_string();
        setup.cli_ok(&[
            "def",
            "add",
            "web",
            "--provider",
            "do",
            "--target",
            &target,
            "--schedule",
            "0 3 1 1 *",
            "--retention",
            &retention,
        ]);
        setup
    }

    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        self.cluster.nodes[0].env.run_env(args, &[DO_TOKEN])
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.cli(args);
        assert_eq!(code, 0, "snapsched {args:?}: {err}");
        out
    }

    /// `snapsched run web --wait --json`, failing at the provider when
    /// `fail` (a 422 on the create, a permanent error); the run as JSON.
    fn run_web(&self, fail: bool) -> Value {
        if fail {
            self.fake
                .inject(FaultRule::new(Some(CREATE), Fault::Status(422), 1));
        }
        let (_code, out, err) = self.cli(&["run", "web", "--wait", "--json"]);
        let run: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("run --json ({e}): {out}\nstderr: {err}"));
        let want = if fail { "failed" } else { "succeeded" };
        assert_eq!(run["state"], want, "{run}\n{err}");
        run
    }

    fn start(&mut self, i: usize) {
        self.cluster.spawn(i);
        self.cluster.wait_for_log(i, STARTED, WAIT);
        self.cluster.wait_for_log(i, DELIVERING, WAIT);
    }

    /// The queued events' kinds, oldest first, read from the store.
    async fn queued(&self) -> Vec<String> {
        let store = db::open(&self.store_path).await;
        let out = store
            .notify_queued()
            .await
            .expect("queue")
            .into_iter()
            .map(|e| e.kind.as_str().to_owned())
            .collect();
        store.close().await;
        out
    }

    /// Wait until the receiver accepted `n` events and the queue is empty,
    /// so no further event can arrive.
    async fn wait_delivered(&self, n: usize) {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let accepted = self.receiver.accepted().len();
            if accepted >= n && self.queued().await.is_empty() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{accepted} of {n} events delivered; still queued: {:?}\n{}",
                self.queued().await,
                self.cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every body the receiver accepted, in order.
    fn accepted(&self) -> Vec<Value> {
        self.receiver.accepted().iter().map(|r| r.json()).collect()
    }

    /// No request body and no daemon log holds a token.
    fn assert_no_secret_leaked(&self) {
        for r in self.receiver.requests() {
            for secret in [TOKEN, PATH_SECRET, "hook-t0ken"] {
                assert!(
                    !r.body.contains(secret),
                    "a payload holds a secret: {}",
                    r.body
                );
            }
            assert_eq!(
                r.headers.get("authorization").and_then(|v| v.to_str().ok()),
                Some(TOKEN),
                "the headers file's token was not sent"
            );
            assert_eq!(r.path, format!("/hooks/T0/{PATH_SECRET}"));
        }
        for secret in ["hook-t0ken", PATH_SECRET] {
            let lines = self.cluster.grep(secret);
            assert!(lines.is_empty(), "a log line holds a secret: {lines:#?}");
        }
    }
}

fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_once_in_order_across_a_restart_while_the_receiver_is_down() {
    let mut s = Setup::new(1, Mode::Unavailable, "", 2).await;
    let (failed, recovered) = tokio::task::block_in_place(|| {
        s.start(0);
        let failed = s.run_web(true);
        s.run_web(true);
        let recovered = s.run_web(false);
        // The receiver answers 503: the daemon keeps retrying the head.
        s.receiver
            .wait_for("three 503 answers", WAIT, |r| r.requests().len() >= 3);
        assert!(s.receiver.accepted().is_empty());
        let tried: Vec<Value> = s.receiver.requests().iter().map(|r| r.json()).collect();
        assert!(
            tried
                .iter()
                .all(|e| e["event"] == "run_failed" && e["run"]["id"] == failed["id"]),
            "a later event was sent before the head was accepted: {tried:#?}"
        );
        s.cluster.terminate_all();
        (failed, recovered)
    });
    assert_eq!(s.queued().await, ["run_failed", "run_recovered"]);

    // With the daemon stopped, another failure queues a third event; the
    // receiver is not listening when the daemon comes back.
    s.receiver.set_mode(Mode::Down);
    let failed_again = tokio::task::block_in_place(|| {
        let failed_again = s.run_web(true);
        s.start(0);
        s.receiver.wait_for("refused connections", WAIT, |r| {
            r.refused_connections() >= 2
        });
        assert!(s.receiver.accepted().is_empty());
        s.receiver.set_mode(Mode::Accept);
        failed_again
    });
    s.wait_delivered(3).await;
    let got = s.accepted();
    assert_eq!(
        kinds(&got),
        ["run_failed", "run_recovered", "run_failed"],
        "{got:#?}"
    );
    let run_ids: Vec<&Value> = got.iter().map(|e| &e["run"]["id"]).collect();
    assert_eq!(
        run_ids,
        [&failed["id"], &recovered["id"], &failed_again["id"]]
    );
    let mut ids: Vec<&str> = got.iter().filter_map(|e| e["event_id"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "an event was delivered twice: {got:#?}");
    assert_eq!(got[1]["failures"]["count"], 2, "{:#}", got[1]);
    tokio::task::block_in_place(|| {
        s.assert_no_secret_leaked();
        s.cluster.terminate_all();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_failing_runs_send_one_failure_and_a_success_one_recovery() {
    let mut s = Setup::new(1, Mode::Accept, "", 2).await;
    let (first, success) = tokio::task::block_in_place(|| {
        s.start(0);
        let first = s.run_web(true);
        s.run_web(true);
        s.run_web(true);
        let success = s.run_web(false);
        (first, success)
    });
    s.wait_delivered(2).await;
    let got = s.accepted();
    assert_eq!(kinds(&got), ["run_failed", "run_recovered"], "{got:#?}");

    let f = &got[0];
    assert_eq!(f["schema"], 1);
    assert_eq!(
        f["definition"],
        serde_json::json!({
            "name": "web",
            "provider": "do",
            "target": format!("volume:{VOLUME}"),
            "disk": 1,
        })
    );
    let run = &f["run"];
    assert_eq!(run["id"], first["id"]);
    assert_eq!(run["slot"], first["slot"]);
    assert_eq!(run["trigger"], "manual");
    assert_eq!(run["result"], "failed");
    assert_eq!(run["error_class"], "permanent");
    assert_eq!(run["error"], first["error"]);
    assert_eq!(run["snapshot_name"], first["snapshot_name"]);
    assert!(
        run["duration_seconds"].as_f64().is_some_and(|d| d >= 0.0),
        "{run}"
    );
    assert!(
        run["total_seconds"].as_f64().is_some_and(|d| d >= 0.0),
        "{run}"
    );
    assert!(
        f["node"]["hostname"]
            .as_str()
            .is_some_and(|h| !h.is_empty()),
        "{f}"
    );
    assert!(
        f["summary"].as_str().unwrap_or_default().contains("web"),
        "{f}"
    );

    let r = &got[1];
    assert_eq!(r["run"]["id"], success["id"]);
    assert_eq!(r["run"]["result"], "succeeded");
    assert_eq!(r["run"]["snapshot_id"], success["snapshot_id"]);
    assert_eq!(r["failures"]["count"], 3, "{r}");
    assert_eq!(r["failures"]["first_run_id"], first["id"], "{r}");
    tokio::task::block_in_place(|| {
        s.assert_no_secret_leaked();
        s.cluster.terminate_all();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_prune_and_a_snapshot_deleted_by_hand_are_notified() {
    let mut s = Setup::new(1, Mode::Accept, "max_deletes_per_run = 2", 1).await;
    let volume = VOLUME.parse().expect("uuid");
    for day in 1..=4 {
        let at = Utc
            .with_ymd_and_hms(2026, 1, day, 3, 0, 0)
            .single()
            .expect("valid time");
        s.fake.add_snapshot(
            Resource::Volume(volume),
            &format!("web-{}", at.format("%Y%m%d_%H%M%S")),
            at,
        );
    }
    let gone = tokio::task::block_in_place(|| {
        s.start(0);
        // Retention 1 after a fifth snapshot plans four deletions; the
        // limit is 2.
        let blocked = s.run_web(false);
        assert_eq!(blocked["error_class"], "prune_blocked", "{blocked}");
        s.cli_ok(&["prune", "web", "--yes"]);
        // Someone deletes the one snapshot left in the console.
        let name = blocked["snapshot_name"].as_str().expect("name").to_owned();
        assert!(s.fake.remove_snapshot(&name));
        s.run_web(false);
        (blocked, name)
    });
    s.wait_delivered(2).await;
    let got = s.accepted();
    assert_eq!(kinds(&got), ["prune_blocked", "snapshot_gone"], "{got:#?}");
    let (blocked, name) = gone;
    assert_eq!(got[0]["run"]["id"], blocked["id"]);
    assert_eq!(got[0]["run"]["error_class"], "prune_blocked");
    assert!(
        got[0]["run"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("deletes 4 snapshots")),
        "{:#}",
        got[0]
    );
    assert_eq!(got[1]["snapshot"]["name"], name.as_str());
    assert_eq!(got[1]["snapshot"]["id"], blocked["snapshot_id"]);
    assert_eq!(got[1]["snapshot"]["run_id"], blocked["id"]);
    assert_eq!(got[1]["definition"]["name"], "web");
    tokio::task::block_in_place(|| {
        s.assert_no_secret_leaked();
        s.cluster.terminate_all();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_store_deliver_each_event_once() {
    let mut s = Setup::new(2, Mode::Accept, "", 2).await;
    tokio::task::block_in_place(|| {
        s.start(0);
        s.start(1);
        // Fail, recover, fail, recover: four events, whichever node sends.
        for fail in [true, false, true, false] {
            s.run_web(fail);
        }
    });
    s.wait_delivered(4).await;
    let got = s.accepted();
    assert_eq!(
        kinds(&got),
        ["run_failed", "run_recovered", "run_failed", "run_recovered"],
        "{got:#?}"
    );
    let mut ids: Vec<&str> = got.iter().filter_map(|e| e["event_id"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4, "an event was delivered twice: {got:#?}");
    tokio::task::block_in_place(|| {
        s.assert_no_secret_leaked();
        s.cluster.terminate_all();
    });
}

#[test]
fn a_daemon_refuses_a_group_readable_headers_file_before_opening_the_store() {
    let env = crate::support::TestEnv::new(
        "[daemon]\ndatabase = \"snapsched.db\"\n\n[notify]\n\
         webhook_url = \"http://127.0.0.1:9/hook\"\nwebhook_headers_file = \"webhook.headers\"\n",
    );
    env.write(
        "webhook.headers",
        &format!("Authorization: {TOKEN}\n"),
        0o644,
    );
    let (code, out, err) = env.run(&["daemon"]);
    assert_ne!(code, 0, "the daemon started: {out}{err}");
    crate::support::process::assert_no_panic(&err);
    assert!(
        err.contains("notify.webhook_headers_file") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!err.contains("hook-t0ken"), "{err}");
    assert!(!env.db().exists(), "the store was created");
}
