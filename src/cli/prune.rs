//! `snapsched prune NAME [filters] [--dry-run] [--json]`: plan retention for
//! one definition and, without `--dry-run`, carry it out.
//!
//! A pruning run from the CLI is a run like any other: it claims the
//! definition (so it never overlaps a scheduled run) and ends in history as
//! `succeeded` or `failed`. A dry run changes nothing and is not recorded.

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;
use clap::Args;

use super::{print_json, Address, CliError, CliResult, Context};
use crate::config::Config;
use crate::domain::definition::{self, Definition, DefinitionSpec};
use crate::domain::Target;
use crate::domain::{Claim, Run, RunState, Trigger};
use crate::provider::registry::{self, AnyProvider};
use crate::prune::{self, PruneReport};
use crate::retention;
use crate::store::runs::Update;
use crate::store::Store;

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

/// The provider and parsed target of a definition, from the configuration.
pub fn provider_for(cfg: &Config, def: &Definition) -> CliResult<(AnyProvider, Target)> {
    let id = &def.spec.identity;
    let pcfg = cfg.provider(&id.provider).ok_or_else(|| {
        CliError::usage(format!(
            "definition {id} uses provider '{}', which is not configured in {}",
            id.provider,
            cfg.path.display()
        ))
    })?;
    let target = definition::parse_target(&id.target, pcfg.kind)
        .map_err(|e| CliError::usage(format!("definition {id}: {e}")))?;
    let provider = registry::build(pcfg)
        .map_err(|e| CliError::usage(format!("providers.{}: {e}", id.provider)))?;
    Ok((provider, target))
}

pub async fn run(args: PruneArgs, ctx: &Context) -> CliResult {
    let cfg = ctx.config()?;
    let store = ctx.open_store(&cfg).await?;
    let def = super::def::resolve(&store, &args.address).await?;
    let (provider, target) = provider_for(&cfg, &def)?;
    let spec = &def.spec;
    let id = &spec.identity;

    if args.dry_run {
        let report = prune::prune(&store, &provider, spec, &target, Utc::now(), true).await?;
        return print_report(&report, args.json);
    }

    let run = claim(&store, spec, spec.zone(cfg.daemon.timezone), Utc::now()).await?;
    store
        .update_run(
            run.id,
            Update {
                state: Some(RunState::Pruning),
                started: true,
                ..Default::default()
            },
            Utc::now(),
        )
        .await?;

    let outcome = prune::prune(&store, &provider, spec, &target, Utc::now(), false).await;
    let error = match &outcome {
        Ok(report) => report.check().err().map(|e| e.to_string()),
        Err(e) => Some(format!("{e:#}")),
    };
    store
        .update_run(
            run.id,
            Update {
                state: Some(if error.is_some() {
                    RunState::Failed
                } else {
                    RunState::Succeeded
                }),
                error: error.as_deref().map(|m| ("prune", m)),
                ..Default::default()
            },
            Utc::now(),
        )
        .await?;
    crate::telemetry::metrics::run_finished(
        id,
        if error.is_some() {
            RunState::Failed
        } else {
            RunState::Succeeded
        },
    );

    let report = outcome?;
    print_report(&report, args.json)?;
    match error {
        Some(e) => Err(CliError::Runtime(anyhow::anyhow!(e))),
        None => Ok(()),
    }
}

/// Claim a run for this prune. Its slot is a whole second at or just before
/// `now` that is not a fire time of the definition's schedule, so a prune
/// can never take the slot of a scheduled or catch-up run (which would then
/// be skipped as already run); two prunes in one second get different slots.
async fn claim(store: &Store, spec: &DefinitionSpec, tz: Tz, now: DateTime<Utc>) -> CliResult<Run> {
    let id = &spec.identity;
    let schedule = spec.parsed_schedule().ok();
    let second = TimeDelta::seconds(1);
    let base = now.with_nanosecond(0).unwrap_or(now);
    for back in 0..120 {
        let slot = base - second * back;
        if schedule
            .as_ref()
            .is_some_and(|s| s.next_after(slot - second, tz) == Some(slot))
        {
            continue;
        }
        match store.claim_run(id, slot, Trigger::Prune, now).await? {
            Claim::Claimed(run) => return Ok(run),
            Claim::Busy(active) => {
                return Err(CliError::usage(format!(
                    "definition {id} is running (run {}, {}, slot {}); try again when it ends",
                    active.id,
                    active.state,
                    active.slot.to_rfc3339()
                )))
            }
            Claim::AlreadyRan => continue,
        }
    }
    Err(CliError::Runtime(anyhow::anyhow!(
        "definition {id}: no free run slot in the last 2 minutes; try again later"
    )))
}

fn print_report(report: &PruneReport, json: bool) -> CliResult {
    if json {
        return print_json(report);
    }
    print!("{}", render(report));
    Ok(())
}

/// The human form of a report: the plan table, then adoptions, snapshots
/// marked gone and failed deletions, then a one-line summary.
pub fn render(report: &PruneReport) -> String {
    let mut out = String::new();
    if report.decisions.is_empty() {
        out.push_str("no snapshots on this disk\n");
    } else {
        out.push_str(&retention::render_table(&report.decisions));
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    let verb = if report.dry_run {
        "would adopt"
    } else {
        "adopted"
    };
    for s in &report.adopted {
        out.push_str(&format!(
            "{verb} {} (no record in the store; the name matches the definition)\n",
            s.name
        ));
    }
    let verb = if report.dry_run {
        "would mark gone"
    } else {
        "marked gone"
    };
    for name in &report.gone {
        out.push_str(&format!(
            "{verb} {name} (no longer listed by the provider)\n"
        ));
    }
    for d in report.failures() {
        let why = match &d.outcome {
            retention::DeletionOutcome::Failed(e) => e.to_string(),
            _ => "refused: not owned by this definition".to_owned(),
        };
        out.push_str(&format!("could not delete {}: {why}\n", d.snapshot.name));
    }
    let planned = report.planned_deletions();
    let keep = report.decisions.len() - planned;
    if report.dry_run {
        out.push_str(&format!(
            "dry run: {keep} to keep, {planned} to delete; nothing was changed\n"
        ));
    } else {
        let done = report.deletions.len() - report.failures().count();
        out.push_str(&format!("{keep} kept, {done} of {planned} deleted\n"));
    }
    out
}
