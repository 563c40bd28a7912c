//! Images: `GET /v2/images/{image_id}` and image transfer actions
//! (`/v2/images/{image_id}/actions`), for cross-region copies of droplet
//! snapshots.
//!
//! A droplet snapshot is an image whose id is its snapshot id. A transfer
//! (`{"type": "transfer", "region": "ams3"}`) is an action with
//! `resource_type` `image`: it stays `in-progress` for the fake's action
//! duration, then completes, and the image's `regions` gains the region
//! (or, when a fault says so, it errors and the regions stay as they were).
//! It is listed by `GET /v2/actions` and `GET /v2/actions/{id}` like every
//! action, and by the image's own action paths.
//!
//! Refused with 422 `unprocessable_entity`, as DigitalOcean refuses them: a
//! region the fake does not know, a region the image is already in, a
//! region a transfer of the image is already on its way to, and any other
//! action type (`convert` turns a backup into a snapshot; snapsched never
//! sends it). The specification lists no 422 for this path, so the answer
//! is checked against its `default` error body.
//!
//! Invariants: an image's `regions` only grows by a completed transfer; at
//! most one transfer per (image, region) is in progress.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::routes::{error, PageQuery};
use super::state::{ts, Action, Resource, State as World};
use super::{FakeHandle, Shared};

/// The regions the fake transfers images to: the region slugs of the
/// specification's `region_slug` enumeration.
pub const REGIONS: &[&str] = &[
    "ams1", "ams2", "ams3", "blr1", "fra1", "lon1", "nyc1", "nyc2", "nyc3", "sfo1", "sfo2", "sfo3",
    "sgp1", "tor1", "syd1",
];

/// What a transfer action moves where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// The image (droplet snapshot) id.
    pub image: String,
    /// The region it is copied to.
    pub region: String,
}

/// Transfer faults.
#[derive(Debug, Default)]
pub(crate) struct Images {
    /// Region → how many of the next transfers to it end `errored`.
    pub fail_to: BTreeMap<String, u32>,
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v2/images/{image_id}", get(get_image))
        .route(
            "/v2/images/{image_id}/actions",
            get(image_actions).post(image_action),
        )
        .route(
            "/v2/images/{image_id}/actions/{action_id}",
            get(get_image_action),
        )
}

/// A completed transfer: the image is now in the region too.
pub(crate) fn arrived(world: &mut World, t: &Transfer) {
    if let Some(s) = world.snapshots.iter_mut().find(|s| s.id == t.image) {
        if !s.regions.contains(&t.region) {
            s.regions.push(t.region.clone());
        }
    }
}

fn region_json(slug: &str) -> Value {
    json!({
        "name": slug.to_ascii_uppercase(),
        "slug": slug,
        "features": ["backups", "ipv6", "metadata", "image_transfer"],
        "available": true,
        "sizes": ["s-1vcpu-1gb"],
    })
}

/// A transfer action as the API shows it: the image is the resource, the
/// region is where it goes.
pub(crate) fn transfer_json(_world: &World, a: &Action, t: &Transfer) -> Value {
    json!({
        "id": a.id,
        "status": a.status,
        "type": "transfer",
        "started_at": ts(a.started_at),
        "completed_at": a.completed_at.map(ts),
        "resource_id": t.image.parse::<u64>().unwrap_or_default(),
        "resource_type": "image",
        "region": region_json(&t.region),
        "region_slug": t.region,
    })
}

fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "The resource you were accessing could not be found.",
    )
}

fn unprocessable(message: &str) -> Response {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable_entity",
        message,
    )
}

/// The droplet snapshot that image `id` is, if any (volume snapshots are
/// not images).
fn image_index(world: &World, id: &str) -> Option<usize> {
    id.parse::<u64>().ok()?;
    world
        .snapshots
        .iter()
        .position(|s| s.id == id && matches!(s.resource, Resource::Droplet(_)))
}

fn image_json(world: &World, i: usize) -> Value {
    let s = &world.snapshots[i];
    json!({
        "id": s.id.parse::<u64>().unwrap_or_default(),
        "name": s.name,
        "type": "snapshot",
        "distribution": "Ubuntu",
        "public": false,
        "regions": s.regions,
        "created_at": ts(s.created_at),
        "min_disk_size": 25,
        "size_gigabytes": 2.34,
        "description": "",
        "tags": s.tags,
        "status": "available",
        "error_message": "",
    })
}

async fn get_image(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut st = s.lock();
    st.settle();
    match image_index(&st, &id) {
        Some(i) => Json(json!({"image": image_json(&st, i)})).into_response(),
        None => not_found(),
    }
}

async fn image_action(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    let Some(Json(body)) = body else {
        return unprocessable("a JSON body is required");
    };
    let mut st = s.lock();
    st.settle();
    match begin(&mut st, id, &body) {
        Ok(action) => (
            StatusCode::CREATED,
            Json(json!({"action": st.action_json(&action)})),
        )
            .into_response(),
        Err(Refused::NotFound) => not_found(),
        Err(Refused::Unprocessable(m)) => unprocessable(&m),
    }
}

/// Why an image action is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    NotFound,
    Unprocessable(String),
}

/// Start the action `body` asks of image `id`, or say why not.
pub(crate) fn begin(world: &mut World, id: String, body: &Value) -> Result<Action, Refused> {
    let Some(i) = image_index(world, &id) else {
        return Err(Refused::NotFound);
    };
    let refuse = |m: String| Err(Refused::Unprocessable(m));
    match body.get("type").and_then(Value::as_str) {
        Some("transfer") => {}
        Some("convert") => return refuse("Only backups can be converted to snapshots.".into()),
        _ => return refuse("type must be one of convert, transfer".into()),
    }
    let Some(region) = body.get("region").and_then(Value::as_str) else {
        return refuse("region is required for a transfer".into());
    };
    if !REGIONS.contains(&region) {
        return refuse(format!("{region} is not a valid region."));
    }
    if world.snapshots[i].regions.iter().any(|r| r == region) {
        return refuse(format!("Image is already available in {region}."));
    }
    let pending = world.actions.values().any(|a| {
        a.status == "in-progress"
            && a.transfer
                .as_ref()
                .is_some_and(|t| t.image == id && t.region == region)
    });
    if pending {
        return refuse(format!("Image is already being transferred to {region}."));
    }
    let transfer = Transfer {
        image: id,
        region: region.to_owned(),
    };
    Ok(start_transfer(world, transfer))
}

/// Start a transfer action that runs for the fake's action duration.
pub(crate) fn start_transfer(world: &mut World, transfer: Transfer) -> Action {
    let mut action = world.start_action(0, String::new());
    let fails = match world.images.fail_to.get_mut(&transfer.region) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    };
    // `start_action` took a droplet action's fault, if one was queued:
    // give it back, transfers fail only by their own faults.
    if action.fails {
        world.fail_next_actions += 1;
    }
    action.fails = fails;
    action.transfer = Some(transfer);
    world.actions.insert(action.id, action.clone());
    action
}

/// Transfers of image `id`, newest first.
fn transfers_of<'a>(world: &'a World, id: &'a str) -> impl Iterator<Item = &'a Action> + 'a {
    world
        .actions
        .values()
        .rev()
        .filter(move |a| a.transfer.as_ref().is_some_and(|t| t.image == id))
}

async fn image_actions(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let mut st = s.lock();
    st.settle();
    if image_index(&st, &id).is_none() {
        return not_found();
    }
    let items: Vec<Value> = transfers_of(&st, &id).map(|a| st.action_json(a)).collect();
    let path = format!("/v2/images/{id}/actions");
    match super::routes::paginate(&s.base_url(), &path, &q, items) {
        Some(mut v) => {
            if let Some(items) = v.as_object_mut().and_then(|o| o.remove("snapshots")) {
                v["actions"] = items;
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

async fn get_image_action(
    State(s): State<Arc<Shared>>,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    let mut st = s.lock();
    st.settle();
    let Ok(action) = action.parse::<u64>() else {
        return not_found();
    };
    let found = transfers_of(&st, &id).find(|a| a.id == action);
    match found {
        Some(a) => Json(json!({"action": st.action_json(a)})).into_response(),
        None => not_found(),
    }
}

impl FakeHandle {
    /// Make the next `n` transfers to `region` end `errored`.
    pub fn fail_transfers_to(&self, region: &str, n: u32) {
        *self
            .shared
            .lock()
            .images
            .fail_to
            .entry(region.to_owned())
            .or_default() += n;
    }

    /// Every transfer action started so far, oldest first.
    pub fn transfers(&self) -> Vec<Transfer> {
        let w = self.shared.lock();
        w.actions
            .values()
            .filter_map(|a| a.transfer.clone())
            .collect()
    }

    /// Transfer actions still in progress, after settling due ones.
    pub fn transfers_in_progress(&self) -> usize {
        let mut w = self.shared.lock();
        w.settle();
        w.actions
            .values()
            .filter(|a| a.transfer.is_some() && a.status == "in-progress")
            .count()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::contract::{check_request, check_response};
    use super::*;

    fn world() -> World {
        World::new("t".into(), Duration::from_secs(60), false, 250, 5000)
    }

    fn droplet_snapshot(w: &mut World) -> String {
        let now = w.now();
        w.add_snapshot(Resource::Droplet(7), "daily-1".into(), now)
    }

    #[test]
    fn a_transfer_grows_the_images_regions_once_its_time_has_come() {
        let mut w = world();
        let id = droplet_snapshot(&mut w);
        let a = start_transfer(
            &mut w,
            Transfer {
                image: id.clone(),
                region: "ams3".into(),
            },
        );
        w.settle();
        assert_eq!(w.actions[&a.id].status, "in-progress");
        assert_eq!(w.snapshots[0].regions, ["nyc3"]);
        w.clock.advance(Duration::from_secs(60));
        w.settle();
        assert_eq!(w.actions[&a.id].status, "completed");
        assert_eq!(w.snapshots[0].regions, ["nyc3", "ams3"]);
        let json = w.action_json(&w.actions[&a.id].clone());
        assert_eq!(json["type"], "transfer");
        assert_eq!(json["resource_type"], "image");
        assert_eq!(json["region_slug"], "ams3");
        assert_eq!(json["resource_id"], id.parse::<u64>().unwrap());
    }

    #[test]
    fn a_failing_transfer_errors_and_leaves_the_regions_alone() {
        let mut w = world();
        let id = droplet_snapshot(&mut w);
        w.images.fail_to.insert("fra1".into(), 1);
        w.fail_next_actions = 1;
        let a = start_transfer(
            &mut w,
            Transfer {
                image: id.clone(),
                region: "fra1".into(),
            },
        );
        w.clock.advance(Duration::from_secs(60));
        w.settle();
        assert_eq!(w.actions[&a.id].status, "errored");
        assert_eq!(w.snapshots[0].regions, ["nyc3"]);
        // The droplet action fault was not used up by the transfer.
        assert_eq!(w.fail_next_actions, 1);
        let b = start_transfer(
            &mut w,
            Transfer {
                image: id,
                region: "fra1".into(),
            },
        );
        assert!(!b.fails, "only one transfer was to fail");
    }

    #[test]
    fn transfers_the_api_refuses_are_refused() {
        let mut w = world();
        let id = droplet_snapshot(&mut w);
        let volume = w.add_snapshot(
            Resource::Volume(uuid::Uuid::new_v4()),
            "v".into(),
            chrono::Utc::now(),
        );
        let to = |r: &str| json!({"type": "transfer", "region": r});
        let unprocessable = |r: Result<Action, Refused>| match r {
            Err(Refused::Unprocessable(m)) => m,
            other => panic!("expected 422, got {other:?}"),
        };
        let m = unprocessable(begin(&mut w, id.clone(), &to("mars1")));
        assert!(m.contains("mars1"), "{m}");
        let m = unprocessable(begin(&mut w, id.clone(), &to("nyc3")));
        assert!(m.contains("already available in nyc3"), "{m}");
        unprocessable(begin(&mut w, id.clone(), &json!({"type": "convert"})));
        unprocessable(begin(&mut w, id.clone(), &json!({"type": "transfer"})));
        assert_eq!(
            begin(&mut w, volume, &to("ams3")).unwrap_err(),
            Refused::NotFound
        );
        assert_eq!(
            begin(&mut w, "999".into(), &to("ams3")).unwrap_err(),
            Refused::NotFound
        );
        begin(&mut w, id.clone(), &to("ams3")).unwrap();
        let m = unprocessable(begin(&mut w, id.clone(), &to("ams3")));
        assert!(m.contains("being transferred to ams3"), "{m}");
        w.clock.advance(Duration::from_secs(60));
        w.settle();
        let m = unprocessable(begin(&mut w, id, &to("ams3")));
        assert!(m.contains("already available in ams3"), "{m}");
    }

    #[test]
    fn transfers_are_not_a_droplets_pending_event() {
        let mut w = world();
        let id = droplet_snapshot(&mut w);
        start_transfer(
            &mut w,
            Transfer {
                image: id,
                region: "ams3".into(),
            },
        );
        assert!(w.pending_action(0).is_none());
    }

    #[test]
    fn the_transfer_request_and_answer_follow_the_specification() {
        let p = "/v2/images/{image_id}/actions";
        let transfer = json!({"type": "transfer", "region": "ams3"});
        assert_eq!(
            check_request("POST", p, "", Some(&transfer)),
            Vec::<String>::new()
        );
        // An unknown region passes the `anyOf` through its `convert`
        // branch (the discriminator is not checked): the handler refuses
        // it with a 422, as the API does.
        assert!(!check_request("POST", p, "", Some(&json!({"type": "move"}))).is_empty());
        let mut w = world();
        let id = droplet_snapshot(&mut w);
        let a = start_transfer(
            &mut w,
            Transfer {
                image: id,
                region: "ams3".into(),
            },
        );
        let body = json!({"action": w.action_json(&a)});
        assert_eq!(
            check_response("POST", p, 201, Some(&body)),
            Vec::<String>::new()
        );
        assert_eq!(
            check_response(
                "GET",
                "/v2/images/{image_id}/actions/{action_id}",
                200,
                Some(&body)
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            check_response("GET", "/v2/actions/{action_id}", 200, Some(&body)),
            Vec::<String>::new()
        );
        let refused = json!({"id": "unprocessable_entity", "message": "m", "request_id": "r"});
        assert_eq!(
            check_response("POST", p, 422, Some(&refused)),
            Vec::<String>::new()
        );
        let listing =
            json!({"actions": [w.action_json(&a)], "links": {"pages": {}}, "meta": {"total": 1}});
        assert_eq!(
            check_response("GET", p, 200, Some(&listing)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_image_answer_follows_the_specification() {
        let mut w = world();
        droplet_snapshot(&mut w);
        let body = json!({"image": image_json(&w, 0)});
        assert_eq!(
            check_response("GET", "/v2/images/{image_id}", 200, Some(&body)),
            Vec::<String>::new()
        );
    }
}
