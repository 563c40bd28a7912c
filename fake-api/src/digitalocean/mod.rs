//! A stateful fake of the DigitalOcean API v2 paths snapsched uses.
//!
//! It behaves like DigitalOcean where snapsched can tell: droplet snapshot
//! actions stay `in-progress` for a configured time, then complete (the
//! snapshot appears, `created_at` = the action's `started_at`) or error; a
//! droplet takes one action at a time (422 "Droplet already has a pending
//! event."); droplets carry tags, and `POST /v2/droplets/actions?tag_name=`
//! snapshots every tagged droplet that is not locked (`tags.rs`); volume
//! snapshots are synchronous with a 409 on duplicate names;
//! `GET /v2/actions` lists every action of the account newest first;
//! droplet snapshots are images that transfer actions copy to other
//! regions ([`images`]);
//! listings paginate with `links.pages` and `meta.total`; every answer
//! carries `ratelimit-*` headers and the per-minute and per-hour budgets are
//! enforced with 429 + `retry-after`; errors are `{id, message, request_id}`;
//! the bearer token is checked.
//!
//! Time is the fake's own clock: frozen in tests until
//! [`FakeHandle::advance`] moves it (so a 3-minute action takes no real
//! time, and works with a real HTTP client over loopback), or real time in
//! the standalone server.
//!
//! Every request and response is checked against the OpenAPI subset
//! ([`contract`]); violations are kept for tests to assert on.

pub mod contract;
mod images;
mod routes;
mod state;
mod tags;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use uuid::Uuid;

pub use self::images::Transfer;
use self::state::State as World;
pub use self::state::{FakeSnapshot, Fault, FaultRule, Resource};

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// The only bearer token accepted.
    pub token: String,
    /// How long a droplet snapshot action stays `in-progress`.
    pub action_duration: Duration,
    /// Let the clock run in real time (standalone) instead of only when
    /// advanced (tests).
    pub real_time: bool,
    pub per_minute: u32,
    pub per_hour: u32,
    /// Check requests and responses against the OpenAPI subset.
    pub check_contract: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            token: "fake-do-token".to_owned(),
            action_duration: Duration::from_secs(180),
            real_time: false,
            per_minute: 250,
            per_hour: 5000,
            check_contract: true,
        }
    }
}

/// State shared by the handlers and the test's handle.
pub(crate) struct Shared {
    world: Mutex<World>,
    base_url: OnceLock<String>,
    check_contract: bool,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, World> {
        // A panicking handler must not wedge every later request.
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn base_url(&self) -> String {
        self.base_url.get().cloned().unwrap_or_default()
    }
}

/// Starts fake DigitalOcean servers.
pub struct FakeDigitalOcean;

impl FakeDigitalOcean {
    /// Serve on 127.0.0.1 with an OS-chosen port.
    pub async fn start(config: FakeConfig) -> std::io::Result<FakeHandle> {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Serve on `addr`, which must be a loopback address.
    pub async fn start_on(config: FakeConfig, addr: SocketAddr) -> std::io::Result<FakeHandle> {
        if !addr.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("the fake API listens on loopback only, not {addr}"),
            ));
        }
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let shared = Arc::new(Shared {
            world: Mutex::new(World::new(
                config.token,
                config.action_duration,
                config.real_time,
                config.per_minute.max(1),
                config.per_hour.max(1),
            )),
            base_url: OnceLock::new(),
            check_contract: config.check_contract,
        });
        let url = format!("http://{local}");
        let _ = shared.base_url.set(url.clone());
        let app = routes::router(shared.clone())
            .layer(middleware::from_fn_with_state(shared.clone(), gate));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "fake DigitalOcean server stopped");
            }
        });
        Ok(FakeHandle {
            url,
            addr: local,
            shared,
            shutdown: Some(tx),
            task: Some(task),
        })
    }
}

/// A running fake; stops when dropped.
pub struct FakeHandle {
    url: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Keep-alive connections would hold a graceful shutdown open.
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl FakeHandle {
    /// `http://127.0.0.1:PORT`, to use as the provider's `api_url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve until the process is stopped (standalone use).
    pub async fn serve_forever(mut self) {
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Move the fake's clock forward (finishes actions, slides rate windows).
    pub fn advance(&self, by: Duration) {
        let mut w = self.shared.lock();
        w.clock.advance(by);
        w.settle();
    }

    /// The fake's current time.
    pub fn now(&self) -> DateTime<Utc> {
        self.shared.lock().now()
    }

    pub fn add_droplet(&self, id: u64, name: &str) {
        self.shared.lock().droplets.insert(id, name.to_owned());
    }

    pub fn add_volume(&self, id: Uuid, name: &str) {
        self.shared.lock().volumes.insert(id, name.to_owned());
    }

    /// A snapshot made outside snapsched (manual, or by an earlier run);
    /// returns its id.
    pub fn add_snapshot(&self, of: Resource, name: &str, created_at: DateTime<Utc>) -> String {
        self.shared
            .lock()
            .add_snapshot(of, name.to_owned(), created_at)
    }

    /// Delete a snapshot as a person would outside snapsched (in the web
    /// console); true when it existed.
    pub fn remove_snapshot(&self, name: &str) -> bool {
        let mut w = self.shared.lock();
        let before = w.snapshots.len();
        w.snapshots.retain(|s| s.name != name);
        w.snapshots.len() < before
    }

    /// Every stored snapshot, after settling due actions.
    pub fn snapshots(&self) -> Vec<FakeSnapshot> {
        let mut w = self.shared.lock();
        w.settle();
        w.snapshots.clone()
    }

    pub fn snapshots_of(&self, of: Resource) -> Vec<FakeSnapshot> {
        self.snapshots()
            .into_iter()
            .filter(|s| s.resource == of)
            .collect()
    }

    /// How many droplet actions are still in progress, after settling due
    /// ones: zero means no snapshot can still appear on its own.
    pub fn actions_in_progress(&self) -> usize {
        let mut w = self.shared.lock();
        w.settle();
        w.actions
            .values()
            .filter(|a| a.status == "in-progress")
            .count()
    }

    /// Make the next `n` droplet actions end `errored`.
    pub fn fail_next_actions(&self, n: u32) {
        self.shared.lock().fail_next_actions += n;
    }

    pub fn set_action_duration(&self, d: Duration) {
        self.shared.lock().action_duration = d;
    }

    /// Change the requests a minute the token allows from now on.
    pub fn set_per_minute(&self, n: u32) {
        self.shared.lock().per_minute = n.max(1);
    }

    pub fn inject(&self, rule: FaultRule) {
        self.shared.lock().faults.push(rule);
    }

    /// Requests received on `route` (`"POST /v2/droplets/{droplet_id}/actions"`).
    pub fn requests(&self, route: &str) -> u64 {
        self.shared.lock().by_route.get(route).copied().unwrap_or(0)
    }

    pub fn requests_total(&self) -> u64 {
        self.shared.lock().by_route.values().sum()
    }

    /// Requests per route.
    pub fn route_counts(&self) -> BTreeMap<String, u64> {
        self.shared.lock().by_route.clone()
    }

    /// Responses sent with `status`.
    pub fn responses(&self, status: u16) -> u64 {
        self.shared
            .lock()
            .by_status
            .get(&status)
            .copied()
            .unwrap_or(0)
    }

    /// Responses sent, whatever their status (a dropped connection is none).
    pub fn responses_total(&self) -> u64 {
        self.shared.lock().by_status.values().sum()
    }

    /// Contract violations seen so far (requests and responses).
    pub fn contract_violations(&self) -> Vec<String> {
        self.shared.lock().violations.clone()
    }
}

/// Counting, faults, auth, rate limits and contract checks around every
/// handler.
async fn gate(
    State(shared): State<Arc<Shared>>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().as_str().to_owned();
    let template = matched
        .as_ref()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    let route = format!("{method} {template}");
    let query = req.uri().query().unwrap_or_default().to_owned();
    let (fault, token) = {
        let mut w = shared.lock();
        *w.by_route.entry(route.clone()).or_default() += 1;
        (w.take_fault(&route), w.token.clone())
    };
    let mut answer_after = None;
    let response = match fault {
        Some(Fault::DropConnection) => return dropped(),
        Some(Fault::SlowAnswer(d)) => {
            answer_after = Some(d);
            None
        }
        Some(Fault::Raw { status, body }) => {
            let mut r = Response::new(Body::from(body));
            *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("text/html"));
            return r;
        }
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            None
        }
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Some(routes::error(
                status,
                "server_error",
                "Server was unable to give you a response.",
            ))
        }
        Some(Fault::TooManyRequests { retry_after }) => Some(too_many(retry_after)),
        None => None,
    };
    let response = match response {
        Some(r) => r,
        None => {
            authorized_and_admitted(&shared, req, next, &token, &method, &template, &query).await
        }
    };
    if let Some(d) = answer_after {
        tokio::time::sleep(d).await;
    }
    finish(&shared, &method, &template, response).await
}

async fn authorized_and_admitted(
    shared: &Shared,
    req: Request,
    next: Next,
    token: &str,
    method: &str,
    template: &str,
    query: &str,
) -> Response {
    let presented = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented != Some(token) {
        return routes::error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unable to authenticate you",
        );
    }
    if let Err(wait) = shared.lock().admit() {
        return too_many(wait);
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return routes::error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "request body too large",
        );
    };
    if shared.check_contract {
        let json = if bytes.is_empty() {
            None
        } else {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) => Some(v),
                Err(e) => {
                    shared.lock().violations.push(format!(
                        "{method} {template}: request body is not JSON: {e}"
                    ));
                    None
                }
            }
        };
        let errs = contract::check_request(method, template, query, json.as_ref());
        shared.lock().violations.extend(errs);
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Add rate-limit headers, count the status, check the body.
async fn finish(shared: &Shared, method: &str, template: &str, response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 16 << 20)
        .await
        .unwrap_or_default();
    let status = parts.status.as_u16();
    let mut response = Response::from_parts(parts, Body::from(bytes.clone()));
    let mut w = shared.lock();
    *w.by_status.entry(status).or_default() += 1;
    let (limit, remaining, reset) = w.rate_headers();
    let h = response.headers_mut();
    h.insert("ratelimit-limit", HeaderValue::from(limit));
    h.insert("ratelimit-remaining", HeaderValue::from(remaining));
    h.insert("ratelimit-reset", HeaderValue::from(reset));
    if shared.check_contract {
        let body = parse_body(&bytes);
        match body {
            Ok(b) => {
                let errs = contract::check_response(method, template, status, b.as_ref());
                w.violations.extend(errs);
            }
            Err(e) => w.violations.push(format!(
                "{method} {template} {status}: response is not JSON: {e}"
            )),
        }
    }
    response
}

fn parse_body(bytes: &Bytes) -> Result<Option<Value>, serde_json::Error> {
    if bytes.is_empty() {
        Ok(None)
    } else {
        serde_json::from_slice(bytes).map(Some)
    }
}

fn too_many(retry_after: u64) -> Response {
    let mut r = routes::error(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        "API Rate limit exceeded.",
    );
    r.headers_mut()
        .insert("retry-after", HeaderValue::from(retry_after));
    r
}

/// Headers go out, then the body stream fails: the client sees the
/// connection cut mid-response.
fn dropped() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "fault injected: connection dropped",
        ))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}
