//! The summary the loop hands to its tick hook, cached.
//!
//! Invariants: building a [`Status`] walks every scheduled definition, so
//! it is rebuilt only after a change, and at most once per
//! [`STATUS_REFRESH`]; an idle loop with many definitions does no
//! per-definition work at all. `in_flight` is fresh on every tick. Each
//! rebuild gets a new [`Status::revision`]. Without a hook nothing is built.

use std::sync::Arc;
use std::time::Duration;

use super::timer::TimerQueue;
use crate::domain::Identity;
use crate::telemetry::{Status, Tick};

/// Least time between two rebuilds of the tick status.
const STATUS_REFRESH: Duration = Duration::from_secs(1);

/// The summary of `timers` with `in_flight` runs.
pub(crate) fn summary<V>(timers: &TimerQueue<Arc<Identity>, V>, in_flight: usize) -> Status {
    Status {
        definitions: timers.len(),
        in_flight,
        next_fire: timers.earliest().map(|(at, id)| (at, id.clone())),
        next_fires: timers
            .iter()
            .filter_map(|(id, _, next)| next.map(|at| (id.clone(), at)))
            .collect(),
        revision: 0,
        budget_waiting: crate::provider::ratelimit::requests_waiting(),
        store_error: None,
    }
}

/// The tick hook and the status it was last given.
#[derive(Default)]
pub(crate) struct StatusCache {
    tick: Option<Tick>,
    cache: Option<Status>,
    dirty: bool,
    built: Option<tokio::time::Instant>,
    revision: u64,
}

impl StatusCache {
    pub fn set_hook(&mut self, tick: Tick) {
        self.tick = Some(tick);
    }

    /// Definitions or their next fires may have changed.
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Call the hook with the cached status, rebuilt with `build` when
    /// stale, and `in_flight` as of now.
    pub fn tick(
        &mut self,
        build: impl FnOnce() -> Status,
        in_flight: usize,
        store_error: Option<&str>,
    ) {
        let Some(tick) = self.tick.clone() else {
            return;
        };
        let fresh = self.built.is_some_and(|t| t.elapsed() < STATUS_REFRESH);
        if self.cache.is_none() || (self.dirty && !fresh) {
            self.revision += 1;
            self.cache = Some(Status {
                revision: self.revision,
                ..build()
            });
            self.dirty = false;
            self.built = Some(tokio::time::Instant::now());
        }
        if let Some(status) = self.cache.as_mut() {
            status.in_flight = in_flight;
            status.budget_waiting = crate::provider::ratelimit::requests_waiting();
            status.store_error = store_error.map(str::to_owned);
            tick(status);
        }
    }
}
