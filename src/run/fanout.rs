//! A tag target's slot: one run of the definition (the *fan-out*) that
//! covers every droplet carrying the tag when the slot fires, each droplet
//! a *member* with a run, snapshots, retention and history of its own
//! (identity `tag:<name>/droplet:<id>`, [`Identity::member`]).
//!
//! Steps: list the tagged droplets; claim one member run per droplet for
//! the slot (the claim's unique (identity, slot) row keeps each member
//! exactly-once, as for any definition); start every member's snapshot with
//! one tag request where that is safe; drive the member runs to their ends
//! with the ordinary [`Runner`]; end the fan-out with the members' outcome.
//!
//! Invariants:
//! - The tag request snapshots every droplet carrying the tag, so it is sent
//!   only when every listed member was claimed just now by this fan-out
//!   (none ran this slot already, none is busy with an earlier slot) and no
//!   hook has to bracket a member's snapshot; otherwise each member creates
//!   its own snapshot. Before it is sent every member run records
//!   `creating` with the snapshot's name, so a crash leaves rows that
//!   recovery resumes with `may_exist` (adopt by name, never a second
//!   create).
//! - A droplet the tag request left out (locked by a pending event) is
//!   retried on its own; one that left the tag, or was deleted, before the
//!   request is recorded `skipped` with the reason. A droplet that joined
//!   the tag between the listing and the request got a snapshot from it:
//!   its member run is claimed then and waits on that action.
//! - The fan-out stays in flight until its members are final, and a
//!   resumed fan-out drives the members of its slot that are not final;
//!   recovery leaves a member to its fan-out while the fan-out is in flight.
//! - A droplet that leaves the tag keeps its snapshots: no later slot has a
//!   run for it, so nothing prunes them (they are listed as orphaned).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use super::{Ended, RunError, Runner, Step};
use crate::domain::definition::DefinitionSpec;
use crate::domain::hooks::Consistency;
use crate::domain::run::DEPARTED;
use crate::domain::{Claim, Identity, Run, RunState};
use crate::provider::{Provider, ProviderError};
use crate::store::runs::Update;
use crate::store::StoreError;

/// Identities whose runs have a task driving them (the scheduler's pool):
/// a member driven by a fan-out is registered here, so recovery does not
/// resume it a second time.
pub type InFlight = Arc<Mutex<HashSet<Identity>>>;

/// Marks an identity in flight until dropped.
struct Registered<'a> {
    in_flight: &'a InFlight,
    identity: Identity,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.in_flight.lock() {
            set.remove(&self.identity);
        }
    }
}

/// Register `identity` unless a task drives it already.
fn register<'a>(in_flight: &'a InFlight, identity: &Identity) -> Option<Registered<'a>> {
    let mut set = in_flight.lock().ok()?;
    set.insert(identity.clone()).then(|| Registered {
        in_flight,
        identity: identity.clone(),
    })
}

/// How the members of one slot ended, for the fan-out's own row.
#[derive(Debug, Default)]
struct Outcome {
    succeeded: usize,
    skipped: usize,
    failed: Vec<String>,
    suspended: bool,
}

impl<P: Provider> Runner<'_, P> {
    /// Drive the fan-out `run` of a tag target (`self.spec.target` is a
    /// [`crate::domain::Target::Tag`]) and the member runs of its slot.
    async fn fan_out(&self, run: Run, in_flight: &InFlight) -> Result<Ended, StoreError> {
        let Some(tag) = self.spec.target.tag().map(str::to_owned) else {
            let e = ProviderError::permanent(format!(
                "{} is not a tag target",
                self.spec.identity.target
            ));
            return Ok(self.stop(self.fail(&run, RunState::Failed, &e).await?));
        };
        let first = run.state == RunState::Pending;
        let run = self
            .store
            .update_run(
                &run,
                Update {
                    state: Some(RunState::Creating),
                    started: true,
                    ..Default::default()
                },
                self.clock.now(),
            )
            .await?;
        let members = match self.list_members(&run, &tag).await? {
            Ok(members) => members,
            Err(step) => return Ok(self.stop(step)),
        };
        let specs: BTreeMap<u64, DefinitionSpec> = members
            .iter()
            .map(|d| (*d, self.spec.for_member(*d)))
            .collect();
        let (mut fresh, mut resumed, skipped) = self.claim_members(&run, &specs).await?;
        let hooks = self.options.hooks.resolve(self.spec);
        if first && resumed.is_empty() && skipped == 0 && fresh.len() > 1 {
            if hooks.brackets_snapshot() {
                tracing::info!(definition = %self.spec.identity.name, provider = %self.spec.identity.provider, target = %self.spec.identity.target, members = fresh.len(), "each droplet snapshots on its own: hooks bracket every snapshot");
            } else {
                self.create_by_tag(&run, &tag, &mut fresh).await?;
            }
        }
        let late: BTreeMap<u64, DefinitionSpec> = fresh
            .keys()
            .filter(|d| !specs.contains_key(d))
            .map(|d| (*d, self.spec.for_member(*d)))
            .collect();
        resumed.append(&mut fresh);
        let mut outcome = Outcome {
            skipped,
            ..Default::default()
        };
        let drives = resumed.into_iter().filter_map(|(d, member)| {
            let spec = specs.get(&d).or_else(|| late.get(&d))?;
            Some(self.drive_member(spec, member, in_flight))
        });
        for ended in futures_util::future::join_all(drives).await {
            match ended {
                Ok(None) => {}
                Ok(Some(Ended::Final(m))) => match m.state {
                    RunState::Succeeded => outcome.succeeded += 1,
                    RunState::Skipped => outcome.skipped += 1,
                    _ => outcome.failed.push(format!(
                        "{}: {}",
                        m.identity.target.rsplit('/').next().unwrap_or_default(),
                        m.error.as_deref().unwrap_or(m.state.as_str())
                    )),
                },
                Ok(Some(Ended::Suspended(_))) => outcome.suspended = true,
                Err(e @ StoreError::Fenced { .. }) => return Err(e),
                Err(e) => {
                    tracing::error!(definition = %self.spec.identity.name, provider = %self.spec.identity.provider, target = %self.spec.identity.target, "member run: {e}; it resumes when the store answers again");
                    outcome.suspended = true;
                }
            }
        }
        self.end_fan_out(run, members.len(), outcome).await
    }

    /// Drive `run` to its end: a tag target's fan-out with its members,
    /// any other run as [`Runner::drive_guarded`] does.
    pub async fn drive_any(&self, run: Run, in_flight: &InFlight) -> Result<Ended, RunError> {
        if self.spec.target.tag().is_none() {
            return self.drive_guarded(run).await;
        }
        let run_id = run.id;
        self.fan_out(run, in_flight)
            .await
            .map_err(|source| RunError { run_id, source })
    }

    fn stop(&self, step: Step) -> Ended {
        match step {
            Step::Stop(ended) => ended,
            Step::Continue(run) => Ended::Suspended(run),
        }
    }

    /// The tagged droplets, transient errors retried until the deadline;
    /// the step that ends the fan-out when they cannot be listed.
    async fn list_members(
        &self,
        run: &Run,
        tag: &str,
    ) -> Result<Result<Vec<u64>, Step>, StoreError> {
        let mut attempt = 0;
        loop {
            self.check_lease(run)?;
            match self.bounded(run, self.provider.tag_members(tag)).await {
                Ok(members) => return Ok(Ok(members)),
                Err(e) if e.is_transient() => {
                    let wait = self.backoff(attempt, e.retry_after);
                    attempt += 1;
                    if super::later(self.clock.now(), wait) > self.deadline(run) {
                        return Ok(Err(self.fail(run, RunState::Failed, &e).await?));
                    }
                    tracing::warn!(definition = %self.spec.identity.name, provider = %self.spec.identity.provider, target = %self.spec.identity.target, retry_in = %humantime::format_duration(wait), "transient error listing the droplets tagged {tag}: {e}");
                    if !self.pause(wait).await {
                        return Ok(Err(Step::Stop(Ended::Suspended(run.clone()))));
                    }
                }
                Err(e) => {
                    let e = ProviderError::permanent(format!(
                        "cannot list the droplets tagged {tag}: {}",
                        e.message
                    ));
                    return Ok(Err(self.fail(run, RunState::Failed, &e).await?));
                }
            }
        }
    }

    /// Claim the slot for every member. Returns the runs claimed now and
    /// the earlier runs of this slot (a resumed fan-out) by droplet, and
    /// how many members were skipped as still busy with an earlier slot.
    async fn claim_members(
        &self,
        run: &Run,
        specs: &BTreeMap<u64, DefinitionSpec>,
    ) -> Result<(BTreeMap<u64, Run>, BTreeMap<u64, Run>, usize), StoreError> {
        let slots: Vec<_> = specs
            .values()
            .map(|s| (&s.identity, run.slot, run.trigger))
            .collect();
        let now = self.clock.now();
        let claims = self.store.claim_runs(&slots, now).await?;
        let (mut fresh, mut resumed, mut skipped) = (BTreeMap::new(), BTreeMap::new(), 0);
        for ((d, spec), claim) in specs.iter().zip(claims) {
            match claim {
                Claim::Claimed(member) => {
                    fresh.insert(*d, member);
                }
                Claim::AlreadyRan => {
                    let Some(member) = self.store.run_at(&spec.identity, run.slot).await? else {
                        continue;
                    };
                    if member.state.is_final() {
                        continue;
                    }
                    // Left by a previous owner of this fan-out (fenced
                    // like any takeover: a live owner keeps its runs).
                    let member = if member.owner_node.as_deref() == self.store.node_id().as_deref()
                    {
                        Some(member)
                    } else {
                        self.store.take_over_run(&member, now).await?
                    };
                    if let Some(member) = member {
                        resumed.insert(*d, member);
                    }
                }
                Claim::Busy(other) => {
                    let reason = format!(
                        "overlap: run {} ({}) is still active",
                        other.id,
                        other.trigger.as_str()
                    );
                    tracing::warn!(definition = %spec.identity.name, provider = %spec.identity.provider, target = %spec.identity.target, slot = %run.slot.to_rfc3339(), "skipped: {reason}");
                    self.store
                        .record_not_run(
                            &spec.identity,
                            run.slot,
                            RunState::Skipped,
                            &reason,
                            None,
                            now,
                        )
                        .await?;
                    skipped += 1;
                }
            }
        }
        Ok((fresh, resumed, skipped))
    }

    /// Start every member's snapshot with one tag request. Members the
    /// answer covers wait on their action; the others stay `creating` and
    /// create on their own (adopting by name what the request may have
    /// made); a droplet the answer adds joined the tag since the listing.
    async fn create_by_tag(
        &self,
        run: &Run,
        tag: &str,
        fresh: &mut BTreeMap<u64, Run>,
    ) -> Result<(), StoreError> {
        let name = self.request(run, false).name;
        let now = self.clock.now();
        let creating = Update {
            state: Some(RunState::Creating),
            snapshot_name: Some(&name),
            add_attempt: true,
            started: true,
            consistency: Some(Consistency::Crash),
            ..Default::default()
        };
        for member in fresh.values_mut() {
            *member = self.store.update_run(member, creating.clone(), now).await?;
        }
        self.check_lease(run)?;
        let actions = match self
            .bounded(run, self.provider.snapshot_tag(tag, &name))
            .await
        {
            Ok(actions) => actions,
            Err(e) => {
                tracing::warn!(definition = %self.spec.identity.name, provider = %self.spec.identity.provider, target = %self.spec.identity.target, members = fresh.len(), "the tag request failed, each droplet snapshots on its own: {e}");
                return Ok(());
            }
        };
        let answered = actions.len();
        for (droplet, op) in actions {
            let member = match fresh.remove(&droplet) {
                Some(member) => member,
                None => match self.claim_late(run, droplet, creating.clone()).await? {
                    Some(member) => member,
                    None => continue,
                },
            };
            let member = self
                .store
                .update_run(
                    &member,
                    Update {
                        state: Some(RunState::Waiting),
                        operation_id: Some(&op.id),
                        ..Default::default()
                    },
                    self.clock.now(),
                )
                .await?;
            fresh.insert(droplet, member);
        }
        let left_out: Vec<u64> = fresh
            .iter()
            .filter(|(_, m)| m.state == RunState::Creating)
            .map(|(d, _)| *d)
            .collect();
        tracing::info!(definition = %self.spec.identity.name, provider = %self.spec.identity.provider, target = %self.spec.identity.target, actions = answered, left_out = left_out.len(), "snapshot of the tagged droplets started with one request");
        if !left_out.is_empty() {
            self.skip_departed(run, tag, &left_out, fresh).await?;
        }
        Ok(())
    }

    /// Claim the run of a droplet that joined the tag after the listing
    /// and got a snapshot from the tag request.
    async fn claim_late(
        &self,
        run: &Run,
        droplet: u64,
        creating: Update<'_>,
    ) -> Result<Option<Run>, StoreError> {
        let id = self.spec.identity.member(droplet);
        let now = self.clock.now();
        match self
            .store
            .claim_run(&id, run.slot, run.trigger, now)
            .await?
        {
            Claim::Claimed(member) => {
                Ok(Some(self.store.update_run(&member, creating, now).await?))
            }
            _ => {
                tracing::warn!(definition = %id.name, provider = %id.provider, target = %id.target, slot = %run.slot.to_rfc3339(), "the tag request snapshotted a droplet that joined the tag, but its slot already has a run: that snapshot is not recorded");
                Ok(None)
            }
        }
    }

    /// Members the tag request left out: those no longer carrying the tag
    /// (untagged or deleted) are skipped with the reason; the rest (locked
    /// by a pending event) create on their own.
    async fn skip_departed(
        &self,
        run: &Run,
        tag: &str,
        left_out: &[u64],
        fresh: &mut BTreeMap<u64, Run>,
    ) -> Result<(), StoreError> {
        let Ok(now_tagged) = self.bounded(run, self.provider.tag_members(tag)).await else {
            // Each creates on its own; a gone droplet fails with the
            // provider's answer.
            return Ok(());
        };
        for d in left_out {
            if now_tagged.binary_search(d).is_ok() {
                continue;
            }
            let Some(member) = fresh.remove(d) else {
                continue;
            };
            let reason = format!(
                "droplet {d} no longer carries tag {tag} (untagged or deleted before the snapshot)"
            );
            tracing::warn!(definition = %member.identity.name, provider = %member.identity.provider, target = %member.identity.target, "skipped: {reason}");
            self.store
                .update_run(
                    &member,
                    Update {
                        state: Some(RunState::Skipped),
                        error: Some((DEPARTED, &reason)),
                        ..Default::default()
                    },
                    self.clock.now(),
                )
                .await?;
        }
        Ok(())
    }

    /// Drive one member run with the ordinary run engine; `None` when a
    /// task drives it already.
    async fn drive_member(
        &self,
        spec: &DefinitionSpec,
        member: Run,
        in_flight: &InFlight,
    ) -> Result<Option<Ended>, StoreError> {
        let Some(_registered) = register(in_flight, &spec.identity) else {
            return Ok(None);
        };
        let runner = Runner {
            store: self.store,
            provider: self.provider,
            spec,
            target: spec.target.resource(),
            clock: self.clock,
            options: self.options.clone(),
            shutdown: self.shutdown.clone(),
            lease: self.lease.clone(),
        };
        match runner.drive_guarded(member).await {
            Ok(ended) => Ok(Some(ended)),
            Err(e) => Err(e.source),
        }
    }

    /// The fan-out's own end: succeeded when no member failed, failed with
    /// the failures named otherwise, suspended while a member is.
    async fn end_fan_out(
        &self,
        run: Run,
        members: usize,
        outcome: Outcome,
    ) -> Result<Ended, StoreError> {
        if outcome.suspended {
            return Ok(Ended::Suspended(run));
        }
        tracing::info!(definition = %self.spec.identity.name, provider = %self.spec.identity.provider, target = %self.spec.identity.target, members, succeeded = outcome.succeeded, skipped = outcome.skipped, failed = outcome.failed.len(), "tag slot done");
        let (state, error) = if outcome.failed.is_empty() {
            (RunState::Succeeded, None)
        } else {
            let shown: Vec<&str> = outcome.failed.iter().take(3).map(String::as_str).collect();
            let more = outcome.failed.len().saturating_sub(shown.len());
            let more = if more > 0 {
                format!("; {more} more")
            } else {
                String::new()
            };
            (
                RunState::Failed,
                Some(format!(
                    "{} of {members} droplets failed: {}{more}",
                    outcome.failed.len(),
                    shown.join("; ")
                )),
            )
        };
        let run = self
            .store
            .update_run(
                &run,
                Update {
                    state: Some(state),
                    error: error.as_deref().map(|e| ("permanent", e)),
                    clear_error: error.is_none(),
                    ..Default::default()
                },
                self.clock.now(),
            )
            .await?;
        Ok(Ended::Final(run))
    }
}
