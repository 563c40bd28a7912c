//! How commands print: JSON, aligned tables, and the renderings more than
//! one command shows (a definition with its next fire, a prune report, a
//! run's duration).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::{CliError, CliResult};
use crate::domain::definition::Definition;
use crate::domain::Run;
use crate::prune::{DeletionOutcome, PruneReport};
use crate::retention;
use crate::table;

/// Print `value` as pretty JSON.
pub fn print_json<T: Serialize>(value: &T) -> CliResult {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Runtime(anyhow::anyhow!("cannot encode JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// Print rows as an aligned table under `headers`.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    print!("{}", table::render(headers, rows));
}

/// A definition with its next fire time, as printed by `def list`, `def
/// show` and `status`.
#[derive(Debug, Serialize)]
pub struct DefinitionView {
    #[serde(flatten)]
    pub definition: Definition,
    /// Effective zone (the definition's or the daemon default).
    pub zone: String,
    pub next_fire: Option<String>,
}

pub fn view(def: Definition, default_tz: Tz, now: DateTime<Utc>) -> DefinitionView {
    let zone = def.spec.zone(default_tz);
    let next_fire = if def.spec.active {
        def.spec
            .schedule
            .next_after(now, zone)
            .map(|t| t.with_timezone(&zone).to_rfc3339())
    } else {
        None
    };
    DefinitionView {
        definition: def,
        zone: zone.to_string(),
        next_fire,
    }
}

/// A run's duration, humanly (`-` while it runs).
pub fn run_duration(run: &Run) -> String {
    run.duration()
        .and_then(|d| d.to_std().ok())
        .map(crate::domain::run::human_duration)
        .unwrap_or_else(|| "-".into())
}

/// How long ago a heartbeat was, humanly: `3s ago`, `2m 5s ago`.
pub fn heartbeat_age(age_ms: i64) -> String {
    let secs = u64::try_from(age_ms / 1000).unwrap_or(0);
    format!(
        "{} ago",
        humantime::format_duration(std::time::Duration::from_secs(secs))
    )
}

/// A node as one cell: its hostname and short id, `web01 (0123abcd)`.
pub fn node_label(hostname: &str, id: &str) -> String {
    format!("{hostname} ({})", crate::domain::node::short_id(id))
}

/// Print a prune report as JSON or in its human form.
pub fn print_prune_report(report: &PruneReport, json: bool) -> CliResult {
    if json {
        return print_json(report);
    }
    print!("{}", prune_report(report));
    Ok(())
}

/// The human form of a prune report: the plan table, then adoptions,
/// snapshots marked gone and failed deletions, then a one-line summary.
pub fn prune_report(report: &PruneReport) -> String {
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
            DeletionOutcome::Failed(e) => e.to_string(),
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
