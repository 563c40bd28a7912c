//! Firing: pop every due definition off the timer queue, decide each
//! slot's fate ([`super::catch_up`]), record missed and overlapping slots,
//! and claim the rest in the store in batches, handing the claimed runs to
//! the pool, which starts them once the whole burst is claimed.
//!
//! Invariants:
//! - A slot runs at most once across restarts and processes: a run exists
//!   only once its row is inserted, and the row's unique key (identity,
//!   slot) refuses a second claim.
//! - Every popped definition is rescheduled (or left unscheduled when its
//!   schedule ends) and its slot remembered as handled, whether it ran,
//!   was missed or was skipped.
//! - A slot whose definition still has a run queued or executing is
//!   recorded `skipped`, never queued behind it.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::catch_up::{self, Lateness};
use super::launch::RunJob;
use super::Scheduler;
use crate::domain::{Claim, Identity, RunState, Trigger};
use crate::provider::Provider;
use crate::store::StoreResult;

/// Slots claimed per transaction when many are due at once: large enough
/// that commits do not dominate, small enough that the first runs of a
/// burst start without waiting for the whole burst to be written.
const CLAIM_BATCH: usize = 512;

/// A slot about to be claimed.
pub(super) struct Due {
    pub id: Arc<Identity>,
    pub slot: DateTime<Utc>,
    pub trigger: Trigger,
}

impl<P: Provider + Clone + 'static> Scheduler<P> {
    /// Fire every definition that is due now; returns how many slots were
    /// handed on to be claimed.
    pub async fn fire_due(&mut self) -> StoreResult<usize> {
        let now = self.clock.now();
        if let Some(step) = self.wall.observe(tokio::time::Instant::now(), now) {
            self.clock_stepped(step, now);
        }
        // Claims a store outage interrupted, then slots whose preferred
        // node had its grace to claim them.
        let mut due: Vec<Due> = std::mem::take(&mut self.cluster.unclaimed);
        due.extend(self.cluster.take_deferred(now));
        let grace = chrono::Duration::from_std(self.settings.claim_grace).unwrap_or_default();
        while let Some((id, at)) = self.timers.pop_due(now) {
            let Some(entry) = self.timers.get(&id) else {
                continue;
            };
            let policy = Lateness {
                catch_up_deadline: entry
                    .catch_up_deadline
                    .unwrap_or(self.settings.catch_up_deadline),
                on_time: self.settings.on_time,
                jump_back: self.settings.catch_up_deadline,
            };
            let firing = catch_up::decide(&entry.schedule, entry.zone, at, now, &policy);
            if let Some((count, last_missed)) = firing.missed {
                // Not fatal: the latest slot still runs; the record is what
                // a store outage costs here.
                if let Err(e) = self.record_missed(&id, count, last_missed, now).await {
                    tracing::warn!(definition = %id.name, provider = %id.provider, target = %id.target, disk = id.disk_id, "cannot record missed slots: {e}");
                }
            }
            self.timers.reschedule(&id, firing.next);
            self.last_slot.insert(id.clone(), firing.latest);
            if let Some(trigger) = firing.run {
                let d = Due {
                    id,
                    slot: firing.latest,
                    trigger,
                };
                due.extend(self.cluster.defer(d, now + grace));
            }
        }
        let n = due.len();
        let mut start = 0;
        let mut claimed = Ok(n);
        while start < due.len() {
            let end = (start + CLAIM_BATCH).min(due.len());
            if let Err(e) = self.dispatch(&due[start..end]).await {
                self.cluster.unclaimed = due.split_off(start);
                claimed = Err(e);
                break;
            }
            start = end;
        }
        // The burst's runs start once all of it is claimed: their writes
        // would otherwise queue before the claims still to come, and a
        // pool of `max_concurrent_runs` finishes a large burst no sooner
        // for starting its first runs a moment earlier.
        self.pool.start_queued();
        claimed
    }

    /// The wall clock moved by `step` against monotonic time. Forward, the
    /// queue's instants are simply due (catch-up decides what runs).
    /// Back, they lie up to `step` ahead: every definition's next fire is
    /// recomputed from `now`, and the handled slots remembered past `now`
    /// are forgotten, so an edit reschedules from `now` too.
    fn clock_stepped(&mut self, step: chrono::Duration, now: DateTime<Utc>) {
        let secs = step.num_seconds();
        if step > chrono::Duration::zero() {
            tracing::warn!(
                step_secs = secs,
                "the wall clock jumped forward; slots passed over are caught up or recorded missed"
            );
            return;
        }
        tracing::warn!(
            step_secs = secs,
            now = %now.to_rfc3339(),
            "the wall clock was stepped back; every next fire is recomputed from the new time (slots that already ran do not run again)"
        );
        let next: Vec<(Arc<Identity>, Option<DateTime<Utc>>)> = self
            .timers
            .iter()
            .map(|(id, entry, _)| (id.clone(), entry.schedule.next_after(now, entry.zone)))
            .collect();
        for (id, at) in next {
            self.timers.reschedule(&id, at);
        }
        self.last_slot.retain(|_, slot| *slot <= now);
    }

    /// Record `count` slots of `id` up to `last` as one `missed` row.
    async fn record_missed(
        &self,
        id: &Identity,
        count: u32,
        last: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        tracing::warn!(definition = %id.name, provider = %id.provider, target = %id.target, disk = id.disk_id, missed = count, "missed slots (not running at the time); latest missed {}", last.to_rfc3339());
        let reason = format!("{count} slots missed while snapsched was not running");
        self.store
            .record_not_run(id, last, RunState::Missed, &reason, Some(count), now)
            .await?;
        Ok(())
    }

    /// Claim a batch of due slots in one transaction and queue their runs.
    /// Each claim records its own instant: with many slots due at once,
    /// later batches are claimed measurably after the loop woke.
    async fn dispatch(&mut self, batch: &[Due]) -> StoreResult<()> {
        let mut claim = Vec::with_capacity(batch.len());
        for d in batch {
            if self.pool.is_running(&d.id) {
                tracing::warn!(definition = %d.id.name, provider = %d.id.provider, target = %d.id.target, disk = d.id.disk_id, slot = %d.slot.to_rfc3339(), "skipped: the previous run is still active");
                let reason = "overlap: the previous run is still active";
                self.record_skipped(d, reason, self.clock.now()).await?;
            } else {
                claim.push(d);
            }
        }
        if claim.is_empty() {
            return Ok(());
        }
        let slots: Vec<(&Identity, DateTime<Utc>, Trigger)> = claim
            .iter()
            .map(|d| (d.id.as_ref(), d.slot, d.trigger))
            .collect();
        let now = self.clock.now();
        let generation = self.lease_generation();
        let claims = self.store.claim_runs(&slots, now).await?;
        for (d, outcome) in claim.into_iter().zip(claims) {
            match outcome {
                // The definition is read when the run starts.
                Claim::Claimed(run) => self.pool.enqueue(RunJob {
                    run,
                    def: None,
                    generation,
                }),
                Claim::AlreadyRan => {
                    tracing::debug!(definition = %d.id.name, provider = %d.id.provider, target = %d.id.target, disk = d.id.disk_id, slot = %d.slot.to_rfc3339(), "slot already has a run");
                }
                Claim::Busy(other) => {
                    tracing::warn!(definition = %d.id.name, provider = %d.id.provider, target = %d.id.target, disk = d.id.disk_id, slot = %d.slot.to_rfc3339(), "skipped: run {} ({}) is active", other.id, other.trigger.as_str());
                    let reason = format!(
                        "overlap: run {} ({}) is still active",
                        other.id,
                        other.trigger.as_str()
                    );
                    self.record_skipped(d, &reason, now).await?;
                }
            }
        }
        Ok(())
    }

    /// Record the slot `d` as `skipped` for `reason`.
    async fn record_skipped(&self, d: &Due, reason: &str, now: DateTime<Utc>) -> StoreResult<()> {
        self.store
            .record_not_run(&d.id, d.slot, RunState::Skipped, reason, None, now)
            .await?;
        Ok(())
    }
}
