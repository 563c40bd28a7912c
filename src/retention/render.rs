//! Showing a plan or its execution: an aligned table in the manner of
//! `rustic forget`, and JSON.

use super::plan::{Decision, Reason};
use crate::table;

/// How creation times are shown: UTC, to the second, sortable.
pub const CREATED_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// The plan as a table: Snapshot, Created (UTC), Action, Reason.
pub fn render_table(decisions: &[Decision]) -> String {
    let rows: Vec<Vec<String>> = decisions
        .iter()
        .map(|d| {
            vec![
                d.snapshot.name.clone(),
                d.snapshot.created_at.format(CREATED_FORMAT).to_string(),
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
