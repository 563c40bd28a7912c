//! `snapsched-bench`: one command that measures snapsched's scheduler at
//! scale beside tokio-cron-scheduler, the cron engine, store growth and API
//! efficiency, prints a table and writes a JSON report.
//!
//! Every scheduler measurement runs in a child process of its own (this
//! binary re-executed with the hidden `child` command), so CPU time and RSS
//! read from `/proc` belong to one system only.
//!
//! With `--postgres-url` (or `SNAPSCHED_BENCH_POSTGRES_URL`) the daemon is
//! also measured with its store on PostgreSQL, alone and as a cluster of
//! three, and the table sets those rows beside the SQLite ones.
//!
//! Run: `cargo run --release -p snapsched-bench -- [--quick] [--json PATH]
//! [--backend sqlite|postgres|both] [--postgres-url URL]`; `--api-only`
//! measures only the API request costs (per cycle, and fleets of droplets
//! hourly against one token's budget); `--idle-only` only the idle scenario
//! (CPU and RSS with nothing due) on SQLite, the cheap way to follow memory.

mod api;
mod cron;
mod fleet;
mod peer;
mod pg;
mod pgwire;
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
    /// Runs of "all due at one slot" per N and system (3 by default; 0
    /// leaves the scenario out, for a quick look at the spread rows).
    #[arg(long, value_name = "RUNS")]
    all_due_repeats: Option<usize>,
    /// Only the scheduler scenarios: leave out the cron engine, store
    /// growth and API efficiency.
    #[arg(long)]
    scale_only: bool,
    /// Only the idle scenario (nothing due: CPU and RSS) of each system at
    /// each N, on SQLite: no warm-up, no firing scenarios, no extras.
    #[arg(long, conflicts_with = "api_only")]
    idle_only: bool,
    /// Only the API request costs: requests per snapshot cycle, and fleets
    /// of droplets snapshotted hourly (`--fleet-sizes`) against the fake
    /// DigitalOcean API with the client-side limiter on.
    #[arg(long, conflicts_with = "scale_only")]
    api_only: bool,
    /// Fleet sizes (droplet definitions, comma-separated) for the request
    /// budget rows.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100,1000")]
    fleet_sizes: Vec<usize>,
    /// Which store backends to measure. PostgreSQL runs the scenarios at
    /// N = 10,000 and 100,000 (10,000 with --quick; --sizes overrides) on
    /// one node and on three, and adds failover.
    #[arg(long, value_enum, default_value = "both")]
    backend: BackendChoice,
    /// The PostgreSQL server for the PostgreSQL rows (each scenario in a
    /// schema of its own, dropped afterwards). Without it `--backend both`
    /// leaves the PostgreSQL rows out, saying so.
    #[arg(
        long,
        value_name = "URL",
        env = "SNAPSCHED_BENCH_POSTGRES_URL",
        hide_env_values = true
    )]
    postgres_url: Option<String>,
    #[command(subcommand)]
    command: Option<Hidden>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    Sqlite,
    Postgres,
    Both,
}

impl BackendChoice {
    fn sqlite(self) -> bool {
        self != BackendChoice::Postgres
    }
    fn postgres(self) -> bool {
        self != BackendChoice::Sqlite
    }
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
    /// Only the idle scenario (`--idle-only`).
    pub idle_only: bool,
    pub store_runs: u64,
    pub backend: BackendChoice,
    /// N on PostgreSQL.
    pub pg_sizes: Vec<usize>,
    /// Runs of "all due at once" per N and cluster size on PostgreSQL.
    pub pg_all_due_repeats: usize,
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
            idle_only: cli.idle_only,
            store_runs: 100_000,
            backend: cli.backend,
            pg_sizes: vec![10_000],
            pg_all_due_repeats: 1,
        }
    } else {
        Plan {
            quick: false,
            sizes: vec![1_000, 10_000, 100_000],
            idle_window_s: 60,
            spread_window_s: 60,
            all_due_repeats: 3,
            idle_only: cli.idle_only,
            store_runs: 1_000_000,
            backend: cli.backend,
            pg_sizes: vec![10_000, 100_000],
            pg_all_due_repeats: 1,
        }
    };
    let plan = Plan {
        all_due_repeats: cli.all_due_repeats.unwrap_or(plan.all_due_repeats),
        sizes: cli.sizes.clone().unwrap_or(plan.sizes.clone()),
        pg_sizes: cli.sizes.clone().unwrap_or(plan.pg_sizes.clone()),
        ..plan
    };
    let postgres = match postgres_server(cli.backend, cli.postgres_url.as_deref()) {
        Ok(_) if cli.idle_only => Err("not asked for (--idle-only)".to_owned()),
        Ok(p) => p,
        Err(e) => {
            eprintln!("snapsched-bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    let json = cli.json.clone();
    if cli.api_only {
        let fleet_sizes = cli.fleet_sizes.clone();
        return block_on(async move { api_only(json, fleet_sizes).await });
    }
    let no_peer = cli.no_peer;
    let extras = !cli.scale_only && !cli.idle_only;
    let fleet_sizes = cli.fleet_sizes.clone();
    block_on(async move { run(plan, json, no_peer, extras, postgres, fleet_sizes).await })
}

/// `--api-only`: the per-cycle costs and the fleet rows, nothing else.
async fn api_only(json: PathBuf, fleet_sizes: Vec<usize>) -> anyhow::Result<()> {
    eprintln!("API efficiency against the fake DigitalOcean and Erigones APIs");
    let api = api::measure().await?;
    let fleet = tokio::task::spawn_blocking(move || fleet::measure(&fleet_sizes)).await??;
    let mut t = String::new();
    report::api_lines(&mut t, &api);
    report::fleet_lines(&mut t, &fleet);
    print!("{t}");
    write_json(
        &json,
        &serde_json::json!({ "machine": procfs::machine(), "api": api, "fleet": fleet }),
    )
}

fn write_json(json: &std::path::Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    if let Some(dir) = json.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(json, serde_json::to_string_pretty(value)?)?;
    println!("JSON report: {}", json.display());
    Ok(())
}

/// The PostgreSQL server to measure on, or why the PostgreSQL rows are
/// left out; an error when they were asked for alone and cannot be run.
fn postgres_server(
    backend: BackendChoice,
    url: Option<&str>,
) -> anyhow::Result<Result<pg::PgServer, String>> {
    if !backend.postgres() {
        return Ok(Err("not asked for (--backend sqlite)".into()));
    }
    match url.map(str::trim).filter(|u| !u.is_empty()) {
        Some(u) => Ok(Ok(pg::PgServer::parse(u)?)),
        None if backend == BackendChoice::Postgres => anyhow::bail!(
            "--backend postgres needs --postgres-url URL or SNAPSCHED_BENCH_POSTGRES_URL \
             (e.g. postgres://postgres@127.0.0.1:5432/test)"
        ),
        None => Ok(Err(
            "no PostgreSQL server: give --postgres-url URL or set SNAPSCHED_BENCH_POSTGRES_URL"
                .into(),
        )),
    }
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
pub fn slot_in(lead: Duration) -> chrono::DateTime<Utc> {
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
    if plan.idle_only {
        return SystemResult::new(idle, Vec::new(), Outcome::default());
    }
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

async fn run(
    plan: Plan,
    json: PathBuf,
    no_peer: bool,
    extras: bool,
    postgres: Result<pg::PgServer, String>,
    fleet_sizes: Vec<usize>,
) -> anyhow::Result<()> {
    let (ticks, ticks_known) = procfs::clock_ticks();
    let sqlite = plan.backend.sqlite();
    if sqlite && !plan.idle_only {
        eprintln!("warm-up: one all-due run of each system at N=1000 (discarded)");
        for system in [System::Snapsched, System::Peer] {
            let at = slot_in(Duration::from_secs(3));
            measure(system, 1_000, Mode::AllDue { at }, ticks).await;
        }
    }
    let mut scale_results = Vec::new();
    for &n in plan.sizes.iter().filter(|_| sqlite) {
        let snapsched = scale(&plan, System::Snapsched, n, ticks).await;
        let peer = if no_peer {
            SystemResult::new(Outcome::default(), Vec::new(), Outcome::default())
        } else {
            scale(&plan, System::Peer, n, ticks).await
        };
        scale_results.push(ScaleResult { n, snapsched, peer });
    }
    let postgres = match postgres {
        Ok(server) => {
            let pg_plan = pg::PgPlan {
                idle_window_s: plan.idle_window_s,
                spread_window_s: plan.spread_window_s,
                all_due_repeats: plan.pg_all_due_repeats,
            };
            let mut results = Vec::new();
            for &n in &plan.pg_sizes {
                for nodes in [1, 3] {
                    results.push(pg::measure(&server, n, nodes, pg_plan, ticks).await);
                }
            }
            report::PgReport {
                server: Some(server.shown()),
                skipped: None,
                lease_ttl_s: pg::LEASE_TTL.as_secs(),
                results,
            }
        }
        Err(why) => report::PgReport {
            server: None,
            skipped: Some(why),
            lease_ttl_s: pg::LEASE_TTL.as_secs(),
            results: Vec::new(),
        },
    };
    let (mut cron, mut store, mut api, mut fleet) = (Vec::new(), None, None, None);
    if sqlite && extras {
        eprintln!("cron next-fire computations");
        cron = cron::measure();
        eprintln!("store growth ({} runs)", plan.store_runs);
        store = Some(store_growth::measure(plan.store_runs).await?);
        eprintln!("API efficiency against the fake DigitalOcean and Erigones APIs");
        api = Some(api::measure().await?);
        fleet = Some(tokio::task::spawn_blocking(move || fleet::measure(&fleet_sizes)).await??);
    }
    let report = report::Report {
        machine: procfs::machine(),
        clock_ticks_per_s: ticks,
        clock_ticks_from_getconf: ticks_known,
        plan,
        scale: scale_results,
        cron,
        store,
        api,
        fleet,
        postgres,
    };
    print!("{}", report.table());
    write_json(&json, &report)
}
