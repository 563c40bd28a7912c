//! Property tests for the planner's invariants.

use super::*;
use chrono_tz::Tz;
use proptest::prelude::*;

fn arb_ownership() -> impl Strategy<Value = Ownership> {
    prop_oneof![
        3 => Just(Ownership::Recorded),
        1 => Just(Ownership::Adopted),
        1 => Just(Ownership::OtherDefinition),
        1 => Just(Ownership::Unmanaged),
    ]
}

fn arb_status() -> impl Strategy<Value = SnapshotStatus> {
    prop_oneof![
        5 => Just(SnapshotStatus::Ok),
        1 => Just(SnapshotStatus::Pending),
        1 => Just(SnapshotStatus::Rollback),
        1 => Just(SnapshotStatus::Lost),
    ]
}

/// Small ranges on purpose: ties in time and name, duplicate names.
fn arb_candidate() -> impl Strategy<Value = Candidate> {
    (0i64..40, 0u8..6, 0u8..3, arb_ownership(), arb_status()).prop_map(
        |(hour, name, id, ownership, status)| Candidate {
            snapshot: RemoteSnapshot {
                // Ids independent of names, so that name order is tested.
                id: format!("{id}-{name}"),
                name: format!("daily-{name}"),
                created_at: at_secs(hour * 3600),
                status,
                size_bytes: None,
                note: None,
            },
            ownership,
        },
    )
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    (0u32..8, proptest::option::of(0u64..50)).prop_map(|(retention, hours)| {
        Policy::count(retention, hours.map(|h| Duration::from_secs(h * 3600)))
    })
}

fn now() -> DateTime<Utc> {
    at_secs(45 * 3600)
}

fn owned_ready(d: &Decision) -> bool {
    d.ownership.is_owned() && d.snapshot.status == SnapshotStatus::Ok
}

fn sort_key(s: &RemoteSnapshot) -> (DateTime<Utc>, &str, &str) {
    (s.created_at, &s.name, &s.id)
}

proptest! {
    #[test]
    fn every_input_gets_exactly_one_decision(
        snaps in proptest::collection::vec(arb_candidate(), 0..30),
        policy in arb_policy(),
    ) {
        let plan = plan(&snaps, &policy, now());
        let mut inputs: Vec<_> = snaps.iter().map(|c| (c.snapshot.clone(), c.ownership)).collect();
        let mut outputs: Vec<_> = plan.iter().map(|d| (d.snapshot.clone(), d.ownership)).collect();
        let key = |x: &(RemoteSnapshot, Ownership)| (x.0.created_at, x.0.name.clone(), x.0.id.clone(), x.1, format!("{:?}", x.0.status));
        inputs.sort_by_key(key);
        outputs.sort_by_key(key);
        prop_assert_eq!(inputs, outputs);
        prop_assert!(plan.iter().all(|d| !d.reasons.is_empty()));
    }

    #[test]
    fn never_deletes_a_snapshot_it_does_not_own_or_that_is_not_ready(
        snaps in proptest::collection::vec(arb_candidate(), 0..30),
        policy in arb_policy(),
    ) {
        for d in plan(&snaps, &policy, now()) {
            if !d.keep {
                prop_assert!(owned_ready(&d), "deleted {:?}", d);
            }
        }
    }

    #[test]
    fn keeps_the_newest_min_retention_owned_ready_without_max_age(
        snaps in proptest::collection::vec(arb_candidate(), 0..30),
        retention in 0u32..8,
    ) {
        let policy = Policy::count(retention, None);
        let plan = plan(&snaps, &policy, now());
        let ready: Vec<&Decision> = plan.iter().filter(|d| owned_ready(d)).collect();
        let keep = if retention == 0 { ready.len() } else { ready.len().min(retention as usize) };
        let kept = ready.iter().filter(|d| d.keep).count();
        prop_assert_eq!(kept, keep);
        // The kept ones are the newest: every kept one sorts after every deleted one.
        let newest_deleted = ready.iter().filter(|d| !d.keep).map(|d| sort_key(&d.snapshot)).max();
        let oldest_kept = ready.iter().filter(|d| d.keep).map(|d| sort_key(&d.snapshot)).min();
        if let (Some(del), Some(kep)) = (newest_deleted, oldest_kept) {
            prop_assert!(del <= kep);
        }
    }

    #[test]
    fn never_deletes_the_newest_owned_ready_snapshot(
        snaps in proptest::collection::vec(arb_candidate(), 0..30),
        policy in arb_policy(),
    ) {
        let plan = plan(&snaps, &policy, now());
        let newest = plan
            .iter()
            .filter(|d| owned_ready(d))
            .max_by(|a, b| sort_key(&a.snapshot).cmp(&sort_key(&b.snapshot)));
        if let Some(newest) = newest {
            let key = sort_key(&newest.snapshot);
            // Every decision sharing the newest key (exact duplicates) is
            // covered: at least one of them is kept.
            prop_assert!(plan.iter().any(|d| owned_ready(d) && sort_key(&d.snapshot) == key && d.keep));
        }
        // Something owned and ready always survives.
        let any_ready = plan.iter().any(owned_ready);
        prop_assert_eq!(plan.iter().any(|d| owned_ready(d) && d.keep), any_ready);
    }

    #[test]
    fn same_result_whatever_the_input_order(
        (snaps, shuffled) in proptest::collection::vec(arb_candidate(), 0..30)
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
        policy in arb_policy(),
    ) {
        prop_assert_eq!(plan(&snaps, &policy, now()), plan(&shuffled, &policy, now()));
    }

    #[test]
    fn applying_a_plan_and_replanning_deletes_nothing_more(
        snaps in proptest::collection::vec(arb_candidate(), 0..30),
        policy in arb_policy(),
    ) {
        let first = plan(&snaps, &policy, now());
        let remaining: Vec<Candidate> = first
            .iter()
            .filter(|d| d.keep)
            .map(|d| Candidate { snapshot: d.snapshot.clone(), ownership: d.ownership })
            .collect();
        let second = plan(&remaining, &policy, now());
        prop_assert!(second.iter().all(|d| d.keep), "second plan deletes {:?}",
            second.iter().filter(|d| !d.keep).collect::<Vec<_>>());
    }

    #[test]
    fn every_deletion_is_justified_by_count_or_age(
        snaps in proptest::collection::vec(arb_candidate(), 0..30),
        policy in arb_policy(),
    ) {
        let plan = plan(&snaps, &policy, now());
        let ready: Vec<&Decision> = plan.iter().filter(|d| owned_ready(d)).collect();
        for (i, d) in ready.iter().enumerate() {
            let beyond = policy.keep.last > 0 && ready.len() - i > policy.keep.last as usize;
            let old = policy.max_age.is_some_and(|m| {
                (now() - d.snapshot.created_at).to_std().is_ok_and(|age| age > m)
            });
            let newest = i + 1 == ready.len();
            prop_assert_eq!(d.keep, newest || !(beyond || old), "{:?}", d);
            prop_assert_eq!(d.reasons.contains(&Reason::BeyondRetention(policy.keep.last)), beyond && !newest);
        }
    }
}

// ------------------------------------------------------------------ tiers

const ZONES: [Tz; 4] = [
    Tz::UTC,
    chrono_tz::Europe::Bratislava,
    chrono_tz::America::New_York,
    chrono_tz::Australia::Lord_Howe,
];

fn arb_tiers() -> impl Strategy<Value = Tiers> {
    (
        0u32..4,
        0u32..5,
        0u32..5,
        0u32..4,
        0u32..4,
        0u32..3,
        proptest::option::of(1u64..200),
    )
        .prop_map(
            |(last, hourly, daily, weekly, monthly, yearly, within)| Tiers {
                last,
                hourly,
                daily,
                weekly,
                monthly,
                yearly,
                within: within.map(|h| Duration::from_secs(h * 3600)),
            },
        )
}

fn arb_tier_policy() -> impl Strategy<Value = Policy> {
    (
        arb_tiers(),
        proptest::option::of(1u64..3000),
        0..ZONES.len(),
    )
        .prop_map(|(keep, max_age_hours, zone)| Policy {
            keep,
            max_age: max_age_hours.map(|h| Duration::from_secs(h * 3600)),
            zone: ZONES[zone],
        })
}

/// Creation times over about two years, around DST changes and year ends,
/// with several snapshots an hour at times.
fn arb_times() -> impl Strategy<Value = Vec<i64>> {
    proptest::collection::btree_set(0i64..(2 * 366 * 24 * 4), 0..40)
        .prop_map(|quarters| quarters.into_iter().map(|q| q * 900).collect())
}

fn own_ready(secs: &[i64]) -> Vec<Candidate> {
    secs.iter()
        .map(|s| Candidate {
            snapshot: RemoteSnapshot {
                id: s.to_string(),
                name: format!("daily-{s}"),
                created_at: at_secs(*s),
                status: SnapshotStatus::Ok,
                size_bytes: None,
                note: None,
            },
            ownership: Ownership::Recorded,
        })
        .collect()
}

fn kept_names(decisions: &[Decision]) -> Vec<String> {
    decisions
        .iter()
        .filter(|d| d.keep)
        .map(|d| d.snapshot.name.clone())
        .collect()
}

/// Which counted rules keep the snapshot at `index` of `newest_first`,
/// stated independently of the planner: it is the newest of its bucket, and
/// at most N buckets (its own included) have a snapshot at or after it.
fn rules_keeping(newest_first: &[DateTime<Utc>], index: usize, policy: &Policy) -> Vec<Tier> {
    use chrono::{Datelike, Offset, Timelike};
    let key = |tier: Tier, i: usize| -> (i64, i64, i64, i64) {
        let l = newest_first[i].with_timezone(&policy.zone);
        match tier {
            Tier::Last => (i as i64, 0, 0, 0),
            Tier::Hourly => (
                l.date_naive().num_days_from_ce().into(),
                l.hour().into(),
                l.offset().fix().local_minus_utc().into(),
                0,
            ),
            Tier::Daily => (l.date_naive().num_days_from_ce().into(), 0, 0, 0),
            Tier::Weekly => (l.iso_week().year().into(), l.iso_week().week().into(), 0, 0),
            Tier::Monthly => (l.year().into(), l.month().into(), 0, 0),
            Tier::Yearly => (l.year().into(), 0, 0, 0),
        }
    };
    policy
        .keep
        .counts()
        .into_iter()
        .filter(|(tier, n)| {
            let mine = key(*tier, index);
            let newest_of_bucket = (0..index).all(|j| key(*tier, j) != mine);
            let buckets: std::collections::BTreeSet<_> =
                (0..=index).map(|j| key(*tier, j)).collect();
            *n > 0 && newest_of_bucket && buckets.len() <= *n as usize
        })
        .map(|(tier, _)| tier)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn tiers_never_delete_what_is_not_owned_and_ready(
        snaps in proptest::collection::vec(arb_candidate(), 0..30),
        policy in arb_tier_policy(),
    ) {
        for d in plan(&snaps, &policy, now()) {
            prop_assert!(d.keep || owned_ready(&d), "deleted {:?}", d);
            prop_assert!(!d.reasons.is_empty());
        }
    }

    #[test]
    fn tier_results_do_not_depend_on_input_order(
        (snaps, shuffled) in proptest::collection::vec(arb_candidate(), 0..30)
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
        policy in arb_tier_policy(),
    ) {
        prop_assert_eq!(plan(&snaps, &policy, now()), plan(&shuffled, &policy, now()));
    }

    #[test]
    fn pruning_after_every_run_keeps_what_one_pass_at_the_end_keeps(
        times in arb_times(),
        policy in arb_tier_policy(),
    ) {
        let mut present: Vec<Candidate> = Vec::new();
        for c in own_ready(&times) {
            let now = c.snapshot.created_at;
            present.push(c);
            present = plan(&present, &policy, now)
                .into_iter()
                .filter(|d| d.keep)
                .map(|d| Candidate { snapshot: d.snapshot, ownership: d.ownership })
                .collect();
        }
        let end = times.last().map_or_else(now, |s| at_secs(*s));
        let one_pass = plan(&own_ready(&times), &policy, end);
        let incremental: Vec<String> = present.iter().map(|c| c.snapshot.name.clone()).collect();
        prop_assert_eq!(incremental, kept_names(&one_pass));
    }

    #[test]
    fn reasons_list_every_rule_that_keeps_a_snapshot(
        times in arb_times(),
        policy in arb_tier_policy(),
    ) {
        let decisions = plan(&own_ready(&times), &policy, now());
        let newest_first: Vec<DateTime<Utc>> =
            decisions.iter().rev().map(|d| d.snapshot.created_at).collect();
        for (index, d) in decisions.iter().rev().enumerate() {
            let listed: Vec<Tier> = d.reasons.iter().filter_map(|r| match r {
                Reason::Tier { tier, .. } => Some(*tier),
                _ => None,
            }).collect();
            let expected = rules_keeping(&newest_first, index, &policy);
            let within = policy.keep.within.is_some_and(|w| {
                (newest_first[0] - d.snapshot.created_at).to_std().is_ok_and(|age| age < w)
            });
            let too_old = d.reasons.iter().any(|r| matches!(r, Reason::OlderThanMaxAge(_)));
            if d.keep || !too_old || index == 0 {
                prop_assert_eq!(&listed, &expected, "{:?}", d);
                prop_assert_eq!(d.reasons.contains(&Reason::Within(policy.keep.within.unwrap_or_default())), within);
            }
            let kept_by_rule = !expected.is_empty() || within || policy.keep.is_off();
            prop_assert_eq!(d.keep, index == 0 || (kept_by_rule && !too_old), "{:?}", d);
        }
    }
}

// ------------------------------------------------------------------ holds

/// Holds on some of the candidates' names (owned or not: a hold recorded
/// for a name that another definition owns must not matter either).
fn arb_holds() -> impl Strategy<Value = Holds> {
    proptest::collection::btree_map(
        (0u8..6).prop_map(|n| format!("daily-{n}")),
        prop_oneof![Just(String::new()), Just("legal".to_owned())],
        0..4,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn nothing_held_or_foreign_is_ever_deleted(
        snaps in proptest::collection::vec(arb_candidate(), 0..30),
        held in arb_holds(),
        policy in arb_tier_policy(),
    ) {
        for d in plan_held(&snaps, &held, &policy, now()) {
            if !d.keep {
                prop_assert!(d.ownership.is_owned(), "deleted a foreign snapshot {:?}", d);
                prop_assert!(!held.contains_key(&d.snapshot.name), "deleted a held snapshot {:?}", d);
            }
            if d.ownership.is_owned() && held.contains_key(&d.snapshot.name) {
                prop_assert_eq!(&d.reasons, &vec![Reason::Held(held[&d.snapshot.name].clone())]);
            }
        }
        for d in plan_removal_held(&snaps, &held) {
            prop_assert!(d.keep || (d.ownership.is_owned() && !held.contains_key(&d.snapshot.name)),
                "removal deleted {:?}", d);
        }
    }

    /// A hold keeps its snapshot in addition: the other snapshots get
    /// exactly the plan they would get if the held ones were not listed.
    #[test]
    fn held_snapshots_take_no_tier_slot(
        snaps in proptest::collection::vec(arb_candidate(), 0..30),
        held in arb_holds(),
        policy in arb_tier_policy(),
    ) {
        let is_held = |c: &Candidate| c.ownership.is_owned() && held.contains_key(&c.snapshot.name);
        let with_holds: Vec<Decision> = plan_held(&snaps, &held, &policy, now())
            .into_iter()
            .filter(|d| !(d.ownership.is_owned() && held.contains_key(&d.snapshot.name)))
            .collect();
        let rest: Vec<Candidate> = snaps.iter().filter(|c| !is_held(c)).cloned().collect();
        prop_assert_eq!(with_holds, plan(&rest, &policy, now()));
    }
}
