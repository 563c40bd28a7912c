//! The optional `[metrics] listen` endpoint: `GET /metrics` in the Prometheus
//! text format and `GET /healthz`.
//!
//! The Prometheus recorder is process-global and installed once; counters and
//! histograms recorded anywhere through the `metrics` crate (runs, provider
//! requests) show up here. Gauges that describe the schedule are set from the
//! scheduler loop's tick, which also stamps the liveness clock `/healthz`
//! reads. `/healthz` ([`Health`]) is 200 while the store answers a ping
//! within [`STORE_ANSWERS_WITHIN`] and the loop ticked within
//! [`HEALTHY_WITHIN`], else 503 with a one-line reason (the store
//! unreachable or not open yet, a hung loop or one that never started).
//! Both endpoints are read-only.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use tokio_util::sync::CancellationToken;

use super::metrics;
use super::{Status, Tick};
use crate::domain::Identity;
use crate::store::Store;

/// How recently the scheduler loop must have ticked for `/healthz` to be 200.
/// The loop wakes at least every second, so this allows for long stalls
/// (a slow database write) without flapping.
pub const HEALTHY_WITHIN: Duration = Duration::from_secs(10);

/// How long `/healthz` waits for the store to answer its ping. Short: a
/// load balancer or service manager polling it wants an answer, and a
/// store slower than this cannot keep runs on schedule anyway.
pub const STORE_ANSWERS_WITHIN: Duration = Duration::from_secs(2);

/// A gauge series not set for this long is dropped from `/metrics`: the
/// recorder has no other way to forget a removed definition's series (see
/// [`super::definition_gauges`]). Live gauges are set at least every
/// [`super::definition_gauges::REFRESH_EVERY`] or [`REPUBLISH_EVERY`]; the
/// scheduler's own gauges on every loop tick.
pub const GAUGE_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The next-run gauges are set again at least this often even when the
/// schedule did not change, well inside [`GAUGE_IDLE_TIMEOUT`].
pub const REPUBLISH_EVERY: Duration = Duration::from_secs(60);

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot install the Prometheus metrics recorder: {0}")]
    Recorder(String),
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// When the scheduler loop last ticked.
#[derive(Debug, Default)]
pub struct Liveness {
    last_tick: Mutex<Option<Instant>>,
    /// The loop's store failure as of its latest tick.
    store_error: Mutex<Option<String>>,
}

impl Liveness {
    /// Record a tick now.
    pub fn beat(&self) {
        if let Ok(mut t) = self.last_tick.lock() {
            *t = Some(Instant::now());
        }
    }

    /// Record what the loop's latest turn said of the store.
    pub fn store_error(&self, error: Option<&str>) {
        if let Ok(mut e) = self.store_error.lock() {
            if e.as_deref() != error {
                *e = error.map(str::to_owned);
            }
        }
    }

    /// The loop's store failure, while it lasts.
    pub fn failing_store(&self) -> Option<String> {
        self.store_error.lock().ok().and_then(|e| e.clone())
    }

    /// True when a tick happened within `within` of `now`.
    pub fn alive(&self, now: Instant, within: Duration) -> bool {
        self.last_tick
            .lock()
            .ok()
            .and_then(|t| *t)
            .is_some_and(|t| now.saturating_duration_since(t) <= within)
    }
}

/// What `/healthz` checks: the store this node uses (once the daemon has
/// opened it) and the scheduler loop's liveness.
#[derive(Debug, Default)]
pub struct Health {
    liveness: Arc<Liveness>,
    store: OnceLock<Store>,
}

impl Health {
    /// The liveness clock the scheduler's tick stamps (see [`tick_hook`]).
    pub fn liveness(&self) -> Arc<Liveness> {
        self.liveness.clone()
    }

    /// Ping `store` on every check from now on (the first store set stays).
    pub fn set_store(&self, store: Store) {
        let _ = self.store.set(store);
    }

    /// `Ok` when healthy, else why not, in one line.
    pub async fn check(&self, now: Instant) -> Result<(), String> {
        let Some(store) = self.store.get() else {
            return Err("store not open yet".into());
        };
        if let Err(e) = store.ping(STORE_ANSWERS_WITHIN).await {
            let reason = format!("store unreachable: {e}");
            return Err(reason.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        if !self.liveness.alive(now, HEALTHY_WITHIN) {
            return Err("scheduler loop not ticking".into());
        }
        // The ping reads; a store that answers reads but refuses writes (a
        // full disk) shows in the loop's turns.
        if let Some(e) = self.liveness.failing_store() {
            let reason = format!("store failing: {e}");
            return Err(reason.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        Ok(())
    }
}

#[derive(Clone)]
struct AppState {
    handle: PrometheusHandle,
    health: Arc<Health>,
}

/// Install the global Prometheus recorder and return its handle.
pub fn install_recorder() -> Result<PrometheusHandle, MetricsError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(metrics::PROVIDER_REQUEST_DURATION.to_owned()),
            metrics::PROVIDER_REQUEST_BUCKETS,
        )
        .map_err(|e| MetricsError::Recorder(e.to_string()))?
        .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE_TIMEOUT))
        .install_recorder()
        .map_err(|e| MetricsError::Recorder(e.to_string()))?;
    metrics::describe();
    Ok(handle)
}

/// The per-definition next-run gauges as last published.
#[derive(Default)]
struct NextRuns {
    /// The [`Status::revision`] published, and when.
    published: Option<(u64, Instant)>,
    known: HashSet<Arc<Identity>>,
}

impl NextRuns {
    /// Publish every definition's next run when the summary changed (or
    /// [`REPUBLISH_EVERY`] passed, so live series never idle out), and zero
    /// the series of definitions gone since. An unchanged summary costs
    /// nothing per definition, however often the loop ticks.
    fn publish(&mut self, status: &Status, now: Instant) {
        let current = self.published.is_some_and(|(revision, at)| {
            revision == status.revision && now.saturating_duration_since(at) < REPUBLISH_EVERY
        });
        if current {
            return;
        }
        let mut now_known = HashSet::with_capacity(status.next_fires.len());
        for (id, at) in &status.next_fires {
            metrics::next_run(id, Some(*at));
            now_known.insert(id.clone());
        }
        for gone in self.known.difference(&now_known) {
            metrics::next_run(gone, None);
        }
        self.known = now_known;
        self.published = Some((status.revision, now));
    }
}

/// A tick hook that stamps `liveness` and sets the schedule gauges.
pub fn tick_hook(liveness: Arc<Liveness>) -> Tick {
    // Definitions seen on the previous publish: a removed definition's
    // next-run gauge is zeroed, because the recorder cannot drop a series.
    let next_runs = Mutex::new(NextRuns::default());
    Arc::new(move |status: &Status| {
        liveness.beat();
        liveness.store_error(status.store_error.as_deref());
        metrics::scheduler_status(status.definitions, status.in_flight);
        if let Ok(mut n) = next_runs.lock() {
            n.publish(status, Instant::now());
        }
    })
}

/// The router: `GET /metrics` and `GET /healthz`.
pub fn router(handle: PrometheusHandle, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .with_state(AppState { handle, health })
}

async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    // Upkeep folds pending histogram samples into their buckets; without it
    // they pile up between scrapes.
    state.handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.handle.render(),
    )
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match state.health.check(Instant::now()).await {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

/// The running endpoint: where it listens, the tick hook to give the
/// scheduler, and the health state to hand the store once it is open.
pub struct Endpoint {
    pub addr: SocketAddr,
    pub tick: Tick,
    pub health: Arc<Health>,
}

/// Bind `addr`, install the recorder and serve until `shutdown`.
pub async fn start(
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> Result<Endpoint, MetricsError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let handle = install_recorder()?;
    let health = Arc::new(Health::default());
    let local = serve(listener, handle, health.clone(), shutdown)
        .map_err(|source| MetricsError::Bind { addr, source })?;
    tracing::info!("metrics endpoint listening on http://{local}/metrics");
    Ok(Endpoint {
        addr: local,
        tick: tick_hook(health.liveness()),
        health,
    })
}

/// Serve [`router`] on `listener` until `shutdown`, in a background task;
/// returns the bound address (useful with port 0).
pub fn serve(
    listener: tokio::net::TcpListener,
    handle: PrometheusHandle,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let local = listener.local_addr()?;
    let app = router(handle, health);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!("metrics endpoint stopped: {e}");
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_expires() {
        let l = Liveness::default();
        let t0 = Instant::now();
        assert!(!l.alive(t0, HEALTHY_WITHIN), "alive before any tick");
        l.beat();
        let now = Instant::now();
        assert!(l.alive(now, HEALTHY_WITHIN));
        assert!(!l.alive(
            now + HEALTHY_WITHIN + Duration::from_secs(1),
            HEALTHY_WITHIN
        ));
    }

    fn id(name: &str) -> Arc<Identity> {
        Arc::new(Identity {
            provider: "lab".into(),
            target: "web01".into(),
            disk_id: 1,
            name: name.into(),
        })
    }

    #[test]
    fn next_runs_are_published_per_revision_and_gone_ones_forgotten() {
        let at = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        let (a, b) = (id("a"), id("b"));
        let mut status = Status {
            next_fires: vec![(a.clone(), at), (b.clone(), at)],
            revision: 1,
            ..Status::default()
        };
        let mut n = NextRuns::default();
        let t0 = Instant::now();
        n.publish(&status, t0);
        assert_eq!(n.known.len(), 2);
        // Same revision: nothing to do, even though the list changed.
        status.next_fires.pop();
        n.publish(&status, t0 + Duration::from_secs(1));
        assert_eq!((n.known.len(), n.published), (2, Some((1, t0))));
        // Same revision, but long enough for a keep-alive publish.
        let later = t0 + REPUBLISH_EVERY;
        n.publish(&status, later);
        assert_eq!((n.known.len(), n.published), (1, Some((1, later))));
        // A new revision publishes at once.
        status.next_fires.clear();
        status.revision = 2;
        n.publish(&status, later);
        assert!(n.known.is_empty());
        assert_eq!(n.published, Some((2, later)));
    }
}
