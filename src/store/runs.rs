//! Run records: one row per (definition identity, slot).
//!
//! The unique key (identity, slot) is what makes a slot run at most once, no
//! matter how many processes try; the partial unique index `runs_one_active`
//! is the per-definition lock. Every state change is its own committed
//! statement so that a crash leaves a row that says exactly how far the run
//! got; a final state commits together with the notification events it
//! produces ([`super::notify`]).
//!
//! The table is meant to grow ownership columns (owner node, lease epoch):
//! reads name their columns ([`COLS`]) and decode into [`RunRow`], so a new
//! column changes nothing here until the code uses it.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, SubsecRound, Utc};

use super::backend::{placeholders, Args, Backend, Conn};
use super::{
    active_states, parse_opt_ts, parse_ts, ts, ts_ms, IdentityRow, Store, StoreError, StoreResult,
    OF_IDENTITY,
};
use crate::clock::Clock;
use crate::domain::run::DEPARTED;
use crate::domain::{Claim, Consistency, HookState, Identity, Run, RunState, Trigger};

/// A change to apply to a run row in one statement.
#[derive(Debug, Clone, Default)]
pub struct Update<'a> {
    pub state: Option<RunState>,
    pub snapshot_name: Option<&'a str>,
    pub snapshot_id: Option<&'a str>,
    pub operation_id: Option<&'a str>,
    pub add_attempt: bool,
    pub error: Option<(&'a str, &'a str)>,
    pub clear_error: bool,
    pub started: bool,
    pub consistency: Option<Consistency>,
    pub hook_state: Option<HookState>,
    /// Replaces the recorded hook output.
    pub hook_output: Option<&'a str>,
}

const COLS: &str = "id, provider, target, disk_id, def_name, slot, trigger, state, snapshot_name,
    snapshot_id, operation_id, attempts, missed_count, error_class, error, owner_pid, created_at,
    started_at, updated_at, finished_at, owner_node, lease_epoch, consistency, hook_state,
    hook_output";

/// A run's id and definition identity.
#[derive(sqlx::FromRow)]
struct RunKeyRow {
    id: i64,
    #[sqlx(flatten)]
    identity: IdentityRow,
}

/// A `runs` row as read through [`COLS`].
#[derive(sqlx::FromRow)]
struct RunRow {
    id: i64,
    #[sqlx(flatten)]
    identity: IdentityRow,
    slot: String,
    trigger: String,
    state: String,
    snapshot_name: Option<String>,
    snapshot_id: Option<String>,
    operation_id: Option<String>,
    attempts: i64,
    missed_count: Option<i64>,
    error_class: Option<String>,
    error: Option<String>,
    owner_pid: Option<i64>,
    created_at: String,
    started_at: Option<String>,
    updated_at: String,
    finished_at: Option<String>,
    owner_node: Option<String>,
    lease_epoch: i64,
    consistency: Option<String>,
    hook_state: Option<String>,
    hook_output: Option<String>,
}

impl RunRow {
    fn into_run(self) -> StoreResult<Run> {
        Ok(Run {
            id: self.id,
            identity: self.identity.into_identity()?,
            slot: parse_ts(&self.slot)?,
            trigger: Trigger::parse(&self.trigger)
                .ok_or_else(|| StoreError::Corrupt(format!("trigger '{}'", self.trigger)))?,
            state: RunState::parse(&self.state)
                .ok_or_else(|| StoreError::Corrupt(format!("state '{}'", self.state)))?,
            snapshot_name: self.snapshot_name,
            snapshot_id: self.snapshot_id,
            operation_id: self.operation_id,
            attempts: self.attempts as u32,
            missed_count: self.missed_count.map(|n| n as u32),
            error_class: self.error_class,
            error: self.error,
            owner_pid: self.owner_pid.map(|n| n as u32),
            created_at: parse_ts(&self.created_at)?,
            started_at: parse_opt_ts(self.started_at.as_deref())?,
            updated_at: parse_ts(&self.updated_at)?,
            finished_at: parse_opt_ts(self.finished_at.as_deref())?,
            owner_node: self.owner_node,
            lease_epoch: self.lease_epoch,
            consistency: self
                .consistency
                .map(|c| {
                    Consistency::parse(&c)
                        .ok_or_else(|| StoreError::Corrupt(format!("consistency '{c}'")))
                })
                .transpose()?,
            hook_state: self
                .hook_state
                .map(|h| {
                    HookState::parse(&h)
                        .ok_or_else(|| StoreError::Corrupt(format!("hook state '{h}'")))
                })
                .transpose()?,
            hook_output: self.hook_output,
        })
    }
}

/// What a claim's insert returns of each new row.
#[derive(sqlx::FromRow)]
struct ClaimedRow {
    id: i64,
    #[sqlx(flatten)]
    identity: IdentityRow,
    slot: String,
}

fn into_runs(rows: Vec<RunRow>) -> StoreResult<Vec<Run>> {
    rows.into_iter().map(RunRow::into_run).collect()
}

/// Slots claimed per statement: at 100,000 definitions due at one instant,
/// a statement per row spends most of its time in the round trip to the
/// database (sqlite's worker thread, or the server), not in the database.
/// On SQLite the placeholders are anonymous (`?`): sqlx binds a named one
/// by looking its name up, and SQLite finds a name by walking the
/// statement's list of them, so named placeholders cost the square of the
/// arguments per statement; anonymous ones bind by position.
fn rows_per_statement(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 512,
        Backend::Postgres => 256,
    }
}

impl Store {
    /// Claim `slot` of a definition for a new pending run owned by this
    /// process: [`Store::claim_runs`] of one slot.
    pub async fn claim_run(
        &self,
        id: &Identity,
        slot: DateTime<Utc>,
        trigger: Trigger,
        now: DateTime<Utc>,
    ) -> StoreResult<Claim> {
        self.claim_runs(&[(id, slot, trigger)], now)
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("a claim of one slot answered nothing".into()))
    }

    /// Claim many slots in one transaction, in order; the result has one
    /// [`Claim`] per slot. One commit for a whole burst of due slots keeps
    /// dispatch fast when thousands of definitions share a slot; a slot that
    /// conflicts (already ran, or its definition is busy) claims nothing.
    pub async fn claim_runs(
        &self,
        slots: &[(&Identity, DateTime<Utc>, Trigger)],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Claim>> {
        Ok(self.claim_with(slots, || now).await?.0)
    }

    /// [`Store::claim_runs`], stamped with `clock`'s time once the claim's
    /// transaction has begun (so a claim that queued behind another write
    /// records when it was made, not when it was asked for); returns the
    /// instant too.
    pub async fn claim_runs_now(
        &self,
        slots: &[(&Identity, DateTime<Utc>, Trigger)],
        clock: Clock,
    ) -> StoreResult<(Vec<Claim>, DateTime<Utc>)> {
        self.claim_with(slots, || clock.now()).await
    }

    async fn claim_with(
        &self,
        slots: &[(&Identity, DateTime<Utc>, Trigger)],
        now: impl FnOnce() -> DateTime<Utc>,
    ) -> StoreResult<(Vec<Claim>, DateTime<Utc>)> {
        let node = self.node_id();
        let pid = std::process::id();
        let backend = self.backend();
        let mut tx = self.pool.begin_write().await?;
        let now = now();
        let at = ts_ms(now);
        // The row as inserted, from what is bound: the insert returns only
        // the key and id (decoding every column of thousands of new rows
        // back cost more than inserting them).
        let created = parse_ts(&at)?;
        // Rows go in in the order of the runs indexes (identity, then
        // slot), whatever order the slots came in, so that the rows of one
        // statement land on neighbouring index pages: 100,000 rows in
        // random order insert several times slower than in index order.
        // Stable, so of two equal slots the first asked is the one claimed.
        let mut order: Vec<usize> = (0..slots.len()).collect();
        order.sort_by(|&a, &b| (slots[a].0, slots[a].1).cmp(&(slots[b].0, slots[b].1)));
        let sorted: Vec<(&Identity, DateTime<Utc>, Trigger)> =
            order.iter().map(|&i| slots[i]).collect();
        // The new run's id per slot, in the order of `sorted`.
        let mut claimed_sorted: Vec<Option<i64>> = vec![None; slots.len()];
        let per_statement = rows_per_statement(backend);
        for (chunk, ids) in sorted
            .chunks(per_statement)
            .zip(claimed_sorted.chunks_mut(per_statement))
        {
            // Each row's placeholders and arguments, in one place per
            // backend. PostgreSQL binds the time, owner pid and owner node
            // once ($1-$3) and each row's identity, slot and trigger from
            // $4 + 6i; SQLite binds all ten of each row anonymously.
            let (values, args) = match backend {
                Backend::Postgres => {
                    let mut args = Args::with_capacity(3 + 6 * chunk.len())
                        .text(at.as_str())
                        .int(pid)
                        .text(node.as_deref());
                    let mut values = Vec::with_capacity(chunk.len());
                    for (i, (id, slot, trigger)) in chunk.iter().enumerate() {
                        values.push(format!(
                            "({}, 'pending', $2, $3, 1, $1, $1)",
                            placeholders(4 + 6 * i, 6)
                        ));
                        args = args.identity(id).text(ts(*slot)).text(trigger.as_str());
                    }
                    (values.join(", "), args)
                }
                Backend::Sqlite => {
                    let mut args = Args::with_capacity(10 * chunk.len());
                    for (id, slot, trigger) in chunk {
                        args = args
                            .identity(id)
                            .text(ts(*slot))
                            .text(trigger.as_str())
                            .int(pid)
                            .text(node.as_deref())
                            .text(at.as_str())
                            .text(at.as_str());
                    }
                    let row = "(?, ?, ?, ?, ?, ?, 'pending', ?, ?, 1, ?, ?)";
                    (vec![row; chunk.len()].join(", "), args)
                }
            };
            let insert = format!(
                "INSERT INTO runs (provider, target, disk_id, def_name, slot, trigger, state,
                     owner_pid, owner_node, lease_epoch, created_at, updated_at)
                 VALUES {values}
                 ON CONFLICT DO NOTHING{}",
                match backend {
                    Backend::Postgres => " RETURNING id, provider, target, disk_id, def_name, slot",
                    Backend::Sqlite => "",
                }
            );
            let rows = match backend {
                Backend::Postgres => tx.conn().fetch_all::<ClaimedRow>(&insert, &args).await?,
                Backend::Sqlite => {
                    // Rows come back from SQLite's thread one message
                    // each; the ids are known without them. One
                    // statement inserts its rows in order, each with the
                    // next rowid, so when every row went in they are the
                    // last `n` ids in order; otherwise the new rows are
                    // read back by their id range.
                    let (inserted, last) = tx.conn().insert(&insert, &args).await?;
                    let last = last.unwrap_or_default();
                    // At most `per_statement` rows.
                    let n = i64::try_from(inserted).unwrap_or_default();
                    if inserted == 0 {
                        continue;
                    }
                    if n as usize == chunk.len() {
                        for (id, run_id) in (last - n + 1..).zip(ids.iter_mut()) {
                            *run_id = Some(id);
                        }
                        continue;
                    }
                    tx.conn()
                        .fetch_all::<ClaimedRow>(
                            "SELECT id, provider, target, disk_id, def_name, slot FROM runs
                             WHERE id > $1 AND id <= $2",
                            &Args::new().int(last - n).int(last),
                        )
                        .await?
                }
            };
            // Keyed by the slot as stored, so a sub-second slot still
            // finds its row.
            let mut by_key: HashMap<(Identity, String), i64> = HashMap::with_capacity(rows.len());
            for row in rows {
                by_key.insert((row.identity.into_identity()?, row.slot), row.id);
            }
            if by_key.is_empty() {
                continue;
            }
            for ((id, slot, _), run_id) in chunk.iter().zip(ids.iter_mut()) {
                *run_id = by_key.remove(&((*id).clone(), ts(*slot)));
            }
        }
        // The new run's id per slot, in the order of `slots`.
        let mut claimed: Vec<Option<i64>> = vec![None; slots.len()];
        for (&i, run_id) in order.iter().zip(claimed_sorted) {
            claimed[i] = run_id;
        }
        let mut out = Vec::with_capacity(slots.len());
        for ((id, slot, trigger), run_id) in slots.iter().zip(claimed) {
            if let Some(run_id) = run_id {
                out.push(Claim::Claimed(Run {
                    id: run_id,
                    identity: (*id).clone(),
                    // As stored (whole seconds), as a read would give it.
                    slot: slot.trunc_subsecs(0),
                    trigger: *trigger,
                    state: RunState::Pending,
                    snapshot_name: None,
                    snapshot_id: None,
                    operation_id: None,
                    attempts: 0,
                    missed_count: None,
                    error_class: None,
                    error: None,
                    owner_pid: Some(pid),
                    owner_node: node.as_deref().map(str::to_owned),
                    lease_epoch: 1,
                    consistency: None,
                    hook_state: None,
                    hook_output: None,
                    created_at: created,
                    started_at: None,
                    updated_at: created,
                    finished_at: None,
                }));
                continue;
            }
            out.push(match active_run_in(&mut tx.conn(), id).await? {
                Some(run) if run.slot != *slot => Claim::Busy(run),
                _ => Claim::AlreadyRan,
            });
        }
        tx.commit().await?;
        Ok((out, now))
    }

    /// Record a slot that did not run (`skipped` or `missed`) as a final row.
    /// Returns false when the slot already has a row.
    pub async fn record_not_run(
        &self,
        id: &Identity,
        slot: DateTime<Utc>,
        state: RunState,
        reason: &str,
        missed_count: Option<u32>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let inserted = self
            .pool
            .execute(
                "INSERT INTO runs (provider, target, disk_id, def_name, slot, trigger, state,
                     missed_count, error, created_at, updated_at, finished_at)
                 VALUES ($1, $2, $3, $4, $5, 'schedule', $6, $7, $8, $9, $9, $9)
                 ON CONFLICT (provider, target, disk_id, def_name, slot) DO NOTHING",
                &Args::new()
                    .identity(id)
                    .text(ts(slot))
                    .text(state.as_str())
                    .int(missed_count)
                    .text(reason)
                    .text(ts_ms(now)),
            )
            .await?;
        Ok(inserted > 0)
    }

    /// Apply `u` to `run`, provided its owner and lease epoch are still
    /// those of `run` (fencing); returns the updated row, or
    /// [`StoreError::Fenced`] when another node took the run over.
    pub async fn update_run(
        &self,
        run: &Run,
        u: Update<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<Run> {
        let run_id = run.id;
        let finished = u.state.filter(|s| s.is_final()).map(|_| ts_ms(now));
        // Stored errors are bounded: a provider's 10 MB error page must not
        // land whole in the row (nor in every `history` that prints it).
        let (class, message) = match u.error {
            Some((c, m)) => (
                Some(c),
                Some(crate::domain::text::bounded_error(m).into_owned()),
            ),
            None => (None, None),
        };
        let sql = format!(
            "UPDATE runs SET
                 state = COALESCE($2, state),
                 snapshot_name = COALESCE($3, snapshot_name),
                 snapshot_id = COALESCE($4, snapshot_id),
                 operation_id = COALESCE($5, operation_id),
                 attempts = attempts + $6,
                 error_class = CASE WHEN $7 THEN NULL ELSE COALESCE($8, error_class) END,
                 error = CASE WHEN $7 THEN NULL ELSE COALESCE($9, error) END,
                 started_at = CASE WHEN $10 AND started_at IS NULL THEN $11
                              ELSE started_at END,
                 finished_at = COALESCE($12, finished_at),
                 owner_pid = CASE WHEN $12 IS NOT NULL THEN NULL ELSE owner_pid END,
                 consistency = COALESCE($15, consistency),
                 hook_state = COALESCE($16, hook_state),
                 hook_output = COALESCE($17, hook_output),
                 updated_at = $11
             WHERE id = $1 AND owner_node IS NOT DISTINCT FROM $13 AND lease_epoch = $14
             RETURNING {COLS}"
        );
        let args = Args::new()
            .int(run_id)
            .text(u.state.map(RunState::as_str))
            .text(u.snapshot_name)
            .text(u.snapshot_id)
            .text(u.operation_id)
            .int(i64::from(u.add_attempt))
            .bool(u.clear_error)
            .text(class)
            .text(message)
            .bool(u.started)
            .text(ts_ms(now))
            .text(finished.clone())
            .text(run.owner_node.as_deref())
            .int(run.lease_epoch)
            .text(u.consistency.map(Consistency::as_str))
            .text(u.hook_state.map(HookState::as_str))
            .text(u.hook_output);
        // A final state and the notification events it produces commit
        // together (see [`super::notify`]).
        let notify = self.notify_queue_limit().filter(|_| finished.is_some());
        let Some(limit) = notify else {
            return self
                .pool
                .fetch_optional::<RunRow>(&sql, &args)
                .await?
                .ok_or(StoreError::Fenced { run_id })?
                .into_run();
        };
        let mut tx = self.pool.begin_write().await?;
        let updated = tx
            .conn()
            .fetch_optional::<RunRow>(&sql, &args)
            .await?
            .ok_or(StoreError::Fenced { run_id })?
            .into_run()?;
        let node = self.node_id();
        super::notify::on_run_final(
            &mut tx.conn(),
            self.backend(),
            limit,
            &updated,
            node.as_deref(),
        )
        .await?;
        tx.commit().await?;
        Ok(updated)
    }

    /// Take `run` over for this store's node: it becomes the owner under
    /// the next lease epoch, provided nobody took it since `run` was read.
    /// `None` when another node was faster or the run ended meanwhile.
    pub async fn take_over_run(&self, run: &Run, now: DateTime<Utc>) -> StoreResult<Option<Run>> {
        let node = self.node_id();
        self.pool
            .fetch_optional::<RunRow>(
                &format!(
                    "UPDATE runs SET owner_node = $2, owner_pid = $3, lease_epoch = lease_epoch + 1,
                         updated_at = $4
                     WHERE id = $1 AND owner_node IS NOT DISTINCT FROM $5 AND lease_epoch = $6
                       AND state IN ({})
                     RETURNING {COLS}",
                    active_states()
                ),
                &Args::new()
                    .int(run.id)
                    .text(node.as_deref().map(str::to_owned))
                    .int(std::process::id())
                    .text(ts_ms(now))
                    .text(run.owner_node.as_deref())
                    .int(run.lease_epoch),
            )
            .await?
            .map(RunRow::into_run)
            .transpose()
    }

    /// The in-flight run of a definition, if any.
    pub async fn active_run(&self, id: &Identity) -> StoreResult<Option<Run>> {
        active_run_in(&mut self.pool.acquire().await?.conn(), id).await
    }

    /// The run of `id` at `slot`, in any state.
    pub async fn run_at(&self, id: &Identity, slot: DateTime<Utc>) -> StoreResult<Option<Run>> {
        self.pool
            .fetch_optional::<RunRow>(
                &format!("SELECT {COLS} FROM runs WHERE {OF_IDENTITY} AND slot = $5"),
                &Args::new().identity(id).text(ts(slot)),
            )
            .await?
            .map(RunRow::into_run)
            .transpose()
    }

    /// The members of tag target `parent` that runs or snapshot records
    /// exist for, ordered by target (current and departed alike).
    pub async fn members_of(&self, parent: &Identity) -> StoreResult<Vec<Identity>> {
        let prefix = format!("{}/", parent.target);
        let of_member = "provider = $1 AND disk_id = $3 AND def_name = $4
             AND substr(target, 1, CAST($5 AS INTEGER)) = $2";
        let rows = self
            .pool
            .fetch_all::<IdentityRow>(
                &format!(
                    "SELECT provider, target, disk_id, def_name FROM runs WHERE {of_member}
                     UNION
                     SELECT provider, target, disk_id, def_name FROM snapshots WHERE {of_member}
                     ORDER BY target"
                ),
                &Args::new()
                    .text(parent.provider.as_str())
                    .text(prefix.as_str())
                    .int(parent.disk_id)
                    .text(parent.name.as_str())
                    .int(prefix.len() as i64),
            )
            .await?;
        rows.into_iter().map(IdentityRow::into_identity).collect()
    }

    /// The members of tag target `parent` its latest fan-out covered: those
    /// with a run at its slot, except droplets found to have left the tag.
    /// A member not among them has left the tag (its snapshots are orphaned).
    pub async fn current_members(&self, parent: &Identity) -> StoreResult<HashSet<Identity>> {
        let prefix = format!("{}/", parent.target);
        let rows = self
            .pool
            .fetch_all::<IdentityRow>(
                &format!(
                    "SELECT provider, target, disk_id, def_name FROM runs
                     WHERE provider = $1 AND disk_id = $3 AND def_name = $4
                       AND substr(target, 1, CAST($6 AS INTEGER)) = $5
                       AND (error_class IS NULL OR error_class <> '{DEPARTED}')
                       AND slot = (SELECT MAX(slot) FROM runs WHERE {OF_IDENTITY}
                                     AND state NOT IN ('skipped', 'missed'))"
                ),
                &Args::new()
                    .identity(parent)
                    .text(prefix.as_str())
                    .int(prefix.len() as i64),
            )
            .await?;
        rows.into_iter().map(IdentityRow::into_identity).collect()
    }

    /// Every run not in a final state (for crash recovery).
    pub async fn unfinished_runs(&self) -> StoreResult<Vec<Run>> {
        into_runs(
            self.pool
                .fetch_all(
                    &format!(
                        "SELECT {COLS} FROM runs WHERE state IN ({}) ORDER BY slot",
                        active_states()
                    ),
                    &Args::new(),
                )
                .await?,
        )
    }

    /// Runs matching a fixed condition (no arguments), oldest slot first.
    pub(super) async fn runs_where(&self, condition: &str) -> StoreResult<Vec<Run>> {
        into_runs(
            self.pool
                .fetch_all(
                    &format!("SELECT {COLS} FROM runs WHERE {condition} ORDER BY slot, id"),
                    &Args::new(),
                )
                .await?,
        )
    }

    /// Id and definition identity of every run in flight owned by `node`,
    /// in no particular order. With a burst in flight that is every slot
    /// the node claimed, so only what tells whether a task drives a run is
    /// read, not whole rows.
    pub(super) async fn run_keys_where_owner(
        &self,
        node: &str,
    ) -> StoreResult<Vec<(i64, Identity)>> {
        let rows: Vec<RunKeyRow> = self
            .pool
            .fetch_all(
                &format!(
                    "SELECT id, provider, target, disk_id, def_name FROM runs
                     WHERE owner_node = $1 AND state IN ({})",
                    active_states()
                ),
                &Args::new().text(node),
            )
            .await?;
        rows.into_iter()
            .map(|r| Ok((r.id, r.identity.into_identity()?)))
            .collect()
    }

    pub async fn get_run(&self, run_id: i64) -> StoreResult<Option<Run>> {
        self.pool
            .fetch_optional::<RunRow>(
                &format!("SELECT {COLS} FROM runs WHERE id = $1"),
                &Args::new().int(run_id),
            )
            .await?
            .map(RunRow::into_run)
            .transpose()
    }

    /// The final state of the definition's latest snapshot run (scheduled
    /// or manual; not prune runs, not `missed` or `skipped` rows) before run
    /// `before`: whether the definition was already failing when that run
    /// ended.
    pub async fn previous_outcome(
        &self,
        id: &Identity,
        before: i64,
    ) -> StoreResult<Option<RunState>> {
        let row = self
            .pool
            .fetch_optional::<(String,)>(
                &format!(
                    "SELECT state FROM runs WHERE {OF_IDENTITY} AND id < $5
                       AND trigger <> 'prune'
                       AND state IN ('succeeded', 'failed', 'interrupted')
                     ORDER BY id DESC LIMIT 1"
                ),
                &Args::new().identity(id).int(before),
            )
            .await?;
        row.map(|(state,)| {
            RunState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("run state '{state}'")))
        })
        .transpose()
    }

    /// Runs newest first, optionally of one definition name.
    pub async fn history(&self, name: Option<&str>, limit: u32) -> StoreResult<Vec<Run>> {
        into_runs(
            self.pool
                .fetch_all(
                    &format!(
                        "SELECT {COLS} FROM runs WHERE ($1 IS NULL OR def_name = $1)
                         ORDER BY id DESC LIMIT $2"
                    ),
                    &Args::new().text(name).int(limit),
                )
                .await?,
        )
    }

    /// The latest scheduled slot each definition has a row for, so that the
    /// scheduler resumes after the last slot it handled.
    pub async fn last_slots(&self) -> StoreResult<Vec<(Identity, DateTime<Utc>)>> {
        #[derive(sqlx::FromRow)]
        struct LastSlot {
            #[sqlx(flatten)]
            identity: IdentityRow,
            slot: String,
        }
        self.pool
            .fetch_all::<LastSlot>(
                "SELECT provider, target, disk_id, def_name, MAX(slot) AS slot FROM runs
                 WHERE trigger IN ('schedule', 'catchup')
                 GROUP BY provider, target, disk_id, def_name",
                &Args::new(),
            )
            .await?
            .into_iter()
            .map(|r| Ok((r.identity.into_identity()?, parse_ts(&r.slot)?)))
            .collect()
    }

    /// The most recent run of each definition and the most recent success.
    pub async fn last_runs(&self, id: &Identity) -> StoreResult<(Option<Run>, Option<Run>)> {
        let mut conn = self.pool.acquire().await?;
        let mut out = Vec::with_capacity(2);
        for extra in ["", "AND state = 'succeeded'"] {
            let row = conn
                .conn()
                .fetch_optional::<RunRow>(
                    &format!(
                        "SELECT {COLS} FROM runs WHERE {OF_IDENTITY}
                           AND state NOT IN ('missed', 'skipped') {extra}
                         ORDER BY id DESC LIMIT 1"
                    ),
                    &Args::new().identity(id),
                )
                .await?;
            out.push(row.map(RunRow::into_run).transpose()?);
        }
        let success = out.pop().flatten();
        Ok((out.pop().flatten(), success))
    }

    /// [`Store::last_runs`] of every identity with runs, in two queries
    /// whatever their number (`status` over 100,000 definitions, or a tag
    /// target of 1,000 droplets, would otherwise ask twice per identity).
    pub async fn every_last_run(
        &self,
    ) -> StoreResult<HashMap<Identity, (Option<Run>, Option<Run>)>> {
        self.newest_and_newest_succeeded("state NOT IN ('missed', 'skipped')")
            .await
    }

    /// When each definition's most recent successful run finished (the run
    /// with the highest id, as in [`Store::last_runs`]), for the last-success
    /// gauge. Definitions with no success in their kept history are absent.
    /// A run whose snapshot could not be copied to every region
    /// (`copy_failed`) is no full success and does not count.
    pub async fn last_successes(&self) -> StoreResult<Vec<(Identity, DateTime<Utc>)>> {
        self.last_ended_in(RunState::Succeeded).await
    }

    /// When each definition's most recent failed run finished, for the
    /// last-failure gauge; as [`Store::last_successes`].
    pub async fn last_failures(&self) -> StoreResult<Vec<(Identity, DateTime<Utc>)>> {
        self.last_ended_in(RunState::Failed).await
    }

    async fn last_ended_in(&self, state: RunState) -> StoreResult<Vec<(Identity, DateTime<Utc>)>> {
        #[derive(sqlx::FromRow)]
        struct Success {
            #[sqlx(flatten)]
            identity: IdentityRow,
            finished_at: Option<String>,
            updated_at: String,
        }
        self.pool
            .fetch_all::<Success>(
                "SELECT provider, target, disk_id, def_name, finished_at, updated_at FROM runs
                 WHERE id IN (SELECT MAX(id) FROM runs WHERE state = $1
                                  AND ($1 <> 'succeeded' OR error_class IS NULL
                                       OR error_class <> 'copy_failed')
                              GROUP BY provider, target, disk_id, def_name)",
                &Args::new().text(state.as_str()),
            )
            .await?
            .into_iter()
            .map(|r| {
                // A finished run always has finished_at; updated_at is the same
                // instant and keeps a hand-edited row from failing the query.
                let at = r.finished_at.unwrap_or(r.updated_at);
                Ok((r.identity.into_identity()?, parse_ts(&at)?))
            })
            .collect()
    }

    /// Each definition's most recent finished snapshot run and its most
    /// recent successful one (both by highest id), for `snapsched check`.
    /// Prune runs take no snapshot and runs in flight have no outcome yet,
    /// so neither counts; missed and skipped slots are no runs at all.
    pub async fn last_snapshot_outcomes(
        &self,
    ) -> StoreResult<HashMap<Identity, (Option<Run>, Option<Run>)>> {
        self.newest_and_newest_succeeded(&format!(
            "trigger <> 'prune' AND state NOT IN ('missed', 'skipped', {})",
            active_states()
        ))
        .await
    }

    /// Per identity, the run with the highest id among those matching
    /// `condition`, and the highest-id one of them that succeeded.
    async fn newest_and_newest_succeeded(
        &self,
        condition: &str,
    ) -> StoreResult<HashMap<Identity, (Option<Run>, Option<Run>)>> {
        let mut out: HashMap<Identity, (Option<Run>, Option<Run>)> = HashMap::new();
        for (succeeded_only, extra) in [(false, ""), (true, "AND state = 'succeeded'")] {
            let runs = into_runs(
                self.pool
                    .fetch_all(
                        &format!(
                            "SELECT {COLS} FROM runs WHERE id IN (
                               SELECT MAX(id) FROM runs WHERE {condition} {extra}
                               GROUP BY provider, target, disk_id, def_name)"
                        ),
                        &Args::new(),
                    )
                    .await?,
            )?;
            for run in runs {
                let entry = out.entry(run.identity.clone()).or_default();
                if succeeded_only {
                    entry.1 = Some(run);
                } else {
                    entry.0 = Some(run);
                }
            }
        }
        Ok(out)
    }

    /// The definitions whose latest prune was blocked by
    /// `max_deletes_per_run`, with that run. A prune happened in every
    /// succeeded run (the run's own after its snapshot, or `snapsched
    /// prune`) and in a failed `snapsched prune`; the latest of those
    /// decides: a block clears once a later prune applies a plan, the
    /// operator's `snapsched prune --yes` or a run whose plan is within the
    /// limit.
    pub async fn blocked_prunes(&self) -> StoreResult<HashMap<Identity, Run>> {
        let runs = into_runs(
            self.pool
                .fetch_all(
                    &format!(
                        "SELECT {COLS} FROM runs WHERE error_class = $1 AND id IN (
                           SELECT MAX(id) FROM runs
                           WHERE state = 'succeeded' OR (trigger = 'prune' AND state = 'failed')
                           GROUP BY provider, target, disk_id, def_name)"
                    ),
                    &Args::new().text(crate::domain::run::PRUNE_BLOCKED),
                )
                .await?,
        )?;
        Ok(runs.into_iter().map(|r| (r.identity.clone(), r)).collect())
    }

    /// Delete all but the newest `keep` final runs of a definition.
    pub async fn trim_history(&self, id: &Identity, keep: u32) -> StoreResult<u64> {
        self.pool
            .execute(
                &format!(
                    "DELETE FROM runs WHERE {OF_IDENTITY} AND state NOT IN ({})
                       AND id < (SELECT MIN(id) FROM (SELECT id FROM runs WHERE {OF_IDENTITY}
                                                      ORDER BY id DESC LIMIT $5) AS newest)",
                    active_states()
                ),
                &Args::new().identity(id).int(keep),
            )
            .await
    }
}

/// The in-flight run of a definition, on a pooled connection or in a
/// transaction.
async fn active_run_in(conn: &mut Conn<'_>, id: &Identity) -> StoreResult<Option<Run>> {
    conn.fetch_optional::<RunRow>(
        &format!(
            "SELECT {COLS} FROM runs WHERE {OF_IDENTITY} AND state IN ({})",
            active_states()
        ),
        &Args::new().identity(id),
    )
    .await?
    .map(RunRow::into_run)
    .transpose()
}

/// The RFC 3339 form used for slots.
pub fn slot_text(slot: DateTime<Utc>) -> String {
    ts(slot)
}
