//! In-memory fake provider, for engine tests and benchmarks: built only with
//! the cargo feature `fake-provider`, which the tests and the bench enable and
//! an installed binary leaves out.
//!
//! It behaves like a small cloud: snapshots per (target, disk), operations
//! that finish after `operation_time` (measured on tokio's clock, so paused-
//! clock tests do not wait), optional latency per call, and scripted
//! failures. Every call is counted so tests can assert what the engine asked.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;

use super::{
    CreateOutcome, CreateRequest, Operation, PollOutcome, PollPolicy, Provider, ProviderError,
    ProviderResult,
};
use crate::domain::{RemoteSnapshot, SnapshotStatus, Target};

/// The configuration shape of `kind = "fake"`: no API, no secret; `latency`
/// (added to every call) and `operation_time` (until an operation is done).
pub const KIND: super::KindSpec = super::KindSpec {
    kind: crate::domain::ProviderKind::Fake,
    api_url: super::ApiUrl::Unused,
    settings: &[
        ("latency", Duration::ZERO),
        ("operation_time", Duration::ZERO),
    ],
};

/// Which call a scripted failure applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Call {
    Create,
    Poll,
    List,
    Delete,
    /// Listing the droplets of a tag.
    TagList,
    /// One snapshot request for every droplet of a tag.
    TagCreate,
}

#[derive(Debug, Default)]
struct State {
    snapshots: BTreeMap<(String, u32), Vec<RemoteSnapshot>>,
    operations: BTreeMap<String, (tokio::time::Instant, CreateRequest)>,
    failures: BTreeMap<Call, VecDeque<ProviderError>>,
    panics: BTreeMap<Call, VecDeque<&'static str>>,
    calls: BTreeMap<Call, u64>,
    next_id: u64,
    /// Droplets by tag, and droplets locked by a pending event.
    tags: BTreeMap<String, BTreeSet<u64>>,
    locked: BTreeSet<u64>,
}

/// The fake provider; clones share state.
#[derive(Debug, Clone)]
pub struct FakeProvider {
    state: Arc<Mutex<State>>,
    latency: Duration,
    operation_time: Duration,
    poll: PollPolicy,
    clock: Clock,
}

impl Default for FakeProvider {
    fn default() -> Self {
        Self::new(Duration::ZERO, Duration::ZERO)
    }
}

impl FakeProvider {
    pub fn new(latency: Duration, operation_time: Duration) -> Self {
        FakeProvider {
            state: Arc::default(),
            latency,
            operation_time,
            poll: PollPolicy {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(10),
                timeout: Duration::from_secs(3600),
            },
            clock: Clock::System,
        }
    }

    /// Use this wall clock for snapshot creation times.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_poll_policy(mut self, poll: PollPolicy) -> Self {
        self.poll = poll;
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a test bug; keep going with the data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Make the next `call` fail with `error` (queued, in order).
    pub fn fail_next(&self, call: Call, error: ProviderError) {
        self.lock()
            .failures
            .entry(call)
            .or_default()
            .push_back(error);
    }

    /// Make the next `call` panic with `message` (queued, in order): a bug
    /// in a run's code path, for the tests that a panic ends only its run.
    pub fn panic_next(&self, call: Call, message: &'static str) {
        self.lock()
            .panics
            .entry(call)
            .or_default()
            .push_back(message);
    }

    /// How often `call` was made.
    pub fn calls(&self, call: Call) -> u64 {
        self.lock().calls.get(&call).copied().unwrap_or(0)
    }

    /// Put a snapshot on a disk directly (a manual snapshot, another tool's).
    pub fn insert(&self, target: &Target, disk_id: u32, name: &str, created_at: DateTime<Utc>) {
        let mut st = self.lock();
        st.next_id += 1;
        let id = format!("fake-{}", st.next_id);
        st.snapshots
            .entry((target.to_string(), disk_id))
            .or_default()
            .push(RemoteSnapshot {
                id,
                name: name.to_owned(),
                created_at,
                status: SnapshotStatus::Ok,
                size_bytes: None,
                note: None,
            });
    }

    /// Put `droplet` under `tag` (tag targets).
    pub fn tag_droplet(&self, droplet: u64, tag: &str) {
        self.lock()
            .tags
            .entry(tag.to_owned())
            .or_default()
            .insert(droplet);
    }

    /// Take `tag` off `droplet`.
    pub fn untag_droplet(&self, droplet: u64, tag: &str) {
        if let Some(d) = self.lock().tags.get_mut(tag) {
            d.remove(&droplet);
        }
    }

    /// Lock `droplet` as a pending event does: a tag request leaves it out.
    pub fn lock_droplet(&self, droplet: u64, locked: bool) {
        let mut st = self.lock();
        if locked {
            st.locked.insert(droplet);
        } else {
            st.locked.remove(&droplet);
        }
    }

    /// Every snapshot on a disk, by name.
    pub fn names(&self, target: &Target, disk_id: u32) -> Vec<String> {
        let st = self.lock();
        let mut names: Vec<String> = st
            .snapshots
            .get(&(target.to_string(), disk_id))
            .map(|v| v.iter().map(|s| s.name.clone()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    async fn enter(&self, call: Call) -> ProviderResult<()> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let mut st = self.lock();
        *st.calls.entry(call).or_default() += 1;
        if let Some(message) = st.panics.get_mut(&call).and_then(VecDeque::pop_front) {
            drop(st);
            panic!("{message}");
        }
        match st.failures.get_mut(&call).and_then(VecDeque::pop_front) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn find(st: &State, target: &Target, disk_id: u32, name: &str) -> Option<RemoteSnapshot> {
        st.snapshots
            .get(&(target.to_string(), disk_id))
            .and_then(|v| v.iter().find(|s| s.name == name).cloned())
    }

    fn make(&self, st: &mut State, req: &CreateRequest) -> RemoteSnapshot {
        if let Some(s) = Self::find(st, &req.target, req.disk_id, &req.name) {
            return s;
        }
        st.next_id += 1;
        let snap = RemoteSnapshot {
            id: format!("fake-{}", st.next_id),
            name: req.name.clone(),
            created_at: self.clock.now(),
            status: SnapshotStatus::Ok,
            size_bytes: Some(1 << 30),
            note: Some(req.note.clone()),
        };
        st.snapshots
            .entry((req.target.to_string(), req.disk_id))
            .or_default()
            .push(snap.clone());
        snap
    }
}

impl Provider for FakeProvider {
    async fn create_snapshot(&self, req: &CreateRequest) -> ProviderResult<CreateOutcome> {
        self.enter(Call::Create).await?;
        let mut st = self.lock();
        if let Target::Droplet(d) = req.target {
            if st.locked.contains(&d) {
                return Err(ProviderError::transient(format!(
                    "droplet {d}: Droplet already has a pending event."
                )));
            }
        }
        if let Some(existing) = Self::find(&st, &req.target, req.disk_id, &req.name) {
            return Ok(CreateOutcome::Done(existing));
        }
        if self.operation_time.is_zero() {
            return Ok(CreateOutcome::Done(self.make(&mut st, req)));
        }
        st.next_id += 1;
        let op = format!("op-{}", st.next_id);
        let due = tokio::time::Instant::now() + self.operation_time;
        st.operations.insert(op.clone(), (due, req.clone()));
        Ok(CreateOutcome::Pending(Operation { id: op }))
    }

    async fn poll(&self, _req: &CreateRequest, op: &Operation) -> ProviderResult<PollOutcome> {
        self.enter(Call::Poll).await?;
        let mut st = self.lock();
        let Some((due, req)) = st.operations.get(&op.id).cloned() else {
            return Err(ProviderError::permanent(format!(
                "operation {} not found",
                op.id
            )));
        };
        if tokio::time::Instant::now() < due {
            return Ok(PollOutcome::Pending);
        }
        st.operations.remove(&op.id);
        Ok(PollOutcome::Done(self.make(&mut st, &req)))
    }

    async fn list_snapshots(
        &self,
        target: &Target,
        disk_id: u32,
    ) -> ProviderResult<Vec<RemoteSnapshot>> {
        self.enter(Call::List).await?;
        let st = self.lock();
        Ok(st
            .snapshots
            .get(&(target.to_string(), disk_id))
            .cloned()
            .unwrap_or_default())
    }

    async fn delete_snapshots(
        &self,
        target: &Target,
        disk_id: u32,
        snapshots: &[RemoteSnapshot],
    ) -> Vec<ProviderResult<()>> {
        if let Err(e) = self.enter(Call::Delete).await {
            return snapshots.iter().map(|_| Err(e.clone())).collect();
        }
        let mut st = self.lock();
        if let Some(v) = st.snapshots.get_mut(&(target.to_string(), disk_id)) {
            v.retain(|s| !snapshots.iter().any(|d| d.id == s.id));
        }
        snapshots.iter().map(|_| Ok(())).collect()
    }

    fn poll_policy(&self) -> PollPolicy {
        self.poll
    }

    async fn tag_members(&self, tag: &str) -> ProviderResult<Vec<u64>> {
        self.enter(Call::TagList).await?;
        Ok(self
            .lock()
            .tags
            .get(tag)
            .map(|d| d.iter().copied().collect())
            .unwrap_or_default())
    }

    async fn snapshot_tag(&self, tag: &str, name: &str) -> ProviderResult<Vec<(u64, Operation)>> {
        self.enter(Call::TagCreate).await?;
        let mut st = self.lock();
        let droplets: Vec<u64> = st
            .tags
            .get(tag)
            .map(|d| {
                d.iter()
                    .copied()
                    .filter(|d| !st.locked.contains(d))
                    .collect()
            })
            .unwrap_or_default();
        let due = tokio::time::Instant::now() + self.operation_time;
        let mut started = Vec::new();
        for droplet in droplets {
            st.next_id += 1;
            let op = format!("op-{}", st.next_id);
            let req = CreateRequest {
                target: Target::Droplet(droplet),
                disk_id: 1,
                name: name.to_owned(),
                note: format!("tag {tag}"),
                fsfreeze: false,
                tags: Vec::new(),
                may_exist: false,
            };
            st.operations.insert(op.clone(), (due, req));
            started.push((droplet, Operation { id: op }));
        }
        Ok(started)
    }
}
