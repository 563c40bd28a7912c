//! Tiered ("grandfather-father-son") keep rules, with restic's semantics.
//!
//! The input is the creation times of a definition's own ready snapshots,
//! newest first. Each rule is evaluated on its own:
//! - `last N`: the N newest.
//! - `hourly N` (daily, weekly, monthly, yearly alike): walking newest to
//!   oldest, a snapshot is kept when its bucket differs from the bucket of
//!   the previous snapshot kept *by this rule*, until N have been kept: the
//!   newest snapshot of each of the last N buckets that have one.
//! - `within D`: every snapshot created less than D before the newest one
//!   (relative to the newest, as restic does, so that a stretch of failed
//!   runs does not age the last good snapshots out).
//!
//! Buckets are calendar periods in the definition's zone: hour = local date,
//! local hour and UTC offset (the repeated hour of a fall-back day is two
//! buckets), day = local date, week = ISO 8601 week of the ISO week-year,
//! month, year.
//!
//! A snapshot's reasons name every rule that keeps it, in the order above.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, Offset, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::plan::{format_duration, Reason};

/// The keep rules of a policy; a count of 0 and `within: None` turn a rule
/// off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Tiers {
    /// The newest N (`keep_last`, Erigones' `retention`).
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
    /// Everything created less than this before the newest snapshot.
    #[serde(with = "crate::domain::definition::opt_humantime")]
    pub within: Option<Duration>,
}

impl Tiers {
    /// The counted rules with their counts, in reason order.
    pub fn counts(&self) -> [(Tier, u32); 6] {
        [
            (Tier::Last, self.last),
            (Tier::Hourly, self.hourly),
            (Tier::Daily, self.daily),
            (Tier::Weekly, self.weekly),
            (Tier::Monthly, self.monthly),
            (Tier::Yearly, self.yearly),
        ]
    }

    /// No rule is on: everything is kept (`retention = 0` as before tiers).
    pub fn is_off(&self) -> bool {
        self.counts().iter().all(|(_, n)| *n == 0) && self.within.is_none()
    }

    /// Only `last` is on: the plain count of Erigones' `retention`.
    pub fn is_count_only(&self) -> bool {
        self.last > 0 && Tiers { last: 0, ..*self }.is_off()
    }
}

impl fmt::Display for Tiers {
    /// The rules that are on, as `last 3, daily 7, within 2d`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .counts()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        if let Some(d) = self.within {
            parts.push(format!("within {}", format_duration(d)));
        }
        if parts.is_empty() {
            f.write_str("no rule")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// A counted keep rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Last => "last",
            Tier::Hourly => "hourly",
            Tier::Daily => "daily",
            Tier::Weekly => "weekly",
            Tier::Monthly => "monthly",
            Tier::Yearly => "yearly",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The calendar bucket of `t` for a rule, in `zone`. `Last` has no
/// calendar: every snapshot is its own bucket (`index`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    Own(usize),
    Hour(NaiveDate, u32, i32),
    Day(NaiveDate),
    Week(i32, u32),
    Month(i32, u32),
    Year(i32),
}

fn bucket(tier: Tier, index: usize, t: DateTime<Utc>, zone: Tz) -> Bucket {
    let local = t.with_timezone(&zone);
    match tier {
        Tier::Last => Bucket::Own(index),
        Tier::Hourly => Bucket::Hour(
            local.date_naive(),
            local.hour(),
            local.offset().fix().local_minus_utc(),
        ),
        Tier::Daily => Bucket::Day(local.date_naive()),
        Tier::Weekly => {
            let week = local.iso_week();
            Bucket::Week(week.year(), week.week())
        }
        Tier::Monthly => Bucket::Month(local.year(), local.month()),
        Tier::Yearly => Bucket::Year(local.year()),
    }
}

/// The keeping reasons of each snapshot, given their creation times newest
/// first; an empty list means no rule keeps it. Pure: the same times, rules
/// and zone always give the same answer.
pub fn keep_reasons(newest_first: &[DateTime<Utc>], tiers: &Tiers, zone: Tz) -> Vec<Vec<Reason>> {
    let mut reasons = vec![Vec::new(); newest_first.len()];
    for (tier, of) in tiers.counts() {
        if of == 0 {
            continue;
        }
        let mut kept = 0u32;
        let mut previous = None;
        for (index, t) in newest_first.iter().enumerate() {
            if kept == of {
                break;
            }
            let b = bucket(tier, index, *t, zone);
            if previous != Some(b) {
                kept += 1;
                previous = Some(b);
                reasons[index].push(Reason::Tier {
                    tier,
                    nth: kept,
                    of,
                });
            }
        }
    }
    if let (Some(within), Some(newest)) = (tiers.within, newest_first.first()) {
        // A window too large for chrono reaches back to the beginning.
        let start = TimeDelta::from_std(within)
            .ok()
            .and_then(|w| newest.checked_sub_signed(w));
        for (index, t) in newest_first.iter().enumerate() {
            if start.is_none_or(|s| *t > s) {
                reasons[index].push(Reason::Within(within));
            }
        }
    }
    reasons
}
