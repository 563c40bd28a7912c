//! From a listing to a plan: classification and planning in one pure step,
//! for either intent a prune can have.

use chrono::{DateTime, Utc};

use super::ownership::{classify, Classification, StoreRecords};
use super::plan::{plan_held, plan_removal_held, Decision, Policy};
use crate::domain::RemoteSnapshot;

/// What a prune is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Keep what the definition's retention policy keeps: the prune after a
    /// run and `snapsched prune`.
    Retention(Policy),
    /// Delete every snapshot the definition owns: `def rm
    /// --delete-snapshots`.
    RemoveAll,
}

/// A plan made from one complete listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPlan {
    /// Ownership of every listed snapshot, plus what the store must mark
    /// gone or live again and the adoptions to log.
    pub classification: Classification,
    pub decisions: Vec<Decision>,
}

/// Classify `listing` (the provider's complete listing of one target and
/// disk) for `definition` and plan `intent` at `now`.
pub fn plan_listing(
    listing: &[RemoteSnapshot],
    store: &StoreRecords,
    definition: &str,
    intent: &Intent,
    now: DateTime<Utc>,
) -> ListedPlan {
    let classification = classify(listing, store, definition);
    let decisions = match intent {
        Intent::Retention(policy) => {
            plan_held(&classification.candidates, &store.held, policy, now)
        }
        Intent::RemoveAll => plan_removal_held(&classification.candidates, &store.held),
    };
    ListedPlan {
        classification,
        decisions,
    }
}
