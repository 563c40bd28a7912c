//! Recovery at start: runs left unfinished by a process that is gone
//! (crash, kill, power loss, a shutdown grace that ran out) are adopted and
//! resumed from the state their row records.
//!
//! Invariants:
//! - A run whose owner process is still alive (another snapsched) is left
//!   alone; only this process's own leftovers and dead owners' runs are
//!   taken.
//! - A run of a definition that is no longer scheduled (deactivated) still
//!   finishes, so a snapshot it made is recorded and pruned like any other.
//! - A run whose definition is gone, or whose provider is no longer
//!   configured, is marked `interrupted` with the reason; nothing is sent
//!   to a provider for it.

use std::sync::Arc;

use super::launch::RunJob;
use super::Scheduler;
use crate::domain::definition::parse_target;
use crate::domain::{Definition, Identity, RunState, Target};
use crate::provider::Provider;
use crate::store::runs::Update;
use crate::store::StoreResult;

/// The error recorded on a run that cannot be resumed.
const UNRESUMABLE: &str =
    "interrupted; the definition was removed or its provider is no longer configured";

impl<P: Provider + Clone + 'static> Scheduler<P> {
    /// Adopt and resume every unfinished run whose owner is gone.
    pub(super) async fn recover(&mut self) -> StoreResult<()> {
        let me = std::process::id();
        for run in self.store.unfinished_runs().await? {
            let owner_alive = run.owner_pid.is_some_and(|pid| {
                pid != me && std::path::Path::new(&format!("/proc/{pid}")).exists()
            });
            if owner_alive {
                continue;
            }
            let resumable = match self.timers.get(&run.identity) {
                Some(entry) => Some((entry.def.clone(), entry.target.clone())),
                None => self.inactive_definition(&run.identity).await?,
            };
            let Some((def, target)) = resumable else {
                let error = Some(("permanent", UNRESUMABLE));
                let update = Update {
                    state: Some(RunState::Interrupted),
                    error,
                    ..Default::default()
                };
                self.store
                    .update_run(&run, update, self.clock.now())
                    .await?;
                continue;
            };
            tracing::info!(definition = %run.identity, state = run.state.as_str(), "resuming run");
            let Some(run) = self.store.take_over_run(&run, self.clock.now()).await? else {
                continue;
            };
            self.pool.submit(RunJob { run, def, target });
        }
        Ok(())
    }

    /// A definition that is in the store but not scheduled (inactive), with
    /// its parsed target, if its provider is configured.
    async fn inactive_definition(
        &self,
        id: &Identity,
    ) -> StoreResult<Option<(Arc<Definition>, Target)>> {
        let Some(def) = self.store.get_definition(id).await? else {
            return Ok(None);
        };
        let providers = self.providers.current();
        let Some((_, kind)) = providers.get(&id.provider) else {
            return Ok(None);
        };
        Ok(parse_target(&id.target, *kind)
            .ok()
            .map(|target| (Arc::new(def), target)))
    }
}
