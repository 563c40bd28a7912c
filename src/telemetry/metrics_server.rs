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

use super::metrics;
use super::{Status, Tick};
use crate::domain::Identity;

/// How recently the scheduler loop must have ticked for `/healthz` to be 200.
/// The loop wakes at least every second, so this allows for long stalls
/// (a slow database write) without flapping.
pub const HEALTHY_WITHIN: Duration = Duration::from_secs(10);

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
        metrics::scheduler_status(status.definitions, status.in_flight);
        if let Ok(mut n) = next_runs.lock() {
            n.publish(status, Instant::now());
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
