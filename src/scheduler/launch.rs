//! What a pooled run is: a claimed [`Run`] with the definition and target
//! it runs for, driven by the run engine ([`crate::run::Runner`]) with the
//! provider configured under its name when it starts.
//!
//! Invariants: the provider is looked up when the run starts, not when it
//! was claimed, so a reload's providers apply to queued runs; a run whose
//! provider is no longer configured does not start (its row stays
//! unfinished and is resumed or interrupted by the next start's recovery).

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::pool::Launch;
use super::providers::Providers;
use crate::clock::Clock;
use crate::cluster::LeaseHandle;
use crate::domain::{Definition, Identity, Run, Target};
use crate::provider::Provider;
use crate::run::{Ended, RunError, RunOptions, Runner};
use crate::store::{Store, StoreError};

/// A claimed run waiting for a permit.
pub(crate) struct RunJob {
    pub run: Run,
    pub def: Arc<Definition>,
    pub target: Target,
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
        let lease = self.lease.clone();
        Some(async move {
            let RunJob { run, def, target } = job;
            let identity = run.identity.clone();
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
            match runner.drive_guarded(run).await {
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
