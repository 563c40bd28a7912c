//! Showing a plan or its execution: an aligned table in the manner of
//! `rustic forget`, and JSON.

use chrono_tz::Tz;

use super::plan::{Decision, Reason};
use crate::table;

/// How simulated times are shown: to the second, sortable, in the zone the
/// simulation states.
pub const CREATED_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// The plan as a table: Snapshot, Created (in `zone`), Action, Reason.
pub fn render_table(decisions: &[Decision], zone: Tz) -> String {
    let rows: Vec<Vec<String>> = decisions
        .iter()
        .map(|d| {
            vec![
                d.snapshot.name.clone(),
                table::instant(d.snapshot.created_at, zone),
                d.action().to_string(),
                join_reasons(&d.reasons),
            ]
        })
        .collect();
    table::render(&["Snapshot", "Created", "Action", "Reason"], &rows)
}

/// The plan as pretty JSON: an array of decisions.
pub fn render_json(decisions: &[Decision]) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(decisions)
}

/// Reasons as shown and recorded: their texts, comma-separated.
pub fn join_reasons(reasons: &[Reason]) -> String {
    reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
