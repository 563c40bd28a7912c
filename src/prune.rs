//! Pruning a definition's own snapshots at the provider: the I/O around the
//! pure planner in [`crate::retention`].
//!
//! One prune of a definition identity:
//! 1. read the store's records of the definition's (provider, target, disk);
//! 2. list the disk at the provider and plan ([`retention::list_and_plan`]);
//!    a failed listing (a listing that stopped part-way is one) prunes
//!    nothing and is returned as the error;
//! 3. bring the store in line with the listing: record adoptions, mark
//!    snapshots the provider no longer lists as gone, mark reappeared ones
//!    present again;
//! 4. unless it is a dry run, delete what the plan deletes and record every
//!    deletion with its reasons.
//!
//! Invariants: a dry run writes nothing, neither to the provider nor to the
//! store; only snapshots the planner marks owned are ever sent for deletion;
//! a deletion is recorded only when the provider confirmed it (or said the
//! snapshot was already gone).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::definition::{DefinitionSpec, Identity};
use crate::domain::{RecordState, SnapshotRecord};
use crate::domain::{RemoteSnapshot, Target};
use crate::provider::{Provider, ProviderError};
use crate::retention::{
    self, Decision, Deletion, DeletionOutcome, ListedPlan, Policy, StoreRecords,
};
use crate::store::{Store, StoreError};
use crate::telemetry::metrics;

/// Why a prune did not complete.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// Listing the disk failed: nothing was pruned.
    #[error(
        "listing snapshots of {target} disk {disk_id} failed, so nothing was pruned: {source}"
    )]
    Listing {
        target: String,
        disk_id: u32,
        #[source]
        source: ProviderError,
    },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Some deletions failed; the others are done and recorded.
    #[error("{failed} of {total} deletions failed; first: {first}")]
    Deletions {
        failed: usize,
        total: usize,
        first: String,
    },
}

/// What one prune decided and did.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub definition: Identity,
    /// True when nothing was deleted or recorded, only planned.
    pub dry_run: bool,
    /// The plan: one decision per listed snapshot, oldest first. Empty for
    /// [`delete_all_snapshots`], which does not plan.
    pub decisions: Vec<Decision>,
    /// The deletions carried out (empty on a dry run).
    pub deletions: Vec<Deletion>,
    /// Snapshots adopted by the exact-name rule (recorded unless dry run).
    pub adopted: Vec<RemoteSnapshot>,
    /// Recorded snapshots the provider no longer lists: marked gone.
    pub gone: Vec<String>,
    /// Snapshots recorded as deleted or gone that the provider lists again.
    pub reappeared: Vec<String>,
}

impl PruneReport {
    /// Deletions that did not happen (provider failure or refused).
    pub fn failures(&self) -> impl Iterator<Item = &Deletion> {
        self.deletions
            .iter()
            .filter(|d| d.outcome != DeletionOutcome::Done)
    }

    /// How many snapshots the plan deletes (or would, on a dry run).
    pub fn planned_deletions(&self) -> usize {
        self.decisions.iter().filter(|d| !d.keep).count()
    }

    /// An error when any deletion failed, naming the first failure.
    pub fn check(&self) -> Result<(), PruneError> {
        let failed: Vec<&Deletion> = self.failures().collect();
        match failed.first() {
            None => Ok(()),
            Some(first) => Err(PruneError::Deletions {
                failed: failed.len(),
                total: self.deletions.len(),
                first: format!("{}: {}", first.snapshot.name, outcome_text(&first.outcome)),
            }),
        }
    }
}

/// The text recorded in the store (and shown) for why a snapshot was deleted.
pub fn reason_text(deletion: &Deletion) -> String {
    if deletion.reasons.is_empty() {
        DEFINITION_REMOVED.to_owned()
    } else {
        deletion
            .reasons
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

const DEFINITION_REMOVED: &str = "definition removed with --delete-snapshots";

fn outcome_text(outcome: &DeletionOutcome) -> String {
    match outcome {
        DeletionOutcome::Done => "deleted".to_owned(),
        DeletionOutcome::Failed(e) => e.to_string(),
        DeletionOutcome::Refused => "refused: not owned by this definition".to_owned(),
    }
}

/// The retention policy of a definition.
pub fn policy(spec: &DefinitionSpec) -> Policy {
    Policy {
        retention: spec.retention,
        max_age: spec.max_age,
    }
}

/// Prune after a successful create. Failed deletions make it an error (after
/// recording the ones that succeeded), so the run's history says so.
pub async fn after_success<P: Provider>(
    store: &Store,
    provider: &P,
    spec: &DefinitionSpec,
    target: &Target,
    now: DateTime<Utc>,
) -> anyhow::Result<PruneReport> {
    let report = prune(store, provider, spec, target, now, false).await?;
    report.check()?;
    Ok(report)
}

/// Plan retention for `spec` on `target` from a fresh listing and, unless
/// `dry_run`, carry the plan out. Failed deletions are in the report (see
/// [`PruneReport::check`]), not an error: the rest of the plan is still done.
pub async fn prune<P: Provider>(
    store: &Store,
    provider: &P,
    spec: &DefinitionSpec,
    target: &Target,
    now: DateTime<Utc>,
    dry_run: bool,
) -> anyhow::Result<PruneReport> {
    Ok(prune_inner(store, provider, spec, target, now, dry_run).await?)
}

async fn prune_inner<P: Provider>(
    store: &Store,
    provider: &P,
    spec: &DefinitionSpec,
    target: &Target,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<PruneReport, PruneError> {
    let id = &spec.identity;
    let records = store_records(store, id).await?;
    let ListedPlan {
        classification,
        decisions,
    } = retention::list_and_plan(
        provider,
        target,
        id.disk_id,
        &records,
        &id.name,
        &policy(spec),
        now,
    )
    .await
    .map_err(|source| {
        tracing::warn!(definition = %id, error = %source, "listing failed; nothing pruned");
        PruneError::Listing {
            target: target.to_string(),
            disk_id: id.disk_id,
            source,
        }
    })?;

    let adopted: Vec<RemoteSnapshot> = classification.adopted().cloned().collect();
    let mut report = PruneReport {
        definition: id.clone(),
        dry_run,
        decisions,
        deletions: Vec::new(),
        adopted,
        gone: classification.missing,
        reappeared: classification.reappeared,
    };
    if dry_run {
        return Ok(report);
    }

    sync_store(store, id, &report, now).await?;
    report.deletions = retention::execute(provider, target, id.disk_id, &report.decisions).await;
    record_deletions(store, id, &report.deletions, now).await?;
    publish_owned_count(store, id).await;
    Ok(report)
}

/// Delete every snapshot of the definition's disk that the definition owns
/// (recorded or adopted), whatever the retention says: `def rm
/// --delete-snapshots`. Nothing is deleted from a failed listing; snapshots
/// not owned are never touched. Failed deletions are in the report.
pub async fn delete_all_snapshots<P: Provider>(
    store: &Store,
    provider: &P,
    spec: &DefinitionSpec,
    target: &Target,
    now: DateTime<Utc>,
) -> anyhow::Result<PruneReport> {
    let id = &spec.identity;
    let records = store_records(store, id).await?;
    let listing = provider
        .list_snapshots(target, id.disk_id)
        .await
        .map_err(|source| PruneError::Listing {
            target: target.to_string(),
            disk_id: id.disk_id,
            source,
        })?;
    let classification = retention::classify(&listing, &records, &id.name);
    let doomed: Vec<Decision> = classification
        .candidates
        .iter()
        .filter(|c| c.ownership.is_owned())
        .map(|c| Decision {
            snapshot: c.snapshot.clone(),
            ownership: c.ownership,
            keep: false,
            // No retention rule applies; `reason_text` names the cause.
            reasons: Vec::new(),
        })
        .collect();
    let mut report = PruneReport {
        definition: id.clone(),
        dry_run: false,
        decisions: Vec::new(),
        deletions: Vec::new(),
        adopted: classification.adopted().cloned().collect(),
        gone: classification.missing,
        reappeared: classification.reappeared,
    };
    sync_store(store, id, &report, now).await?;
    report.deletions = retention::execute(provider, target, id.disk_id, &doomed).await;
    record_deletions(store, id, &report.deletions, now).await?;
    publish_owned_count(store, id).await;
    Ok(report)
}

/// Set the definition's snapshot gauge from the store, which the listing
/// and the deletions just brought in line with the provider. A failure
/// only leaves the gauge stale until the next refresh, so it is logged.
async fn publish_owned_count(store: &Store, id: &Identity) {
    match store.owned_count(id).await {
        Ok(n) => metrics::snapshot_count(id, n),
        Err(e) => tracing::warn!(definition = %id, "cannot count owned snapshots: {e}"),
    }
}

/// What the store knows about the names on the definition's disk: its own
/// live and gone records, and every other definition's names there.
pub async fn store_records(store: &Store, id: &Identity) -> Result<StoreRecords, StoreError> {
    let records = store
        .snapshot_records_on(&id.provider, &id.target, id.disk_id)
        .await?;
    Ok(records_for(id, &records))
}

/// Split the records of one (provider, target, disk) into `id`'s own (live
/// or gone) and everyone else's.
pub fn records_for(id: &Identity, records: &[SnapshotRecord]) -> StoreRecords {
    let mut out = StoreRecords::default();
    for r in records {
        let set = if r.identity != *id {
            &mut out.others
        } else if r.state == RecordState::Present {
            &mut out.live
        } else {
            &mut out.gone
        };
        set.insert(r.snapshot.clone());
    }
    out
}

/// Record adoptions, snapshots gone and snapshots back, before deleting, so
/// that a deletion of an adopted snapshot has a row to mark.
async fn sync_store(
    store: &Store,
    id: &Identity,
    report: &PruneReport,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for snap in &report.adopted {
        store.record_snapshot(id, snap, None, true, now).await?;
        tracing::info!(
            definition = %id, snapshot = %snap.name, snapshot_id = %snap.id,
            "adopted snapshot: no record in the store, name matches the definition"
        );
    }
    for name in &report.gone {
        store
            .mark_snapshot(
                id,
                name,
                RecordState::Gone,
                Some("no longer listed by the provider"),
                now,
            )
            .await?;
        tracing::warn!(
            definition = %id, snapshot = %name,
            "recorded snapshot no longer listed by the provider (deleted by hand?); marked gone"
        );
    }
    for name in &report.reappeared {
        store.mark_snapshot_present(id, name).await?;
        tracing::info!(
            definition = %id, snapshot = %name,
            "snapshot recorded as deleted or gone is listed again; counted again"
        );
    }
    Ok(())
}

async fn record_deletions(
    store: &Store,
    id: &Identity,
    deletions: &[Deletion],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for d in deletions
        .iter()
        .filter(|d| d.outcome == DeletionOutcome::Done)
    {
        let reason = reason_text(d);
        store
            .mark_snapshot(
                id,
                &d.snapshot.name,
                RecordState::Deleted,
                Some(&reason),
                now,
            )
            .await?;
        tracing::info!(
            definition = %id, snapshot = %d.snapshot.name, reason = %reason,
            "pruned snapshot recorded"
        );
        metrics::snapshot_pruned(id);
    }
    Ok(())
}
