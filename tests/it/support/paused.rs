//! Driving the scheduler and run engine on tokio's paused clock: a store
//! and the in-memory fake provider ([`env`]), the clock held still between
//! explicit advances ([`hold_clock`]), and stepping the daemon's loop through
//! days of slots while the store and HTTP fakes work in real time
//! ([`step_through`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use snapsched::clock::Clock;
use snapsched::domain::definition::DefinitionSpec;
use snapsched::domain::ProviderKind;
use snapsched::domain::Run;
use snapsched::provider::fake::FakeProvider;
use snapsched::provider::PollPolicy;
use snapsched::scheduler::{Providers, Settings};
use snapsched::store::Store;
use tempfile::TempDir;
use tokio::task::JoinHandle;

use super::fixtures;

/// A store and the in-memory fake provider on tokio's paused clock.
pub struct Env {
    _dir: TempDir,
    spinner: JoinHandle<()>,
    pub store: Store,
    pub fake: FakeProvider,
    pub providers: Providers<FakeProvider>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.spinner.abort();
    }
}

pub fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
        .single()
        .expect("valid UTC time")
}

pub async fn env(operation_time: Duration) -> Env {
    let dir = TempDir::new().expect("temp dir");
    let store = crate::support::db::open(&dir.path().join("snapsched.db")).await;
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
        spinner: hold_clock(),
        store,
        fake,
        providers: Providers::new(map),
    }
}

pub fn spec_with(
    name: &str,
    target: &str,
    schedule: &str,
    timezone: Option<&str>,
    catch_up: Option<&str>,
) -> DefinitionSpec {
    let mut spec = fixtures::spec("fake", target, name)
        .schedule(schedule)
        .retention(100);
    if let Some(zone) = timezone {
        spec = spec.timezone(zone);
    }
    if let Some(deadline) = catch_up {
        spec = spec.catch_up_deadline(deadline);
    }
    spec.build()
}

pub fn settings() -> Settings {
    let mut s = Settings::default();
    s.run.retry_initial = Duration::from_secs(2);
    s.run.retry_max = Duration::from_secs(10);
    s
}

/// The runs of definition `name`, oldest slot first.
pub async fn runs(store: &Store, name: &str) -> Vec<Run> {
    let mut h = store.history(Some(name), 1000).await.expect("history");
    h.sort_by_key(|r| (r.slot, r.id));
    h
}

/// Keep the runtime busy so that tokio never auto-advances the paused clock:
/// sqlite works on its own threads, and an idle runtime meanwhile would jump
/// to the next timer (the pool's acquire timeout among them). Time then
/// moves only by `tokio::time::advance`.
pub fn hold_clock() -> JoinHandle<()> {
    tokio::spawn(async {
        loop {
            tokio::task::yield_now().await;
        }
    })
}

pub fn all_final(h: &[Run]) -> bool {
    h.iter().all(|r| r.state.is_final())
}

/// A tick hook that keeps the loop's count of runs in flight.
pub fn in_flight_counter() -> (
    Arc<std::sync::atomic::AtomicUsize>,
    snapsched::scheduler::Tick,
) {
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    let tick: snapsched::scheduler::Tick = Arc::new(move |st: &snapsched::scheduler::Status| {
        seen.store(st.in_flight, std::sync::atomic::Ordering::SeqCst);
    });
    (count, tick)
}

/// Drive the scheduler `step` of virtual time at a time until `until`,
/// calling `also` with each step (to move another clock in step). Before
/// every step it waits, bounded in real time, until every slot of `def`
/// due since `from` has a final run and the loop's last tick counted no
/// run in flight (`in_flight`, see [`in_flight_counter`]): the store (PostgreSQL over loopback,
/// or SQLite on its threads) and the HTTP fakes work in real time, and
/// virtual time must not move on by a whole step under a run or a request
/// in flight (it moves by a second at a time while waiting).
#[allow(clippy::too_many_arguments)]
pub async fn step_through(
    store: &Store,
    def: &DefinitionSpec,
    zone: chrono_tz::Tz,
    clock: Clock,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    step: Duration,
    also: &dyn Fn(Duration),
    in_flight: &std::sync::atomic::AtomicUsize,
) -> Vec<Run> {
    loop {
        let now = clock.now();
        // The latest slot due (the fall-back night may repeat an hour, so
        // slots are not counted).
        let mut latest = None;
        let mut t = from;
        while let Some(next) = def.schedule.next_after(t, zone).filter(|n| *n <= now) {
            latest = Some(next);
            t = next;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut nudge_after = std::time::Instant::now() + Duration::from_millis(200);
        let h = loop {
            for _ in 0..200 {
                tokio::task::yield_now().await;
            }
            // A run may wait in virtual time (a lease renewal, a retry):
            // move on by a second now and then, far below any request
            // timeout.
            if std::time::Instant::now() > nudge_after {
                also(Duration::from_secs(1));
                tokio::time::advance(Duration::from_secs(1)).await;
                nudge_after = std::time::Instant::now() + Duration::from_millis(200);
            }
            let h = runs(store, &def.identity.name).await;
            // The loop reaps a finished run's task after its row is final.
            let idle = in_flight.load(std::sync::atomic::Ordering::SeqCst) == 0;
            let ran = latest.is_none_or(|slot| h.iter().any(|r| r.slot == slot));
            if ran && all_final(&h) && idle {
                break h;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "slot {latest:?} due at {now}: no final run within a minute: {h:#?}"
            );
        };
        if now >= until {
            return h;
        }
        also(step);
        tokio::time::advance(step).await;
    }
}
