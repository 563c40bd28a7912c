//! `snapsched def add|set|rm|enable|disable|list|show`.

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

use super::context::{confirm, Address, Context, KeepArgs};
use super::output::{print_json, print_table, prune_report, view, DefinitionView, Times};
use super::{CliError, CliResult};
use crate::config::Config;
use crate::domain::definition::{self, Definition, DefinitionSpec, RawDefinition, Source};
use crate::domain::hooks::HOOK_KEYS;

#[derive(Debug, Subcommand)]
pub enum DefCommand {
    /// Add a definition. The names hourly, daily, weekly and monthly without
    /// --schedule and --retention take Erigones' defaults (H H * * * / 30, ...)
    Add(Box<AddArgs>),
    /// Change a definition: KEY=VALUE pairs for schedule, timezone, retention
    /// (keep_last), keep_hourly, keep_daily, keep_weekly, keep_monthly,
    /// keep_yearly, keep_within, active, desc, fsfreeze, max_age,
    /// catch_up_deadline, max_deletes_per_run, copy_regions (ams3,fra1 or
    /// none), pre_hook, post_hook,
    /// hook_timeout, on_pre_hook_failure, on_failure, on_success (a command
    /// is a JSON array such as '["/usr/local/sbin/pg-start","--fast"]' or one
    /// absolute path; KEY=default takes the provider's or daemon's). Name,
    /// target and disk identify a definition and cannot change
    ///
    /// The same changes go as the flags `def add` takes (`--retention 7
    /// --schedule "0 3 * * *"`), or both ways at once.
    Set {
        #[command(flatten)]
        address: Address,
        /// Changes, e.g. retention=7 "schedule=0 3 * * *" active=false
        #[arg(value_name = "KEY=VALUE")]
        changes: Vec<String>,
        #[command(flatten)]
        flags: Box<SetFlags>,
    },
    /// Remove a definition (its snapshots stay at the provider)
    Rm {
        #[command(flatten)]
        address: Address,
        /// Also delete the definition's own snapshots at the provider
        #[arg(long)]
        delete_snapshots: bool,
        /// Do not ask for confirmation (required off a terminal)
        #[arg(long)]
        yes: bool,
    },
    /// Activate a definition
    Enable {
        #[command(flatten)]
        address: Address,
    },
    /// Deactivate a definition (it keeps its snapshots and history)
    Disable {
        #[command(flatten)]
        address: Address,
    },
    /// List definitions with their next fire time
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one definition
    Show {
        #[command(flatten)]
        address: Address,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Definition name: 1-64 characters [A-Za-z0-9._-] (at most 8 on Erigones)
    pub name: String,
    /// Provider section name from the configuration
    #[arg(long)]
    pub provider: String,
    /// droplet:<id> or volume:<uuid> (DigitalOcean); VM hostname (Erigones)
    #[arg(long)]
    pub target: String,
    /// 1-based disk number
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub disk: i64,
    /// Cron expression, e.g. "30 5 * * *"
    #[arg(long)]
    pub schedule: Option<String>,
    /// IANA time zone of the schedule [default: daemon.timezone]
    #[arg(long = "tz")]
    pub timezone: Option<String>,
    /// Snapshots to keep, 0-65536 (0 keeps all); same as --keep-last
    #[arg(long, allow_negative_numbers = true)]
    pub retention: Option<String>,
    #[command(flatten)]
    pub keep: KeepArgs,
    /// Description, up to 128 characters
    #[arg(long)]
    pub desc: Option<String>,
    /// Add it inactive
    #[arg(long)]
    pub inactive: bool,
    /// Freeze the guest filesystem during the snapshot (Erigones)
    #[arg(long)]
    pub fsfreeze: bool,
    /// Prune own snapshots older than this even within retention, e.g. 90d
    #[arg(long)]
    pub max_age: Option<String>,
    /// The most snapshots one post-run prune may delete, 0 = no limit
    /// [default: daemon.max_deletes_per_run]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_deletes_per_run: Option<i64>,
    /// Copy each new snapshot to these regions once it is made, e.g.
    /// ams3,fra1 (DigitalOcean droplets only)
    #[arg(long, value_name = "REGIONS", value_delimiter = ',')]
    pub copy_regions: Option<Vec<String>>,
    #[command(flatten)]
    pub hooks: HookArgs,
    #[arg(long)]
    pub json: bool,
}

/// `def set`'s flags: those of `def add` for every setting that may change.
#[derive(Debug, Args)]
pub struct SetFlags {
    /// Cron expression, e.g. "30 5 * * *"
    #[arg(long)]
    pub schedule: Option<String>,
    /// IANA time zone of the schedule
    #[arg(long = "tz")]
    pub timezone: Option<String>,
    /// Snapshots to keep, 0-65536 (0 keeps all); same as --keep-last
    #[arg(long, allow_negative_numbers = true)]
    pub retention: Option<String>,
    #[command(flatten)]
    pub keep: KeepArgs,
    /// Description, up to 128 characters
    #[arg(long)]
    pub desc: Option<String>,
    /// Freeze the guest filesystem during the snapshot (Erigones): true or false
    #[arg(long, value_name = "BOOL")]
    pub fsfreeze: Option<bool>,
    /// Prune own snapshots older than this even within retention, e.g. 90d
    #[arg(long)]
    pub max_age: Option<String>,
    /// After downtime, run the latest missed slot if at most this late
    #[arg(long)]
    pub catch_up_deadline: Option<String>,
    /// The most snapshots one post-run prune may delete, 0 = no limit
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_deletes_per_run: Option<i64>,
    /// Regions to copy each new snapshot to, e.g. ams3,fra1; "none" for no
    /// copies (DigitalOcean droplets only)
    #[arg(long, value_name = "REGIONS")]
    pub copy_regions: Option<String>,
    #[command(flatten)]
    pub hooks: HookArgs,
}

impl SetFlags {
    /// The flags as the KEY=VALUE changes they stand for.
    fn changes(&self) -> Vec<String> {
        let k = &self.keep;
        let text = [
            ("schedule", self.schedule.clone()),
            ("timezone", self.timezone.clone()),
            ("retention", self.retention.clone()),
            ("keep_last", k.keep_last.map(|n| n.to_string())),
            ("keep_hourly", k.keep_hourly.map(|n| n.to_string())),
            ("keep_daily", k.keep_daily.map(|n| n.to_string())),
            ("keep_weekly", k.keep_weekly.map(|n| n.to_string())),
            ("keep_monthly", k.keep_monthly.map(|n| n.to_string())),
            ("keep_yearly", k.keep_yearly.map(|n| n.to_string())),
            ("keep_within", k.keep_within.clone()),
            ("desc", self.desc.clone()),
            ("fsfreeze", self.fsfreeze.map(|b| b.to_string())),
            ("max_age", self.max_age.clone()),
            ("catch_up_deadline", self.catch_up_deadline.clone()),
            (
                "max_deletes_per_run",
                self.max_deletes_per_run.map(|n| n.to_string()),
            ),
            ("copy_regions", self.copy_regions.clone()),
            ("pre_hook", self.hooks.pre_hook.clone()),
            ("post_hook", self.hooks.post_hook.clone()),
            ("hook_timeout", self.hooks.hook_timeout.clone()),
            (
                "on_pre_hook_failure",
                self.hooks.on_pre_hook_failure.clone(),
            ),
            ("on_failure", self.hooks.on_failure.clone()),
            ("on_success", self.hooks.on_success.clone()),
        ];
        text.into_iter()
            .filter_map(|(key, value)| Some(format!("{key}={}", value?)))
            .collect()
    }
}

/// Hook commands: a JSON array of strings (no shell) or one absolute path.
#[derive(Debug, Args)]
pub struct HookArgs {
    /// Run before the snapshot, e.g. '["/usr/local/sbin/pg-backup-start","--fast"]'
    /// [default: the provider's, else daemon's pre_hook]
    #[arg(long, value_name = "COMMAND")]
    pub pre_hook: Option<String>,
    /// Run once the provider has the snapshot's point in time (always after
    /// a pre hook that started)
    #[arg(long, value_name = "COMMAND")]
    pub post_hook: Option<String>,
    /// Kill a hook's process group after this long, 1s-1h [default: 5m]
    #[arg(long, value_name = "DURATION")]
    pub hook_timeout: Option<String>,
    /// abort (no snapshot) or continue (crash-consistent snapshot) when the
    /// pre hook fails [default: abort]
    #[arg(long, value_name = "abort|continue")]
    pub on_pre_hook_failure: Option<String>,
    /// Run after a run failed; gets SNAPSCHED_ERROR
    #[arg(long, value_name = "COMMAND")]
    pub on_failure: Option<String>,
    /// Run after a run succeeded
    #[arg(long, value_name = "COMMAND")]
    pub on_success: Option<String>,
}

impl HookArgs {
    /// Set the given flags on `spec`.
    fn apply_to(&self, spec: &mut DefinitionSpec) -> CliResult {
        let given = [
            ("pre_hook", &self.pre_hook),
            ("post_hook", &self.post_hook),
            ("hook_timeout", &self.hook_timeout),
            ("on_pre_hook_failure", &self.on_pre_hook_failure),
            ("on_failure", &self.on_failure),
            ("on_success", &self.on_success),
        ];
        let errors: Vec<definition::FieldError> = given
            .into_iter()
            .filter_map(|(key, value)| {
                let value = value.as_deref()?;
                spec.hooks.set_text(key, value).err()
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(field_errors(errors))
        }
    }
}

fn kind_of(cfg: &Config, provider: &str) -> CliResult<crate::domain::ProviderKind> {
    cfg.provider(provider).map(|p| p.kind).ok_or_else(|| {
        let known: Vec<&str> = cfg.providers.keys().map(String::as_str).collect();
        CliError::usage(format!(
            "provider '{provider}' is not configured in {} (configured: {})",
            cfg.path.display(),
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        ))
    })
}

fn field_errors(errors: Vec<definition::FieldError>) -> CliError {
    CliError::usage(
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// Refuse to edit a definition the config file manages.
pub fn ensure_cli_managed(def: &Definition) -> CliResult {
    if def.source == Source::Config {
        return Err(CliError::usage(format!(
            "definition {} is managed by {}: edit the file and reload",
            def.spec.identity,
            def.source_path.as_deref().unwrap_or("the config file")
        )));
    }
    Ok(())
}

/// An update that matched no row means the definition went away between
/// lookup and write (another process removed it): say so rather than
/// report a change that did not happen.
fn ensure_updated(changed: bool, spec: &DefinitionSpec) -> CliResult {
    if changed {
        Ok(())
    } else {
        Err(CliError::Runtime(anyhow::anyhow!(
            "definition {} was removed while it was being changed",
            spec.identity
        )))
    }
}

/// Apply `key=value` changes to a spec. Only the fields Erigones lets change
/// may change.
pub fn apply_changes(spec: &mut DefinitionSpec, changes: &[String]) -> CliResult {
    let mut errors = Vec::new();
    for change in changes {
        let Some((key, value)) = change.split_once('=') else {
            errors.push(format!(
                "'{change}' is not KEY=VALUE (e.g. retention=7 or \"schedule=0 3 * * *\")"
            ));
            continue;
        };
        if let Err(e) = apply_change(spec, key.trim(), value) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CliError::usage(errors.join("\n")))
    }
}

/// Apply one `key=value` change to a spec, or say what is wrong with it.
fn apply_change(spec: &mut DefinitionSpec, key: &str, value: &str) -> Result<(), String> {
    let bool_of = |v: &str| match v {
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        _ => Err(format!("{key}: '{v}' is not true or false")),
    };
    match key {
        "schedule" => {
            spec.parse_schedule(value)
                .map(|s| spec.schedule = s)
                .map_err(|e| e.to_string())
        }
        "timezone" | "tz" => {
            if value.is_empty() {
                spec.timezone = None;
                Ok(())
            } else {
                definition::parse_timezone(value)
                    .map(|z| spec.timezone = Some(z))
                    .map_err(|e| e.to_string())
            }
        }
        "retention" | "keep_last" => definition::parse_retention_text(value)
            .map(|n| spec.retention = n)
            .map_err(|e| e.to_string()),
        "keep_hourly" | "keep_daily" | "keep_weekly" | "keep_monthly" | "keep_yearly"
        | "keep_within" => apply_keep(spec, key, value),
        "active" => bool_of(value).map(|b| spec.active = b),
        "desc" => definition::parse_desc(value)
            .map(|d| spec.desc = d)
            .map_err(|e| e.to_string()),
        "fsfreeze" => bool_of(value).map(|b| spec.fsfreeze = b),
        "max_age" | "catch_up_deadline" | "max_deletes_per_run" => apply_limit(spec, key, value),
        "copy_regions" => {
            let list: Vec<String> = if value.trim() == "none" {
                Vec::new()
            } else {
                value
                    .split(',')
                    .map(|r| r.trim().to_owned())
                    .filter(|r| !r.is_empty())
                    .collect()
            };
            definition::parse_copy_regions(&list, &spec.target)
                .map(|regions| spec.copy_regions = regions)
                .map_err(|e| e.to_string())
        }
        k if HOOK_KEYS.contains(&k) => spec
            .hooks
            .set_text(k, value)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        "name" | "target" | "disk" | "disk_id" | "provider" => Err(format!(
            "{key} cannot be changed: provider, target, disk and name identify a definition; remove it and add a new one"
        )),
        other => Err(format!(
            "'{other}' is not a definition setting; settable: schedule, timezone, retention (keep_last), keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_within, active, desc, fsfreeze, max_age, catch_up_deadline, max_deletes_per_run, copy_regions, pre_hook, post_hook, hook_timeout, on_pre_hook_failure, on_failure, on_success"
        )),
    }
}

/// The retention tiers besides `retention` (`keep_last`).
fn apply_keep(spec: &mut DefinitionSpec, key: &str, value: &str) -> Result<(), String> {
    match key {
        "keep_hourly" | "keep_daily" | "keep_weekly" | "keep_monthly" | "keep_yearly" => {
            let field = match key {
                "keep_hourly" => "keep_hourly",
                "keep_daily" => "keep_daily",
                "keep_weekly" => "keep_weekly",
                "keep_monthly" => "keep_monthly",
                _ => "keep_yearly",
            };
            definition::parse_keep_count_text(field, value)
                .map(|n| {
                    let k = &mut spec.keep;
                    *match field {
                        "keep_hourly" => &mut k.hourly,
                        "keep_daily" => &mut k.daily,
                        "keep_weekly" => &mut k.weekly,
                        "keep_monthly" => &mut k.monthly,
                        _ => &mut k.yearly,
                    } = n
                })
                .map_err(|e| e.to_string())
        }
        "keep_within" => {
            if value.is_empty() || value == "none" {
                spec.keep.within = None;
                Ok(())
            } else {
                match definition::parse_duration("keep_within", value) {
                    Ok(d) if d.is_zero() => Err(format!(
                        "keep_within: '{value}' keeps nothing; give a positive duration such as 2d, or keep_within=none to turn it off"
                    )),
                    Ok(_) => definition::parse_keep_within(value)
                        .map(|d| spec.keep.within = Some(d))
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        }
        other => Err(format!("'{other}' is not a keep tier")),
    }
}

/// The settings that `none` (or empty) turns off: `max_age`,
/// `catch_up_deadline`, `max_deletes_per_run` (also `default`).
fn apply_limit(spec: &mut DefinitionSpec, key: &str, value: &str) -> Result<(), String> {
    match key {
        "max_age" => {
            if value.is_empty() || value == "none" {
                spec.max_age = None;
                Ok(())
            } else {
                definition::parse_max_age(value)
                    .map(|d| spec.max_age = Some(d))
                    .map_err(|e| e.to_string())
            }
        }
        "catch_up_deadline" => {
            if value.is_empty() || value == "none" {
                spec.catch_up_deadline = None;
                Ok(())
            } else {
                definition::parse_duration_in(
                    "catch_up_deadline",
                    value,
                    definition::DurationRange::CATCH_UP_DEADLINE,
                )
                .map(|d| spec.catch_up_deadline = Some(d))
                .map_err(|e| e.to_string())
            }
        }
        "max_deletes_per_run" => {
            if value.is_empty() || value == "none" || value == "default" {
                spec.max_deletes_per_run = None;
                Ok(())
            } else {
                match value.trim().parse::<i64>() {
                    Ok(n) => definition::parse_max_deletes("max_deletes_per_run", n)
                        .map(|n| spec.max_deletes_per_run = Some(n))
                        .map_err(|e| e.to_string()),
                    Err(_) => Err(format!(
                        "max_deletes_per_run: '{value}' is not a number: give 0-65536 (0 = no limit), or max_deletes_per_run=default for daemon.max_deletes_per_run"
                    )),
                }
            }
        }
        other => Err(format!("'{other}' is not a limit")),
    }
}

/// The keep tiers besides `retention`, as `daily 7, monthly 12`, or `-`.
fn keep_summary(s: &DefinitionSpec) -> String {
    let k = &s.keep;
    let mut parts: Vec<String> = [
        ("hourly", k.hourly),
        ("daily", k.daily),
        ("weekly", k.weekly),
        ("monthly", k.monthly),
        ("yearly", k.yearly),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(t, n)| format!("{t} {n}"))
    .collect();
    if let Some(d) = k.within {
        parts.push(format!("within {}", humantime::format_duration(d)));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

fn print_one(v: &DefinitionView, times: &Times) {
    let d = &v.definition;
    let s = &d.spec;
    let rows = [
        ("name", s.identity.name.clone()),
        ("provider", s.identity.provider.clone()),
        ("target", s.identity.target.clone()),
        ("disk", s.identity.disk_id.to_string()),
        ("schedule", s.schedule.source().to_owned()),
        ("timezone", v.zone.clone()),
        ("retention", s.retention.to_string()),
        ("keep", keep_summary(s)),
        ("active", s.active.to_string()),
        ("desc", s.desc.clone()),
        ("fsfreeze", s.fsfreeze.to_string()),
        (
            "max_age",
            s.max_age
                .map(|d| humantime::format_duration(d).to_string())
                .unwrap_or_else(|| "-".into()),
        ),
        (
            "max_deletes",
            s.max_deletes_per_run
                .map_or_else(|| "- (daemon default)".into(), |n| n.to_string()),
        ),
        (
            "copy_regions",
            if s.copy_regions.is_empty() {
                "-".into()
            } else {
                s.copy_regions.join(", ")
            },
        ),
        (
            "pre_hook",
            opt_shown(s.hooks.pre_hook.as_ref().map(ToString::to_string)),
        ),
        (
            "post_hook",
            opt_shown(s.hooks.post_hook.as_ref().map(ToString::to_string)),
        ),
        (
            "hook_timeout",
            opt_shown(
                s.hooks
                    .hook_timeout
                    .map(|d| humantime::format_duration(d).to_string()),
            ),
        ),
        (
            "on_pre_fail",
            opt_shown(s.hooks.on_pre_hook_failure.map(|o| o.as_str().to_owned())),
        ),
        (
            "on_failure",
            opt_shown(s.hooks.on_failure.as_ref().map(ToString::to_string)),
        ),
        (
            "on_success",
            opt_shown(s.hooks.on_success.as_ref().map(ToString::to_string)),
        ),
        (
            "source",
            match &d.source_path {
                Some(p) if d.source == Source::Config => format!("config ({p})"),
                _ => d.source.as_str().to_owned(),
            },
        ),
        (
            "next fire",
            v.next_fire
                .as_deref()
                .map_or_else(|| "-".into(), |t| times.text_relative(t)),
        ),
        ("created", times.at(d.created_at)),
        ("updated", times.at(d.updated_at)),
    ];
    for (k, val) in rows {
        println!("{k:<12} {}", crate::table::escape_controls(&val));
    }
}

/// A definition's own setting, or where the value comes from instead.
fn opt_shown(v: Option<String>) -> String {
    v.unwrap_or_else(|| "- (provider or daemon default)".into())
}

pub async fn run(cmd: DefCommand, ctx: &Context) -> CliResult {
    let cfg = ctx.config()?;
    let now = Utc::now();
    let default_tz = cfg.daemon.timezone;
    match cmd {
        DefCommand::Add(args) => add(*args, ctx, &cfg, now).await,
        DefCommand::Set {
            address,
            mut changes,
            flags,
        } => {
            changes.extend(flags.changes());
            if changes.is_empty() {
                return Err(CliError::usage(
                    "nothing to change: give KEY=VALUE pairs or flags, e.g. --retention 7 or \"schedule=0 3 * * *\"",
                ));
            }
            set(&address, &changes, ctx, &cfg, now).await
        }
        DefCommand::Rm {
            address,
            delete_snapshots,
            yes,
        } => rm(&address, delete_snapshots, yes, ctx, &cfg, now).await,
        DefCommand::Enable { address } => set_active(ctx, &cfg, &address, true, now).await,
        DefCommand::Disable { address } => set_active(ctx, &cfg, &address, false, now).await,
        DefCommand::List { json } => list(json, ctx, &cfg, now).await,
        DefCommand::Show { address, json } => {
            let store = ctx.open_store_read_only(&cfg).await?;
            let v = view(ctx.resolve(&store, &address).await?, default_tz, now);
            if json {
                return print_json(&v);
            }
            print_one(&v, &ctx.times(now));
            Ok(())
        }
    }
}

async fn add(args: AddArgs, ctx: &Context, cfg: &Config, now: DateTime<Utc>) -> CliResult {
    let default_tz = cfg.daemon.timezone;
    let kind = kind_of(cfg, &args.provider)?;
    let retention =
        match &args.retention {
            Some(r) => Some(r.trim().parse::<i64>().map_err(|_| {
                field_errors(vec![definition::parse_retention_text(r).unwrap_err()])
            })?),
            None => None,
        };
    let mut raw = RawDefinition {
        name: args.name.clone(),
        provider: args.provider.clone(),
        target: args.target.clone(),
        disk_id: Some(args.disk),
        schedule: args.schedule.clone(),
        timezone: args.timezone.clone(),
        retention,
        active: Some(!args.inactive),
        desc: args.desc.clone(),
        fsfreeze: Some(args.fsfreeze),
        max_age: args.max_age.clone(),
        max_deletes_per_run: args.max_deletes_per_run,
        catch_up_deadline: None,
        tags: None,
        copy_regions: args.copy_regions.clone(),
        ..RawDefinition::default()
    };
    args.keep.apply_to(&mut raw);
    let mut spec = raw.validate(kind).map_err(field_errors)?;
    args.hooks.apply_to(&mut spec)?;
    let store = ctx.open_store(cfg).await?;
    let def = store
        .insert_definition(&spec, Source::Cli, None, now)
        .await?;
    let v = view(def, default_tz, now);
    if args.json {
        return print_json(&v);
    }
    println!(
        "added {}; next fire {}",
        v.definition.spec.identity,
        v.next_fire.as_deref().map_or_else(
            || "- (inactive)".into(),
            |t| ctx.times(now).text_relative(t)
        )
    );
    Ok(())
}

async fn set(
    address: &Address,
    changes: &[String],
    ctx: &Context,
    cfg: &Config,
    now: DateTime<Utc>,
) -> CliResult {
    let store = ctx.open_store(cfg).await?;
    let def = ctx.resolve(&store, address).await?;
    ensure_cli_managed(&def)?;
    let mut spec = def.spec.clone();
    apply_changes(&mut spec, changes)?;
    if kind_of(cfg, &spec.identity.provider).ok() == Some(crate::domain::ProviderKind::DigitalOcean)
        && spec.fsfreeze
    {
        return Err(CliError::usage(
            "fsfreeze: is only supported by Erigones providers",
        ));
    }
    ensure_updated(store.update_definition(&spec, now).await?, &spec)?;
    println!("updated {}", spec.identity);
    Ok(())
}

async fn rm(
    address: &Address,
    delete_snapshots: bool,
    yes: bool,
    ctx: &Context,
    cfg: &Config,
    now: DateTime<Utc>,
) -> CliResult {
    let store = ctx.open_store(cfg).await?;
    let def = ctx.resolve(&store, address).await?;
    ensure_cli_managed(&def)?;
    if delete_snapshots {
        // A tag target's snapshots are its members', droplet by droplet
        // (those of droplets that left the tag too).
        let mut units = Vec::new();
        if def.spec.target.tag().is_some() {
            for m in store.members_of(&def.spec.identity).await? {
                if let Some((_, droplet)) = m.member_of() {
                    let mut unit = def.clone();
                    unit.spec = def.spec.for_member(droplet);
                    units.push(unit);
                }
            }
        } else {
            units.push(def.clone());
        }
        for unit in &units {
            refuse_held(&store, unit).await?;
        }
        confirm_delete(&def, yes)?;
        let (mut failed, mut held) = (0, 0);
        for unit in &units {
            let (provider, target) = ctx.provider_for(cfg, unit, &store)?;
            let report =
                crate::prune::delete_all_snapshots(&store, &provider, &unit.spec, &target, now)
                    .await
                    .map_err(CliError::Runtime)?;
            print!("{}", prune_report(&report, &ctx.times(now)));
            failed += report.failures().count();
            // A hold placed after the check above: the planner kept it.
            held += report
                .decisions
                .iter()
                .filter(|d| matches!(d.reasons.first(), Some(crate::retention::Reason::Held(_))))
                .count();
        }
        if failed > 0 {
            return Err(CliError::Runtime(anyhow::anyhow!(
                "{} snapshots could not be deleted; the definition is kept",
                failed
            )));
        }
        if held > 0 {
            return Err(CliError::Runtime(anyhow::anyhow!(
                "{held} held snapshots were kept; the definition is kept (release them with \
                 `snapsched snapshots release {} SNAPSHOT`)",
                def.spec.identity.name
            )));
        }
        store.delete_definition(&def.spec.identity).await?;
        println!("removed {} and its snapshots", def.spec.identity);
        return Ok(());
    }
    store.delete_definition(&def.spec.identity).await?;
    println!(
        "removed {}; its snapshots stay at the provider (see `snapsched snapshots --orphaned`)",
        def.spec.identity
    );
    Ok(())
}

/// `def rm --delete-snapshots` deletes nothing while the definition holds
/// snapshots: held snapshots are never deleted, and removing the
/// definition would leave holds that no command can release.
async fn refuse_held(store: &crate::store::Store, def: &Definition) -> CliResult {
    let id = &def.spec.identity;
    let held: Vec<String> = store
        .snapshot_records_on(&id.provider, &id.target, id.disk_id)
        .await?
        .into_iter()
        .filter(|r| r.identity == *id && r.state == crate::domain::RecordState::Present)
        .filter_map(|r| r.hold.map(|h| format!("{} ({})", r.snapshot, h.describe())))
        .collect();
    if held.is_empty() {
        return Ok(());
    }
    Err(CliError::usage(format!(
        "{id} has {} held snapshot{}: {}; nothing was deleted. Held snapshots are never \
         deleted: release them first (`snapsched snapshots release {name} SNAPSHOT`), or remove \
         the definition without --delete-snapshots (its snapshots stay at the provider)",
        held.len(),
        if held.len() == 1 { "" } else { "s" },
        held.join(", "),
        name = id.name
    )))
}

async fn list(json: bool, ctx: &Context, cfg: &Config, now: DateTime<Utc>) -> CliResult {
    let default_tz = cfg.daemon.timezone;
    let store = ctx.open_store_read_only(cfg).await?;
    let views: Vec<DefinitionView> = store
        .list_definitions()
        .await?
        .into_iter()
        .map(|d| view(d, default_tz, now))
        .collect();
    if json {
        return print_json(&views);
    }
    let times = ctx.times(now);
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            let s = &v.definition.spec;
            vec![
                s.identity.name.clone(),
                s.identity.provider.clone(),
                s.identity.target.clone(),
                s.identity.disk_id.to_string(),
                s.schedule.source().to_owned(),
                v.zone.clone(),
                s.retention.to_string(),
                if s.active { "yes" } else { "no" }.into(),
                v.definition.source.as_str().into(),
                v.next_fire
                    .as_deref()
                    .map_or_else(|| "-".into(), |t| times.text_relative(t)),
            ]
        })
        .collect();
    print_table(
        &[
            "Name",
            "Provider",
            "Target",
            "Disk",
            "Schedule",
            "Zone",
            "Retention",
            "Active",
            "Source",
            "Next fire",
        ],
        &rows,
    );
    Ok(())
}

async fn set_active(
    ctx: &Context,
    cfg: &Config,
    address: &Address,
    active: bool,
    now: DateTime<Utc>,
) -> CliResult {
    let store = ctx.open_store(cfg).await?;
    let def = ctx.resolve(&store, address).await?;
    ensure_cli_managed(&def)?;
    let mut spec = def.spec.clone();
    spec.active = active;
    ensure_updated(store.update_definition(&spec, now).await?, &spec)?;
    println!(
        "{} {}",
        if active { "enabled" } else { "disabled" },
        spec.identity
    );
    Ok(())
}

/// `def rm --delete-snapshots`: ask on a terminal, demand `--yes` elsewhere.
fn confirm_delete(def: &Definition, yes: bool) -> CliResult {
    let id = &def.spec.identity;
    confirm(
        yes,
        &format!("Delete every snapshot of {id} at the provider?"),
        &format!("def rm --delete-snapshots deletes every snapshot of {id} at the provider; add --yes to confirm"),
    )
}
