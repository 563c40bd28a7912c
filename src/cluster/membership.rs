//! This process's membership: join, renew, sweep, leave.
//!
//! Invariants:
//! - A node id is used by one process start only. A node that finds it was
//!   declared expired (its renewal matched no live row) joins again under a
//!   new id, so runs that were taken over from its old id stay fenced
//!   against it.
//! - Renewals run every third of the lease; the local lease ([`Lease`]) is
//!   trusted only until a margin before the store would expire it.
//! - The sweep expires nodes whose heartbeat is older than the lease by the
//!   store's clock, and at once a node on this host whose process is gone
//!   (a restart after a crash need not wait out the lease).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use std::time::Instant;

use super::lease::Lease;
use crate::domain::{NodeInfo, NodeRole, NodeState};
use crate::store::{Store, StoreResult};

/// Shared view of this node's lease, checked before a provider call.
/// A handle pinned to a generation ([`LeaseHandle::pinned`]) holds only
/// while the lease is still that membership's: a run started before the
/// node lost its lease and joined again stays fenced after it renewed.
#[derive(Debug, Clone)]
pub struct LeaseHandle(Arc<Mutex<Lease>>, Option<u64>);

impl LeaseHandle {
    /// Whether this node may act now (for a pinned handle: as the same
    /// membership it was pinned in).
    pub fn holds(&self) -> bool {
        let lease = self.0.lock().unwrap_or_else(|e| e.into_inner());
        lease.valid_at(Instant::now()) && self.1.is_none_or(|g| g == lease.generation())
    }

    /// This handle pinned to the lease's current generation, for one run.
    pub fn pinned(&self) -> LeaseHandle {
        let generation = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .generation();
        LeaseHandle(self.0.clone(), Some(generation))
    }

    /// This handle pinned to `generation` (the lease's current one when
    /// `None`): a run claimed under one membership acts only under it, even
    /// when it starts after the node joined again.
    pub fn pinned_to(&self, generation: Option<u64>) -> LeaseHandle {
        match generation {
            Some(g) => LeaseHandle(self.0.clone(), Some(g)),
            None => self.pinned(),
        }
    }

    /// The generation this handle is pinned to, if any.
    pub fn generation(&self) -> Option<u64> {
        self.1
    }

    /// Make this lease the process's gate for provider requests that change
    /// something ([`crate::provider::gate`]). The gate holds the lease
    /// weakly: once the membership is gone, it stops closing anything.
    pub fn guard_provider_requests(&self) {
        let weak = Arc::downgrade(&self.0);
        crate::provider::gate::install(Arc::new(move |generation: Option<u64>| {
            weak.upgrade().is_none_or(|l| {
                let lease = l.lock().unwrap_or_else(|e| e.into_inner());
                lease.valid_at(Instant::now()) && generation.is_none_or(|g| g == lease.generation())
            })
        }));
    }

    fn with<T>(&self, f: impl FnOnce(&mut Lease) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The outcome of a renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// The lease holds for another ttl.
    Renewed,
    /// Another node had declared this one expired: its runs are gone. The
    /// membership has joined again under a new id.
    Rejoined,
}

/// This process as a node of the store.
#[derive(Debug)]
pub struct Membership {
    store: Store,
    info: NodeInfo,
    lease: LeaseHandle,
    ttl: Duration,
}

impl Membership {
    /// Register a new node for this process and act as it.
    pub async fn join(store: &Store, role: NodeRole, ttl: Duration) -> StoreResult<Membership> {
        let info = NodeInfo {
            id: uuid::Uuid::new_v4().to_string(),
            hostname: hostname(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            role,
        };
        let m = Membership {
            store: store.clone(),
            info,
            lease: LeaseHandle(Arc::new(Mutex::new(Lease::new(ttl, ttl / 6))), None),
            ttl,
        };
        m.register().await?;
        tracing::info!(node = %m.info.id, hostname = %m.info.hostname, role = role.as_str(), "joined the store as a node");
        Ok(m)
    }

    async fn register(&self) -> StoreResult<()> {
        let sent = Instant::now();
        self.store.register_node(&self.info, Utc::now()).await?;
        self.store.set_node_id(Some(self.info.id.as_str().into()));
        self.lease.with(|l| l.renewed(sent));
        Ok(())
    }

    pub fn id(&self) -> &str {
        &self.info.id
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How often to renew.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    pub fn lease(&self) -> LeaseHandle {
        self.lease.clone()
    }

    /// Renew the heartbeat; join again under a new id if this node was
    /// declared expired meanwhile.
    pub async fn renew(&mut self) -> StoreResult<Renewal> {
        let sent = Instant::now();
        if self.store.renew_node(&self.info.id).await? {
            self.lease.with(|l| l.renewed(sent));
            return Ok(Renewal::Renewed);
        }
        self.lease.with(Lease::lost);
        let old = std::mem::replace(&mut self.info.id, uuid::Uuid::new_v4().to_string());
        tracing::warn!(old_node = %old, node = %self.info.id, "this node's lease lapsed and its runs were taken over by other nodes; joining again under a new id");
        self.register().await?;
        Ok(Renewal::Rejoined)
    }

    /// Expire nodes whose lease lapsed, and nodes of this host whose
    /// process is gone; returns how many were expired.
    pub async fn sweep(&self) -> StoreResult<usize> {
        let mut expired = self.store.expire_stale_nodes(self.ttl).await?;
        self.store.forget_old_nodes().await?;
        for node in self.store.nodes().await? {
            let gone = node.state == NodeState::Live
                && node.id != self.info.id
                && node.hostname == self.info.hostname
                && (node.pid == self.info.pid || !process_exists(node.pid));
            if gone && self.store.expire_node(&node.id).await? {
                expired.push(node.id);
            }
        }
        for id in &expired {
            tracing::warn!(node = %id, "node expired: its runs in flight will be taken over");
        }
        Ok(expired.len())
    }

    /// The daemons whose lease holds, this one included.
    pub async fn live_daemons(&self) -> StoreResult<Vec<String>> {
        self.store.live_daemons(self.ttl).await
    }

    /// Leave cleanly: runs this node still owns may be taken over at once.
    pub async fn leave(&self) -> StoreResult<()> {
        self.store.leave_node(&self.info.id).await
    }

    /// Renew in the background until the returned guard is dropped (for CLI
    /// processes that drive one run).
    pub fn keep_alive(mut self) -> KeepAlive {
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let lease = self.lease.clone();
        let store = self.store.clone();
        let id = self.info.id.clone();
        let every = self.renew_every();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
                if let Err(e) = self.renew().await {
                    tracing::warn!("cannot renew this node's lease: {e}");
                }
            }
            let _ = self.leave().await;
        });
        KeepAlive {
            stop,
            task: Some(task),
            lease,
            store,
            id,
        }
    }
}

/// A CLI process's membership, renewed in the background.
pub struct KeepAlive {
    stop: tokio_util::sync::CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    lease: LeaseHandle,
    store: Store,
    id: String,
}

impl KeepAlive {
    pub fn lease(&self) -> LeaseHandle {
        self.lease.clone()
    }

    /// Stop renewing and leave the store.
    pub async fn leave(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        } else {
            let _ = self.store.leave_node(&self.id).await;
        }
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// This host's name, as gethostname(2) gives it. Not read from
/// `/proc/sys/kernel/hostname`: under the shipped unit's `ProcSubset=pid`
/// `/proc/sys` is hidden, and every daemon would call itself `localhost` —
/// and take the live nodes of other hosts called so for its own dead ones.
pub(crate) fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Whether a process with this pid exists on this host, whoever owns it.
/// kill(pid, 0), not `/proc/PID`: under the shipped unit's
/// `ProtectProc=invisible` the daemon sees no `/proc` entry of another
/// user's process (a CLI run as root), which must not count as gone.
fn process_exists(pid: u32) -> bool {
    use nix::errno::Errno;
    match i32::try_from(pid) {
        // 0 and negative pids name process groups, not a process.
        Ok(pid) if pid > 0 => !matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(Errno::ESRCH)
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::process_exists;

    #[test]
    fn a_process_exists_while_it_runs_and_not_after_it_was_reaped() {
        assert!(process_exists(std::process::id()));
        // pid 1 exists; run as another user than its owner, kill(1, 0)
        // answers EPERM, which still means it exists.
        assert!(process_exists(1));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_exists(pid));
    }

    #[test]
    fn pids_that_name_no_single_process_do_not_exist() {
        // kill(0, 0) and kill(-1, 0) would address process groups and succeed.
        assert!(!process_exists(0));
        assert!(!process_exists(u32::MAX));
        assert!(!process_exists(i32::MAX as u32 + 1));
    }
}
