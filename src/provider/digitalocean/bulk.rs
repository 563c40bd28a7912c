//! Polling many droplet actions with one request.
//!
//! `GET /v2/actions?per_page=200` lists every action of the account, 200
//! to a page (the API's largest), newest first; with more than 200 in
//! flight (a tag request starts one per droplet) a read takes one page per
//! 200, up to [`MAX_ACTION_PAGES`]. With many snapshot actions
//! in flight on one token, one such page answers them all, where one
//! `GET /v2/actions/{id}` each would cost a request per action per poll.
//!
//! Rules:
//! - An action counts as in flight from its create (or first poll) until a
//!   poll sees it finished, or until nobody asked about it for
//!   [`FORGET_AFTER`] (its run ended elsewhere).
//! - A poll is answered from the newest page read at most [`PAGE_FRESH`]
//!   ago (or the provider's longest poll interval, when that is shorter)
//!   when the page shows the action. A new page is read (by one caller
//!   at a time; the others wait for it and use it) only with at least
//!   [`BULK_FROM`] actions in flight; with fewer, a poll the page cannot
//!   answer is a single `GET /v2/actions/{id}`. An action on the page gets its
//!   status from there; an action first seen after the page was read gets
//!   "no news" (in progress) until the next page; an action the page does
//!   not show although it should (not on the first page: more than 200
//!   newer actions, or an order other than newest first) is polled
//!   singly. So the order of the listing decides only how many requests a
//!   poll costs, never its answer, and an answer is at most `PAGE_FRESH`
//!   old.
//!
//! One poller serves every provider instance on the same token and API
//! (like the rate limiter), since the page covers the whole account.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::time::Instant;
use url::Url;

use super::model::Action;
use crate::secret::Secret;

/// Fewest actions in flight on a token for which a page is read.
pub(crate) const BULK_FROM: usize = 3;
/// How long a page answers polls: an answer is at most this late. Polls
/// come every 15 s to 120 s and droplet snapshot actions take minutes, so
/// half a minute delays few completions; with actions in flight all the
/// time a token reads about 120 pages an hour.
pub(crate) const PAGE_FRESH: Duration = Duration::from_secs(30);
/// Most pages of actions read at once (2,000 actions in flight).
pub(crate) const MAX_ACTION_PAGES: usize = 10;
/// An action nobody asked about for this long is no longer counted.
pub(crate) const FORGET_AFTER: Duration = Duration::from_secs(600);

/// What the poller knows about one action.
#[derive(Debug)]
pub(crate) enum Known {
    /// From a page read at most [`PAGE_FRESH`] ago.
    Listed(Action),
    /// First seen after the newest page was read: nothing new yet.
    NoNews,
    /// The page should show it and does not: poll it singly.
    NotListed,
}

struct Page {
    read_at: Instant,
    actions: HashMap<u64, Action>,
}

#[derive(Default)]
struct State {
    /// Action id → (first seen, last asked about).
    in_flight: HashMap<u64, (Instant, Instant)>,
    page: Option<Page>,
}

#[derive(Default)]
pub(crate) struct BulkPoller {
    state: Mutex<State>,
    /// One page read at a time; the others wait and use it.
    reading: tokio::sync::Mutex<()>,
}

type Key = (String, u64);

/// The poller for a token on an API, shared like the rate limiter.
pub(crate) fn shared(api_url: &Url, token: &Secret) -> Arc<BulkPoller> {
    use std::hash::{Hash, Hasher};
    static POLLERS: OnceLock<Mutex<HashMap<Key, Weak<BulkPoller>>>> = OnceLock::new();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    token.expose().hash(&mut hasher);
    let key = (api_url.origin().ascii_serialization(), hasher.finish());
    let mut map = POLLERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    map.retain(|_, w| w.strong_count() > 0);
    if let Some(p) = map.get(&key).and_then(Weak::upgrade) {
        return p;
    }
    let p = Arc::new(BulkPoller::default());
    map.insert(key, Arc::downgrade(&p));
    p
}

impl BulkPoller {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count `id` as in flight (a create, or a poll about to be made) and
    /// say whether enough are in flight to poll by page.
    pub fn note(&self, id: u64) -> bool {
        let now = Instant::now();
        let mut st = self.state();
        st.in_flight
            .retain(|_, (_, asked)| now.duration_since(*asked) <= FORGET_AFTER);
        st.in_flight.entry(id).or_insert((now, now)).1 = now;
        st.in_flight.len() >= BULK_FROM
    }

    /// How many actions are in flight.
    pub fn in_flight(&self) -> usize {
        self.state().in_flight.len()
    }

    /// `id` finished (or failed for good): no longer in flight.
    pub fn done(&self, id: u64) {
        let mut st = self.state();
        st.in_flight.remove(&id);
        if let Some(p) = st.page.as_mut() {
            p.actions.remove(&id);
        }
    }

    /// What the current page says about `id`, if it is at most `fresh`
    /// old (the caller's bound: [`PAGE_FRESH`], or less when its polls come
    /// more often than that).
    pub fn known(&self, id: u64, fresh: Duration) -> Option<Known> {
        let now = Instant::now();
        let st = self.state();
        let page = st.page.as_ref()?;
        if now.duration_since(page.read_at) > fresh.min(PAGE_FRESH) {
            return None;
        }
        if let Some(a) = page.actions.get(&id) {
            return Some(Known::Listed(a.clone()));
        }
        let first_seen = st.in_flight.get(&id).map(|(first, _)| *first);
        Some(if first_seen.is_some_and(|f| f > page.read_at) {
            Known::NoNews
        } else {
            Known::NotListed
        })
    }

    /// Hold this while reading a page; check [`BulkPoller::known`] again
    /// once it is held (another caller may have just read one).
    pub async fn reading(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.reading.lock().await
    }

    /// Keep the page read at `read_at` (when its request was sent).
    pub fn keep_page(&self, read_at: Instant, actions: Vec<Action>) {
        let mut st = self.state();
        st.page = Some(Page {
            read_at,
            actions: actions.into_iter().map(|a| (a.id, a)).collect(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(id: u64, status: &str) -> Action {
        Action {
            id,
            status: status.to_owned(),
            kind: Some("snapshot".to_owned()),
            started_at: None,
            completed_at: None,
            resource_id: Some(1),
            resource_type: Some("droplet".to_owned()),
            region_slug: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pages_serve_only_from_three_actions_in_flight() {
        let p = BulkPoller::default();
        assert!(!p.note(1));
        assert!(!p.note(2));
        assert!(p.note(3));
        p.done(3);
        assert!(!p.note(2), "a finished action no longer counts");
        tokio::time::advance(FORGET_AFTER + Duration::from_secs(1)).await;
        assert!(!p.note(4));
        assert!(!p.note(5), "1 and 2 were forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn a_fresh_page_answers_listed_newer_and_missing_actions() {
        let p = BulkPoller::default();
        p.note(1);
        p.note(2);
        let read_at = Instant::now();
        tokio::time::advance(Duration::from_secs(1)).await;
        p.keep_page(read_at, vec![action(2, "completed")]);
        p.note(3);
        assert!(
            matches!(p.known(2, PAGE_FRESH), Some(Known::Listed(a)) if a.status == "completed")
        );
        assert!(matches!(p.known(1, PAGE_FRESH), Some(Known::NotListed)));
        assert!(matches!(p.known(3, PAGE_FRESH), Some(Known::NoNews)));
        tokio::time::advance(PAGE_FRESH).await;
        assert!(
            p.known(2, PAGE_FRESH).is_none(),
            "a stale page answers nothing"
        );
    }
}
