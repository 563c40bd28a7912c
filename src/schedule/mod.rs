//! Cron schedules with Debian cron semantics in IANA time zones.
//!
//! PLACEHOLDER: validated with croner only; the full engine replaces this.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// A parsed, validated schedule expression.
#[derive(Debug, Clone)]
pub struct Schedule {
    source: String,
    cron: croner::Cron,
}

/// Why an expression was refused. Display names the field, value and range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(pub String);

impl Schedule {
    /// Parse `expr`. `hash_key` is the definition's stable identity, from
    /// which `H` fields derive their value.
    pub fn parse(expr: &str, hash_key: &str) -> Result<Schedule, ScheduleError> {
        let _ = hash_key;
        let cron = croner::parser::CronParser::new()
            .parse(expr)
            .map_err(|e| ScheduleError(e.to_string()))?;
        Ok(Schedule {
            source: expr.to_owned(),
            cron,
        })
    }

    /// The first fire instant strictly after `after`, in zone `tz`.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// Erigones' named default definitions: (schedule, retention) for a
/// definition added with one of these names and no schedule or retention.
pub fn erigones_default(name: &str) -> Option<(&'static str, u32)> {
    match name {
        "hourly" => Some(("H * * * *", 24)),
        "daily" => Some(("H H * * *", 30)),
        "weekly" => Some(("H H * * H(0-6)", 12)),
        "monthly" => Some(("H H H(1-28) * *", 6)),
        _ => None,
    }
}
