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

impl Target {
    /// Read back a target from its canonical text (its `Display`), as stored.
    /// The text was validated for its provider kind when the definition was
    /// made; the prefixes are unambiguous, so no kind is needed here.
    pub fn from_canonical(text: &str) -> Option<Target> {
        if let Some(id) = text.strip_prefix("droplet:") {
            id.parse().ok().map(Target::Droplet)
        } else if let Some(id) = text.strip_prefix("volume:") {
            uuid::Uuid::parse_str(id).ok().map(Target::Volume)
        } else if text.is_empty() {
            None
        } else {
            Some(Target::Vm(text.to_owned()))
        }
    }
}
