//! The `[metrics] listen` endpoint of the real daemon: `/metrics` is scraped
//! and parsed as Prometheus text, `/healthz` answers 200 while the loop runs
//! and the store answers, and 503 while the store is unreachable (a
//! PostgreSQL connection cut by a proxy, a closed SQLite store).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusBuilder;
use snapsched::store::{Backend, Location, Store};
use snapsched::telemetry::metrics_server::{self, Health};
use tokio_util::sync::CancellationToken;

use crate::support::db;
use crate::support::fixtures::write_daemon_config;
use crate::support::process::{signal, wait_exit};
use crate::support::proxy::Proxy;

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parse the Prometheus text exposition format (comments, `name value`,
/// `name{k="v",...} value`). Any malformed line is an error.
fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("no value: {line}"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| format!("bad value in {line}"))?,
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .ok_or_else(|| format!("unclosed labels: {line}"))?;
                let mut labels = BTreeMap::new();
                let mut rest = body;
                while !rest.is_empty() {
                    let (k, after) = rest
                        .split_once("=\"")
                        .ok_or_else(|| format!("bad label in {line}"))?;
                    let end = after
                        .find('"')
                        .ok_or_else(|| format!("unterminated label value in {line}"))?;
                    labels.insert(k.to_owned(), after[..end].to_owned());
                    rest = after[end + 1..].trim_start_matches(',');
                }
                (name.to_owned(), labels)
            }
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            return Err(format!("bad metric name in {line}"));
        }
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    Ok(out)
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read response");
    let (head, body) = resp.split_once("\r\n\r\n").expect("http response");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (code, body.to_owned())
}

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    samples.iter().find(|s| {
        s.name == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

/// A daemon started on `config` whose metrics endpoint is up.
struct Daemon {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Daemon {
    fn start(config: &std::path::Path) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_snapsched"))
            .arg("--config")
            .arg(config)
            .arg("daemon")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("daemon starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining after the listen line: a closed pipe would turn
            // the daemon's next log line into EPIPE.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut log = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr: SocketAddr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no metrics listen line; log: {log:#?}"));
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr = rest.trim_end_matches("/metrics").trim();
                break addr.parse().expect("listen address parses");
            }
            log.push(line);
        };
        Daemon { child, addr }
    }

    fn scrape(&self) -> Vec<Sample> {
        let (code, body) = get(self.addr, "/metrics");
        assert_eq!(code, 200, "/metrics: {body}");
        parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
    }

    fn stop(mut self) {
        signal(&self.child, "-TERM");
        let exit = wait_exit(&mut self.child, Duration::from_secs(20));
        assert!(exit.success(), "daemon exited with {exit}");
    }
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    find(samples, name, labels).map(|s| s.value)
}

const WEB: &[(&str, &str)] = &[
    ("definition", "web"),
    ("provider", "lab"),
    ("target", "web01"),
    ("disk", "1"),
];

/// Present snapshots the store records for `web`, read after the daemon
/// stopped.
fn owned_in_store(db: &std::path::Path) -> i64 {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = snapsched::store::Store::open(db)
            .await
            .expect("store opens");
        let id = snapsched::domain::definition::Identity {
            provider: "lab".into(),
            target: "web01".into(),
            disk_id: 1,
            name: "web".into(),
        };
        let n = store.owned_count(&id).await.expect("count");
        store.close().await;
        n
    })
}

#[test]
fn metrics_scrape_and_healthz() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_daemon_config(dir.path(), "[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let daily = std::fs::read_to_string(&config).expect("config");
    // Fire every second so runs (and provider requests) happen during the test.
    std::fs::write(&config, daily.replace("0 3 * * *", "* * * * * *")).expect("config");
    let started = chrono::Utc::now().timestamp() as f64;

    let daemon = Daemon::start(&config);
    // Bounded polling: the first runs finish within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(20);
    let samples = loop {
        let samples = daemon.scrape();
        let succeeded = value(
            &samples,
            "snapsched_runs_total",
            &[("definition", "web"), ("result", "succeeded")],
        );
        if succeeded.is_some_and(|v| v >= 1.0) {
            break samples;
        }
        assert!(
            Instant::now() < deadline,
            "no successful run in /metrics: {samples:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let now = chrono::Utc::now().timestamp() as f64;
    assert_eq!(value(&samples, "snapsched_definitions", &[]), Some(1.0));
    assert_eq!(value(&samples, "snapsched_store_up", &[]), Some(1.0));
    let next = value(
        &samples,
        "snapsched_next_run_timestamp_seconds",
        &[("definition", "web")],
    )
    .expect("next run gauge");
    assert!(
        (now - 5.0..=now + 5.0).contains(&next),
        "next run {next} vs now {now}"
    );

    // A run succeeded since the daemon started, and not in the future.
    let last = value(&samples, "snapsched_last_success_timestamp_seconds", WEB)
        .unwrap_or_else(|| panic!("no last-success gauge: {samples:#?}"));
    assert!(
        (started - 1.0..=now + 1.0).contains(&last),
        "last success {last} outside [{started}, {now}]"
    );
    // Each success makes one snapshot; retention keeps at most 3.
    let succeeded = value(
        &samples,
        "snapsched_runs_total",
        &[("definition", "web"), ("result", "succeeded")],
    )
    .unwrap_or(0.0);
    let snapshots = value(&samples, "snapsched_snapshots", WEB)
        .unwrap_or_else(|| panic!("no snapshots gauge: {samples:#?}"));
    assert!(
        snapshots >= 1.0 && snapshots <= succeeded.min(3.0),
        "snapshots {snapshots} after {succeeded} successes (retention 3)"
    );
    assert_eq!(
        value(&samples, "snapsched_interval_seconds", WEB),
        Some(1.0)
    );
    // Retention 3 deletes one snapshot a run: within the daemon's limit.
    assert_eq!(value(&samples, "snapsched_prune_blocked", WEB), Some(0.0));

    assert_eq!(
        value(
            &samples,
            "snapsched_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    let (code, body) = get(daemon.addr, "/healthz");
    assert_eq!(code, 200, "/healthz: {body}");
    daemon.stop();

    // After a restart with a daily schedule (nothing fires during the test)
    // the gauges come from the store, not from zero.
    let db = dir.path().join("snapsched.db");
    let owned = owned_in_store(&db);
    let samples_before_restart = samples;
    let last_stored = {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let store = snapsched::store::Store::open(&db).await.expect("store");
            let all = store.last_successes().await.expect("last successes");
            store.close().await;
            all
        })
    };
    assert_eq!(last_stored.len(), 1, "{last_stored:?}");
    let last_stored = last_stored[0].1.timestamp() as f64;
    assert!(last_stored >= last, "store {last_stored} < gauge {last}");
    std::fs::write(&config, &daily).expect("config");
    let daemon = Daemon::start(&config);
    // The endpoint listens before the store is open; the loop's first tick
    // (which sets snapsched_definitions) comes after the gauges were seeded.
    let deadline = Instant::now() + Duration::from_secs(20);
    let samples = loop {
        let samples = daemon.scrape();
        if value(&samples, "snapsched_definitions", &[]).is_some() {
            break samples;
        }
        assert!(Instant::now() < deadline, "the loop never ticked");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        value(&samples, "snapsched_last_success_timestamp_seconds", WEB),
        Some(last_stored),
        "before restart: {samples_before_restart:#?}\nafter: {samples:#?}"
    );
    assert_eq!(
        value(&samples, "snapsched_snapshots", WEB),
        Some(owned as f64)
    );
    assert_eq!(
        value(&samples, "snapsched_interval_seconds", WEB),
        Some(86_400.0)
    );
    assert_eq!(
        value(&samples, "snapsched_runs_total", &[("definition", "web")]),
        None,
        "no run expected after the restart"
    );
    daemon.stop();
}

#[test]
fn parser_rejects_garbage() {
    assert!(parse("foo{a=\"1\" 2").is_err());
    assert!(parse("foo bar").is_err());
    let s = parse("# HELP x y\nx_total{a=\"b\",le=\"+Inf\"} 3\n").expect("parses");
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].labels["le"], "+Inf");
}

mod gauges_from_store {
    use chrono::{TimeDelta, TimeZone, Utc};
    use snapsched::domain::definition::{DefinitionSpec, Identity, Source};
    use snapsched::domain::RecordState;
    use snapsched::domain::{Claim, RunState, Trigger};
    use snapsched::domain::{RemoteSnapshot, SnapshotStatus};
    use snapsched::store::runs::Update;
    use snapsched::store::Store;
    use snapsched::telemetry::definition_gauges::{DefinitionGauges, DefinitionValues};

    use crate::support::fixtures;

    fn spec(target: &str, schedule: &str, active: bool) -> DefinitionSpec {
        fixtures::spec("fake", target, "daily")
            .schedule(schedule)
            .retention(7)
            .active(active)
            .build()
    }

    async fn finish(store: &Store, id: &Identity, at: chrono::DateTime<Utc>, state: RunState) {
        let Claim::Claimed(run) = store
            .claim_run(id, at, Trigger::Schedule, at)
            .await
            .expect("claim")
        else {
            panic!("slot {at} not claimed");
        };
        store
            .update_run(
                &run,
                Update {
                    state: Some(state),
                    ..Default::default()
                },
                at + TimeDelta::seconds(30),
            )
            .await
            .expect("update");
    }

    async fn snapshot(store: &Store, id: &Identity, name: &str, at: chrono::DateTime<Utc>) {
        let snap = RemoteSnapshot {
            id: name.into(),
            name: name.into(),
            created_at: at,
            status: SnapshotStatus::Ok,
            size_bytes: None,
            note: None,
        };
        store
            .record_snapshot(id, &snap, None, false, at)
            .await
            .expect("record");
    }

    /// Two definitions share the name `daily` on different VMs; each gets
    /// its own latest success (not a later failure, not the other's) and its
    /// own count of present snapshots; a disabled one is not published.
    #[tokio::test]
    async fn each_identity_gets_its_own_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::support::db::open(&dir.path().join("s.db")).await;
        let t0 = Utc
            .with_ymd_and_hms(2026, 3, 25, 3, 0, 0)
            .single()
            .expect("time");
        let web = spec("web01", "0 3 * * *", true);
        let db = spec("db01", "0 3 * * 1-5", true);
        let off = spec("old01", "0 3 * * *", false);
        for s in [&web, &db, &off] {
            store
                .insert_definition(s, Source::Cli, None, t0)
                .await
                .expect("insert");
        }
        let (w, d, o) = (&web.identity, &db.identity, &off.identity);
        finish(&store, w, t0, RunState::Succeeded).await;
        finish(&store, w, t0 + TimeDelta::days(1), RunState::Succeeded).await;
        finish(&store, w, t0 + TimeDelta::days(2), RunState::Failed).await;
        finish(&store, d, t0, RunState::Failed).await;
        // d's latest prune was blocked by max_deletes_per_run.
        let Claim::Claimed(run) = store
            .claim_run(d, t0 + TimeDelta::days(1), Trigger::Schedule, t0)
            .await
            .expect("claim")
        else {
            panic!("not claimed");
        };
        store
            .update_run(
                &run,
                Update {
                    state: Some(RunState::Succeeded),
                    error: Some((snapsched::run::PRUNE_BLOCKED, "prune blocked")),
                    ..Default::default()
                },
                t0 + TimeDelta::days(1),
            )
            .await
            .expect("update");
        finish(&store, o, t0, RunState::Succeeded).await;
        snapshot(&store, w, "a", t0).await;
        snapshot(&store, w, "b", t0 + TimeDelta::days(1)).await;
        snapshot(&store, w, "c", t0 + TimeDelta::days(2)).await;
        store
            .mark_snapshot(w, "a", RecordState::Deleted, Some("retention"), t0)
            .await
            .expect("mark");
        snapshot(&store, o, "x", t0).await;

        let mut gauges = DefinitionGauges::new(chrono_tz::UTC);
        let mut values = gauges
            .read(&store, t0 + TimeDelta::days(3))
            .await
            .expect("read");
        values.sort_by(|a, b| a.identity.cmp(&b.identity));
        let expect = vec![
            DefinitionValues {
                identity: d.clone(),
                last_success: Some(t0 + TimeDelta::days(1)),
                last_failure: Some(t0 + TimeDelta::seconds(30)),
                snapshots: 0,
                prune_blocked: true,
                copies: Vec::new(),
                // Weekdays only: the longest gap is Friday to Monday.
                interval: Some(std::time::Duration::from_secs(3 * 86_400)),
            },
            DefinitionValues {
                identity: w.clone(),
                last_success: Some(t0 + TimeDelta::days(1) + TimeDelta::seconds(30)),
                last_failure: Some(t0 + TimeDelta::days(2) + TimeDelta::seconds(30)),
                snapshots: 2,
                prune_blocked: false,
                copies: Vec::new(),
                interval: Some(std::time::Duration::from_secs(86_400)),
            },
        ];
        assert_eq!(values, expect);
        store.close().await;
    }
}

/// Poll `/healthz` (bounded) until it answers `want`; returns the body. The
/// scheduler loop's liveness is stamped on every poll, so only the store
/// decides the answer.
async fn healthz_until(addr: SocketAddr, health: &Health, want: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        health.liveness().beat();
        let (code, body) = tokio::task::block_in_place(|| get(addr, "/healthz"));
        if code == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz still {code} ({body}), expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_fails_while_the_store_is_unreachable_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("snapsched.db");
    let health = Arc::new(Health::default());
    let shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let handle = PrometheusBuilder::new().build_recorder().handle();
    let addr =
        metrics_server::serve(listener, handle, health.clone(), shutdown.clone()).expect("serve");

    let body = healthz_until(addr, &health, 503).await;
    assert_eq!(body, "store not open yet\n");

    match db::backend() {
        Backend::Postgres => {
            let server = db::server();
            let upstream = tokio::net::lookup_host((server.get_host(), server.get_port()))
                .await
                .expect("resolve the server")
                .next()
                .expect("an address");
            let proxy = Proxy::start(upstream).await;
            let Location::Postgres(options) = db::location(&path).await else {
                unreachable!("a PostgreSQL location on the PostgreSQL pass");
            };
            let through = options
                .host(&proxy.addr().ip().to_string())
                .port(proxy.addr().port());
            let store = Store::connect(&Location::Postgres(Box::new(through)))
                .await
                .expect("opens through the proxy");
            health.set_store(store.clone());
            assert_eq!(healthz_until(addr, &health, 200).await, "ok\n");

            proxy.cut();
            let body = healthz_until(addr, &health, 503).await;
            assert!(body.starts_with("store unreachable: "), "{body}");
            assert_eq!(body.lines().count(), 1, "one line: {body}");

            proxy.restore();
            assert_eq!(healthz_until(addr, &health, 200).await, "ok\n");
            store.close().await;
        }
        Backend::Sqlite => {
            let store = db::open(&path).await;
            health.set_store(store.clone());
            assert_eq!(healthz_until(addr, &health, 200).await, "ok\n");
            store.close().await;
            let body = healthz_until(addr, &health, 503).await;
            assert!(body.starts_with("store unreachable: "), "{body}");
            assert_eq!(body.lines().count(), 1, "one line: {body}");
        }
    }
    shutdown.cancel();
}

#[test]
fn a_daemon_whose_config_file_is_not_newer_than_the_applied_one_reports_drift() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_daemon_config(dir.path(), "[metrics]\nlisten = \"127.0.0.1:0\"\n");
    // Another host's file on the same store, with other definitions, applied
    // explicitly; this daemon's file is older than that apply.
    let text = std::fs::read_to_string(&config).expect("config");
    let other = dir.path().join("other.toml");
    std::fs::write(&other, text.replace("web01", "web02")).expect("other config");
    let applied = Command::new(env!("CARGO_BIN_EXE_snapsched"))
        .arg("--config")
        .arg(&other)
        .args(["config", "apply"])
        .output()
        .expect("config apply runs");
    assert!(applied.status.success(), "config apply: {applied:?}");
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&config)
        .and_then(|f| f.set_modified(hour_ago))
        .expect("set mtime");

    let daemon = Daemon::start(&config);
    // Bounded polling: the gauge is set once the store is open and the file
    // offered to it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let drift = loop {
        if let Some(v) = value(&daemon.scrape(), "snapsched_config_drift", &[]) {
            break v;
        }
        assert!(Instant::now() < deadline, "no snapsched_config_drift");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(drift, 1.0);
    daemon.stop();
    let listed = Command::new(env!("CARGO_BIN_EXE_snapsched"))
        .arg("--config")
        .arg(&other)
        .args(["def", "list", "--json"])
        .output()
        .expect("def list runs");
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("web02") && !listed.contains("web01"),
        "the daemon applied its older file: {listed}"
    );
}

/// The webhook's metrics: events queued by failed runs while the queue
/// holds two (one dropped), failed attempts while the receiver answers 503,
/// then sent events and an empty queue once it accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_queue_depth_drops_failures_and_sends_are_scraped() {
    use crate::support::receiver::{Mode, Receiver};
    use snapsched::domain::{Claim, RunState, Trigger};
    use snapsched::store::runs::Update;

    let receiver = Receiver::start(Mode::Unavailable).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let notify = format!(
        "[metrics]\nlisten = \"127.0.0.1:0\"\n\n[notify]\nwebhook_url = \"{}\"\n\
         retry_initial = \"50ms\"\nretry_max = \"100ms\"\nqueue_limit = 2\n",
        receiver.url("/hook")
    );
    let config = write_daemon_config(dir.path(), &notify);
    let db = dir.path().join("snapsched.db");
    // Three definitions fail once each: three run_failed events into a
    // queue of two.
    let store = Store::open(&db).await.expect("store");
    store.set_notify_queue(Some(2));
    let t = chrono::Utc::now();
    for name in ["a", "b", "c"] {
        let id = snapsched::domain::definition::Identity {
            provider: "lab".into(),
            target: "web01".into(),
            disk_id: 1,
            name: name.into(),
        };
        let Claim::Claimed(run) = store
            .claim_run(&id, t, Trigger::Manual, t)
            .await
            .expect("claim")
        else {
            panic!("not claimed");
        };
        store
            .update_run(
                &run,
                Update {
                    state: Some(RunState::Failed),
                    error: Some(("permanent", "no")),
                    ..Default::default()
                },
                t,
            )
            .await
            .expect("fail");
    }
    store.close().await;

    tokio::task::block_in_place(|| {
        let daemon = Daemon::start(&config);
        let scrape_until = |what: &str, cond: &dyn Fn(&[Sample]) -> bool| {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let samples = daemon.scrape();
                if cond(&samples) {
                    return samples;
                }
                assert!(Instant::now() < deadline, "no {what}: {samples:#?}");
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        let samples = scrape_until("failed attempts", &|s| {
            value(s, "snapsched_notify_failed_total", &[]).is_some_and(|v| v >= 2.0)
        });
        assert_eq!(
            value(&samples, "snapsched_notify_queue_depth", &[]),
            Some(2.0)
        );
        assert_eq!(
            value(&samples, "snapsched_notify_dropped_total", &[]),
            Some(1.0)
        );
        assert_eq!(
            value(
                &samples,
                "snapsched_notify_sent_total",
                &[("event", "run_failed")]
            ),
            None
        );
        receiver.set_mode(Mode::Accept);
        let samples = scrape_until("two sent events", &|s| {
            value(s, "snapsched_notify_sent_total", &[("event", "run_failed")]) == Some(2.0)
                && value(s, "snapsched_notify_queue_depth", &[]) == Some(0.0)
        });
        assert_eq!(
            value(&samples, "snapsched_notify_dropped_total", &[]),
            Some(1.0)
        );
        let names: Vec<String> = receiver
            .accepted()
            .iter()
            .map(|r| {
                r.json()["definition"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        assert_eq!(names, ["b", "c"], "the oldest was dropped");
        daemon.stop();
    });
}
