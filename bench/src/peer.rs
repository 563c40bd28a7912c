//! The peer: tokio-cron-scheduler with the same N jobs, each recording the
//! instant it was called (the trivial work), in a child process of its own.
//!
//! The child prints `READY` once every job is added and the scheduler is
//! started, and, for the firing scenarios, writes `job fire_micros` lines to
//! a file at `until` and prints `DONE`. Jobs use the library's plain API
//! (`JobScheduler::new`, `Job::new`, `add`, `start`) with six-field
//! expressions, seconds first, as its README shows.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::procfs;
use crate::scenario::{self, Mode, Outcome};
use crate::stats::Lateness;

const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// Arguments of the hidden `child peer` command.
#[derive(Debug, clap::Args)]
pub struct PeerArgs {
    #[arg(long)]
    pub n: usize,
    /// idle, all or spread
    #[arg(long)]
    pub mode: String,
    /// Unix seconds: the all-due slot (all) or the window start (spread).
    #[arg(long, default_value_t = 0)]
    pub at: i64,
    /// Spread window in seconds.
    #[arg(long, default_value_t = 0)]
    pub window: u64,
    /// Unix seconds at which the fire records are written (all, spread).
    #[arg(long, default_value_t = 0)]
    pub until: i64,
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The child: build the scheduler, report readiness, record fires.
pub async fn child(args: PeerArgs) -> anyhow::Result<()> {
    let sched = JobScheduler::new().await?;
    let fires: Arc<Mutex<Vec<(u32, i64)>>> = Arc::new(Mutex::new(Vec::with_capacity(args.n)));
    let at = DateTime::from_timestamp(args.at, 0).unwrap_or_default();
    let all_expr = scenario::at_expression(at);
    for i in 0..args.n {
        let expr = match args.mode.as_str() {
            "idle" => "0 0 0 1 1 *".to_owned(),
            "all" => all_expr.clone(),
            "spread" => format!("{} * * * * *", scenario::hashed_second(i)?),
            other => anyhow::bail!("unknown peer mode '{other}'"),
        };
        let fires = fires.clone();
        let job = i as u32;
        sched
            .add(Job::new(expr, move |_id, _sched| {
                let now = Utc::now().timestamp_micros();
                if let Ok(mut f) = fires.lock() {
                    f.push((job, now));
                }
            })?)
            .await?;
    }
    sched.start().await?;
    println!("READY");
    std::io::stdout().flush()?;
    if args.until == 0 {
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
    // Done when every expected slot fired, or at `until` at the latest.
    let expected = match args.mode.as_str() {
        "all" => args.n,
        _ => {
            let seconds: Vec<u32> = (0..args.n)
                .map(scenario::hashed_second)
                .collect::<Result<_, _>>()?;
            scenario::spread_expected(&seconds, at, args.window)
        }
    };
    let until = DateTime::from_timestamp(args.until, 0).unwrap_or_default();
    let last_slot = at + chrono::Duration::seconds(args.window as i64);
    while Utc::now() < until {
        let fired = fires.lock().map(|f| f.len()).unwrap_or(0);
        if Utc::now() > last_slot && fired >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let records = fires.lock().map(|f| f.clone()).unwrap_or_default();
    if let Some(out) = &args.out {
        let mut text = String::with_capacity(records.len() * 24);
        for (job, micros) in records {
            text.push_str(&format!("{job} {micros}\n"));
        }
        std::fs::write(out, text)?;
    }
    println!("DONE");
    std::io::stdout().flush()?;
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

fn read_fires(path: &Path) -> anyhow::Result<Vec<(usize, DateTime<Utc>)>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .map(|l| {
            let (job, micros) = l
                .split_once(' ')
                .ok_or_else(|| anyhow::anyhow!("bad fire line '{l}'"))?;
            let t = DateTime::from_timestamp_micros(micros.parse()?)
                .ok_or_else(|| anyhow::anyhow!("bad instant '{micros}'"))?;
            Ok((job.parse()?, t))
        })
        .collect()
}

/// Run one measurement of the peer with `n` jobs.
pub async fn measure(n: usize, mode: Mode, ticks: f64) -> anyhow::Result<Outcome> {
    let dir = tempfile::tempdir()?;
    let fires_path = dir.path().join("fires.txt");
    let (mode_name, at, until, window) = match mode {
        Mode::Idle { .. } => ("idle", 0, 0, 0),
        Mode::AllDue { at } => (
            "all",
            at.timestamp(),
            at.timestamp() + 30 + (n as i64 / 1000),
            0,
        ),
        Mode::Spread { from, window_s } => (
            "spread",
            from.timestamp(),
            from.timestamp() + window_s as i64 + 10,
            window_s,
        ),
    };
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .args(["child", "peer", "--mode", mode_name])
        .args(["--n", &n.to_string()])
        .args(["--at", &at.to_string(), "--until", &until.to_string()])
        .args(["--window", &window.to_string()])
        .arg("--out")
        .arg(&fires_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel::<String>();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let mut out = Outcome::default();
    let wait_line = |want: &str, limit: Duration| -> Option<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l == want => return Some(Instant::now()),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    };
    let result: anyhow::Result<()> = async {
        let Some(ready) = wait_line("READY", READY_TIMEOUT) else {
            out.problems.push(format!(
                "not ready within {}s (adding {n} jobs)",
                READY_TIMEOUT.as_secs()
            ));
            return Ok(());
        };
        out.startup_s = Some((ready - started).as_secs_f64());
        match mode {
            Mode::Idle { window_s } => {
                out.measure_idle(pid, ticks, window_s).await?;
            }
            Mode::AllDue { at } => {
                if Utc::now() > at {
                    out.problems
                        .push("ready after the slot: lateness includes start-up".into());
                }
                let wait = (DateTime::from_timestamp(until, 0).unwrap_or_default() - Utc::now())
                    .to_std()
                    .unwrap_or_default();
                if wait_line("DONE", wait + Duration::from_secs(60)).is_none() {
                    out.problems.push("no fire records".into());
                    return Ok(());
                }
                out.record_memory(pid)?;
                let fires = read_fires(&fires_path)?;
                out.expected = n;
                let ms: Vec<f64> = fires
                    .iter()
                    .map(|(_, t)| (*t - at).num_microseconds().unwrap_or(0) as f64 / 1000.0)
                    .collect();
                record(&mut out, ms, true, until - at.timestamp());
            }
            Mode::Spread { from, window_s } => {
                if Utc::now() > from {
                    out.problems.push("ready after the window opened".into());
                }
                let seconds: Vec<u32> = (0..n)
                    .map(scenario::hashed_second)
                    .collect::<Result<_, _>>()?;
                let wait = (DateTime::from_timestamp(until, 0).unwrap_or_default() - Utc::now())
                    .to_std()
                    .unwrap_or_default();
                if wait_line("DONE", wait + Duration::from_secs(60)).is_none() {
                    out.problems.push("no fire records".into());
                    return Ok(());
                }
                out.record_memory(pid)?;
                let to = from + chrono::Duration::seconds(window_s as i64);
                out.expected = scenario::spread_expected(&seconds, from, window_s);
                let ms: Vec<f64> = read_fires(&fires_path)?
                    .into_iter()
                    .filter_map(|(job, t)| {
                        let slot = scenario::slot_of(t, *seconds.get(job)?);
                        (slot >= from && slot < to)
                            .then(|| (t - slot).num_microseconds().unwrap_or(0) as f64 / 1000.0)
                    })
                    .collect();
                record(&mut out, ms, false, until - to.timestamp());
            }
        }
        Ok(())
    }
    .await;
    procfs::terminate(pid);
    let _ = child.kill();
    let _ = child.wait();
    result?;
    Ok(out)
}

fn record(out: &mut Outcome, ms: Vec<f64>, burst: bool, waited_s: i64) {
    out.dispatched = ms.len();
    if out.dispatched < out.expected {
        out.problems.push(format!(
            "{} of {} jobs did not fire within {waited_s}s of their slot",
            out.expected - out.dispatched,
            out.expected
        ));
    }
    if burst {
        if let Some(last) = ms.iter().copied().max_by(f64::total_cmp) {
            out.dispatch_per_s = Some(ms.len() as f64 / (last / 1000.0).max(0.001));
        }
    }
    out.lateness = Some(Lateness::of(ms));
}
