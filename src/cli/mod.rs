//! The admin CLI: argument definitions and dispatch. One file per command
//! group; each turns its arguments into domain types, calls the library and
//! prints. Exit codes: 0 ok, 1 runtime failure, 2 usage or validation error.
//!
//! What commands share has one home each: [`context`] (configuration, store,
//! finding a definition by its address) and [`output`] (JSON, tables and
//! the renderings several commands print). A command module never imports
//! another command module.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::ConfigError;
use crate::store::StoreError;

pub mod context;
pub mod output;
pub mod owner;

pub mod check;
pub mod config_cmd;
pub mod daemon_cmd;
pub mod def;
pub mod gen;
pub mod history;
pub mod import;
pub mod nodes;
pub mod prune;
pub mod retention;
pub mod run_cmd;
pub mod schedule;
pub mod snapshots;
pub mod status;

/// Snapshot scheduler for cloud VM disks (DigitalOcean, Erigones / Danube Cloud)
///
/// Takes scheduled snapshots of DigitalOcean droplets and volumes and of
/// Erigones / Danube Cloud VM disks, and prunes each definition's own
/// snapshots by its retention policy.
///
/// Exit codes: 0 success, 1 runtime failure (provider, database), 2 usage or
/// validation error.
#[derive(Debug, Parser)]
#[command(name = "snapsched", version, propagate_version = true)]
pub struct Cli {
    /// Configuration file [default: $SNAPSCHED_CONFIG, else /etc/snapsched/config.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Database: a SQLite file or a postgres:// URL, overriding [daemon] database
    #[arg(long, global = true, value_name = "PATH|URL")]
    pub database: Option<String>,

    /// Log level or tracing filter, overriding [daemon] log_level
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Show times in UTC instead of the local zone (JSON is always UTC)
    #[arg(long, global = true)]
    pub utc: bool,

    /// Tables with every column and full times, not fitted to the terminal
    #[arg(long, global = true)]
    pub wide: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage snapshot definitions
    #[command(subcommand)]
    Def(def::DefCommand),
    /// Validate, show, print or apply the configuration
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Run the scheduler in the foreground (what the systemd unit starts)
    Daemon,
    /// Run a definition now (trigger manual) and wait for its end
    Run(run_cmd::RunArgs),
    /// Per definition: schedule, next fire, last run, last success, snapshots
    Status(status::StatusArgs),
    /// Runs, newest first
    History(history::HistoryArgs),
    /// Monitoring plugin (Nagios, Icinga, NRPE): exit 0 OK, 1 WARNING,
    /// 2 CRITICAL, 3 UNKNOWN, from the store alone
    Check(check::CheckArgs),
    /// Nodes sharing the store: daemons and CLI runs, their heartbeat age
    /// and the runs each holds
    Nodes(nodes::NodesArgs),
    /// Import definitions from a provider (Erigones' own snapshot definitions)
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Preview schedules
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Prune a definition's own snapshots beyond its retention
    Prune(prune::PruneArgs),
    /// Preview retention policies
    #[command(subcommand)]
    Retention(retention::RetentionCommand),
    /// List snapshots with their state
    Snapshots(snapshots::SnapshotsArgs),
    /// Print a shell completion script (bash, zsh or fish) to stdout
    Completions {
        #[arg(value_enum)]
        shell: gen::Shell,
    },
    /// Print the snapsched(1) man page (roff) to stdout, or write every page
    /// (snapsched(1) and one per subcommand) into a directory
    Man {
        /// Write snapsched.1, snapsched-def.1, snapsched-def-add.1, … into DIR
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// A failed command. `Usage` exits 2, `Runtime` exits 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{}", causes(.0))]
    Runtime(#[from] anyhow::Error),
}

/// The error and its causes, `: `-separated, leaving out a cause whose text
/// the message already holds (most of our errors quote their source), so
/// nothing is said twice.
fn causes(e: &anyhow::Error) -> String {
    let mut message = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Duplicate(_) | StoreError::Foreign { .. } => CliError::Usage(e.to_string()),
            other => CliError::Runtime(other.into()),
        }
    }
}

impl From<crate::wiring::WiringError> for CliError {
    fn from(e: crate::wiring::WiringError) -> Self {
        match e {
            crate::wiring::WiringError::Config(m) => CliError::Usage(m),
            crate::wiring::WiringError::Store(e) => e.into(),
        }
    }
}

impl CliError {
    pub fn usage(msg: impl Into<String>) -> Self {
        CliError::Usage(msg.into())
    }

    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) | CliError::Config(_) => ExitCode::from(2),
            CliError::Runtime(_) => ExitCode::from(1),
        }
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

impl Cli {
    /// Run the command.
    pub async fn run(self) -> CliResult {
        let ctx = context::Context::new(&self);
        match self.command {
            Command::Def(cmd) => def::run(cmd, &ctx).await,
            Command::Config(cmd) => config_cmd::run(cmd, &ctx).await,
            Command::Daemon => daemon_cmd::run(&ctx).await,
            Command::Run(args) => run_cmd::run(args, &ctx).await,
            Command::Status(args) => status::run(args, &ctx).await,
            Command::History(args) => history::run(args, &ctx).await,
            Command::Check(args) => check::run(args, &ctx).await,
            Command::Nodes(args) => nodes::run(args, &ctx).await,
            Command::Import(cmd) => import::run(cmd, &ctx).await,
            Command::Schedule(cmd) => schedule::run(cmd, &ctx).await,
            Command::Prune(args) => prune::run(args, &ctx).await,
            Command::Retention(cmd) => retention::run(cmd, &ctx).await,
            Command::Snapshots(args) => snapshots::run(args, &ctx).await,
            Command::Completions { shell } => gen::completions(shell),
            Command::Man { dir } => gen::man(dir.as_deref()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen on 127.0.0.1:9464: {source}")]
    struct Quoting {
        source: std::io::Error,
    }

    #[test]
    fn a_runtime_error_says_each_cause_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        let quoting = CliError::Runtime(Quoting { source: io() }.into());
        assert_eq!(
            quoting.to_string(),
            "cannot listen on 127.0.0.1:9464: Address already in use"
        );
        // A cause the message does not quote is still shown.
        let wrapped = CliError::Runtime(anyhow::Error::new(io()).context("starting the daemon"));
        assert_eq!(
            wrapped.to_string(),
            "starting the daemon: Address already in use"
        );
    }
}
