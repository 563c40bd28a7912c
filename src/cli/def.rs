//! `snapsched def add|set|rm|enable|disable|list|show`.

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

use super::context::{confirm, Address, Context, KeepArgs};
use super::output::{print_json, print_table, prune_report, view, DefinitionView};
use super::{CliError, CliResult};
use crate::config::Config;
use crate::domain::definition::{self, Definition, DefinitionSpec, RawDefinition, Source};

#[derive(Debug, Subcommand)]
pub enum DefCommand {
    /// Add a definition. The names hourly, daily, weekly and monthly without
    /// --schedule and --retention take Erigones' defaults (H H * * * / 30, ...)
    Add(Box<AddArgs>),
    /// Change a definition: KEY=VALUE pairs for schedule, timezone, retention
    /// (keep_last), keep_hourly, keep_daily, keep_weekly, keep_monthly,
    /// keep_yearly, keep_within, active, desc, fsfreeze, max_age,
    /// catch_up_deadline, max_deletes_per_run. Name, target and
    /// disk identify a definition and cannot change
    Set {
        #[command(flatten)]
        address: Address,
        /// Changes, e.g. retention=7 "schedule=0 3 * * *" active=false
        #[arg(required = true, value_name = "KEY=VALUE")]
        changes: Vec<String>,
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
    #[arg(long)]
    pub json: bool,
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
        let key = key.trim();
        let bool_of = |v: &str| match v {
            "true" | "yes" | "1" | "on" => Ok(true),
            "false" | "no" | "0" | "off" => Ok(false),
            _ => Err(format!("{key}: '{v}' is not true or false")),
        };
        let result: Result<(), String> = match key {
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
                        Ok(d) => {
                            spec.keep.within = Some(d);
                            Ok(())
                        }
                        Err(e) => Err(e.to_string()),
                    }
                }
            }
            "active" => bool_of(value).map(|b| spec.active = b),
            "desc" => definition::parse_desc(value)
                .map(|d| spec.desc = d)
                .map_err(|e| e.to_string()),
            "fsfreeze" => bool_of(value).map(|b| spec.fsfreeze = b),
            "max_age" => {
                if value.is_empty() || value == "none" {
                    spec.max_age = None;
                    Ok(())
                } else {
                    definition::parse_duration("max_age", value)
                        .map(|d| spec.max_age = Some(d))
                        .map_err(|e| e.to_string())
                }
            }
            "catch_up_deadline" => {
                if value.is_empty() || value == "none" {
                    spec.catch_up_deadline = None;
                    Ok(())
                } else {
                    definition::parse_duration("catch_up_deadline", value)
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
            "name" | "target" | "disk" | "disk_id" | "provider" => Err(format!(
                "{key} cannot be changed: provider, target, disk and name identify a definition; remove it and add a new one"
            )),
            other => Err(format!(
                "'{other}' is not a definition setting; settable: schedule, timezone, retention (keep_last), keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_within, active, desc, fsfreeze, max_age, catch_up_deadline, max_deletes_per_run"
            )),
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CliError::usage(errors.join("\n")))
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

fn print_one(v: &DefinitionView) {
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
            "source",
            match &d.source_path {
                Some(p) if d.source == Source::Config => format!("config ({p})"),
                _ => d.source.as_str().to_owned(),
            },
        ),
        (
            "next fire",
            v.next_fire.clone().unwrap_or_else(|| "-".into()),
        ),
        ("created", d.created_at.to_rfc3339()),
        ("updated", d.updated_at.to_rfc3339()),
    ];
    for (k, val) in rows {
        // A description (or a name) may come from outside: an Erigones
        // import, a config file.
        println!("{k:<11} {}", crate::table::escape_controls(&val));
    }
}

pub async fn run(cmd: DefCommand, ctx: &Context) -> CliResult {
    let cfg = ctx.config()?;
    let now = Utc::now();
    let default_tz = cfg.daemon.timezone;
    match cmd {
        DefCommand::Add(args) => add(*args, ctx, &cfg, now).await,
        DefCommand::Set { address, changes } => set(&address, &changes, ctx, &cfg, now).await,
        DefCommand::Rm {
            address,
            delete_snapshots,
            yes,
        } => rm(&address, delete_snapshots, yes, ctx, &cfg, now).await,
        DefCommand::Enable { address } => set_active(ctx, &cfg, &address, true, now).await,
        DefCommand::Disable { address } => set_active(ctx, &cfg, &address, false, now).await,
        DefCommand::List { json } => list(json, ctx, &cfg, now).await,
        DefCommand::Show { address, json } => {
            let store = ctx.open_store(&cfg).await?;
            let v = view(ctx.resolve(&store, &address).await?, default_tz, now);
            if json {
                return print_json(&v);
            }
            print_one(&v);
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
        ..RawDefinition::default()
    };
    args.keep.apply_to(&mut raw);
    let spec = raw.validate(kind).map_err(field_errors)?;
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
        v.next_fire.as_deref().unwrap_or("- (inactive)")
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
        confirm_delete(&def, yes)?;
        let (provider, target) = ctx.provider_for(cfg, &def, &store)?;
        let report = crate::prune::delete_all_snapshots(&store, &provider, &def.spec, &target, now)
            .await
            .map_err(CliError::Runtime)?;
        print!("{}", prune_report(&report));
        let failed = report.failures().count();
        if failed > 0 {
            return Err(CliError::Runtime(anyhow::anyhow!(
                "{} snapshots could not be deleted; the definition is kept",
                failed
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

async fn list(json: bool, ctx: &Context, cfg: &Config, now: DateTime<Utc>) -> CliResult {
    let default_tz = cfg.daemon.timezone;
    let store = ctx.open_store(cfg).await?;
    let views: Vec<DefinitionView> = store
        .list_definitions()
        .await?
        .into_iter()
        .map(|d| view(d, default_tz, now))
        .collect();
    if json {
        return print_json(&views);
    }
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
                v.next_fire.clone().unwrap_or_else(|| "-".into()),
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
