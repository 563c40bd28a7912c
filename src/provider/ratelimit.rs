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
//! - With a [`SharedBudget`] (the store, plugged in by the wiring), a permit
//!   that passes the local checks is also granted by the shared budget, so
//!   the token's budget holds across every process that uses it. When the
//!   shared budget does not answer, the limiter warns and counts this
//!   process's requests only (snapshots go on), asking it again after
//!   [`SHARED_RETRY`].
//!
//! Time comes from a [`Timer`] (the crate's [`Clock`] in production), so
//! tests can drive a minute of traffic without waiting a minute.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::clock::{Clock, Timer};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// How long a shared budget may take to answer before this process counts
/// its requests alone.
pub const SHARED_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the limiter counts alone after the shared budget failed, before
/// it asks again.
pub const SHARED_RETRY: Duration = Duration::from_secs(30);

/// The answer of a [`SharedBudget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedGrant {
    /// Recorded: the request may be sent.
    Granted,
    /// The budget is spent; ask again after this long.
    RetryIn(Duration),
}

/// What [`SharedBudget::grant`] returns.
pub type BudgetFuture<'a> = Pin<Box<dyn Future<Output = Result<SharedGrant, String>> + Send + 'a>>;

/// A request budget kept outside this process and shared with every other
/// process using the same token (the store implements it). `bucket` names
/// the token without revealing it.
pub trait SharedBudget: Send + Sync + std::fmt::Debug + 'static {
    /// Grant one request of `bucket` within `limits` (per minute, per hour),
    /// or say how long until one can be granted. An error means the budget
    /// could not be consulted.
    fn grant<'a>(&'a self, bucket: &'a str, limits: RateLimits) -> BudgetFuture<'a>;
}

/// A shared budget and the bucket of this limiter's token.
#[derive(Debug, Clone)]
struct Shared {
    budget: Arc<dyn SharedBudget>,
    bucket: String,
}

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
    /// The shared budget failed: count alone until then.
    shared_down_until: Option<Instant>,
}

/// A FIFO limiter over per-minute and per-hour sliding windows.
pub struct RateLimiter {
    limits: RateLimits,
    clock: Arc<dyn Timer>,
    window: Mutex<Window>,
    /// Server hints are recorded without waiting for the queue.
    hints: StdMutex<Hints>,
    shared: StdMutex<Option<Shared>>,
    /// Who waits, for the log, the metrics and the status line.
    held: StdMutex<Held>,
}

/// Requests held back by the limiter, and the current stretch of holding.
#[derive(Debug, Default)]
struct Held {
    /// The provider the limiter's requests are for (metrics, log).
    label: String,
    /// Callers inside `acquire`.
    waiters: usize,
    /// Since when requests are held back; `None` while they pass freely.
    stretch_since: Option<Instant>,
}

/// Callers inside `acquire` of any limiter of this process.
static WAITING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// Limiters of this process holding requests back now.
static STRETCHES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Per provider label: since when its limiter holds requests back (wall
/// time) and how many wait. Only limiters in a stretch are listed.
static HELD_BACK: StdMutex<Vec<(String, usize, chrono::DateTime<chrono::Utc>)>> =
    StdMutex::new(Vec::new());

/// The providers whose requests are held back by the request budget now:
/// (provider, requests waiting, since when).
pub fn held_back() -> Vec<(String, usize, chrono::DateTime<chrono::Utc>)> {
    HELD_BACK.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn note_held_back(label: &str, waiters: usize, since: Option<chrono::DateTime<chrono::Utc>>) {
    let mut all = HELD_BACK.lock().unwrap_or_else(|e| e.into_inner());
    let pos = all.iter().position(|(l, ..)| l == label);
    match (pos, since) {
        (Some(i), _) if waiters == 0 => {
            all.remove(i);
        }
        (Some(i), _) => all[i].1 = waiters,
        (None, Some(at)) if waiters > 0 => all.push((label.to_owned(), waiters, at)),
        _ => {}
    }
}

/// How many requests of this process wait for a request budget now (for
/// the daemon's status line): none while no limiter holds requests back,
/// however many are passing through.
pub fn requests_waiting() -> usize {
    use std::sync::atomic::Ordering::Relaxed;
    if STRETCHES.load(Relaxed) == 0 {
        0
    } else {
        WAITING.load(Relaxed)
    }
}

/// One caller inside `acquire`: counted in, and out even when the caller
/// is dropped mid-wait.
struct Waiter<'a> {
    limiter: &'a RateLimiter,
    began: Instant,
    held: bool,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let waited = self
            .limiter
            .clock
            .instant()
            .saturating_duration_since(self.began);
        let mut h = self.limiter.held();
        WAITING.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if self.held {
            crate::telemetry::metrics::budget_wait(&h.label, waited);
        }
        h.waiters -= 1;
        crate::telemetry::metrics::budget_waiting(&h.label, h.waiters);
        note_held_back(&h.label, h.waiters, None);
        if h.waiters == 0 {
            if let Some(since) = h.stretch_since.take() {
                STRETCHES.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(
                    provider = %h.label,
                    held_for = %humantime::format_duration(Duration::from_secs(
                        self.limiter.clock.instant().saturating_duration_since(since).as_secs()
                    )),
                    "the API request budget lets requests through again"
                );
            }
        }
    }
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
            shared: StdMutex::new(None),
            held: StdMutex::new(Held {
                label: "api".to_owned(),
                ..Held::default()
            }),
        }
    }

    /// Name the provider this limiter's requests are for, in its log lines
    /// and metrics (the first name given stays when several share it).
    pub fn set_label(&self, label: &str) {
        let mut h = self.held();
        if h.label == "api" {
            h.label = label.to_owned();
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests waiting on this limiter now.
    pub fn waiting(&self) -> usize {
        self.held().waiters
    }

    /// A caller is about to wait `wait` for a permit: count it as held
    /// back, and say so once per stretch.
    fn holding(&self, waiter: &mut Waiter<'_>, wait: Duration) {
        waiter.held = true;
        let mut h = self.held();
        if h.stretch_since.is_none() {
            h.stretch_since = Some(waiter.began);
            STRETCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            note_held_back(&h.label, h.waiters, Some(chrono::Utc::now()));
            tracing::info!(
                provider = %h.label,
                per_minute = self.limits.per_minute,
                per_hour = self.limits.per_hour,
                next_in = %humantime::format_duration(Duration::from_millis(wait.as_millis() as u64)),
                "requests wait for the API request budget; runs are held back until it allows them"
            );
        }
    }

    /// Also take every permit from `budget`, in `bucket` (a name of the
    /// token that does not reveal it). Replaces an earlier shared budget.
    pub fn share_with(&self, budget: Arc<dyn SharedBudget>, bucket: String) {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        *s = Some(Shared { budget, bucket });
    }

    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    /// Wait for a permit to send one request.
    pub async fn acquire(&self) {
        let mut waiter = Waiter {
            limiter: self,
            began: self.clock.instant(),
            held: false,
        };
        {
            let mut h = self.held();
            WAITING.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            h.waiters += 1;
            crate::telemetry::metrics::budget_waiting(&h.label, h.waiters);
            if h.stretch_since.is_some() {
                // Joins a stretch already under way: count it there.
                note_held_back(&h.label, h.waiters, None);
            }
        }
        // Held across the waits below: later callers queue on the fair mutex.
        let mut w = self.window.lock().await;
        let in_stretch = self.held().stretch_since.is_some();
        if in_stretch {
            // Queued behind callers the budget holds back. Queueing behind
            // callers that were merely being granted is not holding back.
            self.holding(&mut waiter, Duration::ZERO);
        }
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
                match self.shared_wait(&mut w).await {
                    None => {
                        // Counted from after the shared budget's answer, when
                        // the request really leaves.
                        w.granted.push_back(self.clock.instant().max(now));
                        return;
                    }
                    Some(wait) => ready_at = self.clock.instant() + wait,
                }
            }
            let now = self.clock.instant();
            if ready_at > now {
                self.holding(&mut waiter, ready_at - now);
            }
            self.clock.sleep_until(ready_at).await;
        }
    }

    /// Ask the shared budget, if there is one and it is not known to be
    /// down: `None` to go ahead, or how long to wait before asking again.
    async fn shared_wait(&self, w: &mut Window) -> Option<Duration> {
        let shared = self
            .shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        let now = self.clock.instant();
        if w.shared_down_until.is_some_and(|until| now < until) {
            return None;
        }
        let answer = tokio::select! {
            a = shared.budget.grant(&shared.bucket, self.limits) => a,
            () = self.clock.sleep_until(now + SHARED_TIMEOUT) => {
                Err(format!("no answer within {} s", SHARED_TIMEOUT.as_secs()))
            }
        };
        match answer {
            Ok(grant) => {
                if w.shared_down_until.take().is_some() {
                    tracing::info!("the shared API request budget answers again");
                }
                match grant {
                    SharedGrant::Granted => None,
                    SharedGrant::RetryIn(d) => Some(d.max(Duration::from_millis(1))),
                }
            }
            Err(e) => {
                if w.shared_down_until.is_none() {
                    tracing::warn!(
                        "the shared API request budget cannot be consulted ({e}); this process \
                         counts only its own requests until it answers again (asked every {} s)",
                        SHARED_RETRY.as_secs()
                    );
                }
                w.shared_down_until = Some(now + SHARED_RETRY);
                None
            }
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

    /// A shared budget whose every grant takes 5 ms of the clock, as a
    /// store round trip does.
    #[derive(Debug)]
    struct SlowBudget(Arc<ManualClock>);

    impl SharedBudget for SlowBudget {
        fn grant<'a>(&'a self, _: &'a str, _: RateLimits) -> BudgetFuture<'a> {
            Box::pin(async move {
                self.0.advance(Duration::from_millis(5));
                tokio::task::yield_now().await;
                Ok(SharedGrant::Granted)
            })
        }
    }

    #[tokio::test]
    async fn queueing_behind_grants_in_progress_is_not_holding_back() {
        let clock = Arc::new(ManualClock::new());
        let limiter = Arc::new(RateLimiter::with_clock(
            RateLimits {
                per_minute: 250,
                per_hour: 5000,
            },
            clock.clone(),
        ));
        limiter.set_label("do-queue-test");
        limiter.share_with(Arc::new(SlowBudget(clock.clone())), "b".into());
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let l = limiter.clone();
            tasks.push(tokio::spawn(async move { l.acquire().await }));
        }
        // Whether the callers overlap depends on the runtime's order; in the
        // runs where they do (shown failing before the fix), queueing must
        // not count as holding back.
        for _ in 0..50 {
            assert!(
                held_back()
                    .iter()
                    .all(|(label, ..)| label != "do-queue-test"),
                "queueing counted as held back: {:?}",
                held_back()
            );
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(
            held_back()
                .iter()
                .all(|(label, ..)| label != "do-queue-test"),
            "{:?}",
            held_back()
        );
        assert_eq!(limiter.waiting(), 0);
    }

    #[derive(Clone, Default)]
    struct LogBuffer(Arc<StdMutex<Vec<u8>>>);

    impl std::io::Write for LogBuffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn requests_held_back_are_counted_and_said_once_per_stretch() {
        let log = LogBuffer::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let clock = Arc::new(ManualClock::new());
        let limiter = Arc::new(RateLimiter::with_clock(
            RateLimits {
                per_minute: 1,
                per_hour: 100,
            },
            clock.clone(),
        ));
        limiter.set_label("do-held-test");
        limiter.acquire().await;
        assert_eq!(limiter.waiting(), 0, "a free permit holds nobody back");
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let l = limiter.clone();
            tasks.push(tokio::spawn(async move { l.acquire().await }));
        }
        settle().await;
        assert_eq!(limiter.waiting(), 3);
        assert!(requests_waiting() >= 3, "{}", requests_waiting());
        assert!(
            held_back()
                .iter()
                .any(|(label, n, _)| label == "do-held-test" && *n == 3),
            "{:?}",
            held_back()
        );
        for _ in 0..3 {
            clock.advance(MINUTE);
            settle().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(limiter.waiting(), 0);
        assert!(
            held_back()
                .iter()
                .all(|(label, ..)| label != "do-held-test"),
            "{:?}",
            held_back()
        );
        // The log lines themselves are not asserted here: tracing caches
        // callsite interest across the test threads, so a capture in one
        // test can miss them.
        drop(log);
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

    /// A shared budget that grants while it has `remaining`, else asks to
    /// wait ten seconds; or fails; or never answers.
    #[derive(Debug, Default)]
    struct FakeBudget {
        remaining: AtomicUsize,
        calls: AtomicUsize,
        fail: bool,
        hang: bool,
    }

    impl SharedBudget for FakeBudget {
        fn grant<'a>(&'a self, bucket: &'a str, _: RateLimits) -> BudgetFuture<'a> {
            assert_eq!(bucket, "b");
            self.calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if self.hang {
                    std::future::pending::<()>().await;
                }
                if self.fail {
                    return Err("connection refused".into());
                }
                let taken = self
                    .remaining
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| r.checked_sub(1));
                Ok(match taken {
                    Ok(_) => SharedGrant::Granted,
                    Err(_) => SharedGrant::RetryIn(Duration::from_secs(10)),
                })
            })
        }
    }

    fn spawn_acquires(
        limiter: &Arc<RateLimiter>,
        n: usize,
    ) -> (Arc<AtomicUsize>, Vec<tokio::task::JoinHandle<()>>) {
        let done = Arc::new(AtomicUsize::new(0));
        let tasks = (0..n)
            .map(|_| {
                let (l, d) = (limiter.clone(), done.clone());
                tokio::spawn(async move {
                    l.acquire().await;
                    d.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        (done, tasks)
    }

    #[tokio::test]
    async fn a_spent_shared_budget_holds_requests_the_local_windows_would_allow() {
        let clock = Arc::new(ManualClock::new());
        let limiter = Arc::new(RateLimiter::with_clock(
            RateLimits::default(),
            clock.clone(),
        ));
        let budget = Arc::new(FakeBudget {
            remaining: AtomicUsize::new(2),
            ..FakeBudget::default()
        });
        limiter.share_with(budget.clone(), "b".into());
        let (done, tasks) = spawn_acquires(&limiter, 3);
        settle().await;
        assert_eq!(done.load(Ordering::SeqCst), 2);
        assert_eq!(budget.calls.load(Ordering::SeqCst), 3);
        // Room again, but the limiter waits the ten seconds it was told.
        budget.remaining.store(1, Ordering::SeqCst);
        clock.advance(Duration::from_secs(9));
        settle().await;
        assert_eq!(done.load(Ordering::SeqCst), 2);
        clock.advance(Duration::from_secs(1));
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(budget.calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn an_unreachable_shared_budget_leaves_the_local_limiter_in_charge() {
        let clock = Arc::new(ManualClock::new());
        let limiter = Arc::new(RateLimiter::with_clock(
            RateLimits {
                per_minute: 3,
                per_hour: 100,
            },
            clock.clone(),
        ));
        let budget = Arc::new(FakeBudget {
            fail: true,
            ..FakeBudget::default()
        });
        limiter.share_with(budget.clone(), "b".into());
        let (done, _tasks) = spawn_acquires(&limiter, 4);
        settle().await;
        // The local minute still holds; the failed budget was asked once.
        assert_eq!(done.load(Ordering::SeqCst), 3);
        assert_eq!(budget.calls.load(Ordering::SeqCst), 1);
        clock.advance(MINUTE);
        settle().await;
        // After SHARED_RETRY (which a minute exceeds) it is asked again.
        assert_eq!(done.load(Ordering::SeqCst), 4);
        assert_eq!(budget.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_shared_budget_that_does_not_answer_times_out_to_the_local_limiter() {
        let clock = Arc::new(ManualClock::new());
        let limiter = Arc::new(RateLimiter::with_clock(
            RateLimits::default(),
            clock.clone(),
        ));
        let budget = Arc::new(FakeBudget {
            hang: true,
            ..FakeBudget::default()
        });
        limiter.share_with(budget.clone(), "b".into());
        let (done, tasks) = spawn_acquires(&limiter, 2);
        settle().await;
        assert_eq!(done.load(Ordering::SeqCst), 0);
        clock.advance(SHARED_TIMEOUT);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(budget.calls.load(Ordering::SeqCst), 1);
    }
}
