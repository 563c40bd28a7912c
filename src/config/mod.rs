//! Configuration: a TOML file read through the `config` crate.
//!
//! Layers, lowest first: built-in defaults < file < environment
//! (`SNAPSCHED__SECTION__KEY`) < command-line overrides ([`layers`]). Each
//! section then has its own parse and validate step — [`daemon`] (with the
//! store's [`database`] location), [`metrics`], [`notify`], [`providers`] and
//! [`definitions`] — turning raw values into domain types. Problems are
//! collected, not returned one at a time, so that `snapsched config check`
//! can report them all with their key paths. Unknown keys are problems too
//! (a typo must not silently fall back to a default).
//!
//! Secrets are not read here, only where they come from
//! ([`crate::secret::Credential`]); [`check`] also reads them. Building
//! providers, the daemon's settings and the store from a [`Config`] is
//! [`crate::wiring`]'s job.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod daemon;
mod database;
mod definitions;
mod layers;
mod locate;
mod metrics;
mod notify;
mod problems;
mod providers;
mod ser;
pub use ser::shown;

pub use daemon::{DaemonConfig, LogFormat};
pub use database::{default_database, redact as redact_url};
pub use metrics::MetricsConfig;
pub use notify::NotifyConfig;
pub use problems::{ConfigError, Problem};
pub use providers::{KindSettings, ProviderConfig};

use crate::domain::definition::DefinitionSpec;
use crate::secret::Credential;
use problems::Collector;

/// Where the configuration lives when neither `--config` nor
/// `$SNAPSCHED_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/snapsched/config.toml";

/// The shipped example configuration; `snapsched config default` prints it.
pub const EXAMPLE: &str = include_str!("../../config/snapsched.example.toml");

/// The configuration path: the flag, else `$SNAPSCHED_CONFIG`, else
/// [`DEFAULT_PATH`].
pub fn resolve_path(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_owned();
    }
    match std::env::var_os("SNAPSCHED_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_PATH),
    }
}

/// Values given on the command line, the highest layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--database`: a SQLite path or a `postgres://` URL.
    pub database: Option<String>,
    pub log_level: Option<String>,
}

/// The whole configuration, parsed.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    #[serde(skip)]
    pub path: PathBuf,
    pub daemon: DaemonConfig,
    pub metrics: MetricsConfig,
    pub notify: NotifyConfig,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub definitions: Vec<DefinitionSpec>,
}

impl Config {
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.get(name)
    }
}

/// The sections, each still a layered value for its own parser.
#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    daemon: Option<config::Value>,
    metrics: Option<config::Value>,
    notify: Option<config::Value>,
    #[serde(default)]
    providers: BTreeMap<String, config::Value>,
    #[serde(default)]
    definitions: Vec<config::Value>,
}

/// Load and validate the configuration at `path`.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
    // Definitions record the file that manages them: make that path absolute.
    let canonical = std::fs::canonicalize(path).ok();
    let path = canonical.as_deref().unwrap_or(path);
    let fail = |problems: Vec<Problem>| ConfigError::new(path, problems);
    let layered = layers::read(path, overrides).map_err(|p| fail(vec![p]))?;
    let mut c = Collector::default();
    let raw: Option<RawConfig> = c.section(Some(layered), "");
    let cfg = raw.map(|raw| parse(raw, path, &mut c));
    let mut problems = layers::unknown_problems(&c.unknown, path);
    problems.append(&mut c.problems);
    match cfg {
        Some(cfg) if problems.is_empty() => Ok(cfg),
        _ => Err(fail(problems)),
    }
}

/// Every section, in order: definitions need the providers.
fn parse(raw: RawConfig, path: &Path, c: &mut Collector) -> Config {
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let daemon = daemon::parse(raw.daemon, base_dir, c);
    let metrics = metrics::parse(raw.metrics, c);
    let notify = notify::parse(raw.notify, base_dir, c);
    let providers = providers::parse(raw.providers, path, base_dir, c);
    let definitions = definitions::parse(raw.definitions, &providers, c);
    Config {
        path: path.to_owned(),
        daemon,
        metrics,
        notify,
        providers,
        definitions,
    }
}

/// Check everything `load` checks plus that every secret can be read.
pub fn check(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
    let cfg = load(path, overrides)?;
    let mut problems: Vec<Problem> = cfg
        .providers
        .values()
        .filter_map(|p| {
            let credential = p.credential.as_ref()?;
            let word = crate::secret::credentials::secret_name(p.kind)?;
            // Name the key that points at the secret, so the fix is obvious.
            let key = match credential {
                Credential::File(_) => format!("providers.{}.{word}_file", p.name),
                Credential::Env(_) => format!("providers.{}.{word}_env", p.name),
                Credential::Inline(_) => format!("providers.{}.{word}", p.name),
                Credential::Systemd(_) => format!("providers.{}", p.name),
            };
            let message = credential.load().err()?;
            Some(Problem { key, message })
        })
        .collect();
    if let Some(credential) = &cfg.daemon.database_password {
        if let Err(message) = credential.load() {
            let key = match credential {
                Credential::File(_) => "daemon.database_password_file",
                _ => "daemon.database",
            };
            problems.push(Problem {
                key: key.to_owned(),
                message,
            });
        }
    }
    if let Some(source) = &cfg.notify.webhook_headers {
        if let Err(message) = crate::secret::webhook::load_headers(source) {
            problems.push(Problem {
                key: "notify.webhook_headers_file".to_owned(),
                message,
            });
        }
    }
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError::new(path, problems))
    }
}

#[cfg(test)]
mod tests;
