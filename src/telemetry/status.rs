//! What the daemon tells its observers: the scheduler's summary
//! ([`Status`]), handed to a [`Tick`] hook on every loop turn, and the
//! lifecycle [`Hooks`] (ready, reloading, stopping).
//!
//! Invariants: hooks are called from the scheduler loop or the daemon's
//! own task, so they must return quickly and never block (sd_notify sends
//! are non-blocking, metrics are in-memory); a hook cannot fail the daemon.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::Identity;

/// A summary of the scheduler for sd_notify `STATUS=`, metrics and health.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub definitions: usize,
    pub in_flight: usize,
    pub next_fire: Option<(DateTime<Utc>, Arc<Identity>)>,
    /// Every scheduled definition's next fire (for per-definition gauges).
    pub next_fires: Vec<(Arc<Identity>, DateTime<Utc>)>,
    /// Changes whenever `definitions`, `next_fire` or `next_fires` may have
    /// changed (`in_flight` is refreshed on every tick without it), so an
    /// observer doing per-definition work can skip an unchanged summary.
    pub revision: u64,
    /// Provider requests held back by the client-side request budget now
    /// (refreshed on every tick, like `in_flight`).
    pub budget_waiting: usize,
    /// Why the loop's latest turn could not use the store (a write refused
    /// on a full disk, a server gone), while that lasts (refreshed on every
    /// tick, like `in_flight`).
    pub store_error: Option<String>,
}

impl Status {
    pub fn line(&self) -> String {
        let mut line = self.schedule_line();
        if self.budget_waiting > 0 {
            line = format!(
                "{line}; {} requests waiting for the API request budget",
                self.budget_waiting
            );
        }
        if let Some(e) = &self.store_error {
            line = format!("store failing, retrying: {e}; {line}");
        }
        line
    }

    fn schedule_line(&self) -> String {
        match &self.next_fire {
            Some((at, id)) => format!(
                "{} definitions, {} runs in flight, next {} at {}",
                self.definitions,
                self.in_flight,
                id.name,
                at.to_rfc3339()
            ),
            None => format!(
                "{} definitions, {} runs in flight, nothing scheduled",
                self.definitions, self.in_flight
            ),
        }
    }
}

/// An observer called from the scheduler loop itself (watchdog, status
/// line, metrics): a loop that hangs stops calling it.
pub type Tick = Arc<dyn Fn(&Status) + Send + Sync>;

/// Told the daemon's store once it is open.
pub type StoreOpened = Arc<dyn Fn(&crate::store::Store) + Send + Sync>;

/// Hooks the daemon calls so the service manager (and the metrics
/// endpoint) can follow it.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Called with the store as soon as it is open (health checks ping it).
    pub store_opened: Option<StoreOpened>,
    /// Called once the store is open, the config valid and the scheduler started.
    pub ready: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Called from the scheduler loop on every iteration.
    pub tick: Option<Tick>,
    /// Called around a reload (`true` before, `false` after).
    pub reloading: Option<Arc<dyn Fn(bool) + Send + Sync>>,
    /// Called when shutdown begins.
    pub stopping: Option<Arc<dyn Fn() + Send + Sync>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_leads_with_a_failing_store() {
        let mut status = Status {
            definitions: 2,
            ..Status::default()
        };
        assert_eq!(
            status.line(),
            "2 definitions, 0 runs in flight, nothing scheduled"
        );
        status.store_error = Some("database or disk is full".into());
        assert_eq!(
            status.line(),
            "store failing, retrying: database or disk is full; 2 definitions, 0 runs in flight, nothing scheduled"
        );
    }
}
