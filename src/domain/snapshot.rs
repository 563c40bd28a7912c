//! Snapshots: as a provider lists them, and as snapsched records them.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::definition::Identity;

/// Readiness of a snapshot as the provider reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotStatus {
    /// Usable; the only status retention counts.
    Ok,
    /// Being created or deleted.
    Pending,
    /// Erigones: being rolled back to.
    Rollback,
    /// Erigones: lost.
    Lost,
}

/// One snapshot as listed by a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteSnapshot {
    /// The provider's id (DigitalOcean: integer or UUID as a string;
    /// Erigones: the snapshot name, which is unique per disk).
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub status: SnapshotStatus,
    /// Size in bytes, when the provider says.
    pub size_bytes: Option<u64>,
    /// Free text the provider keeps with the snapshot (Erigones `note`).
    pub note: Option<String>,
}

/// The lifecycle of a recorded snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordState {
    /// Exists at the provider as far as we know.
    Present,
    /// We deleted it (pruning).
    Deleted,
    /// The provider stopped listing it (deleted by hand).
    Gone,
}

impl RecordState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordState::Present => "present",
            RecordState::Deleted => "deleted",
            RecordState::Gone => "gone",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "present" => Some(RecordState::Present),
            "deleted" => Some(RecordState::Deleted),
            "gone" => Some(RecordState::Gone),
            _ => None,
        }
    }
}

/// One recorded snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotRecord {
    #[serde(flatten)]
    pub identity: Identity,
    /// The snapshot's name (`identity.name` is the definition's).
    pub snapshot: String,
    pub remote_id: Option<String>,
    pub run_id: Option<i64>,
    pub created_at: Option<DateTime<Utc>>,
    pub size_bytes: Option<i64>,
    pub state: RecordState,
    pub adopted: bool,
    pub recorded_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub delete_reason: Option<String>,
    /// Set while the snapshot is held: snapsched deletes it by no rule.
    pub hold: Option<Hold>,
    /// The regions the snapshot is available in, as the provider last said;
    /// `None` when never read (only definitions with `copy_regions` read
    /// them).
    pub regions: Option<Vec<String>>,
}

/// Where one copy of a snapshot to another region stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyState {
    /// About to ask the provider (the request may have reached it).
    Sending,
    /// The provider is copying it as the recorded operation.
    Copying,
    /// The snapshot is in the region.
    Done,
    /// Every attempt failed; the snapshot is not in the region.
    Failed,
}

impl CopyState {
    pub fn as_str(self) -> &'static str {
        match self {
            CopyState::Sending => "sending",
            CopyState::Copying => "copying",
            CopyState::Done => "done",
            CopyState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            CopyState::Sending,
            CopyState::Copying,
            CopyState::Done,
            CopyState::Failed,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }

    /// Still to be driven by a run.
    pub fn is_open(self) -> bool {
        matches!(self, CopyState::Sending | CopyState::Copying)
    }
}

/// One copy of a recorded snapshot to one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotCopy {
    #[serde(skip)]
    pub identity: Identity,
    /// The snapshot's name.
    #[serde(skip)]
    pub snapshot: String,
    /// The provider's id of the snapshot.
    #[serde(skip)]
    pub remote_id: String,
    pub region: String,
    #[serde(skip)]
    pub run_id: Option<i64>,
    pub state: CopyState,
    pub operation_id: Option<String>,
    pub attempts: u32,
    /// Why the last attempt failed.
    pub error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// An operator's hold on a snapshot (`snapsched snapshots hold`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hold {
    /// The operator's text; empty when none was given.
    pub reason: String,
    pub held_at: DateTime<Utc>,
}

impl Hold {
    /// The hold as a keep reason reads: `held: TEXT`, or `held`.
    pub fn describe(&self) -> String {
        describe_hold(&self.reason)
    }
}

/// `held: TEXT`, or `held` for a hold without a reason.
pub fn describe_hold(reason: &str) -> String {
    if reason.is_empty() {
        "held".to_owned()
    } else {
        format!("held: {reason}")
    }
}

/// The snapshot name for a slot: `<definition>-YYYYmmdd_HHMMSS` in UTC
/// (Erigones' convention), so every attempt of a slot asks for the same name.
pub fn snapshot_name(definition: &str, slot: DateTime<Utc>) -> String {
    format!("{definition}-{}", slot.format("%Y%m%d_%H%M%S"))
}
