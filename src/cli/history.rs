//! `snapsched history`: runs, newest first.

use clap::Args;

use super::context::Context;
use super::output::{print_json, print_table, run_duration};
use super::{CliError, CliResult};

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only runs of definitions with this name
    pub name: Option<String>,
    /// How many runs to show
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: HistoryArgs, ctx: &Context) -> CliResult {
    let cfg = ctx.config()?;
    let store = ctx.open_store_read_only(&cfg).await?;
    let runs = store.history(args.name.as_deref(), args.limit).await?;
    if let (Some(name), true) = (&args.name, runs.is_empty()) {
        // A removed definition's runs still show; a name nothing ever had
        // is a mistake, as in every other command.
        if store
            .find_definitions(name, &crate::store::Filter::default())
            .await?
            .is_empty()
        {
            return Err(CliError::usage(format!(
                "no definition named '{name}' and no runs of one; see `snapsched def list`"
            )));
        }
    }
    if args.json {
        return print_json(&runs);
    }
    let times = ctx.times(chrono::Utc::now());
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.identity.name.clone(),
                r.identity.target.clone(),
                r.trigger.as_str().into(),
                times.at(r.slot),
                r.state.as_str().into(),
                r.snapshot_name.clone().unwrap_or_else(|| "-".into()),
                r.consistency.map_or("-", |c| c.as_str()).into(),
                run_duration(r),
                match (r.missed_count, &r.error) {
                    (Some(n), _) => format!("{n} missed"),
                    (None, Some(e)) => e.clone(),
                    (None, None) => String::new(),
                },
            ]
        })
        .collect();
    print_table(
        &[
            "Run",
            "Definition",
            "Target",
            "Trigger",
            "Slot",
            "State",
            "Snapshot",
            "Consistency",
            "Duration",
            "Error",
        ],
        &rows,
    );
    Ok(())
}
