//! The scheduler and run engine against the in-memory fake provider, on
//! tokio's paused clock: every wait is virtual, so days of schedule take
//! milliseconds. The store is a real database: a sqlite file in a temporary
//! directory, or a schema of its own on PostgreSQL (`support::db`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use snapsched::clock::Clock;
use snapsched::domain::definition::{DefinitionSpec, Source};
use snapsched::domain::ProviderKind;
use snapsched::domain::{Run, RunState, Trigger};
use snapsched::provider::fake::{Call, FakeProvider};
use snapsched::provider::ProviderError;
use snapsched::run::snapshot_name;
use snapsched::scheduler::{Scheduler, Settings};
use snapsched::store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::paused::{all_final, env, runs, settings, spec_with, utc, Env};

fn spec(name: &str, target: &str, schedule: &str) -> DefinitionSpec {
    spec_with(name, target, schedule, None, None)
}

fn scheduler(env: &Env, clock: Clock, settings: Settings) -> Scheduler<FakeProvider> {
    Scheduler::new(
        env.store.clone(),
        env.providers.clone(),
        clock,
        settings,
        CancellationToken::new(),
    )
}

/// Poll the store (in virtual time) until `done` holds, for at most `limit`
/// of virtual time.
async fn wait_until<F>(
    store: &Store,
    name: &str,
    step: Duration,
    limit: Duration,
    done: F,
) -> Vec<Run>
where
    F: Fn(&[Run]) -> bool,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let h = runs(store, name).await;
        if done(&h) {
            return h;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within {limit:?}; runs: {h:#?}"
        );
        // Give the sqlite threads real time before virtual time moves on.
        for _ in 0..2000 {
            tokio::task::yield_now().await;
        }
        tokio::time::advance(step).await;
    }
}

fn spawn_loop(mut s: Scheduler<FakeProvider>) -> JoinHandle<Scheduler<FakeProvider>> {
    tokio::spawn(async move {
        s.start().await.expect("scheduler starts");
        s.run(Duration::from_secs(30)).await.expect("loop runs");
        s
    })
}

fn looping(
    env: &Env,
    clock: Clock,
    settings: Settings,
) -> (CancellationToken, JoinHandle<Scheduler<FakeProvider>>) {
    looping_with(env, clock, settings, None)
}

fn looping_with(
    env: &Env,
    clock: Clock,
    settings: Settings,
    tick: Option<snapsched::scheduler::Tick>,
) -> (CancellationToken, JoinHandle<Scheduler<FakeProvider>>) {
    let token = CancellationToken::new();
    let mut s = Scheduler::new(
        env.store.clone(),
        env.providers.clone(),
        clock,
        settings,
        token.clone(),
    );
    if let Some(tick) = tick {
        s.on_tick(tick);
    }
    (token, spawn_loop(s))
}

/// Advance virtual time until every run of `name` is final.
async fn settle(store: &Store, name: &str) {
    wait_until(
        store,
        name,
        Duration::from_secs(1),
        Duration::from_secs(600),
        all_final,
    )
    .await;
}

#[tokio::test]
async fn fires_exactly_at_the_slot_once_per_slot() {
    let env = env(Duration::ZERO).await;
    let start = utc(2026, 1, 10, 0, 0, 30);
    let clock = Clock::tokio(start);
    env.store
        .insert_definition(
            &spec("hourly", "web01", "0 * * * *"),
            Source::Cli,
            None,
            start,
        )
        .await
        .expect("definition inserted");
    let mut s = scheduler(&env, clock, settings());
    s.start().await.expect("start");
    let id = spec("hourly", "web01", "0 * * * *").identity;
    let first = utc(2026, 1, 10, 1, 0, 0);
    assert_eq!(s.next_fire(&id), Some(first));

    // One second before the slot nothing fires; at the slot it does.
    tokio::time::advance((first - start).to_std().expect("positive") - Duration::from_secs(1))
        .await;
    assert_eq!(s.fire_due().await.expect("fire"), 0);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(clock.now(), first);
    assert_eq!(s.fire_due().await.expect("fire"), 1);
    assert_eq!(s.fire_due().await.expect("fire"), 0, "a slot fires once");
    s.drain().await;

    for _ in 0..2 {
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(s.fire_due().await.expect("fire"), 1);
        s.drain().await;
    }
    let h = runs(&env.store, "hourly").await;
    let slots: Vec<_> = h.iter().map(|r| r.slot).collect();
    assert_eq!(
        slots,
        vec![first, utc(2026, 1, 10, 2, 0, 0), utc(2026, 1, 10, 3, 0, 0)]
    );
    for r in &h {
        assert_eq!(r.state, RunState::Succeeded, "{r:?}");
        assert_eq!(r.trigger, Trigger::Schedule);
        assert_eq!(r.created_at, r.slot, "claimed at the slot instant");
        assert_eq!(
            r.snapshot_name.as_deref(),
            Some(snapshot_name("hourly", r.slot).as_str())
        );
    }
    let target =
        snapsched::domain::definition::parse_target("web01", ProviderKind::Fake).expect("target");
    assert_eq!(
        env.fake.names(&target, id.disk_id),
        vec![
            "hourly-20260110_010000",
            "hourly-20260110_020000",
            "hourly-20260110_030000"
        ]
    );
}

#[tokio::test]
async fn fires_at_0530_local_on_both_sides_of_the_dst_change() {
    let env = env(Duration::ZERO).await;
    let start = utc(2026, 3, 28, 4, 0, 0);
    let clock = Clock::tokio(start);
    let def = spec_with(
        "daily",
        "web01",
        "30 5 * * *",
        Some("Europe/Bratislava"),
        None,
    );
    env.store
        .insert_definition(&def, Source::Cli, None, start)
        .await
        .expect("definition inserted");
    let mut st = settings();
    st.change_poll = Duration::from_secs(3600);
    let (token, handle) = looping(&env, clock, st);
    let h = wait_until(
        &env.store,
        "daily",
        Duration::from_secs(120),
        Duration::from_secs(2 * 86400),
        |h| h.len() >= 2 && all_final(h),
    )
    .await;
    token.cancel();
    handle.await.expect("loop ends");
    // 05:30 CET is 04:30 UTC; after 2026-03-29 02:00 it is CEST, 03:30 UTC.
    let slots: Vec<_> = h.iter().map(|r| r.slot).collect();
    assert_eq!(
        slots,
        vec![utc(2026, 3, 28, 4, 30, 0), utc(2026, 3, 29, 3, 30, 0)]
    );
    for r in &h {
        assert_eq!(r.state, RunState::Succeeded, "{r:?}");
        assert_eq!(
            r.snapshot_name.as_deref(),
            Some(snapshot_name("daily", r.slot).as_str())
        );
    }
}

#[tokio::test]
async fn restart_does_not_rerun_a_slot() {
    let env = env(Duration::ZERO).await;
    let start = utc(2026, 1, 10, 0, 59, 0);
    env.store
        .insert_definition(
            &spec("hourly", "web01", "0 * * * *"),
            Source::Cli,
            None,
            start,
        )
        .await
        .expect("definition inserted");
    let clock = Clock::tokio(start);
    let mut s = scheduler(&env, clock, settings());
    s.start().await.expect("start");
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(s.fire_due().await.expect("fire"), 1);
    s.drain().await;
    drop(s);

    // A new process, a few seconds later, on the same store.
    let clock = Clock::tokio(utc(2026, 1, 10, 1, 0, 5));
    let mut s = scheduler(&env, clock, settings());
    s.start().await.expect("restart");
    assert_eq!(s.fire_due().await.expect("fire"), 0);
    s.drain().await;
    let h = runs(&env.store, "hourly").await;
    assert_eq!(h.len(), 1, "{h:#?}");
    assert_eq!(h[0].slot, utc(2026, 1, 10, 1, 0, 0));
    let id = spec("hourly", "web01", "0 * * * *").identity;
    assert_eq!(s.next_fire(&id), Some(utc(2026, 1, 10, 2, 0, 0)));
}

async fn one_run_then_down(env: &Env, def: &DefinitionSpec) {
    let start = utc(2026, 1, 10, 0, 59, 0);
    env.store
        .insert_definition(def, Source::Cli, None, start)
        .await
        .expect("definition inserted");
    let mut s = scheduler(env, Clock::tokio(start), settings());
    s.start().await.expect("start");
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(s.fire_due().await.expect("fire"), 1);
    s.drain().await;
}

#[tokio::test]
async fn after_downtime_only_the_latest_slot_runs_and_the_rest_are_missed() {
    let env = env(Duration::ZERO).await;
    one_run_then_down(&env, &spec("hourly", "web01", "0 * * * *")).await;
    // Down from 01:00 to 06:30: 02..05 are missed, 06:00 is 30 min late.
    let mut s = scheduler(&env, Clock::tokio(utc(2026, 1, 10, 6, 30, 0)), settings());
    s.start().await.expect("restart");
    assert_eq!(s.fire_due().await.expect("fire"), 1);
    s.drain().await;
    let h = runs(&env.store, "hourly").await;
    assert_eq!(h.len(), 3, "{h:#?}");
    assert_eq!(h[1].state, RunState::Missed);
    assert_eq!(h[1].missed_count, Some(4));
    assert_eq!(h[1].slot, utc(2026, 1, 10, 5, 0, 0));
    assert_eq!(h[2].slot, utc(2026, 1, 10, 6, 0, 0));
    assert_eq!(h[2].trigger, Trigger::Catchup);
    assert_eq!(h[2].state, RunState::Succeeded);
}

#[tokio::test]
async fn beyond_the_catch_up_deadline_nothing_runs() {
    let env = env(Duration::ZERO).await;
    let def = spec_with("hourly", "web01", "0 * * * *", None, Some("10m"));
    one_run_then_down(&env, &def).await;
    let mut s = scheduler(&env, Clock::tokio(utc(2026, 1, 10, 6, 30, 0)), settings());
    s.start().await.expect("restart");
    assert_eq!(s.fire_due().await.expect("fire"), 0);
    s.drain().await;
    let h = runs(&env.store, "hourly").await;
    assert_eq!(h.len(), 2, "{h:#?}");
    assert_eq!(h[1].state, RunState::Missed);
    assert_eq!(h[1].missed_count, Some(5));
    assert_eq!(h[1].slot, utc(2026, 1, 10, 6, 0, 0));
}

#[tokio::test]
async fn a_slot_during_a_long_run_is_skipped() {
    let env = env(Duration::from_secs(150)).await;
    let start = utc(2026, 1, 10, 0, 0, 30);
    env.store
        .insert_definition(
            &spec("minutely", "web01", "* * * * *"),
            Source::Cli,
            None,
            start,
        )
        .await
        .expect("definition inserted");
    let (token, handle) = looping(&env, Clock::tokio(start), settings());
    let succeeded = |h: &[Run]| h.iter().filter(|r| r.state == RunState::Succeeded).count();
    let h = wait_until(
        &env.store,
        "minutely",
        Duration::from_secs(1),
        Duration::from_secs(900),
        |h| succeeded(h) >= 2 && all_final(h),
    )
    .await;
    token.cancel();
    handle.await.expect("loop ends");
    // The first run takes 150 s: the slots that come meanwhile are skipped,
    // and the next slot after it ends runs again.
    assert_eq!(h[0].state, RunState::Succeeded, "{h:#?}");
    let second = h
        .iter()
        .skip(1)
        .position(|r| r.state == RunState::Succeeded)
        .expect("a second success")
        + 1;
    assert!(second >= 2, "at least one slot was skipped: {h:#?}");
    for r in &h[1..second] {
        assert_eq!(r.state, RunState::Skipped, "{h:#?}");
        assert!(
            r.error.as_deref().unwrap_or("").contains("overlap"),
            "{r:?}"
        );
    }
    let first_end = h[0].finished_at.expect("finished");
    assert!(h[second].slot > first_end, "{h:#?}");
}

#[tokio::test]
async fn a_panicking_run_fails_with_the_panic_message_and_the_definition_goes_on() {
    let env = env(Duration::ZERO).await;
    let start = utc(2026, 1, 10, 0, 0, 30);
    env.store
        .insert_definition(
            &spec("minutely", "web01", "* * * * *"),
            Source::Cli,
            None,
            start,
        )
        .await
        .expect("definition inserted");
    env.fake
        .panic_next(Call::Create, "DateTime + TimeDelta overflowed");
    let (token, handle) = looping(&env, Clock::tokio(start), settings());
    let h = wait_until(
        &env.store,
        "minutely",
        Duration::from_secs(1),
        Duration::from_secs(600),
        |h| h.iter().any(|r| r.state == RunState::Succeeded) && all_final(h),
    )
    .await;
    token.cancel();
    handle.await.expect("the loop survives a panicking run");
    // The first run panicked: it is failed with the panic's message, not
    // left in flight; the next slot runs and succeeds.
    assert_eq!(h[0].state, RunState::Failed, "{h:#?}");
    assert!(
        h[0].error
            .as_deref()
            .unwrap_or("")
            .contains("DateTime + TimeDelta overflowed"),
        "{:?}",
        h[0]
    );
    assert!(
        env.store
            .active_run(&h[0].identity)
            .await
            .expect("active run")
            .is_none(),
        "{h:#?}"
    );
    assert!(
        h[1..].iter().all(|r| r.state != RunState::Skipped),
        "no slot after the panic is skipped: {h:#?}"
    );
}

#[tokio::test]
async fn a_huge_provider_error_is_stored_truncated() {
    let env = env(Duration::ZERO).await;
    let start = utc(2026, 1, 10, 0, 59, 0);
    env.store
        .insert_definition(
            &spec("hourly", "web01", "0 * * * *"),
            Source::Cli,
            None,
            start,
        )
        .await
        .expect("definition inserted");
    let mut s = scheduler(&env, Clock::tokio(start), settings());
    s.start().await.expect("start");
    let page = format!("<html>{}</html>", "x".repeat(10 << 20));
    env.fake
        .fail_next(Call::Create, ProviderError::permanent(page));
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(s.fire_due().await.expect("fire"), 1);
    settle(&env.store, "hourly").await;
    s.drain().await;
    let h = runs(&env.store, "hourly").await;
    assert_eq!(h[0].state, RunState::Failed, "{:?}", h[0].state);
    let error = h[0].error.as_deref().unwrap_or("");
    assert!(error.len() <= 4200, "{} bytes stored", error.len());
    assert!(error.starts_with("<html>xxx"), "{}", &error[..40]);
    assert!(
        error.contains("[truncated: 10485773 bytes in all]"),
        "{}",
        &error[error.len() - 60..]
    );
}

#[tokio::test]
async fn max_concurrent_runs_is_never_exceeded() {
    let env = env(Duration::from_secs(30)).await;
    let start = utc(2026, 1, 10, 0, 59, 0);
    for i in 1..=5 {
        let def = spec("hourly", &format!("web0{i}"), "0 * * * *");
        env.store
            .insert_definition(&def, Source::Cli, None, start)
            .await
            .expect("definition inserted");
    }
    let mut st = settings();
    st.max_concurrent_runs = 2;
    let (token, handle) = looping(&env, Clock::tokio(start), st);
    let mut peak = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1200);
    loop {
        let h = runs(&env.store, "hourly").await;
        let working = h
            .iter()
            .filter(|r| {
                matches!(
                    r.state,
                    RunState::Creating | RunState::Waiting | RunState::Pruning
                )
            })
            .count();
        assert!(working <= 2, "{working} runs in flight: {h:#?}");
        peak = peak.max(working);
        if h.len() == 5 && h.iter().all(|r| r.state == RunState::Succeeded) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{h:#?}");
        tokio::time::advance(Duration::from_millis(500)).await;
    }
    token.cancel();
    handle.await.expect("loop ends");
    assert_eq!(peak, 2, "the limit was reached");
}

#[tokio::test]
async fn transient_errors_are_retried_and_permanent_ones_fail_the_run() {
    let env = env(Duration::ZERO).await;
    let start = utc(2026, 1, 10, 0, 59, 0);
    env.store
        .insert_definition(
            &spec("hourly", "web01", "0 * * * *"),
            Source::Cli,
            None,
            start,
        )
        .await
        .expect("definition inserted");
    let mut s = scheduler(&env, Clock::tokio(start), settings());
    s.start().await.expect("start");
    env.fake.fail_next(
        Call::Create,
        ProviderError::transient("503 service unavailable"),
    );
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(s.fire_due().await.expect("fire"), 1);
    settle(&env.store, "hourly").await;
    s.drain().await;
    env.fake.fail_next(
        Call::Create,
        ProviderError::permanent("droplet web01 not found"),
    );
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(s.fire_due().await.expect("fire"), 1);
    settle(&env.store, "hourly").await;
    s.drain().await;
    let h = runs(&env.store, "hourly").await;
    assert_eq!(h.len(), 2, "{h:#?}");
    assert_eq!(h[0].state, RunState::Succeeded, "{:?}", h[0]);
    assert_eq!(h[0].attempts, 2);
    assert_eq!(h[1].state, RunState::Failed, "{:?}", h[1]);
    assert!(
        h[1].error
            .as_deref()
            .unwrap_or("")
            .contains("droplet web01 not found"),
        "{:?}",
        h[1]
    );
    assert_eq!(env.fake.calls(Call::Create), 3);
}

#[tokio::test]
async fn definition_changes_in_the_store_are_picked_up_while_running() {
    let env = env(Duration::ZERO).await;
    let start = utc(2026, 1, 10, 0, 0, 30);
    let clock = Clock::tokio(start);
    env.store
        .insert_definition(
            &spec("daily", "web01", "0 0 * * *"),
            Source::Cli,
            None,
            start,
        )
        .await
        .expect("definition inserted");
    let (seen, watch) = tokio::sync::watch::channel(0usize);
    let tick: snapsched::scheduler::Tick = Arc::new(move |st| {
        seen.send_replace(st.definitions);
    });
    let (token, handle) = looping_with(&env, clock, settings(), Some(tick));
    tokio::time::advance(Duration::from_secs(5)).await;
    let added = clock.now();
    let mut def = spec("minutely", "web02", "* * * * *");
    env.store
        .insert_definition(&def, Source::Cli, None, added)
        .await
        .expect("definition inserted");
    let h = wait_until(
        &env.store,
        "minutely",
        Duration::from_millis(500),
        Duration::from_secs(120),
        |h| !h.is_empty() && all_final(h),
    )
    .await;
    assert_eq!(
        h[0].slot,
        utc(2026, 1, 10, 0, 1, 0),
        "the first slot after adding"
    );
    assert_eq!(h[0].state, RunState::Succeeded);

    // Disable it half-way through a minute; no further slot runs.
    tokio::time::advance(Duration::from_secs(30)).await;
    def.active = false;
    let changed = env
        .store
        .update_definition(&def, clock.now())
        .await
        .expect("definition updated");
    assert!(changed, "the update found the definition");
    // Let the loop see the change before moving time past the next slot.
    // Virtual time moves in small steps, each after a bounded number of
    // yields so the loop's sqlite work (real time) can keep up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while *watch.borrow() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "disable not picked up within 2 s: {} definitions scheduled, generation {:?}",
            *watch.borrow(),
            env.store.definitions_generation().await
        );
        for _ in 0..2000 {
            tokio::task::yield_now().await;
        }
        tokio::time::advance(Duration::from_millis(50)).await;
    }
    let before = runs(&env.store, "minutely").await.len();
    for _ in 0..300 {
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    let after = runs(&env.store, "minutely").await;
    assert_eq!(after.len(), before, "{after:#?}");
    token.cancel();
    handle.await.expect("loop ends");
}

/// A run of `def` at `slot` left in `creating`, as a process that died after
/// sending the create request leaves it; returns the snapshot name it sent.
async fn left_creating(env: &Env, def: &DefinitionSpec, slot: DateTime<Utc>) -> String {
    use snapsched::domain::Claim;
    use snapsched::store::runs::Update;

    env.store
        .insert_definition(def, Source::Cli, None, slot)
        .await
        .expect("definition inserted");
    let run = match env
        .store
        .claim_run(&def.identity, slot, Trigger::Schedule, slot)
        .await
        .expect("claim")
    {
        Claim::Claimed(run) => run,
        other => panic!("slot not claimed: {other:?}"),
    };
    let snap = snapshot_name(&def.identity.name, slot);
    env.store
        .update_run(
            &run,
            Update {
                state: Some(RunState::Creating),
                snapshot_name: Some(&snap),
                add_attempt: true,
                started: true,
                ..Default::default()
            },
            slot,
        )
        .await
        .expect("creating");
    snap
}

#[tokio::test]
async fn a_run_resumed_after_run_timeout_adopts_its_snapshot_or_is_interrupted() {
    use snapsched::domain::Target;

    let env = env(Duration::ZERO).await;
    let slot = utc(2026, 1, 10, 1, 0, 0);
    let made_name = left_creating(&env, &spec("made", "made", "0 0 1 1 *"), slot).await;
    left_creating(&env, &spec("lost", "lost", "0 0 1 1 *"), slot).await;
    // Only the first request reached the provider.
    env.fake
        .insert(&Target::Vm("made".to_owned()), 1, &made_name, slot);

    // Back up seven hours later, past the 6 h run_timeout.
    let (token, handle) = looping(
        &env,
        Clock::tokio(slot + chrono::Duration::hours(7)),
        settings(),
    );
    settle(&env.store, "made").await;
    settle(&env.store, "lost").await;
    token.cancel();
    handle.await.expect("loop ends");
    let made = runs(&env.store, "made").await;
    let lost = runs(&env.store, "lost").await;

    assert_eq!(made.len(), 1, "{made:#?}");
    assert_eq!(made[0].state, RunState::Succeeded, "{made:#?}");
    assert_eq!(made[0].snapshot_name.as_deref(), Some(made_name.as_str()));
    assert!(made[0].snapshot_id.is_some(), "{made:#?}");
    assert_eq!(lost.len(), 1, "{lost:#?}");
    assert_eq!(lost[0].state, RunState::Interrupted, "{lost:#?}");
    assert_eq!(
        env.fake.names(&Target::Vm("lost".to_owned()), 1),
        Vec::<String>::new(),
        "nothing may be created after the deadline"
    );
}

#[tokio::test]
async fn history_keep_bounds_the_runs_kept_per_definition() {
    let env = env(Duration::ZERO).await;
    let start = utc(2026, 1, 10, 0, 0, 30);
    env.store
        .insert_definition(
            &spec("often", "web01", "* * * * *"),
            Source::Cli,
            None,
            start,
        )
        .await
        .expect("definition inserted");
    let mut settings = settings();
    settings.run.history_keep = 3;
    let (token, handle) = looping(&env, Clock::tokio(start), settings);
    let last = utc(2026, 1, 10, 0, 8, 0);
    let h = wait_until(
        &env.store,
        "often",
        Duration::from_secs(10),
        Duration::from_secs(900),
        |h| h.len() == 3 && all_final(h) && h.last().is_some_and(|r| r.slot == last),
    )
    .await;
    token.cancel();
    handle.await.expect("loop ends");
    let slots: Vec<_> = h.iter().map(|r| r.slot).collect();
    assert_eq!(
        slots,
        vec![utc(2026, 1, 10, 0, 6, 0), utc(2026, 1, 10, 0, 7, 0), last],
        "the newest three are kept"
    );
}

#[tokio::test]
async fn a_run_of_a_since_deactivated_definition_is_still_finished() {
    let env = env(Duration::ZERO).await;
    let slot = utc(2026, 1, 10, 1, 0, 0);
    let mut def = spec("paused", "web01", "0 * * * *");
    def.active = false;
    let name = left_creating(&env, &def, slot).await;

    let (token, handle) = looping(
        &env,
        Clock::tokio(slot + chrono::Duration::minutes(2)),
        settings(),
    );
    settle(&env.store, "paused").await;
    token.cancel();
    handle.await.expect("loop ends");
    let h = runs(&env.store, "paused").await;
    assert_eq!(h.len(), 1, "an inactive definition got a new run: {h:#?}");
    assert_eq!(h[0].state, RunState::Succeeded, "{h:#?}");
    assert_eq!(
        env.fake
            .names(&snapsched::domain::Target::Vm("web01".to_owned()), 1),
        vec![name]
    );
}

/// A run of this node's that no task drives (a store outage ended its
/// task, say) is resumed at the node's next lease renewal, though its owner
/// is live; what tells it apart is that the pool holds no run of its
/// definition.
#[tokio::test]
async fn a_run_of_this_node_without_a_task_is_resumed_at_the_next_renewal() {
    let env = env(Duration::ZERO).await;
    let start = utc(2026, 1, 10, 0, 0, 0);
    let def = spec("orphan", "web01", "0 0 1 1 *");
    env.store
        .insert_definition(&def, Source::Cli, None, start)
        .await
        .expect("definition inserted");
    // Renewals follow the real clock (a lease is real time), every third
    // of the lease.
    let mut short = settings();
    short.lease_ttl = Duration::from_millis(1500);
    let token = CancellationToken::new();
    let mut s = Scheduler::new(
        env.store.clone(),
        env.providers.clone(),
        Clock::tokio(start),
        short,
        token.clone(),
    );
    s.start().await.expect("start");
    let me = env.store.node_id().expect("the scheduler joined as a node");
    let claim = env
        .store
        .claim_run(&def.identity, start, Trigger::Manual, start)
        .await
        .expect("claim");
    let snapsched::domain::Claim::Claimed(run) = claim else {
        panic!("not claimed: {claim:?}");
    };
    assert_eq!(run.owner_node.as_deref(), Some(&*me), "{run:?}");
    let handle = tokio::spawn(async move {
        s.run(Duration::from_secs(30)).await.expect("loop runs");
    });
    // Virtual time moves on while real time brings the renewal.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !all_final(&runs(&env.store, "orphan").await) {
        assert!(
            std::time::Instant::now() < deadline,
            "not resumed within 60 s of real time: {:#?}",
            runs(&env.store, "orphan").await
        );
        for _ in 0..2000 {
            tokio::task::yield_now().await;
        }
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    token.cancel();
    handle.await.expect("loop ends");
    let h = runs(&env.store, "orphan").await;
    assert_eq!(h.len(), 1, "{h:#?}");
    assert_eq!(
        (h[0].id, h[0].state),
        (run.id, RunState::Succeeded),
        "{h:#?}"
    );
    assert_eq!(
        env.fake
            .names(&snapsched::domain::Target::Vm("web01".to_owned()), 1)
            .len(),
        1
    );
}

#[tokio::test]
async fn claim_runs_in_one_batch_claims_new_slots_and_names_taken_and_busy_ones() {
    use snapsched::domain::definition::Identity;
    use snapsched::domain::Claim;

    let env = env(Duration::ZERO).await;
    let slot = utc(2026, 1, 10, 1, 0, 0);
    // More than one statement's worth of rows.
    let ids: Vec<Identity> = (0..600)
        .map(|i| spec(&format!("d{i}"), "web01", "0 * * * *").identity)
        .collect();
    let first: Vec<_> = ids.iter().map(|id| (id, slot, Trigger::Schedule)).collect();
    let claims = env.store.claim_runs(&first, slot).await.expect("claims");
    assert!(claims.iter().all(|c| matches!(c, Claim::Claimed(_))));
    for (c, id) in claims.iter().zip(&ids) {
        let Claim::Claimed(run) = c else {
            unreachable!()
        };
        assert_eq!((&run.identity, run.slot), (id, slot), "claims out of order");
    }

    // d0's slot again, d1 at a new slot while its first run is in flight,
    // and a definition never claimed before.
    let fresh = spec("fresh", "web01", "0 * * * *").identity;
    let later = slot + chrono::Duration::hours(1);
    let second = vec![
        (&ids[0], slot, Trigger::Schedule),
        (&ids[1], later, Trigger::Schedule),
        (&fresh, later, Trigger::Schedule),
    ];
    let claims = env.store.claim_runs(&second, later).await.expect("claims");
    assert!(matches!(claims[0], Claim::AlreadyRan), "{:?}", claims[0]);
    assert!(
        matches!(&claims[1], Claim::Busy(run) if run.slot == slot && run.identity == ids[1]),
        "{:?}",
        claims[1]
    );
    assert!(
        matches!(&claims[2], Claim::Claimed(run) if run.identity == fresh && run.slot == later),
        "{:?}",
        claims[2]
    );
}

/// A burst of more slots than one claim batch holds is claimed in
/// pipelined batches: every slot is handed on once, every free one runs,
/// and a slot already taken or busy in one of the later batches is not
/// run again (busy ones are recorded skipped).
#[tokio::test]
async fn a_burst_of_several_claim_batches_runs_every_slot_once() {
    const N: usize = 1_100;
    let env = env(Duration::ZERO).await;
    let start = utc(2026, 1, 10, 0, 59, 0);
    let slot = utc(2026, 1, 10, 1, 0, 0);
    let clock = Clock::tokio(start);
    let specs: Vec<DefinitionSpec> = (0..N)
        .map(|i| spec(&format!("b{i:04}"), "web01", "0 * * * *"))
        .collect();
    for def in &specs {
        env.store
            .insert_definition(def, Source::Cli, None, start)
            .await
            .expect("definition inserted");
    }
    // The node's lease is renewed by the loop, which does not run here,
    // and is measured in real time: a debug build on a loaded machine
    // takes longer than the default 30 s to run these 1,100 runs.
    let mut lasting = settings();
    lasting.lease_ttl = Duration::from_secs(24 * 3600);
    // Three batches, so that two claims are in the store at once.
    lasting.claim_batch = 512;
    let mut s = scheduler(&env, clock, lasting);
    s.start().await.expect("start");
    // In the second and third batches: one slot already claimed (by
    // another process, say), one definition busy with a manual run.
    let (taken, busy) = (&specs[700].identity, &specs[1_050].identity);
    let manual = start + chrono::Duration::seconds(10);
    for (id, at, trigger) in [
        (taken, slot, Trigger::Schedule),
        (busy, manual, Trigger::Manual),
    ] {
        let claim = env
            .store
            .claim_run(id, at, trigger, start)
            .await
            .expect("claim");
        assert!(
            matches!(claim, snapsched::domain::Claim::Claimed(_)),
            "{claim:?}"
        );
    }
    tokio::time::advance((slot - start).to_std().expect("positive")).await;

    assert_eq!(s.fire_due().await.expect("fire"), N, "every slot handed on");
    assert_eq!(s.fire_due().await.expect("fire"), 0, "a slot fires once");
    s.drain().await;

    let mut ran = 0;
    for def in &specs {
        let h = runs(&env.store, &def.identity.name).await;
        let at_slot: Vec<&Run> = h.iter().filter(|r| r.slot == slot).collect();
        assert_eq!(at_slot.len(), 1, "{}: {h:#?}", def.identity.name);
        let r = at_slot[0];
        if &def.identity == taken {
            assert_eq!(r.state, RunState::Pending, "left to its owner: {r:?}");
        } else if &def.identity == busy {
            assert_eq!(r.state, RunState::Skipped, "{r:?}");
            let reason = r.error.as_deref().unwrap_or_default();
            assert!(reason.contains("still active"), "{r:?}");
        } else {
            assert_eq!(r.state, RunState::Succeeded, "{r:?}");
            assert_eq!(r.trigger, Trigger::Schedule);
            ran += 1;
        }
    }
    assert_eq!(ran, N - 2);
}

#[tokio::test]
async fn a_wall_clock_stepped_back_recomputes_the_queue_and_fires_each_slot_once() {
    let env = env(Duration::ZERO).await;
    let start = utc(2026, 1, 10, 5, 0, 30);
    let (clock, stepper) = Clock::stepped(start);
    let def = spec("minutely", "web01", "* * * * *");
    env.store
        .insert_definition(&def, Source::Cli, None, start)
        .await
        .expect("definition inserted");
    let mut s = scheduler(&env, clock, settings());
    s.start().await.expect("start");
    let id = def.identity.clone();
    assert_eq!(s.fire_due().await.expect("fire"), 0, "a first reading");
    // 05:01 and 05:02 run.
    for _ in 0..2 {
        let next = s.next_fire(&id).expect("scheduled");
        tokio::time::advance((next - clock.now()).to_std().expect("ahead")).await;
        assert_eq!(s.fire_due().await.expect("fire"), 1);
        s.drain().await;
    }
    assert_eq!(clock.now(), utc(2026, 1, 10, 5, 2, 0));

    // Back 90 s: 05:01 and 05:02 come round again and must not run twice.
    stepper.step(chrono::Duration::seconds(-90));
    s.fire_due().await.expect("fire");
    assert_eq!(s.next_fire(&id), Some(utc(2026, 1, 10, 5, 1, 0)));
    for _ in 0..3 {
        let next = s.next_fire(&id).expect("scheduled");
        tokio::time::advance((next - clock.now()).to_std().expect("ahead")).await;
        s.fire_due().await.expect("fire");
        s.drain().await;
    }
    let slots: Vec<_> = runs(&env.store, "minutely")
        .await
        .iter()
        .map(|r| r.slot)
        .collect();
    assert_eq!(
        slots,
        vec![
            utc(2026, 1, 10, 5, 1, 0),
            utc(2026, 1, 10, 5, 2, 0),
            utc(2026, 1, 10, 5, 3, 0)
        ],
        "each slot once"
    );

    // Back an hour: the next fire is a minute away, as `def list` says,
    // not an hour and a minute.
    stepper.step(chrono::Duration::hours(-1));
    s.fire_due().await.expect("fire");
    assert_eq!(s.next_fire(&id), Some(utc(2026, 1, 10, 4, 4, 0)));
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(s.fire_due().await.expect("fire"), 1);
    s.drain().await;
    let h = runs(&env.store, "minutely").await;
    assert_eq!(h.len(), 4, "{h:#?}");
    assert_eq!(h[0].slot, utc(2026, 1, 10, 4, 4, 0));
    assert!(h.iter().all(|r| r.state == RunState::Succeeded), "{h:#?}");
}

/// Cancel the loop and move virtual time on until it has ended; returns
/// how much virtual time that took.
async fn shut_down(
    token: CancellationToken,
    handle: JoinHandle<Scheduler<FakeProvider>>,
    limit: Duration,
) -> Duration {
    let began = tokio::time::Instant::now();
    token.cancel();
    while !handle.is_finished() {
        assert!(
            began.elapsed() < limit,
            "the loop did not end within {limit:?}"
        );
        for _ in 0..2000 {
            tokio::task::yield_now().await;
        }
        tokio::time::advance(Duration::from_millis(250)).await;
    }
    handle.await.expect("loop ends");
    began.elapsed()
}

#[tokio::test]
async fn shutdown_lets_an_operation_about_to_finish_finish_within_the_grace() {
    // The snapshot takes 4 s; shutdown comes while the run waits on it.
    let env = env(Duration::from_secs(4)).await;
    let start = utc(2026, 1, 10, 0, 59, 59);
    let def = spec("quick", "web01", "0 * * * *");
    env.store
        .insert_definition(&def, Source::Cli, None, start)
        .await
        .expect("definition inserted");
    let mut settings = settings();
    settings.run.shutdown_grace = Duration::from_secs(10);
    let (token, handle) = looping(&env, Clock::tokio(start), settings);
    wait_until(
        &env.store,
        "quick",
        Duration::from_millis(200),
        Duration::from_secs(60),
        |h| h.first().is_some_and(|r| r.state == RunState::Waiting),
    )
    .await;
    let took = shut_down(token, handle, Duration::from_secs(20)).await;
    let h = runs(&env.store, "quick").await;
    assert_eq!(h[0].state, RunState::Succeeded, "{h:#?}");
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
}

#[tokio::test]
async fn shutdown_leaves_a_long_operation_waiting_for_the_next_start() {
    let env = env(Duration::from_secs(600)).await;
    let start = utc(2026, 1, 10, 0, 59, 59);
    let def = spec("slow", "web01", "0 * * * *");
    env.store
        .insert_definition(&def, Source::Cli, None, start)
        .await
        .expect("definition inserted");
    let mut settings = settings();
    settings.run.shutdown_grace = Duration::from_secs(5);
    let (token, handle) = looping(&env, Clock::tokio(start), settings);
    wait_until(
        &env.store,
        "slow",
        Duration::from_millis(200),
        Duration::from_secs(60),
        |h| h.first().is_some_and(|r| r.state == RunState::Waiting),
    )
    .await;
    let took = shut_down(token, handle, Duration::from_secs(20)).await;
    let h = runs(&env.store, "slow").await;
    assert_eq!(h[0].state, RunState::Waiting, "left resumable: {h:#?}");
    assert!(h[0].operation_id.is_some(), "{h:#?}");
    assert!(
        took >= Duration::from_secs(4) && took <= Duration::from_secs(6),
        "the run polled on for the grace, less its margin: {took:?}"
    );
}
