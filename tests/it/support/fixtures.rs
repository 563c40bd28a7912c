//! Fixtures: definitions and configuration files.
//!
//! Every `DefinitionSpec` the tests use is made by [`spec`]: one builder
//! over the validation the CLI and the config file use, so a change to the
//! spec's fields is made here once.

use std::path::{Path, PathBuf};

use snapsched::domain::definition::{DefinitionSpec, RawDefinition};
use snapsched::domain::ProviderKind;

use super::BASE_CONFIG;

/// The kind of a provider as the tests' configurations name them:
/// `do` (DigitalOcean), `dc1` (Erigones), `fake` and `lab` (the in-memory
/// fake provider).
pub fn provider_kind(provider: &str) -> ProviderKind {
    match provider {
        "do" => ProviderKind::DigitalOcean,
        "dc1" => ProviderKind::Erigones,
        "fake" | "lab" => ProviderKind::Fake,
        other => panic!("no provider kind known for test provider '{other}'"),
    }
}

/// A definition being built: see [`spec`].
#[derive(Debug, Clone)]
pub struct SpecBuilder {
    raw: RawDefinition,
    retention: u32,
}

/// A definition `name` of `target` (disk 1) on `provider` (named as in
/// [`provider_kind`]): schedule `0 0 * * *` in the daemon's zone, retention
/// 7, active, no max_age, no catch-up deadline of its own.
pub fn spec(provider: &str, target: &str, name: &str) -> SpecBuilder {
    SpecBuilder {
        raw: RawDefinition {
            name: name.to_owned(),
            provider: provider.to_owned(),
            target: target.to_owned(),
            disk_id: Some(1),
            schedule: Some("0 0 * * *".to_owned()),
            active: Some(true),
            ..RawDefinition::default()
        },
        retention: 7,
    }
}

impl SpecBuilder {
    pub fn schedule(mut self, expr: &str) -> Self {
        self.raw.schedule = Some(expr.to_owned());
        self
    }

    /// An IANA zone of its own instead of the daemon's.
    pub fn timezone(mut self, zone: &str) -> Self {
        self.raw.timezone = Some(zone.to_owned());
        self
    }

    /// Snapshots to keep. Set after validation, so a test can also build a
    /// row beyond the CLI's range (to test the store's own checks).
    pub fn retention(mut self, n: u32) -> Self {
        self.retention = n;
        self
    }

    pub fn active(mut self, active: bool) -> Self {
        self.raw.active = Some(active);
        self
    }

    /// A catch-up deadline of its own, e.g. `10m`.
    pub fn catch_up_deadline(mut self, deadline: &str) -> Self {
        self.raw.catch_up_deadline = Some(deadline.to_owned());
        self
    }

    /// The validated definition; panics with the field errors if invalid.
    pub fn build(self) -> DefinitionSpec {
        let kind = provider_kind(&self.raw.provider);
        let raw = RawDefinition {
            retention: Some(0),
            ..self.raw
        };
        let mut spec = raw.validate(kind).unwrap_or_else(|errors| {
            panic!(
                "test definition {} is invalid: {}",
                raw.name,
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        });
        spec.retention = self.retention;
        spec
    }
}

/// [`BASE_CONFIG`] with the DigitalOcean provider (`do`) pointed at `url`.
pub fn config_with_do_api(url: &str) -> String {
    let config = BASE_CONFIG.replace(
        "api_url = \"http://127.0.0.1:9\"\n",
        &format!("api_url = \"{url}\"\n"),
    );
    assert!(config.contains(url), "api_url not replaced");
    config
}

/// Write `dir/config.toml` for a daemon: `extra` first (e.g. a `[metrics]`
/// table), a fake provider `lab` and one definition `web` on it, the
/// database in `dir`. Returns the file's path.
pub fn write_daemon_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        r#"{extra}
[daemon]
database = "{db}"
log_level = "info"
shutdown_grace = "2s"

[providers.lab]
kind = "fake"

[[definitions]]
name = "web"
provider = "lab"
target = "web01"
schedule = "0 3 * * *"
retention = 3
"#,
        db = dir.join("snapsched.db").display()
    );
    std::fs::write(&path, text).expect("config written");
    path
}
