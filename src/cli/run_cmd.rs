//! `snapsched run`: run a definition now (trigger `manual`).
//!
//! The run is driven by this process, whether or not a daemon is running;
//! the store's per-definition lock keeps the daemon and the CLI from running
//! the same definition at once. A run interrupted here (Ctrl-C, crash) is
//! resumed by the daemon at its next start.

use std::io::IsTerminal;

use chrono::Utc;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::context::{Address, Context};
use super::output::print_json;
use super::{CliError, CliResult};
use crate::clock::Clock;
use crate::domain::{Claim, RunState, Trigger};
use crate::run::{Ended, Runner};

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
    // A manual run's slot is the current second, which also names the
    // snapshot; a second manual run within the same second waits for the
    // next one rather than failing.
    let mut attempts = 0;
    let run = loop {
        let now = Utc::now();
        match store.claim_run(&id, now, Trigger::Manual, now).await? {
            Claim::Claimed(run) => break run,
            Claim::Busy(other) => {
                return Err(CliError::Runtime(anyhow::anyhow!(
                    "definition {id} is already running (run {}, {}, {}); try again when it ends",
                    other.id,
                    other.trigger.as_str(),
                    other.state
                )))
            }
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
    };
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
        options: crate::wiring::run_options(&cfg),
        shutdown,
        lease: Some(node.lease()),
    };
    let progress = (args.wait && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} [{elapsed}] {msg}") {
            bar.set_style(style);
        }
        bar.set_message(format!("snapshot of {id}: {}", run.state));
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    });
    let watcher = progress.clone().map(|bar| {
        let store = store.clone();
        let run_id = run.id;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
            loop {
                tick.tick().await;
                if let Ok(Some(r)) = store.get_run(run_id).await {
                    bar.set_message(format!(
                        "{} {} (attempt {})",
                        r.state,
                        r.snapshot_name.as_deref().unwrap_or(""),
                        r.attempts
                    ));
                }
            }
        })
    });
    let ended = runner
        .drive_guarded(run)
        .await
        .map_err(|e| CliError::Runtime(e.into()));
    node.leave().await;
    if let Some(w) = watcher {
        w.abort();
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let run = match ended? {
        Ended::Final(run) => run,
        Ended::Suspended(run) => {
            return Err(CliError::Runtime(anyhow::anyhow!(
                "interrupted in state {}; the daemon resumes run {} at its next start",
                run.state,
                run.id
            )))
        }
    };
    if args.json {
        print_json(&run)?;
    } else if run.state == RunState::Succeeded {
        println!(
            "run {} succeeded: snapshot {} in {}",
            run.id,
            run.snapshot_name.as_deref().unwrap_or("-"),
            super::output::run_duration(&run)
        );
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
