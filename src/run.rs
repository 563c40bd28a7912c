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
//! - `pruning`: the snapshot exists and is recorded; finish its copies to
//!   the definition's `copy_regions` from their store rows ([`copies`]:
//!   poll a recorded transfer, never send a second one), then prune again.
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
//! Hooks ([`hooks`]) bracket the create request: the pre hook runs right
//! before it (its failure aborts the run, or with `on_pre_hook_failure =
//! "continue"` makes the snapshot crash-consistent), the post hook as soon
//! as the provider has the snapshot's point in time
//! ([`crate::provider::PointInTime`]). Once a pre hook has started, its
//! post hook runs whatever happens next: a failed create, a transient
//! error (the next attempt runs the pair again), a timeout, shutdown. The
//! row records `hook_state = pre` before the pre hook starts and `done`
//! after the post hook, so a run resumed by another process (after a
//! crash) runs the post hook it owes first, once.
//! `on_failure` / `on_success` run after the run's final state is written.
//!
//! A prune run (`snapsched prune`) has a shorter life of its own: see
//! [`prune_run`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::cluster::LeaseHandle;
use crate::domain::definition::DefinitionSpec;
use crate::domain::hooks::{Consistency, HookState, Hooks, OnPreHookFailure};
use crate::domain::{RemoteSnapshot, Target};
use crate::domain::{Run, RunState};
use crate::provider::{
    CreateOutcome, CreateRequest, ErrorClass, Operation, PointInTime, PollOutcome, Provider,
    ProviderError,
};
use crate::store::runs::Update;
use crate::store::{Store, StoreError};
use crate::telemetry::metrics;

mod copies;
mod fanout;
pub mod hooks;
mod prune;

pub use copies::{COPY_ATTEMPTS, COPY_FAILED};
pub use fanout::InFlight;
pub use hooks::{HookDefaults, HookLevels};
pub use prune::{prune_run, PruneRunEnd, PruneRunError};

use hooks::{run_hook, HookEnv, HookStatus, Phase};

/// Settings that shape every run.
#[derive(Debug, Clone)]
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
    /// The providers' and the daemon's hook settings, below each
    /// definition's own.
    pub hooks: HookDefaults,
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
            hooks: HookDefaults::default(),
            shutdown_grace: Duration::ZERO,
        }
    }
}

pub use crate::domain::run::PRUNE_BLOCKED;

/// How long a run resumed after its deadline may look for the snapshot an
/// earlier attempt made.
const LATE_LOOKUP: Duration = Duration::from_secs(60);

/// The tracing target of the one "run ended" line per run, so that a
/// front end that reports the end itself (`snapsched run`) can leave it out.
pub const RUN_ENDED_TARGET: &str = "snapsched::run::ended";

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

/// `t + d`, saturating at the latest representable instant: a timeout far
/// in the future means "no deadline", never an overflow.
pub fn later(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::TimeDelta::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The text of a panic's payload (`panic!` with a literal or a format).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("the run panicked")
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

/// One drive's hooks and what it owes.
struct HookCtx {
    hooks: Hooks,
    env: HookEnv,
    /// A pre hook (or the bracket of a post-only definition) started in this
    /// process and its post hook has not.
    owed: AtomicBool,
    /// This attempt's hook output entries, for the run record.
    output: Mutex<Vec<String>>,
}

impl HookCtx {
    fn owed(&self) -> bool {
        self.owed.load(Ordering::SeqCst)
    }

    /// Record `entry` and return the record's text.
    fn push_output(&self, entry: String) -> String {
        let mut out = self.output.lock().unwrap_or_else(|e| e.into_inner());
        out.push(entry);
        out.join("\n")
    }
}

/// Run the post hook `run` owes when it cannot be resumed (its provider is
/// no longer configured, so no `Runner` can drive it), with
/// `SNAPSCHED_RESULT=aborted`, and record it done. Nothing to do for a run
/// that owes none.
pub async fn settle_owed_post(
    store: &Store,
    spec: &DefinitionSpec,
    defaults: &HookDefaults,
    run: Run,
    clock: Clock,
) -> Result<Run, StoreError> {
    if !run.hook_state.is_some_and(HookState::post_owed) {
        return Ok(run);
    }
    let hooks = defaults.resolve(spec);
    let mut output = None;
    if let Some(post) = &hooks.post {
        let env = HookEnv {
            identity: spec.identity.clone(),
            slot: run.slot,
            snapshot_name: run
                .snapshot_name
                .clone()
                .unwrap_or_else(|| snapshot_name(&spec.identity.name, run.slot)),
            trigger: run.trigger.as_str(),
        };
        let vars = env.vars(Phase::Post, Some("aborted"), None, None);
        let out = run_hook(Phase::Post, post, &vars, hooks.timeout, None).await;
        if out.succeeded() {
            tracing::info!(definition = %spec.identity.name, provider = %spec.identity.provider, target = %spec.identity.target, disk = spec.identity.disk_id, "owed post hook {post} {}", out.describe());
        } else {
            tracing::warn!(definition = %spec.identity.name, provider = %spec.identity.provider, target = %spec.identity.target, disk = spec.identity.disk_id, output = out.tail(), "owed post hook {post} {}", out.describe());
        }
        output = Some(out.record());
    }
    store
        .update_run(
            &run,
            Update {
                hook_state: Some(HookState::Done),
                hook_output: output.as_deref(),
                ..Default::default()
            },
            clock.now(),
        )
        .await
}

/// `SNAPSCHED_RESULT` for a post hook run after the run ended with `state`.
fn post_result(state: RunState) -> &'static str {
    match state {
        RunState::Succeeded | RunState::Pruning => "succeeded",
        RunState::Failed => "failed",
        _ => "aborted",
    }
}

impl<P: Provider> Runner<'_, P> {
    /// Execute (or resume) `run` until it is final or shutdown suspends it.
    pub async fn drive(&self, run: Run) -> Result<Ended, RunError> {
        let run_id = run.id;
        let started = std::time::Instant::now();
        tracing::info!(
            definition = %self.spec.identity.name, provider = %self.spec.identity.provider, target = %self.spec.identity.target, disk = self.spec.identity.disk_id,
            slot = %run.slot.to_rfc3339(),
            trigger = run.trigger.as_str(),
            state = run.state.as_str(),
            "run started"
        );
        let was_final = run.state.is_final();
        let ctx = self.hook_ctx(&run);
        let run = match self.owed_post(&ctx, run).await {
            Ok(run) => run,
            Err(source) => return Err(RunError { run_id, source }),
        };
        let ended = self.drive_inner(run, &ctx).await;
        let ended = self.settle_post(&ctx, ended).await;
        let ended = ended.map_err(|source| RunError { run_id, source })?;
        if let Ended::Final(run) = &ended {
            let elapsed = crate::domain::run::human_duration(started.elapsed());
            match run.state {
                RunState::Succeeded => tracing::info!(
                    target: RUN_ENDED_TARGET,
                    definition = %self.spec.identity.name, provider = %self.spec.identity.provider, target = %self.spec.identity.target, disk = self.spec.identity.disk_id,
                    slot = %run.slot.to_rfc3339(),
                    trigger = run.trigger.as_str(),
                    result = "succeeded",
                    duration = %elapsed,
                    snapshot = run.snapshot_name.as_deref().unwrap_or("-"),
                    "run ended"
                ),
                state => tracing::warn!(
                    target: RUN_ENDED_TARGET,
                    definition = %self.spec.identity.name, provider = %self.spec.identity.provider, target = %self.spec.identity.target, disk = self.spec.identity.disk_id,
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
            // A snapshot missing from a copy region is no full success.
            if run.state == RunState::Succeeded && run.error_class.as_deref() != Some(COPY_FAILED) {
                let at = run.finished_at.unwrap_or_else(|| self.clock.now());
                metrics::last_success(&self.spec.identity, at);
            }
            // Decided before trimming, which may drop the run before it.
            let notify = !was_final && self.should_notify(&ctx, run).await;
            if let Err(e) = self
                .store
                .trim_history(&self.spec.identity, self.options.history_keep)
                .await
            {
                tracing::warn!(definition = %self.spec.identity.name, provider = %self.spec.identity.provider, target = %self.spec.identity.target, disk = self.spec.identity.disk_id, "cannot trim history: {e}");
            }
            if notify {
                self.notify(&ctx, run).await;
            }
        }
        Ok(ended)
    }

    /// [`Runner::drive`], but a panic inside the run does not leave it in
    /// flight: the run fails with the panic's message (so its definition
    /// goes on with its next slot), and the panic ends here.
    pub async fn drive_guarded(&self, run: Run) -> Result<Ended, RunError> {
        use futures_util::FutureExt;
        let started = run.clone();
        match std::panic::AssertUnwindSafe(self.drive(run))
            .catch_unwind()
            .await
        {
            Ok(ended) => ended,
            Err(payload) => {
                let message = format!("internal error: {}", panic_message(payload.as_ref()));
                self.fail_after_panic(started, &message).await
            }
        }
    }

    /// Record a panicked run as failed, unless it already ended; a post
    /// hook it owes runs first.
    async fn fail_after_panic(&self, run: Run, message: &str) -> Result<Ended, RunError> {
        let run_id = run.id;
        let at = |source| RunError { run_id, source };
        let current = self.store.get_run(run_id).await.map_err(at)?.unwrap_or(run);
        if current.state.is_final() {
            return Ok(Ended::Final(current));
        }
        let current = settle_owed_post(
            self.store,
            self.spec,
            &self.options.hooks,
            current,
            self.clock,
        )
        .await
        .map_err(at)?;
        let failed = self
            .store
            .update_run(
                &current,
                Update {
                    state: Some(RunState::Failed),
                    error: Some(("internal", message)),
                    ..Default::default()
                },
                self.clock.now(),
            )
            .await
            .map_err(at)?;
        tracing::error!(
            definition = %self.spec.identity.name, provider = %self.spec.identity.provider, target = %self.spec.identity.target, disk = self.spec.identity.disk_id,
            slot = %failed.slot.to_rfc3339(),
            trigger = failed.trigger.as_str(),
            result = failed.state.as_str(),
            error = message,
            "run ended"
        );
        metrics::run_finished(&self.spec.identity, failed.state);
        Ok(Ended::Final(failed))
    }

    fn hook_ctx(&self, run: &Run) -> HookCtx {
        HookCtx {
            hooks: self.options.hooks.resolve(self.spec),
            env: HookEnv {
                identity: self.spec.identity.clone(),
                slot: run.slot,
                snapshot_name: self.request(run, false).name,
                trigger: run.trigger.as_str(),
            },
            owed: AtomicBool::new(false),
            output: Mutex::new(Vec::new()),
        }
    }

    /// Run the post hook a previous owner of `run` owes (it crashed, or
    /// lost its lease, between the pre and the post hook), before anything
    /// else happens to the run.
    async fn owed_post(&self, ctx: &HookCtx, run: Run) -> Result<Run, StoreError> {
        if !run.hook_state.is_some_and(HookState::post_owed) || run.state.is_final() {
            return Ok(run);
        }
        self.check_lease(&run)?;
        let taken = match run.state {
            RunState::Pruning => true,
            RunState::Waiting => self.provider.point_in_time(&self.target) == PointInTime::Accepted,
            _ => false,
        };
        tracing::warn!(
            definition = %self.spec.identity.name, provider = %self.spec.identity.provider, target = %self.spec.identity.target, disk = self.spec.identity.disk_id,
            run = run.id,
            "running the post hook an interrupted run owes"
        );
        let result = if taken { "succeeded" } else { "aborted" };
        let mut run = run;
        if run.state == RunState::Waiting && !taken {
            // Thawed before the provider took the snapshot.
            run = self
                .store
                .update_run(
                    &run,
                    Update {
                        consistency: Some(Consistency::Crash),
                        ..Default::default()
                    },
                    self.clock.now(),
                )
                .await?;
        }
        let snapshot_id = run.snapshot_id.clone();
        self.post(ctx, run, result, snapshot_id.as_deref()).await
    }

    /// After the run's steps ended, however they ended: the post hook a
    /// pre hook of this drive still owes.
    async fn settle_post(
        &self,
        ctx: &HookCtx,
        ended: Result<Ended, StoreError>,
    ) -> Result<Ended, StoreError> {
        if !ctx.owed() {
            return ended;
        }
        match ended {
            Ok(Ended::Final(run)) => {
                let result = post_result(run.state);
                let id = run.snapshot_id.clone();
                Ok(Ended::Final(
                    self.post(ctx, run, result, id.as_deref()).await?,
                ))
            }
            Ok(Ended::Suspended(run)) => {
                // A snapshot still being taken is no longer consistent.
                let run = if run.state == RunState::Waiting {
                    self.store
                        .update_run(
                            &run,
                            Update {
                                consistency: Some(Consistency::Crash),
                                ..Default::default()
                            },
                            self.clock.now(),
                        )
                        .await?
                } else {
                    run
                };
                Ok(Ended::Suspended(
                    self.post(ctx, run, "aborted", None).await?,
                ))
            }
            Err(e) => {
                // The row cannot be written (fenced, or the store is down):
                // run the hook anyway; the row still says it is owed, so a
                // later owner may run it once more.
                ctx.owed.store(false, Ordering::SeqCst);
                if let Some(post) = &ctx.hooks.post {
                    let vars = ctx.env.vars(Phase::Post, Some("aborted"), None, None);
                    let out = run_hook(Phase::Post, post, &vars, ctx.hooks.timeout, None).await;
                    self.log_hook(post, &out);
                }
                Err(e)
            }
        }
    }

    /// Run the post hook (if any) now and record the bracket closed. The
    /// hook runs even when its row cannot be written.
    async fn post(
        &self,
        ctx: &HookCtx,
        run: Run,
        result: &str,
        snapshot_id: Option<&str>,
    ) -> Result<Run, StoreError> {
        ctx.owed.store(false, Ordering::SeqCst);
        let Some(post) = &ctx.hooks.post else {
            return self
                .store
                .update_run(
                    &run,
                    Update {
                        hook_state: Some(HookState::Done),
                        ..Default::default()
                    },
                    self.clock.now(),
                )
                .await;
        };
        let started = self
            .store
            .update_run(
                &run,
                Update {
                    hook_state: Some(HookState::Post),
                    ..Default::default()
                },
                self.clock.now(),
            )
            .await;
        let vars = ctx.env.vars(Phase::Post, Some(result), snapshot_id, None);
        let out = run_hook(Phase::Post, post, &vars, ctx.hooks.timeout, None).await;
        self.log_hook(post, &out);
        let text = ctx.push_output(out.record());
        let run = started?;
        self.store
            .update_run(
                &run,
                Update {
                    hook_state: Some(HookState::Done),
                    hook_output: Some(&text),
                    ..Default::default()
                },
                self.clock.now(),
            )
            .await
    }

    /// Run the pre hook (if any); `Ok(None)` when the run goes on with
    /// `consistency`, `Ok(Some(step))` when it stops here.
    async fn pre(&self, ctx: &HookCtx, run: Run) -> Result<(Run, Option<Step>), StoreError> {
        ctx.output.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let run = self
            .store
            .update_run(
                &run,
                Update {
                    hook_state: Some(HookState::Pre),
                    ..Default::default()
                },
                self.clock.now(),
            )
            .await?;
        ctx.owed.store(true, Ordering::SeqCst);
        let Some(pre) = &ctx.hooks.pre else {
            // A post hook alone: nothing quiesced the disk.
            return Ok((run, None));
        };
        let vars = ctx.env.vars(Phase::Pre, None, None, None);
        let out = run_hook(
            Phase::Pre,
            pre,
            &vars,
            ctx.hooks.timeout,
            Some(&self.shutdown),
        )
        .await;
        self.log_hook(pre, &out);
        let text = ctx.push_output(out.record());
        // Recorded only when a snapshot is going to be requested.
        let consistency = match (out.succeeded(), ctx.hooks.on_pre_failure) {
            (true, _) => Some(Consistency::App),
            (false, OnPreHookFailure::Continue) if out.status != HookStatus::Cancelled => {
                Some(Consistency::Crash)
            }
            _ => None,
        };
        let run = self
            .store
            .update_run(
                &run,
                Update {
                    hook_output: Some(&text),
                    consistency,
                    ..Default::default()
                },
                self.clock.now(),
            )
            .await?;
        if out.status == HookStatus::Cancelled {
            let run = self.post(ctx, run, "aborted", None).await?;
            return Ok((run.clone(), Some(Step::Stop(Ended::Suspended(run)))));
        }
        if out.succeeded() {
            return Ok((run, None));
        }
        match ctx.hooks.on_pre_failure {
            OnPreHookFailure::Continue => {
                tracing::warn!(definition = %self.spec.identity.name, provider = %self.spec.identity.provider, target = %self.spec.identity.target, disk = self.spec.identity.disk_id, "pre hook {}; taking a crash-consistent snapshot (on_pre_hook_failure = \"continue\")", out.describe());
                Ok((run, None))
            }
            OnPreHookFailure::Abort => {
                let run = self.post(ctx, run, "aborted", None).await?;
                let tail = out.tail();
                let e = ProviderError::permanent(format!(
                    "pre hook {pre} {}; no snapshot was requested (on_pre_hook_failure = \"abort\"){}",
                    out.describe(),
                    if tail.is_empty() {
                        String::new()
                    } else {
                        format!("; output: {tail}")
                    }
                ));
                let step = self.fail(&run, RunState::Failed, &e).await?;
                Ok((run, Some(step)))
            }
        }
    }

    fn log_hook(&self, command: &crate::domain::hooks::Command, out: &hooks::HookOutcome) {
        let elapsed = crate::domain::run::human_duration(out.elapsed);
        tracing::debug!(
            definition = %self.spec.identity.name, provider = %self.spec.identity.provider, target = %self.spec.identity.target, disk = self.spec.identity.disk_id,
            phase = out.phase.as_str(),
            "hook {command} output:\n{}",
            out.output
        );
        if out.succeeded() {
            tracing::info!(definition = %self.spec.identity.name, provider = %self.spec.identity.provider, target = %self.spec.identity.target, disk = self.spec.identity.disk_id, phase = out.phase.as_str(), duration = %elapsed, "hook {command} {}", out.describe());
        } else {
            tracing::warn!(definition = %self.spec.identity.name, provider = %self.spec.identity.provider, target = %self.spec.identity.target, disk = self.spec.identity.disk_id, phase = out.phase.as_str(), duration = %elapsed, output = out.tail(), "hook {command} {}", out.describe());
        }
    }

    /// Whether `run`'s end calls its `on_success` / `on_failure` command.
    /// `on_failure` is called once per stretch of failures: for the first
    /// failed run after a success (or ever), not again until a run
    /// succeeds, so a definition that keeps failing does not page on every
    /// slot (the webhook's `run_failed` follows the same rule).
    async fn should_notify(&self, ctx: &HookCtx, run: &Run) -> bool {
        match run.state {
            RunState::Succeeded => ctx.hooks.on_success.is_some(),
            RunState::Failed | RunState::Interrupted if ctx.hooks.on_failure.is_some() => {
                match self
                    .store
                    .previous_outcome(&self.spec.identity, run.id)
                    .await
                {
                    Ok(Some(RunState::Failed | RunState::Interrupted)) => {
                        tracing::info!(
                            definition = %self.spec.identity.name, provider = %self.spec.identity.provider, target = %self.spec.identity.target, disk = self.spec.identity.disk_id,
                            "on_failure not called: the definition was already failing (it is called again after a success)"
                        );
                        false
                    }
                    Ok(_) => true,
                    Err(e) => {
                        tracing::warn!(definition = %self.spec.identity.name, provider = %self.spec.identity.provider, target = %self.spec.identity.target, disk = self.spec.identity.disk_id, "cannot read the previous run ({e}); calling on_failure");
                        true
                    }
                }
            }
            _ => false,
        }
    }

    /// `on_success` / `on_failure` after the run's final state is written.
    async fn notify(&self, ctx: &HookCtx, run: &Run) {
        let (phase, command) = match run.state {
            RunState::Succeeded => (Phase::OnSuccess, &ctx.hooks.on_success),
            RunState::Failed | RunState::Interrupted => (Phase::OnFailure, &ctx.hooks.on_failure),
            _ => return,
        };
        let Some(command) = command else {
            return;
        };
        let error = match phase {
            Phase::OnFailure => Some(run.error.as_deref().unwrap_or(run.state.as_str())),
            _ => None,
        };
        let vars = ctx.env.vars(
            phase,
            Some(run.state.as_str()),
            run.snapshot_id.as_deref(),
            error,
        );
        let out = run_hook(phase, command, &vars, ctx.hooks.timeout, None).await;
        self.log_hook(command, &out);
    }

    async fn drive_inner(&self, mut run: Run, ctx: &HookCtx) -> Result<Ended, StoreError> {
        loop {
            let step = match run.state {
                RunState::Pending | RunState::Creating => self.create(run, ctx).await?,
                RunState::Waiting => self.wait(run, ctx).await?,
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
        later(run.created_at, self.options.run_timeout)
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
        let generation = self.lease.as_ref().and_then(LeaseHandle::generation);
        let call = crate::provider::gate::scoped(generation, call);
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
        let mut tags = self.spec.tags.clone();
        // A run with hooks says how consistent its snapshot is (DigitalOcean
        // tags it; droplet snapshots get their tags once the action ends,
        // from the request rebuilt for polling, hence from the row).
        if let (Some(_), Some(c)) = (run.hook_state, run.consistency) {
            tags.push(format!("consistency:{}", c.as_str()));
        }
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
            tags,
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

    async fn create(&self, run: Run, ctx: &HookCtx) -> Result<Step, StoreError> {
        let mut transient = 0u32;
        // A run that was already `creating` may have reached the provider.
        let mut may_exist = run.state == RunState::Creating || run.attempts > 0;
        if may_exist && self.clock.now() > self.deadline(&run) {
            return self.adopt_late(run).await;
        }
        let mut run = run;
        let bracketed = ctx.hooks.brackets_snapshot();
        loop {
            let mut req = self.request(&run, may_exist);
            run = self
                .store
                .update_run(
                    &run,
                    Update {
                        state: Some(RunState::Creating),
                        snapshot_name: Some(&req.name),
                        add_attempt: true,
                        started: true,
                        // Without a pre hook nothing quiesces the disk.
                        consistency: ctx.hooks.pre.is_none().then_some(Consistency::Crash),
                        ..Default::default()
                    },
                    self.clock.now(),
                )
                .await?;
            self.check_lease(&run)?;
            if bracketed {
                let (next, stop) = self.pre(ctx, run).await?;
                run = next;
                if let Some(step) = stop {
                    return Ok(step);
                }
                self.check_lease(&run)?;
                // Now with the consistency the pre hook decided.
                req = self.request(&run, may_exist);
            }
            match self
                .bounded(&run, self.provider.create_snapshot(&req))
                .await
            {
                Ok(CreateOutcome::Done(snap)) => {
                    if ctx.owed() {
                        run = self.post(ctx, run, "succeeded", Some(&snap.id)).await?;
                    }
                    return self.created(run, snap).await;
                }
                Ok(CreateOutcome::Pending(op)) => return self.accepted(run, &op.id, ctx).await,
                Err(e) if e.is_transient() => {
                    if ctx.owed() {
                        // The next attempt runs the pre hook again.
                        run = self.post(ctx, run, "failed", None).await?;
                    }
                    may_exist = true;
                    let wait = self.backoff(transient, e.retry_after);
                    transient += 1;
                    if later(self.clock.now(), wait) > self.deadline(&run) {
                        return self.fail(&run, RunState::Failed, &e).await;
                    }
                    tracing::warn!(definition = %self.spec.identity.name, provider = %self.spec.identity.provider, target = %self.spec.identity.target, disk = self.spec.identity.disk_id, retry_in = %humantime::format_duration(wait), "transient error creating snapshot: {e}");
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
                Err(e) => {
                    if ctx.owed() {
                        run = self.post(ctx, run, "failed", None).await?;
                    }
                    return self.fail(&run, RunState::Failed, &e).await;
                }
            }
        }
    }

    /// A run resumed after its deadline: too late to make the snapshot
    /// now, but if the earlier attempt made it, it is ours and is recorded.
    async fn adopt_late(&self, run: Run) -> Result<Step, StoreError> {
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
            tracing::info!(definition = %self.spec.identity.name, provider = %self.spec.identity.provider, target = %self.spec.identity.target, disk = self.spec.identity.disk_id, snapshot = %name, "adopting the snapshot an interrupted run made");
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
        self.fail(&run, RunState::Interrupted, &e).await
    }

    /// The provider accepted the create and works on it as `op_id`: the run
    /// waits on it, and a post hook owed at acceptance runs now.
    async fn accepted(&self, run: Run, op_id: &str, ctx: &HookCtx) -> Result<Step, StoreError> {
        let mut run = self
            .store
            .update_run(
                &run,
                Update {
                    state: Some(RunState::Waiting),
                    operation_id: Some(op_id),
                    clear_error: true,
                    ..Default::default()
                },
                self.clock.now(),
            )
            .await?;
        if ctx.owed() && self.provider.point_in_time(&self.target) == PointInTime::Accepted {
            run = self.post(ctx, run, "succeeded", None).await?;
        }
        Ok(Step::Continue(run))
    }

    async fn wait(&self, mut run: Run, ctx: &HookCtx) -> Result<Step, StoreError> {
        let Some(op_id) = run.operation_id.clone() else {
            // Waiting without an operation id cannot happen through `create`;
            // treat it like an interrupted create.
            return Ok(Step::Continue(run));
        };
        let op = Operation { id: op_id };
        let req = self.request(&run, true);
        let policy = self.provider.poll_policy();
        let give_up = later(run.started_at.unwrap_or(run.created_at), policy.timeout);
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
                            definition = %self.spec.identity.name, provider = %self.spec.identity.provider, target = %self.spec.identity.target, disk = self.spec.identity.disk_id,
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
                Ok(PollOutcome::Done(snap)) => {
                    if ctx.owed() {
                        run = self.post(ctx, run, "succeeded", Some(&snap.id)).await?;
                    }
                    return self.created(run, snap).await;
                }
                Ok(PollOutcome::Pending) => {}
                Err(e) if e.is_transient() => {
                    tracing::warn!(definition = %self.spec.identity.name, provider = %self.spec.identity.provider, target = %self.spec.identity.target, disk = self.spec.identity.disk_id, "transient error polling {}: {e}", op.id);
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
        let copies = self.copies(&run).await?;
        if copies.suspended {
            return Ok(Step::Stop(Ended::Suspended(run)));
        }
        let copy_failed =
            (!copies.failed.is_empty()).then(|| copies::failed_message(&copies.failed));
        self.check_lease(&run)?;
        let prune = crate::prune::after_success_limited(
            self.store,
            self.provider,
            self.spec,
            &self.target,
            self.spec.zone(self.options.default_zone),
            self.clock.now(),
            crate::prune::max_deletes(self.spec, self.options.max_deletes_per_run),
            run.snapshot_id.as_deref(),
        );
        // The prune, too, ends at the run's deadline; what it did not get
        // to, the next prune does.
        let deadline = self.clock.instant_of(self.deadline(&run));
        let Ok(outcome) = tokio::time::timeout_at(deadline, prune).await else {
            let mut message = format!(
                "snapshot made; pruning stopped at run_timeout {}, the next prune goes on",
                humantime::format_duration(self.options.run_timeout)
            );
            if let Some(c) = &copy_failed {
                message = format!("{c}; {message}");
            }
            tracing::warn!(definition = %self.spec.identity.name, provider = %self.spec.identity.provider, target = %self.spec.identity.target, disk = self.spec.identity.disk_id, "{message}");
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
        let id = &self.spec.identity;
        match &outcome {
            Ok(_) => crate::telemetry::metrics::prune_blocked(id, false),
            Err(crate::prune::PruneError::Blocked { .. }) => {
                crate::telemetry::metrics::prune_blocked(id, true)
            }
            Err(_) => {}
        }
        let error = match &outcome {
            Ok(_) => copy_failed.clone().map(|m| (COPY_FAILED, m)),
            Err(e @ crate::prune::PruneError::Blocked { .. }) => {
                Some((PRUNE_BLOCKED, format!("snapshot made; prune blocked: {e}")))
            }
            Err(e) => {
                tracing::warn!(definition = %self.spec.identity.name, provider = %self.spec.identity.provider, target = %self.spec.identity.target, disk = self.spec.identity.disk_id, "pruning failed: {e}");
                Some(("prune", format!("snapshot made; pruning failed: {e}")))
            }
        };
        // A blocked or failed prune keeps its class (status, check and the
        // prune_blocked gauge read it); the copy failure is in the message
        // and in the copy rows.
        let error = match (error, &copy_failed) {
            (Some((class, m)), Some(c)) if class != COPY_FAILED => Some((
                class,
                format!("{c}; {}", m.trim_start_matches("snapshot made; ")),
            )),
            (error, _) => error,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_far_deadline_saturates_instead_of_overflowing() {
        let now = Utc::now();
        assert_eq!(
            later(now, Duration::from_secs(u64::MAX)),
            DateTime::<Utc>::MAX_UTC
        );
        assert_eq!(
            later(now, Duration::from_secs(31_557_600 * 1_000_000)),
            DateTime::<Utc>::MAX_UTC
        );
        assert_eq!(
            later(now, Duration::from_secs(60)),
            now + chrono::TimeDelta::seconds(60)
        );
    }

    #[test]
    fn a_panic_payload_becomes_its_message() {
        let literal = std::panic::catch_unwind(|| panic!("boom")).unwrap_err();
        assert_eq!(panic_message(literal.as_ref()), "boom");
        let formatted = std::panic::catch_unwind(|| panic!("boom {}", 7)).unwrap_err();
        assert_eq!(panic_message(formatted.as_ref()), "boom 7");
    }
}
