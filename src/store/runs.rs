//! Run records: one row per (definition identity, slot).
//!
//! The unique key (identity, slot) is what makes a slot run at most once, no
//! matter how many processes try; the partial unique index `runs_one_active`
//! is the per-definition lock. Every state change is its own committed
//! statement so that a crash leaves a row that says exactly how far the run
//! got.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{identity_from_row, parse_ts, ts, ts_ms, Store, StoreResult};
use crate::domain::{Claim, Identity, Run, RunState, Trigger};

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
}

const COLS: &str = "id, provider, target, disk_id, def_name, slot, trigger, state, snapshot_name,
    snapshot_id, operation_id, attempts, missed_count, error_class, error, owner_pid, created_at,
    started_at, updated_at, finished_at";

fn run_from_row(row: &SqliteRow) -> StoreResult<Run> {
    let opt_ts = |col: &str| -> StoreResult<Option<DateTime<Utc>>> {
        row.try_get::<Option<String>, _>(col)?
            .map(|s| parse_ts(&s))
            .transpose()
    };
    let trigger: String = row.try_get("trigger")?;
    let state: String = row.try_get("state")?;
    Ok(Run {
        id: row.try_get("id")?,
        identity: identity_from_row(row)?,
        slot: parse_ts(&row.try_get::<String, _>("slot")?)?,
        trigger: Trigger::parse(&trigger)
            .ok_or_else(|| super::StoreError::Corrupt(format!("trigger '{trigger}'")))?,
        state: RunState::parse(&state)
            .ok_or_else(|| super::StoreError::Corrupt(format!("state '{state}'")))?,
        snapshot_name: row.try_get("snapshot_name")?,
        snapshot_id: row.try_get("snapshot_id")?,
        operation_id: row.try_get("operation_id")?,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        missed_count: row
            .try_get::<Option<i64>, _>("missed_count")?
            .map(|n| n as u32),
        error_class: row.try_get("error_class")?,
        error: row.try_get("error")?,
        owner_pid: row
            .try_get::<Option<i64>, _>("owner_pid")?
            .map(|n| n as u32),
        created_at: parse_ts(&row.try_get::<String, _>("created_at")?)?,
        started_at: opt_ts("started_at")?,
        updated_at: parse_ts(&row.try_get::<String, _>("updated_at")?)?,
        finished_at: opt_ts("finished_at")?,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl Store {
    /// Claim `slot` of a definition for a new pending run owned by this
    /// process.
    pub async fn claim_run(
        &self,
        id: &Identity,
        slot: DateTime<Utc>,
        trigger: Trigger,
        now: DateTime<Utc>,
    ) -> StoreResult<Claim> {
        let result = sqlx::query(&format!(
            "INSERT INTO runs (provider, target, disk_id, def_name, slot, trigger, state,
                 owner_pid, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?) RETURNING {COLS}"
        ))
        .bind(&id.provider)
        .bind(&id.target)
        .bind(id.disk_id)
        .bind(&id.name)
        .bind(ts(slot))
        .bind(trigger.as_str())
        .bind(std::process::id())
        .bind(ts_ms(now))
        .bind(ts_ms(now))
        .fetch_one(self.pool())
        .await;
        match result {
            Ok(row) => Ok(Claim::Claimed(run_from_row(&row)?)),
            Err(e) if is_unique_violation(&e) => {
                if let Some(active) = self.active_run(id).await? {
                    if active.slot != slot {
                        return Ok(Claim::Busy(active));
                    }
                }
                Ok(Claim::AlreadyRan)
            }
            Err(e) => Err(e.into()),
        }
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
        // Rows go in many to a statement: at 100,000 definitions due at one
        // instant, a statement per row spends most of its time in the round
        // trip to sqlite's worker thread, not in sqlite.
        const ROWS_PER_STATEMENT: usize = 256;
        let active = format!(
            "SELECT {COLS} FROM runs WHERE provider = ? AND target = ? AND disk_id = ? AND def_name = ?
               AND state IN ('pending', 'creating', 'waiting', 'pruning')"
        );
        let at = ts_ms(now);
        let pid = std::process::id();
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        // Keyed by the slot as stored, so a sub-second slot still finds its row.
        let mut claimed: HashMap<(Identity, String), Run> = HashMap::with_capacity(slots.len());
        for chunk in slots.chunks(ROWS_PER_STATEMENT) {
            let values = vec!["(?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)"; chunk.len()].join(", ");
            let insert = format!(
                "INSERT INTO runs (provider, target, disk_id, def_name, slot, trigger, state,
                     owner_pid, created_at, updated_at)
                 VALUES {values}
                 ON CONFLICT DO NOTHING RETURNING {COLS}"
            );
            let mut q = sqlx::query(&insert);
            for (id, slot, trigger) in chunk {
                q = q
                    .bind(&id.provider)
                    .bind(&id.target)
                    .bind(id.disk_id)
                    .bind(&id.name)
                    .bind(ts(*slot))
                    .bind(trigger.as_str())
                    .bind(pid)
                    .bind(&at)
                    .bind(&at);
            }
            for row in q.fetch_all(&mut *tx).await? {
                let run = run_from_row(&row)?;
                claimed.insert((run.identity.clone(), ts(run.slot)), run);
            }
        }
        let mut out = Vec::with_capacity(slots.len());
        for (id, slot, _) in slots {
            if let Some(run) = claimed.remove(&((*id).clone(), ts(*slot))) {
                out.push(Claim::Claimed(run));
                continue;
            }
            let busy = sqlx::query(&active)
                .bind(&id.provider)
                .bind(&id.target)
                .bind(id.disk_id)
                .bind(&id.name)
                .fetch_optional(&mut *tx)
                .await?;
            out.push(match busy.as_ref().map(run_from_row).transpose()? {
                Some(run) if run.slot != *slot => Claim::Busy(run),
                _ => Claim::AlreadyRan,
            });
        }
        tx.commit().await?;
        Ok(out)
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
        let done = sqlx::query(
            "INSERT INTO runs (provider, target, disk_id, def_name, slot, trigger, state,
                 missed_count, error, created_at, updated_at, finished_at)
             VALUES (?, ?, ?, ?, ?, 'schedule', ?, ?, ?, ?, ?, ?)
             ON CONFLICT (provider, target, disk_id, def_name, slot) DO NOTHING",
        )
        .bind(&id.provider)
        .bind(&id.target)
        .bind(id.disk_id)
        .bind(&id.name)
        .bind(ts(slot))
        .bind(state.as_str())
        .bind(missed_count)
        .bind(reason)
        .bind(ts_ms(now))
        .bind(ts_ms(now))
        .bind(ts_ms(now))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Apply `u` to run `run_id`; returns the updated row.
    pub async fn update_run(
        &self,
        run_id: i64,
        u: Update<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<Run> {
        let finished = u.state.filter(|s| s.is_final()).map(|_| ts_ms(now));
        let (class, message) = match u.error {
            Some((c, m)) => (Some(c), Some(m)),
            None => (None, None),
        };
        let row = sqlx::query(&format!(
            "UPDATE runs SET
                 state = COALESCE(?, state),
                 snapshot_name = COALESCE(?, snapshot_name),
                 snapshot_id = COALESCE(?, snapshot_id),
                 operation_id = COALESCE(?, operation_id),
                 attempts = attempts + ?,
                 error_class = CASE WHEN ? THEN NULL ELSE COALESCE(?, error_class) END,
                 error = CASE WHEN ? THEN NULL ELSE COALESCE(?, error) END,
                 started_at = CASE WHEN ? AND started_at IS NULL THEN ? ELSE started_at END,
                 finished_at = COALESCE(?, finished_at),
                 owner_pid = CASE WHEN ? IS NOT NULL THEN NULL ELSE owner_pid END,
                 updated_at = ?
             WHERE id = ? RETURNING {COLS}"
        ))
        .bind(u.state.map(RunState::as_str))
        .bind(u.snapshot_name)
        .bind(u.snapshot_id)
        .bind(u.operation_id)
        .bind(i64::from(u.add_attempt))
        .bind(u.clear_error)
        .bind(class)
        .bind(u.clear_error)
        .bind(message)
        .bind(u.started)
        .bind(ts_ms(now))
        .bind(&finished)
        .bind(&finished)
        .bind(ts_ms(now))
        .bind(run_id)
        .fetch_one(self.pool())
        .await?;
        run_from_row(&row)
    }

    /// Take over a run whose owner process is gone.
    pub async fn adopt_run(&self, run_id: i64, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("UPDATE runs SET owner_pid = ?, updated_at = ? WHERE id = ?")
            .bind(std::process::id())
            .bind(ts_ms(now))
            .bind(run_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The in-flight run of a definition, if any.
    pub async fn active_run(&self, id: &Identity) -> StoreResult<Option<Run>> {
        let row = sqlx::query(&format!(
            "SELECT {COLS} FROM runs WHERE provider = ? AND target = ? AND disk_id = ? AND def_name = ?
               AND state IN ('pending', 'creating', 'waiting', 'pruning')"
        ))
        .bind(&id.provider)
        .bind(&id.target)
        .bind(id.disk_id)
        .bind(&id.name)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// Every run not in a final state (for crash recovery).
    pub async fn unfinished_runs(&self) -> StoreResult<Vec<Run>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM runs WHERE state IN ('pending', 'creating', 'waiting', 'pruning') ORDER BY slot"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    pub async fn get_run(&self, run_id: i64) -> StoreResult<Option<Run>> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM runs WHERE id = ?"))
            .bind(run_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// Runs newest first, optionally of one definition name.
    pub async fn history(&self, name: Option<&str>, limit: u32) -> StoreResult<Vec<Run>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM runs WHERE (?1 IS NULL OR def_name = ?1) ORDER BY id DESC LIMIT ?2"
        ))
        .bind(name)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// The latest scheduled slot each definition has a row for, so that the
    /// scheduler resumes after the last slot it handled.
    pub async fn last_slots(&self) -> StoreResult<Vec<(Identity, DateTime<Utc>)>> {
        let rows = sqlx::query(
            "SELECT provider, target, disk_id, def_name, MAX(slot) AS slot FROM runs
             WHERE trigger IN ('schedule', 'catchup') GROUP BY provider, target, disk_id, def_name",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    identity_from_row(r)?,
                    parse_ts(&r.try_get::<String, _>("slot")?)?,
                ))
            })
            .collect()
    }

    /// The most recent run of each definition and the most recent success.
    pub async fn last_runs(&self, id: &Identity) -> StoreResult<(Option<Run>, Option<Run>)> {
        let q = |extra: &str| {
            format!(
                "SELECT {COLS} FROM runs WHERE provider = ? AND target = ? AND disk_id = ? AND def_name = ?
                 AND state NOT IN ('missed', 'skipped') {extra} ORDER BY id DESC LIMIT 1"
            )
        };
        let mut out = Vec::new();
        for extra in ["", "AND state = 'succeeded'"] {
            let row = sqlx::query(&q(extra))
                .bind(&id.provider)
                .bind(&id.target)
                .bind(id.disk_id)
                .bind(&id.name)
                .fetch_optional(self.pool())
                .await?;
            out.push(row.as_ref().map(run_from_row).transpose()?);
        }
        let success = out.pop().flatten();
        Ok((out.pop().flatten(), success))
    }

    /// When each definition's most recent successful run finished (the run
    /// with the highest id, as in [`Store::last_runs`]), for the last-success
    /// gauge. Definitions with no success in their kept history are absent.
    pub async fn last_successes(&self) -> StoreResult<Vec<(Identity, DateTime<Utc>)>> {
        let rows = sqlx::query(
            "SELECT provider, target, disk_id, def_name, finished_at, updated_at FROM runs
             WHERE id IN (SELECT MAX(id) FROM runs WHERE state = 'succeeded'
                          GROUP BY provider, target, disk_id, def_name)",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                // A success always has finished_at; updated_at is the same
                // instant and keeps a hand-edited row from failing the query.
                let at = match r.try_get::<Option<String>, _>("finished_at")? {
                    Some(t) => t,
                    None => r.try_get("updated_at")?,
                };
                Ok((identity_from_row(r)?, parse_ts(&at)?))
            })
            .collect()
    }

    /// Delete all but the newest `keep` final runs of a definition.
    pub async fn trim_history(&self, id: &Identity, keep: u32) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM runs WHERE provider = ?1 AND target = ?2 AND disk_id = ?3 AND def_name = ?4
               AND state NOT IN ('pending', 'creating', 'waiting', 'pruning')
               AND id < (SELECT MIN(id) FROM (SELECT id FROM runs
                   WHERE provider = ?1 AND target = ?2 AND disk_id = ?3 AND def_name = ?4
                   ORDER BY id DESC LIMIT ?5))",
        )
        .bind(&id.provider)
        .bind(&id.target)
        .bind(id.disk_id)
        .bind(&id.name)
        .bind(keep)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}

/// The RFC 3339 form used for slots.
pub fn slot_text(slot: DateTime<Utc>) -> String {
    ts(slot)
}
