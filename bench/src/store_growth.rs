//! Store growth: bytes per recorded run, and the database size while a
//! million runs go through it with `history_keep` trimming, which must
//! level off.
//!
//! Each run goes through the store API as the run engine uses it: claim the
//! slot, one update to a succeeded row with snapshot name and id, then trim
//! the definition's history to `history_keep` (the default, 1,000). Runs are
//! spread over `DEFINITIONS` identities, so the table is capped at
//! `DEFINITIONS * history_keep` rows; sizes are taken after a WAL checkpoint.

use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use snapsched::domain::{Claim, RunState, Trigger};
use snapsched::run::RunOptions;
use snapsched::store::runs::Update;
use snapsched::store::Store;

use crate::scenario;

const DEFINITIONS: usize = 48;
/// Concurrent writers, as several runs end at once in the daemon.
const WRITERS: usize = 4;

#[derive(Debug, Clone, Serialize)]
pub struct StoreResult {
    pub runs: u64,
    pub definitions: usize,
    pub history_keep: u32,
    pub runs_per_s: f64,
    /// Growth per run while no trimming happens yet (rows and indexes).
    pub bytes_per_run: f64,
    /// (runs so far, database + WAL bytes after a checkpoint).
    pub size_after: Vec<(u64, u64)>,
    pub rows_at_end: i64,
}

async fn size(store: &Store, db: &Path) -> anyhow::Result<u64> {
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(store.sqlite_pool().expect("the benchmark store is SQLite"))
        .await?;
    let wal = db.with_extension("db-wal");
    Ok(std::fs::metadata(db)?.len() + std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0))
}

async fn record_runs(
    store: Store,
    writer: usize,
    from: u64,
    to: u64,
    keep: u32,
) -> anyhow::Result<()> {
    let base = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(20_000);
    for k in from..to {
        let def = (k as usize % (DEFINITIONS / WRITERS)) * WRITERS + writer;
        let id = scenario::identity(def);
        let slot = base + chrono::Duration::minutes(k as i64);
        let now = Utc::now();
        let Claim::Claimed(run) = store.claim_run(&id, slot, Trigger::Schedule, now).await? else {
            anyhow::bail!("slot {k} of {} was not claimable", id.name);
        };
        let name = snapsched::run::snapshot_name(&id.name, slot);
        let snap_id = format!("fake-{k}");
        store
            .update_run(
                &run,
                Update {
                    state: Some(RunState::Succeeded),
                    snapshot_name: Some(&name),
                    snapshot_id: Some(&snap_id),
                    add_attempt: true,
                    started: true,
                    ..Default::default()
                },
                now,
            )
            .await?;
        store.trim_history(&id, keep).await?;
    }
    Ok(())
}

pub async fn measure(total: u64) -> anyhow::Result<StoreResult> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("store.db");
    let store = Store::open(&db).await?;
    let keep = RunOptions::default().history_keep;
    let empty = size(&store, &db).await?;
    // Before trimming starts: every definition below history_keep.
    let untrimmed = (DEFINITIONS as u64 * u64::from(keep)).min(total);
    let steps: Vec<u64> = std::iter::once(untrimmed)
        .chain((1..=10).map(|i| total * i / 10))
        .filter(|&s| s >= untrimmed)
        .collect();
    let mut size_after = Vec::new();
    let mut done = 0u64;
    let started = Instant::now();
    let mut bytes_per_run = f64::NAN;
    for step in steps {
        if step <= done {
            continue;
        }
        // Writer w records runs whose index k satisfies k % WRITERS == w.
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..WRITERS {
            let store = store.clone();
            let (lo, hi) = (done / WRITERS as u64, step / WRITERS as u64);
            tasks.spawn(record_runs(store, w, lo, hi, keep));
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        done = step / WRITERS as u64 * WRITERS as u64;
        let bytes = size(&store, &db).await?;
        if size_after.is_empty() {
            bytes_per_run = (bytes - empty) as f64 / done.max(1) as f64;
        }
        eprintln!("  {done} runs: {bytes} bytes");
        size_after.push((done, bytes));
    }
    let runs_per_s = done as f64 / started.elapsed().as_secs_f64();
    let rows_at_end: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs")
        .fetch_one(store.sqlite_pool().expect("the benchmark store is SQLite"))
        .await?;
    store.close().await;
    Ok(StoreResult {
        runs: done,
        definitions: DEFINITIONS,
        history_keep: keep,
        runs_per_s,
        bytes_per_run,
        size_after,
        rows_at_end,
    })
}
