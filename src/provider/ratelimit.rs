//! Client-side request limiter shared by the HTTP providers.
//!
//! One [`RateLimiter`] guards one API token. Every request first calls
//! [`RateLimiter::acquire`]; callers queue in FIFO order (the state sits
//! behind tokio's fair mutex, held across the wait), so a burst of due
//! definitions is spread out instead of hammering the API into 429s.
//!
//! Invariants:
//! - Over any sliding window of one minute (one hour) at most
//!   `per_minute` (`per_hour`) permits are handed out. The window is counted
//!   from the moment a permit is granted, which is before the server sees
//!   the request, so the server's own count is never higher than ours.
//! - A server hint (`retry-after`, `ratelimit-remaining` reaching zero)
//!   pauses *all* callers until the hinted time.
//! - When the server reports few remaining requests, permits are spaced at
//!   the sustainable hourly rate, so the remaining budget stops shrinking.
//!
//! Time comes from a [`Timer`] (the crate's [`Clock`] in production), so
//! tests can drive a minute of traffic without waiting a minute.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::clock::{Clock, Timer};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// Request budgets of one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub per_minute: u32,
    pub per_hour: u32,
}

impl Default for RateLimits {
    /// DigitalOcean's published limits: 250 per minute, 5,000 per hour.
    fn default() -> Self {
        RateLimits {
            per_minute: 250,
            per_hour: 5000,
        }
    }
}

#[derive(Debug, Default)]
struct Window {
    /// Grant times within the last hour, oldest first.
    granted: VecDeque<Instant>,
    /// Nobody proceeds before this (server said so).
    paused_until: Option<Instant>,
    /// Minimum spacing between grants while the server budget is low.
    min_interval: Duration,
}

/// A FIFO limiter over per-minute and per-hour sliding windows.
pub struct RateLimiter {
    limits: RateLimits,
    clock: Arc<dyn Timer>,
    window: Mutex<Window>,
    /// Server hints are recorded without waiting for the queue.
    hints: StdMutex<Hints>,
}

#[derive(Debug, Default)]
struct Hints {
    pause_until: Option<Instant>,
    min_interval: Option<Duration>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter on the system clock (its waits run on tokio's clock).
    /// Zero limits are raised to one so the limiter cannot deadlock.
    pub fn new(limits: RateLimits) -> Self {
        Self::with_clock(limits, Arc::new(Clock::System))
    }

    pub fn with_clock(limits: RateLimits, clock: Arc<dyn Timer>) -> Self {
        RateLimiter {
            limits: RateLimits {
                per_minute: limits.per_minute.max(1),
                per_hour: limits.per_hour.max(1),
            },
            clock,
            window: Mutex::new(Window::default()),
            hints: StdMutex::new(Hints::default()),
        }
    }

    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    /// Wait for a permit to send one request.
    pub async fn acquire(&self) {
        // Held across the waits below: later callers queue on the fair mutex.
        let mut w = self.window.lock().await;
        loop {
            self.absorb_hints(&mut w);
            let now = self.clock.instant();
            while w
                .granted
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= HOUR)
            {
                w.granted.pop_front();
            }
            let mut ready_at = now;
            if let Some(p) = w.paused_until {
                if p > now {
                    ready_at = ready_at.max(p);
                } else {
                    w.paused_until = None;
                }
            }
            if let Some(last) = w.granted.back() {
                ready_at = ready_at.max(*last + w.min_interval);
            }
            let in_minute = w
                .granted
                .iter()
                .rev()
                .take_while(|t| now.saturating_duration_since(**t) < MINUTE)
                .count();
            if in_minute >= self.limits.per_minute as usize {
                // The oldest grant inside the minute must age out first.
                let idx = w.granted.len() - in_minute;
                ready_at = ready_at.max(w.granted[idx] + MINUTE);
            }
            if w.granted.len() >= self.limits.per_hour as usize {
                let idx = w.granted.len() - self.limits.per_hour as usize;
                ready_at = ready_at.max(w.granted[idx] + HOUR);
            }
            if ready_at <= now {
                w.granted.push_back(now);
                return;
            }
            self.clock.sleep_until(ready_at).await;
        }
    }

    /// The server asked us to wait (`retry-after`, or the budget is spent).
    pub fn pause_for(&self, wait: Duration) {
        let until = self.clock.instant() + wait;
        let mut h = self.hints.lock().unwrap_or_else(|e| e.into_inner());
        h.pause_until = Some(h.pause_until.map_or(until, |p| p.max(until)));
    }

    /// Record the server's `ratelimit-remaining` / `ratelimit-limit`. Below a
    /// tenth of the budget, space requests at the sustainable hourly rate.
    pub fn observe_remaining(&self, remaining: u64, limit: u64) {
        let limit = limit.max(1);
        let interval = if remaining.saturating_mul(10) < limit {
            HOUR / u32::try_from(limit).unwrap_or(u32::MAX)
        } else {
            Duration::ZERO
        };
        let mut h = self.hints.lock().unwrap_or_else(|e| e.into_inner());
        h.min_interval = Some(interval);
    }

    fn absorb_hints(&self, w: &mut Window) {
        let mut h = self.hints.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = h.pause_until.take() {
            w.paused_until = Some(w.paused_until.map_or(p, |q| q.max(p)));
        }
        if let Some(i) = h.min_interval.take() {
            w.min_interval = i;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn grants_at_most_per_minute_then_waits_for_the_window() {
        let clock = Arc::new(ManualClock::new());
        let limiter = Arc::new(RateLimiter::with_clock(
            RateLimits {
                per_minute: 5,
                per_hour: 100,
            },
            clock.clone(),
        ));
        let done = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let (l, d) = (limiter.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                l.acquire().await;
                d.fetch_add(1, Ordering::SeqCst);
            }));
        }
        settle().await;
        assert_eq!(done.load(Ordering::SeqCst), 5);
        clock.advance(Duration::from_secs(59));
        settle().await;
        assert_eq!(done.load(Ordering::SeqCst), 5);
        clock.advance(Duration::from_secs(1));
        settle().await;
        assert_eq!(done.load(Ordering::SeqCst), 10);
        clock.advance(MINUTE);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(done.load(Ordering::SeqCst), 12);
    }

    #[tokio::test]
    async fn hourly_budget_holds_across_minutes() {
        let clock = Arc::new(ManualClock::new());
        let limiter = RateLimiter::with_clock(
            RateLimits {
                per_minute: 10,
                per_hour: 15,
            },
            clock.clone(),
        );
        for _ in 0..10 {
            limiter.acquire().await;
        }
        clock.advance(MINUTE);
        for _ in 0..5 {
            limiter.acquire().await;
        }
        let blocked = tokio::time::timeout(Duration::from_millis(20), limiter.acquire()).await;
        assert!(blocked.is_err(), "16th request within the hour was granted");
    }

    #[tokio::test]
    async fn server_pause_blocks_everyone() {
        let clock = Arc::new(ManualClock::new());
        let limiter = Arc::new(RateLimiter::with_clock(
            RateLimits::default(),
            clock.clone(),
        ));
        limiter.pause_for(Duration::from_secs(30));
        let l = limiter.clone();
        let task = tokio::spawn(async move { l.acquire().await });
        settle().await;
        assert!(!task.is_finished());
        clock.advance(Duration::from_secs(30));
        task.await.unwrap();
    }

    #[tokio::test]
    async fn low_remaining_budget_spaces_requests() {
        let clock = Arc::new(ManualClock::new());
        let limiter = RateLimiter::with_clock(RateLimits::default(), clock.clone());
        limiter.observe_remaining(100, 5000);
        limiter.acquire().await;
        let blocked = tokio::time::timeout(Duration::from_millis(20), limiter.acquire()).await;
        assert!(blocked.is_err());
        clock.advance(Duration::from_millis(720));
        limiter.acquire().await;
        limiter.observe_remaining(4000, 5000);
        limiter.acquire().await;
    }
}
