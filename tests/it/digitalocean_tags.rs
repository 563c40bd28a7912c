//! DigitalOcean tag targets through the real HTTP client against the fake
//! DigitalOcean API over loopback: the members of a tag, one snapshot
//! action for all of them, and the existing droplet poll finishing each.
//! Every test also asserts that neither side broke the OpenAPI contract.

use std::sync::Arc;
use std::time::Duration;

use snapsched::clock::ManualClock;
use snapsched::domain::Target;
use snapsched::provider::digitalocean::{DigitalOcean, DigitalOceanSettings};
use snapsched::provider::{
    CreateRequest, ErrorClass, Operation, PollOutcome, Provider, ProviderError,
};
use snapsched::secret::Secret;
use snapsched_fake_api::digitalocean::{
    FakeConfig, FakeDigitalOcean, FakeHandle, Fault, FaultRule, Resource,
};

use crate::support::fake::{assert_contract, do_provider, do_provider_with, do_settings, TOKEN};
use crate::support::hostile::{Answer, Hostile};

const LIST: &str = "GET /v2/droplets";
const TAG_ACTION: &str = "POST /v2/droplets/actions";
const GET_ACTION: &str = "GET /v2/actions/{action_id}";

/// The fake with droplets 1 to 3 tagged `web` and droplet 4 untagged.
async fn fake() -> FakeHandle {
    let fake = FakeDigitalOcean::start(FakeConfig {
        token: TOKEN.to_owned(),
        ..FakeConfig::default()
    })
    .await
    .expect("fake DigitalOcean starts");
    for id in 1..=4 {
        fake.add_droplet(id, &format!("web-0{id}"));
    }
    for id in 1..=3 {
        fake.tag_droplet(id, "web");
    }
    fake
}

/// The request a run holds for one droplet of the tag: the droplet as
/// target, the name sent with the tag action.
fn request(droplet: u64, name: &str) -> CreateRequest {
    CreateRequest {
        target: Target::Droplet(droplet),
        disk_id: 0,
        name: name.to_owned(),
        note: "snapsched test".to_owned(),
        fsfreeze: false,
        tags: Vec::new(),
        may_exist: false,
    }
}

/// Poll `op` with the provider's backoff, moving the fake's clock instead
/// of sleeping, until it ends.
async fn poll_to_end(
    p: &DigitalOcean,
    fake: &FakeHandle,
    req: &CreateRequest,
    op: &Operation,
) -> Result<snapsched::domain::RemoteSnapshot, ProviderError> {
    let policy = p.poll_policy();
    let mut wait = policy.initial;
    let mut waited = Duration::ZERO;
    loop {
        fake.advance(wait);
        waited += wait;
        assert!(
            waited <= policy.timeout,
            "operation outlived the poll timeout"
        );
        match p.poll(req, op).await? {
            PollOutcome::Done(s) => return Ok(s),
            PollOutcome::Pending => wait = (wait * 2).min(policy.max),
        }
    }
}

#[tokio::test]
async fn tag_members_reads_every_page_and_sorts_the_droplets() {
    let fake = fake().await;
    // 450 more tagged droplets, tagged in descending order: three pages.
    for id in (1000..1450).rev() {
        fake.add_droplet(id, &format!("fleet-{id}"));
        fake.tag_droplet(id, "fleet");
    }
    let p = do_provider(&fake);
    let members = p.tag_members("fleet").await.expect("listing");
    assert_eq!(members, (1000..1450).collect::<Vec<u64>>());
    assert_eq!(fake.requests(LIST), 3, "200 droplets a page");
    assert_eq!(p.tag_members("web").await.expect("listing"), [1, 2, 3]);
    assert_eq!(
        p.tag_members("nobody").await.expect("listing"),
        Vec::<u64>::new()
    );
    assert_eq!(fake.requests(LIST), 5);
    assert_eq!(fake.requests_total(), 5);
    assert_contract(&fake);
}

#[tokio::test]
async fn a_tag_action_leaves_a_locked_droplet_out_and_each_operation_polls_to_its_snapshot() {
    let fake = fake().await;
    fake.lock_droplet(2, true);
    let p = do_provider(&fake);
    let started = p
        .snapshot_tag("web", "web-20260101_030000")
        .await
        .expect("tag action");
    let droplets: Vec<u64> = started.iter().map(|(d, _)| *d).collect();
    assert_eq!(droplets, [1, 3], "the locked droplet gets no action");
    assert_eq!(fake.requests(TAG_ACTION), 1);
    assert_eq!(fake.actions_in_progress(), 2);
    for (droplet, op) in &started {
        let req = request(*droplet, "web-20260101_030000");
        let snap = poll_to_end(&p, &fake, &req, op).await.expect("snapshot");
        assert_eq!(snap.name, "web-20260101_030000");
        let made = fake.snapshots_of(Resource::Droplet(*droplet));
        assert_eq!(made.len(), 1, "droplet {droplet}");
        assert_eq!(made[0].id, snap.id);
    }
    assert!(fake.snapshots_of(Resource::Droplet(2)).is_empty());
    assert!(fake.requests(GET_ACTION) >= 1);
    assert_contract(&fake);
}

#[tokio::test]
async fn a_tag_whose_droplets_are_all_busy_is_a_transient_error() {
    let fake = fake().await;
    let p = do_provider(&fake);
    let first = p.snapshot_tag("web", "first").await.expect("tag action");
    assert_eq!(first.len(), 3);
    let e = p.snapshot_tag("web", "second").await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient, "{}", e.message);
    assert!(e.message.contains("tag web is busy"), "{}", e.message);
    assert!(e.message.contains("pending event"), "{}", e.message);
    assert_eq!(fake.requests(TAG_ACTION), 2);
    assert_eq!(
        fake.actions_in_progress(),
        3,
        "the refused request started nothing"
    );
    // Once the actions are done, the next attempt goes through.
    fake.advance(Duration::from_secs(180));
    assert_eq!(
        p.snapshot_tag("web", "second").await.expect("retry").len(),
        3
    );
    assert_contract(&fake);
}

#[tokio::test]
async fn a_droplet_untagged_between_the_listing_and_the_action_gets_no_action() {
    let fake = fake().await;
    let p = do_provider(&fake);
    assert_eq!(p.tag_members("web").await.expect("listing"), [1, 2, 3]);
    assert!(fake.untag_droplet(2, "web"));
    let started = p.snapshot_tag("web", "web-1").await.expect("tag action");
    let droplets: Vec<u64> = started.iter().map(|(d, _)| *d).collect();
    assert_eq!(
        droplets,
        [1, 3],
        "the answer, not the earlier listing, says who got an action"
    );
    assert_eq!(p.tag_members("web").await.expect("listing"), [1, 3]);
    assert!(p
        .snapshot_tag("nobody", "x")
        .await
        .expect("empty tag")
        .is_empty());
    assert_eq!(fake.requests(LIST), 2);
    assert_eq!(fake.requests(TAG_ACTION), 2);
    assert_contract(&fake);
}

#[tokio::test]
async fn a_bad_tag_or_name_is_refused_before_anything_is_sent() {
    let fake = fake().await;
    let p = do_provider(&fake);
    for tag in ["", "web&name=x", "web prod"] {
        let e = p.tag_members(tag).await.unwrap_err();
        assert_eq!(e.class, ErrorClass::Permanent, "{tag:?}: {}", e.message);
        let e = p.snapshot_tag(tag, "x").await.unwrap_err();
        assert_eq!(e.class, ErrorClass::Permanent, "{tag:?}: {}", e.message);
    }
    let e = p.snapshot_tag("web", "").await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent, "{}", e.message);
    assert_eq!(fake.requests_total(), 0);
    assert_eq!(p.requests_sent(), 0);
}

#[tokio::test]
async fn server_errors_and_oversized_listings_are_transient() {
    let fake = fake().await;
    let p = do_provider(&fake);
    fake.inject(FaultRule::new(Some(TAG_ACTION), Fault::Status(500), 1));
    let e = p.snapshot_tag("web", "x").await.unwrap_err();
    assert!(e.is_transient(), "{}", e.message);
    assert_eq!(fake.actions_in_progress(), 0);
    fake.inject(FaultRule::new(Some(LIST), Fault::Status(503), 1));
    assert!(p.tag_members("web").await.unwrap_err().is_transient());
    let mut small = do_settings(&fake);
    small.max_response_bytes = 2_000;
    let e = do_provider_with(small, Arc::new(ManualClock::new()))
        .tag_members("web")
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{}", e.message);
    assert!(e.message.contains("GET /v2/droplets"), "{}", e.message);
}

/// The droplets and `meta.total` of a second page.
type SecondPage = fn() -> (Vec<u64>, u64);

/// A server whose `GET /v2/droplets?tag_name=` has two pages of 200: the
/// second page's droplets and total come from `second`, as if the tag
/// changed between the two reads; page 2 links back to page 1 when
/// `loops`.
async fn two_pages(second: SecondPage, loops: bool) -> Hostile {
    let host = Arc::new(std::sync::Mutex::new(String::new()));
    let h = host.clone();
    let server = Hostile::start(move |req| {
        let base = h.lock().expect("host").clone();
        let page_two = req.target.contains("?page=2");
        let (ids, total) = if page_two {
            second()
        } else {
            ((1..=200).collect(), 201)
        };
        let next = if !page_two {
            format!("{base}/v2/droplets?page=2&per_page=200&tag_name=web")
        } else if loops {
            format!("{base}/v2/droplets?tag_name=web&per_page=200")
        } else {
            String::new()
        };
        let droplets: Vec<serde_json::Value> =
            ids.iter().map(|id| serde_json::json!({"id": id})).collect();
        let mut pages = serde_json::Map::new();
        if !next.is_empty() {
            pages.insert("next".into(), next.into());
        }
        let body = serde_json::json!({
            "droplets": droplets,
            "links": {"pages": pages},
            "meta": {"total": total},
        });
        Answer::Json(200, body.to_string())
    })
    .await;
    *host.lock().expect("host") = server.url();
    server
}

fn hostile_provider(server: &Hostile) -> DigitalOcean {
    let mut s = DigitalOceanSettings::new("do-hostile", Secret::new(TOKEN));
    s.api_url = server.url().parse().expect("server URL parses");
    do_provider_with(s, Arc::new(ManualClock::new()))
}

#[tokio::test]
async fn a_tag_that_changes_while_its_pages_are_read_is_an_error_not_a_short_list() {
    let cases: [(&str, SecondPage); 3] = [
        // Droplet 1 untagged after page 1: droplet 201 moved onto page 1's
        // span and is never seen; page 2 is empty and says 200.
        ("untagged", || (Vec::new(), 200)),
        // A droplet tagged after page 1 pushed droplet 200 onto page 2.
        ("tagged", || (vec![200, 201], 202)),
        // Same total, but one droplet twice and another never.
        ("shifted", || (vec![200], 201)),
    ];
    for (what, second) in cases {
        let server = two_pages(second, false).await;
        let e = hostile_provider(&server)
            .tag_members("web")
            .await
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::Transient, "{what}: {}", e.message);
        assert!(
            e.message.contains("changed while its pages were read"),
            "{what}: {}",
            e.message
        );
        assert_eq!(server.requests(), 2, "{what}");
    }
    // The same two pages, read while nothing changes, are a full listing.
    let server = two_pages(|| (vec![201], 201), false).await;
    let members = hostile_provider(&server)
        .tag_members("web")
        .await
        .expect("listing");
    assert_eq!(members, (1..=201).collect::<Vec<u64>>());
}

#[tokio::test]
async fn a_droplet_listing_that_links_back_is_an_error() {
    let server = two_pages(|| (vec![201], 201), true).await;
    let e = hostile_provider(&server)
        .tag_members("web")
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient, "{}", e.message);
    assert!(e.message.contains("the pagination loops"), "{}", e.message);
    assert!(
        e.message.contains("listing droplets of tag web"),
        "{}",
        e.message
    );
}
