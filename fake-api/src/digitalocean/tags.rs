//! Tagged droplets in the fake: `GET /v2/droplets` (all droplets, or those
//! with `tag_name`) and `POST /v2/droplets/actions?tag_name=` (one action
//! per tagged droplet), with the test knobs that tag, untag, lock and
//! remove droplets.
//!
//! Invariants: a droplet is *locked* while it has an action in progress or
//! a test locked it; a locked droplet gets no action, neither alone (422)
//! nor through its tag (left out of the answer; 422 when every tagged
//! droplet is locked); a tag with no droplets starts nothing and answers
//! 201 with no actions (the specification lists no other answer); droplet
//! listings are ordered by id and paginated like every listing, the filter
//! kept in the page links; a removed droplet loses its tags and its lock.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::routes::{error, paginate_filtered, PageQuery};
use super::state::{Resource, State as World};
use super::{FakeHandle, Shared};

/// Every droplet the fake lists was created at this time: a fixed value
/// keeps answers stable between requests.
const DROPLET_CREATED_AT: &str = "2020-07-21T18:37:44Z";

/// The message DigitalOcean gives for a droplet that is busy.
const PENDING: &str = "Droplet already has a pending event.";

impl FakeHandle {
    /// Put `tag` on droplet `id` (the tag is created if it does not exist).
    pub fn tag_droplet(&self, id: u64, tag: &str) {
        let mut w = self.shared.lock();
        w.tags.insert(tag.to_owned());
        w.droplet_tags.entry(id).or_default().insert(tag.to_owned());
    }

    /// Take `tag` off droplet `id`; true when it carried it.
    pub fn untag_droplet(&self, id: u64, tag: &str) -> bool {
        let mut w = self.shared.lock();
        let Some(tags) = w.droplet_tags.get_mut(&id) else {
            return false;
        };
        let had = tags.remove(tag);
        if tags.is_empty() {
            w.droplet_tags.remove(&id);
        }
        had
    }

    /// Destroy droplet `id`: its routes answer 404 from now on, and it is
    /// in no listing. Its snapshots stay, as DigitalOcean keeps them.
    pub fn remove_droplet(&self, id: u64) -> bool {
        let mut w = self.shared.lock();
        w.droplet_tags.remove(&id);
        w.locked_droplets.remove(&id);
        w.droplets.remove(&id).is_some()
    }

    /// Lock or unlock droplet `id`: a locked droplet refuses actions as if
    /// one were in progress, and is listed with `locked: true`.
    pub fn lock_droplet(&self, id: u64, locked: bool) {
        let mut w = self.shared.lock();
        if locked {
            w.locked_droplets.insert(id);
        } else {
            w.locked_droplets.remove(&id);
        }
    }
}

impl World {
    /// Whether droplet `id` refuses a new action now (call after `settle`).
    pub(crate) fn droplet_locked(&self, id: u64) -> bool {
        self.locked_droplets.contains(&id) || self.pending_action(id).is_some()
    }

    /// The existing droplets carrying `tag`, by id.
    fn tagged(&self, tag: &str) -> Vec<u64> {
        self.droplets
            .keys()
            .copied()
            .filter(|id| self.droplet_tags.get(id).is_some_and(|t| t.contains(tag)))
            .collect()
    }

    /// Droplet `id` as `GET /v2/droplets` shows it, with every property the
    /// specification requires. Only name, tags, lock and snapshot ids vary.
    fn droplet_json(&self, id: u64) -> Value {
        let name = self.droplets.get(&id).cloned().unwrap_or_default();
        let tags: Vec<&String> = self
            .droplet_tags
            .get(&id)
            .map(|t| t.iter().collect())
            .unwrap_or_default();
        let snapshot_ids: Vec<u64> = self
            .snapshots
            .iter()
            .filter(|s| s.resource == Resource::Droplet(id))
            .filter_map(|s| s.id.parse().ok())
            .collect();
        json!({
            "id": id,
            "name": name,
            "memory": 1024,
            "vcpus": 1,
            "disk": 25,
            "locked": self.locked_droplets.contains(&id),
            // The specification's status enum lost `off` to YAML (it reads
            // `false`); the fake's droplets are always `active`.
            "status": "active",
            "created_at": DROPLET_CREATED_AT,
            "features": ["monitoring"],
            "backup_ids": [],
            "next_backup_window": null,
            "snapshot_ids": snapshot_ids,
            "image": {
                "id": 6_918_990,
                "name": "24.04 (LTS) x64",
                "distribution": "Ubuntu",
                "slug": "ubuntu-24-04-x64",
                "public": true,
                "regions": [self.region],
                "created_at": "2024-04-25T15:43:12Z",
                "min_disk_size": 7,
                "size_gigabytes": 2.36,
                "type": "base",
                "status": "available",
                "description": "Ubuntu 24.04 x64",
                "tags": [],
            },
            "volume_ids": [],
            "size": {
                "slug": "s-1vcpu-1gb",
                "memory": 1024,
                "vcpus": 1,
                "disk": 25,
                "transfer": 1.0,
                "price_monthly": 6.0,
                "price_hourly": 0.00893,
                "regions": [self.region],
                "available": true,
                "description": "Basic",
            },
            "size_slug": "s-1vcpu-1gb",
            "networks": {
                "v4": [{
                    "ip_address": format!("203.0.113.{}", id % 250 + 1),
                    "netmask": "255.255.255.0",
                    "gateway": "203.0.113.254",
                    "type": "public",
                }],
                "v6": [],
            },
            "region": self.region_json(),
            "tags": tags,
            "vpc_uuid": "760e09ef-dc84-11e8-981e-3cfdfeaae000",
        })
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct DropletQuery {
    page: Option<String>,
    per_page: Option<String>,
    tag_name: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// `GET /v2/droplets`: every droplet, or those with `tag_name`, or those
/// named `name` (case-insensitive, exact); `type=gpus` lists none (the
/// fake has no GPU droplets). As the specification says, `tag_name` does
/// not combine with `name` or `type`.
pub(crate) async fn list_droplets(
    State(s): State<Arc<Shared>>,
    Query(q): Query<DropletQuery>,
) -> Response {
    if q.tag_name.is_some() && (q.name.is_some() || q.kind.is_some()) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "tag_name can not be combined with name or type",
        );
    }
    let mut st = s.lock();
    st.settle();
    let ids: Vec<u64> = match (&q.tag_name, &q.name, q.kind.as_deref()) {
        (_, _, Some("gpus")) => Vec::new(),
        (Some(tag), _, _) => st.tagged(tag),
        (None, Some(name), _) => st
            .droplets
            .iter()
            .filter(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(id, _)| *id)
            .collect(),
        (None, None, _) => st.droplets.keys().copied().collect(),
    };
    let items: Vec<Value> = ids.iter().map(|id| st.droplet_json(*id)).collect();
    let mut filter = String::new();
    for (key, value) in [
        ("tag_name", &q.tag_name),
        ("name", &q.name),
        ("type", &q.kind),
    ] {
        if let Some(v) = value {
            filter.push_str(&format!("&{key}={}", encode(v)));
        }
    }
    let page = PageQuery {
        page: q.page,
        per_page: q.per_page,
    };
    match paginate_filtered(&s.base_url(), "/v2/droplets", &filter, &page, items) {
        Some(mut v) => {
            if let Some(items) = v.as_object_mut().and_then(|o| o.remove("snapshots")) {
                v["droplets"] = items;
            }
            Json(v).into_response()
        }
        None => error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "page and per_page must be positive integers",
        ),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct TagQuery {
    tag_name: Option<String>,
}

/// `POST /v2/droplets/actions?tag_name=T` with `{"type": "snapshot",
/// "name": N}`: one snapshot action for every tagged droplet that is not
/// locked, 201 `{"actions": [...]}` in droplet id order.
pub(crate) async fn tag_action(
    State(s): State<Arc<Shared>>,
    Query(q): Query<TagQuery>,
    body: Option<Json<Value>>,
) -> Response {
    let unprocessable = |message: &str| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable_entity",
            message,
        )
    };
    let Some(tag) = q.tag_name.filter(|t| !t.is_empty()) else {
        return unprocessable("tag_name is required");
    };
    let Some(Json(body)) = body else {
        return unprocessable("a JSON body is required");
    };
    if body.get("type").and_then(Value::as_str) != Some("snapshot") {
        return unprocessable("this fake only takes snapshot actions");
    }
    let name = match body.get("name") {
        None => None,
        Some(Value::String(n)) if !n.is_empty() => Some(n.clone()),
        Some(_) => return unprocessable("name must be a string"),
    };
    let mut st = s.lock();
    st.settle();
    let tagged = st.tagged(&tag);
    let free: Vec<u64> = tagged
        .iter()
        .copied()
        .filter(|id| !st.droplet_locked(*id))
        .collect();
    if free.is_empty() && !tagged.is_empty() {
        return unprocessable(PENDING);
    }
    let now = st.now();
    let mut actions = Vec::with_capacity(free.len());
    for id in free {
        let name = name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", st.droplets[&id], now.timestamp_millis()));
        let action = st.start_action(id, name);
        actions.push(st.action_json(&action));
    }
    (StatusCode::CREATED, Json(json!({ "actions": actions }))).into_response()
}

/// Percent-encode a query value (tags and names are mostly safe already).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reqwest::Method;
    use serde_json::{json, Value};

    use crate::digitalocean::{FakeConfig, FakeDigitalOcean, FakeHandle, Resource};

    const TOKEN: &str = "fake-do-token";

    /// Droplets 1 to 5; 1, 3 and 5 carry `web`, 2 carries `db`.
    async fn fake() -> FakeHandle {
        let fake = FakeDigitalOcean::start(FakeConfig::default())
            .await
            .expect("fake starts");
        for id in 1..=5 {
            fake.add_droplet(id, &format!("d-{id}"));
        }
        for id in [1, 3, 5] {
            fake.tag_droplet(id, "web");
        }
        fake.tag_droplet(2, "db");
        fake
    }

    async fn call(
        fake: &FakeHandle,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}{path}", fake.url()))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("fake answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("JSON body")
        };
        (status, body)
    }

    fn ids(listing: &Value, key: &str, field: &str) -> Vec<u64> {
        listing[key]
            .as_array()
            .expect("array")
            .iter()
            .map(|x| x[field].as_u64().expect("integer id"))
            .collect()
    }

    fn assert_contract(fake: &FakeHandle) {
        let v = fake.contract_violations();
        assert!(v.is_empty(), "contract violations: {v:#?}");
    }

    fn snapshot(name: &str) -> Option<Value> {
        Some(json!({"type": "snapshot", "name": name}))
    }

    #[tokio::test]
    async fn tagged_droplets_are_listed_page_by_page_with_the_filter_in_the_links() {
        let fake = fake().await;
        let (status, page1) = call(
            &fake,
            Method::GET,
            "/v2/droplets?tag_name=web&per_page=2",
            None,
        )
        .await;
        assert_eq!(status, 200, "{page1}");
        assert_eq!(ids(&page1, "droplets", "id"), [1, 3]);
        assert_eq!(page1["meta"]["total"], 3);
        let next = page1["links"]["pages"]["next"].as_str().expect("next link");
        assert!(
            next.ends_with("/v2/droplets?page=2&per_page=2&tag_name=web"),
            "{next}"
        );
        assert_eq!(page1["droplets"][0]["tags"], json!(["web"]));
        assert_eq!(page1["droplets"][0]["locked"], false);
        let path = next.strip_prefix(fake.url()).expect("link on the fake");
        let (_, page2) = call(&fake, Method::GET, path, None).await;
        assert_eq!(ids(&page2, "droplets", "id"), [5]);
        assert!(page2["links"]["pages"].get("next").is_none(), "{page2}");
        assert!(page2["links"]["pages"]["prev"]
            .as_str()
            .is_some_and(|p| p.contains("tag_name=web")));
        let (_, all) = call(&fake, Method::GET, "/v2/droplets", None).await;
        assert_eq!(ids(&all, "droplets", "id"), [1, 2, 3, 4, 5]);
        let (_, none) = call(&fake, Method::GET, "/v2/droplets?tag_name=nobody", None).await;
        assert_eq!(ids(&none, "droplets", "id"), Vec::<u64>::new());
        assert_eq!(none["meta"]["total"], 0);
        let (_, named) = call(&fake, Method::GET, "/v2/droplets?name=D-2", None).await;
        assert_eq!(ids(&named, "droplets", "id"), [2]);
        assert_eq!(fake.requests("GET /v2/droplets"), 5);
        assert_contract(&fake);
    }

    #[tokio::test]
    async fn listed_droplets_show_their_snapshots_tags_and_lock() {
        let fake = fake().await;
        fake.add_snapshot(Resource::Droplet(3), "manual", fake.now());
        fake.lock_droplet(3, true);
        fake.untag_droplet(1, "web");
        fake.tag_droplet(3, "db");
        let (_, page) = call(&fake, Method::GET, "/v2/droplets?tag_name=web", None).await;
        assert_eq!(ids(&page, "droplets", "id"), [3, 5]);
        let d3 = &page["droplets"][0];
        assert_eq!(d3["locked"], true);
        assert_eq!(d3["tags"], json!(["db", "web"]));
        assert_eq!(d3["snapshot_ids"].as_array().map(Vec::len), Some(1));
        assert_contract(&fake);
    }

    #[tokio::test]
    async fn a_tag_action_starts_one_snapshot_action_per_tagged_droplet() {
        let fake = fake().await;
        let (status, answer) = call(
            &fake,
            Method::POST,
            "/v2/droplets/actions?tag_name=web",
            snapshot("web-1"),
        )
        .await;
        assert_eq!(status, 201, "{answer}");
        assert_eq!(ids(&answer, "actions", "resource_id"), [1, 3, 5]);
        assert!(answer["actions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["status"] == "in-progress"
                && a["type"] == "snapshot"
                && a["resource_type"] == "droplet"));
        assert_eq!(fake.actions_in_progress(), 3);
        let action = answer["actions"][1]["id"].as_u64().unwrap();
        let (_, one) = call(&fake, Method::GET, &format!("/v2/actions/{action}"), None).await;
        assert_eq!(one["action"]["resource_id"], 3);
        fake.advance(Duration::from_secs(180));
        for id in [1, 3, 5] {
            let names: Vec<String> = fake
                .snapshots_of(Resource::Droplet(id))
                .into_iter()
                .map(|s| s.name)
                .collect();
            assert_eq!(names, ["web-1"], "droplet {id}");
        }
        assert!(fake.snapshots_of(Resource::Droplet(2)).is_empty());
        assert_eq!(fake.requests("POST /v2/droplets/actions"), 1);
        assert_contract(&fake);
    }

    #[tokio::test]
    async fn locked_droplets_are_left_out_of_a_tag_action() {
        let fake = fake().await;
        fake.lock_droplet(1, true);
        let (status, _) = call(
            &fake,
            Method::POST,
            "/v2/droplets/5/actions",
            snapshot("busy"),
        )
        .await;
        assert_eq!(status, 201);
        let (status, answer) = call(
            &fake,
            Method::POST,
            "/v2/droplets/actions?tag_name=web",
            snapshot("web-1"),
        )
        .await;
        assert_eq!(status, 201, "{answer}");
        assert_eq!(ids(&answer, "actions", "resource_id"), [3]);
        assert_eq!(fake.actions_in_progress(), 2);
        assert_contract(&fake);
    }

    #[tokio::test]
    async fn a_tag_action_with_every_droplet_locked_is_refused_with_422() {
        let fake = fake().await;
        let (status, _) = call(
            &fake,
            Method::POST,
            "/v2/droplets/actions?tag_name=web",
            snapshot("first"),
        )
        .await;
        assert_eq!(status, 201);
        let (status, answer) = call(
            &fake,
            Method::POST,
            "/v2/droplets/actions?tag_name=web",
            snapshot("second"),
        )
        .await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["id"], "unprocessable_entity");
        assert_eq!(answer["message"], "Droplet already has a pending event.");
        assert_eq!(fake.actions_in_progress(), 3);
        // Once the actions end, the droplets take the next one.
        fake.advance(Duration::from_secs(180));
        let (status, answer) = call(
            &fake,
            Method::POST,
            "/v2/droplets/actions?tag_name=web",
            snapshot("second"),
        )
        .await;
        assert_eq!(status, 201, "{answer}");
        assert_eq!(ids(&answer, "actions", "resource_id"), [1, 3, 5]);
        assert_contract(&fake);
    }

    #[tokio::test]
    async fn a_tag_without_droplets_starts_nothing() {
        let fake = fake().await;
        let (status, answer) = call(
            &fake,
            Method::POST,
            "/v2/droplets/actions?tag_name=nobody",
            snapshot("x"),
        )
        .await;
        assert_eq!(status, 201, "{answer}");
        assert_eq!(answer, json!({"actions": []}));
        assert_eq!(fake.actions_in_progress(), 0);
        assert_contract(&fake);
    }

    #[tokio::test]
    async fn a_droplet_locked_by_a_test_refuses_a_single_action_until_unlocked() {
        let fake = fake().await;
        fake.lock_droplet(4, true);
        let (status, answer) =
            call(&fake, Method::POST, "/v2/droplets/4/actions", snapshot("a")).await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["message"], "Droplet already has a pending event.");
        fake.lock_droplet(4, false);
        let (status, _) = call(&fake, Method::POST, "/v2/droplets/4/actions", snapshot("a")).await;
        assert_eq!(status, 201);
        assert_contract(&fake);
    }

    #[tokio::test]
    async fn a_removed_droplet_is_gone_from_its_routes_its_tag_and_listings() {
        let fake = fake().await;
        assert!(fake.remove_droplet(3));
        assert!(!fake.remove_droplet(3));
        for (method, path, body) in [
            (Method::POST, "/v2/droplets/3/actions", snapshot("a")),
            (Method::GET, "/v2/droplets/3/actions", None),
            (Method::GET, "/v2/droplets/3/snapshots", None),
        ] {
            let (status, _) = call(&fake, method.clone(), path, body).await;
            assert_eq!(status, 404, "{method} {path}");
        }
        let (_, page) = call(&fake, Method::GET, "/v2/droplets?tag_name=web", None).await;
        assert_eq!(ids(&page, "droplets", "id"), [1, 5]);
        let (_, answer) = call(
            &fake,
            Method::POST,
            "/v2/droplets/actions?tag_name=web",
            snapshot("x"),
        )
        .await;
        assert_eq!(ids(&answer, "actions", "resource_id"), [1, 5]);
        assert_contract(&fake);
    }

    #[tokio::test]
    async fn bad_requests_are_refused() {
        let fake = fake().await;
        let cases = [
            (Method::GET, "/v2/droplets?tag_name=web&name=d-1", None, 400),
            (Method::GET, "/v2/droplets?per_page=0", None, 400),
            (Method::POST, "/v2/droplets/actions", snapshot("x"), 422),
            (
                Method::POST,
                "/v2/droplets/actions?tag_name=web",
                Some(json!({"type": "reboot"})),
                422,
            ),
            (
                Method::POST,
                "/v2/droplets/actions?tag_name=web",
                Some(json!({"type": "snapshot", "name": 5})),
                422,
            ),
        ];
        for (method, path, body, want) in cases {
            let (status, answer) = call(&fake, method.clone(), path, body).await;
            assert_eq!(status, want, "{method} {path}: {answer}");
            assert!(answer["message"].is_string(), "{answer}");
        }
        assert_eq!(fake.actions_in_progress(), 0);
    }
}
