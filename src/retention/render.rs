//! Showing a plan or its execution: an aligned table in the manner of
//! `rustic forget`, and JSON.

use super::execute::Deletion;
use super::plan::Decision;
use crate::table;

/// How creation times are shown: UTC, to the second, sortable.
const CREATED_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

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

/// Executed deletions as a table: Snapshot, Created (UTC), Result, Reason.
pub fn render_deletions_table(deletions: &[Deletion]) -> String {
    use super::execute::DeletionOutcome;
    let rows: Vec<Vec<String>> = deletions
        .iter()
        .map(|d| {
            let result = match &d.outcome {
                DeletionOutcome::Done => "deleted".to_string(),
                DeletionOutcome::Failed(e) => format!("failed: {e}"),
                DeletionOutcome::Refused => "refused: not owned".to_string(),
            };
            vec![
                d.snapshot.name.clone(),
                d.snapshot.created_at.format(CREATED_FORMAT).to_string(),
                result,
                join_reasons(&d.reasons),
            ]
        })
        .collect();
    table::render(&["Snapshot", "Created", "Result", "Reason"], &rows)
}

fn join_reasons(reasons: &[super::plan::Reason]) -> String {
    reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
