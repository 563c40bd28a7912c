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
    /// `tag:<name>` (DigitalOcean): every droplet carrying the tag when a
    /// slot fires; each is a [`Target::Member`] of the definition.
    Tag(String),
    /// One droplet of a tag target, its own unit of ownership, retention
    /// and history; canonical text `tag:<name>/droplet:<id>` (a tag name
    /// cannot hold `/`).
    Member { tag: String, droplet: u64 },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Droplet(id) => write!(f, "droplet:{id}"),
            Target::Volume(id) => write!(f, "volume:{id}"),
            Target::Vm(host) => f.write_str(host),
            Target::Tag(tag) => write!(f, "tag:{tag}"),
            Target::Member { tag, droplet } => write!(f, "tag:{tag}/droplet:{droplet}"),
        }
    }
}

impl Target {
    /// Read back a target from its canonical text (its `Display`), as stored.
    /// The text was validated for its provider kind when the definition was
    /// made; the prefixes are unambiguous, so no kind is needed here.
    pub fn from_canonical(text: &str) -> Option<Target> {
        if let Some(tag) = text.strip_prefix("tag:") {
            return match tag.split_once("/droplet:") {
                Some((tag, id)) => id.parse().ok().map(|droplet| Target::Member {
                    tag: tag.to_owned(),
                    droplet,
                }),
                None => Some(Target::Tag(tag.to_owned())),
            };
        }
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

    /// What provider calls act on: a tag member's droplet, else the target
    /// itself.
    pub fn resource(&self) -> Target {
        match self {
            Target::Member { droplet, .. } => Target::Droplet(*droplet),
            other => other.clone(),
        }
    }

    /// The tag of a tag target.
    pub fn tag(&self) -> Option<&str> {
        match self {
            Target::Tag(tag) => Some(tag),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_and_member_targets_read_back_from_their_text() {
        for t in [
            Target::Tag("env:prod".into()),
            Target::Member {
                tag: "env:prod".into(),
                droplet: 42,
            },
            Target::Droplet(7),
            Target::Vm("web01".into()),
        ] {
            assert_eq!(Target::from_canonical(&t.to_string()), Some(t.clone()));
        }
        let m = Target::from_canonical("tag:web/droplet:9").unwrap();
        assert_eq!(m.resource(), Target::Droplet(9));
        assert_eq!(Target::from_canonical("tag:web/droplet:x"), None);
    }
}
