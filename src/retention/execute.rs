//! Carrying out a retention plan: the only part of retention with I/O.
//!
//! Invariants: exactly the decisions with `keep == false` are sent to the
//! provider, in one `delete_snapshots` call; a decision to delete a snapshot
//! the definition does not own is refused here too, so a hand-built or
//! corrupted plan still cannot delete someone else's snapshot. Every
//! outcome is logged (`info` done, `warn` failed, `error` refused); recording
//! it in the store is the caller's job.

use serde::{Serialize, Serializer};

use chrono::{DateTime, Utc};

use super::ownership::{classify, Classification, StoreRecords};
use super::plan::{plan, Decision, Policy, Reason};
use crate::domain::{RemoteSnapshot, Target};
use crate::provider::{Provider, ProviderError, ProviderResult};

/// A plan made from a fresh, complete listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPlan {
    /// Ownership of every listed snapshot, plus what the store must mark
    /// gone or live again and the adoptions to log.
    pub classification: Classification,
    pub decisions: Vec<Decision>,
}

/// List (`target`, `disk_id`), classify the listing for `definition` and
/// plan. A listing error is returned as is and yields no plan at all: the
/// provider contract makes a listing that stopped part-way an error, so
/// nothing is ever planned from an incomplete view.
pub async fn list_and_plan<P: Provider>(
    provider: &P,
    target: &Target,
    disk_id: u32,
    store: &StoreRecords,
    definition: &str,
    policy: &Policy,
    now: DateTime<Utc>,
) -> ProviderResult<ListedPlan> {
    let listing = provider.list_snapshots(target, disk_id).await?;
    let classification = classify(&listing, store, definition);
    let decisions = plan(&classification.candidates, policy, now);
    Ok(ListedPlan {
        classification,
        decisions,
    })
}

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
    let reasons = d
        .reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
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
