//! Snapshot records: what snapsched made (or adopted) for which definition,
//! and what became of it. Ownership for retention is decided from these rows:
//! a snapshot with no row is never ours unless adopted by the strict name rule.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{identity_from_row, parse_ts, ts_ms, Store, StoreResult};
use crate::domain::{Identity, RecordState, RemoteSnapshot, SnapshotRecord};

fn record_from_row(row: &SqliteRow) -> StoreResult<SnapshotRecord> {
    let state: String = row.try_get("state")?;
    let opt_ts = |col: &str| -> StoreResult<Option<DateTime<Utc>>> {
        row.try_get::<Option<String>, _>(col)?
            .map(|s| parse_ts(&s))
            .transpose()
    };
    Ok(SnapshotRecord {
        identity: identity_from_row(row)?,
        snapshot: row.try_get("name")?,
        remote_id: row.try_get("remote_id")?,
        run_id: row.try_get("run_id")?,
        created_at: opt_ts("created_at")?,
        size_bytes: row.try_get("size_bytes")?,
        state: RecordState::parse(&state)
            .ok_or_else(|| super::StoreError::Corrupt(format!("snapshot state '{state}'")))?,
        adopted: row.try_get("adopted")?,
        recorded_at: parse_ts(&row.try_get::<String, _>("recorded_at")?)?,
        deleted_at: opt_ts("deleted_at")?,
        delete_reason: row.try_get("delete_reason")?,
    })
}

impl Store {
    /// Record a snapshot made (or adopted) for a definition. Recording the
    /// same snapshot again refreshes its id and time.
    pub async fn record_snapshot(
        &self,
        id: &Identity,
        snap: &RemoteSnapshot,
        run_id: Option<i64>,
        adopted: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO snapshots (provider, target, disk_id, def_name, name, remote_id, run_id,
                 created_at, size_bytes, state, adopted, recorded_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'present', ?, ?)
             ON CONFLICT (provider, target, disk_id, name) DO UPDATE SET
                 remote_id = excluded.remote_id,
                 created_at = excluded.created_at,
                 run_id = COALESCE(excluded.run_id, run_id),
                 size_bytes = excluded.size_bytes",
        )
        .bind(&id.provider)
        .bind(&id.target)
        .bind(id.disk_id)
        .bind(&id.name)
        .bind(&snap.name)
        .bind(&snap.id)
        .bind(run_id)
        .bind(ts_ms(snap.created_at))
        .bind(snap.size_bytes.map(|b| b as i64))
        .bind(adopted)
        .bind(ts_ms(now))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Every snapshot record on (provider, target, disk), any definition.
    pub async fn snapshot_records_on(
        &self,
        provider: &str,
        target: &str,
        disk_id: u32,
    ) -> StoreResult<Vec<SnapshotRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM snapshots WHERE provider = ? AND target = ? AND disk_id = ? ORDER BY created_at, name",
        )
        .bind(provider)
        .bind(target)
        .bind(disk_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Snapshot records, optionally of one definition name, any state.
    pub async fn snapshot_records(&self, name: Option<&str>) -> StoreResult<Vec<SnapshotRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM snapshots WHERE (?1 IS NULL OR def_name = ?1)
             ORDER BY provider, target, disk_id, def_name, created_at, name",
        )
        .bind(name)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Mark a recorded snapshot deleted (by us, with a reason) or gone.
    pub async fn mark_snapshot(
        &self,
        id: &Identity,
        snapshot: &str,
        state: RecordState,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE snapshots SET state = ?, deleted_at = ?, delete_reason = ?
             WHERE provider = ? AND target = ? AND disk_id = ? AND name = ?",
        )
        .bind(state.as_str())
        .bind(ts_ms(now))
        .bind(reason)
        .bind(&id.provider)
        .bind(&id.target)
        .bind(id.disk_id)
        .bind(snapshot)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Mark a snapshot recorded as deleted or gone present again: the
    /// provider lists it again (a deletion still in progress, a lagging
    /// listing). Its deletion time and reason are cleared.
    pub async fn mark_snapshot_present(&self, id: &Identity, snapshot: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE snapshots SET state = 'present', deleted_at = NULL, delete_reason = NULL
             WHERE provider = ? AND target = ? AND disk_id = ? AND def_name = ? AND name = ?",
        )
        .bind(&id.provider)
        .bind(&id.target)
        .bind(id.disk_id)
        .bind(&id.name)
        .bind(snapshot)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// [`Store::owned_count`] of every definition that owns any present
    /// snapshot, in one query (definitions owning none are absent).
    pub async fn owned_counts(&self) -> StoreResult<Vec<(Identity, i64)>> {
        let rows = sqlx::query(
            "SELECT provider, target, disk_id, def_name, COUNT(*) AS n FROM snapshots
             WHERE state = 'present' GROUP BY provider, target, disk_id, def_name",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((identity_from_row(r)?, r.try_get("n")?)))
            .collect()
    }

    /// How many present snapshots a definition owns.
    pub async fn owned_count(&self, id: &Identity) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM snapshots WHERE provider = ? AND target = ? AND disk_id = ?
               AND def_name = ? AND state = 'present'",
        )
        .bind(&id.provider)
        .bind(&id.target)
        .bind(id.disk_id)
        .bind(&id.name)
        .fetch_one(self.pool())
        .await?)
    }
}
