//! `[notify]`: the built-in webhook (where events are POSTed, the credential
//! file with its headers, request timeout, retry backoff, queue bound).
//!
//! The headers file is only located here; [`super::check`] and the wiring
//! read it. The URL is kept as a [`WebhookUrl`], which prints as its origin
//! only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::problems::Collector;
use super::ser;
use crate::domain::definition::DurationRange;
use crate::secret::webhook::{webhook_headers_source, WebhookUrl};
use crate::secret::Credential;

/// Default request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default first wait after a failed delivery.
pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_secs(1);
/// Default longest wait between delivery attempts.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(300);
/// Default bound of the persisted queue.
pub const DEFAULT_QUEUE_LIMIT: u32 = 10_000;
const QUEUE_LIMIT_MAX: u32 = 1_000_000;

/// `[notify]`, parsed.
#[derive(Debug, Clone, Serialize)]
pub struct NotifyConfig {
    /// Where events are POSTed; no webhook (and no events queued) when
    /// `None`. Shown as its origin only.
    #[serde(serialize_with = "ser::opt_display")]
    pub webhook_url: Option<WebhookUrl>,
    /// Where the headers (e.g. `Authorization`) come from:
    /// `webhook_headers_file`, else the systemd credential
    /// `webhook_headers`. Shown as the path, never the contents.
    #[serde(
        rename = "webhook_headers_file",
        serialize_with = "ser_source",
        skip_serializing_if = "Option::is_none"
    )]
    pub webhook_headers: Option<Credential>,
    #[serde(serialize_with = "ser::duration")]
    pub timeout: Duration,
    #[serde(serialize_with = "ser::duration")]
    pub retry_initial: Duration,
    #[serde(serialize_with = "ser::duration")]
    pub retry_max: Duration,
    pub queue_limit: u32,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            webhook_url: None,
            webhook_headers: None,
            timeout: DEFAULT_TIMEOUT,
            retry_initial: DEFAULT_RETRY_INITIAL,
            retry_max: DEFAULT_RETRY_MAX,
            queue_limit: DEFAULT_QUEUE_LIMIT,
        }
    }
}

fn ser_source<S: serde::Serializer>(c: &Option<Credential>, s: S) -> Result<S::Ok, S::Error> {
    match c {
        Some(Credential::File(p) | Credential::Systemd(p)) => s.collect_str(&p.display()),
        _ => s.serialize_none(),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawNotify {
    webhook_url: Option<String>,
    webhook_headers_file: Option<PathBuf>,
    timeout: Option<String>,
    retry_initial: Option<String>,
    retry_max: Option<String>,
    queue_limit: Option<i64>,
}

/// Parse `[notify]`; problems go to `c`, a bad value stands in as its
/// default so the other keys are still checked.
pub(super) fn parse(
    value: Option<config::Value>,
    base_dir: &Path,
    c: &mut Collector,
) -> NotifyConfig {
    let raw: RawNotify = c.section(value, "notify").unwrap_or_default();
    let webhook_url = raw.webhook_url.as_deref().and_then(|u| {
        WebhookUrl::parse(u)
            .map_err(|e| c.push("notify.webhook_url", e))
            .ok()
    });
    let file = raw.webhook_headers_file.map(|p| base_dir.join(p));
    if file.is_some() && raw.webhook_url.is_none() {
        c.push(
            "notify.webhook_headers_file",
            "is set but notify.webhook_url is not: set the URL the headers are for, or remove the key",
        );
    }
    let webhook_headers = if webhook_url.is_some() {
        webhook_headers_source(file)
    } else {
        None
    };
    let timeout = bounded(
        c,
        "notify.timeout",
        raw.timeout.as_deref(),
        DEFAULT_TIMEOUT,
        (Duration::from_secs(1), Duration::from_secs(300)),
    );
    let retry_initial = bounded(
        c,
        "notify.retry_initial",
        raw.retry_initial.as_deref(),
        DEFAULT_RETRY_INITIAL,
        (Duration::from_millis(10), Duration::from_secs(3600)),
    );
    let mut retry_max = bounded(
        c,
        "notify.retry_max",
        raw.retry_max.as_deref(),
        DEFAULT_RETRY_MAX,
        (Duration::from_millis(10), Duration::from_secs(24 * 3600)),
    );
    if retry_max < retry_initial {
        c.push(
            "notify.retry_max",
            format!(
                "'{}' is shorter than notify.retry_initial '{}': the wait doubles from retry_initial up to retry_max; raise retry_max",
                humantime::format_duration(retry_max),
                humantime::format_duration(retry_initial)
            ),
        );
        retry_max = retry_initial;
    }
    let queue_limit = match raw.queue_limit {
        None => DEFAULT_QUEUE_LIMIT,
        Some(n) if (1..=i64::from(QUEUE_LIMIT_MAX)).contains(&n) => n as u32,
        Some(n) => {
            c.push(
                "notify.queue_limit",
                format!("{n} is out of range 1-{QUEUE_LIMIT_MAX} (events kept while the receiver is down; default {DEFAULT_QUEUE_LIMIT})"),
            );
            DEFAULT_QUEUE_LIMIT
        }
    };
    NotifyConfig {
        webhook_url,
        webhook_headers,
        timeout,
        retry_initial,
        retry_max,
        queue_limit,
    }
}

/// A duration at `key` within `[lo, hi]`.
fn bounded(
    c: &mut Collector,
    key: &str,
    text: Option<&str>,
    default: Duration,
    (lo, hi): (Duration, Duration),
) -> Duration {
    c.dur(key, text, default, DurationRange::new(lo, hi))
}
