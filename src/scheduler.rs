//! The scheduler: a timer queue of definitions keyed by their next fire
//! instant.
//!
//! The loop sleeps until the earliest instant (or at most one second, to
//! notice definition changes made by the CLI through the store's change
//! counter), pops every due entry in O(log n), claims the due slots in the
//! store in batches (one transaction each) and queues their runs; a run
//! becomes a task only when a `max_concurrent_runs` permit is free. A slot is claimed by inserting its run row; the row's
//! unique key (identity, slot) makes a slot run at most once across restarts
//! and processes.
//!
//! Late wake-ups (daemon stopped, machine suspended, clock jumped): only the
//! most recent due slot runs, and only within the catch-up deadline; the
//! slots before it are recorded as one `missed` row with their count.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::domain::definition::{parse_target, Definition, Identity};
use crate::domain::schedule::Schedule;
use crate::domain::Target;
use crate::domain::{Claim, Run, RunState, Trigger};
use crate::provider::Provider;
use crate::run::{Ended, RunOptions, Runner};
use crate::store::{Store, StoreResult};

pub use crate::telemetry::{Status, Tick};

/// Providers by name; replaced as a whole on reload.
#[allow(clippy::type_complexity)]
pub type Providers<P> = Arc<RwLock<Arc<HashMap<String, (P, crate::domain::ProviderKind)>>>>;

/// Scheduler settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub max_concurrent_runs: usize,
    pub catch_up_deadline: Duration,
    pub default_tz: Tz,
    pub run: RunOptions,
    /// How often the store's definition change counter is checked.
    pub change_poll: Duration,
    /// A slot fired later than this is a catch-up, not an on-time run.
    pub on_time: Duration,
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
        }
    }
}

/// A timer-queue item: fire instant, entry version (stale when it differs
/// from the entry's), identity.
type QueueItem = (DateTime<Utc>, u64, Arc<Identity>);

struct Entry {
    def: Arc<Definition>,
    schedule: Schedule,
    zone: Tz,
    target: Target,
    version: u64,
    next: Option<DateTime<Utc>>,
}

pub struct Scheduler<P> {
    store: Store,
    providers: Providers<P>,
    clock: Clock,
    settings: Settings,
    entries: HashMap<Arc<Identity>, Entry>,
    heap: BinaryHeap<Reverse<QueueItem>>,
    version: u64,
    generation: i64,
    running: Arc<Mutex<HashSet<Identity>>>,
    permits: Arc<Semaphore>,
    tasks: JoinSet<()>,
    shutdown: CancellationToken,
    tick: Option<Tick>,
    /// Slots already handled per identity (kept across definition edits).
    last_slot: HashMap<Identity, DateTime<Utc>>,
    /// The status handed to the tick hook. Building it walks every entry,
    /// so it is rebuilt only after a change, and at most once per
    /// `STATUS_REFRESH`; an idle loop with many definitions then does no
    /// per-definition work at all.
    status_cache: Option<Status>,
    status_dirty: bool,
    status_built: Option<tokio::time::Instant>,
    /// Bumped on every rebuild of `status_cache`.
    status_revision: u64,
    /// When the definitions change counter was last read.
    generation_checked: Option<tokio::time::Instant>,
    /// Claimed runs waiting for a concurrency permit.
    queued: VecDeque<(Run, Arc<Definition>, Target)>,
}

/// A slot about to be claimed.
struct Due {
    id: Arc<Identity>,
    slot: DateTime<Utc>,
    trigger: Trigger,
    def: Arc<Definition>,
    target: Target,
}

/// Slots claimed per transaction when many are due at once: large enough
/// that commits do not dominate, small enough that the first runs of a
/// burst start without waiting for the whole burst to be written.
const CLAIM_BATCH: usize = 512;

/// Least time between two rebuilds of the tick status.
const STATUS_REFRESH: Duration = Duration::from_secs(1);

impl<P: Provider + Clone + 'static> Scheduler<P> {
    pub fn new(
        store: Store,
        providers: Providers<P>,
        clock: Clock,
        settings: Settings,
        shutdown: CancellationToken,
    ) -> Self {
        Scheduler {
            store,
            providers,
            clock,
            settings,
            entries: HashMap::new(),
            heap: BinaryHeap::new(),
            version: 0,
            generation: -1,
            running: Arc::default(),
            permits: Arc::new(Semaphore::new(settings.max_concurrent_runs.max(1))),
            tasks: JoinSet::new(),
            shutdown,
            tick: None,
            last_slot: HashMap::new(),
            status_cache: None,
            status_dirty: true,
            status_built: None,
            status_revision: 0,
            generation_checked: None,
            queued: VecDeque::new(),
        }
    }

    pub fn on_tick(&mut self, tick: Tick) {
        self.tick = Some(tick);
    }

    pub fn set_catch_up_deadline(&mut self, d: Duration) {
        self.settings.catch_up_deadline = d;
    }

    /// Resume unfinished runs whose owner is gone, then load definitions.
    pub async fn start(&mut self) -> StoreResult<()> {
        for (id, slot) in self.store.last_slots().await? {
            self.last_slot.insert(id, slot);
        }
        self.sync_definitions().await?;
        self.recover().await?;
        Ok(())
    }

    pub fn status(&self) -> Status {
        let in_flight = self.running.lock().map(|r| r.len()).unwrap_or(0);
        let next_fire = self
            .heap
            .iter()
            .filter(|Reverse((_, v, id))| self.entries.get(id).is_some_and(|e| e.version == *v))
            .min_by_key(|Reverse((at, _, _))| *at)
            .map(|Reverse((at, _, id))| (*at, id.clone()));
        let next_fires = self
            .entries
            .iter()
            .filter_map(|(id, e)| e.next.map(|at| (id.clone(), at)))
            .collect();
        Status {
            definitions: self.entries.len(),
            in_flight,
            next_fire,
            next_fires,
            revision: 0,
        }
    }

    /// The next fire instant of a definition, if scheduled.
    pub fn next_fire(&self, id: &Identity) -> Option<DateTime<Utc>> {
        self.entries.get(id).and_then(|e| e.next)
    }

    async fn recover(&mut self) -> StoreResult<()> {
        let me = std::process::id();
        for run in self.store.unfinished_runs().await? {
            let owner_alive = run.owner_pid.is_some_and(|pid| {
                pid != me && std::path::Path::new(&format!("/proc/{pid}")).exists()
            });
            if owner_alive {
                continue;
            }
            let resumable = match self.entries.get(&run.identity) {
                Some(entry) => Some((entry.def.clone(), entry.target.clone())),
                // Deactivated since the run started: it still finishes, so a
                // snapshot it made is recorded and pruned like any other.
                None => self.inactive_definition(&run.identity).await?,
            };
            let Some((def, target)) = resumable else {
                // Definition removed: nothing to resume with.
                self.store
                    .update_run(
                        run.id,
                        crate::store::runs::Update {
                            state: Some(RunState::Interrupted),
                            error: Some((
                                "permanent",
                                "interrupted; the definition was removed or its provider is no longer configured",
                            )),
                            ..Default::default()
                        },
                        self.clock.now(),
                    )
                    .await?;
                continue;
            };
            tracing::info!(definition = %run.identity, state = run.state.as_str(), "resuming run");
            self.store.adopt_run(run.id, self.clock.now()).await?;
            self.spawn(run, def, target);
        }
        Ok(())
    }

    /// A definition that is in the store but not scheduled (inactive), with
    /// its parsed target, if its provider is configured.
    async fn inactive_definition(
        &self,
        id: &Identity,
    ) -> StoreResult<Option<(Arc<Definition>, Target)>> {
        let Some(def) = self.store.get_definition(id).await? else {
            return Ok(None);
        };
        let providers = self.providers();
        let Some((_, kind)) = providers.get(&id.provider) else {
            return Ok(None);
        };
        Ok(parse_target(&id.target, *kind)
            .ok()
            .map(|target| (Arc::new(def), target)))
    }

    /// Re-read definitions from the store and rebuild changed entries.
    pub async fn sync_definitions(&mut self) -> StoreResult<()> {
        self.status_dirty = true;
        self.generation = self.store.definitions_generation().await?;
        let defs = self.store.list_definitions().await?;
        let providers = self.providers();
        let now = self.clock.now();
        let mut seen = HashSet::with_capacity(defs.len());
        for def in defs {
            let id = def.spec.identity.clone();
            if !def.spec.active {
                continue;
            }
            let Some((_, kind)) = providers.get(&id.provider) else {
                tracing::warn!(definition = %id, "provider '{}' is not configured; definition not scheduled", id.provider);
                continue;
            };
            seen.insert(id.clone());
            if let Some(e) = self.entries.get(&id) {
                if e.def.spec == def.spec {
                    continue;
                }
            }
            let schedule = match def.spec.parsed_schedule() {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(definition = %id, "{e}; definition not scheduled");
                    continue;
                }
            };
            let target = match parse_target(&id.target, *kind) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(definition = %id, "{e}; definition not scheduled");
                    continue;
                }
            };
            let zone = def.spec.zone(self.settings.default_tz);
            let from = self
                .last_slot
                .get(&id)
                .copied()
                .into_iter()
                .chain([def.updated_at.min(now)])
                .max()
                .unwrap_or(now);
            let next = schedule.next_after(from, zone);
            self.version += 1;
            let key = Arc::new(id);
            if let Some(at) = next {
                self.heap.push(Reverse((at, self.version, key.clone())));
            }
            self.entries.insert(
                key,
                Entry {
                    def: Arc::new(def),
                    schedule,
                    zone,
                    target,
                    version: self.version,
                    next,
                },
            );
        }
        self.entries.retain(|id, _| seen.contains(id.as_ref()));
        // Drop stale heap entries when they dominate, keeping memory bounded.
        if self.heap.len() > 2 * self.entries.len() + 1024 {
            let entries = &self.entries;
            self.heap
                .retain(|Reverse((_, v, id))| entries.get(id).is_some_and(|e| e.version == *v));
        }
        Ok(())
    }

    fn providers(&self) -> Arc<HashMap<String, (P, crate::domain::ProviderKind)>> {
        self.providers
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Run the loop until shutdown; then wait for in-flight runs up to
    /// `grace` and leave the rest resumable.
    pub async fn run(&mut self, grace: Duration) -> StoreResult<()> {
        loop {
            if self.fire_due().await? > 0 {
                self.status_dirty = true;
            }
            self.tick();
            self.drop_stale_top();
            let now = self.clock.now();
            let wake = self
                .heap
                .peek()
                .map(|Reverse((at, _, _))| *at)
                .map(|at| (at - now).to_std().unwrap_or_default())
                .unwrap_or(self.settings.change_poll)
                .min(self.settings.change_poll);
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = tokio::time::sleep(wake) => {}
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    // Reap every finished run at once: with many runs ending
                    // together, one loop turn per run would repeat the work
                    // below for each.
                    while self.tasks.try_join_next().is_some() {}
                    self.start_queued();
                    self.status_dirty = true;
                }
            }
            // The change counter is read once per `change_poll`, not on every
            // wake-up (runs ending wake the loop too).
            let due = self
                .generation_checked
                .is_none_or(|t| t.elapsed() >= self.settings.change_poll);
            if due {
                self.generation_checked = Some(tokio::time::Instant::now());
                let generation = self.store.definitions_generation().await?;
                if generation != self.generation {
                    self.sync_definitions().await?;
                }
            }
        }
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "{} runs still in flight after the shutdown grace; they resume at next start",
                self.tasks.len()
            );
            self.tasks.abort_all();
        }
        Ok(())
    }

    /// Pop superseded entries off the top of the heap, so that its top is
    /// the next real fire instant.
    fn drop_stale_top(&mut self) {
        while let Some(Reverse((_, v, id))) = self.heap.peek() {
            if self.entries.get(id).is_some_and(|e| e.version == *v) {
                break;
            }
            self.heap.pop();
        }
    }

    /// Call the tick hook with the cached status, rebuilt when stale.
    fn tick(&mut self) {
        let Some(tick) = self.tick.clone() else {
            return;
        };
        let fresh = self
            .status_built
            .is_some_and(|t| t.elapsed() < STATUS_REFRESH);
        if self.status_cache.is_none() || (self.status_dirty && !fresh) {
            self.status_revision += 1;
            self.status_cache = Some(Status {
                revision: self.status_revision,
                ..self.status()
            });
            self.status_dirty = false;
            self.status_built = Some(tokio::time::Instant::now());
        }
        let in_flight = self.running.lock().map(|r| r.len()).unwrap_or(0);
        if let Some(status) = self.status_cache.as_mut() {
            status.in_flight = in_flight;
            tick(status);
        }
    }

    /// Fire every entry that is due now.
    pub async fn fire_due(&mut self) -> StoreResult<usize> {
        let now = self.clock.now();
        let mut fired = 0;
        let mut due: Vec<Due> = Vec::new();
        while let Some(Reverse((at, version, id))) = self.heap.peek().cloned() {
            if at > now {
                break;
            }
            self.heap.pop();
            let Some(entry) = self.entries.get(&id) else {
                continue;
            };
            if entry.version != version {
                continue;
            }
            let (latest, missed, next) = self.resolve_late(entry, at, now);
            let def = entry.def.clone();
            let target = entry.target.clone();
            let deadline = def
                .spec
                .catch_up_deadline
                .unwrap_or(self.settings.catch_up_deadline);
            let late = (now - latest).to_std().unwrap_or_default();
            let runs_now = late <= deadline || late <= self.settings.on_time;
            let mut missed_count = missed;
            if !runs_now {
                missed_count += 1;
            }
            if missed_count > 0 {
                let last_missed = if runs_now {
                    self.prev_slot(entry, at, latest)
                } else {
                    latest
                };
                tracing::warn!(definition = %id, missed = missed_count, "missed slots (not running at the time); latest missed {}", last_missed.to_rfc3339());
                self.store
                    .record_not_run(
                        &id,
                        last_missed,
                        RunState::Missed,
                        &format!("{missed_count} slots missed while snapsched was not running"),
                        Some(missed_count),
                        now,
                    )
                    .await?;
            }
            if let Some(e) = self.entries.get_mut(&id) {
                e.next = next;
            }
            if let Some(n) = next {
                self.heap.push(Reverse((n, version, id.clone())));
            }
            self.last_slot.insert((*id).clone(), latest);
            if !runs_now {
                continue;
            }
            let trigger = if late <= self.settings.on_time {
                Trigger::Schedule
            } else {
                Trigger::Catchup
            };
            due.push(Due {
                id,
                slot: latest,
                trigger,
                def,
                target,
            });
            fired += 1;
        }
        for batch in due.chunks(CLAIM_BATCH) {
            self.dispatch(batch).await?;
        }
        Ok(fired)
    }

    /// For a slot `at` fired at `now`: the most recent slot not after `now`,
    /// how many slots before it were passed over, and the next slot after
    /// `now`.
    fn resolve_late(
        &self,
        entry: &Entry,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> (DateTime<Utc>, u32, Option<DateTime<Utc>>) {
        const MAX_STEPS: u32 = 100_000;
        let mut latest = at;
        let mut missed = 0u32;
        loop {
            match entry.schedule.next_after(latest, entry.zone) {
                Some(n) if n <= now => {
                    missed += 1;
                    latest = n;
                    if missed >= MAX_STEPS {
                        // Far behind on a dense schedule: jump close to now.
                        let jump = now
                            - chrono::Duration::from_std(self.settings.catch_up_deadline)
                                .unwrap_or_default();
                        if jump > latest {
                            latest = jump;
                        }
                    }
                }
                next => return (latest, missed, next),
            }
        }
    }

    /// The slot before `latest`, at or after `at` (for the missed record).
    fn prev_slot(&self, entry: &Entry, at: DateTime<Utc>, latest: DateTime<Utc>) -> DateTime<Utc> {
        let mut prev = at;
        while let Some(n) = entry.schedule.next_after(prev, entry.zone) {
            if n >= latest {
                break;
            }
            prev = n;
        }
        prev
    }

    /// Claim a batch of due slots in one transaction and queue their runs.
    /// Each claim records its own instant: with many slots due at once,
    /// later batches are claimed measurably after the loop woke.
    async fn dispatch(&mut self, batch: &[Due]) -> StoreResult<()> {
        let mut claim = Vec::with_capacity(batch.len());
        for d in batch {
            let busy = self
                .running
                .lock()
                .map(|r| r.contains(d.id.as_ref()))
                .unwrap_or(false);
            if busy {
                tracing::warn!(definition = %d.id, slot = %d.slot.to_rfc3339(), "skipped: the previous run is still active");
                self.store
                    .record_not_run(
                        &d.id,
                        d.slot,
                        RunState::Skipped,
                        "overlap: the previous run is still active",
                        None,
                        self.clock.now(),
                    )
                    .await?;
            } else {
                claim.push(d);
            }
        }
        if claim.is_empty() {
            return Ok(());
        }
        let slots: Vec<(&Identity, DateTime<Utc>, Trigger)> = claim
            .iter()
            .map(|d| (d.id.as_ref(), d.slot, d.trigger))
            .collect();
        let now = self.clock.now();
        let claims = self.store.claim_runs(&slots, now).await?;
        for (d, outcome) in claim.into_iter().zip(claims) {
            match outcome {
                Claim::Claimed(run) => self.spawn(run, d.def.clone(), d.target.clone()),
                Claim::AlreadyRan => {
                    tracing::debug!(definition = %d.id, slot = %d.slot.to_rfc3339(), "slot already has a run");
                }
                Claim::Busy(other) => {
                    tracing::warn!(definition = %d.id, slot = %d.slot.to_rfc3339(), "skipped: run {} ({}) is active", other.id, other.trigger.as_str());
                    self.store
                        .record_not_run(
                            &d.id,
                            d.slot,
                            RunState::Skipped,
                            &format!(
                                "overlap: run {} ({}) is still active",
                                other.id,
                                other.trigger.as_str()
                            ),
                            None,
                            now,
                        )
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Queue a claimed run; it starts when a concurrency permit is free.
    fn spawn(&mut self, run: Run, def: Arc<Definition>, target: Target) {
        if let Ok(mut r) = self.running.lock() {
            r.insert(run.identity.clone());
        }
        self.queued.push_back((run, def, target));
        self.start_queued();
    }

    /// Start queued runs while permits last. Only started runs are tasks:
    /// a task per queued run would hold a whole run future (several KB) for
    /// every one of thousands of slots due together.
    fn start_queued(&mut self) {
        while !self.queued.is_empty() {
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                return;
            };
            let Some((run, def, target)) = self.queued.pop_front() else {
                return;
            };
            let Some((provider, _)) = self.providers().get(&run.identity.provider).cloned() else {
                if let Ok(mut r) = self.running.lock() {
                    r.remove(&run.identity);
                }
                continue;
            };
            let store = self.store.clone();
            let clock = self.clock;
            let options = self.settings.run;
            let shutdown = self.shutdown.clone();
            let running = self.running.clone();
            self.tasks.spawn(async move {
                let identity = run.identity.clone();
                let runner = Runner {
                    store: &store,
                    provider: &provider,
                    spec: &def.spec,
                    target,
                    clock,
                    options,
                    shutdown,
                };
                match runner.drive(run).await {
                    Ok(Ended::Final(_)) => {}
                    Ok(Ended::Suspended(r)) => {
                        tracing::info!(definition = %identity, state = r.state.as_str(), "run suspended for shutdown; it resumes at next start");
                    }
                    Err(e) => tracing::error!(definition = %identity, "{e}"),
                }
                drop(permit);
                if let Ok(mut r) = running.lock() {
                    r.remove(&identity);
                }
            });
        }
    }

    /// Wait until no run is in flight (for tests and `--once`).
    pub async fn drain(&mut self) {
        loop {
            self.start_queued();
            if self.tasks.join_next().await.is_none() {
                return;
            }
        }
    }
}
