//! DigitalOcean API v2 provider: droplet and volume snapshots.
//!
//! - `droplet:<id>`: a `snapshot` droplet action is started and its id is the
//!   [`Operation`] id. [`Provider::poll`] reads the action once; when it has
//!   completed, the snapshot's id is found by listing the droplet's
//!   snapshots and matching the name (created at or after the action's
//!   `started_at`), and the configured tags are attached.
//! - `volume:<uuid>`: the snapshot is created synchronously, with its tags;
//!   a 409 (duplicate name) adopts the earlier attempt's snapshot.
//! - Cross-region copies of droplet snapshots are image transfer actions
//!   ([`copies`]).
//!
//! Invariants: listings follow `links.pages.next` to the end and fail
//! rather than return a partial list, and fail too on a link back to a page
//! already read or past the pages `meta.total` (at most 1,000) allows; pagination links are only followed on
//! `api_url`'s origin; one [`RateLimiter`] is shared by every instance that
//! uses the same token on the same API; the token appears in no message and
//! no `Debug` output.

mod bulk;
mod copies;
mod fresh;
mod http;
mod model;
mod tags;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use reqwest::{Method, StatusCode};
use url::Url;

use self::http::Http;
use self::model::{
    ActionEnvelope, ApiSnapshot, DropletSnapshotAction, Listing, SnapshotEnvelope, SnapshotPage,
    TagCreate, TagResource, TagResources, VolumeSnapshotCreate,
};
pub use super::ratelimit::RateLimits;
use super::ratelimit::{RateLimiter, SharedBudget};
use super::{
    CopyPoll, CopyRequest, CopyStart, CreateOutcome, CreateRequest, HoldMark, Operation,
    PollOutcome, PollPolicy, Provider, ProviderError, ProviderResult, HOLD_TAG,
};
use crate::domain::{RemoteSnapshot, Target};
use crate::secret::Secret;

/// The public API endpoint.
pub const DEFAULT_API_URL: &str = "https://api.digitalocean.com";

/// The configuration shape of `kind = "digitalocean"`.
pub const KIND: super::KindSpec = super::KindSpec {
    kind: crate::domain::ProviderKind::DigitalOcean,
    api_url: super::ApiUrl::Default(DEFAULT_API_URL),
    settings: &[],
};

/// Largest page the API serves.
const PER_PAGE: u32 = 200;

/// Pages one listing reads at most (200,000 snapshots of one resource, far
/// beyond any account's limit): a server that paginates for ever gets an
/// error, not an endless listing.
const MAX_PAGES: u64 = 1000;

/// Everything a DigitalOcean provider needs, already parsed.
#[derive(Debug, Clone)]
pub struct DigitalOceanSettings {
    /// `[providers.NAME]`; labels metrics and messages.
    pub provider_name: String,
    /// Base URL (`https://api.digitalocean.com`; tests point it at loopback).
    pub api_url: Url,
    pub token: Secret,
    pub poll: PollPolicy,
    /// Tags added to every snapshot this provider creates.
    pub tags: Vec<String>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// The largest response body read; a larger one fails the request as
    /// transient.
    pub max_response_bytes: usize,
    pub limits: RateLimits,
    /// The request budget shared with other processes on the same token
    /// (the store's), if any.
    pub shared_budget: Option<Arc<dyn SharedBudget>>,
}

impl DigitalOceanSettings {
    /// Settings with the documented defaults for everything but the name and
    /// the token.
    pub fn new(provider_name: impl Into<String>, token: Secret) -> Self {
        DigitalOceanSettings {
            provider_name: provider_name.into(),
            api_url: Url::parse(DEFAULT_API_URL).expect("constant URL parses"),
            token,
            poll: PollPolicy::default(),
            tags: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_response_bytes: super::DEFAULT_MAX_RESPONSE_BYTES,
            limits: RateLimits::default(),
            shared_budget: None,
        }
    }
}

/// A DigitalOcean API client implementing [`Provider`]. Cheap to clone.
#[derive(Clone)]
pub struct DigitalOcean {
    inner: Arc<Inner>,
}

struct Inner {
    http: Http,
    poll: PollPolicy,
    tags: Vec<String>,
    /// Listings read to find a new droplet snapshot's id, for the prune.
    fresh: fresh::FreshListings,
    /// Shared with every instance on the same token and API.
    bulk: Arc<bulk::BulkPoller>,
}

impl std::fmt::Debug for DigitalOcean {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigitalOcean")
            .field("provider", &self.inner.http.provider)
            .field(
                "api_url",
                &crate::secret::redacted_url(&self.inner.http.base),
            )
            .field("token", &"[redacted]")
            .finish_non_exhaustive()
    }
}

type LimiterKey = (String, u64);

/// Limiters by (API origin, token hash): DigitalOcean limits per token, so
/// two provider entries with one token must share one budget.
fn shared_limiter(api_url: &Url, token: &Secret, limits: RateLimits) -> Arc<RateLimiter> {
    use std::hash::{Hash, Hasher};
    static LIMITERS: OnceLock<Mutex<HashMap<LimiterKey, Weak<RateLimiter>>>> = OnceLock::new();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    token.expose().hash(&mut hasher);
    let key = (api_url.origin().ascii_serialization(), hasher.finish());
    let mut map = LIMITERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    map.retain(|_, w| w.strong_count() > 0);
    if let Some(l) = map.get(&key).and_then(Weak::upgrade) {
        return l;
    }
    let l = Arc::new(RateLimiter::new(limits));
    map.insert(key, Arc::downgrade(&l));
    l
}

/// The shared budget's name for a token on an API: a SHA-256 of both, in
/// hex, so the store never holds the token and one cannot be recovered
/// from it.
pub fn budget_bucket(api_url: &Url, token: &Secret) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"snapsched.api-budget.v1\0");
    h.update(api_url.origin().ascii_serialization().as_bytes());
    h.update(b"\0");
    h.update(token.expose().as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl DigitalOcean {
    /// Build the HTTP client. Instances with the same token and API share
    /// one rate limiter.
    pub fn new(settings: DigitalOceanSettings) -> Result<Self, ProviderError> {
        let limiter = shared_limiter(&settings.api_url, &settings.token, settings.limits);
        Self::with_limiter(settings, limiter)
    }

    /// Like [`DigitalOcean::new`] with a given limiter (tests use one on a
    /// manual clock).
    pub fn with_limiter(
        settings: DigitalOceanSettings,
        limiter: Arc<RateLimiter>,
    ) -> Result<Self, ProviderError> {
        let name = settings.provider_name.clone();
        if settings.token.is_empty() {
            return Err(ProviderError::permanent(format!(
                "provider {name}: the DigitalOcean token is empty"
            )));
        }
        if !matches!(settings.api_url.scheme(), "http" | "https")
            || settings.api_url.cannot_be_a_base()
        {
            return Err(ProviderError::permanent(format!(
                "provider {name}: api_url {} is not an http(s) URL",
                settings.api_url
            )));
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("snapsched/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            // A redirect could carry the request elsewhere; the API never
            // redirects.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                ProviderError::permanent(format!("provider {name}: cannot build HTTP client: {e}"))
            })?;
        limiter.set_label(&name);
        let bulk = bulk::shared(&settings.api_url, &settings.token);
        if let Some(budget) = settings.shared_budget {
            limiter.share_with(budget, budget_bucket(&settings.api_url, &settings.token));
        }
        let mut tags = Vec::new();
        for t in settings.tags {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        Ok(DigitalOcean {
            inner: Arc::new(Inner {
                http: Http::new(
                    name,
                    settings.api_url,
                    settings.token,
                    client,
                    limiter,
                    settings.max_response_bytes,
                ),
                poll: settings.poll,
                tags,
                fresh: fresh::FreshListings::default(),
                bulk,
            }),
        })
    }

    /// Requests this instance has sent (each attempt counts).
    pub fn requests_sent(&self) -> u64 {
        self.inner.http.requests_sent()
    }

    /// The limiter this instance waits on.
    pub fn limiter(&self) -> Arc<RateLimiter> {
        self.inner.http.limiter.clone()
    }

    fn http(&self) -> &Http {
        &self.inner.http
    }

    /// Provider tags followed by the definition's, without duplicates.
    fn tags_for(&self, req: &CreateRequest) -> Vec<String> {
        let mut tags = self.inner.tags.clone();
        for t in &req.tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        tags
    }

    /// Every snapshot of a droplet or volume, all pages; backups excluded.
    async fn list_raw(&self, target: &Target) -> ProviderResult<Vec<ApiSnapshot>> {
        let (mut url, subject) = match target {
            Target::Droplet(id) => (
                self.http()
                    .url(&["v2", "droplets", &id.to_string(), "snapshots"]),
                format!("droplet {id}"),
            ),
            Target::Volume(id) => (
                self.http()
                    .url(&["v2", "volumes", &id.to_string(), "snapshots"]),
                format!("volume {id}"),
            ),
            Target::Vm(_) | Target::Tag(_) | Target::Member { .. } => {
                return Err(vm_target(target))
            }
        };
        url.query_pairs_mut()
            .append_pair("per_page", &PER_PAGE.to_string());
        let (mut all, _) = self
            .list_pages::<SnapshotPage>(url, &subject, "snapshots", "snapshots of")
            .await?;
        all.retain(|s| !s.is_backup());
        Ok(all)
    }

    /// Every item of the listing whose first page is `url`: all pages, or an
    /// error; and whether `meta.total` changed from page to page (the
    /// listing changed while it was read). `subject` names what the listing is about in messages
    /// ("droplet 3164444", "tag web"); `noun` and `relation` make the rest
    /// ("listing snapshots of droplet 3164444", "listing droplets tagged
    /// web").
    async fn list_pages<P: Listing>(
        &self,
        mut url: Url,
        subject: &str,
        noun: &str,
        relation: &str,
    ) -> ProviderResult<(Vec<P::Item>, bool)> {
        let what = format!("listing {relation} {subject}");
        let mut all = Vec::new();
        let mut total: Option<u64> = None;
        let mut total_changed = false;
        let mut pages = 0u64;
        let mut seen = std::collections::HashSet::new();
        loop {
            pages += 1;
            seen.insert(url.as_str().to_owned());
            let reply = self.http().send::<()>(Method::GET, url, None).await?;
            if !reply.status.is_success() {
                return Err(reply.error(subject));
            }
            let (items, links, meta) = reply.json::<P>()?.into_parts();
            if let Some(m) = &meta {
                if m.total > MAX_PAGES * u64::from(PER_PAGE) {
                    return Err(ProviderError::transient(format!(
                        "{what}: DigitalOcean reports {} {noun}, more than the {} ({MAX_PAGES} pages) a listing reads",
                        m.total,
                        MAX_PAGES * u64::from(PER_PAGE)
                    )));
                }
                total_changed |= total.is_some_and(|t| t != m.total);
                total = Some(m.total);
            }
            all.extend(items);
            let next = links.and_then(|l| l.pages).and_then(|p| p.next);
            let Some(next) = next else { break };
            let next_url = Url::parse(&next).map_err(|e| {
                ProviderError::transient(format!("{what}: bad next-page link {next:?}: {e}"))
            })?;
            if !self.http().same_origin(&next_url) {
                return Err(ProviderError::permanent(format!(
                    "{what}: next-page link leaves {}: {}",
                    self.http().base.origin().ascii_serialization(),
                    next_url.origin().ascii_serialization()
                )));
            }
            if seen.contains(next_url.as_str()) {
                return Err(ProviderError::transient(format!(
                    "{what}: page {pages} links back to a page already read ({}); the pagination loops",
                    next_url.path()
                )));
            }
            // A server that keeps linking to more pages than its total
            // allows would otherwise read on for ever.
            let bound = total.map_or(MAX_PAGES, |t| (t / u64::from(PER_PAGE) + 2).min(MAX_PAGES));
            if pages >= bound {
                return Err(ProviderError::transient(format!(
                    "{what}: pagination did not end after {pages} pages (at most {bound} expected)"
                )));
            }
            url = next_url;
        }
        if let Some(t) = total {
            if (all.len() as u64) < t {
                return Err(ProviderError::transient(format!(
                    "{what}: pages ended after {} of {t} {noun}",
                    all.len()
                )));
            }
        }
        Ok((all, total_changed))
    }

    /// A snapshot action in progress on droplet `id`, from the newest page
    /// of its actions. A droplet runs one event at a time, so there is at
    /// most one; a create request now would be refused until it ends.
    async fn snapshot_action_in_progress(&self, id: u64) -> ProviderResult<Option<Operation>> {
        let mut url = self
            .http()
            .url(&["v2", "droplets", &id.to_string(), "actions"]);
        url.query_pairs_mut().append_pair("per_page", "50");
        let reply = self.http().send::<()>(Method::GET, url, None).await?;
        if !reply.status.is_success() {
            return Err(reply.error(&format!("droplet {id}")));
        }
        let page: model::ActionPage = reply.json()?;
        Ok(page
            .actions
            .into_iter()
            .find(|a| a.status == "in-progress" && a.kind.as_deref() == Some("snapshot"))
            .map(|a| Operation {
                id: a.id.to_string(),
            }))
    }

    async fn create_droplet(&self, id: u64, req: &CreateRequest) -> ProviderResult<CreateOutcome> {
        let target = Target::Droplet(id);
        if req.may_exist {
            // Droplet snapshot names are not unique: a second action would
            // make a duplicate, so look first. An earlier attempt's action
            // may still be running (its snapshot is listed only once it
            // completes): follow that action rather than start another. The
            // actions are read before the snapshots, so an action that
            // completes in between is found in the listing.
            if let Some(op) = self.snapshot_action_in_progress(id).await? {
                tracing::info!(provider = %self.http().provider, droplet = id, action = %op.id, snapshot = %req.name, "following the snapshot action already in progress on the droplet");
                return Ok(CreateOutcome::Pending(op));
            }
            let existing = self.list_raw(&target).await?;
            if let Some(s) = newest_named(existing.clone(), &req.name, None) {
                let snap = s.into_remote();
                self.inner.fresh.keep(&target, existing);
                self.tag_droplet_snapshot(&snap, req).await?;
                return Ok(CreateOutcome::Done(snap));
            }
        }
        let url = self
            .http()
            .url(&["v2", "droplets", &id.to_string(), "actions"]);
        let body = DropletSnapshotAction {
            kind: "snapshot",
            name: &req.name,
        };
        let reply = self.http().send(Method::POST, url, Some(&body)).await?;
        if !reply.status.is_success() {
            return Err(reply.error(&format!("droplet {id}")));
        }
        let action: ActionEnvelope = reply.json()?;
        if action.action.status == "errored" {
            return Err(errored(&action.action, id));
        }
        tracing::info!(provider = %self.http().provider, droplet = id, action = action.action.id, snapshot = %req.name, "droplet snapshot action started");
        self.inner.bulk.note(action.action.id);
        Ok(CreateOutcome::Pending(Operation {
            id: action.action.id.to_string(),
        }))
    }

    async fn create_volume(
        &self,
        id: uuid::Uuid,
        req: &CreateRequest,
    ) -> ProviderResult<CreateOutcome> {
        // Volume snapshot names are unique per volume, so an earlier attempt
        // shows up as a 409 and needs no listing up front.
        let url = self
            .http()
            .url(&["v2", "volumes", &id.to_string(), "snapshots"]);
        let tags = self.tags_for(req);
        let body = VolumeSnapshotCreate {
            name: &req.name,
            tags: &tags,
        };
        let reply = self.http().send(Method::POST, url, Some(&body)).await?;
        if reply.status == StatusCode::CONFLICT {
            let existing = self.list_raw(&Target::Volume(id)).await?;
            return match newest_named(existing, &req.name, None) {
                Some(s) => Ok(CreateOutcome::Done(s.into_remote())),
                None => Err(ProviderError::transient(format!(
                    "volume {id}: DigitalOcean reports a conflict for snapshot {} but lists none of that name",
                    req.name
                ))),
            };
        }
        if !reply.status.is_success() {
            return Err(reply.error(&format!("volume {id}")));
        }
        let snap: SnapshotEnvelope = reply.json()?;
        let of = snap.snapshot.resource_id.as_ref().map(ToString::to_string);
        if of.as_deref().is_some_and(|r| r != id.to_string()) {
            return Err(ProviderError::permanent(format!(
                "volume {id}: DigitalOcean answered the create of snapshot {} with snapshot {:?} of resource {}",
                req.name,
                snap.snapshot.name,
                of.unwrap_or_default()
            )));
        }
        Ok(CreateOutcome::Done(snap.snapshot.into_remote()))
    }

    /// Attach the provider's and the definition's tags to a droplet
    /// snapshot (an `image`), creating tags that do not exist yet.
    async fn tag_droplet_snapshot(
        &self,
        snap: &RemoteSnapshot,
        req: &CreateRequest,
    ) -> ProviderResult<()> {
        for tag in self.tags_for(req) {
            self.tag(&tag, &snap.id, "image").await?;
        }
        Ok(())
    }

    /// Tag one resource, creating the tag when the API says it does not
    /// exist yet.
    async fn tag(&self, tag: &str, resource_id: &str, resource_type: &str) -> ProviderResult<()> {
        let url = self.http().url(&["v2", "tags", tag, "resources"]);
        let body = TagResources {
            resources: vec![TagResource {
                resource_id,
                resource_type,
            }],
        };
        let reply = self
            .http()
            .send(Method::POST, url.clone(), Some(&body))
            .await?;
        if reply.status.is_success() {
            return Ok(());
        }
        if reply.status != StatusCode::NOT_FOUND {
            return Err(reply.error(&format!("tag {tag}")));
        }
        let create = self
            .http()
            .send(
                Method::POST,
                self.http().url(&["v2", "tags"]),
                Some(&TagCreate { name: tag }),
            )
            .await?;
        // 422 here means another caller created it meanwhile.
        if !create.status.is_success() && create.status != StatusCode::UNPROCESSABLE_ENTITY {
            return Err(create.error(&format!("tag {tag}")));
        }
        let retry = self.http().send(Method::POST, url, Some(&body)).await?;
        if !retry.status.is_success() {
            return Err(retry.error(&format!("tag {tag}")));
        }
        Ok(())
    }

    /// Remove a tag from one resource; a tag that no longer exists (404)
    /// is not on the resource either, so that is success.
    async fn untag(&self, tag: &str, resource_id: &str, resource_type: &str) -> ProviderResult<()> {
        let url = self.http().url(&["v2", "tags", tag, "resources"]);
        let body = TagResources {
            resources: vec![TagResource {
                resource_id,
                resource_type,
            }],
        };
        let reply = self.http().send(Method::DELETE, url, Some(&body)).await?;
        if reply.status.is_success() || reply.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(reply.error(&format!("untag {tag}")))
        }
    }
}

impl DigitalOcean {
    /// Action `id` as the API shows it now, or `None` for "no news yet":
    /// from a page of all actions when many are in flight on this token
    /// (see [`bulk`]), else with its own request.
    async fn action(&self, id: u64) -> ProviderResult<Option<model::Action>> {
        let bulk = &self.inner.bulk;
        let many = bulk.note(id);
        // An answer is never older than the longest wait between polls.
        let fresh = self.inner.poll.max;
        // A fresh page answers for free; a new one is read only for many.
        let mut known = bulk.known(id, fresh);
        if known.is_none() && many {
            let _reading = bulk.reading().await;
            known = match bulk.known(id, fresh) {
                Some(k) => Some(k),
                None => self
                    .read_action_page()
                    .await
                    .then(|| bulk.known(id, fresh))
                    .flatten(),
            };
        }
        match known {
            Some(bulk::Known::Listed(a)) => return Ok(Some(a)),
            Some(bulk::Known::NoNews) if many => return Ok(None),
            _ => {}
        }
        let url = self.http().url(&["v2", "actions", &id.to_string()]);
        let reply = self.http().send::<()>(Method::GET, url, None).await?;
        if !reply.status.is_success() {
            return Err(reply.error(&format!("action {id}")));
        }
        let env: ActionEnvelope = reply.json()?;
        Ok(Some(env.action))
    }

    /// Read the newest pages of the account's actions into the bulk poller:
    /// one page per [`PER_PAGE`] actions in flight (at most
    /// [`bulk::MAX_ACTION_PAGES`]), since the listing is newest first and
    /// a tag request starts hundreds at once; false when that failed (the
    /// caller then polls singly).
    async fn read_action_page(&self) -> bool {
        let bulk = &self.inner.bulk;
        let pages = bulk
            .in_flight()
            .div_ceil(PER_PAGE as usize)
            .clamp(1, bulk::MAX_ACTION_PAGES);
        let read_at = tokio::time::Instant::now();
        let mut all = Vec::new();
        for n in 1..=pages {
            let mut url = self.http().url(&["v2", "actions"]);
            url.query_pairs_mut()
                .append_pair("per_page", &PER_PAGE.to_string())
                .append_pair("page", &n.to_string());
            let page = match self.http().send::<()>(Method::GET, url, None).await {
                Ok(reply) if reply.status.is_success() => reply.json::<model::ActionPage>(),
                Ok(reply) => Err(reply.error("actions")),
                Err(e) => Err(e),
            };
            match page {
                Ok(page) => {
                    let last = page.actions.len() < PER_PAGE as usize;
                    all.extend(page.actions);
                    if last {
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(provider = %self.http().provider, "reading page {n} of actions failed, polling singly: {e}");
                    return false;
                }
            }
        }
        bulk.keep_page(read_at, all);
        true
    }
}

/// The latest snapshot named `name`, optionally created at or after `since`.
fn newest_named(
    snaps: Vec<ApiSnapshot>,
    name: &str,
    since: Option<DateTime<Utc>>,
) -> Option<ApiSnapshot> {
    snaps
        .into_iter()
        .filter(|s| s.name == name && since.is_none_or(|t| s.created_at >= t))
        .max_by_key(|s| s.created_at)
}

/// The DigitalOcean action id an operation carries.
pub(crate) fn action_id_of(op: &Operation) -> ProviderResult<u64> {
    op.id.trim().parse().map_err(|_| {
        ProviderError::permanent(format!(
            "operation id {:?} is not a DigitalOcean action id",
            op.id
        ))
    })
}

fn vm_target(target: &Target) -> ProviderError {
    ProviderError::permanent(format!(
        "DigitalOcean cannot snapshot {target} as one resource: a snapshot is of droplet:<id> or volume:<uuid> (tag:<name> fans out to its droplets)"
    ))
}

fn errored(action: &model::Action, droplet: u64) -> ProviderError {
    let mut msg = format!(
        "DigitalOcean action {} ({} of droplet {droplet}) errored",
        action.id,
        action.kind.as_deref().unwrap_or("snapshot")
    );
    if let Some(t) = action.started_at {
        msg.push_str(&format!(", started {}", t.to_rfc3339()));
    }
    if let Some(t) = action.completed_at {
        msg.push_str(&format!(", ended {}", t.to_rfc3339()));
    }
    if let Some(r) = &action.region_slug {
        msg.push_str(&format!(", region {r}"));
    }
    ProviderError::permanent(msg)
}

impl Provider for DigitalOcean {
    async fn create_snapshot(&self, req: &CreateRequest) -> ProviderResult<CreateOutcome> {
        match &req.target {
            Target::Droplet(id) => self.create_droplet(*id, req).await,
            Target::Volume(id) => self.create_volume(*id, req).await,
            Target::Vm(_) | Target::Tag(_) | Target::Member { .. } => Err(vm_target(&req.target)),
        }
    }

    async fn poll(&self, req: &CreateRequest, op: &Operation) -> ProviderResult<PollOutcome> {
        let droplet = match &req.target {
            Target::Droplet(id) => *id,
            Target::Volume(id) => {
                return Err(ProviderError::permanent(format!(
                "volume {id}: volume snapshots are synchronous, there is no operation {} to poll",
                op.id
            )))
            }
            Target::Vm(_) | Target::Tag(_) | Target::Member { .. } => {
                return Err(vm_target(&req.target))
            }
        };
        let action_id = action_id_of(op)?;
        let Some(action) = self.action(action_id).await? else {
            return Ok(PollOutcome::Pending);
        };
        if let Some(r) = action.resource_id {
            if r != droplet {
                self.inner.bulk.done(action_id);
                return Err(ProviderError::permanent(format!(
                    "action {action_id} belongs to droplet {r}, not droplet {droplet}"
                )));
            }
        }
        if action.status != "in-progress" {
            self.inner.bulk.done(action_id);
        }
        match action.status.as_str() {
            "in-progress" => Ok(PollOutcome::Pending),
            "errored" => Err(errored(&action, droplet)),
            "completed" => {
                // API timestamps have whole seconds; compare at that grain.
                let since = action.started_at.map(|t| t.trunc_subsecs(0));
                let snaps = self.list_raw(&req.target).await?;
                let Some(found) = newest_named(snaps.clone(), &req.name, since) else {
                    return Err(ProviderError::transient(format!(
                        "action {action_id} completed but droplet {droplet} lists no snapshot {} yet",
                        req.name
                    )));
                };
                let snap = found.into_remote();
                // The prune that follows plans from this listing.
                self.inner.fresh.keep(&req.target, snaps);
                self.tag_droplet_snapshot(&snap, req).await?;
                Ok(PollOutcome::Done(snap))
            }
            other => Err(ProviderError::transient(format!(
                "action {action_id} has unknown status {other:?}"
            ))),
        }
    }

    async fn list_snapshots(
        &self,
        target: &Target,
        _disk_id: u32,
    ) -> ProviderResult<Vec<RemoteSnapshot>> {
        // A droplet or volume snapshot covers the whole resource: DigitalOcean
        // has no per-disk snapshots, so the disk id does not narrow anything.
        Ok(self
            .list_raw(target)
            .await?
            .into_iter()
            .map(ApiSnapshot::into_remote)
            .collect())
    }

    async fn delete_snapshots(
        &self,
        target: &Target,
        _disk_id: u32,
        snapshots: &[RemoteSnapshot],
    ) -> Vec<ProviderResult<()>> {
        let mut out = Vec::with_capacity(snapshots.len());
        for s in snapshots {
            if matches!(target, Target::Vm(_)) {
                out.push(Err(vm_target(target)));
                continue;
            }
            let url = self.http().url(&["v2", "snapshots", &s.id]);
            let result = match self.http().send::<()>(Method::DELETE, url, None).await {
                Ok(r) if r.status.is_success() || r.status == StatusCode::NOT_FOUND => Ok(()),
                Ok(r) => Err(r.error(&format!("snapshot {}", s.id))),
                Err(e) => Err(e),
            };
            out.push(result);
        }
        out
    }

    fn poll_policy(&self) -> PollPolicy {
        self.inner.poll
    }

    async fn start_copy(&self, req: &CopyRequest) -> ProviderResult<CopyStart> {
        self.start_transfer(req).await
    }

    async fn poll_copy(&self, req: &CopyRequest, op: &Operation) -> ProviderResult<CopyPoll> {
        self.poll_transfer(req, op).await
    }

    async fn snapshot_regions(
        &self,
        target: &Target,
        snapshot_id: &str,
    ) -> ProviderResult<Vec<String>> {
        self.regions_of(target, snapshot_id).await
    }

    fn fresh_listing(
        &self,
        target: &Target,
        _disk_id: u32,
        made_id: &str,
    ) -> Option<Vec<RemoteSnapshot>> {
        self.inner.fresh.take(target, made_id)
    }

    /// A held snapshot carries [`HOLD_TAG`]: droplet snapshots are tagged
    /// as `image`, volume snapshots as `volume_snapshot` (the tags API's
    /// resource types).
    async fn tag_members(&self, tag: &str) -> ProviderResult<Vec<u64>> {
        DigitalOcean::tag_members(self, tag).await
    }

    async fn snapshot_tag(&self, tag: &str, name: &str) -> ProviderResult<Vec<(u64, Operation)>> {
        DigitalOcean::snapshot_tag(self, tag, name).await
    }

    async fn mark_held(
        &self,
        target: &Target,
        _disk_id: u32,
        snapshot_id: &str,
        held: bool,
    ) -> ProviderResult<HoldMark> {
        let resource_type = match target {
            Target::Droplet(_) => "image",
            Target::Volume(_) => "volume_snapshot",
            _ => return Err(vm_target(target)),
        };
        if held {
            self.tag(HOLD_TAG, snapshot_id, resource_type).await?;
        } else {
            self.untag(HOLD_TAG, snapshot_id, resource_type).await?;
        }
        Ok(HoldMark::Tagged(HOLD_TAG))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(token: &str, url: &str) -> DigitalOceanSettings {
        let mut s = DigitalOceanSettings::new("do", Secret::new(token));
        s.api_url = Url::parse(url).unwrap();
        s
    }

    #[test]
    fn one_token_on_one_api_shares_one_limiter() {
        let a = DigitalOcean::new(settings("tok-a", "http://127.0.0.1:9")).unwrap();
        let b = DigitalOcean::new(settings("tok-a", "http://127.0.0.1:9/")).unwrap();
        let c = DigitalOcean::new(settings("tok-c", "http://127.0.0.1:9")).unwrap();
        assert!(Arc::ptr_eq(&a.limiter(), &b.limiter()));
        assert!(!Arc::ptr_eq(&a.limiter(), &c.limiter()));
    }

    #[test]
    fn the_budget_bucket_names_the_token_and_api_without_revealing_the_token() {
        let api = Url::parse("http://127.0.0.1:9").unwrap();
        let other_api = Url::parse("http://127.0.0.1:10").unwrap();
        let a = budget_bucket(&api, &Secret::new("tok-a"));
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()), "{a}");
        assert!(!a.contains("tok-a"));
        assert_eq!(a, budget_bucket(&api, &Secret::new("tok-a")));
        assert_ne!(a, budget_bucket(&api, &Secret::new("tok-b")));
        assert_ne!(a, budget_bucket(&other_api, &Secret::new("tok-a")));
    }

    #[test]
    fn bad_settings_are_refused_without_showing_the_token() {
        let e = DigitalOcean::new(settings("", "http://127.0.0.1:9")).unwrap_err();
        assert!(e.message.contains("token is empty"));
        let e = DigitalOcean::new(settings("tok-secret", "ftp://127.0.0.1")).unwrap_err();
        assert!(!e.message.contains("tok-secret"));
        let p = DigitalOcean::new(settings("tok-secret", "http://127.0.0.1:9")).unwrap();
        assert!(!format!("{p:?}").contains("tok-secret"));
    }

    #[test]
    fn urls_keep_a_path_prefix_and_encode_segments() {
        let p = DigitalOcean::new(settings("t", "http://127.0.0.1:9/proxy/")).unwrap();
        assert_eq!(
            p.http()
                .url(&["v2", "tags", "env:prod", "resources"])
                .as_str(),
            "http://127.0.0.1:9/proxy/v2/tags/env:prod/resources"
        );
    }
}
