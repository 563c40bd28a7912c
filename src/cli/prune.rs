//! `snapsched prune NAME [filters] [--dry-run] [--json]`: plan retention for
//! one definition and, without `--dry-run`, carry it out.
//!
//! A pruning run from the CLI is a run like any other ([`crate::run::prune_run`]):
//! it claims the definition (so it never overlaps a scheduled run) and ends
//! in history as `succeeded` or `failed`. A dry run changes nothing and is
//! not recorded.

use chrono::Utc;
use clap::Args;

use std::io::IsTerminal;

use super::context::{confirm, Address, Context};
use super::output::print_prune_report;
use super::{CliError, CliResult};
use crate::clock::Clock;
use crate::prune;
use crate::retention::render_table;
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
    /// Apply a plan that deletes more than max_deletes_per_run without
    /// asking (required when not on a terminal)
    #[arg(long)]
    pub yes: bool,
}

pub async fn run(args: PruneArgs, ctx: &Context) -> CliResult {
    let cfg = ctx.config()?;
    let store = ctx.open_store(&cfg).await?;
    let def = ctx.resolve(&store, &args.address).await?;
    if let Some(tag) = def.spec.target.tag() {
        return Err(CliError::usage(format!(
            "{} is a tag target: each droplet's snapshots are pruned on their own (and after each of its runs);              prune one with `snapsched prune {} --target tag:{tag}/droplet:ID` (`snapsched status` lists them)",
            def.spec.identity, def.spec.identity.name
        )));
    }
    let (provider, target) = ctx.provider_for(&cfg, &def, &store)?;
    let spec = &def.spec;

    let tz = spec.zone(cfg.daemon.timezone);
    let times = ctx.times(Utc::now());
    if args.dry_run {
        let report = prune::prune(&store, &provider, spec, &target, tz, Utc::now(), true).await?;
        return print_prune_report(&report, args.json, &times);
    }

    // The blast-radius limit stops the daemon; here the operator decides.
    let limit = prune::max_deletes(spec, cfg.daemon.max_deletes_per_run);
    if limit > 0 && !args.yes {
        let plan = prune::prune(&store, &provider, spec, &target, tz, Utc::now(), true).await?;
        let planned = plan.planned_deletions();
        if planned > limit as usize {
            if std::io::stdin().is_terminal() {
                eprint!("{}", render_table(&plan.decisions, times.zone));
            }
            let name = &spec.identity.name;
            confirm(
                false,
                &format!(
                    "Delete {planned} snapshots of {} (more than max_deletes_per_run {limit})?",
                    spec.identity
                ),
                &format!(
                    "the plan deletes {planned} snapshots of {}, more than max_deletes_per_run {limit}; \
                     review it with `snapsched prune {name} --dry-run`, then add --yes to apply it",
                    spec.identity
                ),
            )?;
        }
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
    print_prune_report(&report, args.json, &times)?;
    match end.error {
        Some(e) => Err(CliError::Runtime(anyhow::anyhow!(e))),
        None => Ok(()),
    }
}
