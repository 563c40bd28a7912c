//! What a definition points at: the provider kind and the parsed target.

use std::fmt;

use serde::Serialize;

/// The kind of a provider, as written in `[providers.NAME] kind = "..."`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// DigitalOcean API v2: `droplet:<id>` and `volume:<uuid>` targets.
    DigitalOcean,
    /// Erigones / Danube Cloud API: the target is a VM hostname.
    Erigones,
    /// In-memory fake, for tests and benchmarks only.
    Fake,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::DigitalOcean => "digitalocean",
            ProviderKind::Erigones => "erigones",
            ProviderKind::Fake => "fake",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a snapshot is taken of, parsed per provider kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// `droplet:<id>` (DigitalOcean).
    Droplet(u64),
    /// `volume:<uuid>` (DigitalOcean block storage).
    Volume(uuid::Uuid),
    /// A VM hostname (Erigones, and the fake provider).
    Vm(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Droplet(id) => write!(f, "droplet:{id}"),
            Target::Volume(id) => write!(f, "volume:{id}"),
            Target::Vm(host) => f.write_str(host),
        }
    }
}
