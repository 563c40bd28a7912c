//! `snapsched daemon`: load the configuration, open the store, reconcile the
//! file's definitions, resume unfinished runs, and run the scheduler until
//! SIGTERM/SIGINT. SIGHUP re-reads the configuration; an invalid new
//! configuration is logged and the old one stays in force.

use std::path::PathBuf;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{self, Config, Overrides};
use crate::provider::AnyProvider;
use crate::scheduler::{Providers, Scheduler};
use crate::store::{ApplyMode, ConfigOutcome, Store};
use crate::wiring::{self, ProviderMap};

/// How long a stopping daemon waits for the store's connections to close.
const STORE_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub use crate::telemetry::Hooks;

/// Run the daemon until `shutdown` is cancelled (the caller wires signals).
pub async fn run(
    config_path: PathBuf,
    overrides: Overrides,
    shutdown: CancellationToken,
    reload: Option<tokio::sync::mpsc::Receiver<()>>,
    hooks: Hooks,
) -> anyhow::Result<()> {
    let cfg = config::load(&config_path, &overrides)?;
    // Read the webhook's headers before anything starts: a bad file stops
    // the daemon with the key to fix.
    let notify = wiring::notify_settings(&cfg)?;
    let store = wiring::open_store(&cfg)
        .await
        .context("opening the store")?;
    if let Some(opened) = &hooks.store_opened {
        opened(&store);
    }
    reconcile(&store, &cfg).await?;
    let providers: Providers<AnyProvider> = Providers::new(wiring::build_providers(&cfg, &store)?);
    let settings = wiring::settings(&cfg);
    // Swapped on reload, like the providers.
    let hook_defaults = settings.run.hooks.clone();
    let mut scheduler = Scheduler::new(
        store.clone(),
        providers.clone(),
        Clock::System,
        settings,
        shutdown.clone(),
    );
    if let Some(tick) = hooks.tick.clone() {
        scheduler.on_tick(tick);
    }
    scheduler.start().await?;
    // One process is one node: no provider request that changes something
    // leaves while its lease does not hold.
    if let Some(lease) = scheduler.lease() {
        lease.guard_provider_requests();
    }
    if cfg.metrics.listen.is_some() {
        crate::telemetry::definition_gauges::start(
            store.clone(),
            cfg.daemon.timezone,
            shutdown.clone(),
        )
        .await
        .context("reading the per-definition gauges from the store")?;
        crate::telemetry::node_gauges::start(
            store.clone(),
            wiring::lease_ttl(&cfg),
            shutdown.clone(),
        )
        .await;
    }
    let deliverer = match notify {
        Some(settings) => {
            let d = crate::notify::Deliverer::new(store.clone(), settings, scheduler.lease())
                .map_err(|e| anyhow::anyhow!("notify.webhook_headers_file: {e}"))?;
            Some(tokio::spawn(d.run(shutdown.clone())))
        }
        None => None,
    };
    let status = scheduler.status();
    tracing::info!(database = %store.location(), "scheduler started: {}", status.line());
    if let Some(ready) = &hooks.ready {
        ready();
    }

    // Reloads run beside the loop: they re-read the file, reconcile the store
    // (which the loop notices through the change counter) and swap providers.
    let reloader = reload.map(|mut rx| {
        let store = store.clone();
        let providers = providers.clone();
        let hooks = hooks.clone();
        let hook_defaults = hook_defaults.clone();
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                if let Some(r) = &hooks.reloading {
                    r(true);
                }
                match reload_once(&config_path, &overrides, &store).await {
                    Ok((map, levels)) => {
                        providers.replace(map);
                        hook_defaults.replace(levels);
                        tracing::info!("configuration reloaded");
                    }
                    Err(e) => {
                        tracing::error!("reload failed; keeping the previous configuration: {e:#}")
                    }
                }
                if let Some(r) = &hooks.reloading {
                    r(false);
                }
            }
        })
    });

    let result = scheduler.run(cfg.daemon.shutdown_grace).await;
    if let Some(stopping) = &hooks.stopping {
        stopping();
    }
    if let Some(r) = reloader {
        r.abort();
    }
    if let Some(d) = deliverer {
        // It stops at shutdown, after a request in flight (bounded by
        // [notify] timeout).
        let _ = tokio::time::timeout(cfg.notify.timeout * 2, d).await;
    }
    // Closing waits for every connection to come back; a store that does
    // not answer must not hold the exit up.
    if tokio::time::timeout(STORE_CLOSE_TIMEOUT, store.close())
        .await
        .is_err()
    {
        tracing::warn!(
            "the store's connections did not close within {}s; exiting anyway",
            STORE_CLOSE_TIMEOUT.as_secs()
        );
    }
    result.map_err(Into::into)
}

async fn reload_once(
    path: &std::path::Path,
    overrides: &Overrides,
    store: &Store,
) -> anyhow::Result<(ProviderMap, crate::run::HookLevels)> {
    let cfg = config::load(path, overrides)?;
    let map = wiring::build_providers(&cfg, store)?;
    reconcile(store, &cfg).await?;
    Ok((map, wiring::hook_levels(&cfg)))
}

/// Offer the file's definitions to the store and log what happened: applied
/// when they are new or newer than the applied version, otherwise left as
/// drift (see [`crate::store::config_state`]).
async fn reconcile(store: &Store, cfg: &Config) -> anyhow::Result<()> {
    let outcome = wiring::apply_config(cfg, store, ApplyMode::IfNewer).await?;
    match outcome {
        ConfigOutcome::Applied {
            report: r,
            replaced,
        } => {
            crate::telemetry::metrics::config_drift(false);
            tracing::info!(
                added = r.added.len(),
                updated = r.updated.len(),
                removed = r.removed.len(),
                "configuration definitions reconciled from {}{}",
                cfg.path.display(),
                replaced.map_or_else(String::new, |a| format!(
                    " (newer than the version {} applied from {} on {})",
                    a.hostname,
                    a.source_path,
                    a.applied_at.to_rfc3339()
                ))
            );
        }
        ConfigOutcome::Drift { applied: a } => {
            crate::telemetry::metrics::config_drift(true);
            tracing::warn!(
                "configuration definitions in {} differ from the version {} applied from {} \
                 (dated {}) on {}, and the file is not newer: not applied; touch the file \
                 to make it the newest or run `snapsched config apply` to apply it",
                cfg.path.display(),
                a.hostname,
                a.source_path,
                a.file_mtime.to_rfc3339(),
                a.applied_at.to_rfc3339()
            );
        }
    }
    Ok(())
}
