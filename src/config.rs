//! Configuration: a TOML file read through the `config` crate.
//!
//! Layers, lowest first: built-in defaults < file < environment
//! (`SNAPSCHED__SECTION__KEY`) < command-line overrides. The raw layers are
//! deserialized into `Raw*` structs, and every value is then parsed into
//! domain types; problems are collected, not returned one at a time, so that
//! `snapsched config check` can report them all with their key paths.
//! Unknown keys are problems too (a typo must not silently fall back to a
//! default).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::domain::definition::{self, DefinitionSpec, FieldError, RawDefinition};
use crate::domain::ProviderKind;
use crate::provider::PollPolicy;
use crate::secret::Secret;

/// Where the configuration lives when neither `--config` nor
/// `$SNAPSCHED_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/snapsched/config.toml";

/// The shipped example configuration; `snapsched config default` prints it.
pub const EXAMPLE: &str = include_str!("../config/snapsched.example.toml");

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
    pub database: Option<PathBuf>,
    pub log_level: Option<String>,
}

/// One problem with the configuration, at a key path such as
/// `definitions[2].schedule` or `providers.do.token_file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Everything wrong with a configuration file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration {}:", self.path.display())?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// Log output format (owned by the logging setup).
pub use crate::telemetry::logging::LogFormat;

/// `[daemon]`, parsed.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonConfig {
    pub database: PathBuf,
    #[serde(serialize_with = "ser_display")]
    pub timezone: Tz,
    pub max_concurrent_runs: usize,
    #[serde(with = "humantime_serde_dur")]
    pub catch_up_deadline: Duration,
    #[serde(with = "humantime_serde_dur")]
    pub shutdown_grace: Duration,
    #[serde(with = "humantime_serde_dur")]
    pub run_timeout: Duration,
    pub history_keep: u32,
    pub log_level: String,
    pub log_format: LogFormat,
}

/// `[metrics]`, parsed.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsConfig {
    /// Address of the `/metrics` and `/healthz` endpoint; off when `None`.
    pub listen: Option<std::net::SocketAddr>,
}

/// Where a provider's secret comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    /// `token_file` / `api_key_file`.
    File(PathBuf),
    /// `token_env` / `api_key_env`.
    Env(String),
    /// `$CREDENTIALS_DIRECTORY/<provider name>` (systemd `LoadCredential=`).
    Systemd(PathBuf),
    /// Inline in the config file (accepted only when the file is private).
    #[serde(serialize_with = "redacted")]
    Inline(Secret),
    /// The fake provider needs none.
    None,
}

fn ser_display<T: fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn ser_opt_display<T: fmt::Display, S: serde::Serializer>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

fn redacted<S: serde::Serializer>(_: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("[redacted]")
}

impl Credential {
    /// Read the secret. The error names where it was looked for and never
    /// contains the secret.
    pub fn load(&self) -> Result<Secret, String> {
        match self {
            Credential::File(p) | Credential::Systemd(p) => {
                check_private(p)?;
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read secret file {}: {e}", p.display()))?;
                let s = Secret::new(text);
                if s.is_empty() {
                    Err(format!("secret file {} is empty", p.display()))
                } else {
                    Ok(s)
                }
            }
            Credential::Env(var) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v)),
                Ok(_) => Err(format!("environment variable {var} is empty")),
                Err(_) => Err(format!("environment variable {var} is not set")),
            },
            Credential::Inline(s) => Ok(s.clone()),
            Credential::None => Err("no credential configured".into()),
        }
    }
}

/// Refuse a file holding a secret that group or others can read.
pub fn check_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is readable by group or others (mode {:o}); run: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        ));
    }
    Ok(())
}

/// In-memory fake provider settings (testing and benchmarks only).
#[derive(Debug, Clone, Default, Serialize)]
pub struct FakeSettings {
    #[serde(with = "humantime_serde_dur")]
    pub latency: Duration,
    #[serde(with = "humantime_serde_dur")]
    pub operation_time: Duration,
}

/// `[providers.NAME]`, parsed.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    #[serde(serialize_with = "ser_opt_display")]
    pub api_url: Option<url::Url>,
    pub credential: Credential,
    #[serde(skip)]
    pub poll: PollPolicy,
    #[serde(with = "humantime_serde_dur")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde_dur")]
    pub request_timeout: Duration,
    pub tags: Vec<String>,
    pub requests_per_minute: u32,
    pub requests_per_hour: u32,
    pub fake: FakeSettings,
}

/// The whole configuration, parsed.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    #[serde(skip)]
    pub path: PathBuf,
    pub daemon: DaemonConfig,
    pub metrics: MetricsConfig,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub definitions: Vec<DefinitionSpec>,
}

impl Config {
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.get(name)
    }
}

#[derive(Debug, Deserialize)]
struct RawConfig {
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    definitions: Vec<RawDefinitionEntry>,
}

#[derive(Debug, Default, Deserialize)]
struct RawDaemon {
    database: Option<PathBuf>,
    timezone: Option<String>,
    max_concurrent_runs: Option<i64>,
    catch_up_deadline: Option<String>,
    shutdown_grace: Option<String>,
    run_timeout: Option<String>,
    history_keep: Option<i64>,
    log_level: Option<String>,
    log_format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawMetrics {
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawProvider {
    kind: Option<String>,
    api_url: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    token_env: Option<String>,
    api_key: Option<String>,
    api_key_file: Option<PathBuf>,
    api_key_env: Option<String>,
    poll_interval: Option<String>,
    poll_max_interval: Option<String>,
    action_timeout: Option<String>,
    connect_timeout: Option<String>,
    request_timeout: Option<String>,
    tags: Option<Vec<String>>,
    requests_per_minute: Option<i64>,
    requests_per_hour: Option<i64>,
    latency: Option<String>,
    operation_time: Option<String>,
}

/// `RawDefinition` with the same field set, deserialized from the file.
#[derive(Debug, Deserialize)]
struct RawDefinitionEntry {
    #[serde(default)]
    name: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    target: String,
    disk_id: Option<i64>,
    schedule: Option<String>,
    timezone: Option<String>,
    retention: Option<i64>,
    active: Option<bool>,
    desc: Option<String>,
    fsfreeze: Option<bool>,
    max_age: Option<String>,
    catch_up_deadline: Option<String>,
    tags: Option<Vec<String>>,
}

impl From<RawDefinitionEntry> for RawDefinition {
    fn from(e: RawDefinitionEntry) -> Self {
        RawDefinition {
            name: e.name,
            provider: e.provider,
            target: e.target,
            disk_id: e.disk_id,
            schedule: e.schedule,
            timezone: e.timezone,
            retention: e.retention,
            active: e.active,
            desc: e.desc,
            fsfreeze: e.fsfreeze,
            max_age: e.max_age,
            catch_up_deadline: e.catch_up_deadline,
            tags: e.tags,
        }
    }
}

/// The database path when the configuration names none:
/// `$STATE_DIRECTORY/snapsched.db` under systemd, else
/// `$XDG_STATE_HOME/snapsched/snapsched.db`, else
/// `~/.local/state/snapsched/snapsched.db`.
pub fn default_database() -> PathBuf {
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
        // systemd may pass several colon-separated directories; the first is ours.
        let first = dir
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or("")
            .to_owned();
        return PathBuf::from(first).join("snapsched.db");
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("snapsched/snapsched.db");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
    PathBuf::from(home).join(".local/state/snapsched/snapsched.db")
}

/// Load and validate the configuration at `path`.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
    // Definitions record the file that manages them: make that path absolute.
    let canonical = std::fs::canonicalize(path).ok();
    let path = canonical.as_deref().unwrap_or(path);
    let fail = |problems: Vec<Problem>| ConfigError {
        path: path.to_owned(),
        problems,
    };
    if !path.exists() {
        return Err(fail(vec![Problem {
            key: String::new(),
            message: format!(
                "config file {} not found: pass --config PATH, set SNAPSCHED_CONFIG, or create it with `snapsched config default > {}`",
                path.display(),
                path.display()
            ),
        }]));
    }
    if path.is_dir() {
        return Err(fail(vec![Problem {
            key: String::new(),
            message: format!(
                "{} is a directory; pass the config file itself, e.g. {}",
                path.display(),
                path.join("config.toml").display()
            ),
        }]));
    }
    // Syntax errors are reported from here, not by the `config` crate: its
    // message quotes the offending line, and that line may be a token
    // (`token = "dop_v1_...` without its closing quote).
    if let Ok(text) = std::fs::read_to_string(path) {
        if let Err(e) = toml::from_str::<toml::Table>(&text) {
            return Err(fail(vec![syntax_problem(&text, &e)]));
        }
    }
    let mut builder = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("SNAPSCHED")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
    let to_problem = |e: config::ConfigError| Problem {
        key: String::new(),
        message: e.to_string(),
    };
    if let Some(db) = &overrides.database {
        builder = builder
            .set_override("daemon.database", db.to_string_lossy().to_string())
            .map_err(|e| fail(vec![to_problem(e)]))?;
    }
    if let Some(level) = &overrides.log_level {
        builder = builder
            .set_override("daemon.log_level", level.clone())
            .map_err(|e| fail(vec![to_problem(e)]))?;
    }
    let layered = builder.build().map_err(|e| fail(vec![to_problem(e)]))?;
    let mut unknown = Vec::new();
    let raw: RawConfig = serde_ignored::deserialize(layered, |p| unknown.push(p.to_string()))
        .map_err(|e| fail(vec![to_problem(e)]))?;
    let file_layer = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| toml::from_str::<toml::Value>(&text).ok());
    let mut problems: Vec<Problem> = unknown
        .into_iter()
        .map(|key| {
            let from_env = file_layer
                .as_ref()
                .is_some_and(|file| !written_in(file, &key))
                .then(|| env_var_for(&key))
                .flatten();
            let message = match from_env {
                Some(var) => format!(
                    "unknown key from the environment variable {var}; see `snapsched config default` for the keys there are"
                ),
                None => format!(
                    "unknown key in {}; see `snapsched config default` for the keys there are",
                    path.display()
                ),
            };
            Problem {
                message,
                key: bracket_indices(&key),
            }
        })
        .collect();
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let cfg = build(raw, path, base_dir, &mut problems);
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(fail(problems))
    }
}

/// A TOML syntax error as "line L, column C: what is wrong", without the
/// text of the line, which may hold a secret.
fn syntax_problem(text: &str, e: &toml::de::Error) -> Problem {
    let what = e.message().trim_end();
    let message = match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("TOML syntax error at line {line}, column {column}: {what}")
        }
        None => format!("TOML syntax error: {what}"),
    };
    Problem {
        key: String::new(),
        message,
    }
}

/// Whether the dotted `key` (numeric parts index arrays) is written in the
/// parsed file. Keys are compared without case, as the loader does.
fn written_in(file: &toml::Value, key: &str) -> bool {
    let mut at = file;
    for part in key.split('.') {
        let next = match at {
            toml::Value::Table(t) => t
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(part))
                .map(|(_, v)| v),
            toml::Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        match next {
            Some(v) => at = v,
            None => return false,
        }
    }
    true
}

/// The set environment variable that produced the dotted `key`
/// (`daemon.bogus` -> `SNAPSCHED__DAEMON__BOGUS`), if there is one.
fn env_var_for(key: &str) -> Option<String> {
    let wanted = format!("SNAPSCHED__{}", key.replace('.', "__")).to_ascii_uppercase();
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .find(|k| k.to_ascii_uppercase() == wanted)
}

/// `definitions.2.schedule` -> `definitions[2].schedule`.
fn bracket_indices(path: &str) -> String {
    let mut out = String::new();
    for (i, part) in path.split('.').enumerate() {
        if part.chars().all(|c| c.is_ascii_digit()) && !part.is_empty() {
            out.push_str(&format!("[{part}]"));
        } else {
            if i > 0 {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

struct Collector<'a>(&'a mut Vec<Problem>);

impl Collector<'_> {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    fn dur(&mut self, key: &str, text: Option<&str>, default: Duration) -> Duration {
        match text {
            None => default,
            Some(t) => humantime::parse_duration(t).unwrap_or_else(|e| {
                self.push(
                    key,
                    format!("'{t}' is not a duration ({e}); write it like \"90s\" or \"1h 30m\""),
                );
                default
            }),
        }
    }
}

fn build(raw: RawConfig, path: &Path, base_dir: &Path, problems: &mut Vec<Problem>) -> Config {
    let mut c = Collector(problems);

    let d = &raw.daemon;
    let timezone = match d.timezone.as_deref() {
        None => Tz::UTC,
        Some(z) => z.parse().unwrap_or_else(|_| {
            c.push(
                "daemon.timezone",
                format!("'{z}' is not a known IANA time zone (such as UTC or Europe/Bratislava)"),
            );
            Tz::UTC
        }),
    };
    let max_concurrent_runs = match d.max_concurrent_runs {
        None => 8,
        Some(n) if (1..=10_000).contains(&n) => n as usize,
        Some(n) => {
            c.push(
                "daemon.max_concurrent_runs",
                format!("{n} is out of range 1-10000"),
            );
            8
        }
    };
    let history_keep = match d.history_keep {
        None => 1000,
        Some(n) if (1..=i64::from(u32::MAX)).contains(&n) => n as u32,
        Some(n) => {
            c.push(
                "daemon.history_keep",
                format!("{n} must be at least 1 (runs kept per definition)"),
            );
            1000
        }
    };
    let log_format = match d.log_format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            c.push(
                "daemon.log_format",
                format!("'{other}' is not a log format: use \"text\" or \"json\""),
            );
            LogFormat::Text
        }
    };
    let log_level = d.log_level.clone().unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
        c.push(
            "daemon.log_level",
            format!(
                "'{log_level}' is not a log level or filter: use error, warn, info, debug or trace"
            ),
        );
    }
    let daemon = DaemonConfig {
        database: d
            .database
            .as_ref()
            .map(|p| base_dir.join(p))
            .unwrap_or_else(default_database),
        timezone,
        max_concurrent_runs,
        catch_up_deadline: c.dur(
            "daemon.catch_up_deadline",
            d.catch_up_deadline.as_deref(),
            Duration::from_secs(3600),
        ),
        shutdown_grace: c.dur(
            "daemon.shutdown_grace",
            d.shutdown_grace.as_deref(),
            Duration::from_secs(30),
        ),
        run_timeout: c.dur(
            "daemon.run_timeout",
            d.run_timeout.as_deref(),
            Duration::from_secs(6 * 3600),
        ),
        history_keep,
        log_level,
        log_format,
    };

    let listen = raw.metrics.listen.as_deref().and_then(|l| {
        l.parse()
            .map_err(|_| {
                c.push(
                    "metrics.listen",
                    format!("'{l}' is not an address: write it like \"127.0.0.1:9464\""),
                )
            })
            .ok()
    });

    let private_file = check_private(path).is_ok();
    let mut providers = BTreeMap::new();
    for (name, p) in raw.providers {
        let key = |k: &str| format!("providers.{name}.{k}");
        let kind = match p.kind.as_deref() {
            Some("digitalocean") => ProviderKind::DigitalOcean,
            Some("erigones") => ProviderKind::Erigones,
            Some("fake") => ProviderKind::Fake,
            Some(other) => {
                c.push(
                    key("kind"),
                    format!(
                        "'{other}' is not a provider kind: use \"digitalocean\" or \"erigones\""
                    ),
                );
                continue;
            }
            None => {
                c.push(key("kind"), "is required: \"digitalocean\" or \"erigones\"");
                continue;
            }
        };
        let (secret_word, inline, file, env) = match kind {
            ProviderKind::DigitalOcean => ("token", &p.token, &p.token_file, &p.token_env),
            _ => ("api_key", &p.api_key, &p.api_key_file, &p.api_key_env),
        };
        let wrong_family = match kind {
            ProviderKind::DigitalOcean => [
                ("api_key", p.api_key.is_some()),
                ("api_key_file", p.api_key_file.is_some()),
                ("api_key_env", p.api_key_env.is_some()),
            ],
            _ => [
                ("token", p.token.is_some()),
                ("token_file", p.token_file.is_some()),
                ("token_env", p.token_env.is_some()),
            ],
        };
        for (k, present) in wrong_family {
            if present && kind != ProviderKind::Fake {
                c.push(
                    key(k),
                    format!("is not a {kind} setting; use {secret_word}, {secret_word}_file or {secret_word}_env"),
                );
            }
        }
        let given = [inline.is_some(), file.is_some(), env.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        if given > 1 {
            c.push(
                key(secret_word),
                format!("give only one of {secret_word}, {secret_word}_file and {secret_word}_env"),
            );
        }
        let credential = if let Some(f) = file {
            Credential::File(base_dir.join(f))
        } else if let Some(var) = env {
            Credential::Env(var.clone())
        } else if let Some(v) = inline {
            if !private_file {
                c.push(
                    key(secret_word),
                    format!(
                        "an inline secret is only accepted in a file that group and others cannot read; run: chmod 600 {} (or use {secret_word}_file)",
                        path.display()
                    ),
                );
            }
            Credential::Inline(Secret::new(v.clone()))
        } else if let Some(dir) =
            std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty())
        {
            Credential::Systemd(PathBuf::from(dir).join(&name))
        } else if kind == ProviderKind::Fake {
            Credential::None
        } else {
            c.push(
                key(secret_word),
                format!("no credential: set {secret_word}_file, {secret_word}_env, or load a systemd credential named '{name}'"),
            );
            Credential::None
        };
        let api_url = match (&p.api_url, kind) {
            (Some(u), _) => match url::Url::parse(u) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
                _ => {
                    c.push(key("api_url"), format!("'{u}' is not an http(s) URL"));
                    None
                }
            },
            (None, ProviderKind::DigitalOcean) => {
                url::Url::parse("https://api.digitalocean.com").ok()
            }
            (None, ProviderKind::Erigones) => {
                c.push(
                    key("api_url"),
                    "is required for Erigones, e.g. \"https://my.erigones.com/api\"",
                );
                None
            }
            (None, ProviderKind::Fake) => None,
        };
        let defaults = PollPolicy::default();
        let poll = PollPolicy {
            initial: c.dur(
                &key("poll_interval"),
                p.poll_interval.as_deref(),
                defaults.initial,
            ),
            max: c.dur(
                &key("poll_max_interval"),
                p.poll_max_interval.as_deref(),
                defaults.max,
            ),
            timeout: c.dur(
                &key("action_timeout"),
                p.action_timeout.as_deref(),
                defaults.timeout,
            ),
        };
        let mut rate = |k: &str, v: Option<i64>, default: u32| match v {
            None => default,
            Some(n) if n >= 1 && n <= i64::from(u32::MAX) => n as u32,
            Some(n) => {
                c.push(key(k), format!("{n} must be a positive number"));
                default
            }
        };
        let requests_per_minute = rate("requests_per_minute", p.requests_per_minute, 250);
        let requests_per_hour = rate("requests_per_hour", p.requests_per_hour, 5000);
        let cfg = ProviderConfig {
            name: name.clone(),
            kind,
            api_url,
            credential,
            poll,
            connect_timeout: c.dur(
                &key("connect_timeout"),
                p.connect_timeout.as_deref(),
                Duration::from_secs(10),
            ),
            request_timeout: c.dur(
                &key("request_timeout"),
                p.request_timeout.as_deref(),
                Duration::from_secs(60),
            ),
            tags: p.tags.unwrap_or_default(),
            requests_per_minute,
            requests_per_hour,
            fake: FakeSettings {
                latency: c.dur(&key("latency"), p.latency.as_deref(), Duration::ZERO),
                operation_time: c.dur(
                    &key("operation_time"),
                    p.operation_time.as_deref(),
                    Duration::ZERO,
                ),
            },
        };
        providers.insert(name, cfg);
    }

    let mut definitions: Vec<DefinitionSpec> = Vec::new();
    for (i, entry) in raw.definitions.into_iter().enumerate() {
        let raw_def: RawDefinition = entry.into();
        let at = |field: &str| format!("definitions[{i}].{field}");
        let Some(provider) = providers.get(&raw_def.provider) else {
            let known: Vec<&str> = providers.keys().map(String::as_str).collect();
            c.push(
                at("provider"),
                if raw_def.provider.is_empty() {
                    "is required: the name of a [providers.NAME] section".into()
                } else {
                    format!(
                        "'{}' is not a configured provider (configured: {})",
                        raw_def.provider,
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    )
                },
            );
            continue;
        };
        match raw_def.validate(provider.kind) {
            Ok(spec) => {
                if let Some(j) = definitions.iter().position(|d| d.identity == spec.identity) {
                    c.push(
                        at("name"),
                        format!(
                            "definition {} is declared twice (also at definitions[{j}])",
                            spec.identity
                        ),
                    );
                } else {
                    definitions.push(spec);
                }
            }
            Err(errors) => {
                for FieldError { field, message } in errors {
                    c.push(at(field), message);
                }
            }
        }
    }

    Config {
        path: path.to_owned(),
        daemon,
        metrics: MetricsConfig { listen },
        providers,
        definitions,
    }
}

/// Check everything `load` checks plus that every credential can be read.
pub fn check(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
    let cfg = load(path, overrides)?;
    let problems: Vec<Problem> = cfg
        .providers
        .values()
        .filter(|p| p.kind != ProviderKind::Fake)
        .filter_map(|p| {
            let word = match p.kind {
                ProviderKind::DigitalOcean => "token",
                _ => "api_key",
            };
            // Name the key that points at the secret, so the fix is obvious.
            let key = match &p.credential {
                Credential::File(_) => format!("providers.{}.{word}_file", p.name),
                Credential::Env(_) => format!("providers.{}.{word}_env", p.name),
                Credential::Inline(_) => format!("providers.{}.{word}", p.name),
                Credential::Systemd(_) | Credential::None => format!("providers.{}", p.name),
            };
            p.credential
                .load()
                .err()
                .map(|message| Problem { key, message })
        })
        .collect();
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError {
            path: path.to_owned(),
            problems,
        })
    }
}

/// Serialize a `Duration` as a humantime string.
mod humantime_serde_dur {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

/// Parse an optional humantime string used by callers outside this module.
pub fn parse_duration(field: &'static str, text: &str) -> Result<Duration, FieldError> {
    definition::parse_duration(field, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_ignored_paths_become_bracketed_keys() {
        assert_eq!(
            bracket_indices("definitions.2.schedule"),
            "definitions[2].schedule"
        );
        assert_eq!(bracket_indices("daemon.bogus"), "daemon.bogus");
        assert_eq!(bracket_indices("providers.do.x"), "providers.do.x");
    }

    #[test]
    fn written_in_finds_keys_of_the_file_only() {
        let file: toml::Value = toml::from_str(
            "[daemon]\nTimeZone = \"UTC\"\n[[definitions]]\nname = \"a\"\n[[definitions]]\ncolour = 1\n",
        )
        .unwrap();
        assert!(written_in(&file, "daemon.timezone"));
        assert!(written_in(&file, "definitions.1.colour"));
        assert!(!written_in(&file, "definitions.0.colour"));
        assert!(!written_in(&file, "definitions.2"));
        assert!(!written_in(&file, "daemon.bogus"));
        assert!(!written_in(&file, "metrics"));
    }

    #[test]
    fn unknown_key_in_the_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[daemon]\nbogus_key_in_file = 1\n").unwrap();
        let err = load(&path, &Overrides::default()).unwrap_err();
        let p = err
            .problems
            .iter()
            .find(|p| p.key == "daemon.bogus_key_in_file")
            .unwrap_or_else(|| panic!("{err}"));
        assert!(p.message.contains("unknown key in"), "{p}");
        assert!(p.message.contains("c.toml"), "{p}");
    }
}
