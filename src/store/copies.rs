//! Cross-region copies of snapshots: one `snapshot_copies` row per
//! (snapshot, region), and the regions a snapshot is in
//! (`snapshots.regions`).
//!
//! Invariant: a row is `sending` before its transfer request leaves and
//! `copying` with the provider's operation id as soon as the request is
//! accepted, so a run resumed after a crash polls that operation (or, for
//! `sending`, looks for a transfer under way) instead of sending a second
//! one. Rows are keyed by the snapshot's disk and name, like `snapshots`.

use std::collections::HashMap;

use super::backend::Args;
use super::{parse_ts, ts_ms, IdentityRow, Store, StoreError, StoreResult, OF_IDENTITY};
use crate::domain::{CopyState, Identity, SnapshotCopy};

#[derive(sqlx::FromRow)]
struct CopyRow {
    #[sqlx(flatten)]
    identity: IdentityRow,
    snapshot: String,
    remote_id: String,
    region: String,
    run_id: Option<i64>,
    state: String,
    operation_id: Option<String>,
    attempts: i64,
    error: Option<String>,
    updated_at: String,
}

impl CopyRow {
    fn into_copy(self) -> StoreResult<SnapshotCopy> {
        Ok(SnapshotCopy {
            identity: self.identity.into_identity()?,
            snapshot: self.snapshot,
            remote_id: self.remote_id,
            region: self.region,
            run_id: self.run_id,
            state: CopyState::parse(&self.state)
                .ok_or_else(|| StoreError::Corrupt(format!("copy state '{}'", self.state)))?,
            operation_id: self.operation_id,
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            error: self.error,
            updated_at: parse_ts(&self.updated_at)?,
        })
    }
}

impl Store {
    /// Write one copy's state (inserting its row the first time).
    pub async fn save_copy(&self, copy: &SnapshotCopy) -> StoreResult<()> {
        self.pool
            .execute(
                "INSERT INTO snapshot_copies (provider, target, disk_id, def_name, snapshot,
                     remote_id, region, run_id, state, operation_id, attempts, error, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT (provider, target, disk_id, snapshot, region) DO UPDATE SET
                     remote_id = excluded.remote_id,
                     run_id = excluded.run_id,
                     state = excluded.state,
                     operation_id = excluded.operation_id,
                     attempts = excluded.attempts,
                     error = excluded.error,
                     updated_at = excluded.updated_at",
                &Args::new()
                    .identity(&copy.identity)
                    .text(&copy.snapshot)
                    .text(&copy.remote_id)
                    .text(&copy.region)
                    .int(copy.run_id)
                    .text(copy.state.as_str())
                    .text(copy.operation_id.as_deref())
                    .int(i64::from(copy.attempts))
                    .text(copy.error.as_deref())
                    .text(ts_ms(copy.updated_at)),
            )
            .await?;
        Ok(())
    }

    /// The copies of snapshot `snapshot` (its name) of definition `id`, by
    /// region.
    pub async fn copies_of(&self, id: &Identity, snapshot: &str) -> StoreResult<Vec<SnapshotCopy>> {
        self.pool
            .fetch_all::<CopyRow>(
                &format!(
                    "SELECT * FROM snapshot_copies WHERE {OF_IDENTITY} AND snapshot = $5
                     ORDER BY region"
                ),
                &Args::new().identity(id).text(snapshot),
            )
            .await?
            .into_iter()
            .map(CopyRow::into_copy)
            .collect()
    }

    /// Every copy row, optionally of one definition name.
    pub async fn copies(&self, name: Option<&str>) -> StoreResult<Vec<SnapshotCopy>> {
        self.pool
            .fetch_all::<CopyRow>(
                "SELECT * FROM snapshot_copies WHERE ($1 IS NULL OR def_name = $1)
                 ORDER BY provider, target, disk_id, def_name, snapshot, region",
                &Args::new().text(name),
            )
            .await?
            .into_iter()
            .map(CopyRow::into_copy)
            .collect()
    }

    /// For each definition, the regions whose latest copy (of any of its
    /// snapshots) failed: the snapshot is not there, and no later snapshot
    /// reached the region yet.
    pub async fn failed_copies(&self) -> StoreResult<HashMap<Identity, Vec<SnapshotCopy>>> {
        let rows = self
            .pool
            .fetch_all::<CopyRow>(
                "SELECT * FROM snapshot_copies WHERE state = 'failed' AND id IN (
                     SELECT MAX(id) FROM snapshot_copies
                     GROUP BY provider, target, disk_id, def_name, region)
                 ORDER BY region",
                &Args::new(),
            )
            .await?;
        let mut out: HashMap<Identity, Vec<SnapshotCopy>> = HashMap::new();
        for row in rows {
            let copy = row.into_copy()?;
            out.entry(copy.identity.clone()).or_default().push(copy);
        }
        Ok(out)
    }

    /// Record the regions snapshot `snapshot` (its name) is available in.
    pub async fn set_snapshot_regions(
        &self,
        id: &Identity,
        snapshot: &str,
        regions: &[String],
    ) -> StoreResult<()> {
        let json = serde_json::to_string(regions).unwrap_or_else(|_| "[]".into());
        self.pool
            .execute(
                "UPDATE snapshots SET regions = $5
                 WHERE provider = $1 AND target = $2 AND disk_id = $3 AND name = $4",
                &Args::new()
                    .text(&id.provider)
                    .text(&id.target)
                    .int(id.disk_id)
                    .text(snapshot)
                    .text(json),
            )
            .await?;
        Ok(())
    }
}
