//! The snapsched side: the real daemon (`snapsched daemon`, re-executed from
//! this binary as `child daemon`) over a store filled with N definitions on
//! the in-memory fake provider.
//!
//! Start-up is spawn to sd_notify `READY=1` on a datagram socket we bind.
//! Dispatch instants come from the runs table: a run row is inserted when the
//! scheduler claims a slot (`created_at`, milliseconds), so lateness is
//! `created_at - slot`.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use snapsched::store::{ts_ms, Store};

use crate::procfs;
use crate::scenario::{self, Mode, Outcome};
use crate::stats::Lateness;

/// How long a child may take to become ready before it counts as timed out.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(300);

const FINAL_STATES: &str = "('succeeded', 'failed', 'skipped', 'missed', 'interrupted')";

/// Fill a new store with `n` active definitions on the fake provider, in one
/// transaction.
async fn fill(db: &Path, n: usize, schedule: &dyn Fn(usize) -> String) -> anyhow::Result<()> {
    let store = Store::open(db).await?;
    let now = ts_ms(Utc::now());
    let mut tx = store
        .sqlite_pool()
        .expect("the benchmark store is SQLite")
        .begin()
        .await?;
    for i in 0..n {
        let id = scenario::identity(i);
        sqlx::query(
            "INSERT INTO definitions (provider, target, disk_id, name, schedule, retention, active,
                 desc, fsfreeze, tags, source, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, 3, 1, '', 0, '[]', 'cli', ?, ?)",
        )
        .bind(&id.provider)
        .bind(&id.target)
        .bind(id.disk_id)
        .bind(&id.name)
        .bind(schedule(i))
        .bind(&now)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    store.close().await;
    Ok(())
}

fn write_config(dir: &Path, db: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            r#"[daemon]
database = "{}"
log_level = "warn"
shutdown_grace = "5s"

[providers.lab]
kind = "fake"
"#,
            db.display()
        ),
    )?;
    Ok(path)
}

/// Wait for `READY=1` on the notify socket; `None` on time-out.
pub(crate) fn wait_ready(sock: &UnixDatagram, deadline: Instant) -> Option<Instant> {
    let mut buf = vec![0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        sock.set_read_timeout(Some(left)).ok()?;
        let n = sock.recv(&mut buf).ok()?;
        if String::from_utf8_lossy(&buf[..n])
            .lines()
            .any(|l| l == "READY=1")
        {
            return Some(Instant::now());
        }
    }
}

fn stop(mut child: Child) {
    procfs::terminate(child.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

struct RunRow {
    slot: DateTime<Utc>,
    created: DateTime<Utc>,
    finished: Option<DateTime<Utc>>,
}

fn parse(t: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(t)?.with_timezone(&Utc))
}

async fn runs_between(
    store: &Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Vec<RunRow>> {
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT slot, created_at, finished_at FROM runs WHERE slot >= ? AND slot < ?
           AND trigger IN ('schedule', 'catchup')",
    )
    .bind(snapsched::store::ts(from))
    .bind(snapsched::store::ts(to))
    .fetch_all(store.sqlite_pool().expect("the benchmark store is SQLite"))
    .await?;
    rows.into_iter()
        .map(|(s, c, f)| {
            Ok(RunRow {
                slot: parse(&s)?,
                created: parse(&c)?,
                finished: f.as_deref().map(parse).transpose()?,
            })
        })
        .collect()
}

async fn final_count(
    store: &Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<usize> {
    let n: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM runs WHERE slot >= ? AND slot < ? AND state IN {FINAL_STATES}"
    ))
    .bind(snapsched::store::ts(from))
    .bind(snapsched::store::ts(to))
    .fetch_one(store.sqlite_pool().expect("the benchmark store is SQLite"))
    .await?;
    Ok(n as usize)
}

/// Run one measurement of the daemon with `n` definitions.
pub async fn measure(n: usize, mode: Mode, ticks: f64) -> anyhow::Result<Outcome> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("snapsched.db");
    let seconds: Vec<u32> = match mode {
        Mode::Spread { .. } => (0..n)
            .map(scenario::hashed_second)
            .collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    match mode {
        Mode::Idle { .. } => fill(&db, n, &|_| "0 0 1 1 *".to_owned()).await?,
        Mode::AllDue { at } => {
            let expr = scenario::at_expression(at);
            fill(&db, n, &|_| expr.clone()).await?
        }
        Mode::Spread { .. } => fill(&db, n, &|_| "H * * * * *".to_owned()).await?,
    }
    let config = write_config(dir.path(), &db)?;
    // Opened before the daemon: opening (journal mode, migrations check)
    // while it writes hard can fail with SQLITE_BUSY.
    let reader = Store::open(&db).await?;
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path)?;
    let log = std::fs::File::create(dir.path().join("daemon.log"))?;
    let started = Instant::now();
    let child = Command::new(std::env::current_exe()?)
        .args(["child", "daemon", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &sock_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let pid = child.id();
    let mut out = Outcome::default();
    let Some(ready) = wait_ready(&sock, started + READY_TIMEOUT) else {
        out.problems
            .push(format!("not ready within {}s", READY_TIMEOUT.as_secs()));
        stop(child);
        return Ok(out);
    };
    out.startup_s = Some((ready - started).as_secs_f64());
    // Keep reading STATUS= updates as systemd would: a full socket queue
    // would block the daemon's sends.
    let draining = Arc::new(AtomicBool::new(true));
    let drain = {
        let sock = sock.try_clone()?;
        let draining = draining.clone();
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while draining.load(Ordering::Relaxed) {
                let _ = sock.recv(&mut buf);
            }
        })
    };
    let result = drive(n, mode, pid, ticks, &reader, &seconds, &mut out).await;
    reader.close().await;
    stop(child);
    draining.store(false, Ordering::Relaxed);
    let _ = drain.join();
    if let Err(e) = result {
        out.problems.push(format!("{e:#}"));
    }
    if !out.problems.is_empty() {
        let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        if !tail.is_empty() {
            out.problems
                .push(format!("daemon log tail: {}", tail.join(" | ")));
        }
    }
    Ok(out)
}

async fn drive(
    n: usize,
    mode: Mode,
    pid: u32,
    ticks: f64,
    db: &Store,
    seconds: &[u32],
    out: &mut Outcome,
) -> anyhow::Result<()> {
    match mode {
        Mode::Idle { window_s } => {
            out.measure_idle(pid, ticks, window_s).await?;
            Ok(())
        }
        Mode::AllDue { at } => {
            if Utc::now() > at {
                out.problems
                    .push("ready after the slot: lateness includes start-up".into());
            }
            let to = at + chrono::Duration::seconds(1);
            out.expected = n;
            wait_final(
                db,
                pid,
                at,
                to,
                n,
                Duration::from_secs(60 + n as u64 / 500),
                out,
            )
            .await?;
            read_runs(db, at, to, true, out).await
        }
        Mode::Spread { from, window_s } => {
            let to = from + chrono::Duration::seconds(window_s as i64);
            if Utc::now() > from {
                out.problems.push("ready after the window opened".into());
            }
            out.expected = scenario::spread_expected(seconds, from, window_s);
            let until = (to - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(until).await;
            wait_final(
                db,
                pid,
                from,
                to,
                out.expected,
                Duration::from_secs(60),
                out,
            )
            .await?;
            read_runs(db, from, to, false, out).await
        }
    }
}

/// Poll the store until `want` runs in the slot range are final, then read
/// the peak RSS. Times out into `problems`, not an error.
async fn wait_final(
    store: &Store,
    pid: u32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    want: usize,
    limit: Duration,
    out: &mut Outcome,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + (to - Utc::now()).to_std().unwrap_or_default() + limit;
    loop {
        let done = final_count(store, from, to).await?;
        if done >= want {
            break;
        }
        if Instant::now() > deadline {
            out.problems.push(format!(
                "only {done} of {want} runs final {}s after the slots",
                limit.as_secs()
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    out.record_memory(pid)?;
    Ok(())
}

async fn read_runs(
    store: &Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    burst: bool,
    out: &mut Outcome,
) -> anyhow::Result<()> {
    let runs = runs_between(store, from, to).await?;
    out.dispatched = runs.len();
    let ms = |d: chrono::Duration| d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0;
    out.lateness = Some(Lateness::of(
        runs.iter().map(|r| ms(r.created - r.slot)).collect(),
    ));
    if let Some(last) = runs
        .iter()
        .map(|r| r.created - r.slot)
        .max()
        .filter(|_| burst)
    {
        // Every slot is the same instant: N over the time the burst took.
        let secs = (ms(last) / 1000.0).max(0.001);
        out.dispatch_per_s = Some(runs.len() as f64 / secs);
    }
    out.all_finished_s = runs
        .iter()
        .filter_map(|r| r.finished.map(|f| ms(f - r.slot) / 1000.0))
        .max_by(f64::total_cmp);
    Ok(())
}
