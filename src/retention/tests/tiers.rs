//! Table tests for the calendar tiers: every rule, the definition's zone,
//! DST days in Europe/Bratislava, ISO week-year edges and leap days.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::super::*;
use crate::domain::{RemoteSnapshot, SnapshotStatus};

const BRATISLAVA: Tz = chrono_tz::Europe::Bratislava;

fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

/// Own ready snapshots named by their creation instant (RFC 3339, as
/// given), planned at the newest one.
fn plan_at(times: &[&str], keep: Tiers, max_age: Option<Duration>, zone: Tz) -> Vec<Decision> {
    let snaps: Vec<Candidate> = times
        .iter()
        .map(|t| Candidate {
            snapshot: RemoteSnapshot {
                id: t.to_string(),
                name: t.to_string(),
                created_at: instant(t),
                status: SnapshotStatus::Ok,
                size_bytes: None,
                note: None,
            },
            ownership: Ownership::Recorded,
        })
        .collect();
    let now = snaps.iter().map(|c| c.snapshot.created_at).max().unwrap();
    let policy = Policy {
        keep,
        max_age,
        zone,
    };
    plan(&snaps, &policy, now)
}

fn kept(decisions: &[Decision]) -> Vec<&str> {
    decisions
        .iter()
        .filter(|d| d.keep)
        .map(|d| d.snapshot.name.as_str())
        .collect()
}

fn reasons(decisions: &[Decision], name: &str) -> Vec<String> {
    let d = decisions
        .iter()
        .find(|d| d.snapshot.name == name)
        .unwrap_or_else(|| panic!("{name} not planned"));
    d.reasons.iter().map(ToString::to_string).collect()
}

fn tiers(f: impl FnOnce(&mut Tiers)) -> Tiers {
    let mut t = Tiers::default();
    f(&mut t);
    t
}

#[test]
fn daily_keeps_the_newest_of_each_of_the_last_n_days_that_have_one() {
    let times = [
        "2026-05-01T08:00:00Z",
        "2026-05-01T20:00:00Z",
        "2026-05-03T08:00:00Z",
        "2026-05-04T08:00:00Z",
        "2026-05-04T20:00:00Z",
    ];
    // May 2 has no snapshot and does not count as one of the 3 days.
    let plan = plan_at(&times, tiers(|t| t.daily = 3), None, Tz::UTC);
    assert_eq!(
        kept(&plan),
        [
            "2026-05-01T20:00:00Z",
            "2026-05-03T08:00:00Z",
            "2026-05-04T20:00:00Z"
        ]
    );
    assert_eq!(reasons(&plan, "2026-05-01T20:00:00Z"), ["daily 3/3"]);
    assert_eq!(
        reasons(&plan, "2026-05-04T08:00:00Z"),
        ["kept by no rule (daily 3)"]
    );
}

#[test]
fn days_are_the_definition_zones_days() {
    // 22:30Z is 00:30 the next day in Bratislava (CEST): two local days,
    // one UTC day.
    let times = ["2026-07-10T21:30:00Z", "2026-07-10T22:30:00Z"];
    let utc = plan_at(&times, tiers(|t| t.daily = 5), None, Tz::UTC);
    assert_eq!(kept(&utc), ["2026-07-10T22:30:00Z"]);
    let local = plan_at(&times, tiers(|t| t.daily = 5), None, BRATISLAVA);
    assert_eq!(kept(&local), times);
}

#[test]
fn the_repeated_hour_of_the_fall_back_day_is_two_hourly_buckets() {
    // 2026-10-25 in Bratislava: 03:00 CEST becomes 02:00 CET. Both
    // instants below are 02:30 local, once at +02:00 and once at +01:00.
    let times = [
        "2026-10-25T00:10:00Z",
        "2026-10-25T00:30:00Z",
        "2026-10-25T01:10:00Z",
        "2026-10-25T01:30:00Z",
    ];
    let plan = plan_at(&times, tiers(|t| t.hourly = 10), None, BRATISLAVA);
    assert_eq!(
        kept(&plan),
        ["2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z"]
    );
    assert_eq!(reasons(&plan, "2026-10-25T00:30:00Z"), ["hourly 2/10"]);
    // The whole fall-back day is one local day of 25 hours.
    let daily = plan_at(
        &["2026-10-24T22:10:00Z", "2026-10-25T22:50:00Z"],
        tiers(|t| t.daily = 10),
        None,
        BRATISLAVA,
    );
    assert_eq!(kept(&daily), ["2026-10-25T22:50:00Z"]);
}

#[test]
fn the_spring_forward_day_is_one_day_of_23_hours() {
    // 2026-03-29 in Bratislava: 02:00 CET becomes 03:00 CEST.
    let times = [
        "2026-03-28T23:10:00Z", // 00:10 CET on the 29th
        "2026-03-29T00:50:00Z", // 01:50 CET
        "2026-03-29T01:10:00Z", // 03:10 CEST
        "2026-03-29T21:50:00Z", // 23:50 CEST on the 29th
        "2026-03-29T22:10:00Z", // 00:10 CEST on the 30th
    ];
    let plan = plan_at(&times, tiers(|t| t.daily = 10), None, BRATISLAVA);
    assert_eq!(
        kept(&plan),
        ["2026-03-29T21:50:00Z", "2026-03-29T22:10:00Z"]
    );
    let hourly = plan_at(&times[..3], tiers(|t| t.hourly = 10), None, BRATISLAVA);
    assert_eq!(
        kept(&hourly).len(),
        3,
        "01:50 CET and 03:10 CEST are two hours"
    );
}

#[test]
fn weeks_are_iso_weeks_of_the_iso_week_year() {
    // 2026-12-31 (Thursday) and 2027-01-01 (Friday) are both in 2026-W53;
    // 2027-01-04 (Monday) starts 2027-W01.
    let times = [
        "2026-12-27T12:00:00Z", // Sunday: 2026-W52
        "2026-12-28T12:00:00Z", // Monday: 2026-W53
        "2026-12-31T12:00:00Z",
        "2027-01-01T12:00:00Z",
        "2027-01-03T12:00:00Z", // Sunday: still 2026-W53
        "2027-01-04T12:00:00Z",
    ];
    let plan = plan_at(&times, tiers(|t| t.weekly = 3), None, Tz::UTC);
    assert_eq!(
        kept(&plan),
        [
            "2026-12-27T12:00:00Z",
            "2027-01-03T12:00:00Z",
            "2027-01-04T12:00:00Z"
        ]
    );
    // Calendar years split the same week.
    let yearly = plan_at(&times, tiers(|t| t.yearly = 3), None, Tz::UTC);
    assert_eq!(
        kept(&yearly),
        ["2026-12-31T12:00:00Z", "2027-01-04T12:00:00Z"]
    );
    let monthly = plan_at(&times, tiers(|t| t.monthly = 1), None, Tz::UTC);
    assert_eq!(kept(&monthly), ["2027-01-04T12:00:00Z"]);
}

#[test]
fn a_week_starts_on_monday_in_the_definition_zone() {
    // Sunday 23:30 UTC is Monday 00:30 in Bratislava (CET): a new week.
    let times = ["2026-11-29T22:30:00Z", "2026-11-29T23:30:00Z"];
    assert_eq!(
        kept(&plan_at(&times, tiers(|t| t.weekly = 5), None, Tz::UTC)),
        ["2026-11-29T23:30:00Z"]
    );
    assert_eq!(
        kept(&plan_at(&times, tiers(|t| t.weekly = 5), None, BRATISLAVA)),
        times
    );
}

#[test]
fn leap_days_are_days_of_their_month() {
    let times = [
        "2028-02-28T12:00:00Z",
        "2028-02-29T06:00:00Z",
        "2028-02-29T12:00:00Z",
        "2028-03-01T12:00:00Z",
    ];
    let plan = plan_at(
        &times,
        tiers(|t| {
            t.daily = 2;
            t.monthly = 2;
        }),
        None,
        Tz::UTC,
    );
    assert_eq!(
        kept(&plan),
        ["2028-02-29T12:00:00Z", "2028-03-01T12:00:00Z"]
    );
    assert_eq!(
        reasons(&plan, "2028-02-29T12:00:00Z"),
        ["daily 2/2", "monthly 2/2"]
    );
    // One year apart across a leap day: yearly counts the calendar year.
    let years = ["2024-02-29T00:00:00Z", "2025-02-28T00:00:00Z"];
    assert_eq!(
        kept(&plan_at(&years, tiers(|t| t.yearly = 2), None, Tz::UTC)),
        years
    );
}

#[test]
fn within_is_relative_to_the_newest_snapshot_and_strict() {
    let times = [
        "2028-02-28T00:00:00Z",
        "2028-02-29T00:00:00Z", // exactly 1 day before the newest: out
        "2028-02-29T00:01:00Z",
        "2028-03-01T00:00:00Z",
    ];
    let day = Duration::from_secs(86_400);
    let first = plan_at(&times, tiers(|t| t.within = Some(day)), None, Tz::UTC);
    assert_eq!(
        kept(&first),
        ["2028-02-29T00:01:00Z", "2028-03-01T00:00:00Z"]
    );
    assert_eq!(
        reasons(&first, "2028-02-29T00:01:00Z"),
        ["within 1d of the newest"]
    );
    assert_eq!(
        reasons(&first, "2028-02-28T00:00:00Z"),
        ["kept by no rule (within 1d)"]
    );
    // Planned a year later, the window still hangs off the newest snapshot.
    let later = plan(
        &first
            .iter()
            .map(|d| Candidate {
                snapshot: d.snapshot.clone(),
                ownership: d.ownership,
            })
            .collect::<Vec<_>>(),
        &Policy {
            keep: tiers(|t| t.within = Some(day)),
            ..Policy::default()
        },
        instant("2029-03-01T00:00:00Z"),
    );
    assert_eq!(
        kept(&later),
        ["2028-02-29T00:01:00Z", "2028-03-01T00:00:00Z"]
    );
}

#[test]
fn reasons_name_every_rule_that_keeps_a_snapshot() {
    let times = [
        "2026-01-31T12:00:00Z",
        "2026-02-27T12:00:00Z",
        "2026-02-28T12:00:00Z",
    ];
    let keep = Tiers {
        last: 2,
        hourly: 1,
        daily: 7,
        weekly: 4,
        monthly: 12,
        yearly: 1,
        within: Some(Duration::from_secs(86_400 * 2)),
    };
    let plan = plan_at(&times, keep, None, Tz::UTC);
    assert_eq!(
        reasons(&plan, "2026-02-28T12:00:00Z"),
        [
            "newest ready snapshot",
            "last 1/2",
            "hourly 1/1",
            "daily 1/7",
            "weekly 1/4",
            "monthly 1/12",
            "yearly 1/1",
            "within 2d of the newest"
        ]
    );
    // Friday Feb 27 and Saturday Feb 28 share a week.
    assert_eq!(
        reasons(&plan, "2026-02-27T12:00:00Z"),
        ["last 2/2", "daily 2/7", "within 2d of the newest"]
    );
    assert_eq!(
        reasons(&plan, "2026-01-31T12:00:00Z"),
        ["daily 3/7", "weekly 2/4", "monthly 2/12"]
    );
}

#[test]
fn max_age_deletes_what_tiers_keep_except_the_newest() {
    let times = [
        "2025-01-15T00:00:00Z",
        "2025-06-15T00:00:00Z",
        "2026-01-15T00:00:00Z",
    ];
    let ninety_days = Duration::from_secs(86_400 * 90);
    let plan = plan_at(
        &times,
        tiers(|t| t.monthly = 24),
        Some(ninety_days),
        Tz::UTC,
    );
    assert_eq!(kept(&plan), ["2026-01-15T00:00:00Z"]);
    assert_eq!(
        reasons(&plan, "2025-06-15T00:00:00Z"),
        ["older than max_age 90d"]
    );
}

#[test]
fn no_rule_and_retention_zero_keeps_everything() {
    let times = ["2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"];
    let plan = plan_at(&times, Tiers::default(), None, Tz::UTC);
    assert_eq!(kept(&plan), times);
    assert_eq!(
        reasons(&plan, "2026-01-01T00:00:00Z"),
        ["retention 0 keeps all"]
    );
}

#[test]
fn reasons_serialize_with_their_rule() {
    let reason = Reason::Tier {
        tier: Tier::Daily,
        nth: 3,
        of: 7,
    };
    assert_eq!(
        serde_json::to_value(reason).unwrap(),
        serde_json::json!({"kind": "tier", "text": "daily 3/7", "tier": "daily", "nth": 3, "of": 7})
    );
}
