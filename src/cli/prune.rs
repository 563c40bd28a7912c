//! `snapsched prune NAME [filters] [--dry-run] [--json]`: plan retention for
//! one definition and, without `--dry-run`, carry it out.
//!
//! A pruning run from the CLI is a run like any other ([`crate::run::prune_run`]):
//! it claims the definition (so it never overlaps a scheduled run) and ends
//! in history as `succeeded` or `failed`. A dry run changes nothing and is
//! not recorded.

use chrono::Utc;
use clap::Args;

use super::context::{Address, Context};
use super::output::print_prune_report;
use super::{CliError, CliResult};
use crate::clock::Clock;
use crate::prune;
use crate::run::{self, PruneRunError};

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub address: Address,
    /// Show what would be deleted; delete nothing, record nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the plan and its outcome as JSON
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: PruneArgs, ctx: &Context) -> CliResult {
    let cfg = ctx.config()?;
    let store = ctx.open_store(&cfg).await?;
    let def = ctx.resolve(&store, &args.address).await?;
    let (provider, target) = ctx.provider_for(&cfg, &def, &store)?;
    let spec = &def.spec;

    let tz = spec.zone(cfg.daemon.timezone);
    if args.dry_run {
        let report = prune::prune(&store, &provider, spec, &target, tz, Utc::now(), true).await?;
        return print_prune_report(&report, args.json);
    }

    let node = ctx.join_as_cli(&store, &cfg).await?;
    let end = run::prune_run(&store, &provider, spec, &target, tz, Clock::System).await;
    node.leave().await;
    let end = end.map_err(|e| match e {
        PruneRunError::Busy { .. } => CliError::usage(e.to_string()),
        PruneRunError::NoFreeSlot(_) => CliError::Runtime(anyhow::anyhow!(e.to_string())),
        PruneRunError::Store(e) => e.into(),
    })?;
    let report = end.report?;
    print_prune_report(&report, args.json)?;
    match end.error {
        Some(e) => Err(CliError::Runtime(anyhow::anyhow!(e))),
        None => Ok(()),
    }
}
