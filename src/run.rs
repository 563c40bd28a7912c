//! One run's life: create the snapshot, wait for the provider, prune.
//!
//! States: `pending → creating → waiting → pruning → succeeded`, or `failed`
//! / `interrupted`. Each transition is committed before the provider call it
//! leads to and after the call returns, so that a crash at any point leaves
//! a row that recovery can resume from:
//! - `creating` with a snapshot name: the create request may have reached the
//!   provider; resume with `may_exist` so the provider adopts a snapshot of
//!   that name instead of making a second one.
//! - `waiting` with an operation id: resume polling it.
//! - `pruning`: the snapshot exists and is recorded; prune again.
//!
//! On shutdown a run waiting on an operation keeps polling it within
//! `shutdown_grace` and finishes if the provider does; otherwise (and in
//! every other state) it is suspended as its row stands, for the next
//! start (or another node) to resume.
//!
//! Transient provider errors are retried with exponential backoff and jitter
//! until `run_timeout`; permanent errors fail the run at once with the
//! provider's message.
//!
//! A prune run (`snapsched prune`) has a shorter life of its own: see
//! [`prune_run`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::cluster::LeaseHandle;
use crate::domain::definition::DefinitionSpec;
use crate::domain::{RemoteSnapshot, Target};
use crate::domain::{Run, RunState};
use crate::provider::{
    CreateOutcome, CreateRequest, ErrorClass, Operation, PollOutcome, Provider, ProviderError,
};
use crate::store::runs::Update;
use crate::store::{Store, StoreError};
use crate::telemetry::metrics;

mod prune;

pub use prune::{prune_run, PruneRunEnd, PruneRunError};

/// Settings that shape every run.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Give up on transient errors after this long from the run's creation.
    pub run_timeout: Duration,
    /// First wait after a transient error; doubles up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Runs kept in history per definition.
    pub history_keep: u32,
    /// The zone of definitions that name none (`daemon.timezone`): retention
    /// tiers are bucketed in it.
    pub default_zone: Tz,
    /// `daemon.max_deletes_per_run`: a post-run prune that would delete
    /// more is blocked (0 = no limit).
    pub max_deletes_per_run: u32,
    /// `daemon.shutdown_grace`: after shutdown is asked for, a run waiting
    /// on a provider operation keeps polling it for this long (less a
    /// margin), so work about to finish is recorded now rather than at the
    /// next start. Zero suspends at once.
    pub shutdown_grace: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            run_timeout: Duration::from_secs(6 * 3600),
            retry_initial: Duration::from_secs(5),
            retry_max: Duration::from_secs(300),
            history_keep: 1000,
            default_zone: Tz::UTC,
            // The daemon's limit comes from the configuration
            // ([`crate::wiring::run_options`]); without one, none.
            max_deletes_per_run: 0,
            shutdown_grace: Duration::ZERO,
        }
    }
}

/// How long a run resumed after its deadline may look for the snapshot an
/// earlier attempt made.
const LATE_LOOKUP: Duration = Duration::from_secs(60);

/// The error class of a run whose post-run prune was blocked by
/// `max_deletes_per_run`; the run itself succeeded.
pub const PRUNE_BLOCKED: &str = "prune_blocked";

pub use crate::domain::snapshot::snapshot_name;

/// What ended a run's execution.
#[derive(Debug)]
pub enum Ended {
    /// The run reached a final state.
    Final(Run),
    /// Shutdown was requested while waiting; the run stays resumable.
    Suspended(Run),
}

/// Why a run could not be driven (the store failed; the provider's errors
/// end up in the run row instead).
#[derive(Debug, thiserror::Error)]
#[error("run {run_id}: {source}")]
pub struct RunError {
    pub run_id: i64,
    #[source]
    pub source: StoreError,
}

/// Drives one run to its end.
pub struct Runner<'a, P> {
    pub store: &'a Store,
    pub provider: &'a P,
    pub spec: &'a DefinitionSpec,
    pub target: Target,
    pub clock: Clock,
    pub options: RunOptions,
    pub shutdown: CancellationToken,
    /// This node's lease: no provider call is made while it does not hold
    /// (the run is dropped; its new owner, or this node once it renews,
    /// resumes it). `None`: a single process with no other node to fear.
    pub lease: Option<LeaseHandle>,
}

enum Step {
    Continue(Run),
    Stop(Ended),
}

impl<P: Provider> Runner<'_, P> {
    /// Execute (or resume) `run` until it is final or shutdown suspends it.
    pub async fn drive(&self, run: Run) -> Result<Ended, RunError> {
        let run_id = run.id;
        let started = std::time::Instant::now();
        tracing::info!(
            definition = %self.spec.identity,
            slot = %run.slot.to_rfc3339(),
            trigger = run.trigger.as_str(),
            state = run.state.as_str(),
            "run started"
        );
        let ended = self
            .drive_inner(run)
            .await
            .map_err(|source| RunError { run_id, source })?;
        if let Ended::Final(run) = &ended {
            let elapsed = humantime::format_duration(Duration::from_millis(
                started.elapsed().as_millis() as u64,
            ));
            match run.state {
                RunState::Succeeded => tracing::info!(
                    definition = %self.spec.identity,
                    slot = %run.slot.to_rfc3339(),
                    trigger = run.trigger.as_str(),
                    result = "succeeded",
                    duration = %elapsed,
                    snapshot = run.snapshot_name.as_deref().unwrap_or("-"),
                    "run ended"
                ),
                state => tracing::warn!(
                    definition = %self.spec.identity,
                    slot = %run.slot.to_rfc3339(),
                    trigger = run.trigger.as_str(),
                    result = state.as_str(),
                    duration = %elapsed,
                    snapshot = run.snapshot_name.as_deref().unwrap_or("-"),
                    error = run.error.as_deref().unwrap_or("-"),
                    "run ended"
                ),
            }
            metrics::run_finished(&self.spec.identity, run.state);
            if run.state == RunState::Succeeded {
                let at = run.finished_at.unwrap_or_else(|| self.clock.now());
                metrics::last_success(&self.spec.identity, at);
            }
            if let Err(e) = self
                .store
                .trim_history(&self.spec.identity, self.options.history_keep)
                .await
            {
                tracing::warn!(definition = %self.spec.identity, "cannot trim history: {e}");
            }
        }
        Ok(ended)
    }

    async fn drive_inner(&self, mut run: Run) -> Result<Ended, StoreError> {
        loop {
            let step = match run.state {
                RunState::Pending | RunState::Creating => self.create(run).await?,
                RunState::Waiting => self.wait(run).await?,
                RunState::Pruning => self.prune(run).await?,
                _ => Step::Stop(Ended::Final(run)),
            };
            match step {
                Step::Continue(next) => run = next,
                Step::Stop(ended) => return Ok(ended),
            }
        }
    }

    fn deadline(&self, run: &Run) -> DateTime<Utc> {
        run.created_at + chrono::Duration::from_std(self.options.run_timeout).unwrap_or_default()
    }

    /// Run `call` to its end or until the run's deadline, whichever comes
    /// first: a provider that never answers, or answers for ever (endless
    /// pages, a trickling body), cannot hold a run past `run_timeout`.
    async fn bounded<T>(
        &self,
        run: &Run,
        call: impl std::future::Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let deadline = self.clock.instant_of(self.deadline(run));
        match tokio::time::timeout_at(deadline, call).await {
            Ok(result) => result,
            Err(_) => Err(ProviderError::permanent(format!(
                "run_timeout {} reached while waiting for the provider",
                humantime::format_duration(self.options.run_timeout)
            ))),
        }
    }

    fn request(&self, run: &Run, may_exist: bool) -> CreateRequest {
        let name = run
            .snapshot_name
            .clone()
            .unwrap_or_else(|| snapshot_name(&self.spec.identity.name, run.slot));
        CreateRequest {
            target: self.target.clone(),
            disk_id: self.spec.identity.disk_id,
            note: format!(
                "snapsched: definition {} ({} trigger, slot {})",
                self.spec.identity.name,
                run.trigger.as_str(),
                run.slot.to_rfc3339()
            ),
            name,
            fsfreeze: self.spec.fsfreeze,
            tags: self.spec.tags.clone(),
            may_exist,
        }
    }

    async fn fail(
        &self,
        run: &Run,
        state: RunState,
        e: &ProviderError,
    ) -> Result<Step, StoreError> {
        let class = match e.class {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
        };
        let run = self
            .store
            .update_run(
                run,
                Update {
                    state: Some(state),
                    error: Some((class, &e.message)),
                    ..Default::default()
                },
                self.clock.now(),
            )
            .await?;
        Ok(Step::Stop(Ended::Final(run)))
    }

    /// Refuse to act on `run` once this node's lease has lapsed: another
    /// node may own the run by now.
    fn check_lease(&self, run: &Run) -> Result<(), StoreError> {
        match &self.lease {
            Some(lease) if !lease.holds() => Err(StoreError::Fenced { run_id: run.id }),
            _ => Ok(()),
        }
    }

    /// Sleep `wait` unless shutdown comes first; false on shutdown.
    async fn pause(&self, wait: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = self.shutdown.cancelled() => false,
        }
    }

    /// How long a run waiting on an operation goes on polling after
    /// shutdown: the grace less a margin (a tenth, at most a second), so it
    /// ends by itself before the grace runs out and its task is aborted.
    fn drain_window(&self) -> Duration {
        let grace = self.options.shutdown_grace;
        grace.saturating_sub((grace / 10).min(Duration::from_secs(1)))
    }

    /// Backoff with ±20% jitter for transient error number `attempt`.
    fn backoff(&self, attempt: u32, hint: Option<Duration>) -> Duration {
        let base = self
            .options
            .retry_initial
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.options.retry_max);
        let jitter = rand::rng().random_range(0.8..1.2);
        hint.unwrap_or(Duration::ZERO).max(base.mul_f64(jitter))
    }

    async fn create(&self, run: Run) -> Result<Step, StoreError> {
        let mut transient = 0u32;
        // A run that was already `creating` may have reached the provider.
        let mut may_exist = run.state == RunState::Creating || run.attempts > 0;
        if may_exist && self.clock.now() > self.deadline(&run) {
            // Resumed after the deadline: too late to make the snapshot now,
            // but if the earlier attempt made it, it is ours and is recorded.
            let name = self.request(&run, true).name;
            // The deadline has passed: the lookup gets a short bound of
            // its own.
            let listed = tokio::time::timeout(
                LATE_LOOKUP,
                self.provider
                    .list_snapshots(&self.target, self.spec.identity.disk_id),
            )
            .await
            .unwrap_or_else(|_| {
                Err(ProviderError::transient(format!(
                    "no answer within {}",
                    humantime::format_duration(LATE_LOOKUP)
                )))
            });
            let found = match &listed {
                Ok(all) => all.iter().find(|s| s.name == name).cloned(),
                Err(_) => None,
            };
            if let Some(snap) = found {
                tracing::info!(definition = %self.spec.identity, snapshot = %name, "adopting the snapshot an interrupted run made");
                return self.created(run, snap).await;
            }
            let why = match listed {
                Ok(_) => String::new(),
                Err(e) => format!("; looking for {name} failed: {e}"),
            };
            let e = ProviderError::permanent(format!(
                "interrupted and not resumed within run_timeout {}{why}",
                humantime::format_duration(self.options.run_timeout)
            ));
            return self.fail(&run, RunState::Interrupted, &e).await;
        }
        let mut run = run;
        loop {
            let req = self.request(&run, may_exist);
            run = self
                .store
                .update_run(
                    &run,
                    Update {
                        state: Some(RunState::Creating),
                        snapshot_name: Some(&req.name),
                        add_attempt: true,
                        started: true,
                        ..Default::default()
                    },
                    self.clock.now(),
                )
                .await?;
            self.check_lease(&run)?;
            match self
                .bounded(&run, self.provider.create_snapshot(&req))
                .await
            {
                Ok(CreateOutcome::Done(snap)) => return self.created(run, snap).await,
                Ok(CreateOutcome::Pending(op)) => {
                    let run = self
                        .store
                        .update_run(
                            &run,
                            Update {
                                state: Some(RunState::Waiting),
                                operation_id: Some(&op.id),
                                clear_error: true,
                                ..Default::default()
                            },
                            self.clock.now(),
                        )
                        .await?;
                    return Ok(Step::Continue(run));
                }
                Err(e) if e.is_transient() => {
                    may_exist = true;
                    let wait = self.backoff(transient, e.retry_after);
                    transient += 1;
                    if self.clock.now() + chrono::Duration::from_std(wait).unwrap_or_default()
                        > self.deadline(&run)
                    {
                        return self.fail(&run, RunState::Failed, &e).await;
                    }
                    tracing::warn!(definition = %self.spec.identity, retry_in = %humantime::format_duration(wait), "transient error creating snapshot: {e}");
                    run = self
                        .store
                        .update_run(
                            &run,
                            Update {
                                error: Some(("transient", &e.message)),
                                ..Default::default()
                            },
                            self.clock.now(),
                        )
                        .await?;
                    if !self.pause(wait).await {
                        return Ok(Step::Stop(Ended::Suspended(run)));
                    }
                }
                Err(e) => return self.fail(&run, RunState::Failed, &e).await,
            }
        }
    }

    async fn wait(&self, mut run: Run) -> Result<Step, StoreError> {
        let Some(op_id) = run.operation_id.clone() else {
            // Waiting without an operation id cannot happen through `create`;
            // treat it like an interrupted create.
            return Ok(Step::Continue(run));
        };
        let op = Operation { id: op_id };
        let req = self.request(&run, true);
        let policy = self.provider.poll_policy();
        let give_up = run.started_at.unwrap_or(run.created_at)
            + chrono::Duration::from_std(policy.timeout).unwrap_or_default();
        let give_up = give_up.min(self.deadline(&run));
        let mut interval = policy.initial;
        // Set once shutdown is asked for: poll on until then.
        let mut stop_at: Option<tokio::time::Instant> = None;
        loop {
            let left = (give_up - self.clock.now()).to_std().unwrap_or_default();
            let nap = interval.min(left);
            match stop_at {
                None => {
                    if !self.pause(nap).await {
                        let window = self.drain_window();
                        if window.is_zero() {
                            return Ok(Step::Stop(Ended::Suspended(run)));
                        }
                        tracing::info!(
                            definition = %self.spec.identity,
                            operation = %op.id,
                            "shutting down: still polling the operation for up to {}",
                            humantime::format_duration(window)
                        );
                        stop_at = Some(tokio::time::Instant::now() + window);
                    }
                }
                Some(stop) => {
                    tokio::time::sleep_until(stop.min(tokio::time::Instant::now() + nap)).await;
                    if tokio::time::Instant::now() >= stop {
                        return Ok(Step::Stop(Ended::Suspended(run)));
                    }
                }
            }
            interval = (interval * 2).min(policy.max);
            match self.bounded(&run, self.provider.poll(&req, &op)).await {
                Ok(PollOutcome::Done(snap)) => return self.created(run, snap).await,
                Ok(PollOutcome::Pending) => {}
                Err(e) if e.is_transient() => {
                    tracing::warn!(definition = %self.spec.identity, "transient error polling {}: {e}", op.id);
                    if let Some(hint) = e.retry_after {
                        interval = interval.max(hint);
                    }
                }
                Err(e) => return self.fail(&run, RunState::Failed, &e).await,
            }
            if self.clock.now() >= give_up {
                let e = ProviderError::permanent(format!(
                    "operation {} did not finish within {}",
                    op.id,
                    humantime::format_duration(policy.timeout)
                ));
                return self.fail(&run, RunState::Failed, &e).await;
            }
            run.updated_at = self.clock.now();
        }
    }

    async fn created(&self, run: Run, snap: RemoteSnapshot) -> Result<Step, StoreError> {
        // Ownership is recorded by name: a reply that names another
        // snapshot (a confused or hostile server) must not make that
        // snapshot ours, where retention would later delete it.
        let wanted = self.request(&run, true).name;
        if snap.name != wanted {
            let e = ProviderError::permanent(format!(
                "the provider answered the create of {wanted} with snapshot {:?} (id {:?}); it is not recorded as this definition's",
                snap.name, snap.id
            ));
            return self.fail(&run, RunState::Failed, &e).await;
        }
        let now = self.clock.now();
        self.store
            .record_snapshot(&self.spec.identity, &snap, Some(run.id), false, now)
            .await?;
        let run = self
            .store
            .update_run(
                &run,
                Update {
                    state: Some(RunState::Pruning),
                    snapshot_id: Some(&snap.id),
                    clear_error: true,
                    ..Default::default()
                },
                now,
            )
            .await?;
        Ok(Step::Continue(run))
    }

    async fn prune(&self, run: Run) -> Result<Step, StoreError> {
        self.check_lease(&run)?;
        let prune = crate::prune::after_success_limited(
            self.store,
            self.provider,
            self.spec,
            &self.target,
            self.spec.zone(self.options.default_zone),
            self.clock.now(),
            crate::prune::max_deletes(self.spec, self.options.max_deletes_per_run),
        );
        // The prune, too, ends at the run's deadline; what it did not get
        // to, the next prune does.
        let deadline = self.clock.instant_of(self.deadline(&run));
        let Ok(outcome) = tokio::time::timeout_at(deadline, prune).await else {
            let message = format!(
                "snapshot made; pruning stopped at run_timeout {}, the next prune goes on",
                humantime::format_duration(self.options.run_timeout)
            );
            tracing::warn!(definition = %self.spec.identity, "{message}");
            let run = self
                .store
                .update_run(
                    &run,
                    Update {
                        state: Some(RunState::Succeeded),
                        error: Some(("prune", &message)),
                        ..Default::default()
                    },
                    self.clock.now(),
                )
                .await?;
            return Ok(Step::Stop(Ended::Final(run)));
        };
        // The run succeeded either way: the snapshot is made.
        let error = match &outcome {
            Ok(_) => None,
            Err(e @ crate::prune::PruneError::Blocked { .. }) => {
                Some((PRUNE_BLOCKED, format!("snapshot made; prune blocked: {e}")))
            }
            Err(e) => {
                tracing::warn!(definition = %self.spec.identity, "pruning failed: {e}");
                Some(("prune", format!("snapshot made; pruning failed: {e}")))
            }
        };
        let run = self
            .store
            .update_run(
                &run,
                Update {
                    state: Some(RunState::Succeeded),
                    error: error.as_ref().map(|(class, m)| (*class, m.as_str())),
                    ..Default::default()
                },
                self.clock.now(),
            )
            .await?;
        Ok(Step::Stop(Ended::Final(run)))
    }
}
