//! HTTP surface of the fake Erigones API: the envelope, the status codes and
//! the validation order of the real one, plus request counting, the
//! `ES-API-KEY` check and fault injection in one middleware.

use std::collections::HashMap;
use std::io;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Query, Request, State as AxState};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::state::{
    FakeSnapshot, FaultKind, State, TaskKind, TaskView, STATUS_OK, STATUS_PENDING, TYPE_MANUAL,
};
use super::FakeErigones;

type Reply = (StatusCode, Json<Value>);

fn detail(code: StatusCode, msg: &str) -> Reply {
    (code, Json(json!({ "detail": msg })))
}

fn failure(code: StatusCode, result: Value) -> Reply {
    (
        code,
        Json(json!({"status": "FAILURE", "result": result, "task_id": null})),
    )
}

fn success(code: StatusCode, result: Value) -> Reply {
    (
        code,
        Json(json!({"status": "SUCCESS", "result": result, "task_id": null})),
    )
}

fn pending(task_id: &str) -> Reply {
    (
        StatusCode::CREATED,
        Json(json!({"status": "PENDING", "result": null, "task_id": task_id})),
    )
}

/// The router, nested under `/api` like a real installation.
pub(crate) fn router(fake: FakeErigones) -> Router {
    let api = Router::new()
        .route("/vm/define/snapshot/", get(list_all_definitions))
        .route("/vm/{hostname}/define/snapshot/", get(list_vm_definitions))
        .route(
            "/vm/{hostname}/snapshot/",
            get(list_snapshots).delete(bulk_delete),
        )
        .route(
            "/vm/{hostname}/snapshot/{snapname}/",
            get(get_snapshot).post(create_snapshot).delete(delete_one),
        )
        .route("/task/{task_id}/status/", get(task_status))
        .route("/task/{task_id}/done/", get(task_done))
        .route_layer(middleware::from_fn_with_state(fake.clone(), gate))
        .with_state(fake);
    Router::new().nest("/api", api)
}

/// Count, authenticate and maybe spoil every matched request.
async fn gate(AxState(fake): AxState<FakeErigones>, req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().trim_start_matches("/api").to_owned())
        .unwrap_or_default();
    let route = format!("{} {}", req.method(), path);
    let key_ok = {
        let expected = fake.with(|s| s.config.api_key.clone());
        req.headers()
            .get("es-api-key")
            .is_some_and(|v| v.as_bytes() == expected.as_bytes())
    };
    let fault = fake.with(|s| {
        *s.requests.entry(route.clone()).or_default() += 1;
        s.take_fault(&route)
    });
    match fault {
        Some(FaultKind::Status(code)) => return spoiled(code, "Internal Server Error"),
        Some(FaultKind::StatusWithDetail(code, text)) => return spoiled(code, &text),
        Some(FaultKind::Slow(d)) => tokio::time::sleep(d).await,
        Some(FaultKind::Drop) => return broken(),
        Some(FaultKind::DropAfterWork) => {
            if key_ok {
                let _ = next.run(req).await;
            }
            return broken();
        }
        None => {}
    }
    if !key_ok {
        return detail(StatusCode::FORBIDDEN, "Invalid API key").into_response();
    }
    next.run(req).await
}

/// A 200 whose body breaks off: the client sees a failed transfer.
fn broken() -> Response {
    let broken = futures_util::stream::iter([Err::<Bytes, io::Error>(io::Error::new(
        io::ErrorKind::ConnectionReset,
        "fault injection: connection dropped",
    ))]);
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from_stream(broken))
        .unwrap_or_default()
}

fn spoiled(code: u16, text: &str) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    detail(code, text).into_response()
}

fn snapshot_json(hostname: &str, s: &FakeSnapshot, full: bool) -> Value {
    if !full {
        return json!(s.name);
    }
    json!({
        "hostname": hostname,
        "name": s.name,
        "disk_id": s.disk_id,
        "created": s.created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "status": s.status,
        "type": s.kind,
        "note": s.note,
        "define": s.define,
        "size": s.size,
        "fsfreeze": s.fsfreeze,
    })
}

fn is_true(q: &HashMap<String, String>, key: &str) -> bool {
    q.get(key)
        .is_some_and(|v| matches!(v.as_str(), "true" | "1" | "True"))
}

/// `disk_id` from a query or body value: absent means 1, like Erigones.
fn parse_disk(raw: Option<&Value>) -> Result<u32, Reply> {
    match raw {
        None | Some(Value::Null) => Ok(1),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| detail(StatusCode::PRECONDITION_FAILED, "Invalid disk_id")),
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| detail(StatusCode::PRECONDITION_FAILED, "Invalid disk_id")),
        Some(_) => Err(detail(StatusCode::PRECONDITION_FAILED, "Invalid disk_id")),
    }
}

fn body_json(body: &Bytes) -> Result<Value, Reply> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| {
        failure(
            StatusCode::BAD_REQUEST,
            json!({"non_field_errors": [format!("Malformed request: {e}")]}),
        )
    })
}

/// Checks shared by every snapshot call: VM exists, is installed and
/// operational, and the disk exists.
fn check_vm_disk(s: &State, hostname: &str, disk_id: u32) -> Result<(), Reply> {
    let Some(vm) = s.vms.get(hostname) else {
        return Err(detail(StatusCode::NOT_FOUND, "VM not found"));
    };
    if !vm.installed {
        return Err(detail(
            StatusCode::PRECONDITION_REQUIRED,
            "VM is not installed",
        ));
    }
    if !vm.operational {
        return Err(detail(StatusCode::LOCKED, "VM is not operational"));
    }
    if disk_id == 0 || disk_id > vm.disks {
        return Err(detail(StatusCode::PRECONDITION_FAILED, "Invalid disk_id"));
    }
    Ok(())
}

fn lock_error() -> Reply {
    failure(
        StatusCode::BAD_REQUEST,
        json!({"detail": "Task did not acquire lock"}),
    )
}

fn valid_snapname(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 24
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn definition_json(d: &super::state::FakeDefinition, full: bool) -> Value {
    if full {
        json!(d)
    } else {
        json!(d.name)
    }
}

async fn list_all_definitions(
    AxState(fake): AxState<FakeErigones>,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    let full = is_true(&q, "full");
    fake.with(|s| {
        let defs: Vec<Value> = s
            .definitions
            .iter()
            .map(|d| definition_json(d, full))
            .collect();
        success(StatusCode::OK, json!(defs))
    })
}

async fn list_vm_definitions(
    AxState(fake): AxState<FakeErigones>,
    Path(hostname): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    let full = is_true(&q, "full");
    fake.with(|s| {
        if !s.vms.contains_key(&hostname) {
            return detail(StatusCode::NOT_FOUND, "VM not found");
        }
        let defs: Vec<Value> = s
            .definitions
            .iter()
            .filter(|d| d.hostname == hostname)
            .map(|d| definition_json(d, full))
            .collect();
        success(StatusCode::OK, json!(defs))
    })
}

async fn list_snapshots(
    AxState(fake): AxState<FakeErigones>,
    Path(hostname): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    let full = is_true(&q, "full");
    fake.with(|s| {
        s.resolve_tasks();
        let Some(vm) = s.vms.get(&hostname) else {
            return detail(StatusCode::NOT_FOUND, "VM not found");
        };
        let disk = match q.get("disk_id") {
            None => None,
            Some(raw) => match raw.parse::<u32>() {
                Ok(d) if d >= 1 && d <= vm.disks => Some(d),
                _ => return detail(StatusCode::PRECONDITION_FAILED, "Invalid disk_id"),
            },
        };
        let kind: Option<u8> = q.get("type").and_then(|t| t.parse().ok());
        let define = q.get("define");
        let mut snaps: Vec<&FakeSnapshot> = vm
            .snapshots
            .iter()
            .filter(|s| disk.is_none_or(|d| s.disk_id == d))
            .filter(|s| kind.is_none_or(|k| s.kind == k))
            .filter(|s| define.is_none_or(|d| s.define.as_deref() == Some(d.as_str())))
            .collect();
        match q.get("order_by").map(String::as_str).unwrap_or("-created") {
            "name" => snaps.sort_by(|a, b| a.name.cmp(&b.name)),
            "-name" => snaps.sort_by(|a, b| b.name.cmp(&a.name)),
            "created" => snaps.sort_by_key(|s| s.created),
            _ => snaps.sort_by_key(|s| std::cmp::Reverse(s.created)),
        }
        let out: Vec<Value> = snaps
            .iter()
            .map(|sn| snapshot_json(&hostname, sn, full))
            .collect();
        success(StatusCode::OK, json!(out))
    })
}

async fn get_snapshot(
    AxState(fake): AxState<FakeErigones>,
    Path((hostname, snapname)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    fake.with(|s| {
        s.resolve_tasks();
        let disk = match parse_disk(q.get("disk_id").map(|v| json!(v)).as_ref()) {
            Ok(d) => d,
            Err(r) => return r,
        };
        let Some(vm) = s.vms.get(&hostname) else {
            return detail(StatusCode::NOT_FOUND, "VM not found");
        };
        match vm
            .snapshots
            .iter()
            .find(|sn| sn.disk_id == disk && sn.name == snapname)
        {
            Some(sn) => success(StatusCode::OK, snapshot_json(&hostname, sn, true)),
            None => detail(StatusCode::NOT_FOUND, "Snapshot not found"),
        }
    })
}

async fn create_snapshot(
    AxState(fake): AxState<FakeErigones>,
    Path((hostname, snapname)): Path<(String, String)>,
    body: Bytes,
) -> Reply {
    let body = match body_json(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    fake.with(|s| {
        s.resolve_tasks();
        let disk_id = match parse_disk(body.get("disk_id")) {
            Ok(d) => d,
            Err(r) => return r,
        };
        if let Some(vm) = s.vms.get(&hostname) {
            if vm.installed && vm.operational && !valid_snapname(&snapname) {
                return failure(
                    StatusCode::BAD_REQUEST,
                    json!({"name": ["Enter a valid snapshot name (at most 24 characters of A-Z a-z 0-9 . _ -)."]}),
                );
            }
        }
        if let Err(r) = check_vm_disk(s, &hostname, disk_id) {
            return r;
        }
        let now = s.now();
        let synchronous = s.config.synchronous_create;
        let Some(vm) = s.vms.get(&hostname) else {
            return detail(StatusCode::NOT_FOUND, "VM not found");
        };
        if vm
            .snapshots
            .iter()
            .any(|sn| sn.disk_id == disk_id && sn.name == snapname)
        {
            return detail(StatusCode::NOT_ACCEPTABLE, "Snapshot already exists");
        }
        if let Some(limit) = vm.snapshot_limit {
            let manual = vm.snapshots.iter().filter(|sn| sn.kind == TYPE_MANUAL).count();
            if manual as u64 >= u64::from(limit) {
                return detail(
                    StatusCode::EXPECTATION_FAILED,
                    "Snapshot count limit reached",
                );
            }
        }
        if s.disk_locked(&hostname, disk_id) {
            return lock_error();
        }
        let snap = FakeSnapshot {
            name: snapname.clone(),
            disk_id,
            created: now,
            status: if synchronous { STATUS_OK } else { STATUS_PENDING },
            kind: TYPE_MANUAL,
            note: body
                .get("note")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            define: None,
            size: 0,
            fsfreeze: body.get("fsfreeze").and_then(Value::as_bool).unwrap_or(false),
        };
        if let Some(vm) = s.vms.get_mut(&hostname) {
            vm.snapshots.push(snap);
        }
        if synchronous {
            return success(
                StatusCode::OK,
                json!({"message": "Snapshot successfully created", "returncode": 0,
                       "detail": format!("name={snapname}, disk_id={disk_id}, type=2")}),
            );
        }
        let id = s.start_task(&hostname, disk_id, TaskKind::Create { name: snapname });
        pending(&id)
    })
}

/// Start a delete task for `names` after the checks of the real API.
fn start_delete(s: &mut State, hostname: &str, disk_id: u32, names: Vec<String>) -> Reply {
    s.resolve_tasks();
    if let Err(r) = check_vm_disk(s, hostname, disk_id) {
        return r;
    }
    let Some(vm) = s.vms.get(hostname) else {
        return detail(StatusCode::NOT_FOUND, "VM not found");
    };
    let mut statuses = Vec::with_capacity(names.len());
    for name in &names {
        match vm
            .snapshots
            .iter()
            .find(|sn| sn.disk_id == disk_id && &sn.name == name)
        {
            Some(sn) => statuses.push(sn.status),
            None => return detail(StatusCode::NOT_FOUND, "Snapshot not found"),
        }
    }
    if statuses.iter().any(|st| *st != STATUS_OK) {
        return detail(
            StatusCode::EXPECTATION_FAILED,
            "VM snapshot status is not OK",
        );
    }
    if s.disk_locked(hostname, disk_id) {
        return lock_error();
    }
    if let Some(vm) = s.vms.get_mut(hostname) {
        for sn in vm
            .snapshots
            .iter_mut()
            .filter(|sn| sn.disk_id == disk_id && names.contains(&sn.name))
        {
            sn.status = STATUS_PENDING;
        }
    }
    let id = s.start_task(hostname, disk_id, TaskKind::Delete { names });
    pending(&id)
}

async fn bulk_delete(
    AxState(fake): AxState<FakeErigones>,
    Path(hostname): Path<String>,
    body: Bytes,
) -> Reply {
    let body = match body_json(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let disk_id = match parse_disk(body.get("disk_id")) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let names: Option<Vec<String>> = body.get("snapnames").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    });
    let names = match names {
        Some(n) if !n.is_empty() => n,
        _ => {
            return failure(
                StatusCode::BAD_REQUEST,
                json!({"snapnames": ["This field is required."]}),
            )
        }
    };
    fake.with(|s| start_delete(s, &hostname, disk_id, names))
}

async fn delete_one(
    AxState(fake): AxState<FakeErigones>,
    Path((hostname, snapname)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    let disk_id = match parse_disk(q.get("disk_id").map(|v| json!(v)).as_ref()) {
        Ok(d) => d,
        Err(r) => return r,
    };
    fake.with(|s| start_delete(s, &hostname, disk_id, vec![snapname]))
}

async fn task_status(AxState(fake): AxState<FakeErigones>, Path(task_id): Path<String>) -> Reply {
    fake.with(|s| {
        s.resolve_tasks();
        let Some(view) = s.task_view(&task_id) else {
            return detail(StatusCode::NOT_FOUND, "Task not found");
        };
        let (code, status, result) = match view {
            TaskView::Pending => (StatusCode::CREATED, "PENDING", Value::Null),
            TaskView::Started => (StatusCode::CREATED, "STARTED", Value::Null),
            TaskView::Success(r) => (StatusCode::OK, "SUCCESS", r),
            TaskView::Failure(msg) => (
                StatusCode::BAD_REQUEST,
                "FAILURE",
                json!({"message": msg, "returncode": 1, "detail": ""}),
            ),
            TaskView::Revoked => (
                StatusCode::GONE,
                "REVOKED",
                json!({"detail": "Task revoked"}),
            ),
        };
        (
            code,
            Json(json!({"task_id": task_id, "status": status, "result": result})),
        )
    })
}

async fn task_done(AxState(fake): AxState<FakeErigones>, Path(task_id): Path<String>) -> Reply {
    fake.with(|s| {
        s.resolve_tasks();
        match s.tasks.get(&task_id) {
            Some(t) => (
                StatusCode::OK,
                Json(json!({"task_id": task_id, "done": t.resolved})),
            ),
            None => detail(StatusCode::NOT_FOUND, "Task not found"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::valid_snapname;

    #[test]
    fn snapshot_names_follow_erigones_rules() {
        assert!(valid_snapname("daily-20260101_000000"));
        assert!(valid_snapname("a"));
        assert!(!valid_snapname("-a"));
        assert!(!valid_snapname(""));
        assert!(!valid_snapname("abcdefghijklmnopqrstuvwxy"));
        assert!(!valid_snapname("a b"));
    }
}
