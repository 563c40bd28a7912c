//! Carrying out a plan's deletions at the provider.
//!
//! Invariants: exactly the decisions with `keep == false` are sent to the
//! provider, in one `delete_snapshots` call; a decision to delete a snapshot
//! the definition does not own is refused here too, so a hand-built or
//! corrupted plan still cannot delete someone else's snapshot. Every
//! outcome is logged (`info` done, `warn` failed, `error` refused); recording
//! it in the store is the caller's job.

use serde::{Serialize, Serializer};

use crate::domain::{RemoteSnapshot, Target};
use crate::provider::{Provider, ProviderError};
use crate::retention::{join_reasons, Decision, Reason};
use crate::table;

/// What happened to one snapshot the plan deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeletionOutcome {
    /// Deleted, or already gone at the provider.
    Done,
    /// The provider refused or failed; the snapshot may still exist.
    Failed(ProviderError),
    /// Not sent to the provider: the plan asked to delete a snapshot the
    /// definition does not own.
    Refused,
}

impl Serialize for DeletionOutcome {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        match self {
            DeletionOutcome::Done => map.serialize_entry("status", "done")?,
            DeletionOutcome::Failed(e) => {
                map.serialize_entry("status", "failed")?;
                map.serialize_entry("error", &e.message)?;
                map.serialize_entry("class", &e.class)?;
            }
            DeletionOutcome::Refused => {
                map.serialize_entry("status", "refused")?;
                map.serialize_entry("error", "not owned by this definition")?;
            }
        }
        map.end()
    }
}

/// One executed deletion, with the reasons to record in history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deletion {
    pub snapshot: RemoteSnapshot,
    pub reasons: Vec<Reason>,
    pub outcome: DeletionOutcome,
}

/// Delete the snapshots `plan` marks for deletion on (`target`, `disk_id`).
///
/// Returns one entry per deleted decision, in plan order. Calls the provider
/// at most once, and not at all when nothing is to be deleted.
pub async fn execute<P: Provider>(
    provider: &P,
    target: &Target,
    disk_id: u32,
    plan: &[Decision],
) -> Vec<Deletion> {
    let doomed: Vec<&Decision> = plan.iter().filter(|d| !d.keep).collect();
    let sendable: Vec<RemoteSnapshot> = doomed
        .iter()
        .filter(|d| d.ownership.is_owned())
        .map(|d| d.snapshot.clone())
        .collect();

    let mut results = if sendable.is_empty() {
        Vec::new()
    } else {
        provider.delete_snapshots(target, disk_id, &sendable).await
    }
    .into_iter();
    let expected = sendable.len();
    let mut received = 0usize;

    doomed
        .into_iter()
        .map(|d| {
            let outcome = if !d.ownership.is_owned() {
                DeletionOutcome::Refused
            } else {
                match results.next() {
                    Some(Ok(())) => {
                        received += 1;
                        DeletionOutcome::Done
                    }
                    Some(Err(e)) => {
                        received += 1;
                        DeletionOutcome::Failed(e)
                    }
                    // The trait promises one result per input; if a provider
                    // breaks that, the snapshot's fate is unknown.
                    None => DeletionOutcome::Failed(ProviderError::permanent(format!(
                        "provider returned {received} results for {expected} deletions; \
                         no result for snapshot {}",
                        d.snapshot.name
                    ))),
                }
            };
            log_outcome(target, disk_id, d, &outcome);
            Deletion {
                snapshot: d.snapshot.clone(),
                reasons: d.reasons.clone(),
                outcome,
            }
        })
        .collect()
}

fn log_outcome(target: &Target, disk_id: u32, d: &Decision, outcome: &DeletionOutcome) {
    let reasons = join_reasons(&d.reasons);
    let (name, id) = (&d.snapshot.name, &d.snapshot.id);
    match outcome {
        DeletionOutcome::Done => tracing::info!(
            target_name = %target, disk_id, snapshot = %name, snapshot_id = %id, reasons,
            "deleted snapshot"
        ),
        DeletionOutcome::Failed(e) => tracing::warn!(
            target_name = %target, disk_id, snapshot = %name, snapshot_id = %id, reasons,
            error = %e, transient = e.is_transient(),
            "deleting snapshot failed"
        ),
        DeletionOutcome::Refused => tracing::error!(
            target_name = %target, disk_id, snapshot = %name, snapshot_id = %id,
            "refused to delete a snapshot this definition does not own"
        ),
    }
}

/// Executed deletions as a table: Snapshot, Created (in `zone`), Result,
/// Reason.
pub fn render_deletions_table(deletions: &[Deletion], zone: chrono_tz::Tz) -> String {
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
                table::instant(d.snapshot.created_at, zone),
                result,
                join_reasons(&d.reasons),
            ]
        })
        .collect();
    table::render(&["Snapshot", "Created", "Result", "Reason"], &rows)
}
