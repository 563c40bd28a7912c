//! `snapsched daemon`: load the configuration, open the store, reconcile the
//! file's definitions, resume unfinished runs, and run the scheduler until
//! SIGTERM/SIGINT. SIGHUP re-reads the configuration; an invalid new
//! configuration is logged and the old one stays in force.

use std::path::PathBuf;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{self, Config, Overrides};
use crate::provider::registry::{self, AnyProvider};
use crate::run::RunOptions;
use crate::scheduler::{Providers, Scheduler, Settings};
use crate::store::Store;

pub use crate::telemetry::Hooks;

type ProviderMap = crate::scheduler::ProviderMap<AnyProvider>;

fn build_providers(cfg: &Config) -> anyhow::Result<ProviderMap> {
    let built = registry::build_all(cfg).map_err(|errors| anyhow::anyhow!(errors.join("\n")))?;
    Ok(built
        .into_iter()
        .map(|(name, p)| {
            let kind = cfg.providers[&name].kind;
            (name, (p, kind))
        })
        .collect())
}

pub fn settings_of(cfg: &Config) -> Settings {
    Settings {
        max_concurrent_runs: cfg.daemon.max_concurrent_runs,
        catch_up_deadline: cfg.daemon.catch_up_deadline,
        default_tz: cfg.daemon.timezone,
        run: RunOptions {
            run_timeout: cfg.daemon.run_timeout,
            history_keep: cfg.daemon.history_keep,
            ..RunOptions::default()
        },
        ..Settings::default()
    }
}

/// Run the daemon until `shutdown` is cancelled (the caller wires signals).
pub async fn run(
    config_path: PathBuf,
    overrides: Overrides,
    shutdown: CancellationToken,
    reload: Option<tokio::sync::mpsc::Receiver<()>>,
    hooks: Hooks,
) -> anyhow::Result<()> {
    let cfg = config::load(&config_path, &overrides)?;
    let store = Store::open(&cfg.daemon.database)
        .await
        .context("opening the store")?;
    reconcile(&store, &cfg).await?;
    let providers = Providers::new(build_providers(&cfg)?);
    let mut scheduler = Scheduler::new(
        store.clone(),
        providers.clone(),
        Clock::System,
        settings_of(&cfg),
        shutdown.clone(),
    );
    if let Some(tick) = hooks.tick.clone() {
        scheduler.on_tick(tick);
    }
    scheduler.start().await?;
    if cfg.metrics.listen.is_some() {
        crate::telemetry::definition_gauges::start(
            store.clone(),
            cfg.daemon.timezone,
            shutdown.clone(),
        )
        .await
        .context("reading the per-definition gauges from the store")?;
    }
    let status = scheduler.status();
    tracing::info!(database = %store.path().display(), "scheduler started: {}", status.line());
    if let Some(ready) = &hooks.ready {
        ready();
    }

    // Reloads run beside the loop: they re-read the file, reconcile the store
    // (which the loop notices through the change counter) and swap providers.
    let reloader = reload.map(|mut rx| {
        let store = store.clone();
        let providers = providers.clone();
        let hooks = hooks.clone();
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                if let Some(r) = &hooks.reloading {
                    r(true);
                }
                match reload_once(&config_path, &overrides, &store).await {
                    Ok(map) => {
                        providers.replace(map);
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
    store.close().await;
    result.map_err(Into::into)
}

async fn reload_once(
    path: &std::path::Path,
    overrides: &Overrides,
    store: &Store,
) -> anyhow::Result<ProviderMap> {
    let cfg = config::load(path, overrides)?;
    let map = build_providers(&cfg)?;
    reconcile(store, &cfg).await?;
    Ok(map)
}

/// Reconcile the file's definitions into the store and log what changed.
async fn reconcile(store: &Store, cfg: &Config) -> anyhow::Result<()> {
    let r = store
        .reconcile_config(
            &cfg.definitions,
            &cfg.path.to_string_lossy(),
            chrono::Utc::now(),
        )
        .await?;
    tracing::info!(
        added = r.added.len(),
        updated = r.updated.len(),
        removed = r.removed.len(),
        "configuration definitions reconciled from {}",
        cfg.path.display()
    );
    Ok(())
}
