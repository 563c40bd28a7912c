//! Retention: prune each definition's own snapshots beyond its retention.
//!
//! The pipeline, each step separately testable:
//! 1. [`classify`] the provider's complete listing of one (target, disk)
//!    against the store's records: which snapshots the definition owns.
//! 2. [`plan`] (pure, explicit `now`): a [`Decision`] with reasons for every
//!    snapshot.
//! 3. [`execute`] the plan: one `delete_snapshots` call for exactly the
//!    snapshots the plan deletes.
//! 4. [`render_table`] / [`render_json`] for the CLI's `prune` and
//!    `--dry-run`.
//!
//! [`list_and_plan`] does steps 1 and 2 from a fresh listing, and returns
//! the listing error instead of a plan when the listing fails.
//!
//! What the caller (run engine, CLI) must do around it: prune only after a
//! successful create; skip pruning entirely when the listing failed (the
//! provider contract turns a partial listing into an error); log and record
//! adoptions and snapshots marked gone; record every deletion with its
//! reasons ([`execute`] already logs each outcome).

mod execute;
mod ownership;
mod plan;
mod render;

#[cfg(test)]
mod tests;

pub use execute::{execute, list_and_plan, Deletion, DeletionOutcome, ListedPlan};
pub use ownership::{
    classify, matches_definition_pattern, Candidate, Classification, Ownership, StoreRecords,
    NAME_TIME_FORMAT,
};
pub use plan::{format_duration, plan, Decision, PlanSummary, Policy, Reason};
pub use render::{render_deletions_table, render_json, render_table};
