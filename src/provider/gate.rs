//! The last check before a provider request that changes something.
//!
//! A node that lost its lease must not create or delete snapshots: another
//! node may own the run by now. The run engine checks the lease before it
//! calls a provider, but a call can wait a long time inside the client
//! (the request budget, a listing first); a pause in that wait would let a
//! stale node act. So the clients ask this gate again right before a
//! request other than GET leaves. One process is one node, so the gate is
//! per process; cluster membership installs it when the node joins.

use std::sync::{Arc, RwLock};

type Check = Arc<dyn Fn() -> bool + Send + Sync>;

static GATE: RwLock<Option<Check>> = RwLock::new(None);

/// Install the check every changing request must pass (replacing any).
pub fn install(check: Check) {
    *GATE.write().unwrap_or_else(|e| e.into_inner()) = Some(check);
}

/// Whether a request that changes something may be sent now (always, with
/// no gate installed).
pub fn open() -> bool {
    GATE.read()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_none_or(|check| check())
}

/// The error a closed gate gives: transient, so the run engine retries and,
/// finding the lease gone, drops the run.
pub fn closed() -> super::ProviderError {
    super::ProviderError::transient(
        "not sent: this node's lease has lapsed (another node may own the run now)",
    )
}
