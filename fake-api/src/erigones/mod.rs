//! Fake Erigones / Danube Cloud API (the snapshot, definition and task calls
//! snapsched uses), stateful and on loopback.
//!
//! Tests start it with [`start`], steer it through [`FakeErigones`] (add VMs
//! and foreign snapshots, make a VM non-operational, queue task failures,
//! inject faults) and move its clock with [`FakeErigones::advance`], so a
//! 30-second snapshot task costs no real time. Route names used by the
//! request counters and faults are `"METHOD /template/"`, e.g.
//! `"POST /vm/{hostname}/snapshot/{snapname}/"` (see [`route`]).

mod routes;
mod state;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use state::{
    FakeDefinition, FakeErigonesConfig, FakeSnapshot, Fault, FaultKind, TaskEnd, STATUS_LOST,
    STATUS_OK, STATUS_PENDING, STATUS_ROLLBACK, TYPE_AUTO, TYPE_MANUAL,
};

use state::{State, Vm};

/// Route names for counters and faults.
pub mod route {
    pub const LIST_SNAPSHOTS: &str = "GET /vm/{hostname}/snapshot/";
    pub const BULK_DELETE: &str = "DELETE /vm/{hostname}/snapshot/";
    pub const GET_SNAPSHOT: &str = "GET /vm/{hostname}/snapshot/{snapname}/";
    pub const CREATE_SNAPSHOT: &str = "POST /vm/{hostname}/snapshot/{snapname}/";
    pub const DELETE_SNAPSHOT: &str = "DELETE /vm/{hostname}/snapshot/{snapname}/";
    pub const TASK_STATUS: &str = "GET /task/{task_id}/status/";
    pub const TASK_DONE: &str = "GET /task/{task_id}/done/";
    pub const LIST_ALL_DEFINITIONS: &str = "GET /vm/define/snapshot/";
    pub const LIST_VM_DEFINITIONS: &str = "GET /vm/{hostname}/define/snapshot/";
}

/// Shared handle on the fake's state; cheap to clone.
///
/// The per-VM controls panic when the VM was never added: that is a mistake
/// in the test, not input the fake should tolerate.
#[derive(Clone)]
pub struct FakeErigones {
    inner: Arc<Mutex<State>>,
}

impl FakeErigones {
    /// A fresh world with no VMs.
    pub fn new(config: FakeErigonesConfig) -> Self {
        FakeErigones {
            inner: Arc::new(Mutex::new(State::new(config))),
        }
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A panic while holding the lock cannot leave the state half-written
        // in a way later requests could not read, so poisoning is ignored.
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Fake time now.
    pub fn now(&self) -> DateTime<Utc> {
        self.with(|s| s.now())
    }

    /// Move the fake clock forward, finishing the tasks whose time is up.
    pub fn advance(&self, by: Duration) {
        self.with(|s| {
            s.offset += by;
            s.resolve_tasks();
        });
    }

    /// Add (or reset) an installed, operational VM with `disks` disks.
    pub fn add_vm(&self, hostname: &str, disks: u32) {
        self.with(|s| {
            s.vms.insert(
                hostname.to_owned(),
                Vm {
                    disks,
                    operational: true,
                    installed: true,
                    snapshot_limit: None,
                    snapshots: Vec::new(),
                    next_task_ends: Default::default(),
                },
            );
        });
    }

    fn with_vm(&self, hostname: &str, f: impl FnOnce(&mut Vm)) {
        self.with(|s| match s.vms.get_mut(hostname) {
            Some(vm) => f(vm),
            None => panic!("fake Erigones has no VM {hostname}: add_vm first"),
        });
    }

    /// Operational VMs accept snapshot calls; others get 423.
    pub fn set_operational(&self, hostname: &str, operational: bool) {
        self.with_vm(hostname, |vm| vm.operational = operational);
    }

    /// Non-installed VMs get 428.
    pub fn set_installed(&self, hostname: &str, installed: bool) {
        self.with_vm(hostname, |vm| vm.installed = installed);
    }

    /// Limit on manual snapshots of the VM (all disks); beyond it create gets 417.
    pub fn set_snapshot_limit(&self, hostname: &str, limit: Option<u32>) {
        self.with_vm(hostname, |vm| vm.snapshot_limit = limit);
    }

    /// Put a snapshot in place directly (a manual one, another definition's, a lost one).
    pub fn add_snapshot(&self, hostname: &str, snapshot: FakeSnapshot) {
        self.with_vm(hostname, |vm| vm.snapshots.push(snapshot));
    }

    /// Change the status code of an existing snapshot.
    pub fn set_snapshot_status(&self, hostname: &str, disk_id: u32, name: &str, status: u8) {
        self.with_vm(hostname, |vm| {
            for s in vm
                .snapshots
                .iter_mut()
                .filter(|s| s.disk_id == disk_id && s.name == name)
            {
                s.status = status;
            }
        });
    }

    /// Every snapshot of (hostname, disk), oldest first.
    pub fn snapshots(&self, hostname: &str, disk_id: u32) -> Vec<FakeSnapshot> {
        self.with(|s| {
            s.resolve_tasks();
            let mut out: Vec<FakeSnapshot> = s
                .vms
                .get(hostname)
                .map(|vm| {
                    vm.snapshots
                        .iter()
                        .filter(|s| s.disk_id == disk_id)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            out.sort_by_key(|s| s.created);
            out
        })
    }

    /// The next task started on this VM ends like this (queued, front first).
    pub fn end_next_task(&self, hostname: &str, end: TaskEnd) {
        self.with_vm(hostname, |vm| vm.next_task_ends.push_back(end));
    }

    /// Add an Erigones-side snapshot definition.
    pub fn add_definition(&self, definition: FakeDefinition) {
        self.with(|s| s.definitions.push(definition));
    }

    /// Spoil the next matching requests.
    pub fn inject(&self, fault: Fault) {
        self.with(|s| s.faults.push(fault));
    }

    /// Requests received on one route (see [`route`]), faults included.
    pub fn request_count(&self, route: &str) -> u64 {
        self.with(|s| s.requests.get(route).copied().unwrap_or(0))
    }

    /// Requests received on all routes.
    pub fn total_requests(&self) -> u64 {
        self.with(|s| s.requests.values().sum())
    }

    /// Requests per route.
    pub fn requests_by_route(&self) -> BTreeMap<String, u64> {
        self.with(|s| s.requests.clone())
    }
}

/// A running fake server. Dropping it stops the server.
pub struct FakeHandle {
    /// Base URL of the API, e.g. `http://127.0.0.1:41234/api`.
    pub base_url: String,
    pub addr: SocketAddr,
    pub state: FakeErigones,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for FakeHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Start the fake on 127.0.0.1 port 0 inside the current tokio runtime.
pub async fn start(config: FakeErigonesConfig) -> std::io::Result<FakeHandle> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    serve(listener, FakeErigones::new(config)).await
}

/// Serve `state` on an already bound listener (the standalone program binds
/// the address it was given).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: FakeErigones,
) -> std::io::Result<FakeHandle> {
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = routes::router(state.clone());
    tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!("fake Erigones server stopped: {e}");
        }
    });
    Ok(FakeHandle {
        base_url: format!("http://{addr}/api"),
        addr,
        state,
        shutdown: Some(tx),
    })
}
