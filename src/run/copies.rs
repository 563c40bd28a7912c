//! The copy step of a run: once the snapshot is recorded, copy it to the
//! definition's `copy_regions` (DigitalOcean: image transfer actions), then
//! prune. It runs in the `pruning` state, before the prune, and is driven
//! from the store's `snapshot_copies` rows, so it resumes after a crash:
//!
//! - a row is written `sending` before its request and `copying` with the
//!   operation id once the provider accepted it; a resumed run polls a
//!   `copying` operation, and for a `sending` row asks the provider to look
//!   for a transfer under way (or the snapshot already in the region)
//!   before it sends one (`CopyRequest::may_exist`), so a region never
//!   gets a second transfer while one is in flight;
//! - `done` and `failed` rows are left alone.
//!
//! Transfers to every region are started together and polled together
//! (one page of `GET /v2/actions` serves them when many are in flight).
//! A transient request error is retried with backoff; a copy that ended
//! without the snapshot in the region (an errored action) is sent again,
//! up to [`COPY_ATTEMPTS`] attempts in all; a permanent refusal (unknown
//! region) fails that region at once. A region that failed does not fail
//! the run: the snapshot exists. The run succeeds with error class
//! `copy_failed` naming each failed region, `check` reports it and
//! `snapsched_copy_failed` is 1 for the region until a later snapshot's
//! copy to it succeeds.

use crate::domain::{CopyState, Run, SnapshotCopy};
use crate::provider::{CopyPoll, CopyRequest, CopyStart, Operation, Provider};
use crate::store::StoreError;
use crate::telemetry::metrics;

use super::{later, Runner};

/// Attempts per region: a transfer that ends without the snapshot in the
/// region is sent again until this many were made.
pub const COPY_ATTEMPTS: u32 = 3;

/// The error class of a run whose snapshot could not be copied to every
/// region.
pub const COPY_FAILED: &str = "copy_failed";

/// How the copies of a run's snapshot ended.
#[derive(Debug, Default)]
pub(super) struct CopiesEnd {
    /// `region: why`, for every region whose copy failed.
    pub failed: Vec<String>,
    /// Shutdown came first: the run is suspended with its rows as they are.
    pub suspended: bool,
}

impl<P: Provider> Runner<'_, P> {
    /// Copy the run's snapshot to the definition's regions (and finish the
    /// copies a previous owner of the run started).
    pub(super) async fn copies(&self, run: &Run) -> Result<CopiesEnd, StoreError> {
        let id = &self.spec.identity;
        let (Some(name), Some(remote_id)) = (run.snapshot_name.clone(), run.snapshot_id.clone())
        else {
            return Ok(CopiesEnd::default());
        };
        let mut rows = self.store.copies_of(id, &name).await?;
        if rows.is_empty() && self.spec.copy_regions.is_empty() {
            return Ok(CopiesEnd::default());
        }
        // A `sending` row from an earlier process may have reached the
        // provider.
        let mut may_exist: Vec<bool> = rows.iter().map(|r| r.state == CopyState::Sending).collect();
        for region in &self.spec.copy_regions {
            if !rows.iter().any(|r| &r.region == region) {
                rows.push(SnapshotCopy {
                    identity: id.clone(),
                    snapshot: name.clone(),
                    remote_id: remote_id.clone(),
                    region: region.clone(),
                    run_id: Some(run.id),
                    state: CopyState::Sending,
                    operation_id: None,
                    attempts: 0,
                    error: None,
                    updated_at: self.clock.now(),
                });
                may_exist.push(false);
            }
        }
        let policy = self.provider.poll_policy();
        let give_up = later(self.clock.now(), policy.timeout).min(self.deadline(run));
        let mut interval = policy.initial;
        let mut transient = 0u32;
        loop {
            self.check_lease(run)?;
            // Send what is to be sent.
            for (i, row) in rows.iter_mut().enumerate() {
                if row.state != CopyState::Sending {
                    continue;
                }
                row.attempts += 1;
                row.run_id = Some(run.id);
                row.updated_at = self.clock.now();
                self.store.save_copy(row).await?;
                let req = CopyRequest {
                    target: self.target.clone(),
                    snapshot_id: remote_id.clone(),
                    region: row.region.clone(),
                    may_exist: may_exist[i] || row.attempts > 1,
                };
                may_exist[i] = true;
                match self.bounded(run, self.provider.start_copy(&req)).await {
                    Ok(CopyStart::Started(op)) => {
                        row.state = CopyState::Copying;
                        row.operation_id = Some(op.id);
                    }
                    Ok(CopyStart::AlreadyThere) => row.state = CopyState::Done,
                    Err(e) if e.is_transient() => {
                        // Not an attempt: the request may not have arrived.
                        row.attempts -= 1;
                        row.error = Some(e.message.clone());
                        transient += 1;
                        tracing::warn!(definition = %id.name, provider = %id.provider, target = %id.target, disk = id.disk_id, region = %row.region, "transient error starting the copy: {e}");
                    }
                    Err(e) => {
                        row.state = CopyState::Failed;
                        row.error = Some(e.message.clone());
                    }
                }
                row.updated_at = self.clock.now();
                self.store.save_copy(row).await?;
            }
            let open = rows.iter().any(|r| r.state.is_open());
            if !open {
                break;
            }
            if self.clock.now() >= give_up {
                for row in rows.iter_mut().filter(|r| r.state.is_open()) {
                    row.state = CopyState::Failed;
                    row.error = Some(format!(
                        "the copy did not finish within the provider's poll timeout {} or run_timeout {}",
                        humantime::format_duration(policy.timeout),
                        humantime::format_duration(self.options.run_timeout)
                    ));
                    row.updated_at = self.clock.now();
                    self.store.save_copy(row).await?;
                }
                break;
            }
            let left = (give_up - self.clock.now()).to_std().unwrap_or_default();
            let nap = if rows.iter().any(|r| r.state == CopyState::Sending) {
                self.backoff(transient.saturating_sub(1), None)
            } else {
                interval
            };
            if !self.pause(nap.min(left)).await {
                return Ok(CopiesEnd {
                    failed: Vec::new(),
                    suspended: true,
                });
            }
            interval = (interval * 2).min(policy.max);
            // Poll what is under way.
            for row in rows.iter_mut() {
                let (CopyState::Copying, Some(op)) = (row.state, row.operation_id.clone()) else {
                    continue;
                };
                let req = CopyRequest {
                    target: self.target.clone(),
                    snapshot_id: remote_id.clone(),
                    region: row.region.clone(),
                    may_exist: true,
                };
                let polled = self
                    .bounded(run, self.provider.poll_copy(&req, &Operation { id: op }))
                    .await;
                let before = row.state;
                match polled {
                    Ok(CopyPoll::Pending) => {}
                    Ok(CopyPoll::Done) => {
                        row.state = CopyState::Done;
                        row.error = None;
                    }
                    Ok(CopyPoll::Failed(why)) if row.attempts < COPY_ATTEMPTS => {
                        tracing::warn!(definition = %id.name, provider = %id.provider, target = %id.target, disk = id.disk_id, region = %row.region, attempt = row.attempts, "copy failed, sending it again: {why}");
                        row.state = CopyState::Sending;
                        row.operation_id = None;
                        row.error = Some(why);
                    }
                    Ok(CopyPoll::Failed(why)) => {
                        row.state = CopyState::Failed;
                        row.error = Some(why);
                    }
                    Err(e) if e.is_transient() => {
                        tracing::warn!(definition = %id.name, provider = %id.provider, target = %id.target, disk = id.disk_id, region = %row.region, "transient error polling the copy: {e}");
                    }
                    Err(e) => {
                        row.state = CopyState::Failed;
                        row.error = Some(e.message.clone());
                    }
                }
                if row.state != before {
                    row.updated_at = self.clock.now();
                    self.store.save_copy(row).await?;
                }
            }
        }
        let mut failed = Vec::new();
        for row in &rows {
            let ok = row.state == CopyState::Done;
            metrics::copy_finished(id, &row.region, ok);
            if !ok {
                let why = row.error.as_deref().unwrap_or("failed");
                tracing::warn!(definition = %id.name, provider = %id.provider, target = %id.target, disk = id.disk_id, region = %row.region, class = COPY_FAILED, attempts = row.attempts, "copy of {name} to {} failed: {why}", row.region);
                failed.push(format!("{}: {why}", row.region));
            }
        }
        match self
            .bounded(
                run,
                self.provider.snapshot_regions(&self.target, &remote_id),
            )
            .await
        {
            Ok(regions) => self.store.set_snapshot_regions(id, &name, &regions).await?,
            Err(e) => {
                tracing::warn!(definition = %id.name, provider = %id.provider, target = %id.target, disk = id.disk_id, "cannot read the regions of {name}: {e}")
            }
        }
        Ok(CopiesEnd {
            failed,
            suspended: false,
        })
    }
}

/// The run's message for copies that failed.
pub(super) fn failed_message(failed: &[String]) -> String {
    format!("snapshot made; copy failed to {}", failed.join("; "))
}
