//! Snapshot records: what snapsched made (or adopted) for which definition,
//! and what became of it. Ownership for retention is decided from these rows:
//! a snapshot with no row is never ours unless adopted by the strict name rule.

use chrono::{DateTime, Utc};

use super::backend::Args;
use super::{
    parse_opt_ts, parse_ts, ts_ms, IdentityRow, Store, StoreError, StoreResult, OF_IDENTITY,
};
use crate::domain::event::SnapshotInfo;
use crate::domain::{Hold, Identity, RecordState, RemoteSnapshot, SnapshotRecord};

/// A `snapshots` row as stored.
#[derive(sqlx::FromRow)]
struct SnapshotRow {
    #[sqlx(flatten)]
    identity: IdentityRow,
    name: String,
    remote_id: Option<String>,
    run_id: Option<i64>,
    created_at: Option<String>,
    size_bytes: Option<i64>,
    state: String,
    adopted: bool,
    recorded_at: String,
    deleted_at: Option<String>,
    delete_reason: Option<String>,
    held_at: Option<String>,
    hold_reason: Option<String>,
    regions: Option<String>,
}

impl SnapshotRow {
    fn into_record(self) -> StoreResult<SnapshotRecord> {
        Ok(SnapshotRecord {
            identity: self.identity.into_identity()?,
            snapshot: self.name,
            remote_id: self.remote_id,
            run_id: self.run_id,
            created_at: parse_opt_ts(self.created_at.as_deref())?,
            size_bytes: self.size_bytes,
            state: RecordState::parse(&self.state)
                .ok_or_else(|| StoreError::Corrupt(format!("snapshot state '{}'", self.state)))?,
            adopted: self.adopted,
            recorded_at: parse_ts(&self.recorded_at)?,
            deleted_at: parse_opt_ts(self.deleted_at.as_deref())?,
            delete_reason: self.delete_reason,
            hold: match parse_opt_ts(self.held_at.as_deref())? {
                Some(held_at) => Some(Hold {
                    reason: self.hold_reason.unwrap_or_default(),
                    held_at,
                }),
                None => None,
            },
            regions: self
                .regions
                .map(|r| {
                    serde_json::from_str(&r)
                        .map_err(|e| StoreError::Corrupt(format!("snapshot regions '{r}': {e}")))
                })
                .transpose()?,
        })
    }
}

fn into_records(rows: Vec<SnapshotRow>) -> StoreResult<Vec<SnapshotRecord>> {
    rows.into_iter().map(SnapshotRow::into_record).collect()
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
        self.pool
            .execute(
                "INSERT INTO snapshots (provider, target, disk_id, def_name, name, remote_id,
                     run_id, created_at, size_bytes, state, adopted, recorded_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'present', $10, $11)
                 ON CONFLICT (provider, target, disk_id, name) DO UPDATE SET
                     remote_id = excluded.remote_id,
                     created_at = excluded.created_at,
                     run_id = COALESCE(excluded.run_id, snapshots.run_id),
                     size_bytes = excluded.size_bytes",
                &Args::new()
                    .identity(id)
                    .text(&snap.name)
                    .text(&snap.id)
                    .int(run_id)
                    .text(ts_ms(snap.created_at))
                    .int(snap.size_bytes.map(|b| b as i64))
                    .bool(adopted)
                    .text(ts_ms(now)),
            )
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
        into_records(
            self.pool
                .fetch_all(
                    "SELECT * FROM snapshots WHERE provider = $1 AND target = $2 AND disk_id = $3
                     ORDER BY created_at NULLS FIRST, name",
                    &Args::new().text(provider).text(target).int(disk_id),
                )
                .await?,
        )
    }

    /// Snapshot records, optionally of one definition name, any state.
    pub async fn snapshot_records(&self, name: Option<&str>) -> StoreResult<Vec<SnapshotRecord>> {
        into_records(
            self.pool
                .fetch_all(
                    "SELECT * FROM snapshots WHERE ($1 IS NULL OR def_name = $1)
                     ORDER BY provider, target, disk_id, def_name, created_at NULLS FIRST, name",
                    &Args::new().text(name),
                )
                .await?,
        )
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
        // A snapshot is keyed by its disk and name, whichever definition
        // recorded it.
        const SET: &str = "UPDATE snapshots SET state = $5, deleted_at = $6, delete_reason = $7
             WHERE provider = $1 AND target = $2 AND disk_id = $3 AND name = $4";
        let args = Args::new()
            .text(&id.provider)
            .text(&id.target)
            .int(id.disk_id)
            .text(snapshot)
            .text(state.as_str())
            .text(ts_ms(now))
            .text(reason);
        let limit = self
            .notify_queue_limit()
            .filter(|_| state == RecordState::Gone);
        let Some(limit) = limit else {
            self.pool.execute(SET, &args).await?;
            return Ok(());
        };
        // A present record going gone is a snapshot deleted outside
        // snapsched: its event commits with the change.
        let mut tx = self.pool.begin_write().await?;
        let before = tx
            .conn()
            .fetch_optional::<SnapshotRow>(
                "SELECT * FROM snapshots
                 WHERE provider = $1 AND target = $2 AND disk_id = $3 AND name = $4",
                &Args::new()
                    .text(&id.provider)
                    .text(&id.target)
                    .int(id.disk_id)
                    .text(snapshot),
            )
            .await?
            .map(SnapshotRow::into_record)
            .transpose()?;
        tx.conn().execute(SET, &args).await?;
        if let Some(rec) = before.filter(|r| r.state == RecordState::Present) {
            let node = self.node_id();
            super::notify::on_snapshot_gone(
                &mut tx.conn(),
                self.backend(),
                limit,
                &rec.identity,
                SnapshotInfo {
                    name: rec.snapshot,
                    id: rec.remote_id,
                    created_at: rec.created_at,
                    run_id: rec.run_id,
                },
                node.as_deref(),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Note on a present record that its deletion is about to be asked for,
    /// and why: if the answer is lost, the next listing that no longer shows
    /// the snapshot records it deleted with this reason (not gone).
    pub async fn request_deletion(
        &self,
        id: &Identity,
        snapshot: &str,
        reason: &str,
    ) -> StoreResult<()> {
        self.pool
            .execute(
                &format!(
                    "UPDATE snapshots SET delete_reason = $6
                     WHERE {OF_IDENTITY} AND name = $5 AND state = 'present'"
                ),
                &Args::new().identity(id).text(snapshot).text(reason),
            )
            .await?;
        Ok(())
    }

    /// Forget a deletion request on a snapshot that is still listed (the
    /// deletion failed): a later disappearance is then not ours.
    pub async fn clear_deletion_request(&self, id: &Identity, snapshot: &str) -> StoreResult<()> {
        self.pool
            .execute(
                &format!(
                    "UPDATE snapshots SET delete_reason = NULL
                     WHERE {OF_IDENTITY} AND name = $5 AND state = 'present'"
                ),
                &Args::new().identity(id).text(snapshot),
            )
            .await?;
        Ok(())
    }

    /// Mark a snapshot recorded as deleted or gone present again: the
    /// provider lists it again (a deletion still in progress, a lagging
    /// listing). Its deletion time and reason are cleared.
    pub async fn mark_snapshot_present(&self, id: &Identity, snapshot: &str) -> StoreResult<()> {
        self.pool
            .execute(
                &format!(
                    "UPDATE snapshots SET state = 'present', deleted_at = NULL,
                         delete_reason = NULL
                     WHERE {OF_IDENTITY} AND name = $5"
                ),
                &Args::new().identity(id).text(snapshot),
            )
            .await?;
        Ok(())
    }

    /// [`Store::owned_count`] of every definition that owns any present
    /// snapshot, in one query (definitions owning none are absent).
    pub async fn owned_counts(&self) -> StoreResult<Vec<(Identity, i64)>> {
        #[derive(sqlx::FromRow)]
        struct Owned {
            #[sqlx(flatten)]
            identity: IdentityRow,
            n: i64,
        }
        self.pool
            .fetch_all::<Owned>(
                "SELECT provider, target, disk_id, def_name, COUNT(*) AS n FROM snapshots
                 WHERE state = 'present' GROUP BY provider, target, disk_id, def_name",
                &Args::new(),
            )
            .await?
            .into_iter()
            .map(|r| Ok((r.identity.into_identity()?, r.n)))
            .collect()
    }

    /// How many present snapshots a definition owns.
    pub async fn owned_count(&self, id: &Identity) -> StoreResult<i64> {
        let (n,): (i64,) = self
            .pool
            .fetch_one(
                &format!(
                    "SELECT COUNT(*) FROM snapshots WHERE {OF_IDENTITY} AND state = 'present'"
                ),
                &Args::new().identity(id),
            )
            .await?;
        Ok(n)
    }

    /// Hold the recorded snapshot `snapshot` of `id`'s disk with `reason`
    /// (empty for none). Returns false when the snapshot is already held
    /// (or not recorded for `id`): only one hold at a time, so a second
    /// hold cannot silently replace the first one's reason.
    pub async fn hold_snapshot(
        &self,
        id: &Identity,
        snapshot: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let n = self
            .pool
            .execute(
                &format!(
                    "UPDATE snapshots SET held_at = $6, hold_reason = $7
                     WHERE {OF_IDENTITY} AND name = $5 AND held_at IS NULL"
                ),
                &Args::new()
                    .identity(id)
                    .text(snapshot)
                    .text(ts_ms(now))
                    .text(reason),
            )
            .await?;
        Ok(n > 0)
    }

    /// Release the hold on `id`'s snapshot `snapshot`. Returns false when it
    /// was not held (or is not recorded for `id`).
    pub async fn release_snapshot(&self, id: &Identity, snapshot: &str) -> StoreResult<bool> {
        let n = self
            .pool
            .execute(
                &format!(
                    "UPDATE snapshots SET held_at = NULL, hold_reason = NULL
                     WHERE {OF_IDENTITY} AND name = $5 AND held_at IS NOT NULL"
                ),
                &Args::new().identity(id).text(snapshot),
            )
            .await?;
        Ok(n > 0)
    }
}
