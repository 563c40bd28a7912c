//! `snapsched retention simulate`: what a retention policy leaves behind
//! after a stretch of runs, and what it costs, before committing to it.
//!
//! The inputs come from a definition (its schedule, zone and policy) with
//! flags overriding them, or from the flags alone; [`resolve`] turns them
//! into domain types and [`crate::retention::simulate`] does the replay.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::context::{Address, Context, Filters, KeepArgs};
use super::output::print_json;
use super::{CliError, CliResult};
use crate::domain::definition::{self, DefinitionSpec};
use crate::domain::{ProviderKind, Schedule};
use crate::prune;
use crate::retention::{
    join_reasons, simulate, Policy, Simulation, SimulationInput, CREATED_FORMAT,
};

/// DigitalOcean's snapshot storage price, US dollars per GiB and month.
pub const DIGITALOCEAN_USD_PER_GIB_MONTH: f64 = 0.06;

/// What snapshots are named after when no definition is given.
const DEFAULT_NAME: &str = "snapshot";

/// `snapsched retention ...`
#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Replay a schedule, assuming every run succeeds, prune after each run,
    /// and show what remains: the snapshots with their reasons, the peak and
    /// final counts and, with --size, the storage and its cost.
    ///
    /// With NAME the definition's schedule, zone and policy are used; the
    /// flags override them. Without NAME, --schedule is required.
    Simulate(Box<SimulateArgs>),
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Definition to simulate
    pub name: Option<String>,
    #[command(flatten)]
    pub filters: Filters,
    /// Cron expression, overriding the definition's
    #[arg(long)]
    pub schedule: Option<String>,
    /// IANA time zone of the schedule and the calendar tiers [default: the
    /// definition's, else daemon.timezone if a config is present, else UTC]
    #[arg(long = "tz")]
    pub tz: Option<String>,
    #[command(flatten)]
    pub keep: KeepArgs,
    /// RFC 3339 instant of the first slot considered, e.g. 2026-01-01T00:00:00Z
    #[arg(long, value_name = "INSTANT")]
    pub from: String,
    /// How long to replay, e.g. 60d or 1y
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: String,
    /// Size of one snapshot in GB, to show the storage (and its cost on
    /// DigitalOcean)
    #[arg(long, value_name = "GB", allow_negative_numbers = true)]
    pub size: Option<f64>,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

pub async fn run(cmd: RetentionCommand, ctx: &Context) -> CliResult {
    let RetentionCommand::Simulate(args) = cmd;
    let (spec, kind, default_zone) = match &args.name {
        Some(name) => {
            let cfg = ctx.config()?;
            let store = ctx.open_store_read_only(&cfg).await?;
            let address = Address {
                name: name.clone(),
                filters: args.filters.clone(),
            };
            let def = ctx.resolve(&store, &address).await?;
            let kind = cfg.provider(&def.spec.identity.provider).map(|p| p.kind);
            (Some(def.spec), kind, cfg.daemon.timezone)
        }
        None if args.filters.any() => {
            return Err(CliError::usage(
                "--provider/--target/--disk narrow a definition NAME; give NAME or drop them",
            ))
        }
        // A configuration is not needed to simulate from flags alone.
        None => (
            None,
            None,
            ctx.config().map(|c| c.daemon.timezone).unwrap_or(Tz::UTC),
        ),
    };
    let sim = resolve(spec.as_ref(), kind, default_zone, &args)?;
    let simulation = simulate(&sim.input()).map_err(|e| CliError::usage(e.to_string()))?;
    let report = Report::new(&sim, simulation);
    if args.json {
        print_json(&report)
    } else {
        print!("{}", report.render());
        Ok(())
    }
}

/// The simulation's inputs as domain types.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub name: String,
    pub schedule: Schedule,
    pub zone: Tz,
    pub policy: Policy,
    pub from: DateTime<Utc>,
    pub duration: Duration,
    pub size_gb: Option<f64>,
    /// Whether DigitalOcean's price applies: the definition is on
    /// DigitalOcean, or there is no definition.
    pub priced: bool,
}

impl Resolved {
    fn input(&self) -> SimulationInput<'_> {
        SimulationInput {
            name: &self.name,
            schedule: &self.schedule,
            zone: self.zone,
            policy: self.policy,
            from: self.from,
            duration: self.duration,
        }
    }
}

/// The definition's settings (if any) with the flags over them.
pub fn resolve(
    spec: Option<&DefinitionSpec>,
    kind: Option<ProviderKind>,
    default_zone: Tz,
    args: &SimulateArgs,
) -> CliResult<Resolved> {
    let schedule = match (&args.schedule, spec) {
        (Some(expr), Some(spec)) => spec.parse_schedule(expr).map_err(usage)?,
        (Some(expr), None) => Schedule::parse(expr.trim(), "")
            .map_err(|e| CliError::usage(format!("--schedule '{expr}': {e}")))?,
        (None, Some(spec)) => spec.schedule.clone(),
        (None, None) => {
            return Err(CliError::usage(
                "--schedule is required without a definition NAME, e.g. --schedule '0 * * * *'",
            ))
        }
    };
    let zone = match (&args.tz, spec) {
        (Some(name), _) => definition::parse_timezone(name).map_err(usage)?,
        (None, Some(spec)) => spec.zone(default_zone),
        (None, None) => default_zone,
    };
    let mut policy = match spec {
        Some(spec) => prune::policy(spec, zone),
        None => Policy {
            zone,
            ..Policy::default()
        },
    };
    override_keep(&mut policy, &args.keep)?;

    let from = DateTime::parse_from_rfc3339(args.from.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            CliError::usage(format!(
                "--from '{}' is not an RFC 3339 instant ({e}), e.g. 2026-01-01T00:00:00Z",
                args.from
            ))
        })?;
    let duration = definition::parse_duration("--for", &args.duration).map_err(usage)?;
    if duration.is_zero() {
        return Err(CliError::usage(format!(
            "--for '{}' replays nothing: give a positive duration such as 60d or 1y",
            args.duration
        )));
    }
    let duration = definition::parse_duration_in(
        "--for",
        &args.duration,
        definition::DurationRange::SIMULATION,
    )
    .map_err(usage)?;
    let size_gb = match args.size {
        Some(gb) if !(gb.is_finite() && gb > 0.0) => {
            return Err(CliError::usage(format!(
                "--size {gb} is not a size: give one snapshot's size in GB, e.g. --size 25"
            )))
        }
        other => other,
    };
    Ok(Resolved {
        name: spec
            .map_or(DEFAULT_NAME, |s| s.identity.name.as_str())
            .to_owned(),
        schedule,
        zone,
        policy,
        from,
        duration,
        size_gb,
        priced: spec.is_none() || kind == Some(ProviderKind::DigitalOcean),
    })
}

/// Put the `--keep-*` flags that are given over the policy's rules.
fn override_keep(policy: &mut Policy, keep: &KeepArgs) -> CliResult {
    let tiers = &mut policy.keep;
    let counts = [
        ("keep_last", keep.keep_last, &mut tiers.last),
        ("keep_hourly", keep.keep_hourly, &mut tiers.hourly),
        ("keep_daily", keep.keep_daily, &mut tiers.daily),
        ("keep_weekly", keep.keep_weekly, &mut tiers.weekly),
        ("keep_monthly", keep.keep_monthly, &mut tiers.monthly),
        ("keep_yearly", keep.keep_yearly, &mut tiers.yearly),
    ];
    for (field, given, slot) in counts {
        if let Some(n) = given {
            *slot = definition::parse_keep_count(field, n).map_err(usage)?;
        }
    }
    if let Some(text) = &keep.keep_within {
        let d = definition::parse_duration("keep_within", text).map_err(usage)?;
        // 0 turns the rule off, as a count of 0 does.
        tiers.within = if d.is_zero() {
            None
        } else {
            Some(definition::parse_keep_within(text).map_err(usage)?)
        };
    }
    Ok(())
}

fn usage(e: impl ToString) -> CliError {
    CliError::usage(e.to_string())
}

/// What `retention simulate` prints, as JSON or text.
#[derive(Debug, Serialize)]
pub struct Report {
    pub name: String,
    pub schedule: String,
    pub timezone: String,
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    #[serde(flatten)]
    pub simulation: Simulation,
    /// One snapshot's size, as given with --size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_gb: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_storage_gb: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_storage_gb: Option<f64>,
    /// The final storage at DigitalOcean's price, per month.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly_cost_usd: Option<f64>,
}

impl Report {
    pub fn new(sim: &Resolved, simulation: Simulation) -> Self {
        let until = TimeDelta::from_std(sim.duration)
            .ok()
            .and_then(|d| sim.from.checked_add_signed(d))
            .unwrap_or(sim.from);
        let final_gb = sim.size_gb.map(|gb| gb * simulation.final_count as f64);
        let peak_gb = sim.size_gb.map(|gb| gb * simulation.peak as f64);
        Report {
            name: sim.name.clone(),
            schedule: sim.schedule.source().to_owned(),
            timezone: sim.zone.name().to_owned(),
            from: sim.from,
            until,
            size_gb: sim.size_gb,
            final_storage_gb: final_gb,
            peak_storage_gb: peak_gb,
            monthly_cost_usd: final_gb
                .filter(|_| sim.priced)
                .map(|gb| round_cents(gb * DIGITALOCEAN_USD_PER_GIB_MONTH)),
            simulation,
        }
    }

    /// The text form: the kept snapshots as a table, then the totals.
    pub fn render(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .simulation
            .kept
            .iter()
            .map(|k| {
                vec![
                    k.name.clone(),
                    k.created_at.format(CREATED_FORMAT).to_string(),
                    join_reasons(&k.reasons),
                ]
            })
            .collect();
        let mut out = crate::table::render(&["Snapshot", "Created", "Reason"], &rows);
        let s = &self.simulation;
        out.push_str(&format!(
            "\n{} runs of '{}' ({}) from {} to {}\npeak: {} snapshots\nfinal: {} snapshots\n",
            s.runs,
            self.schedule,
            self.timezone,
            self.from.format(CREATED_FORMAT),
            self.until.format(CREATED_FORMAT),
            s.peak,
            s.final_count,
        ));
        if let (Some(size), Some(final_gb), Some(peak_gb)) =
            (self.size_gb, self.final_storage_gb, self.peak_storage_gb)
        {
            out.push_str(&format!(
                "storage: {final_gb} GB final ({} × {size} GB), {peak_gb} GB at the peak\n",
                s.final_count
            ));
        }
        if let Some(cost) = self.monthly_cost_usd {
            out.push_str(&format!(
                "cost: ${cost:.2} a month at DigitalOcean's ${DIGITALOCEAN_USD_PER_GIB_MONTH}/GiB-month\n"
            ));
        }
        out
    }
}

fn round_cents(usd: f64) -> f64 {
    (usd * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};
    use crate::domain::definition::RawDefinition;
    use crate::retention::Tiers;

    fn args(extra: &[&str]) -> SimulateArgs {
        let mut argv = vec!["snapsched", "retention", "simulate"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(Command::Retention(RetentionCommand::Simulate(a))) => *a,
            other => panic!("{other:?}"),
        }
    }

    fn spec() -> DefinitionSpec {
        RawDefinition {
            name: "db".into(),
            provider: "fake".into(),
            target: "vm-1".into(),
            schedule: Some("0 2 * * *".into()),
            timezone: Some("Europe/Bratislava".into()),
            retention: Some(3),
            keep_daily: Some(7),
            max_age: Some("30d".into()),
            ..RawDefinition::default()
        }
        .validate(ProviderKind::Fake)
        .unwrap_or_else(|e| panic!("{e:?}"))
    }

    const WINDOW: [&str; 4] = ["--from", "2026-01-01T00:00:00Z", "--for", "60d"];

    #[test]
    fn a_definition_gives_schedule_zone_and_policy() {
        let spec = spec();
        let r = resolve(
            Some(&spec),
            Some(ProviderKind::Fake),
            Tz::UTC,
            &args(&WINDOW),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.name, "db");
        assert_eq!(r.schedule.source(), "0 2 * * *");
        assert_eq!(r.zone, chrono_tz::Europe::Bratislava);
        assert_eq!(r.policy, prune::policy(&spec, r.zone));
        assert!(!r.priced, "the fake provider is not priced");
    }

    #[test]
    fn flags_override_the_definition() {
        let spec = spec();
        let mut argv = vec![
            "db",
            "--schedule",
            "0 * * * *",
            "--tz",
            "UTC",
            "--keep-last",
            "0",
            "--keep-hourly",
            "24",
            "--keep-within",
            "2d",
        ];
        argv.extend_from_slice(&WINDOW);
        let r = resolve(
            Some(&spec),
            Some(ProviderKind::DigitalOcean),
            Tz::UTC,
            &args(&argv),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.schedule.source(), "0 * * * *");
        assert_eq!(r.zone, Tz::UTC);
        assert_eq!(
            r.policy.keep,
            Tiers {
                last: 0,
                hourly: 24,
                daily: 7,
                within: Some(Duration::from_secs(2 * 86_400)),
                ..Tiers::default()
            }
        );
        assert_eq!(r.policy.zone, Tz::UTC, "the tiers' buckets follow --tz");
        assert_eq!(r.policy.max_age, spec.max_age);
        assert!(r.priced);
    }

    #[test]
    fn without_a_definition_the_schedule_is_required() {
        let err = resolve(None, None, Tz::UTC, &args(&WINDOW))
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("--schedule is required")),
            "{err:?}"
        );
    }

    #[test]
    fn bad_input_names_the_flag_and_the_fix() {
        let cases: [(&[&str], &str); 7] = [
            (
                &["--from", "yesterday", "--for", "1d"],
                "--from 'yesterday' is not an RFC 3339",
            ),
            (
                &["--from", "2026-01-01T00:00:00Z", "--for", "0s"],
                "--for '0s' replays nothing",
            ),
            (
                &["--from", "2026-01-01T00:00:00Z", "--for", "soon"],
                "--for: 'soon' is not a duration",
            ),
            (
                &[
                    "--schedule",
                    "61 * * * *",
                    "--from",
                    "2026-01-01T00:00:00Z",
                    "--for",
                    "1d",
                ],
                "--schedule '61 * * * *': minute field",
            ),
            (
                &[
                    "--tz",
                    "Mars/Base",
                    "--from",
                    "2026-01-01T00:00:00Z",
                    "--for",
                    "1d",
                ],
                "Mars/Base",
            ),
            (
                &[
                    "--keep-daily",
                    "-1",
                    "--from",
                    "2026-01-01T00:00:00Z",
                    "--for",
                    "1d",
                ],
                "keep_daily: -1 is out of range",
            ),
            (
                &[
                    "--size",
                    "-3",
                    "--from",
                    "2026-01-01T00:00:00Z",
                    "--for",
                    "1d",
                ],
                "--size -3 is not a size",
            ),
        ];
        for (argv, want) in cases {
            let mut a = args(argv);
            if a.schedule.is_none() {
                a.schedule = Some("0 * * * *".into());
            }
            let err = resolve(None, None, Tz::UTC, &a).err();
            assert!(
                matches!(&err, Some(e @ CliError::Usage(_)) if e.to_string().contains(want)),
                "{argv:?}: {err:?}"
            );
        }
    }

    #[test]
    fn size_gives_storage_and_the_digitalocean_price() {
        let a = args(&[
            "--schedule",
            "0 0 * * *",
            "--keep-last",
            "3",
            "--size",
            "10",
            "--from",
            "2026-01-01T00:00:00Z",
            "--for",
            "10d",
        ]);
        let r = resolve(None, None, Tz::UTC, &a).unwrap_or_else(|e| panic!("{e}"));
        let sim = simulate(&r.input()).unwrap_or_else(|e| panic!("{e}"));
        let report = Report::new(&r, sim);
        let v = serde_json::to_value(&report).unwrap_or_default();
        assert_eq!(v["final"], 3);
        assert_eq!(v["peak"], 4);
        assert_eq!(v["final_storage_gb"], 30.0);
        assert_eq!(v["peak_storage_gb"], 40.0);
        assert_eq!(v["monthly_cost_usd"], 1.8);
        assert_eq!(v["until"], "2026-01-11T00:00:00Z");
        assert_eq!(v["kept"].as_array().map(Vec::len), Some(3));
        let text = report.render();
        assert!(text.contains("final: 3 snapshots\n"), "{text}");
        assert!(text.contains("cost: $1.80 a month"), "{text}");
    }
}
