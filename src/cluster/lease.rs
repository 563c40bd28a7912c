//! A node's lease as the node itself sees it.
//!
//! The store decides expiry with its own clock: another node may take this
//! node's runs once its heartbeat is older than `ttl` by the database's
//! clock. Locally the node cannot read that clock, so it counts
//! conservatively on its monotonic clock: a renewal that was *sent* at `t`
//! keeps the lease until `t + ttl - margin`. A pause (SIGSTOP, a stalled VM)
//! moves the monotonic clock on, so a node that wakes up past its lease knows
//! it before it touches a provider, and stops acting until a renewal
//! succeeds or the store tells it that its runs were taken over.

use std::time::Duration;

use std::time::Instant;

/// The local view of this node's lease.
#[derive(Debug, Clone)]
pub struct Lease {
    ttl: Duration,
    margin: Duration,
    valid_until: Option<Instant>,
    /// Which membership of this process the lease belongs to: one more
    /// each time the store said it was lost (the node joins again under a
    /// new id, and runs of the old one must not act on its new lease).
    generation: u64,
}

impl Lease {
    /// A lease of `ttl`, trusted locally until `margin` before it ends.
    pub fn new(ttl: Duration, margin: Duration) -> Self {
        Lease {
            ttl,
            margin: margin.min(ttl / 2),
            valid_until: None,
            generation: 0,
        }
    }

    /// A renewal sent at `sent` succeeded.
    pub fn renewed(&mut self, sent: Instant) {
        let until = sent + self.ttl - self.margin;
        self.valid_until = Some(self.valid_until.map_or(until, |u| u.max(until)));
    }

    /// The store said this node's lease is gone (its runs were taken over).
    pub fn lost(&mut self) {
        self.valid_until = None;
        self.generation += 1;
    }

    /// The membership this lease belongs to (see the field).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether this node may still act at `now`.
    pub fn valid_at(&self, now: Instant) -> bool {
        self.valid_until.is_some_and(|u| now < u)
    }

    /// How long the lease holds from `now` (zero when it does not).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.valid_until
            .map_or(Duration::ZERO, |u| u.saturating_duration_since(now))
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_holds_from_the_send_until_the_margin_before_its_end() {
        let mut lease = Lease::new(Duration::from_secs(30), Duration::from_secs(5));
        let t0 = Instant::now();
        assert!(!lease.valid_at(t0), "no lease before the first renewal");
        lease.renewed(t0);
        assert!(lease.valid_at(t0 + Duration::from_secs(24)));
        assert!(!lease.valid_at(t0 + Duration::from_secs(25)));
        assert_eq!(
            lease.remaining(t0 + Duration::from_secs(20)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn an_older_renewal_answered_late_does_not_shorten_the_lease() {
        let mut lease = Lease::new(Duration::from_secs(30), Duration::from_secs(5));
        let t0 = Instant::now();
        lease.renewed(t0 + Duration::from_secs(10));
        lease.renewed(t0);
        assert!(lease.valid_at(t0 + Duration::from_secs(34)));
    }

    #[test]
    fn a_lost_lease_is_invalid_at_once() {
        let mut lease = Lease::new(Duration::from_secs(30), Duration::from_secs(5));
        let t0 = Instant::now();
        lease.renewed(t0);
        lease.lost();
        assert!(!lease.valid_at(t0));
        assert_eq!(lease.remaining(t0), Duration::ZERO);
    }
}
