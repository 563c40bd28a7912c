//! `snapsched status`: one line per definition.

use chrono::Utc;
use clap::Args;
use serde::Serialize;

use super::context::Context;
use super::output::{print_json, print_table, run_duration, view};
use super::CliResult;
use crate::domain::Run;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long)]
    pub json: bool,
}

/// One definition's status; the JSON field names are stable.
#[derive(Debug, Serialize)]
pub struct DefinitionStatus {
    #[serde(flatten)]
    pub identity: crate::domain::definition::Identity,
    pub active: bool,
    pub schedule: String,
    pub timezone: String,
    pub next_fire: Option<String>,
    pub last_run: Option<Run>,
    pub last_success: Option<Run>,
    pub snapshots: i64,
    pub last_error: Option<String>,
}

pub async fn run(args: StatusArgs, ctx: &Context) -> CliResult {
    let cfg = ctx.config()?;
    let store = ctx.open_store(&cfg).await?;
    let now = Utc::now();
    let mut out = Vec::new();
    for def in store.list_definitions().await? {
        let view = view(def, cfg.daemon.timezone, now);
        let id = view.definition.spec.identity.clone();
        let (last_run, last_success) = store.last_runs(&id).await?;
        let last_error = last_run
            .as_ref()
            .filter(|r| r.state != crate::domain::RunState::Succeeded || r.error.is_some())
            .and_then(|r| r.error.clone());
        out.push(DefinitionStatus {
            active: view.definition.spec.active,
            schedule: view.definition.spec.schedule.source().to_owned(),
            timezone: view.zone.clone(),
            next_fire: view.next_fire.clone(),
            snapshots: store.owned_count(&id).await?,
            identity: id,
            last_run,
            last_success,
            last_error,
        });
    }
    if args.json {
        return print_json(&out);
    }
    let rows: Vec<Vec<String>> = out
        .iter()
        .map(|s| {
            vec![
                s.identity.name.clone(),
                format!(
                    "{} {} disk {}",
                    s.identity.provider, s.identity.target, s.identity.disk_id
                ),
                if s.active { "yes" } else { "no" }.into(),
                format!("{} ({})", s.schedule, s.timezone),
                s.next_fire.clone().unwrap_or_else(|| "-".into()),
                s.last_run
                    .as_ref()
                    .map(|r| format!("{} {} ({})", r.state, r.slot.to_rfc3339(), run_duration(r)))
                    .unwrap_or_else(|| "-".into()),
                s.last_success
                    .as_ref()
                    .map(|r| r.slot.to_rfc3339())
                    .unwrap_or_else(|| "-".into()),
                s.snapshots.to_string(),
                s.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(
        &[
            "Definition",
            "Where",
            "Active",
            "Schedule",
            "Next fire",
            "Last run",
            "Last success",
            "Snapshots",
            "Last error",
        ],
        &rows,
    );
    Ok(())
}
