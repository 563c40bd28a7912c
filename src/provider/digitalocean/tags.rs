//! Tag targets: the droplets that carry a DigitalOcean tag, and one
//! snapshot action started for all of them at once.
//!
//! - [`DigitalOcean::tag_members`] reads every page of
//!   `GET /v2/droplets?tag_name=` and returns the droplet ids, sorted and
//!   without duplicates.
//! - [`DigitalOcean::snapshot_tag`] sends one
//!   `POST /v2/droplets/actions?tag_name=` (`{"type": "snapshot", "name"}`)
//!   and returns one [`Operation`] per action the answer lists, with its
//!   droplet. Each is the same operation a droplet create returns: poll it
//!   with [`crate::provider::Provider::poll`] and a [`CreateRequest`] whose
//!   target is `droplet:<that id>` and whose name is the name sent here.
//!
//! Invariants: both go through the provider's one request path (limiter,
//! shared budget, provider gate for the POST, response cap, error
//! classification); a listing is complete or an error, never part of the
//! members (a `meta.total` that changes from page to page, or a droplet
//! listed twice, is an error too: the tag changed while its pages were
//! read); a tag is checked
//! against DigitalOcean's tag rules before anything is sent, so an empty tag
//! can never turn into "every droplet"; DigitalOcean leaves a droplet that is
//! busy out of a tag action, so the answer may name fewer droplets than the
//! tag has, and a 422 "pending event" (every droplet busy) is transient.
//!
//! [`CreateRequest`]: crate::provider::CreateRequest

use reqwest::Method;

use super::model::{ActionsEnvelope, DropletPage, DropletSnapshotAction};
use super::{DigitalOcean, PER_PAGE};
use crate::provider::{Operation, ProviderError, ProviderResult};

/// DigitalOcean's longest tag name.
const MAX_TAG_LEN: usize = 255;

impl DigitalOcean {
    /// The ids of every droplet carrying `tag`, ascending, from all pages of
    /// `GET /v2/droplets?tag_name=`. An unknown tag has no droplets.
    pub async fn tag_members(&self, tag: &str) -> ProviderResult<Vec<u64>> {
        check_tag(tag)?;
        let mut url = self.http().url(&["v2", "droplets"]);
        url.query_pairs_mut()
            .append_pair("tag_name", tag)
            .append_pair("per_page", &PER_PAGE.to_string());
        let subject = format!("tag {tag}");
        let (listed, total_changed) = self
            .list_pages::<DropletPage>(url, &subject, "droplets", "droplets of")
            .await?;
        let mut ids: Vec<u64> = listed.iter().map(|d| d.id).collect();
        ids.sort_unstable();
        ids.dedup();
        // A droplet tagged or untagged between two pages shifts the rest:
        // one is then listed twice, or another never.
        if total_changed || ids.len() < listed.len() {
            return Err(ProviderError::transient(format!(
                "listing droplets of {subject}: the tag's droplets changed while its pages were read ({} listed, {} distinct); list again",
                listed.len(),
                ids.len()
            )));
        }
        Ok(ids)
    }

    /// Start a snapshot named `name` of every droplet carrying `tag` that is
    /// not busy, with one request; returns (droplet id, operation) for each
    /// action DigitalOcean started, by droplet id. A busy droplet is left
    /// out (no action, not in the result); when every droplet is busy the
    /// error is transient. A tag without droplets gives an empty list.
    pub async fn snapshot_tag(
        &self,
        tag: &str,
        name: &str,
    ) -> ProviderResult<Vec<(u64, Operation)>> {
        check_tag(tag)?;
        if name.is_empty() {
            return Err(ProviderError::permanent(format!(
                "tag {tag}: the snapshot name is empty; give the snapshot a name"
            )));
        }
        let mut url = self.http().url(&["v2", "droplets", "actions"]);
        url.query_pairs_mut().append_pair("tag_name", tag);
        let body = DropletSnapshotAction {
            kind: "snapshot",
            name,
        };
        let reply = self.http().send(Method::POST, url, Some(&body)).await?;
        if !reply.status.is_success() {
            // 422 "Droplet already has a pending event." is classified
            // transient there.
            return Err(reply.error(&format!("tag {tag}")));
        }
        let answer: ActionsEnvelope = reply.json()?;
        let mut started = Vec::with_capacity(answer.actions.len());
        for action in answer.actions {
            let Some(droplet) = action.resource_id else {
                return Err(ProviderError::permanent(format!(
                    "tag {tag}: DigitalOcean answered the snapshot {name} with action {} that names no droplet",
                    action.id
                )));
            };
            if action
                .resource_type
                .as_deref()
                .is_some_and(|t| t != "droplet")
            {
                return Err(ProviderError::permanent(format!(
                    "tag {tag}: DigitalOcean answered the snapshot {name} with action {} on a {}, not a droplet",
                    action.id,
                    action.resource_type.as_deref().unwrap_or_default()
                )));
            }
            self.inner.bulk.note(action.id);
            started.push((
                droplet,
                Operation {
                    id: action.id.to_string(),
                },
            ));
        }
        started.sort_by_key(|(droplet, _)| *droplet);
        tracing::info!(provider = %self.http().provider, tag, snapshot = name, actions = started.len(), "tag snapshot actions started");
        Ok(started)
    }
}

/// DigitalOcean's tag rule: 1 to 255 of `A-Z a-z 0-9 _ - :`.
fn check_tag(tag: &str) -> ProviderResult<()> {
    let ok = !tag.is_empty()
        && tag.len() <= MAX_TAG_LEN
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':'));
    if ok {
        Ok(())
    } else {
        Err(ProviderError::permanent(format!(
            "tag {tag:?} is not a DigitalOcean tag: use 1 to {MAX_TAG_LEN} letters, digits, '_', '-' or ':'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::check_tag;

    #[test]
    fn tags_follow_digitalocean_rules_so_an_empty_tag_never_lists_every_droplet() {
        for good in ["web", "env:prod", "a_b-c", &"x".repeat(255)] {
            assert!(check_tag(good).is_ok(), "{good}");
        }
        for bad in ["", "web prod", "web&per_page=1", "ünï", &"x".repeat(256)] {
            let e = check_tag(bad).unwrap_err();
            assert!(!e.is_transient(), "{bad}");
            assert!(
                e.message.contains("is not a DigitalOcean tag"),
                "{}",
                e.message
            );
        }
    }
}
