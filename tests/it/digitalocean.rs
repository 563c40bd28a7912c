//! The DigitalOcean provider against the fake DigitalOcean API, through the
//! real HTTP client over loopback. The fake's clock only moves when a test
//! advances it, so a 3-minute action costs no real time; every test also
//! asserts that neither side broke the OpenAPI contract.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use snapsched::clock::ManualClock;
use snapsched::domain::{RemoteSnapshot, Target};
use snapsched::provider::digitalocean::DigitalOcean;
use snapsched::provider::ratelimit::RateLimits;
use snapsched::provider::{
    CreateOutcome, CreateRequest, ErrorClass, PollOutcome, Provider, ProviderError,
};
use snapsched::secret::Secret;
use snapsched_fake_api::digitalocean::{
    FakeConfig, FakeDigitalOcean, FakeHandle, Fault, FaultRule, Resource,
};
use uuid::Uuid;

use crate::support::fake::{assert_contract, do_provider, do_provider_with, do_settings, TOKEN};

const DROPLET: u64 = 3164444;
const VOLUME: &str = "7724db7c-e098-11e5-b522-000f53304e51";

const POST_ACTION: &str = "POST /v2/droplets/{droplet_id}/actions";
const GET_ACTION: &str = "GET /v2/actions/{action_id}";
const LIST_DROPLET: &str = "GET /v2/droplets/{droplet_id}/snapshots";
const LIST_VOLUME: &str = "GET /v2/volumes/{volume_id}/snapshots";
const POST_VOLUME: &str = "POST /v2/volumes/{volume_id}/snapshots";
const DELETE: &str = "DELETE /v2/snapshots/{snapshot_id}";

fn volume() -> Uuid {
    Uuid::parse_str(VOLUME).expect("constant UUID")
}

async fn fake() -> FakeHandle {
    let fake = FakeDigitalOcean::start(FakeConfig {
        token: TOKEN.to_owned(),
        ..FakeConfig::default()
    })
    .await
    .expect("fake DigitalOcean starts");
    fake.add_droplet(DROPLET, "web-01");
    fake.add_volume(volume(), "data-01");
    fake
}

fn request(target: Target, name: &str) -> CreateRequest {
    CreateRequest {
        target,
        disk_id: 0,
        name: name.to_owned(),
        note: "snapsched test".to_owned(),
        fsfreeze: false,
        tags: Vec::new(),
        may_exist: false,
    }
}

/// Stand-in for the run engine's pacing: create, then poll with the
/// provider's backoff, moving the fake's clock instead of sleeping.
/// Transient errors are retried after their hint (or the current wait).
async fn drive(
    p: &DigitalOcean,
    fake: &FakeHandle,
    req: &CreateRequest,
) -> Result<RemoteSnapshot, ProviderError> {
    let policy = p.poll_policy();
    let mut retries = 0;
    let outcome = loop {
        match p.create_snapshot(req).await {
            Ok(o) => break o,
            Err(e) if e.is_transient() && retries < 10 => {
                retries += 1;
                fake.advance(e.retry_after.unwrap_or(policy.initial));
            }
            Err(e) => return Err(e),
        }
    };
    let op = match outcome {
        CreateOutcome::Done(s) => return Ok(s),
        CreateOutcome::Pending(op) => op,
    };
    let mut wait = policy.initial;
    let mut waited = Duration::ZERO;
    loop {
        fake.advance(wait);
        waited += wait;
        assert!(
            waited <= policy.timeout,
            "operation outlived the poll timeout"
        );
        match p.poll(req, &op).await {
            Ok(PollOutcome::Done(s)) => return Ok(s),
            Ok(PollOutcome::Pending) => wait = (wait * 2).min(policy.max),
            Err(e) if e.is_transient() && retries < 10 => {
                retries += 1;
                wait = e.retry_after.unwrap_or(wait);
            }
            Err(e) => return Err(e),
        }
    }
}

/// A droplet cycle as a run makes it, retention 1 over one older snapshot:
/// create, four polls of the 3-minute action (15 s doubling to 120 s), one
/// listing that both finds the new snapshot's id and serves the prune
/// (`Provider::fresh_listing`), one delete: 7 requests. Listing again for
/// the prune would make it 8.
#[tokio::test]
async fn droplet_cycle_takes_seven_requests_with_one_listing() {
    let fake = fake().await;
    let expired = fake.add_snapshot(
        Resource::Droplet(DROPLET),
        "web-20240101_000000",
        Utc::now() - chrono::Duration::days(30),
    );
    let p = do_provider(&fake);
    let target = Target::Droplet(DROPLET);
    let req = request(target.clone(), "web-20260101_000000");
    let dir = tempfile::TempDir::new().expect("temp dir");
    let store = crate::support::db::open(&dir.path().join("s.db")).await;
    let spec = crate::support::fixtures::spec("do", &target.to_string(), "web")
        .retention(1)
        .build();

    let snap = drive(&p, &fake, &req)
        .await
        .expect("droplet snapshot is made");
    assert_eq!(snap.name, req.name);
    assert!(
        snap.id.parse::<u64>().is_ok(),
        "droplet snapshot ids are integers: {}",
        snap.id
    );
    let report = snapsched::prune::after_success_limited(
        &store,
        &p,
        &spec,
        &target,
        chrono_tz::Tz::UTC,
        fake.now(),
        0,
        Some(&snap.id),
    )
    .await
    .expect("prune");
    assert_eq!(report.deletions.len(), 1, "{report:?}");
    assert_eq!(report.deletions[0].snapshot.id, expired);

    let left = fake.snapshots_of(Resource::Droplet(DROPLET));
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, snap.id);
    let total = fake.requests_total();
    eprintln!(
        "droplet cycle (3-minute action): {total} requests: {:?}",
        fake.route_counts()
    );
    assert_eq!(p.requests_sent(), total);
    assert_eq!(fake.requests(POST_ACTION), 1);
    assert_eq!(fake.requests(GET_ACTION), 4);
    assert_eq!(fake.requests(LIST_DROPLET), 1, "one listing per cycle");
    assert_eq!(fake.requests(DELETE), 1);
    assert_eq!(total, 7, "droplet cycle took {total} requests");
    // Handed out once: a later prune lists afresh.
    assert!(p.fresh_listing(&target, 1, &snap.id).is_none());
    assert_contract(&fake);
}

/// With three or more actions in flight on a token, a poll reads one page
/// of `GET /v2/actions` (newest first) that answers every poll for the next
/// 30 s; with fewer, every poll is a `GET /v2/actions/{id}`.
#[tokio::test(start_paused = true)]
async fn many_actions_in_flight_are_polled_with_one_page_of_all_actions() {
    const LIST_ACTIONS: &str = "GET /v2/actions";
    let _spinner = crate::support::paused::hold_clock();
    let fake = fake().await;
    let p = do_provider(&fake);
    let advance = |d: Duration| {
        fake.advance(d);
        tokio::time::advance(d)
    };
    let mut runs = Vec::new();
    for i in 0..5u64 {
        let id = 5000 + i;
        fake.add_droplet(id, &format!("web-{i}"));
        let req = request(Target::Droplet(id), &format!("web-{i}-20260101_000000"));
        let CreateOutcome::Pending(op) = p.create_snapshot(&req).await.expect("create") else {
            panic!("a droplet snapshot is an action");
        };
        runs.push((req, op));
    }
    advance(Duration::from_secs(15)).await;
    for (req, op) in &runs {
        assert_eq!(p.poll(req, op).await, Ok(PollOutcome::Pending));
    }
    assert_eq!(fake.requests(LIST_ACTIONS), 1, "{:?}", fake.route_counts());
    assert_eq!(fake.requests(GET_ACTION), 0);

    // The page is stale: polls after the actions completed read a new one
    // and see them done.
    advance(Duration::from_secs(180)).await;
    for (req, op) in &runs {
        match p.poll(req, op).await.expect("poll") {
            PollOutcome::Done(s) => assert_eq!(s.name, req.name),
            PollOutcome::Pending => panic!("{} still pending", req.name),
        }
    }
    assert_eq!(fake.requests(LIST_ACTIONS), 2, "{:?}", fake.route_counts());
    assert_eq!(fake.requests(GET_ACTION), 0);
    assert_eq!(fake.requests(LIST_DROPLET), 5);

    // Two in flight, after the page went stale: single polls.
    advance(Duration::from_secs(31)).await;
    let mut few = Vec::new();
    for (req, _) in runs.iter().take(2) {
        let mut req = req.clone();
        req.name = req.name.replace("000000", "010000");
        let CreateOutcome::Pending(op) = p.create_snapshot(&req).await.expect("create") else {
            panic!("a droplet snapshot is an action");
        };
        few.push((req, op));
    }
    advance(Duration::from_secs(15)).await;
    for (req, op) in &few {
        assert_eq!(p.poll(req, op).await, Ok(PollOutcome::Pending));
    }
    assert_eq!(fake.requests(LIST_ACTIONS), 2);
    assert_eq!(fake.requests(GET_ACTION), 2);
    assert_contract(&fake);
}

/// An action the first page does not show (200 newer actions ahead of it)
/// is polled with its own request; the fake lists the account's actions
/// newest first, 200 to a page, with a link to the next.
#[tokio::test(start_paused = true)]
async fn with_more_than_200_in_flight_a_read_takes_a_page_per_200() {
    const LIST_ACTIONS: &str = "GET /v2/actions";
    let _spinner = crate::support::paused::hold_clock();
    let fake = fake().await;
    let p = do_provider(&fake);
    let mut runs = Vec::new();
    for i in 0..203u64 {
        let id = 6000 + i;
        fake.add_droplet(id, &format!("db-{i}"));
        let req = request(Target::Droplet(id), &format!("db-{i}-20260101_000000"));
        let CreateOutcome::Pending(op) = p.create_snapshot(&req).await.expect("create") else {
            panic!("a droplet snapshot is an action");
        };
        runs.push((req, op));
    }
    fake.advance(Duration::from_secs(15));
    tokio::time::advance(Duration::from_secs(15)).await;
    let (oldest_req, oldest) = &runs[0];
    // 203 in flight: the read takes two pages, and the oldest action, on
    // the second, needs no request of its own.
    assert_eq!(p.poll(oldest_req, oldest).await, Ok(PollOutcome::Pending));
    assert_eq!(fake.requests(LIST_ACTIONS), 2, "a page per 200 in flight");
    assert_eq!(fake.requests(GET_ACTION), 0, "found on the second page");
    let (newest_req, newest) = &runs[202];
    assert_eq!(p.poll(newest_req, newest).await, Ok(PollOutcome::Pending));
    assert_eq!(fake.requests(LIST_ACTIONS), 2, "the pages are still fresh");
    assert_eq!(fake.requests(GET_ACTION), 0);

    let page = |n: u32| {
        let url = format!("{}/v2/actions?per_page=200&page={n}", fake.url());
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(TOKEN)
                .send()
                .await
                .expect("listing answers")
                .json::<serde_json::Value>()
                .await
                .expect("JSON")
        }
    };
    let first = page(1).await;
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["actions"]
            .as_array()
            .expect("actions")
            .iter()
            .map(|a| a["id"].to_string())
            .collect()
    };
    assert_eq!(ids(&first).len(), 200);
    assert_eq!(ids(&first)[0], newest.id, "newest first");
    assert_eq!(first["meta"]["total"], 203);
    assert!(first["links"]["pages"]["next"].is_string());
    let second = page(2).await;
    assert_eq!(ids(&second).len(), 3);
    assert_eq!(ids(&second)[2], oldest.id);
    assert_contract(&fake);
}

#[tokio::test]
async fn volume_cycle_takes_at_most_four_requests() {
    let fake = fake().await;
    let expired = fake.add_snapshot(
        Resource::Volume(volume()),
        "data-20240101_000000",
        Utc::now() - chrono::Duration::days(30),
    );
    let mut s = do_settings(&fake);
    s.tags = vec!["snapsched".to_owned()];
    let p = do_provider_with(s, Arc::new(ManualClock::new()));
    let target = Target::Volume(volume());
    let mut req = request(target.clone(), "data-20260101_000000");
    req.tags = vec!["env:prod".to_owned()];

    let snap = drive(&p, &fake, &req)
        .await
        .expect("volume snapshot is made");
    assert!(
        Uuid::parse_str(&snap.id).is_ok(),
        "volume snapshot ids are UUIDs"
    );
    let listed = p.list_snapshots(&target, 0).await.expect("listing works");
    let old: Vec<_> = listed.into_iter().filter(|s| s.id == expired).collect();
    assert_eq!(old.len(), 1);
    assert!(p
        .delete_snapshots(&target, 0, &old)
        .await
        .iter()
        .all(Result::is_ok));

    let left = fake.snapshots_of(Resource::Volume(volume()));
    assert_eq!(left.len(), 1);
    assert_eq!(
        left[0].tags,
        vec!["snapsched".to_owned(), "env:prod".to_owned()]
    );
    let total = fake.requests_total();
    eprintln!("volume cycle: {total} requests: {:?}", fake.route_counts());
    assert!(total <= 4, "volume cycle took {total} requests");
    assert_contract(&fake);
}

#[tokio::test]
async fn droplet_snapshots_get_tags_after_creation() {
    let fake = fake().await;
    let mut s = do_settings(&fake);
    s.tags = vec!["snapsched".to_owned()];
    let p = do_provider_with(s, Arc::new(ManualClock::new()));
    let snap = drive(&p, &fake, &request(Target::Droplet(DROPLET), "web-1"))
        .await
        .expect("snapshot is made");
    let stored = fake.snapshots_of(Resource::Droplet(DROPLET));
    assert_eq!(stored[0].id, snap.id);
    assert_eq!(stored[0].tags, vec!["snapsched".to_owned()]);
    // The tag did not exist: assign (404), create, assign again.
    assert_eq!(fake.requests("POST /v2/tags/{tag_id}/resources"), 2);
    assert_eq!(fake.requests("POST /v2/tags"), 1);
    assert_contract(&fake);
}

#[tokio::test]
async fn a_request_that_cannot_be_built_is_a_permanent_error_and_is_not_sent() {
    let fake = fake().await;
    // A token with a line break inside cannot go into a header: retrying
    // would only fail the same way until run_timeout.
    let mut s = do_settings(&fake);
    s.token = Secret::new("dop_v1_abc\ndef");
    let p = do_provider_with(s, Arc::new(ManualClock::new()));
    let e = p
        .list_snapshots(&Target::Droplet(DROPLET), 0)
        .await
        .expect_err("a token with a line break cannot be sent");
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    assert!(e.message.contains("could not be built"), "{e}");
    assert!(!e.message.contains("abc"), "{e}");
    assert_eq!(fake.requests(LIST_DROPLET), 0);
}

#[tokio::test]
async fn credentials_in_api_url_never_reach_an_error_message() {
    let fake = fake().await;
    // A port nothing listens on: the client's error quotes the URL.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let mut s = do_settings(&fake);
    s.api_url = format!("http://admin:URLSECRET@127.0.0.1:{port}/")
        .parse()
        .expect("URL parses");
    let p = do_provider_with(s, Arc::new(ManualClock::new()));
    let e = p
        .list_snapshots(&Target::Droplet(DROPLET), 0)
        .await
        .expect_err("nothing listens there");
    assert!(!e.message.contains("URLSECRET"), "{e}");
    assert!(!format!("{p:?}").contains("URLSECRET"), "{p:?}");
}

#[tokio::test]
async fn listing_follows_every_page() {
    let fake = fake().await;
    let base = Utc::now() - chrono::Duration::days(400);
    for i in 0..450 {
        fake.add_snapshot(
            Resource::Droplet(DROPLET),
            &format!("web-{i:04}"),
            base + chrono::Duration::days(i),
        );
    }
    let p = do_provider(&fake);
    let listed = p
        .list_snapshots(&Target::Droplet(DROPLET), 0)
        .await
        .expect("listing works");
    assert_eq!(listed.len(), 450);
    let mut ids: Vec<_> = listed.iter().map(|s| s.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 450);
    assert_eq!(fake.requests(LIST_DROPLET), 3);
    assert_contract(&fake);
}

#[tokio::test]
async fn pending_event_is_transient_and_a_later_attempt_succeeds() {
    let fake = fake().await;
    let p = do_provider(&fake);
    let first = request(Target::Droplet(DROPLET), "web-1");
    assert!(matches!(
        p.create_snapshot(&first).await,
        Ok(CreateOutcome::Pending(_))
    ));
    let second = request(Target::Droplet(DROPLET), "web-2");
    let err = p
        .create_snapshot(&second)
        .await
        .expect_err("droplet is busy");
    assert_eq!(err.class, ErrorClass::Transient);
    assert!(err.message.contains("pending event"), "{}", err.message);
    assert_eq!(fake.responses(422), 1);

    // drive() retries after the backoff, by which time the first action is done.
    fake.advance(Duration::from_secs(170));
    let snap = drive(&p, &fake, &second).await.expect("retry succeeds");
    assert_eq!(snap.name, "web-2");
    assert_contract(&fake);
}

#[tokio::test]
async fn rate_limited_answer_carries_retry_after_and_pauses_the_client() {
    let fake = fake().await;
    let clock = Arc::new(ManualClock::new());
    let p = do_provider_with(do_settings(&fake), clock.clone());
    fake.inject(FaultRule::new(
        Some(LIST_VOLUME),
        Fault::TooManyRequests { retry_after: 7 },
        1,
    ));
    let target = Target::Volume(volume());
    let err = p.list_snapshots(&target, 0).await.expect_err("429");
    assert_eq!(err.class, ErrorClass::Transient);
    assert_eq!(err.retry_after, Some(Duration::from_secs(7)));

    // Until the hinted time passes, no request leaves the client.
    let p2 = p.clone();
    let t2 = target.clone();
    let retry = tokio::spawn(async move { p2.list_snapshots(&t2, 0).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        fake.requests(LIST_VOLUME),
        1,
        "request sent during the pause"
    );
    clock.advance(Duration::from_secs(7));
    let listed = retry.await.expect("task").expect("listing after the pause");
    assert!(listed.is_empty());
    assert_eq!(fake.requests(LIST_VOLUME), 2);
    assert_contract(&fake);
}

#[tokio::test]
async fn server_error_burst_is_transient_and_the_cycle_recovers() {
    let fake = fake().await;
    let p = do_provider(&fake);
    fake.inject(FaultRule::new(Some(GET_ACTION), Fault::Status(503), 3));
    fake.inject(FaultRule::new(Some(POST_ACTION), Fault::Status(500), 1));
    let req = request(Target::Droplet(DROPLET), "web-1");
    let err = p.create_snapshot(&req).await.expect_err("injected 500");
    assert_eq!(err.class, ErrorClass::Transient);
    let snap = drive(&p, &fake, &req).await.expect("cycle recovers");
    assert_eq!(snap.name, "web-1");
    assert_eq!(fake.responses(503), 3);
    assert_eq!(fake.snapshots_of(Resource::Droplet(DROPLET)).len(), 1);
    assert_contract(&fake);
}

#[tokio::test]
async fn dropped_connection_and_slow_answer_are_transient() {
    let fake = fake().await;
    let mut s = do_settings(&fake);
    s.request_timeout = Duration::from_millis(300);
    let p = do_provider_with(s, Arc::new(ManualClock::new()));
    let target = Target::Droplet(DROPLET);

    fake.inject(FaultRule::new(Some(LIST_DROPLET), Fault::DropConnection, 1));
    let err = p.list_snapshots(&target, 0).await.expect_err("dropped");
    assert_eq!(err.class, ErrorClass::Transient, "{}", err.message);

    fake.inject(FaultRule::new(
        Some(LIST_DROPLET),
        Fault::Delay(Duration::from_secs(3)),
        1,
    ));
    let err = p.list_snapshots(&target, 0).await.expect_err("too slow");
    assert_eq!(err.class, ErrorClass::Transient);
    assert!(err.message.contains("timed out"), "{}", err.message);

    assert!(p.list_snapshots(&target, 0).await.is_ok());
}

#[tokio::test]
async fn errored_action_fails_the_run_permanently() {
    let fake = fake().await;
    fake.fail_next_actions(1);
    let p = do_provider(&fake);
    let err = drive(&p, &fake, &request(Target::Droplet(DROPLET), "web-1"))
        .await
        .expect_err("action errors");
    assert_eq!(err.class, ErrorClass::Permanent);
    assert!(err.message.contains("errored"), "{}", err.message);
    assert!(
        err.message.contains(&DROPLET.to_string()),
        "{}",
        err.message
    );
    assert!(fake.snapshots().is_empty());
    assert_contract(&fake);
}

#[tokio::test]
async fn rejected_token_is_permanent_and_never_printed() {
    let fake = fake().await;
    let mut s = do_settings(&fake);
    s.token = Secret::new("dop_v1_wrong_secret_value");
    let p = do_provider_with(s, Arc::new(ManualClock::new()));
    let err = p
        .create_snapshot(&request(Target::Droplet(DROPLET), "web-1"))
        .await
        .expect_err("token rejected");
    assert_eq!(err.class, ErrorClass::Permanent);
    assert!(
        err.message.starts_with("token rejected by DigitalOcean: "),
        "{}",
        err.message
    );
    for shown in [err.message.clone(), format!("{err:?}"), format!("{p:?}")] {
        assert!(!shown.contains("wrong_secret"), "token leaked: {shown}");
    }
    assert_contract(&fake);
}

#[tokio::test]
async fn missing_droplet_and_volume_are_permanent_not_found() {
    let fake = fake().await;
    let p = do_provider(&fake);
    let err = p
        .create_snapshot(&request(Target::Droplet(999), "web-1"))
        .await
        .expect_err("no such droplet");
    assert_eq!(err.class, ErrorClass::Permanent);
    assert_eq!(err.message, "droplet 999 not found");
    let gone = Uuid::new_v4();
    let err = p
        .list_snapshots(&Target::Volume(gone), 0)
        .await
        .expect_err("no such volume");
    assert_eq!(err.message, format!("volume {gone} not found"));
    let err = p
        .create_snapshot(&request(Target::Vm("web".into()), "x"))
        .await
        .expect_err("vm target");
    assert_eq!(err.class, ErrorClass::Permanent);
    assert_contract(&fake);
}

#[tokio::test]
async fn crash_after_create_adopts_the_snapshot_by_name() {
    let fake = fake().await;
    let p = do_provider(&fake);
    let mut req = request(Target::Droplet(DROPLET), "web-20260101_000000");
    // The action starts, then the process dies before recording it.
    assert!(matches!(
        p.create_snapshot(&req).await,
        Ok(CreateOutcome::Pending(_))
    ));

    req.may_exist = true;
    // Still running: the retry follows it rather than start a second one.
    assert!(matches!(
        p.create_snapshot(&req).await,
        Ok(CreateOutcome::Pending(_))
    ));
    fake.advance(Duration::from_secs(240));
    match p.create_snapshot(&req).await {
        Ok(CreateOutcome::Done(s)) => assert_eq!(s.name, req.name),
        other => panic!("expected the earlier snapshot to be adopted, got {other:?}"),
    }
    let named: Vec<_> = fake
        .snapshots()
        .into_iter()
        .filter(|s| s.name == req.name)
        .collect();
    assert_eq!(named.len(), 1, "a second snapshot was made");
    assert_eq!(fake.responses(201), 1, "only one action was accepted");
    assert_contract(&fake);
}

#[tokio::test]
async fn volume_retry_adopts_the_snapshot_on_conflict() {
    let fake = fake().await;
    let p = do_provider(&fake);
    let mut req = request(Target::Volume(volume()), "data-1");
    let CreateOutcome::Done(first) = p.create_snapshot(&req).await.expect("created") else {
        panic!("volume snapshots are synchronous");
    };
    req.may_exist = true;
    let CreateOutcome::Done(again) = p.create_snapshot(&req).await.expect("adopted") else {
        panic!("volume snapshots are synchronous");
    };
    assert_eq!(first.id, again.id);
    assert_eq!(fake.responses(409), 1);
    assert_eq!(fake.snapshots().len(), 1);
    assert_eq!(fake.requests(POST_VOLUME), 2);
    assert_contract(&fake);
}

#[tokio::test]
async fn manual_snapshots_are_listed_but_never_deleted() {
    let fake = fake().await;
    let manual = fake.add_snapshot(
        Resource::Droplet(DROPLET),
        "before-kernel-upgrade",
        Utc::now() - chrono::Duration::days(90),
    );
    let expired = fake.add_snapshot(
        Resource::Droplet(DROPLET),
        "web-20240101_000000",
        Utc::now() - chrono::Duration::days(60),
    );
    let p = do_provider(&fake);
    let target = Target::Droplet(DROPLET);
    drive(&p, &fake, &request(target.clone(), "web-20260101_000000"))
        .await
        .expect("snapshot is made");
    let listed = p.list_snapshots(&target, 0).await.expect("listing");
    assert!(listed.iter().any(|s| s.id == manual));
    let doomed: Vec<_> = listed.into_iter().filter(|s| s.id == expired).collect();
    assert!(p
        .delete_snapshots(&target, 0, &doomed)
        .await
        .iter()
        .all(Result::is_ok));
    // Deleting again is still success: 404 means already gone.
    assert!(p
        .delete_snapshots(&target, 0, &doomed)
        .await
        .iter()
        .all(Result::is_ok));
    let left = fake.snapshots_of(Resource::Droplet(DROPLET));
    assert!(
        left.iter().any(|s| s.id == manual),
        "manual snapshot was deleted"
    );
    assert_eq!(left.len(), 2);
    assert_contract(&fake);
}

/// Bounded wait for a condition the test cannot be notified of.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_queues_300_concurrent_requests_without_a_429() {
    let fake = fake().await;
    let clock = Arc::new(ManualClock::new());
    let mut s = do_settings(&fake);
    s.limits = RateLimits::default();
    let p = do_provider_with(s, clock.clone());
    let target = Target::Volume(volume());
    let mut tasks = Vec::new();
    for _ in 0..300 {
        let (p, t) = (p.clone(), target.clone());
        tasks.push(tokio::spawn(async move { p.list_snapshots(&t, 0).await }));
    }
    eventually("the first minute's 250 requests", || {
        fake.requests_total() == 250
    })
    .await;
    // The rest wait for the window, not for a 429.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.requests_total(), 250);
    assert_eq!(p.requests_sent(), 250);
    fake.advance(Duration::from_secs(60));
    clock.advance(Duration::from_secs(60));
    for t in tasks {
        t.await.expect("task").expect("listing succeeds");
    }
    assert_eq!(fake.requests_total(), 300);
    assert_eq!(fake.responses(429), 0);
    assert_contract(&fake);
}

#[tokio::test]
async fn html_instead_of_json_is_a_transient_error_with_context() {
    let fake = fake().await;
    let p = do_provider(&fake);
    fake.inject(FaultRule::new(
        Some(GET_ACTION),
        Fault::Raw {
            status: 200,
            body: "<html>upstream maintenance</html>".to_owned(),
        },
        1,
    ));
    let req = request(Target::Droplet(DROPLET), "web-1");
    let CreateOutcome::Pending(op) = p.create_snapshot(&req).await.expect("action starts") else {
        panic!("droplet snapshots are asynchronous");
    };
    let err = p.poll(&req, &op).await.expect_err("not JSON");
    assert!(err.is_transient());
    assert!(
        err.message.contains("not the expected JSON"),
        "{}",
        err.message
    );
    assert!(err.message.contains("/v2/actions/"), "{}", err.message);
    assert_eq!(p.poll(&req, &op).await, Ok(PollOutcome::Pending));
}

/// A create that may have reached DigitalOcean before (a resumed or retried
/// run) follows the snapshot action already running on the droplet: the
/// snapshot is listed only once the action completes, and a second action
/// started after it would make a second snapshot of the same name.
#[tokio::test]
async fn a_resumed_create_follows_the_action_an_earlier_attempt_started() {
    let fake = fake().await;
    let p = do_provider(&fake);
    let mut req = request(Target::Droplet(DROPLET), "web-20261201_030000");
    let CreateOutcome::Pending(first) = p.create_snapshot(&req).await.expect("first attempt")
    else {
        panic!("a droplet snapshot is an action");
    };
    // The first attempt's answer is lost; the run resumes.
    req.may_exist = true;
    match p.create_snapshot(&req).await.expect("resumed attempt") {
        CreateOutcome::Pending(op) => assert_eq!(op.id, first.id, "not the running action"),
        other => panic!("resumed attempt: {other:?}"),
    }
    let snap = drive(&p, &fake, &req).await.expect("the action completes");
    assert_eq!(snap.name, req.name);
    assert_eq!(
        fake.requests("POST /v2/droplets/{droplet_id}/actions"),
        1,
        "a second snapshot action was started"
    );
    let named = fake
        .snapshots_of(Resource::Droplet(DROPLET))
        .into_iter()
        .filter(|s| s.name == req.name)
        .count();
    assert_eq!(named, 1, "snapshots named {}", req.name);
    // Once it completed, a resumed attempt adopts the snapshot.
    match p.create_snapshot(&req).await.expect("after completion") {
        CreateOutcome::Done(s) => assert_eq!(s.id, snap.id),
        other => panic!("after completion: {other:?}"),
    }
    assert_contract(&fake);
}
