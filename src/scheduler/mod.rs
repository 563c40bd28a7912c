//! The scheduler: fires each active definition at its slots and runs the
//! claimed slots with bounded concurrency.
//!
//! [`Scheduler::run`] is the loop, and it only delegates. Each turn it
//! fires what is due (`fire`), ticks its observers (`status`), sleeps
//! until the next fire instant, a run ending or `change_poll` (whichever
//! comes first), reaps ended runs (`pool`) and, when the store's
//! definitions changed, resyncs (`reload`). [`Scheduler::start`] loads
//! the definitions and resumes what a previous process left unfinished
//! (`recovery`).
//!
//! The parts, each owning its state and invariants:
//! - `timer`: a pure timer queue (next fire instant per definition, pop
//!   due, reschedule), the only per-definition state in memory; an entry
//!   keeps only what firing needs (schedule, zone, catch-up deadline), and
//!   a run reads its definition from the store when it starts.
//! - `catch_up`: the pure decision for a due slot: on time, catch-up, or
//!   missed.
//! - `pool` (with `launch`): claimed runs waiting for a permit and the
//!   tasks of running ones; `max_concurrent_runs` is never exceeded.
//! - `reload`: the change counter poll and the rebuild of the timer
//!   queue from the store.
//! - `recovery`: adopting and resuming unfinished runs at start.
//! - `providers`: the swappable provider map ([`Providers`]).
//!
//! A slot is claimed by inserting its run row; the row's unique key
//! (identity, slot) makes a slot run at most once across restarts and
//! processes. Late wake-ups (daemon stopped, machine suspended, clock
//! jumped): only the most recent due slot runs, and only within the
//! catch-up deadline; the slots before it are recorded as one `missed` row
//! with their count.

mod catch_up;
mod cluster;
mod fire;
mod launch;
mod pool;
mod providers;
mod recovery;
mod reload;
mod status;
pub mod timer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio_util::sync::CancellationToken;

use self::launch::RunLauncher;
use self::pool::RunPool;
use self::reload::ChangeWatch;
use self::status::StatusCache;
use self::timer::{TimerQueue, WallWatch};
use crate::clock::Clock;
use crate::domain::definition::DefinitionSpec;
use crate::domain::{Identity, Schedule};
use crate::provider::Provider;
use crate::run::RunOptions;
use crate::store::{Store, StoreResult};

pub use self::providers::{ProviderMap, Providers};
pub use crate::telemetry::{Status, Tick};

/// A difference between wall and monotonic time beyond this, between two
/// turns of the loop, is a step of the wall clock.
const CLOCK_STEP_TOLERANCE_SECS: i64 = 5;

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_concurrent_runs: usize,
    pub catch_up_deadline: Duration,
    pub default_tz: Tz,
    pub run: RunOptions,
    /// How often the store's definition change counter is checked.
    pub change_poll: Duration,
    /// A slot fired later than this is a catch-up, not an on-time run.
    pub on_time: Duration,
    /// How long a node's heartbeat may be silent before its runs are taken
    /// over.
    pub lease_ttl: Duration,
    /// How long a node that is not a definition's preferred node waits
    /// after a slot before claiming it itself.
    pub claim_grace: Duration,
    /// Slots claimed per transaction when many are due at once.
    pub claim_batch: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_concurrent_runs: 8,
            catch_up_deadline: Duration::from_secs(3600),
            default_tz: Tz::UTC,
            run: RunOptions::default(),
            change_poll: Duration::from_secs(1),
            on_time: Duration::from_secs(60),
            lease_ttl: Duration::from_secs(30),
            claim_grace: Duration::from_secs(2),
            claim_batch: fire::CLAIM_BATCH,
        }
    }
}

/// What a scheduled definition fires with, and nothing more: its schedule,
/// the zone it is evaluated in, its own catch-up deadline, and a
/// fingerprint of the whole definition to tell an edit from a re-read.
/// The rest of the row (target, retention, hooks, ...) is read from the
/// store when a run starts (see `launch`), so memory per definition stays
/// small at 100,000 definitions.
struct Entry {
    schedule: Schedule,
    zone: Tz,
    catch_up_deadline: Option<Duration>,
    fingerprint: u64,
}

impl Entry {
    fn new(spec: &DefinitionSpec, zone: Tz) -> Entry {
        Entry {
            schedule: spec.schedule.clone(),
            zone,
            catch_up_deadline: spec.catch_up_deadline,
            fingerprint: fingerprint(spec),
        }
    }
}

/// A hash of every field of `spec`: equal specs have equal fingerprints,
/// and an edit changes it (up to a 64-bit collision).
fn fingerprint(spec: &DefinitionSpec) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    spec.hash(&mut h);
    h.finish()
}

pub struct Scheduler<P: Provider + Clone + 'static> {
    store: Store,
    providers: Providers<P>,
    clock: Clock,
    settings: Settings,
    /// Scheduled definitions by next fire instant.
    timers: TimerQueue<Arc<Identity>, Entry>,
    /// Wall time against monotonic time, to notice clock steps.
    wall: WallWatch,
    /// Slots already handled per identity (kept across definition edits).
    /// Keyed by the timer queue's own keys where it can, so that firing
    /// copies no identity.
    last_slot: HashMap<Arc<Identity>, DateTime<Utc>>,
    changes: ChangeWatch,
    pool: RunPool<RunLauncher<P>>,
    status: StatusCache,
    cluster: cluster::ClusterState,
    shutdown: CancellationToken,
}

impl<P: Provider + Clone + 'static> Scheduler<P> {
    pub fn new(
        store: Store,
        providers: Providers<P>,
        clock: Clock,
        settings: Settings,
        shutdown: CancellationToken,
    ) -> Self {
        let launcher = RunLauncher {
            store: store.clone(),
            providers: providers.clone(),
            clock,
            options: settings.run.clone(),
            shutdown: shutdown.clone(),
            lease: None,
            in_flight: crate::run::InFlight::default(),
        };
        let mut pool = RunPool::new(launcher, settings.max_concurrent_runs);
        pool.launcher_mut().in_flight = pool.in_flight_set();
        Scheduler {
            store,
            providers,
            clock,
            timers: TimerQueue::new(),
            wall: WallWatch::new(chrono::Duration::seconds(CLOCK_STEP_TOLERANCE_SECS)),
            last_slot: HashMap::new(),
            changes: ChangeWatch::new(settings.change_poll),
            pool,
            settings,
            status: StatusCache::default(),
            cluster: cluster::ClusterState::default(),
            shutdown,
        }
    }

    /// Call `tick` from the loop on every turn.
    pub fn on_tick(&mut self, tick: Tick) {
        self.status.set_hook(tick);
    }

    pub fn set_catch_up_deadline(&mut self, d: Duration) {
        self.settings.catch_up_deadline = d;
    }

    /// Join the store as a node, load definitions, then take over
    /// unfinished runs whose owner is gone.
    pub async fn start(&mut self) -> StoreResult<()> {
        self.join().await?;
        for (id, slot) in self.store.last_slots().await? {
            self.last_slot.insert(Arc::new(id), slot);
        }
        self.sync_definitions().await?;
        self.maintain_membership().await?;
        Ok(())
    }

    /// This node's lease, once the scheduler has started.
    pub fn lease(&self) -> Option<crate::cluster::LeaseHandle> {
        self.cluster.membership.as_ref().map(|m| m.lease())
    }

    /// The summary as of now.
    pub fn status(&self) -> Status {
        status::summary(&self.timers, self.pool.in_flight())
    }

    /// The next fire instant of a definition, if scheduled.
    pub fn next_fire(&self, id: &Identity) -> Option<DateTime<Utc>> {
        self.timers.next_of(id)
    }

    /// Run the loop until shutdown; then wait for in-flight runs up to
    /// `grace` and leave the rest resumable.
    ///
    /// A store that cannot be reached does not stop the loop: the turn is
    /// logged, retried with backoff, and claims that failed are retried, so
    /// a slot due during an outage runs (late) once the store is back.
    pub async fn run(&mut self, grace: Duration) -> StoreResult<()> {
        let mut outage = cluster::Outage::default();
        let shutdown = self.shutdown.clone();
        loop {
            // A turn waiting on the store (an acquire under an outage, a
            // lock held by a paused node) must not hold shutdown up: it is
            // dropped at SIGTERM, which leaves at most claimed runs not yet
            // started, recovered as after a crash.
            let turn = tokio::select! {
                r = self.turn() => r,
                _ = shutdown.cancelled() => break,
            };
            match turn {
                Ok(()) => outage.ended(),
                Err(e) => outage.failed(&e),
            }
            self.tick(outage.error());
            let wake = outage.wait(self.wake_in());
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = tokio::time::sleep(wake) => {}
                Some(()) = self.pool.next_finished(), if self.pool.has_tasks() => {
                    self.pool.reap();
                    self.status.mark_dirty();
                }
            }
        }
        let left = self.pool.shut_down(grace).await;
        if left > 0 {
            tracing::warn!(
                "{left} runs still in flight after the shutdown grace; they resume at next start (or on another node now)"
            );
        }
        self.leave().await;
        Ok(())
    }

    /// One turn of the loop's store work: membership, firing, reloads.
    async fn turn(&mut self) -> StoreResult<()> {
        if self.cluster.renewal_due() || !self.may_claim() {
            self.maintain_membership().await?;
        }
        // Due slots wait in the queue until the lease holds again (a
        // renewal that took longer than the lease itself).
        if self.may_claim() && self.fire_due().await? > 0 {
            self.status.mark_dirty();
        }
        if self.changes.changed(&self.store).await? {
            self.sync_definitions().await?;
            tracing::info!(
                scheduled = self.timers.len(),
                "definitions changed in the store: {} scheduled",
                self.timers.len()
            );
        }
        Ok(())
    }

    /// Wait until no run is in flight (for tests and `--once`).
    pub async fn drain(&mut self) {
        self.pool.drain().await;
    }

    /// How long the loop may sleep: until the next fire instant, at most
    /// `change_poll`.
    fn wake_in(&mut self) -> Duration {
        let now = self.clock.now();
        self.timers
            .next_instant()
            .into_iter()
            .chain(self.cluster.next_deferred())
            .min()
            .map(|at| (at - now).to_std().unwrap_or_default())
            .unwrap_or(self.settings.change_poll)
            .min(self.settings.change_poll)
            .min(self.cluster.renewal_in())
    }

    /// Hand the observers the (cached) status.
    fn tick(&mut self, store_error: Option<&str>) {
        let in_flight = self.pool.in_flight();
        let timers = &self.timers;
        self.status.tick(
            || status::summary(timers, in_flight),
            in_flight,
            store_error,
        );
    }
}
