//! The provider clients and the run engine against servers that misbehave
//! on purpose ([`crate::support::hostile`]): bodies without end, pagination
//! that never ends, servers that never answer, replies about another
//! snapshot. Whatever the server does, a request fails with a clear error,
//! memory stays bounded, a run ends by its `run_timeout`, and nothing the
//! definition did not ask for is recorded as its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use snapsched::clock::Clock;
use snapsched::domain::definition::{DefinitionSpec, Source};
use snapsched::domain::{Claim, RunState, Target, Trigger};
use snapsched::provider::digitalocean::{DigitalOcean, DigitalOceanSettings};
use snapsched::provider::erigones::{Erigones, ErigonesSettings};
use snapsched::provider::ratelimit::RateLimits;
use snapsched::provider::{ErrorClass, PollPolicy, Provider};
use snapsched::run::{Ended, RunOptions, Runner};
use snapsched::secret::Secret;
use snapsched::store::Store;
use tokio_util::sync::CancellationToken;

use crate::support::fixtures;
use crate::support::hostile::{Answer, Hostile};

const VOLUME: &str = "7724db7c-e098-11e5-b522-000f53304e51";
const MIB: usize = 1024 * 1024;

fn digitalocean(server: &Hostile, max_body: usize) -> DigitalOcean {
    let mut s = DigitalOceanSettings::new("do-hostile", Secret::new("hostile-token"));
    s.api_url = server.url().parse().expect("loopback URL");
    s.connect_timeout = Duration::from_secs(2);
    s.request_timeout = Duration::from_secs(60);
    s.max_response_bytes = max_body;
    s.limits = RateLimits {
        per_minute: 1_000_000,
        per_hour: 1_000_000,
    };
    DigitalOcean::new(s).expect("provider builds")
}

fn erigones(server: &Hostile, max_body: usize) -> Erigones {
    Erigones::new(ErigonesSettings {
        provider_name: "dc-hostile".to_owned(),
        api_url: format!("{}/api", server.url()).parse().expect("URL"),
        api_key: Secret::new("hostile-key"),
        poll: PollPolicy::default(),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(60),
        max_response_bytes: max_body,
    })
    .expect("provider builds")
}

fn volume() -> Target {
    Target::Volume(VOLUME.parse().expect("uuid"))
}

/// An empty page of a DigitalOcean snapshot listing.
fn empty_page() -> Answer {
    Answer::Json(
        200,
        r#"{"snapshots":[],"links":{},"meta":{"total":0}}"#.to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_without_end_fails_at_the_cap_with_its_size() {
    let server = Hostile::start(|_| Answer::Endless).await;
    for (provider, result) in [
        (
            "DigitalOcean",
            digitalocean(&server, MIB)
                .list_snapshots(&volume(), 1)
                .await,
        ),
        (
            "Erigones",
            erigones(&server, MIB)
                .list_snapshots(&Target::Vm("web01".into()), 1)
                .await,
        ),
    ] {
        let err = result.expect_err("an endless body is an error");
        assert_eq!(err.class, ErrorClass::Transient, "{provider}: {err}");
        assert!(
            err.message.contains("over the limit")
                || err.message.contains("passed the limit of 1.0 MiB"),
            "{provider}: the message does not name the limit: {err}"
        );
    }
    // Without a cap, each client would have read until its 60 s request
    // timeout, gigabytes over loopback. What the server got to write is the
    // cap plus what the sockets buffer.
    let sent = server.body_bytes_sent();
    assert!(
        sent < 2 * 64 * MIB as u64,
        "the server wrote {sent} bytes: the clients kept reading"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_over_the_cap_fails_before_reading() {
    let huge = "x".repeat(2 * MIB);
    let server = Hostile::start(move |_| Answer::Json(200, huge.clone())).await;
    let err = digitalocean(&server, MIB)
        .list_snapshots(&volume(), 1)
        .await
        .expect_err("too large");
    assert!(
        err.message.contains("2097152 bytes") && err.message.contains("1.0 MiB"),
        "{err}"
    );
}

/// A server whose listing pages are endless, each linking to the next.
async fn endless_pages(total: u64) -> Hostile {
    let host = Arc::new(std::sync::Mutex::new(String::new()));
    let h = host.clone();
    let server = Hostile::start(move |req| {
        let page: u64 = req
            .target
            .split("&page=")
            .nth(1)
            .and_then(|p| p.split('&').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(1);
        let host = h.lock().expect("host").clone();
        Answer::Json(
            200,
            format!(
                r#"{{"snapshots":[],"links":{{"pages":{{"next":"http://{host}/v2/volumes/{VOLUME}/snapshots?per_page=200&page={}"}}}},"meta":{{"total":{total}}}}}"#,
                page + 1
            ),
        )
    })
    .await;
    *host.lock().expect("host") = server.url().trim_start_matches("http://").to_owned();
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_linking_page_is_detected_as_a_loop() {
    let host = Arc::new(std::sync::Mutex::new(String::new()));
    let h = host.clone();
    let server = Hostile::start(move |req| {
        let host = h.lock().expect("host").clone();
        Answer::Json(
            200,
            format!(
                r#"{{"snapshots":[],"links":{{"pages":{{"next":"http://{host}{}"}}}},"meta":{{"total":5}}}}"#,
                req.target
            ),
        )
    })
    .await;
    *host.lock().expect("host") = server.url().trim_start_matches("http://").to_owned();
    let err = digitalocean(&server, MIB)
        .list_snapshots(&volume(), 1)
        .await
        .expect_err("a loop is an error");
    assert!(err.message.contains("loops"), "{err}");
    assert_eq!(server.requests(), 1, "the loop is seen on the first link");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_pages_end_with_a_clear_error() {
    // A total of a hundred million: refused on the first page.
    let server = endless_pages(100_000_000).await;
    let err = digitalocean(&server, MIB)
        .list_snapshots(&volume(), 1)
        .await
        .expect_err("absurd total");
    assert!(err.message.contains("100000000 snapshots"), "{err}");
    assert_eq!(server.requests(), 1);

    // A modest total, but pages that never stop: refused once the pages
    // outnumber what the total allows.
    let server = endless_pages(300).await;
    let err = digitalocean(&server, MIB)
        .list_snapshots(&volume(), 1)
        .await
        .expect_err("endless pages");
    assert!(err.message.contains("did not end after"), "{err}");
    assert!(server.requests() <= 4, "{} requests", server.requests());
}

/// A store with definition `web` on `do`'s volume and a pending manual run.
async fn store_with_run(
    dir: &tempfile::TempDir,
) -> (Store, DefinitionSpec, snapsched::domain::Run) {
    let store = crate::support::db::open(&dir.path().join("snapsched.db")).await;
    let spec = fixtures::spec("do", &format!("volume:{VOLUME}"), "web").build();
    store
        .insert_definition(&spec, Source::Cli, None, Utc::now())
        .await
        .expect("definition");
    let now = Utc::now();
    let run = match store
        .claim_run(&spec.identity, now, Trigger::Manual, now)
        .await
        .expect("claim")
    {
        Claim::Claimed(run) => run,
        other => panic!("not claimed: {other:?}"),
    };
    (store, spec, run)
}

async fn drive(
    store: &Store,
    provider: &DigitalOcean,
    spec: &DefinitionSpec,
    run: snapsched::domain::Run,
    run_timeout: Duration,
) -> snapsched::domain::Run {
    let runner = Runner {
        store,
        provider,
        spec,
        target: volume(),
        clock: Clock::System,
        options: RunOptions {
            run_timeout,
            retry_initial: Duration::from_millis(50),
            retry_max: Duration::from_millis(200),
            ..RunOptions::default()
        },
        shutdown: CancellationToken::new(),
        lease: None,
    };
    match runner.drive(run).await.expect("store works") {
        Ended::Final(run) => run,
        Ended::Suspended(run) => panic!("suspended: {run:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_ends_at_run_timeout_whatever_the_provider_does() {
    // The create never gets an answer; the request timeout is a minute.
    let server = Hostile::start(|req| match req.method.as_str() {
        "GET" => empty_page(),
        _ => Answer::Hang,
    })
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let (store, spec, run) = store_with_run(&dir).await;
    let provider = digitalocean(&server, MIB);
    let started = Instant::now();
    let run = drive(&store, &provider, &spec, run, Duration::from_secs(2)).await;
    let took = started.elapsed();
    assert_eq!(run.state, RunState::Failed, "{run:?}");
    assert!(
        run.error
            .as_deref()
            .is_some_and(|e| e.contains("run_timeout")),
        "{run:?}"
    );
    assert!(
        took < Duration::from_secs(20),
        "the run took {took:?} with run_timeout 2s"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_about_another_snapshot_is_not_recorded_as_owned() {
    let created = Arc::new(AtomicU64::new(0));
    let counter = created.clone();
    let server = Hostile::start(move |req| match req.method.as_str() {
        "POST" => {
            counter.fetch_add(1, Ordering::Relaxed);
            Answer::Json(
                201,
                format!(
                    r#"{{"snapshot":{{"id":"0b4f1d2e-0000-4000-8000-000000000001","name":"nope","created_at":"2026-01-01T00:00:00Z","resource_id":"{VOLUME}","resource_type":"volume","size_gigabytes":1}}}}"#
                ),
            )
        }
        _ => empty_page(),
    })
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let (store, spec, run) = store_with_run(&dir).await;
    let provider = digitalocean(&server, MIB);
    let run = drive(&store, &provider, &spec, run, Duration::from_secs(30)).await;
    assert_eq!(created.load(Ordering::Relaxed), 1);
    assert_eq!(run.state, RunState::Failed, "{run:?}");
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.contains("\"nope\"") && error.contains("web-"),
        "the failure does not name both snapshots: {error}"
    );
    let records = store.snapshot_records(Some("web")).await.expect("records");
    assert!(records.is_empty(), "recorded as owned: {records:#?}");

    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_about_a_snapshot_of_another_volume_is_not_recorded() {
    let other = "11111111-2222-4333-8444-555555555555";
    let server = Hostile::start(move |req| match req.method.as_str() {
        "POST" => {
            // The name asked for, but of another volume.
            let body: serde_json::Value = serde_json::from_str(&req.body).unwrap_or_default();
            let name = body["name"].as_str().unwrap_or_default().to_owned();
            Answer::Json(
                201,
                format!(
                    r#"{{"snapshot":{{"id":"0b4f1d2e-0000-4000-8000-000000000002","name":"{name}","created_at":"2026-01-01T00:00:00Z","resource_id":"{other}","resource_type":"volume"}}}}"#
                ),
            )
        }
        _ => empty_page(),
    })
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let (store, spec, run) = store_with_run(&dir).await;
    let provider = digitalocean(&server, MIB);
    let run = drive(&store, &provider, &spec, run, Duration::from_secs(30)).await;
    assert_eq!(run.state, RunState::Failed, "{run:?}");
    assert!(
        run.error.as_deref().is_some_and(|e| e.contains(other)),
        "{run:?}"
    );
    let records = store.snapshot_records(Some("web")).await.expect("records");
    assert!(records.is_empty(), "recorded as owned: {records:#?}");
    store.close().await;
}

/// A provider message that tries to forge a log line and drive the
/// terminal: a newline, a fake record, ESC sequences, BEL, CR.
const FORGERY: &str = "no such volume\nINFO run ended result=\"succeeded\"\u{1b}[2J\u{7}\r";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_from_outside_is_escaped_in_logs_errors_and_terminal_output() {
    let body = serde_json::json!({"id": "forbidden", "message": FORGERY}).to_string();
    let server = Hostile::start(move |req| match req.method.as_str() {
        "POST" => Answer::Json(403, body.clone()),
        _ => empty_page(),
    })
    .await;
    let env = crate::support::TestEnv::new(&fixtures::config_with_do_api(&server.url()));
    let env = &env;
    tokio::task::block_in_place(|| {
        env.ok(&[
            "def",
            "add",
            "web",
            "--provider",
            "do",
            "--target",
            &format!("volume:{VOLUME}"),
            "--schedule",
            "0 3 * * *",
            "--retention",
            "2",
            "--desc",
            "nightly\u{1b}[31m red\u{7}\nsecond line",
        ]);
        let (code, out, err) = env.run_env(
            &["run", "web"],
            &[crate::support::fake::DO_TOKEN, ("RUST_LOG", "info")],
        );
        assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
        let history = env.ok(&["history", "web"]);
        let show = env.ok(&["def", "show", "web"]);
        for (what, text) in [
            ("run stdout", &out),
            ("run stderr", &err),
            ("history", &history),
            ("def show", &show),
        ] {
            assert!(
                !text.contains(['\u{1b}', '\u{7}', '\r']),
                "{what} carries raw control characters: {text:?}"
            );
            let forged = text
                .lines()
                .any(|l| l.trim_start().starts_with("INFO run ended"));
            assert!(!forged, "{what} has a forged line: {text}");
        }
        assert!(
            err.contains("no such volume\\nINFO run ended"),
            "the message is not shown escaped: {err}"
        );
        assert!(
            show.contains("nightly\\u{1b}[31m red\\u{7}\\nsecond line"),
            "{show}"
        );
    });
}

#[test]
fn max_response_mib_is_read_and_bounded() {
    let env = crate::support::TestEnv::base();
    let text = format!(
        "{}\n[providers.big]\nkind = \"digitalocean\"\ntoken_env = \"X\"\nmax_response_mib = {{}}\n",
        crate::support::BASE_CONFIG
    );
    let load = |value: &str| {
        env.write_config(&text.replace("{}", value));
        snapsched::config::load(&env.config, &snapsched::config::Overrides::default())
    };
    let cfg = load("2").expect("2 MiB is accepted");
    assert_eq!(cfg.providers["big"].max_response_bytes, 2 * MIB);
    for bad in ["0", "1025", "-1"] {
        let err = load(bad).expect_err(bad);
        let text = err.to_string();
        assert!(
            text.contains("providers.big.max_response_mib") && text.contains("1 to 1024"),
            "{bad}: {text}"
        );
    }
}
