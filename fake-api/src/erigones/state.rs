//! The fake Erigones world: VMs, disks, snapshots, definitions and tasks, on a
//! clock that tests move by hand.
//!
//! Invariants: a task is resolved (its effect applied) the first time anything
//! looks at the state after its end time; a disk is locked while any of its
//! tasks is unresolved; snapshot names are unique per (VM, disk).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

/// Snapshot status codes as Erigones sends them.
pub const STATUS_OK: u8 = 1;
pub const STATUS_PENDING: u8 = 2;
pub const STATUS_ROLLBACK: u8 = 3;
pub const STATUS_LOST: u8 = 4;

/// Snapshot type codes: made by a definition inside Erigones, or through the API.
pub const TYPE_AUTO: u8 = 1;
pub const TYPE_MANUAL: u8 = 2;

/// One snapshot of one VM disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FakeSnapshot {
    pub name: String,
    pub disk_id: u32,
    pub created: DateTime<Utc>,
    pub status: u8,
    #[serde(rename = "type")]
    pub kind: u8,
    pub note: String,
    pub define: Option<String>,
    pub size: u64,
    pub fsfreeze: bool,
}

impl FakeSnapshot {
    /// A manual (type 2), OK snapshot with an empty note.
    pub fn manual(name: impl Into<String>, disk_id: u32, created: DateTime<Utc>) -> Self {
        FakeSnapshot {
            name: name.into(),
            disk_id,
            created,
            status: STATUS_OK,
            kind: TYPE_MANUAL,
            note: String::new(),
            define: None,
            size: 1 << 20,
            fsfreeze: false,
        }
    }

    /// A snapshot made by Erigones' own definition `define` (type 1, OK).
    pub fn auto(
        name: impl Into<String>,
        disk_id: u32,
        define: impl Into<String>,
        created: DateTime<Utc>,
    ) -> Self {
        FakeSnapshot {
            kind: TYPE_AUTO,
            define: Some(define.into()),
            ..FakeSnapshot::manual(name, disk_id, created)
        }
    }
}

/// A snapshot definition kept inside Erigones (`/vm/{hostname}/define/snapshot/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FakeDefinition {
    pub hostname: String,
    pub name: String,
    pub disk_id: u32,
    pub schedule: String,
    /// Signed: a real installation may hold a value snapsched refuses
    /// (`-1`), which the importer must skip alone.
    pub retention: i64,
    pub active: bool,
    pub desc: String,
    pub fsfreeze: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Vm {
    pub disks: u32,
    pub operational: bool,
    pub installed: bool,
    /// Erigones' `snapshot_limit_manual`: manual snapshots of the whole VM.
    pub snapshot_limit: Option<u32>,
    pub snapshots: Vec<FakeSnapshot>,
    /// How the next tasks started on this VM end (front first); default success.
    pub next_task_ends: VecDeque<TaskEnd>,
}

/// How a task ends when its time is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEnd {
    Success,
    /// FAILURE with this message.
    Failure(String),
    Revoked,
}

#[derive(Debug, Clone)]
pub(crate) enum TaskKind {
    Create { name: String },
    Delete { names: Vec<String> },
}

#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub hostname: String,
    pub disk_id: u32,
    pub kind: TaskKind,
    pub started: DateTime<Utc>,
    pub ends: DateTime<Utc>,
    pub end: TaskEnd,
    pub resolved: bool,
}

/// What a task status request sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TaskView {
    Pending,
    Started,
    Success(serde_json::Value),
    Failure(String),
    Revoked,
}

/// Which requests to spoil, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer with this HTTP status and a `{"detail": ...}` body, without
    /// touching state.
    Status(u16),
    /// Like `Status`, with this detail text.
    StatusWithDetail(u16, String),
    /// Wait this long (real time) before handling the request normally.
    Slow(Duration),
    /// Send the headers, then cut the connection in the body.
    Drop,
    /// Handle the request (its effect takes place), then cut the connection
    /// in the body: the answer is lost, the work is done.
    DropAfterWork,
}

/// One fault, applied to the next `times` requests that match `route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// `"METHOD /path/template/"` as in [`crate::erigones::routes`] (for
    /// example `"POST /vm/{hostname}/snapshot/{snapname}/"`), or `None` for
    /// any request.
    pub route: Option<String>,
    pub kind: FaultKind,
    pub times: u32,
}

/// The fake server's configuration.
#[derive(Debug, Clone)]
pub struct FakeErigonesConfig {
    /// Expected `ES-API-KEY`.
    pub api_key: String,
    /// How long a snapshot create task stays PENDING/STARTED.
    pub snapshot_task_duration: Duration,
    /// How long a delete task stays PENDING/STARTED.
    pub delete_task_duration: Duration,
    /// Fake time at start.
    pub start_time: DateTime<Utc>,
    /// True: the fake clock also runs with real time (standalone use).
    /// False: it moves only with [`crate::erigones::FakeErigones::advance`].
    pub real_clock: bool,
    /// Answer creates with 200 SUCCESS at once instead of a task.
    pub synchronous_create: bool,
}

impl Default for FakeErigonesConfig {
    fn default() -> Self {
        FakeErigonesConfig {
            api_key: "fake-erigones-key".to_owned(),
            snapshot_task_duration: Duration::from_secs(30),
            delete_task_duration: Duration::ZERO,
            start_time: DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default(), // 2026-01-01
            real_clock: false,
            synchronous_create: false,
        }
    }
}

pub(crate) struct State {
    pub config: FakeErigonesConfig,
    pub offset: Duration,
    pub real_start: Instant,
    pub vms: BTreeMap<String, Vm>,
    pub definitions: Vec<FakeDefinition>,
    pub tasks: HashMap<String, Task>,
    pub faults: Vec<Fault>,
    pub requests: BTreeMap<String, u64>,
    pub task_seq: u64,
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

impl State {
    pub fn new(config: FakeErigonesConfig) -> Self {
        State {
            config,
            offset: Duration::ZERO,
            real_start: Instant::now(),
            vms: BTreeMap::new(),
            definitions: Vec::new(),
            tasks: HashMap::new(),
            faults: Vec::new(),
            requests: BTreeMap::new(),
            task_seq: 0,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        let mut elapsed = self.offset;
        if self.config.real_clock {
            elapsed += self.real_start.elapsed();
        }
        self.config.start_time + delta(elapsed)
    }

    /// Apply the effect of every task whose time is up.
    pub fn resolve_tasks(&mut self) {
        let now = self.now();
        let due: Vec<String> = self
            .tasks
            .iter()
            .filter(|(_, t)| !t.resolved && t.ends <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(task) = self.tasks.get_mut(&id) else {
                continue;
            };
            task.resolved = true;
            let task = task.clone();
            let Some(vm) = self.vms.get_mut(&task.hostname) else {
                continue;
            };
            let on_disk =
                |s: &FakeSnapshot, name: &str| s.disk_id == task.disk_id && s.name == name;
            match (&task.kind, &task.end) {
                (TaskKind::Create { name }, TaskEnd::Success) => {
                    for s in vm.snapshots.iter_mut().filter(|s| on_disk(s, name)) {
                        s.status = STATUS_OK;
                        s.size = 64 << 20;
                    }
                }
                (TaskKind::Create { name }, _) => vm.snapshots.retain(|s| !on_disk(s, name)),
                (TaskKind::Delete { names }, TaskEnd::Success) => vm
                    .snapshots
                    .retain(|s| !names.iter().any(|n| on_disk(s, n))),
                (TaskKind::Delete { names }, _) => {
                    for s in vm
                        .snapshots
                        .iter_mut()
                        .filter(|s| names.iter().any(|n| on_disk(s, n)))
                    {
                        s.status = STATUS_OK;
                    }
                }
            }
        }
    }

    pub fn disk_locked(&self, hostname: &str, disk_id: u32) -> bool {
        self.tasks
            .values()
            .any(|t| !t.resolved && t.hostname == hostname && t.disk_id == disk_id)
    }

    /// Start a task on (hostname, disk) and return its id.
    pub fn start_task(&mut self, hostname: &str, disk_id: u32, kind: TaskKind) -> String {
        self.task_seq += 1;
        let id = format!(
            "1e1-{:08x}-{}",
            self.task_seq,
            uuid::Uuid::new_v4().simple()
        );
        let duration = match kind {
            TaskKind::Create { .. } => self.config.snapshot_task_duration,
            TaskKind::Delete { .. } => self.config.delete_task_duration,
        };
        let end = self
            .vms
            .get_mut(hostname)
            .and_then(|vm| vm.next_task_ends.pop_front())
            .unwrap_or(TaskEnd::Success);
        let started = self.now();
        self.tasks.insert(
            id.clone(),
            Task {
                hostname: hostname.to_owned(),
                disk_id,
                kind,
                started,
                ends: started + delta(duration),
                end,
                resolved: false,
            },
        );
        id
    }

    pub fn task_view(&self, id: &str) -> Option<TaskView> {
        let task = self.tasks.get(id)?;
        if !task.resolved {
            let half = task.started + (task.ends - task.started) / 2;
            return Some(if self.now() < half {
                TaskView::Pending
            } else {
                TaskView::Started
            });
        }
        Some(match &task.end {
            TaskEnd::Success => {
                let detail = match &task.kind {
                    TaskKind::Create { name } => {
                        format!("name={name}, disk_id={}, type=2", task.disk_id)
                    }
                    TaskKind::Delete { names } => {
                        format!("snapnames={}, disk_id={}", names.join(","), task.disk_id)
                    }
                };
                let message = match task.kind {
                    TaskKind::Create { .. } => "Snapshot successfully created",
                    TaskKind::Delete { .. } => "Snapshot successfully deleted",
                };
                TaskView::Success(
                    serde_json::json!({"message": message, "returncode": 0, "detail": detail}),
                )
            }
            TaskEnd::Failure(msg) => TaskView::Failure(msg.clone()),
            TaskEnd::Revoked => TaskView::Revoked,
        })
    }

    /// Take the first fault matching `route`, if any.
    pub fn take_fault(&mut self, route: &str) -> Option<FaultKind> {
        let pos = self
            .faults
            .iter()
            .position(|f| f.times > 0 && f.route.as_deref().is_none_or(|r| r == route))?;
        let fault = &mut self.faults[pos];
        fault.times -= 1;
        let kind = fault.kind.clone();
        if fault.times == 0 {
            self.faults.remove(pos);
        }
        Some(kind)
    }
}
