//! Recovery and takeover: runs in flight whose owner node is gone (it
//! crashed, was killed, stopped renewing its lease, or left with runs
//! unfinished after its shutdown grace) are taken over and resumed from the
//! state their row records; so are this node's own runs that have no task
//! (its lease lapsed and it joined again, or a store outage ended a task).
//!
//! Invariants:
//! - A run whose owner node is live is left alone; a takeover is a
//!   conditional update of (owner, lease epoch), so of several nodes racing
//!   for an orphan exactly one gets it, and the old owner's later writes are
//!   refused (fencing).
//! - A run of a definition that is no longer scheduled (deactivated) still
//!   finishes, so a snapshot it made is recorded and pruned like any other.
//! - A run whose definition is gone, or whose provider is no longer
//!   configured, is marked `interrupted` with the reason; nothing is sent
//!   to a provider for it. A post hook it owes (a pre hook started and the
//!   process died) still runs when the definition is there to name it; a
//!   resumable run's owed post hook is the `Runner`'s first step.

use std::sync::Arc;

use super::launch::RunJob;
use super::Scheduler;
use crate::domain::{Definition, Identity, Run, RunState, Target};
use crate::provider::Provider;
use crate::store::runs::Update;
use crate::store::StoreResult;

/// The error recorded on a run that cannot be resumed.
const UNRESUMABLE: &str =
    "interrupted; the definition was removed or its provider is no longer configured";

impl<P: Provider + Clone + 'static> Scheduler<P> {
    /// Take over and resume every run in flight whose owner is gone, and
    /// this node's own runs that have no task; returns how many resumed.
    pub(super) async fn take_over_orphans(&mut self) -> StoreResult<usize> {
        let mut candidates = self.store.orphaned_runs().await?;
        if let Some(me) = self.store.node_id() {
            // Every run of a burst in flight is this node's: read whole rows
            // only of those no task drives.
            let mut own = Vec::new();
            for (id, identity) in self.store.run_keys_owned_by(&me).await? {
                if self.pool.is_running(&identity) {
                    continue;
                }
                if let Some(run) = self.store.get_run(id).await? {
                    if !run.state.is_final() && run.owner_node.as_deref() == Some(&*me) {
                        own.push(run);
                    }
                }
            }
            own.sort_by_key(|r| (r.slot, r.id));
            candidates.extend(own);
        }
        let mut resumed = 0;
        for run in candidates {
            if self.pool.is_running(&run.identity) {
                continue;
            }
            if self.resume(run).await? {
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// Take `run` over and queue it; false when another node was faster or
    /// the run cannot be resumed (then it is marked interrupted).
    async fn resume(&mut self, run: Run) -> StoreResult<bool> {
        if self.left_to_fan_out(&run).await? {
            return Ok(false);
        }
        let resumable = self.resumable_definition(&run.identity).await?;
        let generation = self.lease_generation();
        let Some(run) = self.store.take_over_run(&run, self.clock.now()).await? else {
            return Ok(false);
        };
        let Some((def, target)) = resumable else {
            // A definition whose provider is gone still has its hooks: the
            // post hook a pre hook of this run started is owed all the same.
            let run = match super::launch::run_definition(&self.store, &run.identity).await? {
                Some((def, _)) => {
                    crate::run::settle_owed_post(
                        &self.store,
                        &def.spec,
                        &self.settings.run.hooks,
                        run,
                        self.clock,
                    )
                    .await?
                }
                None => {
                    if run
                        .hook_state
                        .is_some_and(crate::domain::HookState::post_owed)
                    {
                        tracing::warn!(definition = %run.identity.name, provider = %run.identity.provider, target = %run.identity.target, disk = run.identity.disk_id, "run {} owed its post hook, but its definition is gone: the hook cannot be run", run.id);
                    }
                    run
                }
            };
            let update = Update {
                state: Some(RunState::Interrupted),
                error: Some(("permanent", UNRESUMABLE)),
                ..Default::default()
            };
            self.store
                .update_run(&run, update, self.clock.now())
                .await?;
            return Ok(false);
        };
        tracing::info!(definition = %run.identity.name, provider = %run.identity.provider, target = %run.identity.target, disk = run.identity.disk_id, state = run.state.as_str(), epoch = run.lease_epoch, "resuming run");
        self.pool.submit(RunJob {
            run: Box::new(run),
            def: Some((def, target)),
            generation,
        });
        Ok(true)
    }

    /// The definition of a run to resume, scheduled or not (inactive), with
    /// its parsed target, if its provider is configured.
    async fn resumable_definition(
        &self,
        id: &Identity,
    ) -> StoreResult<Option<(Arc<Definition>, Target)>> {
        if self.providers.current().get(&id.provider).is_none() {
            return Ok(None);
        }
        super::launch::run_definition(&self.store, id).await
    }

    /// True when `run` is a member of a tag target whose fan-out of the same
    /// slot is in flight: the fan-out drives it when it resumes.
    async fn left_to_fan_out(&self, run: &Run) -> StoreResult<bool> {
        let Some((parent, _)) = run.identity.member_of() else {
            return Ok(false);
        };
        Ok(self
            .store
            .active_run(&parent)
            .await?
            .is_some_and(|p| p.slot == run.slot))
    }
}
