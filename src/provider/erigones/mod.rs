//! Erigones / Danube Cloud provider: snapshots of VM disks.
//!
//! Creation is a task (`POST /vm/{hostname}/snapshot/{snapname}/` → 201 with
//! a `task_id`, polled on `/task/{id}/status/`); deletion is one bulk task per
//! call, falling back to one-by-one deletes when Erigones refuses the bulk
//! (417: a member is not OK; 404: a member is already gone).
//!
//! Invariants: snapshot ids are the snapshot names (unique per disk); a
//! listing is one unpaginated request, so it is complete or an error; the
//! API key is only ever in the `ES-API-KEY` header.

mod http;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::domain::{RemoteSnapshot, SnapshotStatus, Target};
use crate::provider::{
    CreateOutcome, CreateRequest, Operation, PointInTime, PollOutcome, PollPolicy, Provider,
    ProviderError, ProviderResult,
};
use crate::secret::Secret;

use http::{render_message, Http, Reply};

/// The configuration shape of `kind = "erigones"`.
pub const KIND: super::KindSpec = super::KindSpec {
    kind: crate::domain::ProviderKind::Erigones,
    api_url: super::ApiUrl::Required {
        example: "https://my.erigones.com/api",
    },
    settings: &[],
};

/// Erigones snapshot names: `^[A-Za-z0-9][A-Za-z0-9._-]*$`, at most 24 characters.
const MAX_SNAPNAME_LEN: usize = 24;

/// Everything needed to talk to one Erigones installation.
#[derive(Debug, Clone)]
pub struct ErigonesSettings {
    /// `[providers.NAME]`: used in metrics labels and messages.
    pub provider_name: String,
    /// API base, e.g. `https://my.erigones.com/api`.
    pub api_url: url::Url,
    pub api_key: Secret,
    pub poll: PollPolicy,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// The largest response body read ([`super::DEFAULT_MAX_RESPONSE_BYTES`]
    /// unless configured); a larger one fails the request as transient.
    pub max_response_bytes: usize,
}

/// A snapshot definition kept inside Erigones, as read for `snapsched import`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErigonesDefinition {
    pub hostname: String,
    pub name: String,
    /// As Erigones sent it: an out-of-range value is the importer's to
    /// refuse for this definition alone, not a reason to refuse the whole
    /// listing.
    pub disk_id: i64,
    /// 5-field cron, in UTC.
    pub schedule: String,
    /// Snapshots to keep; 0 keeps all. As sent (see `disk_id`).
    pub retention: i64,
    #[serde(default = "default_true")]
    pub active: bool,
    #[serde(default)]
    pub desc: String,
    #[serde(default)]
    pub fsfreeze: bool,
}

fn default_true() -> bool {
    true
}

/// Erigones provider handle; cheap to clone.
#[derive(Clone)]
pub struct Erigones {
    inner: Arc<Inner>,
}

struct Inner {
    http: Http,
    poll: PollPolicy,
}

impl fmt::Debug for Erigones {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Erigones")
            .field("provider", &self.inner.http.name)
            .field(
                "api_url",
                &crate::secret::redacted_url(self.inner.http.base()),
            )
            .finish_non_exhaustive()
    }
}

/// A snapshot as listed with `full=true`.
#[derive(Debug, Deserialize)]
struct WireSnapshot {
    name: String,
    disk_id: u32,
    created: String,
    status: u8,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    size: Option<u64>,
}

/// A task's state as `/task/{id}/status/` reports it.
enum TaskState {
    Running,
    Success,
    Failed(String),
}

/// How a bulk delete went.
enum Bulk {
    Done,
    /// Erigones refused the bulk for one member (not OK, or gone): go one by one.
    OneByOne,
}

fn vm_of(target: &Target) -> ProviderResult<&str> {
    match target {
        Target::Vm(host) if !host.is_empty() => Ok(host),
        other => Err(ProviderError::permanent(format!(
            "Erigones targets are VM hostnames; {other} is not one"
        ))),
    }
}

fn parse_created(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        // Erigones stores UTC; a value without an offset is UTC too.
        .or_else(|| {
            NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
}

fn status_of(code: u8) -> SnapshotStatus {
    match code {
        1 => SnapshotStatus::Ok,
        3 => SnapshotStatus::Rollback,
        4 => SnapshotStatus::Lost,
        // 2 is PENDING; an unknown code is treated the same, so the
        // snapshot is neither counted nor deleted.
        _ => SnapshotStatus::Pending,
    }
}

impl Erigones {
    /// Build the client. Fails on a base URL that cannot take paths or an
    /// API key that cannot travel in a header.
    pub fn new(settings: ErigonesSettings) -> Result<Self, ProviderError> {
        let http = Http::new(
            settings.provider_name,
            settings.api_url,
            settings.api_key,
            settings.connect_timeout,
            settings.request_timeout,
            settings.max_response_bytes,
        )?;
        Ok(Erigones {
            inner: Arc::new(Inner {
                http,
                poll: settings.poll,
            }),
        })
    }

    /// HTTP requests sent since construction (for tests and benchmarks).
    pub fn requests_sent(&self) -> u64 {
        self.inner.http.requests_sent()
    }

    fn http(&self) -> &Http {
        &self.inner.http
    }

    /// Erigones' own snapshot definitions, of every VM or of one.
    pub async fn list_definitions(
        &self,
        vm: Option<&str>,
    ) -> ProviderResult<Vec<ErigonesDefinition>> {
        let (url, what) = match vm {
            Some(host) => (
                self.http()
                    .url(&["vm", host, "define", "snapshot"], &[("full", "true")]),
                format!("the snapshot definitions of {host}"),
            ),
            None => (
                self.http()
                    .url(&["vm", "define", "snapshot"], &[("full", "true")]),
                "the snapshot definitions".to_owned(),
            ),
        };
        let reply = self.http().send(Method::GET, url, None, &what).await?;
        if reply.status != StatusCode::OK {
            return Err(self.http().refusal(&reply, &what));
        }
        let result = reply.body.get("result").cloned().unwrap_or(Value::Null);
        serde_json::from_value(result).map_err(|e| {
            ProviderError::permanent(format!(
                "Erigones sent an unexpected listing of {what}: {e}"
            ))
        })
    }

    async fn list(&self, host: &str, disk_id: u32) -> ProviderResult<Vec<RemoteSnapshot>> {
        let what = format!("the snapshot list of {host} disk {disk_id}");
        let disk = disk_id.to_string();
        let url = self.http().url(
            &["vm", host, "snapshot"],
            &[("disk_id", disk.as_str()), ("full", "true")],
        );
        let reply = self.http().send(Method::GET, url, None, &what).await?;
        if reply.status != StatusCode::OK {
            return Err(self.http().refusal(&reply, &what));
        }
        let unexpected = |why: String| {
            ProviderError::permanent(format!(
                "Erigones sent {what} in an unexpected shape: {why}"
            ))
        };
        // Without a `page` parameter Erigones returns the whole list in
        // `result`; anything else would be a partial view, hence an error.
        let wire: Vec<WireSnapshot> =
            serde_json::from_value(reply.body.get("result").cloned().unwrap_or(Value::Null))
                .map_err(|e| unexpected(e.to_string()))?;
        wire.into_iter()
            .filter(|w| w.disk_id == disk_id)
            .map(|w| {
                let created = parse_created(&w.created).ok_or_else(|| {
                    unexpected(format!("snapshot {} has created = {:?}", w.name, w.created))
                })?;
                Ok(RemoteSnapshot {
                    id: w.name.clone(),
                    name: w.name,
                    created_at: created,
                    status: status_of(w.status),
                    size_bytes: w.size.filter(|s| *s > 0),
                    note: w.note.filter(|n| !n.is_empty()),
                })
            })
            .collect()
    }

    /// The snapshot `name` of (host, disk) if listed.
    async fn find(
        &self,
        host: &str,
        disk_id: u32,
        name: &str,
    ) -> ProviderResult<Option<RemoteSnapshot>> {
        Ok(self
            .list(host, disk_id)
            .await?
            .into_iter()
            .find(|s| s.name == name))
    }

    /// Turn an existing snapshot of our name into the create outcome.
    fn adopt(snap: RemoteSnapshot, what: &str) -> ProviderResult<CreateOutcome> {
        match snap.status {
            SnapshotStatus::Ok => Ok(CreateOutcome::Done(snap)),
            SnapshotStatus::Pending => Err(ProviderError::transient(format!(
                "{what} already exists and is still being created; retrying later"
            ))),
            SnapshotStatus::Rollback | SnapshotStatus::Lost => Err(ProviderError::permanent(
                format!("{what} already exists but its status is {:?}", snap.status),
            )),
        }
    }

    /// One `GET /task/{id}/status/`.
    async fn task_state(&self, task_id: &str, what: &str) -> ProviderResult<Option<TaskState>> {
        let url = self.http().url(&["task", task_id, "status"], &[]);
        let what = format!("task {task_id} ({what})");
        let reply = self.http().send(Method::GET, url, None, &what).await?;
        let status = reply
            .body
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("");
        match (reply.status.as_u16(), status) {
            (200 | 201, "PENDING" | "STARTED" | "RETRY" | "RECEIVED") => {
                Ok(Some(TaskState::Running))
            }
            (200, "SUCCESS") => Ok(Some(TaskState::Success)),
            (400, "FAILURE") => Ok(Some(TaskState::Failed(self.http().scrub(format!(
                "Erigones {what} failed: {}",
                render_message(&reply.body)
            ))))),
            (410, _) | (_, "REVOKED") => Ok(Some(TaskState::Failed(self.http().scrub(format!(
                "Erigones {what} was revoked: {}",
                render_message(&reply.body)
            ))))),
            (404, _) => Ok(None),
            _ => Err(self.http().refusal(&reply, &what)),
        }
    }

    /// Poll a short task (a delete) to its end within the poll policy.
    async fn wait_task(&self, task_id: &str, what: &str) -> ProviderResult<()> {
        let policy = self.inner.poll;
        let deadline = tokio::time::Instant::now() + policy.timeout;
        // Deletes take seconds, not minutes: start with a short pause.
        let mut delay = policy.initial.min(Duration::from_secs(1));
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(ProviderError::transient(format!(
                    "Erigones task {task_id} ({what}) still running after {}",
                    humantime::format_duration(policy.timeout)
                )));
            }
            tokio::time::sleep(delay.min(deadline - now)).await;
            delay = (delay * 2).min(policy.max.max(policy.initial));
            match self.task_state(task_id, what).await {
                Ok(Some(TaskState::Success)) => return Ok(()),
                Ok(Some(TaskState::Failed(msg))) => return Err(ProviderError::permanent(msg)),
                Ok(Some(TaskState::Running)) => {}
                Ok(None) => {
                    return Err(ProviderError::permanent(format!(
                        "Erigones does not know task {task_id} ({what})"
                    )))
                }
                // A lost poll does not lose the task: keep polling until the deadline.
                Err(e) if e.is_transient() => {
                    tracing::debug!(provider = %self.http().name, "polling {task_id}: {e}")
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Start a delete task (bulk or single) and wait for it.
    async fn run_delete(
        &self,
        method_url: url::Url,
        body: Option<&Value>,
        what: &str,
    ) -> ProviderResult<Option<Reply>> {
        let reply = self
            .http()
            .send(Method::DELETE, method_url, body, what)
            .await?;
        match reply.status.as_u16() {
            201 => {
                let task_id = reply
                    .body
                    .get("task_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        ProviderError::permanent(format!(
                            "Erigones accepted {what} without a task_id"
                        ))
                    })?
                    .to_owned();
                self.wait_task(&task_id, what).await?;
                Ok(None)
            }
            200 => Ok(None),
            _ => Ok(Some(reply)),
        }
    }

    async fn bulk_delete(&self, host: &str, disk_id: u32, names: &[&str]) -> ProviderResult<Bulk> {
        let what = format!(
            "deletion of snapshots {} of {host} disk {disk_id}",
            names.join(", ")
        );
        let url = self.http().url(&["vm", host, "snapshot"], &[]);
        let body = json!({"disk_id": disk_id, "snapnames": names});
        match self.run_delete(url, Some(&body), &what).await? {
            None => Ok(Bulk::Done),
            Some(reply) if matches!(reply.status.as_u16(), 404 | 417) => Ok(Bulk::OneByOne),
            Some(reply) => Err(self.http().refusal(&reply, &what)),
        }
    }

    async fn delete_one(
        &self,
        host: &str,
        disk_id: u32,
        snap: &RemoteSnapshot,
    ) -> ProviderResult<()> {
        let what = format!(
            "deletion of snapshot {} of {host} disk {disk_id}",
            snap.name
        );
        match snap.status {
            SnapshotStatus::Ok => {}
            SnapshotStatus::Pending | SnapshotStatus::Rollback => {
                return Err(ProviderError::transient(format!(
                    "{what} postponed: its status is {:?}, not OK",
                    snap.status
                )))
            }
            SnapshotStatus::Lost => {
                return Err(ProviderError::permanent(format!(
                    "{what} refused: the snapshot is lost"
                )))
            }
        }
        let disk = disk_id.to_string();
        let url = self.http().url(
            &["vm", host, "snapshot", &snap.name],
            &[("disk_id", disk.as_str())],
        );
        match self.run_delete(url, None, &what).await? {
            None => Ok(()),
            // Gone in the meantime: what we wanted.
            Some(reply) if reply.status == StatusCode::NOT_FOUND => Ok(()),
            Some(reply) => Err(self.http().refusal(&reply, &what)),
        }
    }

    /// Fallback after a refused bulk: delete what is there and OK, one at a time.
    async fn delete_each(
        &self,
        host: &str,
        disk_id: u32,
        names: &[&str],
    ) -> Vec<ProviderResult<()>> {
        let current = match self.list(host, disk_id).await {
            Ok(list) => list,
            Err(e) => return vec![Err(e); names.len()],
        };
        let mut results = Vec::with_capacity(names.len());
        for name in names {
            let result = match current.iter().find(|s| s.name == *name) {
                None => Ok(()),
                Some(snap) => self.delete_one(host, disk_id, snap).await,
            };
            results.push(result);
        }
        results
    }
}

impl Provider for Erigones {
    async fn create_snapshot(&self, req: &CreateRequest) -> ProviderResult<CreateOutcome> {
        let host = vm_of(&req.target)?;
        let what = format!("snapshot {} of {host} disk {}", req.name, req.disk_id);
        if req.name.is_empty()
            || req.name.len() > MAX_SNAPNAME_LEN
            || !req.name.starts_with(|c: char| c.is_ascii_alphanumeric())
            || !req
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(ProviderError::permanent(format!(
                "{what}: Erigones snapshot names are 1-{MAX_SNAPNAME_LEN} characters of A-Z a-z 0-9 . _ - starting with a letter or digit"
            )));
        }
        if req.disk_id == 0 {
            return Err(ProviderError::permanent(format!(
                "{what}: Erigones disk numbers start at 1"
            )));
        }
        if req.may_exist {
            if let Some(snap) = self.find(host, req.disk_id, &req.name).await? {
                return Self::adopt(snap, &what);
            }
        }
        let url = self.http().url(&["vm", host, "snapshot", &req.name], &[]);
        let body = json!({"disk_id": req.disk_id, "note": req.note, "fsfreeze": req.fsfreeze});
        let reply = self
            .http()
            .send(Method::POST, url, Some(&body), &what)
            .await?;
        match reply.status.as_u16() {
            201 => match reply.body.get("task_id").and_then(Value::as_str) {
                Some(id) if !id.is_empty() => {
                    Ok(CreateOutcome::Pending(Operation { id: id.to_owned() }))
                }
                _ => Err(ProviderError::permanent(format!(
                    "Erigones accepted {what} without a task_id"
                ))),
            },
            200 => match self.find(host, req.disk_id, &req.name).await? {
                Some(snap) => Self::adopt(snap, &what),
                None => Err(ProviderError::transient(format!(
                    "Erigones reported {what} created, but it is not listed yet"
                ))),
            },
            406 => match self.find(host, req.disk_id, &req.name).await? {
                Some(snap) => Self::adopt(snap, &what),
                None => Err(self.http().refusal(
                    &reply,
                    &format!(
                        "{what} (a snapshot of that name exists, but not on disk {})",
                        req.disk_id
                    ),
                )),
            },
            _ => Err(self.http().refusal(&reply, &what)),
        }
    }

    async fn poll(&self, req: &CreateRequest, op: &Operation) -> ProviderResult<PollOutcome> {
        let host = vm_of(&req.target)?;
        let what = format!("snapshot {} of {host} disk {}", req.name, req.disk_id);
        match self.task_state(&op.id, &what).await? {
            Some(TaskState::Running) => Ok(PollOutcome::Pending),
            Some(TaskState::Failed(msg)) => Err(ProviderError::permanent(msg)),
            Some(TaskState::Success) => match self.find(host, req.disk_id, &req.name).await? {
                Some(snap) if snap.status == SnapshotStatus::Ok => Ok(PollOutcome::Done(snap)),
                Some(_) => Ok(PollOutcome::Pending),
                None => Err(ProviderError::transient(format!(
                    "Erigones task {} for {what} succeeded, but the snapshot is not listed",
                    op.id
                ))),
            },
            // Erigones forgets finished tasks after a while (a poll resumed
            // long after a crash): the snapshot itself tells how it went.
            None => match self.find(host, req.disk_id, &req.name).await? {
                Some(snap) if snap.status == SnapshotStatus::Ok => Ok(PollOutcome::Done(snap)),
                Some(snap) if snap.status == SnapshotStatus::Pending => Ok(PollOutcome::Pending),
                _ => Err(ProviderError::permanent(format!(
                    "Erigones does not know task {} and {what} does not exist",
                    op.id
                ))),
            },
        }
    }

    async fn list_snapshots(
        &self,
        target: &Target,
        disk_id: u32,
    ) -> ProviderResult<Vec<RemoteSnapshot>> {
        self.list(vm_of(target)?, disk_id).await
    }

    async fn delete_snapshots(
        &self,
        target: &Target,
        disk_id: u32,
        snapshots: &[RemoteSnapshot],
    ) -> Vec<ProviderResult<()>> {
        if snapshots.is_empty() {
            return Vec::new();
        }
        let host = match vm_of(target) {
            Ok(h) => h,
            Err(e) => return vec![Err(e); snapshots.len()],
        };
        let names: Vec<&str> = snapshots.iter().map(|s| s.name.as_str()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        match self.bulk_delete(host, disk_id, &unique).await {
            Ok(Bulk::Done) => vec![Ok(()); names.len()],
            Ok(Bulk::OneByOne) => {
                let results = self.delete_each(host, disk_id, &unique).await;
                names
                    .iter()
                    .map(|n| {
                        let i = unique.binary_search(n).unwrap_or_default();
                        results.get(i).cloned().unwrap_or(Ok(()))
                    })
                    .collect()
            }
            Err(e) => vec![Err(e); names.len()],
        }
    }

    fn poll_policy(&self) -> PollPolicy {
        self.inner.poll
    }

    /// The create call only queues a task; the ZFS snapshot is taken when
    /// the compute node runs it, so a post hook waits for the task.
    fn point_in_time(&self, _target: &Target) -> PointInTime {
        PointInTime::Completed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_snapshot_status() {
        assert_eq!(status_of(1), SnapshotStatus::Ok);
        assert_eq!(status_of(2), SnapshotStatus::Pending);
        assert_eq!(status_of(3), SnapshotStatus::Rollback);
        assert_eq!(status_of(4), SnapshotStatus::Lost);
        assert_eq!(status_of(9), SnapshotStatus::Pending);
    }

    #[test]
    fn created_parses_with_and_without_offset() {
        let want = DateTime::parse_from_rfc3339("2012-01-22T23:23:23.465Z").ok();
        assert_eq!(
            parse_created("2012-01-22T23:23:23.465Z"),
            want.map(|t| t.to_utc())
        );
        assert_eq!(
            parse_created("2012-01-22T23:23:23.465"),
            want.map(|t| t.to_utc())
        );
        assert_eq!(parse_created("yesterday"), None);
    }

    #[test]
    fn debug_shows_neither_key_nor_settings_secret() {
        let settings = ErigonesSettings {
            provider_name: "dc1".into(),
            api_url: url::Url::parse("https://my.erigones.com/api").expect("static url"),
            api_key: Secret::new("sekrit-key-123"),
            poll: PollPolicy::default(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_response_bytes: crate::provider::DEFAULT_MAX_RESPONSE_BYTES,
        };
        assert!(!format!("{settings:?}").contains("sekrit"));
        let provider = Erigones::new(settings).expect("valid settings");
        assert!(!format!("{provider:?}").contains("sekrit"));
    }

    #[test]
    fn urls_keep_the_base_path_and_encode_segments() {
        let settings = ErigonesSettings {
            provider_name: "dc1".into(),
            api_url: url::Url::parse("https://my.erigones.com/api").expect("static url"),
            api_key: Secret::new("k"),
            poll: PollPolicy::default(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_response_bytes: crate::provider::DEFAULT_MAX_RESPONSE_BYTES,
        };
        let provider = Erigones::new(settings).expect("valid settings");
        let url = provider
            .http()
            .url(&["vm", "web01", "snapshot", "a/b"], &[("disk_id", "2")]);
        assert_eq!(
            url.as_str(),
            "https://my.erigones.com/api/vm/web01/snapshot/a%2Fb/?disk_id=2"
        );
    }
}
