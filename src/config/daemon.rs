//! `[daemon]`: the store, the default zone, concurrency, timeouts, history
//! and logging.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::problems::Collector;
use super::{database, ser};
use crate::domain::definition::{self, DurationRange};
use crate::domain::hooks::{HookSpec, RawHooks};
use crate::secret::Credential;
use crate::store::Location;

pub use crate::telemetry::logging::LogFormat;

/// `[daemon]`, parsed.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonConfig {
    /// A SQLite file or a PostgreSQL server; shown without its password.
    #[serde(serialize_with = "ser::display")]
    pub database: Location,
    /// Where the PostgreSQL password comes from when neither `$PGPASSWORD`
    /// nor `~/.pgpass` should: `database_password_file` or the systemd
    /// credential `database`. Shown as `database_password_file` when it is
    /// that file.
    #[serde(
        rename = "database_password_file",
        serialize_with = "ser_password_file",
        skip_serializing_if = "no_password_file"
    )]
    pub database_password: Option<Credential>,
    #[serde(serialize_with = "ser::display")]
    pub timezone: Tz,
    pub max_concurrent_runs: usize,
    #[serde(serialize_with = "ser::duration")]
    pub catch_up_deadline: Duration,
    #[serde(serialize_with = "ser::duration")]
    pub shutdown_grace: Duration,
    #[serde(serialize_with = "ser::duration")]
    pub run_timeout: Duration,
    pub history_keep: u32,
    /// The most snapshots one post-run prune may delete before it is
    /// blocked for `snapsched prune` to apply (0 = no limit); a
    /// definition's own `max_deletes_per_run` overrides it.
    pub max_deletes_per_run: u32,
    /// How long a node's heartbeat may be silent before other nodes take
    /// its runs over.
    #[serde(serialize_with = "ser::duration")]
    pub lease_ttl: Duration,
    pub log_level: String,
    pub log_format: LogFormat,
    /// Hook settings for every definition that sets none of its own (nor
    /// its provider).
    #[serde(flatten)]
    pub hooks: HookSpec,
}

fn password_file(c: &Option<Credential>) -> Option<&PathBuf> {
    match c {
        Some(Credential::File(p)) => Some(p),
        _ => None,
    }
}

fn no_password_file(c: &Option<Credential>) -> bool {
    password_file(c).is_none()
}

fn ser_password_file<S: serde::Serializer>(
    c: &Option<Credential>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match password_file(c) {
        Some(p) => s.collect_str(&p.display()),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawDaemon {
    /// Kept as a value to refuse a wrong type: the loader would otherwise
    /// turn `database = 42` into the path `42`.
    database: Option<config::Value>,
    database_password_file: Option<PathBuf>,
    timezone: Option<String>,
    max_concurrent_runs: Option<i64>,
    catch_up_deadline: Option<String>,
    shutdown_grace: Option<String>,
    run_timeout: Option<String>,
    history_keep: Option<i64>,
    max_deletes_per_run: Option<i64>,
    lease_ttl: Option<String>,
    log_level: Option<String>,
    log_format: Option<String>,
    pre_hook: Option<Vec<String>>,
    post_hook: Option<Vec<String>>,
    hook_timeout: Option<String>,
    on_pre_hook_failure: Option<String>,
    on_failure: Option<Vec<String>>,
    on_success: Option<Vec<String>>,
}

/// Parse `[daemon]`; problems go to `c`, and a bad value stands in as its
/// default so the other keys are still checked.
pub(super) fn parse(
    value: Option<config::Value>,
    base_dir: &Path,
    c: &mut Collector,
) -> DaemonConfig {
    let d: RawDaemon = c.section(value, "daemon").unwrap_or_default();
    let database_text = d.database.and_then(|v| match v.kind {
        config::ValueKind::String(s) => Some(s),
        other => {
            c.push(
                "daemon.database",
                format!(
                    "{other} is not text: give a SQLite file path or a PostgreSQL URL in quotes, e.g. database = \"/var/lib/snapsched/snapsched.db\""
                ),
            );
            None
        }
    });
    let (database, database_password) = database::parse(
        database_text.as_deref(),
        d.database_password_file,
        base_dir,
        c,
    );
    DaemonConfig {
        database,
        database_password,
        timezone: timezone(d.timezone.as_deref(), c),
        max_concurrent_runs: max_concurrent_runs(d.max_concurrent_runs, c),
        catch_up_deadline: c.dur(
            "daemon.catch_up_deadline",
            d.catch_up_deadline.as_deref(),
            Duration::from_secs(3600),
            DurationRange::CATCH_UP_DEADLINE,
        ),
        shutdown_grace: c.dur(
            "daemon.shutdown_grace",
            d.shutdown_grace.as_deref(),
            Duration::from_secs(30),
            DurationRange::SHUTDOWN_GRACE,
        ),
        run_timeout: c.dur(
            "daemon.run_timeout",
            d.run_timeout.as_deref(),
            Duration::from_secs(6 * 3600),
            DurationRange::RUN_TIMEOUT,
        ),
        history_keep: history_keep(d.history_keep, c),
        max_deletes_per_run: max_deletes_per_run(d.max_deletes_per_run, c),
        lease_ttl: lease_ttl(d.lease_ttl.as_deref(), c),
        log_level: log_level(d.log_level, c),
        log_format: log_format(d.log_format.as_deref(), c),
        hooks: c.hooks(
            "daemon",
            RawHooks {
                pre_hook: d.pre_hook,
                post_hook: d.post_hook,
                hook_timeout: d.hook_timeout,
                on_pre_hook_failure: d.on_pre_hook_failure,
                on_failure: d.on_failure,
                on_success: d.on_success,
            },
        ),
    }
}

fn lease_ttl(text: Option<&str>, c: &mut Collector) -> Duration {
    let ttl = c.dur(
        "daemon.lease_ttl",
        text,
        Duration::from_secs(30),
        // Checked below, with the reason for the lower bound.
        DurationRange::new(Duration::ZERO, Duration::MAX),
    );
    let range = DurationRange::LEASE_TTL;
    if ttl < range.min {
        c.push(
            "daemon.lease_ttl",
            format!(
                "'{}' is too short: a node renews its lease every third of it; use at least \"1s\" (default \"30s\")",
                humantime::format_duration(ttl)
            ),
        );
        return Duration::from_secs(30);
    }
    if ttl > range.max {
        c.push(
            "daemon.lease_ttl",
            format!(
                "'{}' is out of range: give a duration from {range}",
                definition::excerpt(text.unwrap_or_default().trim())
            ),
        );
        return Duration::from_secs(30);
    }
    ttl
}

fn timezone(text: Option<&str>, c: &mut Collector) -> Tz {
    match text {
        None => Tz::UTC,
        Some(z) => definition::parse_timezone(z).unwrap_or_else(|e| {
            c.push("daemon.timezone", e.message);
            Tz::UTC
        }),
    }
}

fn max_concurrent_runs(n: Option<i64>, c: &mut Collector) -> usize {
    match n {
        None => 8,
        Some(n) if (1..=10_000).contains(&n) => n as usize,
        Some(n) => {
            c.push(
                "daemon.max_concurrent_runs",
                format!("{n} is out of range 1-10000"),
            );
            8
        }
    }
}

fn history_keep(n: Option<i64>, c: &mut Collector) -> u32 {
    match n {
        None => 1000,
        Some(n) if (1..=i64::from(u32::MAX)).contains(&n) => n as u32,
        Some(n) => {
            c.push(
                "daemon.history_keep",
                format!("{n} must be at least 1 (runs kept per definition)"),
            );
            1000
        }
    }
}

/// The daemon's default blast-radius limit.
pub const DEFAULT_MAX_DELETES_PER_RUN: u32 = 10;

fn max_deletes_per_run(n: Option<i64>, c: &mut Collector) -> u32 {
    match n {
        None => DEFAULT_MAX_DELETES_PER_RUN,
        Some(n) => {
            definition::parse_max_deletes("daemon.max_deletes_per_run", n).unwrap_or_else(|e| {
                c.push("daemon.max_deletes_per_run", e.message);
                DEFAULT_MAX_DELETES_PER_RUN
            })
        }
    }
}

fn log_level(level: Option<String>, c: &mut Collector) -> String {
    let level = level.unwrap_or_else(|| "info".into());
    if !is_log_filter(&level) {
        c.push(
            "daemon.log_level",
            format!(
                "'{}' is not a log level or filter: use off, error, warn, info, debug or trace, or a filter such as \"warn,snapsched=debug\"",
                definition::excerpt(&level)
            ),
        );
        return "info".into();
    }
    level
}

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// A level, or a tracing filter whose every directive names a level. The
/// filter parser alone takes a bare word such as `degub` for a target name
/// (and so silences everything else); here a bare word must be a level.
fn is_log_filter(text: &str) -> bool {
    let is_level = |l: &str| LEVELS.iter().any(|k| k.eq_ignore_ascii_case(l.trim()));
    let directives: Vec<&str> = text.split(',').map(str::trim).collect();
    tracing_subscriber::EnvFilter::try_new(text).is_ok()
        && !text.trim().is_empty()
        && directives.iter().all(|d| match d.rsplit_once('=') {
            Some((_, level)) => is_level(level),
            None => is_level(d),
        })
}

fn log_format(text: Option<&str>, c: &mut Collector) -> LogFormat {
    match text {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            c.push(
                "daemon.log_format",
                format!("'{other}' is not a log format: use \"text\" or \"json\""),
            );
            LogFormat::Text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_log_filter;

    #[test]
    fn log_filters_must_name_levels() {
        for ok in [
            "info",
            "DEBUG",
            "off",
            "warn,snapsched=debug",
            "snapsched::run=trace",
        ] {
            assert!(is_log_filter(ok), "{ok}");
        }
        for bad in [
            "degub",
            "",
            "snapsched",
            "info,snapsched=loud",
            "warn,,=x",
            "info=[",
        ] {
            assert!(!is_log_filter(bad), "{bad}");
        }
    }
}
