//! One DigitalOcean HTTP exchange: limiter permit, bearer token, metrics,
//! rate-limit headers, and the mapping of statuses to [`ProviderError`].
//!
//! Invariants: every request waits for the limiter first; the token only
//! ever goes into the `Authorization` header of a request to `api_url`'s
//! origin; error messages carry the method, the path and DigitalOcean's own
//! message, never a header.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{header::HeaderMap, Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use url::Url;

use super::model::ApiError;
use crate::provider::body::{read_capped, BodyError};
use crate::provider::ratelimit::RateLimiter;
use crate::provider::ProviderError;

/// A permit older than this when its request is about to leave is not used.
const STALE_PERMIT: Duration = Duration::from_secs(1);
use crate::secret::Secret;
use crate::telemetry::metrics::{self, RequestOutcome};

/// A received answer, body read in full.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
    /// `GET /v2/actions/5`, for messages.
    pub what: String,
    pub retry_after: Option<Duration>,
}

pub(crate) struct Http {
    pub provider: String,
    pub base: Url,
    token: Secret,
    client: reqwest::Client,
    pub limiter: Arc<RateLimiter>,
    sent: AtomicU64,
    /// The largest response body read; a larger one fails the request.
    max_body: usize,
}

impl Http {
    pub fn new(
        provider: String,
        base: Url,
        token: Secret,
        client: reqwest::Client,
        limiter: Arc<RateLimiter>,
        max_body: usize,
    ) -> Self {
        Http {
            provider,
            base,
            token,
            client,
            limiter,
            sent: AtomicU64::new(0),
            max_body,
        }
    }

    pub fn requests_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// `api_url` joined with path segments, each percent-encoded.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Whether `url` is on the same origin as `api_url` (pagination links
    /// are followed only there, so the token never leaves that origin).
    pub fn same_origin(&self, url: &Url) -> bool {
        url.origin() == self.base.origin()
    }

    pub async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<Reply, ProviderError> {
        let what = format!("{method} {}", url.path());
        // A permit is counted by the budget when granted and by the server
        // when the request arrives: a permit that went stale before the
        // request left (this process was stalled) is spent, not used, so a
        // late request cannot land in a later minute on top of newer ones.
        loop {
            self.limiter.acquire().await;
            let granted = Instant::now();
            if method != Method::GET && !super::super::gate::open() {
                return Err(super::super::gate::closed());
            }
            if granted.elapsed() < STALE_PERMIT {
                break;
            }
            tracing::debug!("request permit went stale before {what} was sent; asking again");
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let mut req = self
            .client
            .request(method, url)
            .bearer_auth(self.token.expose());
        if let Some(b) = body {
            req = req.json(b);
        }
        let result = async {
            let resp = req.send().await.map_err(BodyError::Transport)?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = read_capped(resp, self.max_body).await?;
            Ok::<_, BodyError>((status, headers, body))
        }
        .await;
        // Every transport failure counts as `error` here (the message says
        // which), unlike Erigones' `timeout`/`connect`.
        let outcome = match &result {
            Ok((status, ..)) => RequestOutcome::Status(status.as_u16()),
            Err(_) => RequestOutcome::Error,
        };
        metrics::provider_request(&self.provider, outcome, started.elapsed());
        let (status, headers, body) = match result {
            Ok(r) => r,
            Err(e @ BodyError::TooLarge { .. }) => {
                return Err(ProviderError::transient(format!(
                    "DigitalOcean {what} failed: {e}"
                )));
            }
            // A request that cannot even be built (a token or URL with
            // characters not allowed in it) fails the same way every time.
            Err(BodyError::Transport(e)) if e.is_builder() => {
                return Err(ProviderError::permanent(format!(
                    "DigitalOcean {what} could not be built, so it was not sent (check providers.{}: the token and api_url): {}",
                    self.provider,
                    error_chain(&e)
                )));
            }
            Err(BodyError::Transport(e)) => {
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "failed"
                };
                // reqwest's message names the URL, never the headers.
                return Err(ProviderError::transient(format!(
                    "DigitalOcean {what} {kind}: {}",
                    error_chain(&e)
                )));
            }
        };
        let retry_after = self.absorb_rate_headers(status, &headers);
        tracing::debug!(provider = %self.provider, request = %what, status = status.as_u16(), "DigitalOcean answered");
        Ok(Reply {
            status,
            body,
            what,
            retry_after,
        })
    }

    /// Feed the rate-limit headers to the limiter; for a 429, return how
    /// long the server wants us to wait.
    fn absorb_rate_headers(&self, status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
        let num = |name: &str| -> Option<u64> {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let (Some(remaining), Some(limit)) = (num("ratelimit-remaining"), num("ratelimit-limit"))
        {
            self.limiter.observe_remaining(remaining, limit);
        }
        let reset_in = num("ratelimit-reset").map(|reset| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            Duration::from_secs(reset.saturating_sub(now))
        });
        let wait = if status == StatusCode::TOO_MANY_REQUESTS {
            // A burst 429 says exactly how long; otherwise the hourly budget
            // is spent until the oldest request expires.
            Some(
                num("retry-after")
                    .map(Duration::from_secs)
                    .or(reset_in)
                    .unwrap_or(Duration::from_secs(60))
                    .min(Duration::from_secs(3600)),
            )
        } else if num("ratelimit-remaining") == Some(0) {
            reset_in.map(|d| d.min(Duration::from_secs(3600)))
        } else {
            None
        };
        if let Some(w) = wait {
            self.limiter.pause_for(w);
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            wait
        } else {
            None
        }
    }
}

impl Reply {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ProviderError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            // An HTML error page from a proxy is the usual cause: worth a retry.
            ProviderError::transient(format!(
                "DigitalOcean {} answered {} with a body that is not the expected JSON ({e}); body starts: {:?}",
                self.what,
                self.status.as_u16(),
                snippet(&self.body)
            ))
        })
    }

    fn api_message(&self) -> String {
        match serde_json::from_slice::<ApiError>(&self.body) {
            Ok(e) => {
                let mut m = e.message;
                if let Some(id) = e.id {
                    m = format!("{m} ({id})");
                }
                if let Some(rid) = e.request_id.filter(|r| !r.is_empty()) {
                    m = format!("{m}, request id {rid}");
                }
                m
            }
            Err(_) if self.body.is_empty() => "empty body".to_owned(),
            Err(_) => format!("unexpected body {:?}", snippet(&self.body)),
        }
    }

    /// Classify a non-success answer. `subject` names what the request was
    /// about ("droplet 3164444"): a 404 becomes "droplet 3164444 not found".
    pub fn error(&self, subject: &str) -> ProviderError {
        let msg = self.api_message();
        let code = self.status.as_u16();
        match code {
            401 | 403 => {
                ProviderError::permanent(format!("token rejected by DigitalOcean: {msg} ({code})"))
            }
            404 => ProviderError::permanent(format!("{subject} not found")),
            422 if msg.to_ascii_lowercase().contains("pending event") => {
                ProviderError::transient(format!("{subject} is busy: {msg}"))
            }
            429 => {
                let e = ProviderError::transient(format!(
                    "DigitalOcean rate limit reached on {}: {msg}",
                    self.what
                ));
                match self.retry_after {
                    Some(d) => e.with_retry_after(d),
                    None => e,
                }
            }
            500..=599 => ProviderError::transient(format!(
                "DigitalOcean {} failed with {code}: {msg}",
                self.what
            )),
            _ => ProviderError::permanent(format!(
                "DigitalOcean {} failed with {code}: {msg}",
                self.what
            )),
        }
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.chars().take(120).collect()
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ErrorClass;

    fn reply(status: u16, body: &str, retry_after: Option<u64>) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            body: body.as_bytes().to_vec(),
            what: "POST /v2/droplets/3164444/actions".to_owned(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn statuses_map_to_classes_and_messages() {
        let body = r#"{"id":"x","message":"m","request_id":"r1"}"#;
        let cases: &[(u16, &str, ErrorClass, &str)] = &[
            (
                401,
                body,
                ErrorClass::Permanent,
                "token rejected by DigitalOcean: m",
            ),
            (
                403,
                body,
                ErrorClass::Permanent,
                "token rejected by DigitalOcean: m",
            ),
            (
                404,
                body,
                ErrorClass::Permanent,
                "droplet 3164444 not found",
            ),
            (
                422,
                r#"{"id":"unprocessable_entity","message":"Droplet already has a pending event."}"#,
                ErrorClass::Transient,
                "droplet 3164444 is busy: Droplet already has a pending event.",
            ),
            (422, body, ErrorClass::Permanent, "failed with 422: m"),
            (429, body, ErrorClass::Transient, "rate limit reached"),
            (500, body, ErrorClass::Transient, "failed with 500: m"),
            (
                503,
                "<html>bad gateway</html>",
                ErrorClass::Transient,
                "unexpected body",
            ),
            (400, "", ErrorClass::Permanent, "empty body"),
        ];
        for (status, body, class, needle) in cases {
            let e = reply(*status, body, None).error("droplet 3164444");
            assert_eq!(e.class, *class, "{status}: {}", e.message);
            assert!(e.message.contains(needle), "{status}: {}", e.message);
        }
    }

    #[test]
    fn rate_limit_error_keeps_the_server_hint() {
        let e = reply(
            429,
            r#"{"id":"too_many_requests","message":"API Rate limit exceeded."}"#,
            Some(29),
        )
        .error("droplet 1");
        assert_eq!(e.retry_after, Some(Duration::from_secs(29)));
    }

    #[test]
    fn body_that_is_not_json_is_an_error_with_context() {
        let r = reply(200, "<html>maintenance</html>", None);
        let e = r.json::<super::super::model::ActionEnvelope>().unwrap_err();
        assert!(e.is_transient());
        assert!(
            e.message.contains("POST /v2/droplets/3164444/actions"),
            "{}",
            e.message
        );
        assert!(e.message.contains("maintenance"), "{}", e.message);
        let r = reply(200, r#"{"action":{"status":"completed"}}"#, None);
        assert!(r.json::<super::super::model::ActionEnvelope>().is_err());
    }
}
