//! Cron schedules with Debian cron semantics in IANA time zones.
//!
//! A [`Schedule`] answers one question, fast: the first instant strictly
//! after a given one at which the schedule fires in a given zone. What it
//! computes equals what Debian's cron (Vixie cron with Debian's patches) runs:
//!
//! * five fields, minute hour day-of-month month day-of-week; 0 and 7 are
//!   Sunday; month and weekday names, case-insensitive; `*`, `n`, `a-b`,
//!   `*/n`, `a-b/n` and comma lists;
//! * day of month and day of week are ORed when both are restricted, ANDed
//!   when either starts with `*` (so `*/2` counts as a star);
//! * `@yearly` … `@hourly` macros; `@reboot` is refused;
//! * daylight saving: fixed-time schedules (neither minute nor hour starts
//!   with `*`) follow the wall clock, others follow real time (see [`dst`]).
//!
//! Extensions, not in Debian cron: an optional leading seconds field, and
//! Jenkins-style `H`, `H(a-b)`, `H/n`, `H(a-b)/n` items whose value is
//! derived stably from the definition's identity (see [`hash`]), to spread
//! snapshot load the way Erigones spreads its default schedules. An `H` item
//! does not start with `*`, so it counts as restricted for both rules above.
//!
//! Why the matching is not delegated to `croner`: croner treats only a bare
//! `*` as a star (Vixie also treats `*/2`), classifies fixed-time jobs by
//! "single value" (Debian by the leading `*`, so `0 6,18 * * *` is fixed),
//! moves gap times by its own rule, accepts syntax Debian refuses (`L`, `W`,
//! `#`, `?`, `5/15`), and has no `H`. Matching runs instead on our own
//! bitsets (a `Schedule` is 48 bytes), with a search that jumps by month, day
//! bitmask and next set bit ([`search`]); croner remains an independent
//! cross-check for UTC in the tests, where its semantics and ours coincide
//! once its day rule is set per expression.
//!
//! Invariants: a `Schedule` that parsed can fire (expressions that never can,
//! such as `0 0 30 2 *`, are refused); `next_after` never panics and returns
//! `None` only beyond the searchable calendar.

mod dst;
pub mod hash;
mod parse;
mod search;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;

use parse::{DAY_OF_MONTH, DAY_OF_WEEK, HOUR, MINUTE, MONTH, SECOND};

/// A parsed, validated schedule expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Schedule {
    source: Box<str>,
    seconds: u64,
    minutes: u64,
    hours: u32,
    /// Bits 1..=31.
    days: u32,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6, Sunday = 0.
    weekdays: u8,
    flags: u8,
}

/// Day of month and day of week both restricted: either may match.
const DAY_OR: u8 = 1;
/// Neither minute nor hour starts with `*`: wall-clock DST rules.
const FIXED_TIME: u8 = 2;
/// Written with a leading seconds field.
const HAS_SECONDS: u8 = 4;

/// Why an expression was refused. Display names the field, the value and the
/// allowed range, e.g. `minute field: 60 is out of range 0-59`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(pub String);

/// The expression split into fields, with `H` resolved.
struct Parsed {
    schedule: Schedule,
    resolved: String,
}

fn parse_full(expr: &str, hash_key: &str) -> Result<Parsed, ScheduleError> {
    let trimmed = expr.trim();
    let body = parse::expand_macro(trimmed)?.unwrap_or(trimmed);
    let fields: Vec<&str> = body.split_whitespace().collect();
    let (second, rest) = match fields.len() {
        5 => (None, &fields[..]),
        6 => (Some(fields[0]), &fields[1..]),
        n => {
            return Err(ScheduleError(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with a \
                 leading seconds field, found {n} in {trimmed:?}"
            )))
        }
    };
    let mut hash = hash::HashSource::new(hash_key);
    let mut resolved = Vec::with_capacity(6);
    let seconds = match second {
        Some(text) => {
            let f = parse::field(&SECOND, text, &mut hash)?;
            resolved.push(f.resolved);
            f.bits
        }
        None => 1,
    };
    let mut parsed = [0u64; 5];
    for (i, (spec, text)) in [&MINUTE, &HOUR, &DAY_OF_MONTH, &MONTH, &DAY_OF_WEEK]
        .into_iter()
        .zip(rest)
        .enumerate()
    {
        let f = parse::field(spec, text, &mut hash)?;
        parsed[i] = f.bits;
        resolved.push(f.resolved);
    }
    let [minutes, hours, days, months, weekdays] = parsed;
    let star = |i: usize| rest[i].starts_with('*');
    let mut flags = 0;
    if !star(2) && !star(4) {
        flags |= DAY_OR;
    }
    if !star(0) && !star(1) {
        flags |= FIXED_TIME;
    }
    if second.is_some() {
        flags |= HAS_SECONDS;
    }
    // Field parsers keep values within range, so these narrowings are exact.
    let (days, months) = (days as u32, months as u16);
    parse::check_can_fire(days, months, flags & DAY_OR == 0)?;
    Ok(Parsed {
        schedule: Schedule {
            source: trimmed.into(),
            seconds,
            minutes,
            hours: hours as u32,
            days,
            months,
            weekdays: parse::fold_sunday(weekdays),
            flags,
        },
        resolved: resolved.join(" "),
    })
}

impl Schedule {
    /// Parse `expr`. `hash_key` is the definition's stable identity, from
    /// which `H` fields derive their value.
    pub fn parse(expr: &str, hash_key: &str) -> Result<Schedule, ScheduleError> {
        parse_full(expr, hash_key).map(|p| p.schedule)
    }

    /// The first fire instant strictly after `after`, in zone `tz`.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let after = after.timestamp();
        let t = if self.flags & FIXED_TIME != 0 {
            self.next_fixed(after, tz)
        } else {
            self.next_interval(after, tz)
        }?;
        DateTime::from_timestamp(t, 0)
    }

    /// The expression as written (trimmed).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression has the optional leading seconds field.
    pub fn has_seconds(&self) -> bool {
        self.flags & HAS_SECONDS != 0
    }

    /// Whether the schedule follows the wall clock across DST changes (no
    /// `*` at the start of the minute or hour field) rather than real time.
    pub fn is_fixed_time(&self) -> bool {
        self.flags & FIXED_TIME != 0
    }

    fn day_or(&self) -> bool {
        self.flags & DAY_OR != 0
    }
}

/// The expression in plain five- or six-field cron form: macros expanded and
/// every `H` item replaced by the values it resolves to for `hash_key`. Each
/// field starts with `*` exactly when the written one does, so the result
/// means the same to any Debian-compatible cron (e.g. to show in `def show`).
pub fn expand_hashes(expr: &str, hash_key: &str) -> Result<String, ScheduleError> {
    parse_full(expr, hash_key).map(|p| p.resolved)
}

/// `t` as RFC 3339 with the offset `tz` has at that instant, whole seconds,
/// e.g. `2026-03-29T03:00:00+02:00` (UTC is written `+00:00`).
pub fn format_in_zone(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .to_rfc3339_opts(SecondsFormat::Secs, false)
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

#[cfg(test)]
mod tests;
