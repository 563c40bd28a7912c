//! `snapsched import erigones --provider P [--vm HOSTNAME] [--activate]
//! [--dry-run] [--json]`: turn the snapshot definitions Erigones keeps for
//! its VMs into snapsched definitions.
//!
//! Invariants: imported definitions are inactive unless `--activate` is
//! given, so a disk is never snapshotted by both Erigones and snapsched
//! before the operator has disabled Erigones' own definition; an identity
//! that already exists is never touched; every created definition is a whole
//! row and all of them are written in one transaction; `--dry-run` writes
//! nothing (not even a new, empty database). Planning is a pure function of
//! the listing and the existing identities ([`plan`]).

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::context::Context;
use super::output::{self, print_json};
use super::{CliError, CliResult};
use crate::config::Config;
use crate::domain::definition::{self, DefinitionSpec, Identity, RawDefinition, Source};
use crate::domain::ProviderKind;
use crate::provider::erigones::{Erigones, ErigonesDefinition};
use crate::provider::AnyProvider;

/// Erigones evaluates its schedules in UTC; imported definitions keep that.
pub const ERIGONES_TIMEZONE: &str = "UTC";

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Create definitions equivalent to Erigones' own snapshot definitions
    /// (name, disk, schedule in UTC, retention, desc, fsfreeze). They are
    /// added inactive: disable the definitions inside Erigones first, then
    /// enable ours (`snapsched def enable`), so no disk is snapshotted twice.
    /// Identities that already exist are skipped, as are definitions whose
    /// schedule or fields snapsched cannot accept.
    Erigones(ErigonesImportArgs),
}

#[derive(Debug, Args)]
pub struct ErigonesImportArgs {
    /// Provider section name of kind "erigones" from the configuration
    #[arg(long)]
    pub provider: String,
    /// Only this VM's definitions
    #[arg(long, value_name = "HOSTNAME")]
    pub vm: Option<String>,
    /// Add the definitions active (only after disabling them in Erigones)
    #[arg(long)]
    pub activate: bool,
    /// Show what would be created and skipped; write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the outcome as JSON
    #[arg(long)]
    pub json: bool,
}

/// What happens to one Erigones definition.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A new snapsched definition.
    Create(Box<DefinitionSpec>),
    /// Left out, with the reason.
    Skip(String),
}

/// One Erigones definition and what the import does with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub source: ErigonesDefinition,
    pub action: Action,
}

/// Why an identity that already exists is skipped, by identity.
pub type Existing = BTreeMap<Identity, String>;

/// Decide, for each listed Erigones definition, whether to create it or why
/// to skip it. `existing` maps identities already in the store to a short
/// description of where they come from. Pure: no I/O, no clock.
pub fn plan(
    listed: &[ErigonesDefinition],
    provider: &str,
    existing: &Existing,
    activate: bool,
) -> Vec<Planned> {
    let mut seen = BTreeSet::new();
    listed
        .iter()
        .map(|d| {
            let action = match to_spec(d, provider, activate) {
                Err(why) => Action::Skip(why),
                Ok(spec) => {
                    if let Some(why) = existing.get(&spec.identity) {
                        Action::Skip(format!("already defined ({why})"))
                    } else if !seen.insert(spec.identity.clone()) {
                        Action::Skip("listed twice by Erigones; imported once".to_owned())
                    } else {
                        Action::Create(Box::new(spec))
                    }
                }
            };
            Planned {
                source: d.clone(),
                action,
            }
        })
        .collect()
}

/// The snapsched definition equivalent to an Erigones one, validated as any
/// definition is; the error lists every field snapsched refuses.
fn to_spec(
    d: &ErigonesDefinition,
    provider: &str,
    activate: bool,
) -> Result<DefinitionSpec, String> {
    let raw = RawDefinition {
        name: d.name.clone(),
        provider: provider.to_owned(),
        target: d.hostname.clone(),
        disk_id: Some(d.disk_id),
        schedule: Some(d.schedule.clone()),
        timezone: Some(ERIGONES_TIMEZONE.to_owned()),
        retention: Some(d.retention),
        active: Some(activate),
        desc: Some(d.desc.clone()),
        fsfreeze: Some(d.fsfreeze),
        max_age: None,
        catch_up_deadline: None,
        tags: None,
        ..RawDefinition::default()
    };
    raw.validate(ProviderKind::Erigones).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// One line of the report.
#[derive(Debug, Serialize)]
struct ItemView {
    /// `create` or `skip`.
    action: &'static str,
    name: String,
    target: String,
    disk_id: i64,
    schedule: String,
    timezone: &'static str,
    retention: i64,
    desc: String,
    fsfreeze: bool,
    /// Whether the snapsched definition is (or would be) active.
    active: bool,
    /// Whether the definition is active inside Erigones.
    erigones_active: bool,
    reason: Option<String>,
}

/// The whole outcome, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Report {
    provider: String,
    vm: Option<String>,
    dry_run: bool,
    activate: bool,
    /// Created, or with `--dry-run` that would be created.
    created: usize,
    skipped: usize,
    items: Vec<ItemView>,
}

fn report(args: &ErigonesImportArgs, planned: &[Planned]) -> Report {
    let items: Vec<ItemView> = planned
        .iter()
        .map(|p| {
            let d = &p.source;
            let (action, reason) = match &p.action {
                Action::Create(_) => ("create", None),
                Action::Skip(why) => ("skip", Some(why.clone())),
            };
            ItemView {
                action,
                name: d.name.clone(),
                target: d.hostname.clone(),
                disk_id: d.disk_id,
                schedule: d.schedule.clone(),
                timezone: ERIGONES_TIMEZONE,
                retention: d.retention,
                desc: d.desc.clone(),
                fsfreeze: d.fsfreeze,
                active: matches!(p.action, Action::Create(_)) && args.activate,
                erigones_active: d.active,
                reason,
            }
        })
        .collect();
    let created = items.iter().filter(|i| i.action == "create").count();
    Report {
        provider: args.provider.clone(),
        vm: args.vm.clone(),
        dry_run: args.dry_run,
        activate: args.activate,
        created,
        skipped: items.len() - created,
        items,
    }
}

fn print_table(r: &Report) {
    let (create_word, skip_word) = if r.dry_run {
        ("would create", "would skip")
    } else {
        ("created", "skipped")
    };
    if !r.items.is_empty() {
        let rows: Vec<Vec<String>> = r
            .items
            .iter()
            .map(|i| {
                vec![
                    if i.action == "create" {
                        create_word
                    } else {
                        skip_word
                    }
                    .to_owned(),
                    i.name.clone(),
                    i.target.clone(),
                    i.disk_id.to_string(),
                    i.schedule.clone(),
                    i.retention.to_string(),
                    if i.action == "create" {
                        if i.active { "yes" } else { "no" }.to_owned()
                    } else {
                        "-".to_owned()
                    },
                    i.reason.clone().unwrap_or_else(|| "-".to_owned()),
                ]
            })
            .collect();
        output::print_table(
            &[
                "Action",
                "Name",
                "Target",
                "Disk",
                "Schedule (UTC)",
                "Retention",
                "Active",
                "Reason",
            ],
            &rows,
        );
    }
    let scope = match &r.vm {
        Some(vm) => format!("VM {vm}"),
        None => "all VMs".to_owned(),
    };
    let state = if r.activate { "active" } else { "inactive" };
    println!(
        "{create_word} {} definition{} ({state}), {skip_word} {}, of {} listed by {} for {scope}{}",
        r.created,
        if r.created == 1 { "" } else { "s" },
        r.skipped,
        r.items.len(),
        r.provider,
        if r.dry_run {
            "; dry run, nothing written"
        } else {
            ""
        }
    );
    if r.created > 0 && !r.activate && !r.dry_run {
        println!(
            "disable these definitions inside Erigones, then activate ours with `snapsched def enable NAME --provider {} --target HOST --disk N`",
            r.provider
        );
    }
    let twice = r
        .items
        .iter()
        .filter(|i| i.action == "create" && i.active && i.erigones_active)
        .count();
    if twice > 0 {
        println!(
            "warning: {twice} of them {} also active inside Erigones; disable those there, or both will snapshot the same disks",
            if twice == 1 { "is" } else { "are" }
        );
    }
}

/// The provider section, checked to be of kind erigones, and its client.
fn erigones_provider(cfg: &Config, name: &str) -> CliResult<Erigones> {
    let pcfg = cfg.provider(name).ok_or_else(|| {
        let known: Vec<String> = cfg
            .providers
            .values()
            .map(|p| format!("{} ({})", p.name, p.kind))
            .collect();
        CliError::usage(format!(
            "provider '{name}' is not configured in {} (configured: {}); import erigones needs a provider of kind erigones",
            cfg.path.display(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ))
    })?;
    if pcfg.kind != ProviderKind::Erigones {
        return Err(CliError::usage(format!(
            "provider '{name}' is of kind {}; import erigones needs a provider of kind erigones",
            pcfg.kind
        )));
    }
    match crate::wiring::build_provider(pcfg, None)
        .map_err(|e| CliError::usage(format!("providers.{name}: {e}")))?
    {
        AnyProvider::Erigones(p) => Ok(p),
        // The kind was checked above; another variant would be a bug in the registry.
        _ => Err(CliError::Runtime(anyhow::anyhow!(
            "providers.{name}: is of kind erigones but did not build an Erigones client"
        ))),
    }
}

/// Where existing definitions come from, for the skip reason.
fn existing_of(defs: Vec<definition::Definition>) -> Existing {
    defs.into_iter()
        .map(|d| {
            let from = match (d.source, d.source_path) {
                (Source::Config, Some(path)) => format!("in {path}"),
                (Source::Config, None) => "in the config file".to_owned(),
                (Source::Cli, _) => "from the CLI".to_owned(),
            };
            (d.spec.identity, from)
        })
        .collect()
}

pub async fn run(cmd: ImportCommand, ctx: &Context) -> CliResult {
    match cmd {
        ImportCommand::Erigones(args) => run_erigones(args, ctx).await,
    }
}

async fn run_erigones(args: ErigonesImportArgs, ctx: &Context) -> CliResult {
    let cfg = ctx.config()?;
    let provider = erigones_provider(&cfg, &args.provider)?;
    if let Some(vm) = &args.vm {
        definition::parse_target(vm, ProviderKind::Erigones)
            .map_err(|e| CliError::usage(format!("--vm: {}", e.message)))?;
    }

    let listed = provider
        .list_definitions(args.vm.as_deref())
        .await
        .map_err(|e| {
            let hint = if e.is_transient() {
                " (temporary; try again)"
            } else {
                ""
            };
            CliError::Runtime(anyhow::anyhow!(
                "import from provider {}: {}{hint}",
                args.provider,
                e.message
            ))
        })?;

    // A dry run only reads: it must not create the database just to find
    // it empty.
    let store = if args.dry_run {
        match crate::wiring::open_store_read_only(&cfg).await {
            Ok(store) => Some(store),
            Err(crate::wiring::WiringError::Store(crate::store::StoreError::Missing {
                ..
            })) => None,
            Err(e) => return Err(e.into()),
        }
    } else {
        Some(ctx.open_store(&cfg).await?)
    };
    let existing = match &store {
        Some(s) => existing_of(s.list_definitions().await?),
        None => Existing::new(),
    };
    let mut planned = plan(&listed, &args.provider, &existing, args.activate);

    if let (false, Some(store)) = (args.dry_run, &store) {
        let (indexes, specs): (Vec<usize>, Vec<DefinitionSpec>) = planned
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match &p.action {
                Action::Create(spec) => Some((i, (**spec).clone())),
                Action::Skip(_) => None,
            })
            .unzip();
        let inserted = store
            .insert_new_definitions(&specs, Source::Cli, Utc::now())
            .await?;
        // Another command may have added one between our read and our write.
        for (i, written) in indexes.into_iter().zip(inserted) {
            if !written {
                planned[i].action =
                    Action::Skip("already defined (added while importing)".to_owned());
            }
        }
    }

    let r = report(&args, &planned);
    if args.json {
        return print_json(&r);
    }
    print_table(&r);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(host: &str, name: &str, disk_id: u32, schedule: &str) -> ErigonesDefinition {
        ErigonesDefinition {
            hostname: host.to_owned(),
            name: name.to_owned(),
            disk_id: disk_id.into(),
            schedule: schedule.to_owned(),
            retention: 7,
            active: true,
            desc: format!("{name} of {host}"),
            fsfreeze: disk_id == 2,
        }
    }

    fn identity(host: &str, name: &str, disk_id: u32) -> Identity {
        Identity {
            provider: "dc1".to_owned(),
            target: host.to_owned(),
            disk_id,
            name: name.to_owned(),
        }
    }

    fn skip_reason(p: &Planned) -> &str {
        match &p.action {
            Action::Skip(why) => why,
            Action::Create(spec) => panic!("{} was not skipped", spec.identity),
        }
    }

    #[test]
    fn a_definition_maps_field_by_field_in_utc_and_inactive() {
        let planned = plan(
            &[def("web01", "daily", 2, "30 5 * * *")],
            "dc1",
            &Existing::new(),
            false,
        );
        let Action::Create(spec) = &planned[0].action else {
            panic!("not created: {planned:?}");
        };
        assert_eq!(spec.identity, identity("web01", "daily", 2));
        assert_eq!(spec.schedule.source(), "30 5 * * *");
        assert_eq!(spec.timezone.map(|z| z.name()), Some("UTC"));
        assert_eq!(spec.retention, 7);
        assert_eq!(spec.desc, "daily of web01");
        assert!(spec.fsfreeze);
        assert!(!spec.active, "imports must be inactive by default");
    }

    #[test]
    fn activate_makes_them_active() {
        let planned = plan(
            &[def("web01", "daily", 1, "30 5 * * *")],
            "dc1",
            &Existing::new(),
            true,
        );
        assert!(matches!(&planned[0].action, Action::Create(s) if s.active));
    }

    #[test]
    fn existing_identities_are_skipped_with_where_they_come_from() {
        let existing: Existing = [(identity("web01", "daily", 1), "from the CLI".to_owned())]
            .into_iter()
            .collect();
        let planned = plan(
            &[
                def("web01", "daily", 1, "30 5 * * *"),
                // Same name on another disk or VM is another identity.
                def("web01", "daily", 2, "30 5 * * *"),
                def("db01", "daily", 1, "30 5 * * *"),
            ],
            "dc1",
            &existing,
            false,
        );
        assert_eq!(skip_reason(&planned[0]), "already defined (from the CLI)");
        assert!(matches!(planned[1].action, Action::Create(_)));
        assert!(matches!(planned[2].action, Action::Create(_)));
    }

    #[test]
    fn the_same_identity_on_another_provider_is_not_existing() {
        let existing: Existing = [(
            Identity {
                provider: "dc2".to_owned(),
                ..identity("web01", "daily", 1)
            },
            "from the CLI".to_owned(),
        )]
        .into_iter()
        .collect();
        let planned = plan(
            &[def("web01", "daily", 1, "30 5 * * *")],
            "dc1",
            &existing,
            false,
        );
        assert!(matches!(planned[0].action, Action::Create(_)));
    }

    #[test]
    fn refused_fields_are_skipped_with_the_parser_message() {
        let mut long_desc = def("web01", "weekly", 1, "0 3 * * 0");
        long_desc.desc = "d".repeat(129);
        let mut huge_retention = def("web01", "monthly", 1, "0 3 1 * *");
        huge_retention.retention = 70_000;
        let cases = [
            (
                def("web01", "bad", 1, "61 * * * *"),
                "schedule: '61 * * * *'",
            ),
            (def("web01", "short", 1, "* * *"), "schedule: '* * *'"),
            (def("web 01", "daily", 1, "0 3 * * *"), "target:"),
            (def("web01", "toolongname", 1, "0 3 * * *"), "name:"),
            (long_desc, "desc:"),
            (huge_retention, "retention:"),
        ];
        for (d, want) in cases {
            let planned = plan(std::slice::from_ref(&d), "dc1", &Existing::new(), false);
            let why = skip_reason(&planned[0]);
            assert!(why.contains(want), "{d:?}: reason {why:?} lacks {want:?}");
        }
    }

    #[test]
    fn a_definition_listed_twice_is_created_once() {
        let d = def("web01", "daily", 1, "30 5 * * *");
        let planned = plan(&[d.clone(), d], "dc1", &Existing::new(), false);
        assert!(matches!(planned[0].action, Action::Create(_)));
        assert!(skip_reason(&planned[1]).contains("listed twice"));
    }

    #[test]
    fn erigones_weekday_zero_is_sunday_and_accepted() {
        let planned = plan(
            &[def("web01", "weekly", 1, "15 2 * * 0")],
            "dc1",
            &Existing::new(),
            false,
        );
        assert!(
            matches!(planned[0].action, Action::Create(_)),
            "{planned:?}"
        );
    }
}
