//! The prune executor: the one pipeline that carries out a plan, for the
//! prune after a run, `snapsched prune` and `def rm --delete-snapshots`.
//! The planning itself is pure and lives in [`crate::retention`]; the run
//! a CLI prune is recorded as lives with the other run code
//! ([`crate::run::prune_run`]).
//!
//! One prune of a definition identity:
//! 1. read the store's records of the definition's (provider, target, disk);
//! 2. list the disk at the provider and plan the [`Intent`]
//!    ([`list_and_plan`]); a failed listing (a listing that stopped
//!    part-way is one) prunes nothing and is returned as the error;
//! 3. unless it is a dry run, bring the store in line with the listing:
//!    record adoptions, mark snapshots the provider no longer lists as gone
//!    (or as deleted, with the reason, when an earlier prune asked for
//!    their deletion and lost the answer), mark reappeared ones present
//!    again;
//! 4. unless it is a dry run, note on each record to delete why it is being
//!    deleted, delete what the plan deletes ([`execute`]) and record every
//!    deletion with its reasons.
//!
//! Invariants: a dry run writes nothing, neither to the provider nor to the
//! store; only snapshots the planner marks owned are ever sent for deletion;
//! a deletion is recorded when the provider confirmed it (or said the
//! snapshot was already gone), or when a snapshot whose deletion was asked
//! for is no longer listed; `gone` is kept for snapshots that disappeared
//! without being asked to.

mod delete;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::domain::definition::{DefinitionSpec, Identity};
use crate::domain::RecordState;
use crate::domain::{RemoteSnapshot, Target};
use crate::provider::{Provider, ProviderError, ProviderResult};
use crate::retention::{
    self, join_reasons, Decision, Intent, ListedPlan, Policy, StoreRecords, Tiers,
};
use crate::store::{Store, StoreError};
use crate::telemetry::metrics;

pub use delete::{execute, render_deletions_table, Deletion, DeletionOutcome};

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
    /// The plan deletes more than the blast-radius limit allows: nothing
    /// was deleted or recorded; `snapsched prune` applies it.
    #[error(
        "the plan deletes {planned} snapshots, more than max_deletes_per_run {limit}, so nothing was deleted; \
         check it with `snapsched prune {name} --dry-run` and apply it with `snapsched prune {name}`"
    )]
    Blocked {
        name: String,
        planned: usize,
        limit: u32,
    },
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
    /// Flat in JSON (`provider`, `target`, `disk_id`, `name`), as in every
    /// other object about one definition.
    #[serde(flatten)]
    pub definition: Identity,
    /// True when nothing was deleted or recorded, only planned.
    pub dry_run: bool,
    /// The plan: one decision per listed snapshot, oldest first.
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

fn outcome_text(outcome: &DeletionOutcome) -> String {
    match outcome {
        DeletionOutcome::Done => "deleted".to_owned(),
        DeletionOutcome::Failed(e) => e.to_string(),
        DeletionOutcome::Refused => "refused: not owned by this definition".to_owned(),
    }
}

/// The retention policy of a definition whose schedule runs in `zone`.
pub fn policy(spec: &DefinitionSpec, zone: Tz) -> Policy {
    Policy {
        keep: Tiers {
            last: spec.retention,
            hourly: spec.keep.hourly,
            daily: spec.keep.daily,
            weekly: spec.keep.weekly,
            monthly: spec.keep.monthly,
            yearly: spec.keep.yearly,
            within: spec.keep.within,
        },
        max_age: spec.max_age,
        zone,
    }
}

/// Prune after a successful create. Failed deletions make it an error (after
/// recording the ones that succeeded), so the run's history says so.
pub async fn after_success<P: Provider>(
    store: &Store,
    provider: &P,
    spec: &DefinitionSpec,
    target: &Target,
    zone: Tz,
    now: DateTime<Utc>,
) -> anyhow::Result<PruneReport> {
    Ok(after_success_limited(store, provider, spec, target, zone, now, 0, None).await?)
}

/// [`after_success`] with a blast-radius limit: a plan that deletes more
/// than `max_deletes` (0 = no limit) is not carried out but returned as
/// [`PruneError::Blocked`], with nothing deleted or recorded. `made` is the
/// id of the snapshot the run just made: a listing the provider read
/// moments ago that lists it ([`Provider::fresh_listing`]) is planned from
/// instead of listing again.
#[allow(clippy::too_many_arguments)]
pub async fn after_success_limited<P: Provider>(
    store: &Store,
    provider: &P,
    spec: &DefinitionSpec,
    target: &Target,
    zone: Tz,
    now: DateTime<Utc>,
    max_deletes: u32,
    made: Option<&str>,
) -> Result<PruneReport, PruneError> {
    let intent = Intent::Retention(policy(spec, zone));
    let report = run(
        store,
        provider,
        spec,
        target,
        &intent,
        now,
        Mode::Guarded(max_deletes),
        made,
    )
    .await?;
    report.check()?;
    Ok(report)
}

/// How the pipeline carries a plan out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Plan only: write nothing.
    DryRun,
    /// Carry the plan out, whatever it deletes.
    Apply,
    /// Carry it out unless it deletes more than this (0 = no limit).
    Guarded(u32),
}

/// The blast-radius limit that applies to `spec`: its own, else the
/// daemon's (0 = no limit).
pub fn max_deletes(spec: &DefinitionSpec, daemon_default: u32) -> u32 {
    spec.max_deletes_per_run.unwrap_or(daemon_default)
}

/// Plan retention for `spec` on `target` from a fresh listing and, unless
/// `dry_run`, carry the plan out. `zone` is the definition's zone (its own
/// or the daemon's default), in which calendar tiers are bucketed. Failed deletions are in the report (see
/// [`PruneReport::check`]), not an error: the rest of the plan is still done.
pub async fn prune<P: Provider>(
    store: &Store,
    provider: &P,
    spec: &DefinitionSpec,
    target: &Target,
    zone: Tz,
    now: DateTime<Utc>,
    dry_run: bool,
) -> anyhow::Result<PruneReport> {
    let intent = Intent::Retention(policy(spec, zone));
    let mode = if dry_run { Mode::DryRun } else { Mode::Apply };
    Ok(run(store, provider, spec, target, &intent, now, mode, None).await?)
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
    Ok(run(
        store,
        provider,
        spec,
        target,
        &Intent::RemoveAll,
        now,
        Mode::Apply,
        None,
    )
    .await?)
}

/// The pipeline: list and plan, then (unless `dry_run`) sync the store,
/// delete and record. `made`: see [`after_success_limited`].
#[allow(clippy::too_many_arguments)]
async fn run<P: Provider>(
    store: &Store,
    provider: &P,
    spec: &DefinitionSpec,
    target: &Target,
    intent: &Intent,
    now: DateTime<Utc>,
    mode: Mode,
    made: Option<&str>,
) -> Result<PruneReport, PruneError> {
    let id = &spec.identity;
    let rows = store
        .snapshot_records_on(&id.provider, &id.target, id.disk_id)
        .await?;
    let records = StoreRecords::of(id, &rows);
    // Deletions asked for earlier whose answer never came: the reason each
    // was asked for.
    let requested: HashMap<String, String> = rows
        .into_iter()
        .filter(|r| r.identity == *id && r.state == RecordState::Present)
        .filter_map(|r| r.delete_reason.map(|reason| (r.snapshot, reason)))
        .collect();
    let ListedPlan {
        classification,
        decisions,
    } = listing(provider, target, id.disk_id, made)
    .await
    .map(|listing| retention::plan_listing(&listing, &records, &id.name, intent, now))
    .map_err(|source| {
        tracing::warn!(definition = %id.name, provider = %id.provider, target = %id.target, disk = id.disk_id, error = %source, "listing failed; nothing pruned");
        PruneError::Listing {
            target: target.to_string(),
            disk_id: id.disk_id,
            source,
        }
    })?;

    let mut report = PruneReport {
        definition: id.clone(),
        dry_run: mode == Mode::DryRun,
        decisions,
        deletions: Vec::new(),
        adopted: classification.adopted().cloned().collect(),
        gone: classification.missing,
        reappeared: classification.reappeared,
    };
    if mode == Mode::DryRun {
        return Ok(report);
    }
    let planned = report.planned_deletions();
    if let Mode::Guarded(limit) = mode {
        if limit > 0 && planned > limit as usize {
            tracing::warn!(
                definition = %id.name, provider = %id.provider, target = %id.target, disk = id.disk_id,
                planned,
                limit,
                "prune blocked: the plan deletes more than max_deletes_per_run; nothing deleted"
            );
            return Err(PruneError::Blocked {
                name: id.name.clone(),
                planned,
                limit,
            });
        }
    }

    sync_store(store, id, &report, &requested, now).await?;
    for d in report
        .decisions
        .iter()
        .filter(|d| !d.keep && d.ownership.is_owned())
    {
        store
            .request_deletion(id, &d.snapshot.name, &join_reasons(&d.reasons))
            .await?;
    }
    report.deletions = execute(provider, target, id.disk_id, &report.decisions).await;
    record_deletions(store, id, &report.deletions, now).await?;
    publish_owned_count(store, id).await;
    Ok(report)
}

/// List (`target`, `disk_id`) and plan `intent` for `definition` from the
/// listing. A listing error is returned as is and yields no plan at all:
/// the provider contract makes a listing that stopped part-way an error, so
/// nothing is ever planned from an incomplete view.
pub async fn list_and_plan<P: Provider>(
    provider: &P,
    target: &Target,
    disk_id: u32,
    store: &StoreRecords,
    definition: &str,
    intent: &Intent,
    now: DateTime<Utc>,
) -> ProviderResult<ListedPlan> {
    let listing = listing(provider, target, disk_id, None).await?;
    Ok(retention::plan_listing(
        &listing, store, definition, intent, now,
    ))
}

/// The disk's complete listing: the one the provider read moments ago while
/// finishing the create of `made` when it has it (fresh, listing `made`),
/// else a new one.
async fn listing<P: Provider>(
    provider: &P,
    target: &Target,
    disk_id: u32,
    made: Option<&str>,
) -> ProviderResult<Vec<RemoteSnapshot>> {
    if let Some(fresh) = made.and_then(|m| provider.fresh_listing(target, disk_id, m)) {
        return Ok(fresh);
    }
    provider.list_snapshots(target, disk_id).await
}

/// Set the definition's snapshot gauge from the store, which the listing
/// and the deletions just brought in line with the provider. A failure
/// only leaves the gauge stale until the next refresh, so it is logged.
async fn publish_owned_count(store: &Store, id: &Identity) {
    match store.owned_count(id).await {
        Ok(n) => metrics::snapshot_count(id, n),
        Err(e) => {
            tracing::warn!(definition = %id.name, provider = %id.provider, target = %id.target, disk = id.disk_id, "cannot count owned snapshots: {e}")
        }
    }
}

/// What the store knows about the names on the definition's disk: its own
/// live and gone records, and every other definition's names there.
pub async fn store_records(store: &Store, id: &Identity) -> Result<StoreRecords, StoreError> {
    let records = store
        .snapshot_records_on(&id.provider, &id.target, id.disk_id)
        .await?;
    Ok(StoreRecords::of(id, &records))
}

/// Record adoptions, snapshots gone and snapshots back, before deleting, so
/// that a deletion of an adopted snapshot has a row to mark.
async fn sync_store(
    store: &Store,
    id: &Identity,
    report: &PruneReport,
    requested: &HashMap<String, String>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for snap in &report.adopted {
        store.record_snapshot(id, snap, None, true, now).await?;
        tracing::info!(
            definition = %id.name, provider = %id.provider, target = %id.target, disk = id.disk_id, snapshot = %snap.name, snapshot_id = %snap.id,
            "adopted snapshot: no record in the store, name matches the definition"
        );
    }
    for name in &report.gone {
        if let Some(reason) = requested.get(name) {
            // Our own deletion, whose answer was lost (or that failed at
            // first and went through after all): ours, with its reason.
            store
                .mark_snapshot(id, name, RecordState::Deleted, Some(reason), now)
                .await?;
            tracing::info!(
                definition = %id.name, provider = %id.provider, target = %id.target, disk = id.disk_id, snapshot = %name, reason = %reason,
                "snapshot whose deletion was asked for is no longer listed; recorded deleted"
            );
            metrics::snapshot_pruned(id);
            continue;
        }
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
            definition = %id.name, provider = %id.provider, target = %id.target, disk = id.disk_id, snapshot = %name,
            "recorded snapshot no longer listed by the provider (deleted by hand?); marked gone"
        );
    }
    // A deletion asked for earlier that did not happen (the snapshot is
    // still listed): forget it, so that a later disappearance is not taken
    // for ours unless it is asked for again.
    let gone: HashSet<&String> = report.gone.iter().collect();
    for name in requested.keys().filter(|n| !gone.contains(n)) {
        store.clear_deletion_request(id, name).await?;
    }
    for name in &report.reappeared {
        store.mark_snapshot_present(id, name).await?;
        tracing::info!(
            definition = %id.name, provider = %id.provider, target = %id.target, disk = id.disk_id, snapshot = %name,
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
        let reason = join_reasons(&d.reasons);
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
            definition = %id.name, provider = %id.provider, target = %id.target, disk = id.disk_id, snapshot = %d.snapshot.name, reason = %reason,
            "pruned snapshot recorded"
        );
        metrics::snapshot_pruned(id);
    }
    Ok(())
}
