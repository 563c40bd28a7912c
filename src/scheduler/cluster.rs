//! The scheduler as one node of several: membership upkeep, placement of
//! slots over the live daemons, and riding out store outages.
//!
//! Invariants:
//! - Every node schedules every definition; the unique (identity, slot) row
//!   still decides who runs a slot. Placement only orders the attempts: the
//!   definition's preferred node (rendezvous hash over the live daemons)
//!   claims at the slot, the others `claim_grace` later, when a claim by a
//!   live preferred node makes theirs a no-op.
//! - Membership is renewed every third of the lease; each renewal also
//!   expires dead nodes and takes over orphaned runs.
//! - A claim that failed because the store could not be reached is kept
//!   and retried, so an outage delays a slot instead of losing it.

use std::time::Duration;

/// How long a stopping node tries to record its departure.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

use chrono::{DateTime, Utc};
use std::time::Instant;

use super::fire::Due;
use super::Scheduler;
use crate::cluster::{placement, Membership, Renewal};
use crate::domain::{NodeRole, Trigger};
use crate::provider::Provider;
use crate::store::{StoreError, StoreResult};

/// The scheduler's cluster bookkeeping.
#[derive(Default)]
pub(super) struct ClusterState {
    pub membership: Option<Membership>,
    next_renewal: Option<Instant>,
    /// Live daemons as of the last renewal, this one included.
    live: Vec<String>,
    /// Slots another node is preferred for, with when to claim them anyway.
    pub deferred: Vec<(DateTime<Utc>, Due)>,
    /// Slots whose claim failed on a store error, to claim next turn.
    pub unclaimed: Vec<Due>,
    /// Whether the store holds budget waits of this node (so an empty
    /// list needs writing once, not at every renewal).
    budget_waits_recorded: bool,
}

impl ClusterState {
    pub fn renewal_due(&self) -> bool {
        self.next_renewal.is_none_or(|at| Instant::now() >= at)
    }

    pub fn renewal_in(&self) -> Duration {
        self.next_renewal.map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(Instant::now())
        })
    }

    pub fn next_deferred(&self) -> Option<DateTime<Utc>> {
        self.deferred.iter().map(|(at, _)| *at).min()
    }

    /// The deferred slots whose grace has passed.
    pub fn take_deferred(&mut self, now: DateTime<Utc>) -> Vec<Due> {
        let (ready, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.deferred = wait;
        ready.into_iter().map(|(_, d)| d).collect()
    }

    /// Whether another live daemon should claim `due` first; if so it is
    /// kept until `at`.
    pub fn defer(&mut self, due: Due, at: DateTime<Utc>) -> Option<Due> {
        let me = self.membership.as_ref().map(Membership::id);
        let manual = due.trigger == Trigger::Manual;
        if self.live.len() < 2 || manual || me.is_none() {
            return Some(due);
        }
        if placement::preferred(&due.id.hash_key(), &self.live) == me {
            return Some(due);
        }
        self.deferred.push((at, due));
        None
    }
}

/// Backoff while the store cannot be reached.
#[derive(Default)]
pub(super) struct Outage {
    failures: u32,
    /// The latest failure's message, while failing.
    error: Option<String>,
}

impl Outage {
    pub fn failed(&mut self, e: &StoreError) {
        self.failures = self.failures.saturating_add(1);
        self.error = Some(e.to_string());
        if self.failures == 1 {
            tracing::error!(
                "store unavailable: {e}; retrying, runs and claims resume when it is back"
            );
        } else {
            tracing::warn!(attempt = self.failures, "store still unavailable: {e}");
        }
    }

    pub fn ended(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "store available again");
        }
        self.failures = 0;
        self.error = None;
    }

    /// Why the store is failing, while it is.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// How long to wait before the next turn, given what the loop wants
    /// (`wake`): that while the store answers; during an outage the
    /// backoff (0.5 s doubling to 10 s) and nothing shorter, however
    /// overdue the queue is (a due slot that cannot be claimed must not
    /// turn the loop into a spin, thousands of retries a second, on a full
    /// disk).
    pub fn wait(&self, wake: Duration) -> Duration {
        match self.failures {
            0 => wake,
            n => Duration::from_millis(500u64 << (n - 1).min(5)).min(Duration::from_secs(10)),
        }
    }
}

impl<P: Provider + Clone + 'static> Scheduler<P> {
    /// Join the store as a daemon node (once).
    pub(super) async fn join(&mut self) -> StoreResult<()> {
        if self.cluster.membership.is_none() {
            let m =
                Membership::join(&self.store, NodeRole::Daemon, self.settings.lease_ttl).await?;
            self.pool.launcher_mut().lease = Some(m.lease());
            self.cluster.membership = Some(m);
        }
        Ok(())
    }

    /// Renew the lease, expire dead nodes, refresh the live list and take
    /// over orphaned runs.
    pub(super) async fn maintain_membership(&mut self) -> StoreResult<()> {
        let Some(m) = self.cluster.membership.as_mut() else {
            return Ok(());
        };
        let every = m.renew_every();
        if m.renew().await? == Renewal::Rejoined {
            // Our runs were taken over: their tasks' writes are fenced and
            // they end on their own.
            self.status.mark_dirty();
        }
        m.sweep().await?;
        // Which providers' requests the request budget holds back, for
        // `snapsched status` (its log line and metrics are this
        // process's own).
        let waits = crate::provider::ratelimit::held_back();
        if !waits.is_empty() || self.cluster.budget_waits_recorded {
            self.store.record_budget_waits(m.id(), &waits).await?;
            self.cluster.budget_waits_recorded = !waits.is_empty();
        }
        self.cluster.live = m.live_daemons().await?;
        self.cluster.next_renewal = Some(Instant::now() + every);
        self.take_over_orphans().await?;
        Ok(())
    }

    /// The generation of this node's lease now (`None` outside a cluster
    /// membership): what a run claimed or taken over now is pinned to.
    pub(super) fn lease_generation(&self) -> Option<u64> {
        self.cluster
            .membership
            .as_ref()
            .and_then(|m| m.lease().pinned().generation())
    }

    /// Whether this node may claim now: outside a membership always; as a
    /// member only while its lease holds. A node that wakes from a pause
    /// past its lease must renew (or join again) before it claims a slot,
    /// or it would claim under an id the others already declared expired.
    pub(super) fn may_claim(&self) -> bool {
        self.cluster
            .membership
            .as_ref()
            .is_none_or(|m| m.lease().holds())
    }

    /// Leave the store cleanly at shutdown.
    pub(super) async fn leave(&mut self) {
        if let Some(m) = self.cluster.membership.take() {
            // Bounded: a store that does not answer must not hold the exit
            // up; the lease then expires instead.
            match tokio::time::timeout(LEAVE_TIMEOUT, m.leave()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("could not record this node's departure: {e}"),
                Err(_) => tracing::warn!(
                    "could not record this node's departure within {}s; its lease expires instead",
                    LEAVE_TIMEOUT.as_secs()
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_backs_off_even_with_slots_overdue() {
        let mut o = Outage::default();
        assert_eq!(o.wait(Duration::ZERO), Duration::ZERO, "healthy: as asked");
        let e = StoreError::Corrupt("database or disk is full".into());
        let mut waits = Vec::new();
        for _ in 0..8 {
            o.failed(&e);
            waits.push(o.wait(Duration::ZERO).as_millis());
        }
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 10000, 10000, 10000]);
        o.ended();
        assert_eq!(o.wait(Duration::from_secs(3)), Duration::from_secs(3));
    }
}
