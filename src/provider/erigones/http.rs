//! HTTP plumbing of the Erigones provider: one request at a time, counted,
//! authenticated with `ES-API-KEY`, and turned into a status code plus the
//! JSON envelope or a classified [`ProviderError`].
//!
//! Invariant: every error message built here passes through [`Http::scrub`],
//! so the API key cannot reach a caller even if a server echoes it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use url::Url;

use crate::provider::body::{read_capped, BodyError};
use crate::provider::{ProviderError, ProviderResult};
use crate::secret::Secret;
use crate::telemetry::metrics::{self, RequestOutcome};

pub(super) struct Http {
    pub name: String,
    base: Url,
    client: reqwest::Client,
    key: Secret,
    request_timeout: Duration,
    sent: AtomicU64,
    /// The largest response body read; a larger one fails the request.
    max_body: usize,
}

/// A response whose status and body were read in full.
pub(super) struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub retry_after: Option<Duration>,
}

impl Http {
    pub fn new(
        name: String,
        base: Url,
        key: Secret,
        connect_timeout: Duration,
        request_timeout: Duration,
        max_body: usize,
    ) -> ProviderResult<Self> {
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(ProviderError::permanent(format!(
                "provider {name}: api_url {base} is not an http(s) base URL"
            )));
        }
        if key.is_empty() {
            return Err(ProviderError::permanent(format!(
                "provider {name}: the Erigones API key is empty"
            )));
        }
        let mut key_header = HeaderValue::from_str(key.expose()).map_err(|_| {
            ProviderError::permanent(format!(
                "provider {name}: the Erigones API key contains characters not allowed in an HTTP header"
            ))
        })?;
        key_header.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert("es-api-key", key_header);
        let client = reqwest::Client::builder()
            .user_agent(concat!("snapsched/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            // A redirect could carry the ES-API-KEY header to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                ProviderError::permanent(format!("provider {name}: building HTTP client: {e}"))
            })?;
        Ok(Http {
            name,
            base,
            client,
            key,
            request_timeout,
            sent: AtomicU64::new(0),
            max_body,
        })
    }

    pub fn requests_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `base` + path segments + trailing slash, each segment percent-encoded
    /// (a hostname or snapshot name can never escape its segment).
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments).push("");
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// Remove the API key from any text bound for an error or a log.
    pub fn scrub(&self, text: String) -> String {
        let key = self.key.expose();
        if !key.is_empty() && text.contains(key) {
            text.replace(key, "[redacted]")
        } else {
            text
        }
    }

    /// Send one request. Transport failures come back as transient errors
    /// naming `what`; any HTTP status comes back as a [`Reply`].
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        what: &str,
    ) -> ProviderResult<Reply> {
        if method != Method::GET && !super::super::gate::open() {
            return Err(super::super::gate::closed());
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let mut req = self.client.request(method, url);
        if let Some(body) = body {
            req = req.json(body);
        }
        let result = async {
            let resp = req.send().await.map_err(BodyError::Transport)?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let bytes = read_capped(resp, self.max_body).await?;
            Ok::<_, BodyError>((status, retry_after, bytes))
        }
        .await;
        let outcome = match &result {
            Ok((status, ..)) => RequestOutcome::Status(status.as_u16()),
            Err(BodyError::Transport(e)) if e.is_timeout() => RequestOutcome::Timeout,
            Err(BodyError::Transport(e)) if e.is_connect() => RequestOutcome::Connect,
            Err(_) => RequestOutcome::Error,
        };
        metrics::provider_request(&self.name, outcome, started.elapsed());
        match result {
            Ok((status, retry_after, bytes)) => {
                let body = if bytes.is_empty() {
                    Value::Null
                } else {
                    match serde_json::from_slice(&bytes) {
                        Ok(v) => v,
                        // Error pages from proxies are not JSON; keep a
                        // snippet so the message still says something.
                        Err(_) if !status.is_success() => Value::String(
                            String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                        ),
                        Err(e) => {
                            return Err(ProviderError::permanent(self.scrub(format!(
                                "Erigones sent a malformed response for {what} ({status}): {e}"
                            ))))
                        }
                    }
                };
                Ok(Reply {
                    status,
                    body,
                    retry_after,
                })
            }
            Err(e @ BodyError::TooLarge { .. }) => Err(ProviderError::transient(
                self.scrub(format!("Erigones request for {what} failed: {e}")),
            )),
            // A request that cannot even be built fails the same way every
            // time: retrying it would only wait for run_timeout.
            Err(BodyError::Transport(e)) if e.is_builder() => {
                let detail = std::error::Error::source(&e)
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default();
                Err(ProviderError::permanent(self.scrub(format!(
                    "Erigones request for {what} could not be built, so it was not sent (check providers.{}: the api_url){detail}",
                    self.name
                ))))
            }
            Err(BodyError::Transport(e)) => {
                let why = if e.is_timeout() {
                    format!(
                        "timed out after {}",
                        humantime::format_duration(self.request_timeout)
                    )
                } else if e.is_connect() {
                    "could not connect".to_owned()
                } else {
                    "connection failed".to_owned()
                };
                let detail = std::error::Error::source(&e)
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default();
                Err(ProviderError::transient(self.scrub(format!(
                    "Erigones request for {what} {why}{detail}"
                ))))
            }
        }
    }

    /// The classified error for a reply that is not what the call wanted.
    pub fn refusal(&self, reply: &Reply, what: &str) -> ProviderError {
        let code = reply.status.as_u16();
        let message = render_message(&reply.body);
        let text = self.scrub(format!("Erigones refused {what} ({code}): {message}"));
        let err = match code {
            400 if message
                .to_ascii_lowercase()
                .contains("did not acquire lock") =>
            {
                ProviderError::transient(text)
            }
            408 | 423 | 425 | 429 => ProviderError::transient(text),
            500..=599 => ProviderError::transient(text),
            _ => ProviderError::permanent(text),
        };
        match reply.retry_after {
            Some(after) if err.is_transient() => err.with_retry_after(after),
            _ => err,
        }
    }
}

/// Erigones' error text from either envelope shape:
/// `{"detail": "..."}` or `{"status": "FAILURE", "result": {field: [messages]}}`
/// (or a result carrying `message`/`detail`, as failed tasks do).
pub(super) fn render_message(body: &Value) -> String {
    fn text(v: &Value) -> Option<String> {
        match v {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Value::Array(items) => {
                let parts: Vec<String> = items.iter().filter_map(text).collect();
                (!parts.is_empty()).then(|| parts.join("; "))
            }
            Value::Object(map) => {
                for key in ["message", "detail", "error"] {
                    if let Some(t) = map.get(key).and_then(text) {
                        return Some(t);
                    }
                }
                let parts: Vec<String> = map
                    .iter()
                    .filter_map(|(field, v)| text(v).map(|t| format!("{field}: {t}")))
                    .collect();
                (!parts.is_empty()).then(|| parts.join(", "))
            }
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
    body.get("detail")
        .and_then(text)
        .or_else(|| body.get("result").and_then(text))
        .or_else(|| body.get("message").and_then(text))
        .or_else(|| {
            body.as_str()
                .and_then(|s| text(&Value::String(s.to_owned())))
        })
        .unwrap_or_else(|| "no error message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::render_message;
    use serde_json::json;

    #[test]
    fn both_envelope_error_shapes_render_readably() {
        let cases = [
            (
                json!({"detail": "Snapshot count limit reached"}),
                "Snapshot count limit reached",
            ),
            (
                json!({"status": "FAILURE", "result": {"disk_id": ["Invalid disk_id"]}}),
                "disk_id: Invalid disk_id",
            ),
            (
                json!({"status": "FAILURE", "result": {"name": ["Too long.", "Bad chars."], "note": ["Too long."]}}),
                "name: Too long.; Bad chars., note: Too long.",
            ),
            (
                json!({"status": "FAILURE", "result": {"detail": "Task did not acquire lock"}}),
                "Task did not acquire lock",
            ),
            (
                json!({"status": "FAILURE", "result": {"message": "zfs: out of space", "returncode": 1, "detail": ""}}),
                "zfs: out of space",
            ),
            (
                json!({"status": "FAILURE", "result": "plain words"}),
                "plain words",
            ),
            (
                json!("<html>Bad gateway</html>"),
                "<html>Bad gateway</html>",
            ),
            (json!(null), "no error message"),
        ];
        for (body, want) in cases {
            assert_eq!(render_message(&body), want, "body {body}");
        }
    }
}
