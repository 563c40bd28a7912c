//! `snapsched run`: run a definition now (trigger `manual`).
//!
//! The run is driven by this process, whether or not a daemon is running;
//! the store's per-definition lock keeps the daemon and the CLI from running
//! the same definition at once. A run interrupted here (Ctrl-C, crash) is
//! resumed by the daemon at its next start, or by the next `snapsched run`
//! of the definition: a run whose owner process is gone (no live node) is
//! taken over and finished first, as the daemon's recovery does.

use std::io::IsTerminal;

use chrono::Utc;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::context::{Address, Context};
use super::output::print_json;
use super::{CliError, CliResult};
use crate::clock::Clock;
use crate::domain::{Claim, Run, RunState, Trigger};
use crate::run::{Ended, Runner};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub address: Address,
    /// Show progress while the provider works (on a terminal)
    #[arg(long)]
    pub wait: bool,
    #[arg(long)]
    pub json: bool,
}

/// Claim the current second for a manual run of `id`. A run left by a
/// process that is gone is taken over and finished first; a second manual
/// run within the same second waits for the next one rather than failing.
async fn claim_manual<P: crate::provider::Provider>(
    store: &Store,
    runner: &Runner<'_, P>,
    id: &crate::domain::Identity,
) -> CliResult<Run> {
    // The slot is the current second, which also names the snapshot.
    let mut attempts = 0;
    let mut took_over = false;
    loop {
        let now = Utc::now();
        match store.claim_run(id, now, Trigger::Manual, now).await? {
            Claim::Claimed(run) => return Ok(run),
            Claim::Busy(other) if !took_over => {
                took_over = true;
                let Some(orphan) = take_over_orphan(store, &other).await? else {
                    return Err(busy(id, &other));
                };
                eprintln!(
                "run {} of {id} ({}, {}) was left by a process that is gone; finishing it first",
                orphan.id,
                orphan.trigger.as_str(),
                orphan.state
            );
                match runner
                .drive_any(orphan, &crate::run::InFlight::default())
                .await
                .map_err(|e| CliError::Runtime(e.into()))?
            {
                Ended::Final(done) => eprintln!(
                    "run {} {}: {} {}",
                    done.id,
                    done.state,
                    done.snapshot_name.as_deref().unwrap_or("-"),
                    done.error.as_deref().unwrap_or("")
                ),
                Ended::Suspended(left) => {
                    return Err(CliError::Runtime(anyhow::anyhow!(
                        "interrupted in state {}; run {} resumes at the next start of the daemon or of `snapsched run`",
                        left.state,
                        left.id
                    )))
                }
            }
            }
            Claim::Busy(other) => return Err(busy(id, &other)),
            Claim::AlreadyRan if attempts < 3 => {
                attempts += 1;
                let into = u64::from(now.timestamp_subsec_millis());
                tokio::time::sleep(std::time::Duration::from_millis(1_000 - into.min(999))).await;
            }
            Claim::AlreadyRan => {
                return Err(CliError::Runtime(anyhow::anyhow!(
                    "definition {id} already has a run for {}; try again",
                    now.to_rfc3339()
                )))
            }
        }
    }
}

/// The spinner of `run --wait` on a terminal, refreshed from the store.
struct Progress {
    bar: indicatif::ProgressBar,
    watcher: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(store: &Store, run: &Run) -> Progress {
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} [{elapsed}] {msg}") {
            bar.set_style(style);
        }
        bar.set_message(format!("snapshot of {}: {}", run.identity, run.state));
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        let store = store.clone();
        let run_id = run.id;
        let shown = bar.clone();
        let watcher = tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
            loop {
                tick.tick().await;
                if let Ok(Some(r)) = store.get_run(run_id).await {
                    shown.set_message(format!(
                        "{} {} (attempt {})",
                        r.state,
                        r.snapshot_name.as_deref().unwrap_or(""),
                        r.attempts
                    ));
                }
            }
        });
        Progress { bar, watcher }
    }

    fn finish(self) {
        self.watcher.abort();
        self.bar.finish_and_clear();
    }
}

pub async fn run(args: RunArgs, ctx: &Context) -> CliResult {
    let cfg = ctx.config()?;
    // Warnings (retries) as they happen; the end is reported once, below.
    crate::telemetry::logging::init(
        &format!("warn,{}=off", crate::run::RUN_ENDED_TARGET),
        cfg.daemon.log_format,
    );
    let store = ctx.open_store(&cfg).await?;
    let def = ctx.resolve(&store, &args.address).await?;
    let id = def.spec.identity.clone();
    let (provider, target) = ctx.provider_for(&cfg, &def, &store)?;
    let node = ctx.join_as_cli(&store, &cfg).await?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop.cancel();
        }
    });
    let runner = Runner {
        store: &store,
        provider: &provider,
        spec: &def.spec,
        target,
        clock: Clock::System,
        options: crate::run::RunOptions {
            // Ctrl-C stops a run driven here at once.
            shutdown_grace: std::time::Duration::ZERO,
            ..crate::wiring::run_options(&cfg)
        },
        shutdown,
        lease: Some(node.lease().pinned()),
    };
    let run = claim_manual(&store, &runner, &id).await?;
    let progress =
        (args.wait && std::io::stderr().is_terminal()).then(|| Progress::start(&store, &run));
    let ended = runner
        .drive_any(run, &crate::run::InFlight::default())
        .await
        .map_err(|e| CliError::Runtime(e.into()));
    node.leave().await;
    if let Some(p) = progress {
        p.finish();
    }
    let run = match ended? {
        Ended::Final(run) => run,
        Ended::Suspended(run) => {
            return Err(CliError::Runtime(anyhow::anyhow!(
                "interrupted in state {}; run {} resumes at the next start of the daemon or of `snapsched run`",
                run.state,
                run.id
            )))
        }
    };
    if args.json {
        print_json(&run)?;
    } else if run.state == RunState::Succeeded {
        match def.spec.target.tag() {
            Some(tag) => println!(
                "run {} succeeded: snapshot {} of every droplet tagged {tag} in {} (`snapsched status` shows each)",
                run.id,
                crate::run::snapshot_name(&id.name, run.slot),
                super::output::run_duration(&run)
            ),
            None => println!(
                "run {} succeeded: snapshot {} in {}",
                run.id,
                run.snapshot_name.as_deref().unwrap_or("-"),
                super::output::run_duration(&run)
            ),
        }
    }
    // A failure is said once, on stderr, by the error below.
    if run.state == RunState::Succeeded {
        Ok(())
    } else {
        Err(CliError::Runtime(anyhow::anyhow!(
            "run {} of {id} {}: {}",
            run.id,
            run.state,
            run.error.as_deref().unwrap_or("no detail")
        )))
    }
}

fn busy(id: &crate::domain::Identity, other: &Run) -> CliError {
    CliError::Runtime(anyhow::anyhow!(
        "definition {id} is already running (run {}, {}, {}); try again when it ends",
        other.id,
        other.trigger.as_str(),
        other.state
    ))
}

/// Take `run` over for this process if its owner is gone (no live node:
/// killed, expired, or left with the run unfinished), as the daemon's
/// recovery does; `None` when its owner is alive or another process took
/// it first.
async fn take_over_orphan(store: &Store, run: &Run) -> CliResult<Option<Run>> {
    let orphaned = store
        .orphaned_runs()
        .await?
        .into_iter()
        .find(|r| r.id == run.id);
    let Some(orphan) = orphaned else {
        return Ok(None);
    };
    Ok(store.take_over_run(&orphan, Utc::now()).await?)
}
