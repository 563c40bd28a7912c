//! Cross-region copies of droplet snapshots: image `transfer` actions.
//!
//! A droplet snapshot is an image; `POST /v2/images/{image_id}/actions`
//! with `{"type": "transfer", "region": SLUG}` starts an action (resource
//! type `image`) that is polled like every other action (through the bulk
//! poller, [`super::bulk`]); once it completes, the image's `regions`
//! (`GET /v2/images/{image_id}`) lists the region. Volume snapshots cannot
//! be transferred.
//!
//! Invariant: a copy that may have been asked for before (a retry, or a run
//! resumed after a crash) never sends a second transfer to that region
//! while one is under way or the image is already there. It reads the
//! image's transfer actions first and its regions second, so a transfer
//! that completes between the two reads is seen in the regions.

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::model::{Action, ActionPage};
use super::{vm_target, DigitalOcean};
use crate::domain::Target;
use crate::provider::{CopyPoll, CopyRequest, CopyStart, Operation, ProviderError, ProviderResult};

#[derive(Debug, Serialize)]
struct TransferAction<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    region: &'a str,
}

/// The answer to an image action: `{"action": {...}}`, as the API sends it
/// and the specification's descriptions say; the specification's schema
/// shows the bare action, which is accepted too.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ActionAnswer {
    Wrapped { action: Action },
    Bare(Action),
}

impl ActionAnswer {
    fn into_action(self) -> Action {
        match self {
            ActionAnswer::Wrapped { action } | ActionAnswer::Bare(action) => action,
        }
    }
}

#[derive(Debug, Deserialize)]
struct ImageEnvelope {
    image: Image,
}

#[derive(Debug, Deserialize)]
struct Image {
    #[serde(default)]
    regions: Vec<String>,
}

/// The image id of a droplet snapshot; volume snapshots have none.
fn image_id(target: &Target, snapshot_id: &str) -> ProviderResult<u64> {
    match target {
        Target::Droplet(_) | Target::Member { .. } => snapshot_id.trim().parse().map_err(|_| {
            ProviderError::permanent(format!(
                "snapshot id {snapshot_id:?} of {target} is not a DigitalOcean image id"
            ))
        }),
        Target::Volume(_) => Err(ProviderError::permanent(format!(
            "{target}: volume snapshots cannot be transferred to another region"
        ))),
        Target::Vm(_) | Target::Tag(_) => Err(vm_target(target)),
    }
}

impl DigitalOcean {
    /// The regions image `id` is available in.
    async fn image_regions(&self, id: u64) -> ProviderResult<Vec<String>> {
        let url = self.http().url(&["v2", "images", &id.to_string()]);
        let reply = self.http().send::<()>(Method::GET, url, None).await?;
        if !reply.status.is_success() {
            return Err(reply.error(&format!("image {id}")));
        }
        Ok(reply.json::<ImageEnvelope>()?.image.regions)
    }

    /// A transfer of image `id` to `region` in progress, from the first
    /// page of the image's actions (the path takes no `per_page`; an image
    /// has few actions).
    async fn transfer_in_progress(&self, id: u64, region: &str) -> ProviderResult<Option<u64>> {
        let url = self
            .http()
            .url(&["v2", "images", &id.to_string(), "actions"]);
        let reply = self.http().send::<()>(Method::GET, url, None).await?;
        if !reply.status.is_success() {
            return Err(reply.error(&format!("image {id}")));
        }
        let page: ActionPage = reply.json()?;
        Ok(page
            .actions
            .into_iter()
            .find(|a| {
                a.status == "in-progress"
                    && a.kind.as_deref() == Some("transfer")
                    && a.region_slug.as_deref() == Some(region)
            })
            .map(|a| a.id))
    }

    pub(super) async fn start_transfer(&self, req: &CopyRequest) -> ProviderResult<CopyStart> {
        let id = image_id(&req.target, &req.snapshot_id)?;
        let region = req.region.as_str();
        if req.may_exist {
            if let Some(action) = self.transfer_in_progress(id, region).await? {
                tracing::info!(provider = %self.http().provider, image = id, action, region, "following the transfer already under way");
                self.inner.bulk.note(action);
                return Ok(CopyStart::Started(Operation {
                    id: action.to_string(),
                }));
            }
            if self.image_regions(id).await?.iter().any(|r| r == region) {
                return Ok(CopyStart::AlreadyThere);
            }
        }
        let url = self
            .http()
            .url(&["v2", "images", &id.to_string(), "actions"]);
        let body = TransferAction {
            kind: "transfer",
            region,
        };
        let reply = self.http().send(Method::POST, url, Some(&body)).await?;
        if reply.status == StatusCode::UNPROCESSABLE_ENTITY {
            // Refused: an image already in the region is a copy done (a
            // transfer that completed unseen); anything else is the
            // refusal's own reason.
            let refused = reply.error(&format!("image {id}"));
            if self.image_regions(id).await?.iter().any(|r| r == region) {
                return Ok(CopyStart::AlreadyThere);
            }
            return Err(refused);
        }
        if !reply.status.is_success() {
            return Err(reply.error(&format!("image {id}")));
        }
        let action = reply.json::<ActionAnswer>()?.into_action();
        tracing::info!(provider = %self.http().provider, image = id, action = action.id, region, "image transfer started");
        self.inner.bulk.note(action.id);
        Ok(CopyStart::Started(Operation {
            id: action.id.to_string(),
        }))
    }

    pub(super) async fn poll_transfer(
        &self,
        req: &CopyRequest,
        op: &Operation,
    ) -> ProviderResult<CopyPoll> {
        let image = image_id(&req.target, &req.snapshot_id)?;
        let action_id = super::action_id_of(op)?;
        let Some(action) = self.action(action_id).await? else {
            return Ok(CopyPoll::Pending);
        };
        if action.resource_id.is_some_and(|r| r != image) {
            self.inner.bulk.done(action_id);
            return Err(ProviderError::permanent(format!(
                "action {action_id} belongs to resource {}, not image {image}",
                action.resource_id.unwrap_or_default()
            )));
        }
        if action.status != "in-progress" {
            self.inner.bulk.done(action_id);
        }
        match action.status.as_str() {
            "in-progress" => Ok(CopyPoll::Pending),
            "completed" => Ok(CopyPoll::Done),
            "errored" => {
                let mut m = format!(
                    "DigitalOcean action {action_id} (transfer of image {image} to {}) errored",
                    req.region
                );
                if let Some(t) = action.completed_at {
                    m.push_str(&format!(", ended {}", t.to_rfc3339()));
                }
                Ok(CopyPoll::Failed(m))
            }
            other => Err(ProviderError::transient(format!(
                "action {action_id} has unknown status {other:?}"
            ))),
        }
    }

    pub(super) async fn regions_of(
        &self,
        target: &Target,
        snapshot_id: &str,
    ) -> ProviderResult<Vec<String>> {
        let id = image_id(target, snapshot_id)?;
        self.image_regions(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_answer_is_read_wrapped_or_bare() {
        let wrapped: ActionAnswer =
            serde_json::from_str(r#"{"action": {"id": 5, "status": "in-progress"}}"#).unwrap();
        assert_eq!(wrapped.into_action().id, 5);
        let bare: ActionAnswer =
            serde_json::from_str(r#"{"id": 6, "status": "in-progress"}"#).unwrap();
        assert_eq!(bare.into_action().id, 6);
    }

    #[test]
    fn only_droplet_snapshots_are_images() {
        assert_eq!(image_id(&Target::Droplet(3), "42").unwrap(), 42);
        let v = Target::Volume(uuid::Uuid::nil());
        let e = image_id(&v, "x").unwrap_err();
        assert!(e.message.contains("cannot be transferred"), "{e}");
        assert!(image_id(&Target::Droplet(3), "abc").is_err());
    }
}
