//! Webhook delivery: the daemon's task that POSTs queued notification
//! events to `[notify] webhook_url`, oldest first.
//!
//! Events are queued by the store, in the transaction that records what they
//! report ([`crate::store::notify`]); this task only sends them:
//! - one at a time, in queue order: the head is sent, and only a 2xx answer
//!   deletes it and moves on, so order holds across failures and restarts;
//! - a failure (no connection, a timeout, any status but 2xx) is retried
//!   with exponential backoff and ±20% jitter, from `retry_initial`
//!   doubling up to `retry_max`, for as long as it takes; meanwhile the
//!   queue's bound (`queue_limit`, dropping the oldest) keeps it finite;
//! - only one node delivers: the longest-running live daemon on the store
//!   ([`Store::notify_sender`]), and only while its own lease holds. A node
//!   that joins later never takes over from a live sender, so two daemons
//!   do not send the same head; the sender's death or a lapsed lease moves
//!   delivery to the next node once the store sees it (within the lease).
//!
//! Delivery is at least once: a sender that dies (or loses its lease)
//! after the receiver accepted an event but before the row is deleted
//! leaves it queued, and the next sender sends it again with the same
//! `event_id`, which receivers can use to deduplicate.
//!
//! No secret leaves through a log line or a stored error: the URL is shown
//! as its origin, header values never, and transport errors are described
//! without the URL.

use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use tokio_util::sync::CancellationToken;

use crate::cluster::LeaseHandle;
use crate::secret::webhook::{Header, WebhookUrl};
use crate::store::{QueuedEvent, Store, StoreError};
use crate::telemetry::metrics;

/// How often an idle sender (or a node that is not the sender) looks at
/// the queue again.
pub const IDLE_POLL: Duration = Duration::from_secs(1);

/// How often the queue gauges are re-read from the store.
const GAUGE_EVERY: Duration = Duration::from_secs(5);

/// Everything the delivery task needs, built from `[notify]` by
/// [`crate::wiring`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: WebhookUrl,
    /// Extra headers (e.g. `Authorization`); their values are secrets.
    pub headers: Vec<Header>,
    /// Per request, connecting included.
    pub timeout: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// How often the idle task looks at the queue.
    pub idle_poll: Duration,
    /// `[daemon] lease_ttl`: a node whose heartbeat is older is not asked
    /// to send.
    pub lease_ttl: Duration,
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Another node delivers (or this node's lease does not hold).
    NotSender,
    /// Nothing queued.
    Idle,
    /// The head was accepted and removed.
    Delivered(QueuedEvent),
    /// The head was not accepted; try again after the wait.
    Failed { retry_in: Duration },
}

/// The delivery task's state.
pub struct Deliverer {
    store: Store,
    client: reqwest::Client,
    settings: Settings,
    lease: Option<LeaseHandle>,
    /// Failed attempts since the last success.
    failures: u32,
}

impl Deliverer {
    /// A deliverer for `store`'s queue; `lease` is this node's (none for a
    /// process that is not a cluster member). Fails when a header cannot
    /// be sent as written (the message names it, not its value).
    pub fn new(
        store: Store,
        settings: Settings,
        lease: Option<LeaseHandle>,
    ) -> Result<Deliverer, String> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for h in &settings.headers {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| format!("header name {} is not valid", h.name))?;
            let mut value = HeaderValue::from_str(h.value.expose())
                .map_err(|_| format!("the value of header {} is not valid", h.name))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("snapsched/", env!("CARGO_PKG_VERSION")))
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            // A redirect could carry the headers to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the webhook client: {e}"))?;
        Ok(Deliverer {
            store,
            client,
            settings,
            lease,
            failures: 0,
        })
    }

    /// Whether this process should send now.
    async fn is_sender(&self) -> Result<bool, StoreError> {
        if self.lease.as_ref().is_some_and(|l| !l.holds()) {
            return Ok(false);
        }
        let Some(me) = self.store.node_id() else {
            return Ok(true);
        };
        let sender = self.store.notify_sender(self.settings.lease_ttl).await?;
        Ok(sender.as_deref() == Some(&*me))
    }

    /// Send the head of the queue, if this node is the sender.
    pub async fn step(&mut self) -> Result<Step, StoreError> {
        if !self.is_sender().await? {
            return Ok(Step::NotSender);
        }
        let Some(event) = self.store.notify_head(1).await?.pop() else {
            return Ok(Step::Idle);
        };
        match self.post(&event).await {
            Ok(()) => {
                self.store.notify_delivered(event.id).await?;
                metrics::notify_sent(event.kind.as_str());
                if self.failures > 0 {
                    tracing::info!(
                        receiver = %self.settings.url,
                        failed_attempts = self.failures,
                        "webhook receiver accepts notifications again"
                    );
                }
                self.failures = 0;
                tracing::debug!(
                    event = event.kind.as_str(),
                    event_id = %event.event_id,
                    definition = %event.def_name,
                    "notification delivered"
                );
                Ok(Step::Delivered(event))
            }
            Err(why) => {
                metrics::notify_failed();
                self.failures = self.failures.saturating_add(1);
                let retry_in = self.backoff();
                // Warn at the first failure of an outage and then every
                // tenth, so a long outage does not flood the log.
                if self.failures % 10 == 1 {
                    tracing::warn!(
                        receiver = %self.settings.url,
                        event = event.kind.as_str(),
                        event_id = %event.event_id,
                        failed_attempts = self.failures,
                        retry_in = %humantime::format_duration(retry_in),
                        "webhook delivery failed: {why}"
                    );
                } else {
                    tracing::debug!(receiver = %self.settings.url, "webhook delivery failed: {why}");
                }
                self.store.notify_attempt_failed(event.id, &why).await?;
                Ok(Step::Failed { retry_in })
            }
        }
    }

    /// POST one event; the error describes the failure without the URL.
    async fn post(&self, event: &QueuedEvent) -> Result<(), String> {
        let answer = self
            .client
            .post(self.settings.url.expose().clone())
            .header("X-Snapsched-Event", event.kind.as_str())
            .header("X-Snapsched-Event-Id", event.event_id.as_str())
            .body(event.payload.clone())
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!(
                "the receiver answered HTTP {}",
                r.status().as_u16()
            )),
            Err(e) => Err(describe(&e, self.settings.timeout)),
        }
    }

    /// The wait after the latest failure: `retry_initial` doubled per
    /// failure up to `retry_max`, ±20%.
    fn backoff(&self) -> Duration {
        backoff(
            self.settings.retry_initial,
            self.settings.retry_max,
            self.failures,
        )
    }

    /// Deliver until `shutdown`. A request in flight when it comes is
    /// finished (it is bounded by the timeout), so an accepted event is not
    /// left queued to be sent twice.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tracing::info!(receiver = %self.settings.url, "webhook notifications on");
        let mut gauges_at: Option<Instant> = None;
        let mut store_down = false;
        while !shutdown.is_cancelled() {
            if gauges_at.is_none_or(|t| t.elapsed() >= GAUGE_EVERY) {
                self.publish_gauges().await;
                gauges_at = Some(Instant::now());
            }
            let wait = match self.step().await {
                Ok(step) => {
                    store_down = false;
                    match step {
                        Step::Delivered(_) => {
                            self.publish_gauges().await;
                            continue;
                        }
                        Step::Failed { retry_in } => {
                            self.publish_gauges().await;
                            retry_in
                        }
                        Step::Idle | Step::NotSender => self.settings.idle_poll,
                    }
                }
                Err(e) => {
                    if !store_down {
                        tracing::warn!("webhook delivery cannot read the store: {e}");
                    }
                    store_down = true;
                    self.settings.idle_poll.max(Duration::from_secs(1))
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        self.publish_gauges().await;
    }

    async fn publish_gauges(&self) {
        if let (Ok(depth), Ok(dropped)) = (
            self.store.notify_depth().await,
            self.store.notify_dropped_total().await,
        ) {
            metrics::notify_queue(depth, dropped);
        }
    }
}

/// `initial` doubled `failures - 1` times, at most `max`, ±20% jitter.
pub fn backoff(initial: Duration, max: Duration, failures: u32) -> Duration {
    let base = initial
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
        .min(max);
    base.mul_f64(rand::rng().random_range(0.8..1.2))
}

/// A transport failure in words, without the URL (which reqwest's own
/// message includes).
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {}", humantime::format_duration(timeout));
    }
    let what = if e.is_connect() {
        "cannot connect to the receiver"
    } else {
        "the request failed"
    };
    let mut out = what.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_transport_error_is_described_without_the_url() {
        // Nothing listens on port 1 of the loopback: the connection is refused.
        let e = reqwest::Client::new()
            .post("http://127.0.0.1:1/hooks/T0/s3cret")
            .send()
            .await
            .expect_err("nothing listens on port 1");
        let text = describe(&e, Duration::from_secs(1));
        assert!(text.starts_with("cannot connect to the receiver"), "{text}");
        assert!(
            !text.contains("s3cret") && !text.contains("127.0.0.1"),
            "{text}"
        );
    }

    #[test]
    fn backoff_doubles_from_the_initial_wait_up_to_the_max_with_jitter() {
        let (i, m) = (Duration::from_secs(1), Duration::from_secs(30));
        for (failures, want) in [
            (1, 1.0),
            (2, 2.0),
            (3, 4.0),
            (5, 16.0),
            (6, 30.0),
            (60, 30.0),
        ] {
            let got = backoff(i, m, failures).as_secs_f64();
            assert!(
                (want * 0.8..=want * 1.2).contains(&got),
                "failure {failures}: {got} s, want about {want} s"
            );
        }
    }
}
