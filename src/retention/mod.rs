//! Retention: which of a definition's own snapshots to prune, and why.
//!
//! Pure: no provider calls, no store. The I/O around it (listing the disk,
//! deleting, recording) is the prune executor's ([`crate::prune`]).
//!
//! The steps, each separately testable:
//! 1. [`classify`] the provider's complete listing of one (target, disk)
//!    against the store's records ([`StoreRecords::of`]): which snapshots
//!    the definition owns.
//! 2. [`plan`] (explicit `now`): a [`Decision`] with reasons for every
//!    snapshot; or [`plan_removal`] when the definition is removed with its
//!    snapshots.
//! 3. [`render_table`] / [`render_json`] for the CLI's `prune` and
//!    `--dry-run`.
//!
//! [`plan_listing`] does steps 1 and 2 for an [`Intent`]; [`simulate`]
//! replays a schedule and plans after every run, for `retention simulate`.
//!
//! What the caller must do around it: prune only after a successful create;
//! plan only from a complete listing, and skip pruning entirely when the
//! listing failed (the provider contract turns a partial listing into an
//! error); log and record adoptions and snapshots marked gone; delete
//! exactly what the plan deletes, never a snapshot it does not own; record
//! every deletion with its reasons.

mod listing;
mod ownership;
mod plan;
mod render;
mod simulate;
mod tiers;

#[cfg(test)]
pub(crate) mod tests;

pub use listing::{plan_listing, Intent, ListedPlan};
pub use ownership::{
    classify, matches_definition_pattern, Candidate, Classification, Holds, Ownership,
    StoreRecords, NAME_TIME_FORMAT,
};
pub use plan::{
    format_duration, plan, plan_held, plan_removal, plan_removal_held, Decision, PlanSummary,
    Policy, Reason,
};
pub use render::{join_reasons, render_json, render_table, CREATED_FORMAT};
pub use simulate::{simulate, KeptSnapshot, SimulateError, Simulation, SimulationInput, MAX_SLOTS};
pub use tiers::{keep_reasons, Tier, Tiers};
