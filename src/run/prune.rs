//! A prune run: `snapsched prune` without `--dry-run`.
//!
//! A prune from the CLI is a run like any other: it claims the definition
//! (so it never overlaps a scheduled run), goes straight to `pruning`, runs
//! the prune executor ([`crate::prune`]) and ends in history as `succeeded`
//! or `failed`. (The prune after a scheduled or manual run is that run's own
//! `pruning` step, in [`super::Runner`].)

use chrono::{TimeDelta, Timelike};
use chrono_tz::Tz;

use crate::clock::Clock;
use crate::domain::definition::{DefinitionSpec, Identity};
use crate::domain::{Claim, Run, RunState, Target, Trigger};
use crate::provider::Provider;
use crate::prune::{self, PruneReport};
use crate::store::runs::Update;
use crate::store::{Store, StoreError};

/// How far back a prune looks for a free slot.
const SLOT_SEARCH: i32 = 120;

/// Why a prune run did not start.
#[derive(Debug, thiserror::Error)]
pub enum PruneRunError {
    /// Another run of the definition is in flight.
    #[error(
        "definition {identity} is running (run {}, {}, slot {}); try again when it ends",
        active.id,
        active.state,
        active.slot.to_rfc3339()
    )]
    Busy {
        identity: Identity,
        active: Box<Run>,
    },
    /// Every second of the last two minutes already has a run.
    #[error("definition {0}: no free run slot in the last 2 minutes; try again later")]
    NoFreeSlot(Identity),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a prune run ended.
#[derive(Debug)]
pub struct PruneRunEnd {
    /// The run as recorded at its end.
    pub run: Run,
    /// The executor's report, or why it did not prune at all (e.g. the
    /// listing failed).
    pub report: anyhow::Result<PruneReport>,
    /// The error recorded in the run (the failed run's message), if any.
    pub error: Option<String>,
}

/// Claim a prune run for `spec`, prune, and finish the run. The run fails
/// when the prune did not complete or any deletion failed; the report (or
/// the error) is returned either way.
pub async fn prune_run<P: Provider>(
    store: &Store,
    provider: &P,
    spec: &DefinitionSpec,
    target: &Target,
    tz: Tz,
    clock: Clock,
) -> Result<PruneRunEnd, PruneRunError> {
    let id = &spec.identity;
    let run = claim(store, spec, tz, clock).await?;
    store
        .update_run(
            &run,
            Update {
                state: Some(RunState::Pruning),
                started: true,
                ..Default::default()
            },
            clock.now(),
        )
        .await?;

    let report = prune::prune(store, provider, spec, target, tz, clock.now(), false).await;
    let error = match &report {
        Ok(report) => report.check().err().map(|e| e.to_string()),
        Err(e) => Some(format!("{e:#}")),
    };
    let run = store
        .update_run(
            &run,
            Update {
                state: Some(if error.is_some() {
                    RunState::Failed
                } else {
                    RunState::Succeeded
                }),
                error: error.as_deref().map(|m| ("prune", m)),
                ..Default::default()
            },
            clock.now(),
        )
        .await?;
    if error.is_none() {
        // The plan is applied: a block by max_deletes_per_run is over.
        crate::telemetry::metrics::prune_blocked(id, false);
    }
    crate::telemetry::metrics::run_finished(id, run.state);
    Ok(PruneRunEnd { run, report, error })
}

/// Claim a run for this prune. Its slot is a whole second at or just before
/// now that is not a fire time of the definition's schedule, so a prune can
/// never take the slot of a scheduled or catch-up run (which would then be
/// skipped as already run); two prunes in one second get different slots.
async fn claim(
    store: &Store,
    spec: &DefinitionSpec,
    tz: Tz,
    clock: Clock,
) -> Result<Run, PruneRunError> {
    let id = &spec.identity;
    let now = clock.now();
    let schedule = &spec.schedule;
    let second = TimeDelta::seconds(1);
    let base = now.with_nanosecond(0).unwrap_or(now);
    for back in 0..SLOT_SEARCH {
        let slot = base - second * back;
        if schedule.next_after(slot - second, tz) == Some(slot) {
            continue;
        }
        match store.claim_run(id, slot, Trigger::Prune, now).await? {
            Claim::Claimed(run) => return Ok(run),
            Claim::Busy(active) => {
                return Err(PruneRunError::Busy {
                    identity: id.clone(),
                    active: Box::new(active),
                })
            }
            Claim::AlreadyRan => continue,
        }
    }
    Err(PruneRunError::NoFreeSlot(id.clone()))
}
