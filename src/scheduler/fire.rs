//! Firing: pop every due definition off the timer queue, decide each
//! slot's fate ([`super::catch_up`]), record missed and overlapping slots,
//! and claim the rest in the store in batches, handing the claimed runs to
//! the pool, which starts them once the whole burst is claimed. Batches
//! are pipelined: each is claimed in a task of its own, up to
//! [`CLAIMS_IN_FLIGHT`] at once, while the next is popped and the runs of
//! the ones claimed are queued.
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
//! - No claim outlives the firing that started it: `fire_due` returns once
//!   every batch it handed on has been claimed (or has failed and is kept
//!   to retry), also after a failure, and dropping it aborts the claims in
//!   flight, whose transactions are then rolled back.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_util::task::AbortOnDropHandle;

use super::catch_up::{self, Lateness};
use super::launch::RunJob;
use super::Scheduler;
use crate::domain::{Claim, Identity, RunState, Trigger};
use crate::provider::Provider;
use crate::store::{StoreError, StoreResult};

/// Slots claimed per transaction when many are due at once (the default
/// of [`super::Settings::claim_batch`]): large enough that the round trips
/// and commits around each claim do not dominate a burst. A burst's runs
/// start only once all of it is claimed, so a larger batch delays no run.
pub(super) const CLAIM_BATCH: usize = 2048;

/// Claims of one burst in the store at once. With two, the next claim
/// waits for the store's writer while the one before it writes, instead of
/// being started only once that one has returned; on SQLite the two share
/// a commit (the writer's group commit).
const CLAIMS_IN_FLIGHT: usize = 2;

/// A slot about to be claimed.
pub(super) struct Due {
    pub id: Arc<Identity>,
    pub slot: DateTime<Utc>,
    pub trigger: Trigger,
}

/// A batch of slots being claimed by a task of its own while the
/// scheduler pops the next batch: the claim waits on the store (SQLite's
/// thread, or the server) and popping on the CPU, so the two overlap.
/// Dropped (the scheduler stopping mid-burst), the task is aborted and its
/// transaction rolled back, as an awaited claim would be. A failed claim
/// answers its batch back with the error.
type Claiming = AbortOnDropHandle<Result<Claimed, (Vec<Due>, StoreError)>>;

/// A batch whose claim returned.
struct Claimed {
    batch: Vec<Due>,
    claims: Vec<Claim>,
    /// When the claim was made: the instant its skipped slots record.
    at: DateTime<Utc>,
    /// The lease generation its runs act under.
    generation: Option<u64>,
}

impl<P: Provider + Clone + 'static> Scheduler<P> {
    /// Fire every definition that is due now; returns how many slots were
    /// handed on to be claimed.
    ///
    /// A burst is claimed in batches of [`super::Settings::claim_batch`],
    /// pipelined: while [`CLAIMS_IN_FLIGHT`] batches are in the store, the
    /// next is popped off the timer queue, and the oldest claim's runs are
    /// queued in the pool as soon as it returns. After a failure no claim is started,
    /// and those in flight are still awaited: the runs of each that
    /// succeeded are queued, each that failed is kept to retry.
    pub async fn fire_due(&mut self) -> StoreResult<usize> {
        let now = self.clock.now();
        if let Some(step) = self.wall.observe(tokio::time::Instant::now(), now) {
            self.clock_stepped(step, now);
        }
        // Claims a store outage interrupted, then slots whose preferred
        // node had its grace to claim them.
        let mut due: VecDeque<Due> = std::mem::take(&mut self.cluster.unclaimed).into();
        due.extend(self.cluster.take_deferred(now));
        let grace = chrono::Duration::from_std(self.settings.claim_grace).unwrap_or_default();
        let batch_size = self.settings.claim_batch.max(1);
        let mut more = true;
        let mut handed = 0;
        let mut in_flight: VecDeque<Claiming> = VecDeque::with_capacity(CLAIMS_IN_FLIGHT);
        let mut failed: Option<StoreError> = None;
        loop {
            // Start claims until CLAIMS_IN_FLIGHT are in the store, popping
            // a batch for each; none after a failure.
            while failed.is_none() && in_flight.len() < CLAIMS_IN_FLIGHT {
                while more && due.len() < batch_size {
                    more = self.pop_due(now, now + grace, &mut due).await;
                }
                if due.is_empty() {
                    break;
                }
                let batch: Vec<Due> = due.drain(..due.len().min(batch_size)).collect();
                handed += batch.len();
                match self.start_claim(batch).await {
                    Ok(claiming) => in_flight.extend(claiming),
                    Err((batch, e)) => {
                        self.cluster.unclaimed.extend(batch);
                        failed = Some(e);
                    }
                }
            }
            // Then take the oldest claim's answer.
            let Some(task) = in_flight.pop_front() else {
                break;
            };
            match task.await {
                Ok(Ok(done)) => self.queue_claimed(done).await,
                // Tried again next turn.
                Ok(Err((batch, e))) => {
                    self.cluster.unclaimed.extend(batch);
                    failed.get_or_insert(e);
                }
                Err(e) => match e.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    // Only the runtime shutting down cancels it.
                    Err(e) => {
                        failed.get_or_insert(StoreError::Uncommitted(format!("claim: {e}")));
                    }
                },
            }
        }
        // After a failure, the slots popped but not claimed are tried again
        // next turn; those not yet popped are still due in the timer queue.
        let outcome = match failed {
            None => Ok(handed),
            Some(e) => {
                self.cluster.unclaimed.extend(due);
                Err(e)
            }
        };
        // The burst's runs start once all of it is claimed: their writes
        // would otherwise queue before the claims still to come, and a
        // pool of `max_concurrent_runs` finishes a large burst no sooner
        // for starting its first runs a moment earlier.
        self.pool.start_queued();
        outcome
    }

    /// Pop one due definition off the timer queue: reschedule it, remember
    /// its slot as handled, record the slots it missed, and add the slot
    /// to run (if any) to `due`, or defer it to its preferred node (until
    /// `defer_until`, when it missed claiming it). False when nothing more
    /// is due at `now`.
    async fn pop_due(
        &mut self,
        now: DateTime<Utc>,
        defer_until: DateTime<Utc>,
        due: &mut VecDeque<Due>,
    ) -> bool {
        let Some((id, at)) = self.timers.pop_due(now) else {
            return false;
        };
        let Some(entry) = self.timers.get(&id) else {
            return true;
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
            due.extend(self.cluster.defer(d, defer_until));
        }
        true
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

    /// Start claiming `batch` in one transaction, in a task of its own;
    /// `None` when every slot was skipped because its definition still has
    /// a run in the pool. On an error (recording a skip) nothing of the
    /// batch is claimed, and it comes back. Each claim records its own
    /// instant: with many slots due at once, later batches are claimed
    /// measurably after the loop woke.
    async fn start_claim(
        &mut self,
        batch: Vec<Due>,
    ) -> Result<Option<Claiming>, (Vec<Due>, StoreError)> {
        let mut claim = Vec::with_capacity(batch.len());
        let mut batch = batch.into_iter();
        while let Some(d) = batch.next() {
            if self.pool.is_running(&d.id) {
                tracing::warn!(definition = %d.id.name, provider = %d.id.provider, target = %d.id.target, disk = d.id.disk_id, slot = %d.slot.to_rfc3339(), "skipped: the previous run is still active");
                let reason = "overlap: the previous run is still active";
                if let Err(e) = self.record_skipped(&d, reason, self.clock.now()).await {
                    claim.push(d);
                    claim.extend(batch);
                    return Err((claim, e));
                }
                continue;
            }
            claim.push(d);
        }
        if claim.is_empty() {
            return Ok(None);
        }
        let store = self.store.clone();
        let clock = self.clock;
        let generation = self.lease_generation();
        let task = tokio::spawn(async move {
            let slots: Vec<(&Identity, DateTime<Utc>, Trigger)> = claim
                .iter()
                .map(|d| (d.id.as_ref(), d.slot, d.trigger))
                .collect();
            match store.claim_runs_now(&slots, clock).await {
                Ok((claims, at)) => Ok(Claimed {
                    batch: claim,
                    claims,
                    at,
                    generation,
                }),
                Err(e) => Err((claim, e)),
            }
        });
        Ok(Some(AbortOnDropHandle::new(task)))
    }

    /// Queue the runs a batch claimed, and record the slots it found busy
    /// as skipped. A skip that cannot be recorded is claimed again next
    /// turn (and recorded then if the definition is still busy).
    async fn queue_claimed(&mut self, done: Claimed) {
        let Claimed {
            batch,
            claims,
            at,
            generation,
        } = done;
        for (d, outcome) in batch.into_iter().zip(claims) {
            match outcome {
                // The definition is read when the run starts.
                Claim::Claimed(run) => self.pool.enqueue(RunJob {
                    run: Box::new(run),
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
                    if let Err(e) = self.record_skipped(&d, &reason, at).await {
                        tracing::warn!(definition = %d.id.name, provider = %d.id.provider, target = %d.id.target, disk = d.id.disk_id, "cannot record the skipped slot, tried again next turn: {e}");
                        self.cluster.unclaimed.push(d);
                    }
                }
            }
        }
    }

    /// Record the slot `d` as `skipped` for `reason`.
    async fn record_skipped(&self, d: &Due, reason: &str, now: DateTime<Utc>) -> StoreResult<()> {
        self.store
            .record_not_run(&d.id, d.slot, RunState::Skipped, reason, None, now)
            .await?;
        Ok(())
    }
}
