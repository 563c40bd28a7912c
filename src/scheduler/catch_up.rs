//! What to do with a slot that came due: run it on time, run it as a
//! catch-up, or record it missed. Pure: a schedule, its zone, the slot,
//! `now` and the lateness policy in; a [`Firing`] out.
//!
//! Invariants:
//! - At most one slot runs per firing: the most recent one not after `now`
//!   (a late wake-up after downtime, suspend or a clock jump never runs a
//!   backlog).
//! - It runs only within the catch-up deadline (or the on-time window);
//!   every slot passed over, and the latest one when it does not run, is
//!   counted in one missed record naming the latest missed slot.
//! - The next instant is strictly after `now`, so the key is not due again
//!   in the same pass.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::domain::{Schedule, Trigger};

/// How late a slot may be.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lateness {
    /// The definition's catch-up deadline (its own, or the daemon's).
    pub catch_up_deadline: Duration,
    /// A slot fired within this of its instant is on time.
    pub on_time: Duration,
    /// Far behind a dense schedule, stepping slot by slot stops and jumps
    /// to this long before `now` (the daemon's catch-up deadline).
    pub jump_back: Duration,
}

/// The decision for one due slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Firing {
    /// The most recent slot not after `now`: the one that runs, or the
    /// latest missed one. It counts as handled either way.
    pub latest: DateTime<Utc>,
    /// The key's next instant, after `now`.
    pub next: Option<DateTime<Utc>>,
    /// Slots to record as missed: how many, and the latest of them.
    pub missed: Option<(u32, DateTime<Utc>)>,
    /// How `latest` runs, if it runs.
    pub run: Option<Trigger>,
}

/// Decide what the slot `at` of `schedule` in `zone`, found due at `now`,
/// does.
pub(crate) fn decide(
    schedule: &Schedule,
    zone: Tz,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
    policy: &Lateness,
) -> Firing {
    let (latest, passed_over, next) = resolve_late(schedule, zone, at, now, policy.jump_back);
    let late = (now - latest).to_std().unwrap_or_default();
    let runs_now = late <= policy.catch_up_deadline || late <= policy.on_time;
    let missed_count = passed_over + u32::from(!runs_now);
    let missed = (missed_count > 0).then(|| {
        let last_missed = if runs_now {
            prev_slot(schedule, zone, at, latest)
        } else {
            latest
        };
        (missed_count, last_missed)
    });
    let run = runs_now.then_some(if late <= policy.on_time {
        Trigger::Schedule
    } else {
        Trigger::Catchup
    });
    Firing {
        latest,
        next,
        missed,
        run,
    }
}

/// For a slot `at` fired at `now`: the most recent slot not after `now`,
/// how many slots before it were passed over, and the next slot after
/// `now`.
fn resolve_late(
    schedule: &Schedule,
    zone: Tz,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
    jump_back: Duration,
) -> (DateTime<Utc>, u32, Option<DateTime<Utc>>) {
    const MAX_STEPS: u32 = 100_000;
    let mut latest = at;
    let mut missed = 0u32;
    loop {
        match schedule.next_after(latest, zone) {
            Some(n) if n <= now => {
                missed += 1;
                latest = n;
                if missed >= MAX_STEPS {
                    // Far behind on a dense schedule: jump close to now.
                    let jump = chrono::Duration::from_std(jump_back)
                        .ok()
                        .and_then(|d| now.checked_sub_signed(d));
                    if let Some(jump) = jump.filter(|j| *j > latest) {
                        latest = jump;
                    }
                }
            }
            next => return (latest, missed, next),
        }
    }
}

/// The slot before `latest`, at or after `at` (for the missed record).
fn prev_slot(
    schedule: &Schedule,
    zone: Tz,
    at: DateTime<Utc>,
    latest: DateTime<Utc>,
) -> DateTime<Utc> {
    let mut prev = at;
    while let Some(n) = schedule.next_after(prev, zone) {
        if n >= latest {
            break;
        }
        prev = n;
    }
    prev
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 10, h, mi, s)
            .single()
            .expect("valid time")
    }

    fn hourly() -> Schedule {
        Schedule::parse("0 * * * *", "lab/web01/0/web").expect("parses")
    }

    const POLICY: Lateness = Lateness {
        catch_up_deadline: Duration::from_secs(3600),
        on_time: Duration::from_secs(60),
        jump_back: Duration::from_secs(3600),
    };

    fn decide_hourly(at: DateTime<Utc>, now: DateTime<Utc>, policy: &Lateness) -> Firing {
        decide(&hourly(), chrono_tz::UTC, at, now, policy)
    }

    #[test]
    fn a_slot_fired_at_its_instant_runs_on_schedule() {
        let f = decide_hourly(utc(1, 0, 0), utc(1, 0, 0), &POLICY);
        assert_eq!(
            f,
            Firing {
                latest: utc(1, 0, 0),
                next: Some(utc(2, 0, 0)),
                missed: None,
                run: Some(Trigger::Schedule),
            }
        );
        // Within the on-time window it is still on schedule.
        let f = decide_hourly(utc(1, 0, 0), utc(1, 1, 0), &POLICY);
        assert_eq!(f.run, Some(Trigger::Schedule));
    }

    #[test]
    fn a_late_slot_within_the_deadline_catches_up() {
        let f = decide_hourly(utc(1, 0, 0), utc(1, 30, 0), &POLICY);
        assert_eq!(f.run, Some(Trigger::Catchup));
        assert_eq!(f.missed, None);
        assert_eq!(f.next, Some(utc(2, 0, 0)));
    }

    #[test]
    fn after_downtime_only_the_latest_slot_runs_and_the_rest_are_one_missed_record() {
        // Down from before 01:00 until 04:10: 01, 02 and 03 passed.
        let f = decide_hourly(utc(1, 0, 0), utc(4, 10, 0), &POLICY);
        assert_eq!(f.latest, utc(4, 0, 0));
        assert_eq!(f.run, Some(Trigger::Catchup));
        assert_eq!(f.missed, Some((3, utc(3, 0, 0))));
        assert_eq!(f.next, Some(utc(5, 0, 0)));
    }

    #[test]
    fn past_the_deadline_nothing_runs_and_the_latest_slot_is_missed_too() {
        let strict = Lateness {
            catch_up_deadline: Duration::from_secs(300),
            ..POLICY
        };
        let f = decide_hourly(utc(1, 0, 0), utc(3, 30, 0), &strict);
        assert_eq!(f.run, None);
        assert_eq!(f.latest, utc(3, 0, 0));
        assert_eq!(f.missed, Some((3, utc(3, 0, 0))));
        assert_eq!(f.next, Some(utc(4, 0, 0)));
    }

    #[test]
    fn the_on_time_window_runs_even_with_a_zero_deadline() {
        let none = Lateness {
            catch_up_deadline: Duration::ZERO,
            ..POLICY
        };
        let f = decide_hourly(utc(1, 0, 0), utc(1, 0, 30), &none);
        assert_eq!(f.run, Some(Trigger::Schedule));
        assert_eq!(f.missed, None);
    }

    #[test]
    fn far_behind_a_dense_schedule_the_search_jumps_instead_of_stepping_forever() {
        let every_second = Schedule::parse("* * * * * *", "lab/web01/0/web").expect("parses");
        let at = utc(0, 0, 0);
        let now = at + chrono::Duration::days(2);
        let f = decide(&every_second, chrono_tz::UTC, at, now, &POLICY);
        assert_eq!(f.latest, now);
        assert_eq!(f.run, Some(Trigger::Schedule));
        assert_eq!(f.next, Some(now + chrono::Duration::seconds(1)));
        let (count, last) = f.missed.expect("missed slots");
        assert!(count >= 100_000, "{count}");
        assert_eq!(last, now - chrono::Duration::seconds(1));
    }
}
