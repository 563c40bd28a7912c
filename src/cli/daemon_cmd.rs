//! `snapsched daemon`: run the scheduler in the foreground.

use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use super::context::Context;
use super::{CliError, CliResult};
use crate::daemon;
use crate::telemetry::{self, Status};

pub async fn run(ctx: &Context) -> CliResult {
    // Handlers first: a SIGTERM that arrives while the configuration and the
    // store are still loading must stop the daemon cleanly, not kill it.
    let mut term = signal(SignalKind::terminate()).map_err(|e| CliError::Runtime(e.into()))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| CliError::Runtime(e.into()))?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| CliError::Runtime(e.into()))?;
    // Validate before logging is set up so config errors print plainly.
    let cfg = ctx.config()?;
    crate::telemetry::logging::init(&cfg.daemon.log_level, cfg.daemon.log_format);
    let shutdown = CancellationToken::new();
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    let stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); stop.cancel(); break; }
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); stop.cancel(); break; }
                _ = hup.recv() => { tracing::info!("SIGHUP: reloading configuration"); let _ = reload_tx.try_send(()); }
            }
        }
    });
    let mut hooks = telemetry::notify::hooks();
    if let Some(addr) = cfg.metrics.listen {
        let endpoint = telemetry::metrics_server::start(addr, shutdown.clone())
            .await
            .map_err(|e| CliError::Runtime(e.into()))?;
        let health = endpoint.health;
        hooks.store_opened = Some(Arc::new(move |store| health.set_store(store.clone())));
        let metrics_tick = endpoint.tick;
        hooks.tick = Some(match hooks.tick.take() {
            Some(notify_tick) => Arc::new(move |s: &Status| {
                notify_tick(s);
                metrics_tick(s);
            }),
            None => metrics_tick,
        });
    }
    daemon::run(
        ctx.config_path.clone(),
        ctx.overrides.clone(),
        shutdown,
        Some(reload_rx),
        hooks,
    )
    .await
    .map_err(CliError::Runtime)
}
