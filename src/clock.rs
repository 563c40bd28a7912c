//! Time, injectable: the crate's one clock abstraction.
//!
//! [`Clock`] is where "now" comes from: production reads the system clock;
//! tests use [`Clock::tokio`], a wall clock that advances with tokio's
//! (pausable) clock, so a test of a DST change at 05:30 in Europe/Bratislava
//! runs in milliseconds.
//!
//! [`Timer`] is monotonic time and waiting on it, which is all the rate
//! limiter needs. [`Clock`] measures it on tokio's clock (so
//! `tokio::time::pause` stops it too); tests that must move time by hand,
//! in step with a fake server's clock, use `ManualClock` (built with the
//! `test-support` feature or in unit tests only).

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// Where "now" comes from.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// `Utc::now()`.
    System,
    /// `start` plus the time elapsed on tokio's clock since `origin`.
    Tokio {
        start: DateTime<Utc>,
        origin: tokio::time::Instant,
    },
    /// [`Clock::Tokio`] plus an offset a test can change at any moment: a
    /// wall clock that steps (an operator's `date -s`, a bad NTP server)
    /// while monotonic time goes on.
    Stepped {
        start: DateTime<Utc>,
        origin: tokio::time::Instant,
        offset_ms: &'static std::sync::atomic::AtomicI64,
    },
}

/// Steps the wall time of a [`Clock::Stepped`].
#[derive(Debug, Clone, Copy)]
pub struct ClockStepper(&'static std::sync::atomic::AtomicI64);

impl ClockStepper {
    /// Move the wall clock by `by` (back when negative) at once.
    pub fn step(&self, by: chrono::Duration) {
        self.0
            .fetch_add(by.num_milliseconds(), std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock {
    /// A wall clock that reads `start` now and then follows tokio's clock.
    pub fn tokio(start: DateTime<Utc>) -> Self {
        Clock::Tokio {
            start,
            origin: tokio::time::Instant::now(),
        }
    }

    /// [`Clock::tokio`] whose wall time the returned stepper can move. Each
    /// call leaks one word (the offset), which is what a test can afford.
    pub fn stepped(start: DateTime<Utc>) -> (Self, ClockStepper) {
        let offset: &'static std::sync::atomic::AtomicI64 =
            Box::leak(Box::new(std::sync::atomic::AtomicI64::new(0)));
        let clock = Clock::Stepped {
            start,
            origin: tokio::time::Instant::now(),
            offset_ms: offset,
        };
        (clock, ClockStepper(offset))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Tokio { start, origin } => {
                let elapsed = tokio::time::Instant::now().duration_since(*origin);
                *start + chrono::Duration::from_std(elapsed).unwrap_or_default()
            }
            Clock::Stepped {
                start,
                origin,
                offset_ms,
            } => {
                let elapsed = tokio::time::Instant::now().duration_since(*origin);
                *start
                    + chrono::Duration::from_std(elapsed).unwrap_or_default()
                    + chrono::Duration::milliseconds(
                        offset_ms.load(std::sync::atomic::Ordering::SeqCst),
                    )
            }
        }
    }

    /// The tokio instant at which wall time `at` comes (now, if it is past).
    pub fn instant_of(&self, at: DateTime<Utc>) -> tokio::time::Instant {
        let wait = (at - self.now()).to_std().unwrap_or_default();
        tokio::time::Instant::now() + wait
    }
}

/// A sleep on a [`Timer`].
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Monotonic time and waiting on it.
pub trait Timer: Send + Sync + 'static {
    /// The current monotonic instant.
    fn instant(&self) -> Instant;
    /// Resolve once `instant() >= deadline`.
    fn sleep_until(&self, deadline: Instant) -> Sleep<'_>;
}

/// Both variants measure waits on tokio's clock, which honours
/// `tokio::time::pause`.
impl Timer for Clock {
    fn instant(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep<'_> {
        Box::pin(tokio::time::sleep_until(deadline))
    }
}

#[cfg(any(test, feature = "test-support"))]
pub use manual::ManualClock;

#[cfg(any(test, feature = "test-support"))]
mod manual {
    use std::sync::Mutex;
    use std::time::Duration;

    use tokio::sync::Notify;
    use tokio::time::Instant;

    use super::{Sleep, Timer};

    /// A timer that only moves when told to; for tests that pair the rate
    /// limiter with a fake server whose clock they also advance.
    #[derive(Debug)]
    pub struct ManualClock {
        base: Instant,
        offset: Mutex<Duration>,
        moved: Notify,
    }

    impl Default for ManualClock {
        fn default() -> Self {
            ManualClock {
                base: Instant::now(),
                offset: Mutex::new(Duration::ZERO),
                moved: Notify::new(),
            }
        }
    }

    impl ManualClock {
        pub fn new() -> Self {
            Self::default()
        }

        /// Move time forward and wake every sleeper whose deadline passed.
        pub fn advance(&self, by: Duration) {
            let mut offset = self.offset.lock().unwrap_or_else(|e| e.into_inner());
            *offset += by;
            drop(offset);
            self.moved.notify_waiters();
        }
    }

    impl Timer for ManualClock {
        fn instant(&self) -> Instant {
            self.base + *self.offset.lock().unwrap_or_else(|e| e.into_inner())
        }

        fn sleep_until(&self, deadline: Instant) -> Sleep<'_> {
            Box::pin(async move {
                loop {
                    // Register interest before checking, so an advance
                    // between the check and the await is not missed.
                    let moved = self.moved.notified();
                    tokio::pin!(moved);
                    moved.as_mut().enable();
                    if self.instant() >= deadline {
                        return;
                    }
                    moved.await;
                }
            })
        }
    }
}
