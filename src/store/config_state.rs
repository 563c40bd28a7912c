//! The `config_state` table: which version of the config file's definitions
//! the store holds, who applied it and when.
//!
//! Several daemons on one store each reconcile their own file on start and
//! SIGHUP. Were each to apply its file unconditionally, two nodes whose files
//! differ would undo each other's definitions on every restart. The rule:
//! - a daemon applies its file only when its definitions differ from the
//!   applied ones **and** the file is newer than the applied file (or
//!   nothing was applied yet); a daemon whose file merely matches the
//!   applied version re-reconciles it (a no-op that restores the file's
//!   truth over CLI edits, as on one host);
//! - `snapsched config apply` always applies (an operator's explicit word),
//!   and dates the version it records at the time of the apply when that is
//!   later than the file's, so that a file edited before the apply does not
//!   undo it on the next daemon start;
//! - a file that differs but is not newer is *drift*: not applied, reported.
//!
//! Invariants:
//! - Check and apply happen in one write transaction, serialised by the
//!   SQLite write lock or a PostgreSQL advisory lock, so two daemons starting
//!   at once cannot both apply.
//! - Versions are compared by [`digest`]: the definitions as validated,
//!   sorted by identity — not the raw text, so comments, order and
//!   formatting are not changes.

use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};

use super::backend::{Args, Backend, Tx};
use super::definitions::{reconcile_in, Reconciled};
use super::{parse_ts, ts_ms, Store, StoreError, StoreResult};
use crate::domain::definition::DefinitionSpec;

/// The version of the config file's definitions the store holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppliedConfig {
    /// [`digest`] of the applied definitions.
    pub digest: String,
    /// Modification time of the file they came from (for `config apply`,
    /// the time of the apply if later).
    pub file_mtime: DateTime<Utc>,
    pub source_path: String,
    /// Host (and node, for a daemon) that applied them.
    pub hostname: String,
    pub node: Option<String>,
    pub applied_at: DateTime<Utc>,
}

/// One process's config file, as offered to the store.
#[derive(Debug, Clone, Copy)]
pub struct ConfigFile<'a> {
    pub specs: &'a [DefinitionSpec],
    pub path: &'a str,
    pub mtime: DateTime<Utc>,
    pub hostname: &'a str,
}

/// Whether a file is applied whatever the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// A daemon's start or reload: only a newer, different file applies.
    IfNewer,
    /// `snapsched config apply`.
    Always,
}

/// What offering a config file to the store did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOutcome {
    /// The file's definitions were reconciled into the store.
    Applied {
        report: Reconciled,
        /// The version held before, if it differed.
        replaced: Option<AppliedConfig>,
    },
    /// The file differs from the applied version but is not newer: nothing
    /// changed.
    Drift { applied: AppliedConfig },
}

/// The canonical digest of a file's definitions: SHA-256 (hex) of their
/// JSON, sorted by identity.
pub fn digest(specs: &[DefinitionSpec]) -> String {
    let mut sorted: Vec<&DefinitionSpec> = specs.iter().collect();
    sorted.sort_by(|a, b| a.identity.cmp(&b.identity));
    // Serialising plain data into memory cannot fail; an empty text would
    // still be deterministic.
    let canonical = serde_json::to_vec(&sorted).unwrap_or_default();
    Sha256::digest(&canonical)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(sqlx::FromRow)]
struct StateRow {
    digest: String,
    file_mtime_ms: i64,
    source_path: String,
    hostname: String,
    node: Option<String>,
    applied_at: String,
}

impl StateRow {
    fn into_applied(self) -> StoreResult<AppliedConfig> {
        let file_mtime = DateTime::from_timestamp_millis(self.file_mtime_ms).ok_or_else(|| {
            StoreError::Corrupt(format!("config_state file_mtime_ms {}", self.file_mtime_ms))
        })?;
        Ok(AppliedConfig {
            digest: self.digest,
            file_mtime,
            source_path: self.source_path,
            hostname: self.hostname,
            node: self.node,
            applied_at: parse_ts(&self.applied_at)?,
        })
    }
}

const SELECT_STATE: &str = "SELECT digest, file_mtime_ms, source_path, hostname, node, applied_at
     FROM config_state WHERE id = 1";

impl Store {
    /// The applied version, if any file was ever applied.
    pub async fn applied_config(&self) -> StoreResult<Option<AppliedConfig>> {
        self.pool
            .fetch_optional::<StateRow>(SELECT_STATE, &Args::new())
            .await?
            .map(StateRow::into_applied)
            .transpose()
    }

    /// Offer `file` to the store: apply it (reconcile its definitions and
    /// record it as the applied version) or report drift, by the rule in the
    /// module header, in one write transaction.
    pub async fn apply_config_file(
        &self,
        file: ConfigFile<'_>,
        mode: ApplyMode,
        now: DateTime<Utc>,
    ) -> StoreResult<ConfigOutcome> {
        let mut tx = self.pool.begin_write().await?;
        if self.backend() == Backend::Postgres {
            // The row may not exist yet, so it cannot be locked itself.
            tx.conn()
                .execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended('snapsched.config_state', 0))",
                    &Args::new(),
                )
                .await?;
        }
        let applied = tx
            .conn()
            .fetch_optional::<StateRow>(SELECT_STATE, &Args::new())
            .await?
            .map(StateRow::into_applied)
            .transpose()?;
        let digest = digest(file.specs);
        // Compared in the stored precision (ms), so a file is never "newer"
        // than its own record.
        let newer =
            |a: &AppliedConfig| file.mtime.timestamp_millis() > a.file_mtime.timestamp_millis();
        let (replaced, first) = match applied {
            None => (None, true),
            Some(a) if a.digest == digest => (None, false),
            Some(a) if mode == ApplyMode::IfNewer && !newer(&a) => {
                return Ok(ConfigOutcome::Drift { applied: a });
            }
            Some(a) => (Some(a), false),
        };
        let report = reconcile_in(&mut tx, file.specs, file.path, now).await?;
        // The same version re-reconciled by a daemon keeps its record: who
        // applied it is what an operator chasing drift wants to know.
        if first || replaced.is_some() || mode == ApplyMode::Always {
            // An explicit apply dates its version no earlier than itself:
            // otherwise the next daemon start with a file edited before the
            // apply would undo it at once.
            let dated = match mode {
                ApplyMode::Always => file.mtime.max(now),
                ApplyMode::IfNewer => file.mtime,
            };
            let file = ConfigFile {
                mtime: dated,
                ..file
            };
            record(&mut tx, file, &digest, self.node_id().as_deref(), now).await?;
        }
        tx.commit().await?;
        Ok(ConfigOutcome::Applied { report, replaced })
    }
}

async fn record(
    tx: &mut Tx,
    file: ConfigFile<'_>,
    digest: &str,
    node: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    tx.conn()
        .execute(
            "INSERT INTO config_state
                 (id, digest, file_mtime_ms, source_path, hostname, node, applied_at)
             VALUES (1, $1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET digest = excluded.digest,
                 file_mtime_ms = excluded.file_mtime_ms, source_path = excluded.source_path,
                 hostname = excluded.hostname, node = excluded.node,
                 applied_at = excluded.applied_at",
            &Args::new()
                .text(digest)
                .int(file.mtime.timestamp_millis())
                .text(file.path)
                .text(file.hostname)
                .text(node)
                .text(ts_ms(now)),
        )
        .await?;
    Ok(())
}
