//! `snapsched config check|show|default|apply`.

use clap::Subcommand;

use super::context::Context;
use super::output::print_json;
use super::CliResult;
use crate::config;
use crate::store::{ApplyMode, ConfigOutcome, Reconciled};
use crate::wiring;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate everything (syntax, unknown keys, providers, definitions,
    /// secrets) and report every problem; exit 0 when valid, 2 otherwise
    Check,
    /// Print the effective configuration (all layers), secrets redacted
    Show {
        /// Print JSON instead of TOML
        #[arg(long)]
        json: bool,
    },
    /// Print the commented example configuration
    Default,
    /// Reconcile the file's [[definitions]] into the store now, whatever
    /// version the store holds (daemons apply only a newer file)
    Apply {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: ConfigCommand, ctx: &Context) -> CliResult {
    match cmd {
        ConfigCommand::Default => {
            print!("{}", config::EXAMPLE);
            Ok(())
        }
        ConfigCommand::Check => {
            let cfg = config::check(ctx.config_path(), &ctx.overrides)?;
            println!(
                "{}: ok ({} providers, {} definitions)",
                ctx.config_path().display(),
                cfg.providers.len(),
                cfg.definitions.len()
            );
            Ok(())
        }
        ConfigCommand::Show { json } => {
            let cfg = ctx.config()?;
            let shown = crate::config::shown(&cfg).map_err(|e| {
                super::CliError::Runtime(anyhow::anyhow!("cannot encode the configuration: {e}"))
            })?;
            if json {
                print_json(&shown)
            } else {
                let text = toml::to_string_pretty(&shown).map_err(|e| {
                    super::CliError::Runtime(anyhow::anyhow!("cannot encode TOML: {e}"))
                })?;
                print!("{text}");
                Ok(())
            }
        }
        ConfigCommand::Apply { json } => {
            let cfg = ctx.config()?;
            let store = ctx.open_store(&cfg).await?;
            // An explicit apply wins over whatever version the store holds.
            let report = match wiring::apply_config(&cfg, &store, ApplyMode::Always).await? {
                ConfigOutcome::Applied { report, .. } => report,
                ConfigOutcome::Drift { .. } => Reconciled::default(),
            };
            if json {
                return print_json(&report);
            }
            println!(
                "added {}, updated {}, removed {}, unchanged {}",
                report.added.len(),
                report.updated.len(),
                report.removed.len(),
                report.unchanged
            );
            for (verb, ids) in [
                ("added", &report.added),
                ("updated", &report.updated),
                ("removed", &report.removed),
            ] {
                for id in ids {
                    println!("  {verb} {id}");
                }
            }
            Ok(())
        }
    }
}
