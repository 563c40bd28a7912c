//! Oracle comparison: the retention planner against an independent Python
//! implementation of restic's keep rules (`tests/oracle/retention_keep.py`,
//! calendar from Python's zoneinfo), on thousands of seeded random
//! histories in zones with 1-hour, 30-minute, midnight and no DST. Every
//! decision and every reason must agree.
//!
//! Python runs once with every case on stdin.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::support::oracle;
use snapsched::domain::{RemoteSnapshot, SnapshotStatus};
use snapsched::retention::{plan, Candidate, Ownership, Policy, Tiers};

const ZONES: [&str; 8] = [
    "Europe/Bratislava",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "America/Santiago",
    "America/Havana",
    "UTC",
];
const HISTORIES: usize = 4000;

struct Case {
    zone: &'static str,
    policy: Policy,
    now: i64,
    times: Vec<i64>,
}

fn count(rng: &mut StdRng, max: u32) -> u32 {
    if rng.random_bool(0.4) {
        0
    } else {
        rng.random_range(1..=max)
    }
}

/// A random history: a start near a DST change or a year end, and gaps
/// from minutes to weeks, some histories dense and some sparse.
fn random_case(rng: &mut StdRng) -> Case {
    let zone = ZONES[rng.random_range(0..ZONES.len())];
    // DST changes (Europe, New York, Lord Howe, Havana at midnight,
    // Santiago), a year end inside an ISO week, a leap day.
    let anchors = [
        Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0),
        Utc.with_ymd_and_hms(2026, 10, 25, 1, 0, 0),
        Utc.with_ymd_and_hms(2026, 3, 8, 7, 0, 0),
        Utc.with_ymd_and_hms(2026, 11, 1, 6, 0, 0),
        Utc.with_ymd_and_hms(2026, 4, 4, 15, 0, 0),
        Utc.with_ymd_and_hms(2026, 11, 1, 5, 0, 0),
        Utc.with_ymd_and_hms(2026, 4, 5, 3, 0, 0),
        Utc.with_ymd_and_hms(2026, 12, 31, 23, 0, 0),
        Utc.with_ymd_and_hms(2028, 2, 29, 0, 0, 0),
    ];
    let anchor = anchors[rng.random_range(0..anchors.len())].unwrap();
    let max_gap: i64 = [900, 1_800, 4 * 3_600, 86_400, 14 * 86_400][rng.random_range(0..5)];
    // Start so that the history most likely spans the anchor.
    let mut t = anchor.timestamp() - rng.random_range(0..=max_gap * 30);
    let mut times = Vec::new();
    for _ in 0..rng.random_range(0..60) {
        t += rng.random_range(1..=max_gap);
        times.push(t);
    }
    let keep = Tiers {
        last: count(rng, 5),
        hourly: count(rng, 8),
        daily: count(rng, 8),
        weekly: count(rng, 5),
        monthly: count(rng, 4),
        yearly: count(rng, 3),
        within: rng
            .random_bool(0.3)
            .then(|| Duration::from_secs(rng.random_range(1..10 * 86_400))),
    };
    let max_age = rng
        .random_bool(0.3)
        .then(|| Duration::from_secs(rng.random_range(1..60 * 86_400)));
    let now = times.last().copied().unwrap_or(t) + rng.random_range(0..5 * 86_400);
    Case {
        zone,
        policy: Policy {
            keep,
            max_age,
            zone: zone.parse::<Tz>().expect("a known zone"),
        },
        now,
        times,
    }
}

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).unwrap()
}

fn ours(case: &Case) -> Value {
    let snaps: Vec<Candidate> = case
        .times
        .iter()
        .map(|s| Candidate {
            snapshot: RemoteSnapshot {
                id: s.to_string(),
                name: format!("d-{s}"),
                created_at: at(*s),
                status: SnapshotStatus::Ok,
                size_bytes: None,
                note: None,
            },
            ownership: Ownership::Recorded,
        })
        .collect();
    let decisions = plan(&snaps, &case.policy, at(case.now));
    Value::Array(
        decisions
            .iter()
            .map(|d| {
                let reasons: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
                json!([d.keep, reasons])
            })
            .collect(),
    )
}

fn oracle_input(case: &Case) -> String {
    oracle::input(case.zone, &case.policy, case.now, &case.times)
}

fn oracle(cases: &[Case]) -> Vec<Value> {
    let inputs: Vec<String> = cases.iter().map(oracle_input).collect();
    oracle::run(&inputs)
}

#[test]
fn planner_agrees_with_the_python_oracle_on_random_histories() {
    let mut rng = StdRng::seed_from_u64(0x5EED_0016);
    let cases: Vec<Case> = (0..HISTORIES).map(|_| random_case(&mut rng)).collect();
    let expected = oracle(&cases);
    assert_eq!(expected.len(), cases.len(), "one answer per case");
    let mut tiered = 0;
    for (case, expected) in cases.iter().zip(&expected) {
        let got = ours(case);
        assert_eq!(
            &got, expected,
            "zone {}, keep {}, max_age {:?}, now {}, times {:?}",
            case.zone, case.policy.keep, case.policy.max_age, case.now, case.times
        );
        if got.as_array().is_some_and(|a| a.len() > 5) && !case.policy.keep.is_off() {
            tiered += 1;
        }
    }
    // The comparison is only meaningful when most histories exercise rules.
    assert!(tiered > HISTORIES / 2, "only {tiered} tiered histories");
}
