//! What a pooled run is: a claimed [`Run`], driven by the run engine
//! ([`crate::run::Runner`]) with the provider configured under its name
//! and the definition as the store holds it when it starts.
//!
//! Invariants: the provider is looked up when the run starts, not when it
//! was claimed, so a reload's providers apply to queued runs; a run whose
//! provider is no longer configured does not start (its row stays
//! unfinished and is resumed or interrupted by the next start's recovery).
//! A scheduled run reads its definition when it starts (the timer queue
//! keeps only what firing needs): a definition removed since the claim
//! interrupts the run with the reason, nothing is sent to a provider; a
//! store that does not answer leaves the row for recovery, as a store
//! error in the run itself does.

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::pool::Launch;
use super::providers::Providers;
use crate::clock::Clock;
use crate::cluster::LeaseHandle;
use crate::domain::{Definition, Identity, Run, RunState, Target};
use crate::provider::Provider;
use crate::run::{Ended, InFlight, RunError, RunOptions, Runner};
use crate::store::runs::Update;
use crate::store::{Store, StoreError};

/// A claimed run waiting for a permit, with its definition and parsed
/// target when already read (a resumed run), else `None`: read when it
/// starts.
pub(crate) struct RunJob {
    /// Boxed: the pool's queue holds every slot of a burst (100,000 at
    /// once in the benchmark), and a queue of boxes grows by copying
    /// pointers, not whole rows.
    pub run: Box<Run>,
    pub def: Option<(Arc<Definition>, Target)>,
    /// The lease generation the run was claimed or taken over in: the run
    /// acts only while the lease is still that membership's, however long
    /// it queued (a node that joined again under a new id meanwhile does
    /// not drive a row of its old id).
    pub generation: Option<u64>,
}

/// The error recorded on a scheduled run whose definition was removed
/// between its claim and its start.
const REMOVED: &str = "interrupted; the definition was removed before the run started";

/// The definition `run` runs for, read from the store; `None` (logged, and
/// the run interrupted when the definition is gone) when it cannot start.
async fn definition_of(
    store: &Store,
    run: &Run,
    clock: Clock,
) -> Option<(Arc<Definition>, Target)> {
    let id = &run.identity;
    match run_definition(store, id).await {
        Ok(Some(loaded)) => Some(loaded),
        Ok(None) => {
            tracing::warn!(definition = %id.name, provider = %id.provider, target = %id.target, disk = id.disk_id, run = run.id, "{REMOVED}");
            let update = Update {
                state: Some(RunState::Interrupted),
                error: Some(("permanent", REMOVED)),
                ..Default::default()
            };
            if let Err(e) = store.update_run(run, update, clock.now()).await {
                tracing::error!(definition = %id.name, provider = %id.provider, target = %id.target, disk = id.disk_id, "{e}; the run is resumed or interrupted when the store answers again");
            }
            None
        }
        Err(e) => {
            tracing::error!(definition = %id.name, provider = %id.provider, target = %id.target, disk = id.disk_id, "{e}; the run resumes when the store answers again");
            None
        }
    }
}

/// The definition a run of `id` runs with and the target its provider
/// calls act on: for a member of a tag target, its tag definition narrowed
/// to the member ([`crate::domain::definition::DefinitionSpec::for_member`]).
pub(super) async fn run_definition(
    store: &Store,
    id: &Identity,
) -> Result<Option<(Arc<Definition>, Target)>, StoreError> {
    let Some((parent, droplet)) = id.member_of() else {
        return Ok(store.get_definition(id).await?.map(|def| {
            let target = def.spec.target.clone();
            (Arc::new(def), target)
        }));
    };
    Ok(store.get_definition(&parent).await?.map(|mut def| {
        def.spec = def.spec.for_member(droplet);
        let target = def.spec.target.resource();
        (Arc::new(def), target)
    }))
}

/// Starts [`RunJob`]s with the run engine.
pub(crate) struct RunLauncher<P> {
    pub store: Store,
    pub providers: Providers<P>,
    pub clock: Clock,
    pub options: RunOptions,
    pub shutdown: CancellationToken,
    /// This node's lease, checked before every provider call.
    pub lease: Option<LeaseHandle>,
    /// The pool's identities in flight, where a fan-out registers members.
    pub in_flight: InFlight,
}

impl<P: Provider + Clone + 'static> Launch for RunLauncher<P> {
    type Job = RunJob;

    fn identity(job: &RunJob) -> &Identity {
        &job.run.identity
    }

    fn launch(&self, job: RunJob) -> Option<impl Future<Output = ()> + Send + 'static> {
        let (provider, _) = self
            .providers
            .current()
            .get(&job.run.identity.provider)
            .cloned()?;
        let store = self.store.clone();
        let clock = self.clock;
        let options = self.options.clone();
        let shutdown = self.shutdown.clone();
        let lease = self.lease.as_ref().map(|l| l.pinned_to(job.generation));
        let in_flight = self.in_flight.clone();
        Some(async move {
            let RunJob { run, def, .. } = job;
            let identity = run.identity.clone();
            let loaded = match def {
                Some(loaded) => Some(loaded),
                None => definition_of(&store, &run, clock).await,
            };
            let Some((def, target)) = loaded else {
                return;
            };
            let runner = Runner {
                store: &store,
                provider: &provider,
                spec: &def.spec,
                target,
                clock,
                options,
                shutdown,
                lease,
            };
            match runner.drive_any(*run, &in_flight).await {
                Ok(Ended::Final(_)) => {}
                Ok(Ended::Suspended(r)) => {
                    tracing::info!(definition = %identity.name, provider = %identity.provider, target = %identity.target, disk = identity.disk_id, state = r.state.as_str(), "run suspended for shutdown; it resumes at next start");
                }
                Err(RunError {
                    run_id,
                    source: StoreError::Fenced { .. },
                }) => {
                    tracing::warn!(definition = %identity.name, provider = %identity.provider, target = %identity.target, disk = identity.disk_id, run = run_id, "run dropped: another node took it over (this node's lease lapsed)");
                }
                Err(e) => {
                    tracing::error!(definition = %identity.name, provider = %identity.provider, target = %identity.target, disk = identity.disk_id, "{e}; the run resumes when the store answers again")
                }
            }
        })
    }
}
