//! The JSON shapes of the DigitalOcean API v2 that snapsched reads and sends.
//!
//! Only the fields we use are declared; unknown fields are ignored so that
//! additions to the API do not break parsing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{RemoteSnapshot, SnapshotStatus};

/// Droplet snapshot ids are integers, volume snapshot ids UUID strings, and
/// `/v2/snapshots` returns both as strings: accept either.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum ApiId {
    Int(u64),
    Str(String),
}

impl std::fmt::Display for ApiId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiId::Int(i) => write!(f, "{i}"),
            ApiId::Str(s) => f.write_str(s),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ApiSnapshot {
    pub id: ApiId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub size_gigabytes: Option<f64>,
    /// `snapshot` or `backup` (droplet listings only).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// The droplet or volume the snapshot is of.
    #[serde(default)]
    pub resource_id: Option<ApiId>,
}

impl ApiSnapshot {
    /// Automatic droplet backups are listed beside snapshots but are not
    /// ours to manage (they cannot be deleted through `/v2/snapshots`).
    pub fn is_backup(&self) -> bool {
        self.kind.as_deref() == Some("backup")
    }

    pub fn into_remote(self) -> RemoteSnapshot {
        const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
        RemoteSnapshot {
            id: self.id.to_string(),
            name: self.name,
            created_at: self.created_at,
            // Listed snapshots are usable; creation in progress shows up as
            // a pending action, not as a snapshot.
            status: SnapshotStatus::Ok,
            size_bytes: self
                .size_gigabytes
                .filter(|g| g.is_finite() && *g >= 0.0)
                .map(|g| (g * GIB).round() as u64),
            note: None,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct SnapshotPage {
    pub snapshots: Vec<ApiSnapshot>,
    #[serde(default)]
    pub links: Option<Links>,
    #[serde(default)]
    pub meta: Option<Meta>,
}

/// One page of a paginated listing: its items and the pagination fields.
pub(crate) trait Listing: serde::de::DeserializeOwned {
    type Item;
    fn into_parts(self) -> (Vec<Self::Item>, Option<Links>, Option<Meta>);
}

impl Listing for SnapshotPage {
    type Item = ApiSnapshot;
    fn into_parts(self) -> (Vec<ApiSnapshot>, Option<Links>, Option<Meta>) {
        (self.snapshots, self.links, self.meta)
    }
}

/// A page of `GET /v2/droplets` (`?tag_name=`).
#[derive(Debug, Deserialize)]
pub(crate) struct DropletPage {
    pub droplets: Vec<ApiDroplet>,
    #[serde(default)]
    pub links: Option<Links>,
    #[serde(default)]
    pub meta: Option<Meta>,
}

impl Listing for DropletPage {
    type Item = ApiDroplet;
    fn into_parts(self) -> (Vec<ApiDroplet>, Option<Links>, Option<Meta>) {
        (self.droplets, self.links, self.meta)
    }
}

/// A droplet as listed; only its id is used.
#[derive(Debug, Deserialize)]
pub(crate) struct ApiDroplet {
    pub id: u64,
}

/// The answer to `POST /v2/droplets/actions?tag_name=`.
#[derive(Debug, Deserialize)]
pub(crate) struct ActionsEnvelope {
    pub actions: Vec<Action>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Links {
    #[serde(default)]
    pub pages: Option<Pages>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Pages {
    #[serde(default)]
    pub next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Meta {
    pub total: u64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SnapshotEnvelope {
    pub snapshot: ApiSnapshot,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ActionEnvelope {
    pub action: Action,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Action {
    pub id: u64,
    pub status: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub resource_id: Option<u64>,
    /// `droplet` for droplet actions.
    #[serde(default)]
    pub resource_type: Option<String>,
    #[serde(default)]
    pub region_slug: Option<String>,
}

/// A page of `GET /v2/droplets/{id}/actions` or `GET /v2/actions`.
#[derive(Debug, Deserialize)]
pub(crate) struct ActionPage {
    #[serde(default)]
    pub actions: Vec<Action>,
}

/// The body of every 4xx/5xx answer.
#[derive(Debug, Deserialize)]
pub(crate) struct ApiError {
    #[serde(default)]
    pub id: Option<String>,
    pub message: String,
    #[serde(default)]
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct DropletSnapshotAction<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: &'a str,
}

#[derive(Debug, Serialize)]
pub(crate) struct VolumeSnapshotCreate<'a> {
    pub name: &'a str,
    pub tags: &'a [String],
}

#[derive(Debug, Serialize)]
pub(crate) struct TagCreate<'a> {
    pub name: &'a str,
}

#[derive(Debug, Serialize)]
pub(crate) struct TagResources<'a> {
    pub resources: Vec<TagResource<'a>>,
}

#[derive(Debug, Serialize)]
pub(crate) struct TagResource<'a> {
    pub resource_id: &'a str,
    pub resource_type: &'a str,
}
