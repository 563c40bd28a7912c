//! The optional `[metrics] listen` endpoint: `GET /metrics` in the Prometheus
//! text format and `GET /healthz`.
//!
//! The Prometheus recorder is process-global and installed once; counters and
//! histograms recorded anywhere through the `metrics` crate (runs, provider
//! requests) show up here. Gauges that describe the schedule are set from the
//! scheduler loop's tick, which also stamps the liveness clock `/healthz`
//! reads: 200 while the loop ticked within [`HEALTHY_WITHIN`], 503 otherwise
//! (a hung loop, or one that never started). Both endpoints are read-only.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use tokio_util::sync::CancellationToken;

use crate::scheduler::{Status, Tick};

/// How recently the scheduler loop must have ticked for `/healthz` to be 200.
/// The loop wakes at least every second, so this allows for long stalls
/// (a slow database write) without flapping.
pub const HEALTHY_WITHIN: Duration = Duration::from_secs(10);

/// A gauge series not set for this long is dropped from `/metrics`: the
/// recorder has no other way to forget a removed definition's series (see
/// [`crate::definition_gauges`]). Live gauges are set at least every
/// [`crate::definition_gauges::REFRESH_EVERY`], most every loop tick.
pub const GAUGE_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Buckets for `snapsched_provider_request_duration_seconds`: cloud API calls
/// take from tens of milliseconds to the request timeout (a minute).
const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

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
}

impl Liveness {
    /// Record a tick now.
    pub fn beat(&self) {
        if let Ok(mut t) = self.last_tick.lock() {
            *t = Some(Instant::now());
        }
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

#[derive(Clone)]
struct AppState {
    handle: PrometheusHandle,
    liveness: Arc<Liveness>,
}

/// Install the global Prometheus recorder and return its handle.
pub fn install_recorder() -> Result<PrometheusHandle, MetricsError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("snapsched_provider_request_duration_seconds".to_owned()),
            DURATION_BUCKETS,
        )
        .map_err(|e| MetricsError::Recorder(e.to_string()))?
        .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE_TIMEOUT))
        .install_recorder()
        .map_err(|e| MetricsError::Recorder(e.to_string()))?;
    metrics::describe_gauge!("snapsched_definitions", "Definitions the scheduler knows");
    metrics::describe_gauge!(
        "snapsched_next_run_timestamp_seconds",
        "Unix time of a definition's next scheduled run"
    );
    metrics::describe_gauge!(
        "snapsched_runs_in_flight",
        "Runs currently creating, waiting for or pruning snapshots"
    );
    metrics::describe_gauge!(
        crate::definition_gauges::LAST_SUCCESS,
        "Unix time a definition's latest successful run finished"
    );
    metrics::describe_gauge!(
        crate::definition_gauges::SNAPSHOTS,
        "Snapshots a definition owns at the provider, per the store"
    );
    metrics::describe_gauge!(
        crate::definition_gauges::INTERVAL,
        metrics::Unit::Seconds,
        "A definition's nominal interval: the longest gap between its fires over the coming week"
    );
    metrics::describe_counter!("snapsched_runs_total", "Finished runs by result");
    metrics::describe_counter!(
        "snapsched_provider_requests_total",
        "Provider API requests by HTTP status class"
    );
    metrics::describe_histogram!(
        "snapsched_provider_request_duration_seconds",
        metrics::Unit::Seconds,
        "Provider API request duration"
    );
    Ok(handle)
}

/// A tick hook that stamps `liveness` and sets the schedule gauges.
pub fn tick_hook(liveness: Arc<Liveness>) -> Tick {
    // Definitions seen on the previous tick: a removed definition's
    // next-run gauge is zeroed, because the recorder cannot drop a series.
    let known: Mutex<HashSet<String>> = Mutex::new(HashSet::new());
    Arc::new(move |status: &Status| {
        liveness.beat();
        metrics::gauge!("snapsched_definitions").set(status.definitions as f64);
        metrics::gauge!("snapsched_runs_in_flight").set(status.in_flight as f64);
        let mut now_known = HashSet::with_capacity(status.next_fires.len());
        for (id, at) in &status.next_fires {
            metrics::gauge!("snapsched_next_run_timestamp_seconds", "definition" => id.name.clone())
                .set(at.timestamp() as f64);
            now_known.insert(id.name.clone());
        }
        if let Ok(mut prev) = known.lock() {
            for gone in prev.difference(&now_known) {
                metrics::gauge!("snapsched_next_run_timestamp_seconds", "definition" => gone.clone())
                    .set(0.0);
            }
            *prev = now_known;
        }
    })
}

/// The router: `GET /metrics` and `GET /healthz`.
pub fn router(handle: PrometheusHandle, liveness: Arc<Liveness>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .with_state(AppState { handle, liveness })
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
    if state.liveness.alive(Instant::now(), HEALTHY_WITHIN) {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "scheduler loop not ticking\n",
        )
    }
}

/// Bind `addr`, install the recorder and serve until `shutdown`. Returns the
/// bound address (useful with port 0) and the tick hook to give the scheduler.
pub async fn start(
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, Tick), MetricsError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let handle = install_recorder()?;
    let liveness = Arc::new(Liveness::default());
    let app = router(handle, liveness.clone());
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!("metrics endpoint stopped: {e}");
        }
    });
    tracing::info!("metrics endpoint listening on http://{local}/metrics");
    Ok((local, tick_hook(liveness)))
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
}
