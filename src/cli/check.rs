//! `snapsched check`: a monitoring plugin (Nagios, Icinga, NRPE, Sensu)
//! that reads only the store, so it runs on the daemon's host without the
//! metrics endpoint.
//!
//! Monitoring-plugins conventions: exit 0 OK, 1 WARNING, 2 CRITICAL,
//! 3 UNKNOWN; one status line, detail lines, then performance data after
//! a `|`. Every failure of the check itself (configuration, store, bad
//! argument) is UNKNOWN, never the CLI's usual 1 or 2, which a monitoring
//! system would read as WARNING or CRITICAL.
//!
//! Staleness is measured against the schedule's nominal interval, the
//! same one the `snapsched_interval_seconds` gauge publishes
//! ([`nominal_interval`]). The verdict is a pure function of what the
//! store says and `now` ([`evaluate`]).

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use clap::Args;
use serde::Serialize;

use super::context::{Context, Filters};
use super::output::print_json;
use super::CliResult;
use crate::domain::definition::Definition;
use crate::domain::{Identity, Node, NodeRole, NodeState, Run, RunState};
use crate::store::Store;
use crate::telemetry::definition_gauges::nominal_interval;

/// A daemon whose heartbeat is younger than this is up.
pub const HEARTBEAT_WITHIN: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Check only the active definitions of this name (all active ones
    /// when omitted)
    pub name: Option<String>,
    #[command(flatten)]
    pub filters: Filters,
    /// WARNING when the last success is older than MULT times the
    /// schedule's nominal interval
    #[arg(long, value_name = "MULT", default_value = "1.5")]
    pub warning: String,
    /// CRITICAL when the last success is older than MULT times the
    /// schedule's nominal interval
    #[arg(long, value_name = "MULT", default_value = "2")]
    pub critical: String,
    /// The verdict as a JSON object
    #[arg(long)]
    pub json: bool,
}

/// A verdict, ordered by severity for the worst-of rule (UNKNOWN is not
/// worse than CRITICAL by this order; it is only ever the whole verdict).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Status {
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }
}

/// Why a definition is not OK; groups the status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Problem {
    Failed,
    PruneBlocked,
    CopyFailed,
    NeverSucceeded,
    Stale,
}

impl Problem {
    fn adjective(self) -> &'static str {
        match self {
            Problem::Failed => "failed",
            Problem::PruneBlocked => "prune blocked",
            Problem::CopyFailed => "copy failed",
            Problem::NeverSucceeded => "never succeeded",
            Problem::Stale => "stale",
        }
    }
}

/// The staleness thresholds, as multiples of the nominal interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub warning: f64,
    pub critical: f64,
}

impl Thresholds {
    /// Parse `--warning` and `--critical`; the error names the flag, the
    /// value and the fix.
    pub fn parse(warning: &str, critical: &str) -> Result<Self, String> {
        let one = |flag: &str, v: &str| match v.trim().parse::<f64>() {
            Ok(m) if m.is_finite() && m > 0.0 => Ok(m),
            _ => Err(format!(
                "{flag} {v}: not a multiplier; give a positive number such as 1.5"
            )),
        };
        let t = Thresholds {
            warning: one("--warning", warning)?,
            critical: one("--critical", critical)?,
        };
        if t.warning > t.critical {
            return Err(format!(
                "--warning {warning} is above --critical {critical}; give a warning multiplier at most the critical one"
            ));
        }
        Ok(t)
    }
}

/// What the store says about one active definition.
#[derive(Debug, Clone)]
pub struct DefinitionInput {
    pub identity: Identity,
    pub created_at: DateTime<Utc>,
    pub interval: Option<Duration>,
    /// The latest finished snapshot run and the latest success.
    pub last_run: Option<Run>,
    pub last_success: Option<Run>,
    /// The run whose prune `max_deletes_per_run` blocked, while that is
    /// the latest prune ([`crate::store::Store::blocked_prunes`]).
    pub prune_blocked: Option<Run>,
    /// `region: why` for each region whose latest copy failed
    /// ([`crate::store::Store::failed_copies`]).
    pub copy_failed: Vec<String>,
}

/// One definition's verdict; the JSON field names are stable.
#[derive(Debug, Clone, Serialize)]
pub struct DefinitionCheck {
    pub name: String,
    pub provider: String,
    pub target: String,
    pub disk_id: u32,
    pub state: Status,
    /// When the latest successful run finished (RFC 3339).
    pub last_success: Option<String>,
    /// Seconds since the last success, or since the definition was created
    /// when it never succeeded.
    pub age_seconds: i64,
    /// `None` when the schedule fires fewer than twice from now on.
    pub interval_seconds: Option<u64>,
    pub reason: String,
    #[serde(skip)]
    label: String,
    #[serde(skip)]
    problem: Option<Problem>,
}

/// The whole verdict, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub status: Status,
    pub exit_code: u8,
    /// The status line without its `SNAPSCHED STATUS - ` prefix.
    pub summary: String,
    /// Whether a daemon's heartbeat is younger than a minute.
    pub daemon_up: bool,
    /// The youngest daemon heartbeat, in seconds; `None` when no daemon
    /// ever joined the store (or all of them are forgotten).
    pub daemon_heartbeat_age_seconds: Option<i64>,
    pub definitions: Vec<DefinitionCheck>,
    #[serde(skip)]
    perfdata: Vec<String>,
}

/// `2d 3h`, `5m 10s`, `45s`: the two largest non-zero units.
pub fn short_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let units = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::new();
    let mut rest = secs;
    for (size, unit) in units {
        let n = rest / size;
        rest %= size;
        if n > 0 || !parts.is_empty() {
            parts.push((n, unit));
        }
    }
    let shown: Vec<String> = parts
        .iter()
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    if shown.is_empty() {
        "0s".into()
    } else {
        shown.join(" ")
    }
}

/// `1 definition`, `14 definitions`.
fn definitions(n: usize) -> String {
    format!("{n} definition{}", if n == 1 { "" } else { "s" })
}

/// A perfdata label: single quotes doubled, `=` (which would end the
/// label) replaced.
fn perf_label(label: &str) -> String {
    format!("'{}'", label.replace('\'', "''").replace('=', "_"))
}

/// `target/name`, with the disk when two checked definitions would
/// otherwise read the same.
fn labels(ids: &[&Identity]) -> Vec<String> {
    let mut count: HashMap<(&str, &str), usize> = HashMap::new();
    for id in ids {
        *count.entry((&id.target, &id.name)).or_default() += 1;
    }
    ids.iter()
        .map(|id| {
            if count[&(id.target.as_str(), id.name.as_str())] > 1 {
                format!("{}/{}/{}", id.target, id.disk_id, id.name)
            } else {
                format!("{}/{}", id.target, id.name)
            }
        })
        .collect()
}

fn finished(run: &Run) -> DateTime<Utc> {
    run.finished_at.unwrap_or(run.updated_at)
}

fn check_one(
    d: &DefinitionInput,
    label: String,
    t: Thresholds,
    now: DateTime<Utc>,
) -> DefinitionCheck {
    let since = d.last_success.as_ref().map_or(d.created_at, finished);
    let age = (now - since).num_seconds().max(0);
    let interval = d.interval.map(|i| i.as_secs());
    let every = interval.map_or_else(String::new, |i| {
        format!(" (interval {})", short_duration(i as i64))
    });
    let over = |mult: f64| interval.is_some_and(|i| age as f64 > mult * i as f64);
    let failed = d
        .last_run
        .as_ref()
        .filter(|r| r.state == RunState::Failed && r.error_class.as_deref() == Some("permanent"));
    let (state, problem, reason) = if let Some(run) = failed {
        (
            Status::Critical,
            Some(Problem::Failed),
            format!(
                "last run (slot {}) failed permanently: {}",
                run.slot.to_rfc3339(),
                run.error.as_deref().unwrap_or("no error recorded")
            ),
        )
    } else if let Some(run) = &d.prune_blocked {
        // Snapshots pile up until an operator looks: as urgent as a failure.
        (
            Status::Critical,
            Some(Problem::PruneBlocked),
            format!(
                "prune blocked since slot {}: {}; review `snapsched prune {} --dry-run`, apply with `snapsched prune {} --yes`",
                run.slot.to_rfc3339(),
                run.error.as_deref().unwrap_or("more deletions than max_deletes_per_run"),
                d.identity.name,
                d.identity.name
            ),
        )
    } else if d.last_success.is_none() {
        let reason = format!(
            "never succeeded, created {} ago{every}",
            short_duration(age)
        );
        if over(2.0) {
            (Status::Critical, Some(Problem::NeverSucceeded), reason)
        } else {
            (Status::Ok, None, reason)
        }
    } else {
        let reason = format!("last success {} ago{every}", short_duration(age));
        if over(t.critical) {
            (Status::Critical, Some(Problem::Stale), reason)
        } else if over(t.warning) {
            (Status::Warning, Some(Problem::Stale), reason)
        } else {
            (Status::Ok, None, reason)
        }
    };
    // A snapshot missing from a copy region is no full success: at least
    // a warning, whatever else is said.
    let (state, problem, reason) = if d.copy_failed.is_empty() {
        (state, problem, reason)
    } else {
        let copy = format!(
            "latest copy failed to {}; the next snapshot is copied again",
            d.copy_failed.join("; ")
        );
        match problem {
            None => (
                Status::Warning,
                Some(Problem::CopyFailed),
                format!("{copy}; {reason}"),
            ),
            Some(p) => (
                state.max(Status::Warning),
                Some(p),
                format!("{reason}; {copy}"),
            ),
        }
    };
    let reason = if interval.is_none() && problem.is_none() {
        format!("{reason}; the schedule fires fewer than twice from now on, staleness not checked")
    } else {
        reason
    };
    DefinitionCheck {
        name: d.identity.name.clone(),
        provider: d.identity.provider.clone(),
        target: d.identity.target.clone(),
        disk_id: d.identity.disk_id,
        state,
        last_success: d.last_success.as_ref().map(|r| finished(r).to_rfc3339()),
        age_seconds: age,
        interval_seconds: interval,
        reason,
        label,
        problem,
    }
}

/// The verdict on `defs` and the store's `nodes`, as of `now`.
pub fn evaluate(
    defs: &[DefinitionInput],
    nodes: &[Node],
    t: Thresholds,
    now: DateTime<Utc>,
) -> Verdict {
    let ids: Vec<&Identity> = defs.iter().map(|d| &d.identity).collect();
    let checks: Vec<DefinitionCheck> = defs
        .iter()
        .zip(labels(&ids))
        .map(|(d, label)| check_one(d, label, t, now))
        .collect();

    let daemons: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.role == NodeRole::Daemon)
        .collect();
    let youngest = daemons.iter().map(|n| n.heartbeat_age_ms).min();
    let daemon_up = daemons.iter().any(|n| {
        n.state == NodeState::Live
            && u128::try_from(n.heartbeat_age_ms).unwrap_or(0) < HEARTBEAT_WITHIN.as_millis()
    });

    let mut status = checks.iter().map(|c| c.state).max().unwrap_or(Status::Ok);
    let mut parts = Vec::new();
    if !daemon_up {
        status = Status::Critical;
        parts.push(match youngest {
            Some(ms) => format!(
                "no daemon heartbeat for {} (none live within {}s)",
                short_duration(ms / 1000),
                HEARTBEAT_WITHIN.as_secs()
            ),
            None => "no daemon heartbeat in the store (no daemon has joined it)".to_owned(),
        });
    }
    for problem in [
        Problem::Failed,
        Problem::PruneBlocked,
        Problem::NeverSucceeded,
        Problem::Stale,
    ] {
        let hit: Vec<&DefinitionCheck> = checks
            .iter()
            .filter(|c| c.problem == Some(problem))
            .collect();
        if hit.is_empty() {
            continue;
        }
        const SHOWN: usize = 3;
        let mut list: Vec<String> = hit
            .iter()
            .take(SHOWN)
            .map(|c| format!("{} {}", c.label, c.reason))
            .collect();
        if hit.len() > SHOWN {
            list.push(format!("and {} more", hit.len() - SHOWN));
        }
        parts.push(format!(
            "{} of {} {}: {}",
            hit.len(),
            definitions(checks.len()),
            problem.adjective(),
            list.join(", ")
        ));
    }
    let summary = if parts.is_empty() {
        format!("{} fresh, daemon up", definitions(checks.len()))
    } else {
        parts.join("; ")
    };

    let mut perfdata: Vec<String> = checks
        .iter()
        .map(|c| {
            let at = |mult: f64| {
                c.interval_seconds.map_or_else(String::new, |i| {
                    format!("{}", (mult * i as f64).round() as i64)
                })
            };
            format!(
                "{}={}s;{};{}",
                perf_label(&format!("{}_age", c.label)),
                c.age_seconds,
                at(t.warning),
                at(t.critical)
            )
        })
        .collect();
    if let Some(ms) = youngest {
        perfdata.push(format!(
            "'daemon_heartbeat_age'={}s;;{}",
            ms / 1000,
            HEARTBEAT_WITHIN.as_secs()
        ));
    }

    Verdict {
        status,
        exit_code: status.exit_code(),
        summary,
        daemon_up,
        daemon_heartbeat_age_seconds: youngest.map(|ms| ms / 1000),
        definitions: checks,
        perfdata,
    }
}

impl Verdict {
    /// A verdict of UNKNOWN for `reason` (the check itself failed).
    pub fn unknown(reason: String) -> Verdict {
        Verdict {
            status: Status::Unknown,
            exit_code: Status::Unknown.exit_code(),
            summary: reason,
            daemon_up: false,
            daemon_heartbeat_age_seconds: None,
            definitions: Vec::new(),
            perfdata: Vec::new(),
        }
    }

    /// The plugin output: status line, one line per definition, then the
    /// performance data after a `|`.
    pub fn render(&self) -> String {
        let mut out = format!("SNAPSCHED {} - {}\n", self.status.as_str(), self.summary);
        for c in &self.definitions {
            out.push_str(&format!("{} {}: {}\n", c.state.as_str(), c.label, c.reason));
        }
        if !self.perfdata.is_empty() {
            out.push_str(&format!("| {}\n", self.perfdata.join(" ")));
        }
        out
    }
}

/// Read the store and judge; any error is the reason for UNKNOWN.
async fn gather(args: &CheckArgs, ctx: &Context, t: Thresholds) -> Result<Verdict, String> {
    let cfg = ctx.config().map_err(|e| e.to_string())?;
    let location = crate::wiring::store_location(&cfg).map_err(|e| match e {
        crate::wiring::WiringError::Config(m) => m,
        crate::wiring::WiringError::Store(e) => e.to_string(),
    })?;
    // A check only reads: it never makes a store up, takes no lock and
    // migrates nothing.
    let store = Store::connect_read_only(&location)
        .await
        .map_err(|e| format!("cannot open the store: {e}"))?;
    let verdict = judge(args, &store, cfg.daemon.timezone, t).await;
    store.close().await;
    verdict.map_err(|e| format!("cannot read the store at {location}: {e}"))?
}

async fn judge(
    args: &CheckArgs,
    store: &Store,
    default_tz: Tz,
    t: Thresholds,
) -> crate::store::StoreResult<Result<Verdict, String>> {
    let now = Utc::now();
    let filter = args.filters.filter();
    let defs: Vec<Definition> = store
        .list_definitions()
        .await?
        .into_iter()
        .filter(|d| d.spec.active && filter.matches(&d.spec.identity))
        .filter(|d| {
            args.name
                .as_ref()
                .is_none_or(|n| *n == d.spec.identity.name)
        })
        .collect();
    if let (Some(name), true) = (&args.name, defs.is_empty()) {
        return Ok(Err(format!(
            "no active definition named '{name}'{}; see `snapsched def list`",
            if args.filters.any() {
                " matches the filters"
            } else {
                ""
            }
        )));
    }
    let mut outcomes = store.last_snapshot_outcomes().await?;
    let mut blocked = store.blocked_prunes().await?;
    let mut copies = store.failed_copies().await?;
    let nodes = store.nodes().await?;
    let inputs: Vec<DefinitionInput> = defs
        .into_iter()
        .map(|d| {
            let (last_run, last_success) = outcomes.remove(&d.spec.identity).unwrap_or_default();
            let zone = d.spec.zone(default_tz);
            DefinitionInput {
                prune_blocked: blocked.remove(&d.spec.identity),
                copy_failed: copies
                    .remove(&d.spec.identity)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| format!("{} ({})", c.region, c.error.as_deref().unwrap_or("failed")))
                    .collect(),
                interval: nominal_interval(&d.spec.schedule, zone, now),
                identity: d.spec.identity,
                created_at: d.created_at,
                last_run,
                last_success,
            }
        })
        .collect();
    Ok(Ok(evaluate(&inputs, &nodes, t, now)))
}

/// Print the verdict and exit with its code. Exits the process itself for
/// a non-zero verdict: the CLI's error path would print to stderr and map
/// to 1 or 2, not the plugin's 1, 2 or 3.
pub async fn run(args: CheckArgs, ctx: &Context) -> CliResult {
    let verdict = match Thresholds::parse(&args.warning, &args.critical) {
        Ok(t) => gather(&args, ctx, t).await.unwrap_or_else(Verdict::unknown),
        Err(reason) => Verdict::unknown(reason),
    };
    if args.json {
        print_json(&verdict)?;
    } else {
        print!("{}", verdict.render());
    }
    if verdict.exit_code != 0 {
        let _ = std::io::stdout().flush();
        std::process::exit(i32::from(verdict.exit_code));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_duration_shows_the_two_largest_units() {
        let cases = [
            (0, "0s"),
            (45, "45s"),
            (310, "5m 10s"),
            (3600, "1h"),
            (86_400, "1d"),
            (183_600, "2d 3h"),
            (86_400 + 59, "1d"),
        ];
        for (secs, want) in cases {
            assert_eq!(short_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn thresholds_refuse_bad_multipliers_naming_the_flag() {
        assert_eq!(
            Thresholds::parse("1.5", "2"),
            Ok(Thresholds {
                warning: 1.5,
                critical: 2.0
            })
        );
        for (w, c, flag) in [
            ("x", "2", "--warning x"),
            ("1", "0", "--critical 0"),
            ("1", "-1", "--critical -1"),
            ("3", "2", "--warning 3 is above"),
        ] {
            let e = Thresholds::parse(w, c).expect_err(w);
            assert!(e.contains(flag), "{e}");
        }
    }

    #[test]
    fn perf_labels_quote_and_escape() {
        assert_eq!(perf_label("db01/daily_age"), "'db01/daily_age'");
        assert_eq!(perf_label("it's=x"), "'it''s_x'");
    }
}
