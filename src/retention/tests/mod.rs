//! Table tests for every retention rule; property tests for the planner's
//! invariants live in the submodule. The fixtures here are shared with the
//! prune executor's tests.

mod properties;
mod tiers;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::domain::{RemoteSnapshot, SnapshotStatus};

pub(crate) const DAY: i64 = 86_400;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

pub(crate) fn at_secs(secs: i64) -> DateTime<Utc> {
    t0() + chrono::TimeDelta::seconds(secs)
}

fn snapshot(name: &str, created_at: DateTime<Utc>, status: SnapshotStatus) -> RemoteSnapshot {
    RemoteSnapshot {
        id: format!("id-{name}"),
        name: name.to_string(),
        created_at,
        status,
        size_bytes: Some(1 << 30),
        note: None,
    }
}

pub(crate) fn candidate(name: &str, day: i64, ownership: Ownership) -> Candidate {
    Candidate {
        snapshot: snapshot(name, at_secs(day * DAY), SnapshotStatus::Ok),
        ownership,
    }
}

/// `count` recorded, ready daily snapshots of definition `daily`, one a day
/// from day 0.
pub(crate) fn daily(count: i64) -> Vec<Candidate> {
    (0..count)
        .map(|day| {
            let created = at_secs(day * DAY);
            let name = format!("daily-{}", created.format(NAME_TIME_FORMAT));
            Candidate {
                snapshot: snapshot(&name, created, SnapshotStatus::Ok),
                ownership: Ownership::Recorded,
            }
        })
        .collect()
}

pub(crate) fn policy(retention: u32, max_age_days: Option<u64>) -> Policy {
    Policy::count(
        retention,
        max_age_days.map(|d| Duration::from_secs(d * DAY as u64)),
    )
}

fn deleted(decisions: &[Decision]) -> Vec<&str> {
    decisions
        .iter()
        .filter(|d| !d.keep)
        .map(|d| d.snapshot.name.as_str())
        .collect()
}

fn kept(decisions: &[Decision]) -> Vec<&str> {
    decisions
        .iter()
        .filter(|d| d.keep)
        .map(|d| d.snapshot.name.as_str())
        .collect()
}

fn reasons_of(decisions: &[Decision], name: &str) -> Vec<String> {
    decisions
        .iter()
        .find(|d| d.snapshot.name == name)
        .map(|d| d.reasons.iter().map(ToString::to_string).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------- the rule

#[test]
fn retention_zero_keeps_everything() {
    let plan = plan(&daily(40), &policy(0, None), at_secs(100 * DAY));
    assert_eq!(plan.len(), 40);
    assert!(deleted(&plan).is_empty());
    assert_eq!(
        reasons_of(&plan, "daily-20260101_000000"),
        vec!["retention 0 keeps all"]
    );
}

#[test]
fn retention_deletes_the_oldest_beyond_the_count() {
    let plan = plan(&daily(5), &policy(3, None), at_secs(5 * DAY));
    assert_eq!(
        deleted(&plan),
        vec!["daily-20260101_000000", "daily-20260102_000000"]
    );
    assert_eq!(
        kept(&plan),
        vec![
            "daily-20260103_000000",
            "daily-20260104_000000",
            "daily-20260105_000000"
        ]
    );
    assert_eq!(
        reasons_of(&plan, "daily-20260101_000000"),
        vec!["beyond retention 3"]
    );
    assert_eq!(reasons_of(&plan, "daily-20260103_000000"), vec!["last 3/3"]);
    assert_eq!(
        reasons_of(&plan, "daily-20260105_000000"),
        vec!["newest ready snapshot", "last 1/3"]
    );
}

#[test]
fn retention_larger_than_the_count_deletes_nothing() {
    let plan = plan(&daily(3), &policy(30, None), at_secs(3 * DAY));
    assert!(deleted(&plan).is_empty());
}

#[test]
fn ties_in_creation_time_are_ordered_by_name() {
    // Same creation time: the name decides which one is the oldest.
    let mut snaps = vec![
        candidate("daily-b", 1, Ownership::Recorded),
        candidate("daily-c", 1, Ownership::Recorded),
        candidate("daily-a", 1, Ownership::Recorded),
    ];
    // Ids sort the other way round, so only the name can give this order.
    for (c, id) in snaps.iter_mut().zip(["2", "1", "3"]) {
        c.snapshot.id = id.to_string();
    }
    let plan = plan(&snaps, &policy(2, None), at_secs(2 * DAY));
    assert_eq!(deleted(&plan), vec!["daily-a"]);
    let order: Vec<&str> = plan.iter().map(|d| d.snapshot.name.as_str()).collect();
    assert_eq!(order, vec!["daily-a", "daily-b", "daily-c"]);
}

#[test]
fn duplicate_names_are_ordered_by_id() {
    // DigitalOcean allows two droplet snapshots with one name.
    let mut first = candidate("daily-x", 1, Ownership::Recorded);
    first.snapshot.id = "200".into();
    let mut second = candidate("daily-x", 1, Ownership::Recorded);
    second.snapshot.id = "100".into();
    let plan = plan(&[first, second], &policy(1, None), at_secs(2 * DAY));
    let ids: Vec<(&str, bool)> = plan
        .iter()
        .map(|d| (d.snapshot.id.as_str(), d.keep))
        .collect();
    assert_eq!(ids, vec![("100", false), ("200", true)]);
}

#[test]
fn lowering_retention_from_30_to_3_deletes_the_27_oldest_in_one_plan() {
    let snaps = daily(30);
    let now = at_secs(30 * DAY);
    assert!(deleted(&plan(&snaps, &policy(30, None), now)).is_empty());

    let lowered = plan(&snaps, &policy(3, None), now);
    let expected: Vec<&str> = snaps[..27]
        .iter()
        .map(|c| c.snapshot.name.as_str())
        .collect();
    assert_eq!(deleted(&lowered), expected);
    assert_eq!(PlanSummary::from_decisions(&lowered).delete, 27);
}

// ------------------------------------------------------------------ max_age

#[test]
fn max_age_deletes_older_snapshots_even_within_the_count() {
    // 10 daily snapshots, retention 30, max_age 3 days, now = day 10.
    let plan = plan(&daily(10), &policy(30, Some(3)), at_secs(10 * DAY));
    // Days 0..=6 are older than 3 days; day 7 is exactly 3 days old: kept.
    assert_eq!(deleted(&plan).len(), 7);
    assert_eq!(
        reasons_of(&plan, "daily-20260101_000000"),
        vec!["older than max_age 3d"]
    );
    assert_eq!(
        reasons_of(&plan, "daily-20260108_000000"),
        vec!["last 3/30", "within max_age 3d"]
    );
}

#[test]
fn max_age_reason_is_humantime_formatted() {
    let plan = plan(&daily(2), &policy(0, Some(90)), at_secs(200 * DAY));
    assert_eq!(
        reasons_of(&plan, "daily-20260101_000000"),
        vec!["older than max_age 90d"]
    );
    let parsed = humantime::parse_duration("90d").unwrap();
    assert_eq!(parsed, Duration::from_secs(90 * DAY as u64));
}

#[test]
fn max_age_and_retention_together_give_both_reasons() {
    let plan = plan(&daily(5), &policy(2, Some(1)), at_secs(10 * DAY));
    assert_eq!(
        reasons_of(&plan, "daily-20260101_000000"),
        vec!["beyond retention 2", "older than max_age 1d"]
    );
    // Within the count but too old: deleted for age only.
    assert_eq!(
        reasons_of(&plan, "daily-20260104_000000"),
        vec!["older than max_age 1d"]
    );
}

#[test]
fn newest_is_never_deleted_even_if_older_than_max_age() {
    let plan = plan(&daily(3), &policy(0, Some(1)), at_secs(365 * DAY));
    assert_eq!(
        kept(&plan),
        vec!["daily-20260103_000000"],
        "only the newest survives"
    );
    assert_eq!(
        reasons_of(&plan, "daily-20260103_000000"),
        vec!["newest ready snapshot", "older than max_age 1d"]
    );
}

#[test]
fn newest_is_the_newest_ready_one_not_a_pending_one() {
    let mut snaps = daily(3);
    snaps.push(Candidate {
        snapshot: snapshot("daily-pending", at_secs(9 * DAY), SnapshotStatus::Pending),
        ownership: Ownership::Recorded,
    });
    let plan = plan(&snaps, &policy(0, Some(1)), at_secs(365 * DAY));
    assert_eq!(kept(&plan), vec!["daily-20260103_000000", "daily-pending"]);
}

#[test]
fn snapshots_dated_in_the_future_are_not_older_than_max_age() {
    let plan = plan(&daily(3), &policy(0, Some(1)), at_secs(-10 * DAY));
    assert!(deleted(&plan).is_empty());
}

#[test]
fn a_max_age_beyond_chrono_range_deletes_nothing_by_age() {
    let p = Policy::count(0, Some(Duration::from_secs(u64::MAX)));
    assert!(deleted(&plan(&daily(3), &p, at_secs(1000 * DAY))).is_empty());
}

// ------------------------------------------------------- what is not counted

#[test]
fn not_ready_snapshots_are_kept_and_never_counted() {
    let mut snaps = daily(3);
    for (i, status) in [
        SnapshotStatus::Pending,
        SnapshotStatus::Rollback,
        SnapshotStatus::Lost,
    ]
    .into_iter()
    .enumerate()
    {
        snaps.push(Candidate {
            // Newer than every ready one: if they were counted, the ready
            // ones would fall beyond retention 2.
            snapshot: snapshot(
                &format!("daily-nr{i}"),
                at_secs((10 + i as i64) * DAY),
                status,
            ),
            ownership: Ownership::Recorded,
        });
    }
    // An old not-ready one too: never deleted, even beyond count and age.
    snaps.push(Candidate {
        snapshot: snapshot("daily-old-lost", at_secs(-50 * DAY), SnapshotStatus::Lost),
        ownership: Ownership::Adopted,
    });
    let plan = plan(&snaps, &policy(2, Some(5)), at_secs(12 * DAY));
    assert_eq!(
        deleted(&plan),
        vec!["daily-20260101_000000", "daily-20260102_000000"]
    );
    assert_eq!(reasons_of(&plan, "daily-nr0"), vec!["not ready (pending)"]);
    assert_eq!(reasons_of(&plan, "daily-nr2"), vec!["not ready (lost)"]);
    assert_eq!(
        reasons_of(&plan, "daily-old-lost"),
        vec!["not ready (lost)"]
    );
}

#[test]
fn prune_never_touches_manual_snapshots() {
    let mut snaps = daily(3);
    snaps.push(candidate("before upgrade", -100, Ownership::Unmanaged));
    snaps.push(candidate(
        "daily-20250101_000000-copy",
        -90,
        Ownership::Unmanaged,
    ));
    let plan = plan(&snaps, &policy(1, Some(1)), at_secs(365 * DAY));
    assert_eq!(
        deleted(&plan),
        vec!["daily-20260101_000000", "daily-20260102_000000"]
    );
    assert_eq!(
        reasons_of(&plan, "before upgrade"),
        vec!["not managed by this definition"]
    );
}

#[test]
fn removal_deletes_every_owned_snapshot_ready_or_not_and_nothing_else() {
    let mut snaps = daily(3);
    snaps.push(candidate("manual", -10, Ownership::Unmanaged));
    snaps.push(candidate("weekly-x", -5, Ownership::OtherDefinition));
    snaps.push(Candidate {
        snapshot: snapshot("daily-pending", at_secs(5 * DAY), SnapshotStatus::Pending),
        ownership: Ownership::Adopted,
    });
    let plan = plan_removal(&snaps);
    assert_eq!(
        deleted(&plan),
        vec![
            "daily-20260101_000000",
            "daily-20260102_000000",
            "daily-20260103_000000",
            "daily-pending"
        ]
    );
    assert_eq!(kept(&plan), vec!["manual", "weekly-x"]);
    assert_eq!(
        reasons_of(&plan, "daily-pending"),
        vec!["definition removed with --delete-snapshots"]
    );
    assert_eq!(
        reasons_of(&plan, "weekly-x"),
        vec!["not managed by this definition (another definition's)"]
    );
}

#[test]
fn prune_never_touches_other_definitions_snapshots() {
    let mut snaps = daily(2);
    snaps.push(candidate(
        "weekly-20250101_000000",
        -100,
        Ownership::OtherDefinition,
    ));
    // Fits this definition's pattern but is recorded for another identity.
    snaps.push(candidate(
        "daily-20250101_000000",
        -100,
        Ownership::OtherDefinition,
    ));
    let plan = plan(&snaps, &policy(1, None), at_secs(365 * DAY));
    assert_eq!(deleted(&plan), vec!["daily-20260101_000000"]);
    assert_eq!(
        reasons_of(&plan, "daily-20250101_000000"),
        vec!["not managed by this definition (another definition's)"]
    );
}

#[test]
fn prune_never_touches_other_tools_snapshots_and_they_do_not_count() {
    // Many foreign snapshots newer than ours must not push ours out.
    let mut snaps = daily(2);
    for i in 0..10 {
        snaps.push(candidate(
            &format!("autosnap_{i}"),
            50 + i,
            Ownership::Unmanaged,
        ));
    }
    let plan = plan(&snaps, &policy(2, None), at_secs(100 * DAY));
    assert!(deleted(&plan).is_empty());
}

#[test]
fn only_foreign_snapshots_yield_an_empty_deletion_list() {
    let snaps = vec![
        candidate("a", 0, Ownership::Unmanaged),
        candidate("b", 1, Ownership::OtherDefinition),
    ];
    let plan = plan(&snaps, &policy(1, Some(0)), at_secs(100 * DAY));
    assert_eq!(plan.len(), 2);
    assert!(deleted(&plan).is_empty());
    assert!(plan.iter().all(|d| !d.ownership.is_owned()));
}

#[test]
fn empty_listing_gives_an_empty_plan() {
    assert!(plan(&[], &policy(3, Some(1)), t0()).is_empty());
}

// ----------------------------------------------------------------- adoption

#[test]
fn adopted_snapshots_are_pruned_like_recorded_ones() {
    // The store lost everything; only exact-pattern names are adopted.
    let listing: Vec<RemoteSnapshot> = [
        "daily-20260101_000000",
        "daily-20260102_000000",
        "daily-20260103_000000",
        "daily2-20250101_000000",
        "daily-20250101_000000-copy",
        "daily-20251341_000000",
    ]
    .iter()
    .enumerate()
    .map(|(i, n)| snapshot(n, at_secs(i as i64 * DAY - 30 * DAY), SnapshotStatus::Ok))
    .collect();
    let c = classify(&listing, &StoreRecords::default(), "daily");
    let plan = plan(&c.candidates, &policy(1, None), at_secs(10 * DAY));
    assert_eq!(
        deleted(&plan),
        vec!["daily-20260101_000000", "daily-20260102_000000"]
    );
    for name in [
        "daily2-20250101_000000",
        "daily-20250101_000000-copy",
        "daily-20251341_000000",
    ] {
        assert_eq!(
            reasons_of(&plan, name),
            vec!["not managed by this definition"],
            "{name}"
        );
    }
}

#[test]
fn a_name_recorded_for_another_definition_is_never_adopted() {
    let listing = vec![snapshot(
        "daily-20250101_000000",
        at_secs(-DAY),
        SnapshotStatus::Ok,
    )];
    let store = StoreRecords {
        others: ["daily-20250101_000000".to_string()].into_iter().collect(),
        ..StoreRecords::default()
    };
    let c = classify(&listing, &store, "daily");
    assert_eq!(c.candidates[0].ownership, Ownership::OtherDefinition);
    assert_eq!(c.adopted().count(), 0);
}

// ------------------------------------------------------ reasons and output

#[test]
fn reasons_have_stable_json() {
    let json = serde_json::to_value([
        Reason::BeyondRetention(30),
        Reason::OlderThanMaxAge(Duration::from_secs(90 * DAY as u64)),
        Reason::NotManaged(Ownership::Unmanaged),
        Reason::NotReady(SnapshotStatus::Pending),
        Reason::Newest,
    ])
    .unwrap();
    assert_eq!(
        json,
        serde_json::json!([
            {"kind": "beyond_retention", "text": "beyond retention 30", "retention": 30},
            {"kind": "older_than_max_age", "text": "older than max_age 90d",
             "max_age": "90d", "max_age_secs": 7_776_000},
            {"kind": "not_managed", "text": "not managed by this definition",
             "ownership": "unmanaged"},
            {"kind": "not_ready", "text": "not ready (pending)", "status": "pending"},
            {"kind": "newest", "text": "newest ready snapshot"},
        ])
    );
}

#[test]
fn decisions_serialize_with_action_fields() {
    let plan = plan(&daily(2), &policy(1, None), at_secs(2 * DAY));
    let json: serde_json::Value = serde_json::from_str(&render_json(&plan).unwrap()).unwrap();
    assert_eq!(json[0]["snapshot"]["name"], "daily-20260101_000000");
    assert_eq!(json[0]["snapshot"]["created_at"], "2026-01-01T00:00:00Z");
    assert_eq!(json[0]["ownership"], "recorded");
    assert_eq!(json[0]["keep"], false);
    assert_eq!(json[0]["reasons"][0]["kind"], "beyond_retention");
    assert_eq!(json[1]["keep"], true);
}

#[test]
fn format_duration_is_compact_and_parses_back() {
    let cases: &[(u64, &str)] = &[
        (0, "0s"),
        (59, "59s"),
        (90 * 60, "1h 30m"),
        (DAY as u64, "1d"),
        (36 * 3600, "1d 12h"),
        (90 * DAY as u64, "90d"),
        (DAY as u64 + 1, "1d 1s"),
    ];
    for (secs, text) in cases {
        let d = Duration::from_secs(*secs);
        assert_eq!(format_duration(d), *text);
        assert_eq!(humantime::parse_duration(text).unwrap(), d, "{text}");
    }
    assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
}

#[test]
fn render_table_shows_snapshot_created_action_reason() {
    let mut snaps = daily(2);
    snaps.push(candidate("manual", 5, Ownership::Unmanaged));
    let plan = plan(&snaps, &policy(1, None), at_secs(10 * DAY));
    let expected = "\
Snapshot               Created                  Action  Reason
---------------------  -----------------------  ------  -------------------------------
daily-20260101_000000  2026-01-01 00:00:00 UTC  delete  beyond retention 1
daily-20260102_000000  2026-01-02 00:00:00 UTC  keep    newest ready snapshot, last 1/1
manual                 2026-01-06 00:00:00 UTC  keep    not managed by this definition
";
    assert_eq!(render_table(&plan, chrono_tz::UTC), expected);
    // In another zone, the same instants in that zone, named.
    let table = render_table(&plan, chrono_tz::Europe::Bratislava);
    assert!(
        table.contains("daily-20260101_000000  2026-01-01 01:00:00 CET  delete"),
        "{table}"
    );
}

#[test]
fn plan_summary_counts_and_lists_deletions() {
    let plan = plan(&daily(4), &policy(1, None), at_secs(10 * DAY));
    let summary = PlanSummary::from_decisions(&plan);
    assert_eq!((summary.keep, summary.delete), (1, 3));
    assert_eq!(summary.to_delete[0].name, "daily-20260101_000000");
    assert_eq!(summary.to_string(), "1 to keep, 3 to delete");
}

// ------------------------------------------------------------------ holds

fn holds(entries: &[(&str, &str)]) -> Holds {
    entries
        .iter()
        .map(|(n, r)| (n.to_string(), r.to_string()))
        .collect()
}

#[test]
fn a_held_snapshot_is_kept_with_its_reason_and_takes_no_slot() {
    // Five daily snapshots, keep 2: days 3 and 4. Holding day 1 keeps it
    // too, and still keeps days 3 and 4 (restic-style: in addition).
    let snaps = daily(5);
    let name = |day: usize| snaps[day].snapshot.name.clone();
    let held = holds(&[(&name(1), "ticket 42")]);
    let plan = plan_held(&snaps, &held, &policy(2, None), at_secs(5 * DAY));
    assert_eq!(kept(&plan), [name(1), name(3), name(4)]);
    assert_eq!(deleted(&plan), [name(0), name(2)]);
    assert_eq!(reasons_of(&plan, &name(1)), ["held: ticket 42"]);
}

#[test]
fn a_held_newest_snapshot_is_not_the_newest_and_max_age_spares_it() {
    // The newest is held: the next one becomes "the newest" that nothing
    // deletes; max_age deletes neither the held one nor that one.
    let snaps = daily(4);
    let name = |day: usize| snaps[day].snapshot.name.clone();
    let held = holds(&[(&name(3), "")]);
    let plan = plan_held(&snaps, &held, &policy(1, Some(1)), at_secs(400 * DAY));
    assert_eq!(kept(&plan), [name(2), name(3)]);
    assert_eq!(reasons_of(&plan, &name(3)), ["held"]);
    assert_eq!(reasons_of(&plan, &name(2))[0], "newest ready snapshot");
}

#[test]
fn removal_keeps_held_snapshots_and_deletes_the_rest() {
    let snaps = daily(3);
    let name = |day: usize| snaps[day].snapshot.name.clone();
    let held = holds(&[(&name(0), "audit")]);
    let plan = plan_removal_held(&snaps, &held);
    assert_eq!(kept(&plan), [name(0)]);
    assert_eq!(deleted(&plan), [name(1), name(2)]);
    assert_eq!(reasons_of(&plan, &name(0)), ["held: audit"]);
}

#[test]
fn a_hold_on_a_name_the_definition_does_not_own_changes_nothing() {
    let snaps = vec![
        candidate("manual", 0, Ownership::Unmanaged),
        candidate("daily-x", 1, Ownership::Recorded),
    ];
    let held = holds(&[("manual", "x")]);
    let plan = plan_held(&snaps, &held, &policy(1, None), at_secs(2 * DAY));
    assert_eq!(
        reasons_of(&plan, "manual"),
        ["not managed by this definition"]
    );
}

#[test]
fn held_reason_has_stable_json() {
    let json =
        serde_json::to_value([Reason::Held("legal".into()), Reason::Held(String::new())]).unwrap();
    assert_eq!(
        json,
        serde_json::json!([
            {"kind": "held", "text": "held: legal", "hold_reason": "legal"},
            {"kind": "held", "text": "held", "hold_reason": ""},
        ])
    );
}

#[test]
fn store_records_carry_only_the_definitions_own_holds() {
    use crate::domain::{Hold, Identity, RecordState, SnapshotRecord};
    let id = Identity {
        provider: "fake".into(),
        target: "vm1".into(),
        disk_id: 0,
        name: "daily".into(),
    };
    let other = Identity {
        name: "weekly".into(),
        ..id.clone()
    };
    let record = |identity: &Identity, name: &str, hold: Option<&str>| SnapshotRecord {
        identity: identity.clone(),
        snapshot: name.into(),
        remote_id: None,
        run_id: None,
        created_at: None,
        size_bytes: None,
        state: RecordState::Present,
        adopted: false,
        recorded_at: t0(),
        deleted_at: None,
        delete_reason: None,
        hold: hold.map(|r| Hold {
            reason: r.into(),
            held_at: t0(),
        }),
        regions: None,
    };
    let records = StoreRecords::of(
        &id,
        &[
            record(&id, "a", Some("keep")),
            record(&id, "b", None),
            record(&other, "c", Some("theirs")),
        ],
    );
    assert_eq!(records.held, holds(&[("a", "keep")]));
}
