//! `snapsched-bench`: one command that measures snapsched's scheduler at
//! scale beside tokio-cron-scheduler, the cron engine, store growth and API
//! efficiency, prints a table and writes a JSON report.
//!
//! Every scheduler measurement runs in a child process of its own (this
//! binary re-executed with the hidden `child` command), so CPU time and RSS
//! read from `/proc` belong to one system only.
//!
//! Run: `cargo run --release -p snapsched-bench -- [--quick] [--json PATH]`.

mod api;
mod cron;
mod peer;
mod procfs;
mod report;
mod scenario;
mod snap;
mod stats;
mod store_growth;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DurationRound, Utc};
use clap::{Parser, Subcommand};

use report::{ScaleResult, SystemResult};
use scenario::{Mode, Outcome};

#[derive(Debug, Parser)]
#[command(name = "snapsched-bench")]
struct Cli {
    /// N = 1,000 and 10,000 only, short idle and spread windows, 100,000
    /// runs for store growth: a fast look, not the reference figures.
    #[arg(long)]
    quick: bool,
    /// Where to write the JSON report.
    #[arg(long, value_name = "PATH", default_value = "target/bench/report.json")]
    json: PathBuf,
    /// Only these N (comma-separated), overriding the default list.
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<usize>>,
    /// Leave the peer out (a quicker look at snapsched alone).
    #[arg(long)]
    no_peer: bool,
    #[command(subcommand)]
    command: Option<Hidden>,
}

#[derive(Debug, Subcommand)]
enum Hidden {
    /// Internal: a measured child process.
    #[command(hide = true, subcommand)]
    Child(ChildCommand),
}

#[derive(Debug, Subcommand)]
enum ChildCommand {
    /// The real `snapsched daemon`.
    Daemon {
        #[arg(long)]
        config: PathBuf,
    },
    /// tokio-cron-scheduler with N jobs.
    Peer(peer::PeerArgs),
}

/// How a run is sized.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub quick: bool,
    pub sizes: Vec<usize>,
    pub idle_window_s: u64,
    pub spread_window_s: u64,
    pub all_due_repeats: usize,
    pub store_runs: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Hidden::Child(ChildCommand::Daemon { config })) = &cli.command {
        // Exactly what the `snapsched` binary does for `snapsched daemon`.
        let args = [
            "snapsched".into(),
            "--config".into(),
            config.clone().into_os_string(),
            "daemon".into(),
        ];
        let inner = <snapsched::cli::Cli as Parser>::parse_from(args);
        return block_on(async move { inner.run().await.map_err(|e| anyhow::anyhow!("{e}")) });
    }
    if let Some(Hidden::Child(ChildCommand::Peer(args))) = cli.command {
        return block_on(peer::child(args));
    }
    let plan = if cli.quick {
        Plan {
            quick: true,
            sizes: vec![1_000, 10_000],
            idle_window_s: 10,
            spread_window_s: 15,
            all_due_repeats: 3,
            store_runs: 100_000,
        }
    } else {
        Plan {
            quick: false,
            sizes: vec![1_000, 10_000, 100_000],
            idle_window_s: 60,
            spread_window_s: 60,
            all_due_repeats: 3,
            store_runs: 1_000_000,
        }
    };
    let plan = Plan {
        sizes: cli.sizes.clone().unwrap_or(plan.sizes.clone()),
        ..plan
    };
    let json = cli.json.clone();
    let no_peer = cli.no_peer;
    block_on(async move { run(plan, json, no_peer).await })
}

fn block_on(f: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("snapsched-bench: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("snapsched-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The next whole second at least `lead` from now.
fn slot_in(lead: Duration) -> chrono::DateTime<Utc> {
    let t = Utc::now() + chrono::Duration::from_std(lead).unwrap_or_default();
    t.duration_trunc(chrono::Duration::seconds(1)).unwrap_or(t) + chrono::Duration::seconds(1)
}

#[derive(Clone, Copy)]
enum System {
    Snapsched,
    Peer,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Snapsched => "snapsched",
            System::Peer => "tokio-cron-scheduler",
        }
    }
}

async fn measure(system: System, n: usize, mode: Mode, ticks: f64) -> Outcome {
    let result = match system {
        System::Snapsched => snap::measure(n, mode, ticks).await,
        System::Peer => peer::measure(n, mode, ticks).await,
    };
    let out = result.unwrap_or_else(|e| Outcome {
        problems: vec![format!("{e:#}")],
        ..Outcome::default()
    });
    for p in &out.problems {
        eprintln!("  {} N={n}: {p}", system.name());
    }
    out
}

async fn scale(plan: &Plan, system: System, n: usize, ticks: f64) -> SystemResult {
    eprintln!("{} N={n}: idle {}s", system.name(), plan.idle_window_s);
    let idle = measure(
        system,
        n,
        Mode::Idle {
            window_s: plan.idle_window_s,
        },
        ticks,
    )
    .await;
    // The slot must come after the child is ready; start-up was just seen.
    // Filling the store (before the spawn) takes about a second per 10k.
    let lead =
        Duration::from_secs_f64(idle.startup_s.unwrap_or(30.0) * 1.5 + 3.0 + n as f64 / 10_000.0);
    let mut all_due = Vec::new();
    for r in 0..plan.all_due_repeats {
        eprintln!(
            "{} N={n}: all due at one slot, run {}",
            system.name(),
            r + 1
        );
        let at = slot_in(lead);
        all_due.push(measure(system, n, Mode::AllDue { at }, ticks).await);
    }
    eprintln!(
        "{} N={n}: spread over {}s",
        system.name(),
        plan.spread_window_s
    );
    let from = slot_in(lead + Duration::from_secs(1));
    let spread = measure(
        system,
        n,
        Mode::Spread {
            from,
            window_s: plan.spread_window_s,
        },
        ticks,
    )
    .await;
    SystemResult::new(idle, all_due, spread)
}

async fn run(plan: Plan, json: PathBuf, no_peer: bool) -> anyhow::Result<()> {
    let (ticks, ticks_known) = procfs::clock_ticks();
    eprintln!("warm-up: one all-due run of each system at N=1000 (discarded)");
    for system in [System::Snapsched, System::Peer] {
        let at = slot_in(Duration::from_secs(3));
        measure(system, 1_000, Mode::AllDue { at }, ticks).await;
    }
    let mut scale_results = Vec::new();
    for &n in &plan.sizes {
        let snapsched = scale(&plan, System::Snapsched, n, ticks).await;
        let peer = if no_peer {
            SystemResult::new(Outcome::default(), Vec::new(), Outcome::default())
        } else {
            scale(&plan, System::Peer, n, ticks).await
        };
        scale_results.push(ScaleResult { n, snapsched, peer });
    }
    eprintln!("cron next-fire computations");
    let cron = cron::measure();
    eprintln!("store growth ({} runs)", plan.store_runs);
    let store = store_growth::measure(plan.store_runs).await?;
    eprintln!("API efficiency against the fake DigitalOcean and Erigones APIs");
    let api = api::measure().await?;
    let report = report::Report {
        machine: procfs::machine(),
        clock_ticks_per_s: ticks,
        clock_ticks_from_getconf: ticks_known,
        plan,
        scale: scale_results,
        cron,
        store,
        api,
    };
    print!("{}", report.table());
    if let Some(dir) = json.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)?;
    println!("JSON report: {}", json.display());
    Ok(())
}
