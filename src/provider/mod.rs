//! The provider seam: everything snapsched asks of a cloud API.
//!
//! A provider creates a snapshot of one disk of one target, reports on the
//! asynchronous operation that creation may start, lists the snapshots of a
//! disk and deletes snapshots. The run engine drives these calls; it never
//! speaks HTTP itself.
//!
//! Invariants every implementation keeps:
//! - `list_snapshots` returns the *complete* listing or an error; a listing
//!   that stopped part-way through its pages is an error, never a short list
//!   (retention must not plan from an incomplete view).
//! - Errors carry their class in the type ([`ErrorClass`]): callers never
//!   match on message strings.
//! - Secrets never appear in an error message; control characters in a
//!   message (quoted from a server) are escaped where it is built.
//! - Memory per request is bounded: response bodies are read up to a cap
//!   ([`body`]), listings up to a number of pages.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;

use crate::domain::{RemoteSnapshot, Target};

mod any;
pub mod body;
pub mod digitalocean;
pub mod erigones;
#[cfg(feature = "fake-provider")]
pub mod fake;
pub mod gate;
pub mod kinds;
pub mod ratelimit;

pub use any::AnyProvider;
pub use body::DEFAULT_MAX_RESPONSE_BYTES;
pub use kinds::{ApiUrl, KindSpec};

/// What to create.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub target: Target,
    pub disk_id: u32,
    /// The snapshot name: `<definition>-YYYYmmdd_HHMMSS`.
    pub name: String,
    /// Who made it and why; Erigones stores it as the snapshot note.
    pub note: String,
    /// Erigones: freeze the guest filesystem during the snapshot.
    pub fsfreeze: bool,
    /// DigitalOcean tags from the definition (the provider adds its own).
    pub tags: Vec<String>,
    /// True when an earlier attempt for this name may have reached the
    /// provider (a retry, or recovery after a crash). The provider must then
    /// look for an existing snapshot of this name on this disk and return it
    /// as [`CreateOutcome::Done`] rather than create a second one (droplet
    /// snapshot names are not unique at DigitalOcean).
    pub may_exist: bool,
}

/// The result of a create call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// The snapshot exists (volume snapshots, or an earlier attempt of the
    /// same name that is adopted).
    Done(RemoteSnapshot),
    /// An asynchronous operation (DigitalOcean action, Erigones task) to poll.
    Pending(Operation),
}

/// A pending asynchronous provider operation. `id` is persisted with the run
/// so that polling resumes after a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub id: String,
}

/// The result of polling an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    /// Still running.
    Pending,
    /// Finished; the snapshot exists.
    Done(RemoteSnapshot),
}

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClass {
    /// Retry with backoff (5xx, 429, 423, lock contention, timeouts,
    /// connection errors). `retry_after` is the provider's own hint.
    Transient,
    /// Fail the run now (auth, unknown target, limits, errored action).
    Permanent,
}

/// A message bounded in length and with any URL password redacted (an
/// HTTP client's error quotes the request's URL, and `api_url` may carry
/// credentials).
fn bounded_message(message: String) -> String {
    let message = match crate::secret::redact_urls(&message) {
        std::borrow::Cow::Borrowed(_) => message,
        redacted => redacted.into_owned(),
    };
    match crate::domain::text::bounded_error(&message) {
        std::borrow::Cow::Borrowed(_) => message,
        cut => cut.into_owned(),
    }
}

/// A provider failure, classified. `message` is the provider's own wording
/// with our context; it never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub class: ErrorClass,
    pub message: String,
    /// Server's hint for when to retry (`retry-after`, `ratelimit-reset`).
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    /// A transient error; a message longer than
    /// [`crate::domain::text::ERROR_MAX`] (a provider's whole error page) is
    /// cut, as every message is, and control characters in it (quoted from
    /// servers) are escaped, once, so no log line, terminal or stored error
    /// carries them raw.
    pub fn transient(message: impl Into<String>) -> Self {
        ProviderError {
            class: ErrorClass::Transient,
            message: clean(bounded_message(message.into())),
            retry_after: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        ProviderError {
            class: ErrorClass::Permanent,
            message: clean(bounded_message(message.into())),
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    pub fn is_transient(&self) -> bool {
        self.class == ErrorClass::Transient
    }
}

fn clean(message: String) -> String {
    match crate::table::escape_controls(&message) {
        std::borrow::Cow::Borrowed(_) => message,
        std::borrow::Cow::Owned(escaped) => escaped,
    }
}

pub type ProviderResult<T> = Result<T, ProviderError>;

/// How the engine should pace polling of one provider's operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPolicy {
    /// First wait after the create call.
    pub initial: Duration,
    /// Ceiling of the exponential backoff between polls.
    pub max: Duration,
    /// Give up on an operation after this long (the run then fails).
    pub timeout: Duration,
}

impl Default for PollPolicy {
    fn default() -> Self {
        PollPolicy {
            initial: Duration::from_secs(15),
            max: Duration::from_secs(120),
            timeout: Duration::from_secs(2 * 3600),
        }
    }
}

/// The operations the run engine needs from a cloud API.
///
/// Implementations are cheap to clone handles (`Arc` inside) and safe to
/// call concurrently.
pub trait Provider: Send + Sync {
    /// Start creating snapshot `req.name`. If a snapshot of that name already
    /// exists on that disk (an earlier attempt of the same slot), return it as
    /// [`CreateOutcome::Done`] instead of failing.
    fn create_snapshot(
        &self,
        req: &CreateRequest,
    ) -> impl Future<Output = ProviderResult<CreateOutcome>> + Send;

    /// Poll an operation started by `create_snapshot` for `req`.
    fn poll(
        &self,
        req: &CreateRequest,
        op: &Operation,
    ) -> impl Future<Output = ProviderResult<PollOutcome>> + Send;

    /// Every snapshot of (target, disk), all pages, any status.
    fn list_snapshots(
        &self,
        target: &Target,
        disk_id: u32,
    ) -> impl Future<Output = ProviderResult<Vec<RemoteSnapshot>>> + Send;

    /// Delete these snapshots of (target, disk). One result per input, in
    /// order. "Not found" is success. Implementations may batch (Erigones
    /// bulk delete) and must wait until the deletion is done.
    fn delete_snapshots(
        &self,
        target: &Target,
        disk_id: u32,
        snapshots: &[RemoteSnapshot],
    ) -> impl Future<Output = Vec<ProviderResult<()>>> + Send;

    /// How to pace polling of this provider's operations.
    fn poll_policy(&self) -> PollPolicy;

    /// The complete listing of (`target`, `disk_id`) this provider read
    /// moments ago to finish the create of snapshot `made_id`, if it is at
    /// most [`FRESH_LISTING`] old and lists `made_id`; each listing is
    /// handed out once. The prune right after a run plans from it instead
    /// of listing again (DigitalOcean droplets: the snapshot id lookup and
    /// the retention listing are then one request). `None` makes the
    /// caller list.
    fn fresh_listing(
        &self,
        _target: &Target,
        _disk_id: u32,
        _made_id: &str,
    ) -> Option<Vec<RemoteSnapshot>> {
        None
    }

    /// When a snapshot of `target` has its point in time, so that a post
    /// hook (which thaws what the pre hook froze) runs no earlier.
    fn point_in_time(&self, _target: &Target) -> PointInTime {
        PointInTime::Accepted
    }

    /// The droplets carrying `tag` now, ascending (tag targets); a listing
    /// that stops part-way is an error, never a partial answer.
    fn tag_members(&self, tag: &str) -> impl Future<Output = ProviderResult<Vec<u64>>> + Send {
        let e = untagged(tag);
        async { Err(e) }
    }

    /// Start snapshot `name` of every droplet carrying `tag` with one
    /// request: (droplet, operation) for each droplet it started on; a
    /// droplet left out (locked by a pending event) has none. Each
    /// operation is polled as [`Provider::poll`] polls a droplet's create.
    fn snapshot_tag(
        &self,
        tag: &str,
        _name: &str,
    ) -> impl Future<Output = ProviderResult<Vec<(u64, Operation)>>> + Send {
        let e = untagged(tag);
        async { Err(e) }
    }

    /// Show (`held`) or stop showing an operator's hold on the snapshot at
    /// the provider, where the API allows (DigitalOcean: the
    /// [`HOLD_TAG`] tag). The hold itself lives in the store; this only
    /// makes it visible in the provider's control panel. Providers without
    /// a way to show it answer [`HoldMark::NotShown`].
    fn mark_held(
        &self,
        _target: &Target,
        _disk_id: u32,
        _snapshot_id: &str,
        _held: bool,
    ) -> impl Future<Output = ProviderResult<HoldMark>> + Send {
        async { Ok(HoldMark::NotShown) }
    }

    /// Start copying snapshot `req.snapshot_id` of `req.target` to
    /// `req.region` (DigitalOcean: an image `transfer` action). With
    /// `req.may_exist` (an earlier attempt may have reached the provider),
    /// first look for the snapshot already in that region, or a copy to it
    /// already under way, and answer with that rather than start a second
    /// one. Providers that cannot copy refuse with a permanent error.
    fn start_copy(
        &self,
        req: &CopyRequest,
    ) -> impl Future<Output = ProviderResult<CopyStart>> + Send {
        let e = ProviderError::permanent(format!(
            "{} snapshots cannot be copied to another region (copy to {})",
            req.target, req.region
        ));
        async move { Err(e) }
    }

    /// Poll a copy started by [`Provider::start_copy`].
    fn poll_copy(
        &self,
        req: &CopyRequest,
        op: &Operation,
    ) -> impl Future<Output = ProviderResult<CopyPoll>> + Send {
        let e = ProviderError::permanent(format!(
            "{} snapshots cannot be copied to another region (operation {})",
            req.target, op.id
        ));
        async move { Err(e) }
    }

    /// The regions snapshot `snapshot_id` of `target` is available in now.
    fn snapshot_regions(
        &self,
        target: &Target,
        _snapshot_id: &str,
    ) -> impl Future<Output = ProviderResult<Vec<String>>> + Send {
        let e = ProviderError::permanent(format!(
            "{target}: the provider does not say which regions a snapshot is in"
        ));
        async move { Err(e) }
    }
}

/// A copy of one snapshot to one region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRequest {
    pub target: Target,
    /// The provider's id of the snapshot (DigitalOcean: the image id).
    pub snapshot_id: String,
    pub region: String,
    /// An earlier attempt of this copy may have reached the provider.
    pub may_exist: bool,
}

/// The answer to [`Provider::start_copy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyStart {
    /// The copy is under way as this operation.
    Started(Operation),
    /// The snapshot is already in the region.
    AlreadyThere,
}

/// The answer to [`Provider::poll_copy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyPoll {
    Pending,
    /// The snapshot is in the region.
    Done,
    /// The copy ended without the snapshot in the region (DigitalOcean: the
    /// action errored); another attempt may succeed.
    Failed(String),
}

/// The error of a provider without tag targets.
fn untagged(tag: &str) -> ProviderError {
    ProviderError::permanent(format!(
        "tag:{tag}: this provider cannot select droplets by tag"
    ))
}

/// How old a listing kept for [`Provider::fresh_listing`] may be: the
/// prune follows the poll that read it within a few store writes, so a
/// listing older than this belongs to a run that stalled, and is not used.
pub const FRESH_LISTING: Duration = Duration::from_secs(60);

/// When the provider fixes a snapshot's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointInTime {
    /// Once the create request is accepted: DigitalOcean volume snapshots
    /// (made synchronously) and droplet snapshot actions (the action has
    /// started when the request returns).
    Accepted,
    /// Only once the asynchronous operation has finished: an Erigones
    /// create is a queued task, and the ZFS snapshot is taken when the
    /// compute node runs it.
    Completed,
}

/// The tag a held snapshot carries at DigitalOcean.
pub const HOLD_TAG: &str = "snapsched-hold";

/// How a provider shows a hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldMark {
    /// The snapshot carries (or no longer carries) this tag.
    Tagged(&'static str),
    /// The provider has no way to show it; the hold is in the store only.
    NotShown,
}
