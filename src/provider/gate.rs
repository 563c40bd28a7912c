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

/// Given the generation of the membership the calling run started in (see
/// [`scoped`]), whether a changing request may leave now.
type Check = Arc<dyn Fn(Option<u64>) -> bool + Send + Sync>;

tokio::task_local! {
    /// The lease generation of the run whose provider call this task makes.
    static RUN_GENERATION: u64;
}

/// Run a provider call on behalf of a run started in lease generation
/// `generation`: the gate then also refuses its changing requests once this
/// node lost that lease and joined again, however long the call waited.
pub async fn scoped<F: std::future::Future>(generation: Option<u64>, call: F) -> F::Output {
    match generation {
        Some(g) => RUN_GENERATION.scope(g, call).await,
        None => call.await,
    }
}

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
        .is_none_or(|check| check(RUN_GENERATION.try_with(|g| *g).ok()))
}

/// The error a closed gate gives: transient, so the run engine retries and,
/// finding the lease gone, drops the run.
pub fn closed() -> super::ProviderError {
    super::ProviderError::transient(
        "not sent: this node's lease has lapsed (another node may own the run now)",
    )
}
