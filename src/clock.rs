//! The wall clock, injectable.
//!
//! Production reads the system clock. Tests use [`Clock::tokio`], a wall
//! clock that advances with tokio's (pausable) clock, so a test of a DST
//! change at 05:30 in Europe/Bratislava runs in milliseconds.

use chrono::{DateTime, Utc};

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
}

impl Clock {
    /// A wall clock that reads `start` now and then follows tokio's clock.
    pub fn tokio(start: DateTime<Utc>) -> Self {
        Clock::Tokio {
            start,
            origin: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Tokio { start, origin } => {
                let elapsed = tokio::time::Instant::now().duration_since(*origin);
                *start + chrono::Duration::from_std(elapsed).unwrap_or_default()
            }
        }
    }

    /// The tokio instant at which wall time `at` comes (now, if it is past).
    pub fn instant_of(&self, at: DateTime<Utc>) -> tokio::time::Instant {
        let wait = (at - self.now()).to_std().unwrap_or_default();
        tokio::time::Instant::now() + wait
    }
}
