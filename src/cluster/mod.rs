//! Several daemons on one store: node identity, leases and placement.
//!
//! Every daemon (and every CLI process that runs a snapshot) is a *node*
//! with a row in the store's `nodes` table that it renews every
//! `lease_ttl / 3`. A run in flight belongs to a node and carries a lease
//! epoch; every change of its state is conditional on (owner, epoch), so a
//! node that was paused past its lease and whose runs were taken over cannot
//! write them any more (fencing). The unique (identity, slot) run row stays
//! the exactly-once rule; leases only decide who finishes a run whose owner
//! stopped.

pub mod lease;
pub mod membership;
pub mod placement;

pub use membership::{KeepAlive, LeaseHandle, Membership, Renewal};
