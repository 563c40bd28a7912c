//! What a retention policy leaves behind: replay a schedule, assume every
//! run succeeds, and plan retention after each one.
//!
//! Pure: the schedule, the zone, the policy and the window are the inputs;
//! no clock, no store, no provider. Each run names its snapshot from its
//! slot as the real run does (`<name>-YYYYmmdd_HHMMSS`, UTC), and the
//! planner decides at the slot's instant, so `max_age` ages snapshots as it
//! would in the daemon.
//!
//! `peak` is the largest number of snapshots that exist at once: right
//! after a create, before its prune deletes what the policy lets go.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::ownership::{Candidate, Ownership, NAME_TIME_FORMAT};
use super::plan::{plan, Policy, Reason};
use crate::domain::schedule::Schedule;
use crate::domain::{RemoteSnapshot, SnapshotStatus};

/// More slots than this is a mistake in `--for` or the schedule, not a
/// plan anyone wants replayed run by run.
pub const MAX_SLOTS: usize = 1_000_000;

/// What to replay.
#[derive(Debug, Clone)]
pub struct SimulationInput<'a> {
    /// The definition's name, which prefixes every snapshot name.
    pub name: &'a str,
    pub schedule: &'a Schedule,
    /// The zone the schedule fires in.
    pub zone: Tz,
    pub policy: Policy,
    /// The first slot considered (inclusive).
    pub from: DateTime<Utc>,
    /// How long to replay: slots in `[from, from + duration)`.
    pub duration: Duration,
}

/// A snapshot that remains at the end, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeptSnapshot {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub reasons: Vec<Reason>,
}

/// The outcome of a replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Simulation {
    /// What remains after the last run, oldest first.
    pub kept: Vec<KeptSnapshot>,
    /// How many runs (slots) were replayed.
    pub runs: usize,
    /// The most snapshots that existed at once.
    pub peak: usize,
    /// How many remain at the end (`kept.len()`).
    #[serde(rename = "final")]
    pub final_count: usize,
}

/// Why a replay cannot be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimulateError {
    #[error("--for must be a positive duration such as 60d or 1y")]
    ZeroDuration,
    #[error("--from plus --for is beyond the representable time range; shorten --for")]
    OutOfRange,
    #[error(
        "schedule '{schedule}' fires more than {max} times in {duration}; \
         shorten --for or use a sparser schedule"
    )]
    TooManySlots {
        schedule: String,
        duration: String,
        max: usize,
    },
}

/// Replay the schedule over the window and prune after every run.
pub fn simulate(input: &SimulationInput<'_>) -> Result<Simulation, SimulateError> {
    if input.duration.is_zero() {
        return Err(SimulateError::ZeroDuration);
    }
    let end = TimeDelta::from_std(input.duration)
        .ok()
        .and_then(|d| input.from.checked_add_signed(d))
        .ok_or(SimulateError::OutOfRange)?;
    let slots = slots(input.schedule, input.zone, input.from, end).ok_or_else(|| {
        SimulateError::TooManySlots {
            schedule: input.schedule.source().to_owned(),
            duration: super::format_duration(input.duration),
            max: MAX_SLOTS,
        }
    })?;

    let keeps_all = input.policy.keep.is_off() && input.policy.max_age.is_none();
    let mut existing: Vec<Candidate> = Vec::new();
    let mut peak = 0;
    for slot in &slots {
        existing.push(candidate(input.name, *slot));
        peak = peak.max(existing.len());
        // Keeping everything needs no plan; planning a million snapshots a
        // million times would.
        if !keeps_all {
            existing = plan(&existing, &input.policy, *slot)
                .into_iter()
                .filter(|d| d.keep)
                .map(|d| Candidate {
                    snapshot: d.snapshot,
                    ownership: d.ownership,
                })
                .collect();
        }
    }

    let at = slots.last().copied().unwrap_or(input.from);
    let kept: Vec<KeptSnapshot> = plan(&existing, &input.policy, at)
        .into_iter()
        .map(|d| KeptSnapshot {
            name: d.snapshot.name,
            created_at: d.snapshot.created_at,
            reasons: d.reasons,
        })
        .collect();
    Ok(Simulation {
        final_count: kept.len(),
        kept,
        runs: slots.len(),
        peak,
    })
}

/// The slots in `[from, end)`, or `None` when there are more than
/// [`MAX_SLOTS`].
fn slots(
    schedule: &Schedule,
    zone: Tz,
    from: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Option<Vec<DateTime<Utc>>> {
    let mut out = Vec::new();
    // `next_after` is strict; start a second early so `from` itself counts.
    let mut t = from - TimeDelta::seconds(1);
    while let Some(next) = schedule.next_after(t, zone) {
        if next >= end {
            break;
        }
        if out.len() == MAX_SLOTS {
            return None;
        }
        out.push(next);
        t = next;
    }
    Some(out)
}

fn candidate(name: &str, slot: DateTime<Utc>) -> Candidate {
    let name = format!("{name}-{}", slot.format(NAME_TIME_FORMAT));
    Candidate {
        snapshot: RemoteSnapshot {
            id: name.clone(),
            name,
            created_at: slot,
            status: SnapshotStatus::Ok,
            size_bytes: None,
            note: None,
        },
        ownership: Ownership::Recorded,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::{NaiveDate, TimeZone};

    use super::*;
    use crate::retention::Tiers;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn schedule(expr: &str) -> Schedule {
        Schedule::parse(expr, "").unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    fn policy(keep: Tiers, zone: Tz) -> Policy {
        Policy {
            keep,
            max_age: None,
            zone,
        }
    }

    fn run(expr: &str, keep: Tiers, from: &str, days: u64) -> Simulation {
        let schedule = schedule(expr);
        let input = SimulationInput {
            name: "web",
            schedule: &schedule,
            zone: Tz::UTC,
            policy: policy(keep, Tz::UTC),
            from: at(from),
            duration: Duration::from_secs(days * 86_400),
        };
        simulate(&input).unwrap_or_else(|e| panic!("{e}"))
    }

    fn utc(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .unwrap_or_else(|| panic!("{y}-{m}-{d} {h}"))
    }

    #[test]
    fn hourly_daily_weekly_over_sixty_days_keeps_the_expected_set() {
        let keep = Tiers {
            hourly: 24,
            daily: 7,
            weekly: 4,
            ..Tiers::default()
        };
        let sim = run("0 * * * *", keep, "2026-01-01T00:00:00Z", 60);

        // Worked out by hand from the calendar: the last slot is Sunday
        // 2026-03-01 23:00. Hourly keeps that day's 24 hours; daily the
        // 23:00 of Feb 23 .. Mar 1; weekly the 23:00 of the last four ISO
        // weeks' Sundays.
        let mut expected: BTreeSet<DateTime<Utc>> = (0..24).map(|h| utc(2026, 3, 1, h)).collect();
        let last_day = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap_or_default();
        for back in 0..7 {
            let day = last_day - chrono::Days::new(back);
            expected.insert(Utc.from_utc_datetime(&day.and_hms_opt(23, 0, 0).unwrap_or_default()));
        }
        for sunday in [(2, 8), (2, 15), (2, 22), (3, 1)] {
            expected.insert(utc(2026, sunday.0, sunday.1, 23));
        }

        let got: BTreeSet<DateTime<Utc>> = sim.kept.iter().map(|k| k.created_at).collect();
        assert_eq!(got, expected);
        assert_eq!(sim.final_count, 33);
        assert_eq!(sim.runs, 60 * 24);
        assert!(
            sim.peak >= sim.final_count,
            "{} < {}",
            sim.peak,
            sim.final_count
        );
        assert_eq!(sim.kept[0].name, "web-20260208_230000");
        assert_eq!(
            sim.kept[0].name,
            crate::domain::snapshot::snapshot_name("web", utc(2026, 2, 8, 23))
        );
        let newest = sim
            .kept
            .last()
            .map(|k| k.reasons.clone())
            .unwrap_or_default();
        assert_eq!(newest[0], Reason::Newest);
        assert!(sim.kept.iter().all(|k| !k.reasons.is_empty()));
    }

    #[test]
    fn peak_counts_the_snapshot_made_before_its_prune() {
        let keep = Tiers {
            last: 3,
            ..Tiers::default()
        };
        let sim = run("0 0 * * *", keep, "2026-01-01T00:00:00Z", 10);
        assert_eq!((sim.runs, sim.peak, sim.final_count), (10, 4, 3));
        let names: Vec<&str> = sim.kept.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "web-20260108_000000",
                "web-20260109_000000",
                "web-20260110_000000"
            ]
        );
    }

    #[test]
    fn no_rule_keeps_every_run() {
        let sim = run("0 0 * * *", Tiers::default(), "2026-01-01T00:00:00Z", 5);
        assert_eq!((sim.runs, sim.peak, sim.final_count), (5, 5, 5));
    }

    #[test]
    fn the_window_includes_from_and_excludes_its_end() {
        let keep = Tiers::default();
        let sim = run("0 0 * * *", keep, "2026-01-01T00:00:00Z", 2);
        let names: Vec<&str> = sim.kept.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["web-20260101_000000", "web-20260102_000000"]);
    }

    #[test]
    fn max_age_ages_snapshots_at_each_slot() {
        let schedule = schedule("0 0 * * *");
        let input = SimulationInput {
            name: "web",
            schedule: &schedule,
            zone: Tz::UTC,
            policy: Policy {
                keep: Tiers::default(),
                max_age: Some(Duration::from_secs(2 * 86_400)),
                zone: Tz::UTC,
            },
            from: at("2026-01-01T00:00:00Z"),
            duration: Duration::from_secs(10 * 86_400),
        };
        let sim = simulate(&input).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sim.final_count, 3, "{:?}", sim.kept);
    }

    #[test]
    fn bad_windows_are_errors() {
        let schedule = schedule("* * * * *");
        let mut input = SimulationInput {
            name: "web",
            schedule: &schedule,
            zone: Tz::UTC,
            policy: Policy::default(),
            from: at("2026-01-01T00:00:00Z"),
            duration: Duration::ZERO,
        };
        assert_eq!(simulate(&input), Err(SimulateError::ZeroDuration));
        input.duration = Duration::from_secs(3 * 365 * 86_400);
        let err = simulate(&input).err();
        assert!(
            matches!(&err, Some(SimulateError::TooManySlots { max, .. }) if *max == MAX_SLOTS),
            "{err:?}"
        );
        input.duration = Duration::from_secs(u64::MAX / 4);
        assert_eq!(simulate(&input), Err(SimulateError::OutOfRange));
    }

    #[test]
    fn json_has_kept_peak_and_final() {
        let keep = Tiers {
            last: 2,
            ..Tiers::default()
        };
        let sim = run("0 0 * * *", keep, "2026-01-01T00:00:00Z", 3);
        let v = serde_json::to_value(&sim).unwrap_or_default();
        assert_eq!(v["peak"], 3);
        assert_eq!(v["final"], 2);
        assert_eq!(v["runs"], 3);
        assert_eq!(v["kept"][1]["name"], "web-20260103_000000");
        assert_eq!(v["kept"][1]["created_at"], "2026-01-03T00:00:00Z");
        assert_eq!(v["kept"][0]["reasons"][0]["text"], "last 2/2");
    }
}
