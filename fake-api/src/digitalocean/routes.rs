//! Handlers for the DigitalOcean paths snapsched uses. Paths are written
//! exactly as in the OpenAPI document so the contract check can find them.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::state::{FakeSnapshot, Resource};
use super::{tags, Shared};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v2/actions", get(all_actions))
        .route("/v2/actions/{action_id}", get(get_action))
        .route("/v2/droplets", get(tags::list_droplets))
        .route("/v2/droplets/actions", post(tags::tag_action))
        .route(
            "/v2/droplets/{droplet_id}/actions",
            get(droplet_actions).post(droplet_action),
        )
        .route(
            "/v2/droplets/{droplet_id}/snapshots",
            get(droplet_snapshots),
        )
        .route(
            "/v2/volumes/{volume_id}/snapshots",
            get(volume_snapshots).post(create_volume_snapshot),
        )
        .route(
            "/v2/snapshots/{snapshot_id}",
            delete(delete_snapshot).get(get_snapshot),
        )
        .route("/v2/tags", post(create_tag))
        .route(
            "/v2/tags/{tag_id}/resources",
            post(tag_resources).delete(untag_resources),
        )
        .merge(super::images::routes())
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                "The resource you were accessing could not be found.",
            )
        })
        .with_state(shared)
}

/// A DigitalOcean error body.
pub(crate) fn error(status: StatusCode, id: &str, message: &str) -> Response {
    let body = json!({"id": id, "message": message, "request_id": Uuid::new_v4().to_string()});
    (status, Json(body)).into_response()
}

fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "The resource you were accessing could not be found.",
    )
}

fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_request", message)
}

#[derive(Debug, Deserialize)]
pub(crate) struct PageQuery {
    pub(super) page: Option<String>,
    pub(super) per_page: Option<String>,
}

/// One page of `items` with DigitalOcean's `links.pages` and `meta.total`;
/// `None` when `page` or `per_page` is not a positive integer.
pub(crate) fn paginate(base: &str, path: &str, q: &PageQuery, items: Vec<Value>) -> Option<Value> {
    paginate_filtered(base, path, "", q, items)
}

/// [`paginate`] for a filtered listing: `filter` (`&tag_name=web`, already
/// encoded) is kept in every link, as the API keeps its query.
pub(super) fn paginate_filtered(
    base: &str,
    path: &str,
    filter: &str,
    q: &PageQuery,
    items: Vec<Value>,
) -> Option<Value> {
    let parse = |v: &Option<String>, default: usize| -> Option<usize> {
        match v {
            None => Some(default),
            Some(s) => s.parse::<usize>().ok().filter(|n| *n >= 1),
        }
    };
    let page = parse(&q.page, 1)?;
    let per_page = parse(&q.per_page, 20)?.min(200);
    let total = items.len();
    let last = total.div_ceil(per_page).max(1);
    let link = |n: usize| format!("{base}{path}?page={n}&per_page={per_page}{filter}");
    let mut pages = serde_json::Map::new();
    if page > 1 {
        pages.insert("first".into(), json!(link(1)));
        pages.insert("prev".into(), json!(link((page - 1).min(last))));
    }
    if page < last {
        pages.insert("last".into(), json!(link(last)));
        pages.insert("next".into(), json!(link(page + 1)));
    }
    let chunk: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    Some(json!({"snapshots": chunk, "links": {"pages": pages}, "meta": {"total": total}}))
}

/// `GET /v2/droplets/{droplet_id}/actions`: the droplet's actions, newest
/// first, paginated like every listing.
async fn droplet_actions(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return not_found();
    };
    let mut st = s.lock();
    st.settle();
    if !st.droplets.contains_key(&id) {
        return not_found();
    }
    let items: Vec<Value> = st
        .actions
        .values()
        .rev()
        .filter(|a| a.droplet == id && a.transfer.is_none())
        .map(|a| st.action_json(a))
        .collect();
    let path = format!("/v2/droplets/{id}/actions");
    match paginate(&s.base_url(), &path, &q, items) {
        Some(mut v) => {
            if let Some(items) = v.as_object_mut().and_then(|o| o.remove("snapshots")) {
                v["actions"] = items;
            }
            Json(v).into_response()
        }
        None => bad_request("page and per_page must be positive integers"),
    }
}

/// `GET /v2/actions`: every action of the account, newest first (as
/// DigitalOcean lists them), paginated like every listing.
async fn all_actions(State(s): State<Arc<Shared>>, Query(q): Query<PageQuery>) -> Response {
    let mut st = s.lock();
    st.settle();
    let items: Vec<Value> = st
        .actions
        .values()
        .rev()
        .map(|a| st.action_json(a))
        .collect();
    match paginate(&s.base_url(), "/v2/actions", &q, items) {
        Some(mut v) => {
            if let Some(items) = v.as_object_mut().and_then(|o| o.remove("snapshots")) {
                v["actions"] = items;
            }
            Json(v).into_response()
        }
        None => bad_request("page and per_page must be positive integers"),
    }
}

async fn get_action(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return not_found();
    };
    let mut st = s.lock();
    st.settle();
    match st.actions.get(&id) {
        Some(a) => Json(json!({"action": st.action_json(a)})).into_response(),
        None => not_found(),
    }
}

async fn droplet_action(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return not_found();
    };
    let Some(Json(body)) = body else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable_entity",
            "a JSON body is required",
        );
    };
    let mut st = s.lock();
    st.settle();
    if !st.droplets.contains_key(&id) {
        return not_found();
    }
    if body.get("type").and_then(Value::as_str) != Some("snapshot") {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable_entity",
            "this fake only takes snapshot actions",
        );
    }
    let now = st.now();
    let name = match body.get("name") {
        Some(Value::String(n)) if !n.is_empty() => n.clone(),
        None => format!("{}-{}", st.droplets[&id], now.timestamp_millis()),
        Some(_) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable_entity",
                "name must be a string",
            )
        }
    };
    if st.droplet_locked(id) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable_entity",
            "Droplet already has a pending event.",
        );
    }
    let action = st.start_action(id, name);
    (
        StatusCode::CREATED,
        Json(json!({"action": st.action_json(&action)})),
    )
        .into_response()
}

fn listing(s: &Shared, path: &str, q: &PageQuery, of: Resource) -> Response {
    let mut st = s.lock();
    st.settle();
    let exists = match of {
        Resource::Droplet(d) => st.droplets.contains_key(&d),
        Resource::Volume(v) => st.volumes.contains_key(&v),
    };
    if !exists {
        return not_found();
    }
    let items: Vec<Value> = st
        .snapshots
        .iter()
        .filter(|x| x.resource == of)
        .map(|x| st.snapshot_json(x))
        .collect();
    match paginate(&s.base_url(), path, q, items) {
        Some(v) => Json(v).into_response(),
        None => bad_request("page and per_page must be positive integers"),
    }
}

async fn droplet_snapshots(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return not_found();
    };
    listing(
        &s,
        &format!("/v2/droplets/{id}/snapshots"),
        &q,
        Resource::Droplet(id),
    )
}

async fn volume_snapshots(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return not_found();
    };
    listing(
        &s,
        &format!("/v2/volumes/{id}/snapshots"),
        &q,
        Resource::Volume(id),
    )
}

async fn create_volume_snapshot(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return not_found();
    };
    let Some(Json(body)) = body else {
        return bad_request("a JSON body is required");
    };
    let Some(name) = body
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    else {
        return bad_request("name is required");
    };
    let tags: Vec<String> = match body.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        Some(_) => return bad_request("tags must be an array of strings"),
    };
    let mut st = s.lock();
    if !st.volumes.contains_key(&id) {
        return not_found();
    }
    let dup = st
        .snapshots
        .iter()
        .any(|x| x.resource == Resource::Volume(id) && x.name == name);
    if dup {
        return error(
            StatusCode::CONFLICT,
            "conflict",
            "a snapshot with this name already exists for this volume",
        );
    }
    let now = st.now();
    let sid = st.add_snapshot(Resource::Volume(id), name.to_owned(), now);
    for t in &tags {
        st.tags.insert(t.clone());
    }
    let Some(snap) = st.snapshots.iter_mut().find(|x| x.id == sid) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "snapshot vanished",
        );
    };
    snap.tags = tags;
    let snap: FakeSnapshot = snap.clone();
    (
        StatusCode::CREATED,
        Json(json!({"snapshot": st.snapshot_json(&snap)})),
    )
        .into_response()
}

async fn get_snapshot(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut st = s.lock();
    st.settle();
    let Some(snap) = st.snapshots.iter().find(|x| x.id == id).cloned() else {
        return not_found();
    };
    // `/v2/snapshots` gives every id as a string, with its origin.
    let (rid, rtype) = match snap.resource {
        Resource::Droplet(d) => (d.to_string(), "droplet"),
        Resource::Volume(v) => (v.to_string(), "volume"),
    };
    Json(json!({"snapshot": {
        "id": snap.id, "name": snap.name, "created_at": super::state::ts(snap.created_at),
        "regions": snap.regions, "min_disk_size": 25, "size_gigabytes": 2.34,
        "resource_id": rid, "resource_type": rtype, "tags": snap.tags,
    }}))
    .into_response()
}

async fn delete_snapshot(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut st = s.lock();
    st.settle();
    let before = st.snapshots.len();
    st.snapshots.retain(|x| x.id != id);
    if st.snapshots.len() == before {
        return not_found();
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn create_tag(State(s): State<Arc<Shared>>, body: Option<Json<Value>>) -> Response {
    let Some(name) = body
        .as_ref()
        .and_then(|Json(b)| b.get("name"))
        .and_then(Value::as_str)
        .filter(|n| valid_tag(n))
    else {
        return bad_request("name must match ^[a-zA-Z0-9_\\-\\:]+$");
    };
    let mut st = s.lock();
    st.tags.insert(name.to_owned());
    let count = st
        .snapshots
        .iter()
        .filter(|x| x.tags.iter().any(|t| t == name))
        .count();
    (
        StatusCode::CREATED,
        Json(json!({"tag": {"name": name, "resources": {"count": count}}})),
    )
        .into_response()
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 255
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':'))
}

async fn tag_resources(
    State(s): State<Arc<Shared>>,
    Path(tag): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    retag(&s, tag, body, true)
}

/// `DELETE /v2/tags/{tag}/resources`: as the real API, 404 for an unknown
/// tag or resource, 204 otherwise (also when the resource did not carry
/// the tag).
async fn untag_resources(
    State(s): State<Arc<Shared>>,
    Path(tag): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    retag(&s, tag, body, false)
}

fn retag(s: &Shared, tag: String, body: Option<Json<Value>>, add: bool) -> Response {
    let Some(resources) = body
        .as_ref()
        .and_then(|Json(b)| b.get("resources"))
        .and_then(Value::as_array)
    else {
        return bad_request("resources is required");
    };
    let mut st = s.lock();
    if !st.tags.contains(&tag) {
        return not_found();
    }
    for r in resources {
        let id = r
            .get("resource_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = r
            .get("resource_type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(snap) = st.snapshots.iter_mut().find(|x| {
            x.id == id
                && matches!(
                    (kind, x.resource),
                    ("image", Resource::Droplet(_)) | ("volume_snapshot", Resource::Volume(_))
                )
        }) else {
            return not_found();
        };
        if !add {
            snap.tags.retain(|t| *t != tag);
        } else if !snap.tags.contains(&tag) {
            snap.tags.push(tag.clone());
        }
    }
    StatusCode::NO_CONTENT.into_response()
}
