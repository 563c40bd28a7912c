//! Property tests for the planner's invariants.

use super::*;
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
