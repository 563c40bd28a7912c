//! `snapsched schedule next`: when a schedule fires, as a pure function of
//! the expression, the zone, the starting instant and the count.
//!
//! No clock reads here: the caller passes `after` (the current time when
//! `--after` is absent). Output is exactly what goes to stdout: one RFC 3339
//! time per line with the zone's offset at that instant, or a JSON array of
//! the same strings.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::context::{Address, Context, Filters};
use super::{CliError, CliResult};
use crate::domain::schedule::{format_in_zone, Schedule, ScheduleError};
use crate::domain::text::excerpt;

/// The most fire times `schedule next` prints at once.
pub const COUNT_MAX: usize = 10_000;

/// The first `count` fire times of `expr` strictly after `after`, in `tz`.
/// `H` items hash on the empty key; see [`next_fire_times_keyed`].
pub fn next_fire_times(
    expr: &str,
    tz: Tz,
    after: DateTime<Utc>,
    count: usize,
) -> Result<Vec<DateTime<Tz>>, ScheduleError> {
    next_fire_times_keyed(expr, "", tz, after, count)
}

/// As [`next_fire_times`], with `H` items resolved for `hash_key` (a
/// definition's identity, to preview what that definition will do).
pub fn next_fire_times_keyed(
    expr: &str,
    hash_key: &str,
    tz: Tz,
    after: DateTime<Utc>,
    count: usize,
) -> Result<Vec<DateTime<Tz>>, ScheduleError> {
    let schedule = Schedule::parse(expr, hash_key)?;
    let mut out = Vec::with_capacity(count.min(1024));
    let mut t = after;
    while out.len() < count {
        let Some(next) = schedule.next_after(t, tz) else {
            break;
        };
        out.push(next.with_timezone(&tz));
        t = next;
    }
    Ok(out)
}

/// Stdout for `schedule next`: one line per time, or a JSON array.
pub fn render(times: &[DateTime<Tz>], json: bool) -> String {
    let lines: Vec<String> = times
        .iter()
        .map(|t| format_in_zone(t.with_timezone(&Utc), t.timezone()))
        .collect();
    if json {
        let mut s = serde_json::Value::from(lines).to_string();
        s.push('\n');
        s
    } else {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }
}

/// An IANA zone name such as `Europe/Bratislava` or `UTC`.
pub fn parse_tz(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!(
            "unknown time zone {name:?}: expected an IANA name such as Europe/Bratislava, \
             America/New_York or UTC (names are case-sensitive)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn prints_one_rfc3339_line_per_fire_with_the_offset_at_that_instant() {
        let tz = parse_tz("Europe/Bratislava").unwrap_or_else(|e| panic!("{e}"));
        let times = next_fire_times("30 2 * * *", tz, at("2026-03-28T12:00:00Z"), 2)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            render(&times, false),
            "2026-03-29T03:00:00+02:00\n2026-03-30T02:30:00+02:00\n"
        );
        assert_eq!(
            render(&times, true),
            "[\"2026-03-29T03:00:00+02:00\",\"2026-03-30T02:30:00+02:00\"]\n"
        );
    }

    #[test]
    fn first_result_is_strictly_after_the_start() {
        let times = next_fire_times("0 * * * *", Tz::UTC, at("2026-01-01T10:00:00Z"), 3)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            render(&times, false),
            "2026-01-01T11:00:00+00:00\n2026-01-01T12:00:00+00:00\n2026-01-01T13:00:00+00:00\n"
        );
        let none = next_fire_times("0 * * * *", Tz::UTC, at("2026-01-01T10:00:00Z"), 0);
        assert_eq!(none.map(|v| render(&v, true)), Ok("[]\n".to_owned()));
    }

    #[test]
    fn hash_key_defaults_to_empty() {
        let after = at("2026-01-01T00:00:00Z");
        let a = next_fire_times("H H * * *", Tz::UTC, after, 2);
        let b = next_fire_times_keyed("H H * * *", "", Tz::UTC, after, 2);
        assert_eq!(a, b);
        assert!(matches!(a, Ok(v) if v.len() == 2));
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            next_fire_times("60 * * * *", Tz::UTC, at("2026-01-01T00:00:00Z"), 1),
            Err(ScheduleError(
                "minute field: 60 is out of range 0-59".into()
            ))
        );
        let err = parse_tz("Europe/Bratislav").err().unwrap_or_default();
        assert!(
            err.contains("unknown time zone \"Europe/Bratislav\""),
            "{err}"
        );
        assert_eq!(parse_tz("UTC"), Ok(Tz::UTC));
    }
}

/// `snapsched schedule ...`
#[derive(Debug, clap::Subcommand)]
pub enum ScheduleCommand {
    /// Print when EXPR, or a definition's schedule, fires next: one RFC 3339
    /// time per line, with the zone's offset at that instant
    ///
    /// `H` in an expression is resolved from the definition's identity, so
    /// a bare EXPR with `H` previews it for an example identity only; give
    /// `--definition NAME` to see when that definition fires.
    Next {
        /// Cron expression, e.g. "30 2 * * *"
        #[arg(required_unless_present = "definition", conflicts_with = "definition")]
        expr: Option<String>,
        /// Preview this definition's schedule, in its zone, with its `H`
        /// values
        #[arg(long, value_name = "NAME")]
        definition: Option<String>,
        #[command(flatten)]
        filters: Filters,
        /// IANA time zone [default: the definition's, else daemon.timezone
        /// if a config is present, else UTC]
        #[arg(long = "tz")]
        tz: Option<String>,
        /// RFC 3339 instant; the first result is strictly after it [default: now]
        #[arg(long)]
        after: Option<String>,
        /// How many fire times, at most 10000
        #[arg(long, default_value_t = 5)]
        count: usize,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: ScheduleCommand, ctx: &Context) -> CliResult {
    let ScheduleCommand::Next {
        expr,
        definition,
        filters,
        tz,
        after,
        count,
        json,
    } = cmd;
    if count > COUNT_MAX {
        return Err(CliError::usage(format!(
            "--count {count} is more than {COUNT_MAX}; ask for at most {COUNT_MAX} fire times (use --after to look further ahead)"
        )));
    }
    let tz = tz
        .map(|name| parse_tz(&name).map_err(CliError::usage))
        .transpose()?;
    let after = match after {
        Some(text) => DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                CliError::usage(format!(
                    "--after '{text}' is not an RFC 3339 instant ({e}), e.g. 2026-03-29T00:00:00+01:00"
                ))
            })?,
        None => Utc::now(),
    };
    let times = match (definition, expr) {
        (Some(name), _) => {
            let cfg = ctx.config()?;
            let store = ctx.open_store_read_only(&cfg).await?;
            let def = ctx.resolve(&store, &Address { name, filters }).await?;
            let spec = &def.spec;
            let zone = tz.unwrap_or_else(|| spec.zone(cfg.daemon.timezone));
            next_fire_times_keyed(
                spec.schedule.source(),
                &spec.identity.hash_key(),
                zone,
                after,
                count,
            )
            .map_err(|e| CliError::usage(format!("schedule '{}': {e}", spec.schedule.source())))?
        }
        (None, Some(expr)) => {
            if filters.any() {
                return Err(CliError::usage(
                    "--provider, --target and --disk pick a definition: give --definition NAME with them",
                ));
            }
            // The configured default zone when a configuration is there; no
            // configuration is needed to preview a schedule.
            let zone =
                tz.unwrap_or_else(|| ctx.config().map(|c| c.daemon.timezone).unwrap_or(Tz::UTC));
            let times = next_fire_times(&expr, zone, after, count).map_err(|e| {
                CliError::usage(format!(
                    "schedule '{}': {}",
                    excerpt(&expr),
                    excerpt(&e.to_string())
                ))
            })?;
            if expr.contains('H') && !json {
                eprintln!(
                    "note: H is resolved for an example identity; a definition's own times: \
                     snapsched schedule next --definition NAME"
                );
            }
            times
        }
        (None, None) => {
            return Err(CliError::usage(
                "give a cron expression or --definition NAME",
            ))
        }
    };
    print!("{}", render(&times, json));
    Ok(())
}
