//! `[metrics]`: the address of `/metrics` and `/healthz`.

use serde::{Deserialize, Serialize};

use super::problems::Collector;

/// `[metrics]`, parsed.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsConfig {
    /// Address of the `/metrics` and `/healthz` endpoint; off when `None`.
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawMetrics {
    listen: Option<String>,
}

/// Parse `[metrics]`; problems go to `c`.
pub(super) fn parse(value: Option<config::Value>, c: &mut Collector) -> MetricsConfig {
    let raw: RawMetrics = c.section(value, "metrics").unwrap_or_default();
    let listen = raw.listen.as_deref().and_then(|l| {
        l.parse()
            .map_err(|_| {
                c.push(
                    "metrics.listen",
                    format!("'{l}' is not an address: write it like \"127.0.0.1:9464\""),
                )
            })
            .ok()
    });
    MetricsConfig { listen }
}
