//! The scheduler and run engine against the in-memory fake provider, on
//! tokio's paused clock: every wait is virtual, so days of schedule take
//! milliseconds. The store is a real sqlite file in a temporary directory.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use snapsched::clock::Clock;
use snapsched::model::{DefinitionSpec, RawDefinition, Source};
use snapsched::provider::fake::FakeProvider;
use snapsched::provider::{PollPolicy, ProviderKind};
use snapsched::run::snapshot_name;
use snapsched::scheduler::{Providers, Scheduler, Settings};
use snapsched::store::runs::{Run, RunState, Trigger};
use snapsched::store::Store;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct Env {
    _dir: TempDir,
    store: Store,
    fake: FakeProvider,
    providers: Providers<FakeProvider>,
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
        .single()
        .expect("valid UTC time")
}

async fn env(operation_time: Duration) -> Env {
    let dir = TempDir::new().expect("temp dir");
    let store = Store::open(&dir.path().join("snapsched.db"))
        .await
        .expect("store opens");
    // The pool connects on a worker thread; with the clock already paused,
    // tokio would skip ahead to the pool's acquire timeout meanwhile.
    tokio::time::pause();
    let fake = FakeProvider::new(Duration::ZERO, operation_time).with_poll_policy(PollPolicy {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(5),
        timeout: Duration::from_secs(3600),
    });
    let map = HashMap::from([("fake".to_owned(), (fake.clone(), ProviderKind::Fake))]);
    Env {
        _dir: dir,
        store,
        fake,
        providers: Arc::new(RwLock::new(Arc::new(map))),
    }
}

fn spec(name: &str, target: &str, schedule: &str) -> DefinitionSpec {
    spec_with(name, target, schedule, None, None)
}

fn spec_with(
    name: &str,
    target: &str,
    schedule: &str,
    timezone: Option<&str>,
    catch_up: Option<&str>,
) -> DefinitionSpec {
    RawDefinition {
        name: name.to_owned(),
        provider: "fake".to_owned(),
        target: target.to_owned(),
        schedule: Some(schedule.to_owned()),
        timezone: timezone.map(str::to_owned),
        retention: Some(100),
        catch_up_deadline: catch_up.map(str::to_owned),
        ..RawDefinition::default()
    }
    .validate(ProviderKind::Fake)
    .expect("definition is valid")
}

fn settings() -> Settings {
    let mut s = Settings::default();
    s.run.retry_initial = Duration::from_secs(2);
    s.run.retry_max = Duration::from_secs(10);
    s
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

/// Tests run on tokio's paused clock, paused by [`env`] once the store is
/// open.
/// Oldest first.
async fn runs(store: &Store, name: &str) -> Vec<Run> {
    let mut h = store.history(Some(name), 1000).await.expect("history");
    h.sort_by_key(|r| (r.slot, r.id));
    h
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
        tokio::time::sleep(step).await;
    }
}

fn spawn_loop(
    mut s: Scheduler<FakeProvider>,
    shutdown: CancellationToken,
) -> JoinHandle<Scheduler<FakeProvider>> {
    drop(shutdown);
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
    let token = CancellationToken::new();
    let s = Scheduler::new(
        env.store.clone(),
        env.providers.clone(),
        clock,
        settings,
        token.clone(),
    );
    (token.clone(), spawn_loop(s, token))
}

fn all_final(h: &[Run]) -> bool {
    h.iter().all(|r| r.state.is_final())
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
    let target = snapsched::model::parse_target("web01", ProviderKind::Fake).expect("target");
    assert_eq!(
        env.fake.names(&target, id.disk_id),
        vec![
            "hourly-20260110_010000",
            "hourly-20260110_020000",
            "hourly-20260110_030000"
        ]
    );
}
