//! Listings read to find a new droplet snapshot's id, kept for the prune
//! that follows within moments ([`crate::provider::Provider::fresh_listing`]):
//! one listing per droplet cycle instead of two.
//!
//! Invariants: a kept listing is complete (it came from `list_raw`, which
//! fails rather than return part of the pages); it is handed out at most
//! once, only while at most [`FRESH_LISTING`] old (tokio's clock) and only
//! to a caller naming a snapshot it lists; entries past that age are
//! dropped on every insert, so the map holds only the last minute's
//! completions.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::time::Instant;

use super::model::ApiSnapshot;
use crate::domain::{RemoteSnapshot, Target};
use crate::provider::FRESH_LISTING;

#[derive(Default)]
pub(crate) struct FreshListings {
    by_target: Mutex<HashMap<Target, (Instant, Vec<ApiSnapshot>)>>,
}

impl FreshListings {
    /// Keep `listing` of `target`, read just now.
    pub fn keep(&self, target: &Target, listing: Vec<ApiSnapshot>) {
        let now = Instant::now();
        let mut map = self.by_target.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (at, _)| now.duration_since(*at) <= FRESH_LISTING);
        map.insert(target.clone(), (now, listing));
    }

    /// Take the listing of `target` if it is fresh and lists `made_id`.
    pub fn take(&self, target: &Target, made_id: &str) -> Option<Vec<RemoteSnapshot>> {
        let (at, listing) = self
            .by_target
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(target)?;
        if Instant::now().duration_since(at) > FRESH_LISTING
            || !listing.iter().any(|s| s.id.to_string() == made_id)
        {
            return None;
        }
        Some(listing.into_iter().map(ApiSnapshot::into_remote).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::digitalocean::model::ApiId;

    fn snap(id: u64) -> ApiSnapshot {
        ApiSnapshot {
            id: ApiId::Int(id),
            name: format!("web-{id}"),
            created_at: chrono::Utc::now(),
            size_gigabytes: None,
            kind: Some("snapshot".to_owned()),
            resource_id: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_listing_is_handed_out_once_while_fresh_and_only_for_a_snapshot_it_lists() {
        let fresh = FreshListings::default();
        let d = Target::Droplet(7);
        fresh.keep(&d, vec![snap(1), snap(2)]);
        assert!(fresh.take(&Target::Droplet(8), "2").is_none());
        assert_eq!(fresh.take(&d, "2").map(|l| l.len()), Some(2));
        assert!(fresh.take(&d, "2").is_none(), "handed out twice");

        fresh.keep(&d, vec![snap(1)]);
        assert!(fresh.take(&d, "2").is_none(), "does not list the new one");

        fresh.keep(&d, vec![snap(1), snap(2)]);
        tokio::time::advance(FRESH_LISTING + std::time::Duration::from_secs(1)).await;
        assert!(fresh.take(&d, "2").is_none(), "stale");
    }
}
