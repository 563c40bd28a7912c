//! What every command shares: where the configuration is, the store, and
//! finding a definition by its address.

use std::path::{Path, PathBuf};

use clap::Args;

use super::{Cli, CliError, CliResult};
use crate::config::{self, Config, Overrides};
use crate::domain::definition::{Definition, RawDefinition};
use crate::domain::Target;
use crate::provider::AnyProvider;
use crate::store::{self, Store};

/// `--provider/--target/--disk`: narrowing definitions that share a name.
#[derive(Debug, Clone, Default, Args)]
pub struct Filters {
    /// Only definitions on this provider
    #[arg(long)]
    pub provider: Option<String>,
    /// Only definitions on this target
    #[arg(long)]
    pub target: Option<String>,
    /// Only definitions on this disk
    #[arg(long)]
    pub disk: Option<u32>,
}

impl Filters {
    pub fn filter(&self) -> store::Filter {
        store::Filter {
            provider: self.provider.clone(),
            target: self.target.clone(),
            disk_id: self.disk,
        }
    }

    /// True when any filter is given.
    pub fn any(&self) -> bool {
        self.provider.is_some() || self.target.is_some() || self.disk.is_some()
    }
}

/// The keep-tier flags, shared by `def add` and `retention simulate`.
#[derive(Debug, Clone, Default, Args)]
pub struct KeepArgs {
    /// Keep the newest N snapshots (the same setting as --retention)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_last: Option<i64>,
    /// Keep the newest snapshot of each of the last N hours that have one
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_hourly: Option<i64>,
    /// Keep the newest snapshot of each of the last N days that have one
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_daily: Option<i64>,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_weekly: Option<i64>,
    /// Keep the newest snapshot of each of the last N months that have one
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_monthly: Option<i64>,
    /// Keep the newest snapshot of each of the last N years that have one
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_yearly: Option<i64>,
    /// Keep every snapshot made within this before the newest, e.g. 2d
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
}

impl KeepArgs {
    /// Copy the given flags into `raw`.
    pub fn apply_to(&self, raw: &mut RawDefinition) {
        raw.keep_last = self.keep_last.or(raw.keep_last);
        raw.keep_hourly = self.keep_hourly.or(raw.keep_hourly);
        raw.keep_daily = self.keep_daily.or(raw.keep_daily);
        raw.keep_weekly = self.keep_weekly.or(raw.keep_weekly);
        raw.keep_monthly = self.keep_monthly.or(raw.keep_monthly);
        raw.keep_yearly = self.keep_yearly.or(raw.keep_yearly);
        raw.keep_within = self.keep_within.clone().or(raw.keep_within.take());
    }
}

/// Addressing a definition: its name plus optional filters, needed when
/// several definitions share a name.
#[derive(Debug, Clone, Args)]
pub struct Address {
    /// Definition name
    pub name: String,
    #[command(flatten)]
    pub filters: Filters,
}

impl Address {
    pub fn filter(&self) -> store::Filter {
        self.filters.filter()
    }
}

/// What every command may need: where the config is and the overrides.
#[derive(Debug, Clone)]
pub struct Context {
    pub config_path: PathBuf,
    pub overrides: Overrides,
    /// `--utc`: human output in UTC rather than the local zone.
    pub utc: bool,
    /// `--wide`: every column, full times.
    pub wide: bool,
}

impl Context {
    pub fn new(cli: &Cli) -> Self {
        Context {
            config_path: config::resolve_path(cli.config.as_deref()),
            overrides: Overrides {
                database: cli.database.clone(),
                log_level: cli.log_level.clone(),
            },
            utc: cli.utc,
            wide: cli.wide,
        }
    }

    /// How this command shows times, as of `now`.
    pub fn times(&self, now: chrono::DateTime<chrono::Utc>) -> super::output::Times {
        super::output::Times::new(self.utc, now)
    }

    pub fn config(&self) -> CliResult<Config> {
        Ok(config::load(&self.config_path, &self.overrides)?)
    }

    /// Open the store for a command that changes it: created and migrated
    /// when needed.
    pub async fn open_store(&self, cfg: &Config) -> CliResult<Store> {
        if let crate::store::Location::Sqlite(path) = &cfg.daemon.database {
            super::owner::check(path)?;
        }
        Ok(crate::wiring::open_store(cfg).await?)
    }

    /// Open the store for a command that only reads it: never created,
    /// locked or migrated; a missing store is an error saying where it was
    /// looked for.
    pub async fn open_store_read_only(&self, cfg: &Config) -> CliResult<Store> {
        Ok(crate::wiring::open_store_read_only(cfg).await?)
    }

    /// Join the store as a CLI node for a command that drives a run, so
    /// that daemons see the run's owner alive (and take the run over if
    /// this process dies). Leave with [`crate::cluster::KeepAlive::leave`].
    pub async fn join_as_cli(
        &self,
        store: &Store,
        cfg: &Config,
    ) -> CliResult<crate::cluster::KeepAlive> {
        let m = crate::cluster::Membership::join(
            store,
            crate::domain::NodeRole::Cli,
            cfg.daemon.lease_ttl,
        )
        .await?;
        m.lease().guard_provider_requests();
        // Nodes that are gone (a CLI process killed on this host, a node
        // whose lease lapsed) are expired now, so that their runs can be
        // taken over by this process instead of blocking it.
        m.sweep().await?;
        Ok(m.keep_alive())
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Resolve an address to exactly one definition.
    pub async fn resolve(&self, store: &Store, address: &Address) -> CliResult<Definition> {
        // `--target tag:<name>/droplet:<id>` addresses one member of a tag
        // target: its definition, narrowed to that droplet.
        let member = address
            .filters
            .target
            .as_deref()
            .and_then(Target::from_canonical)
            .and_then(|t| match t {
                Target::Member { tag, droplet } => Some((Target::Tag(tag), droplet)),
                _ => None,
            });
        if let Some((tag, droplet)) = member {
            let mut filter = address.filter();
            filter.target = Some(tag.to_string());
            let mut found = store.find_definitions(&address.name, &filter).await?;
            if found.len() == 1 {
                let mut def = found.remove(0);
                def.spec = def.spec.for_member(droplet);
                return Ok(def);
            }
        }
        let mut found = store
            .find_definitions(&address.name, &address.filter())
            .await?;
        match found.len() {
            0 => Err(CliError::usage(format!(
                "no definition named '{}'{}; see `snapsched def list`",
                address.name,
                if address.filters.any() {
                    " matches the filters"
                } else {
                    ""
                }
            ))),
            1 => Ok(found.remove(0)),
            _ => Err(CliError::usage(format!(
                "{} definitions are named '{}'; narrow it with --provider, --target or --disk:\n{}",
                found.len(),
                address.name,
                found
                    .iter()
                    .map(|d| format!("  {}", d.spec.identity))
                    .collect::<Vec<_>>()
                    .join("\n")
            ))),
        }
    }

    /// The provider and parsed target of a definition, from `cfg`.
    pub fn provider_for(
        &self,
        cfg: &Config,
        def: &Definition,
        store: &Store,
    ) -> CliResult<(AnyProvider, Target)> {
        Ok(crate::wiring::provider_for(cfg, def, store)?)
    }
}

/// Ask `question` on a terminal; elsewhere refuse with `refusal` (which
/// should name `--yes`) unless `yes`. Not confirming is a usage error.
pub fn confirm(yes: bool, question: &str, refusal: &str) -> CliResult {
    use std::io::{BufRead, IsTerminal, Write};
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(refusal));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::Runtime(e.into()))?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(CliError::usage("not confirmed; nothing was deleted"))
    }
}
