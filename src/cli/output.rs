//! How commands print: JSON, aligned tables, and the renderings more than
//! one command shows (a definition with its next fire, a prune report, a
//! run's duration).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::{CliError, CliResult};
use crate::domain::definition::Definition;
use crate::domain::Run;
use crate::prune::{DeletionOutcome, PruneReport};
use crate::retention;
use crate::table;

/// Print `value` as pretty JSON.
pub fn print_json<T: Serialize>(value: &T) -> CliResult {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Runtime(anyhow::anyhow!("cannot encode JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// Print rows as an aligned table under `headers`.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    print!("{}", table::render(headers, rows));
}

/// Print rows as a table that fits the terminal (when stdout is one),
/// shortening the `flexible` column; piped output keeps every character.
pub fn print_table_fit(headers: &[&str], rows: &[Vec<String>], flexible: usize) {
    let width = terminal_size::terminal_size_of(std::io::stdout())
        .map(|(terminal_size::Width(w), _)| usize::from(w));
    print!("{}", table::render_fit(headers, rows, width, flexible));
}

/// How human output shows instants: in one zone for the whole output (the
/// local zone, or UTC with `--utc`), with the zone's abbreviation on every
/// time, and relative to now where that helps. JSON keeps RFC 3339 UTC.
#[derive(Debug, Clone, Copy)]
pub struct Times {
    pub zone: Tz,
    pub now: DateTime<Utc>,
}

impl Times {
    pub fn new(utc: bool, now: DateTime<Utc>) -> Times {
        let zone = if utc { Tz::UTC } else { local_zone() };
        Times { zone, now }
    }

    /// `2026-12-01 08:15:00 CET`.
    pub fn at(&self, t: DateTime<Utc>) -> String {
        crate::table::instant(t, self.zone)
    }

    /// `2026-12-01 08:15:00 CET (in 4m)`.
    pub fn at_relative(&self, t: DateTime<Utc>) -> String {
        format!("{} ({})", self.at(t), self.relative(t))
    }

    /// `in 4m`, `2h 5m ago`, `now`: two units at most.
    pub fn relative(&self, t: DateTime<Utc>) -> String {
        let secs = (t - self.now).num_seconds();
        let span = short_span(secs.unsigned_abs());
        match secs {
            -1..=1 => "now".to_owned(),
            s if s > 0 => format!("in {span}"),
            _ => format!("{span} ago"),
        }
    }

    /// An RFC 3339 text (as views carry it) shown as [`Times::at_relative`];
    /// text that does not parse is shown as it is.
    pub fn text_relative(&self, rfc3339: &str) -> String {
        DateTime::parse_from_rfc3339(rfc3339)
            .map(|t| self.at_relative(t.with_timezone(&Utc)))
            .unwrap_or_else(|_| rfc3339.to_owned())
    }
}

/// `45s`, `4m`, `2h 5m`, `3d 4h`.
fn short_span(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// The local zone: `$TZ` when it names an IANA zone, else the system's
/// (/etc/localtime), else UTC.
fn local_zone() -> Tz {
    std::env::var("TZ")
        .ok()
        .and_then(|tz| tz.trim_start_matches(':').parse().ok())
        .or_else(|| iana_time_zone::get_timezone().ok()?.parse().ok())
        .unwrap_or(Tz::UTC)
}

/// A definition with its next fire time, as printed by `def list`, `def
/// show` and `status`.
#[derive(Debug, Serialize)]
pub struct DefinitionView {
    #[serde(flatten)]
    pub definition: Definition,
    /// Effective zone (the definition's or the daemon default).
    pub zone: String,
    pub next_fire: Option<String>,
}

pub fn view(def: Definition, default_tz: Tz, now: DateTime<Utc>) -> DefinitionView {
    let zone = def.spec.zone(default_tz);
    let next_fire = if def.spec.active {
        def.spec
            .schedule
            .next_after(now, zone)
            .map(|t| t.with_timezone(&zone).to_rfc3339())
    } else {
        None
    };
    DefinitionView {
        definition: def,
        zone: zone.to_string(),
        next_fire,
    }
}

/// A run's duration, humanly (`-` while it runs).
pub fn run_duration(run: &Run) -> String {
    run.duration()
        .and_then(|d| d.to_std().ok())
        .map(crate::domain::run::human_duration)
        .unwrap_or_else(|| "-".into())
}

/// How long ago a heartbeat was, humanly: `3s ago`, `2m 5s ago`.
pub fn heartbeat_age(age_ms: i64) -> String {
    let secs = u64::try_from(age_ms / 1000).unwrap_or(0);
    format!(
        "{} ago",
        humantime::format_duration(std::time::Duration::from_secs(secs))
    )
}

/// A node as one cell: its hostname and short id, `web01 (0123abcd)`.
pub fn node_label(hostname: &str, id: &str) -> String {
    format!("{hostname} ({})", crate::domain::node::short_id(id))
}

/// Print a prune report as JSON or in its human form.
pub fn print_prune_report(report: &PruneReport, json: bool, times: &Times) -> CliResult {
    if json {
        return print_json(report);
    }
    print!("{}", prune_report(report, times));
    Ok(())
}

/// The human form of a prune report: the plan table, then adoptions,
/// snapshots marked gone and failed deletions, then a one-line summary.
pub fn prune_report(report: &PruneReport, times: &Times) -> String {
    let mut out = String::new();
    if report.decisions.is_empty() {
        out.push_str("no snapshots on this disk\n");
    } else {
        out.push_str(&retention::render_table(&report.decisions, times.zone));
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    let verb = if report.dry_run {
        "would adopt"
    } else {
        "adopted"
    };
    for s in &report.adopted {
        out.push_str(&format!(
            "{verb} {} (no record in the store; the name matches the definition)\n",
            s.name
        ));
    }
    let verb = if report.dry_run {
        "would mark gone"
    } else {
        "marked gone"
    };
    for name in &report.gone {
        out.push_str(&format!(
            "{verb} {name} (no longer listed by the provider)\n"
        ));
    }
    for d in report.failures() {
        let why = match &d.outcome {
            DeletionOutcome::Failed(e) => e.to_string(),
            _ => "refused: not owned by this definition".to_owned(),
        };
        out.push_str(&format!("could not delete {}: {why}\n", d.snapshot.name));
    }
    let planned = report.planned_deletions();
    let keep = report.decisions.len() - planned;
    if report.dry_run {
        out.push_str(&format!(
            "dry run: {keep} to keep, {planned} to delete; nothing was changed\n"
        ));
    } else {
        let done = report.deletions.len() - report.failures().count();
        out.push_str(&format!("{keep} kept, {done} of {planned} deleted\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn times_show_one_zone_with_its_abbreviation_and_relative_spans() {
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 7, 0, 0).unwrap();
        let prague = Times {
            zone: "Europe/Prague".parse().unwrap(),
            now,
        };
        let summer = Utc.with_ymd_and_hms(2026, 7, 1, 7, 0, 0).unwrap();
        assert_eq!(prague.at(now), "2026-12-01 08:00:00 CET");
        assert_eq!(prague.at(summer), "2026-07-01 09:00:00 CEST");
        let utc = Times::new(true, now);
        assert_eq!(utc.at(now), "2026-12-01 07:00:00 UTC");
        let later = |s: i64| now + chrono::TimeDelta::seconds(s);
        assert_eq!(utc.relative(later(240)), "in 4m");
        assert_eq!(utc.relative(later(-7_500)), "2h 5m ago");
        assert_eq!(utc.relative(later(-3 * 86_400 - 4 * 3600 - 9)), "3d 4h ago");
        assert_eq!(utc.relative(later(45)), "in 45s");
        assert_eq!(utc.relative(now), "now");
        assert_eq!(
            utc.text_relative("2026-12-01T08:04:00+01:00"),
            "2026-12-01 07:04:00 UTC (in 4m)"
        );
    }
}
