//! SQLite's one writer in this process, with group commit.
//!
//! SQLite lets one connection write at a time. A connection that finds the
//! write lock taken sleeps in its busy handler (1, 2, 5, 10, … ms) before
//! it looks again, however soon the lock is free, and each commit writes
//! every page it changed to the WAL again. With many runs in flight both
//! costs dominate: runs would finish a few hundred a second.
//!
//! So within one process every write goes through one [`Writer`]:
//! - Writers queue on its async mutex, in order, without sleeping; the
//!   busy handler is left to other processes (the CLI beside the daemon).
//! - A writer's transaction is a savepoint inside the writer's open
//!   *batch* transaction (`BEGIN IMMEDIATE` on a pooled connection). When
//!   it commits and no other writer is queued, it commits the batch; when
//!   others are queued, it hands the batch on and waits for the batch's
//!   commit. Either way [`WriteTx::commit`] returns only once its writes
//!   are committed (or the batch failed: then every writer of the batch
//!   gets the error, and none of its writes stand).
//! - A writer that hands the batch on also spawns a flush: it queues for
//!   the mutex behind the writers it saw, and commits the batch if it is
//!   still open by then. So a batch is committed even when the writers
//!   queued behind it went away (cancelled, failed), and no batch grows
//!   without bound: the flush comes after the writers queued at hand-off.
//! - A write of one statement ([`Writer::begin_statement`]) sets no
//!   savepoint: the statement is atomic by itself.
//! - A writer dropped without committing rolls back to its savepoint
//!   before the next one writes (a spawned task does it, holding the
//!   mutex); the batch goes on without it, or ends when nobody else's
//!   writes are in it.
//!
//! Reads never come here: in WAL mode they do not wait on the writer, and
//! they see a batch only once it is committed.
//!
//! Checkpoints (copying the WAL's pages back into the database file) run
//! beside the writer, not in it: every [`CHECKPOINT_EVERY`] committed
//! batches the writer starts a passive checkpoint on a pooled connection of
//! its own (SQLite's own thread), unless the last one is still running.
//! SQLite's automatic checkpoint would run it in the committing
//! connection, between two batches, and a burst of claims would wait for
//! it; the pool's connections keep it only as a backstop for a WAL that
//! outgrows the checkpoints (see `WAL_AUTOCHECKPOINT_PAGES`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::future::{FutureExt, Shared};
use futures_util::TryFutureExt;
use sqlx::sqlite::{Sqlite, SqliteConnection, SqlitePool};
use sqlx::Transaction;
use tokio::sync::{oneshot, Mutex, OwnedMutexGuard};
use tokio::task::JoinHandle;

use super::{StoreError, StoreResult};

/// What every writer of a batch learns when it ends: `Err` carries the
/// commit's error as text (it reaches every writer of the batch).
type Outcome = Result<(), Arc<str>>;
type Done = Shared<
    futures_util::future::UnwrapOrElse<
        oneshot::Receiver<Outcome>,
        fn(oneshot::error::RecvError) -> Outcome,
    >,
>;

fn closed(_: oneshot::error::RecvError) -> Outcome {
    Err("the store was closed before the write was committed".into())
}

const SAVEPOINT: &str = "SAVEPOINT snapsched_write";
const RELEASE: &str = "RELEASE snapsched_write";
const ROLLBACK_TO: &str = "ROLLBACK TO snapsched_write; RELEASE snapsched_write";

/// Committed batches between two checkpoints started by the writer.
const CHECKPOINT_EVERY: u64 = 16;

/// The process's writer of one SQLite pool; shared by the pool's clones.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    state: Arc<Mutex<State>>,
    /// Writers waiting in [`Writer::begin`] for the mutex.
    queued: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    batch: Option<Batch>,
    /// A writer left without committing: roll back to its savepoint first.
    undo: bool,
    /// The id of the last batch opened.
    last_batch: u64,
    /// Batches committed, and the writes they held.
    committed: (u64, u64),
    /// Batches committed since the last checkpoint started.
    since_checkpoint: u64,
    /// The last checkpoint started, running or done.
    checkpoint: Option<JoinHandle<()>>,
}

struct Batch {
    tx: Transaction<'static, Sqlite>,
    /// The pool the batch's connection came from (for the checkpoint).
    pool: SqlitePool,
    id: u64,
    /// Writers whose writes are in the batch, waiting for its commit.
    writes: u64,
    done: Option<oneshot::Sender<Outcome>>,
    waiting: Done,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("id", &self.id)
            .field("writes", &self.writes)
            .finish_non_exhaustive()
    }
}

/// Counts a writer in [`Writer::queued`] while it waits (also when its
/// future is dropped while waiting).
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Writer {
    /// Start a write transaction: queue for the mutex, open a batch if
    /// none is open, and set this writer's savepoint.
    pub async fn begin(self: &Arc<Self>, pool: &SqlitePool) -> StoreResult<WriteTx> {
        self.start(pool, true).await
    }

    /// Start a write of one statement: as [`Writer::begin`], without the
    /// savepoint (one statement is atomic by itself; two more round trips
    /// to SQLite's thread per write are what the savepoint would cost).
    pub async fn begin_statement(self: &Arc<Self>, pool: &SqlitePool) -> StoreResult<WriteTx> {
        self.start(pool, false).await
    }

    async fn start(self: &Arc<Self>, pool: &SqlitePool, savepoint: bool) -> StoreResult<WriteTx> {
        let mut guard = {
            self.queued.fetch_add(1, Ordering::SeqCst);
            let _queued = Queued(&self.queued);
            self.state.clone().lock_owned().await
        };
        settle(&mut guard).await;
        if guard.batch.is_none() {
            let tx = begin_immediate(pool).await?;
            let (sender, receiver) = oneshot::channel();
            let waiting = receiver
                .unwrap_or_else(closed as fn(oneshot::error::RecvError) -> Outcome)
                .shared();
            guard.last_batch += 1;
            guard.batch = Some(Batch {
                tx,
                pool: pool.clone(),
                id: guard.last_batch,
                writes: 0,
                done: Some(sender),
                waiting,
            });
        }
        let set = match guard.batch.as_mut() {
            Some(b) if savepoint => exec(&mut b.tx, SAVEPOINT).await,
            _ => Ok(()),
        };
        if let Err(e) = set {
            // The batch's transaction is broken: end it for everyone.
            let message: Arc<str> = e.to_string().into();
            end_batch(&mut guard, Err(message)).await;
            return Err(e.into());
        }
        Ok(WriteTx {
            guard: Some(guard),
            writer: self.clone(),
            savepoint,
        })
    }

    /// End the open batch, if any (before the pool closes: its
    /// connection would otherwise keep the close waiting). Writes already
    /// in it are committed; their writers learn so.
    pub async fn finish(&self) {
        let mut guard = self.state.lock().await;
        settle(&mut guard).await;
        end_batch(&mut guard, Ok(())).await;
    }

    /// Writers waiting for their turn now.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Batches committed so far, and the writes they held.
    #[cfg(test)]
    async fn committed(&self) -> (u64, u64) {
        self.state.lock().await.committed
    }
}

/// Run fixed statements (no arguments) on `conn`.
async fn exec(conn: &mut SqliteConnection, sql: &'static str) -> Result<(), sqlx::Error> {
    use sqlx::Executor;
    conn.execute(sqlx::raw_sql(sql)).await.map(drop)
}

/// `BEGIN IMMEDIATE` on a pooled connection. A connection left inside a
/// transaction by a failed commit (a full disk) is closed and another
/// taken (see [`super::backend`]).
async fn begin_immediate(pool: &SqlitePool) -> StoreResult<Transaction<'static, Sqlite>> {
    match pool.begin_with("BEGIN IMMEDIATE").await {
        Err(sqlx::Error::InvalidSavePointStatement) => {
            super::backend::close_stuck_sqlite_connections(pool).await;
            Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
        }
        other => Ok(other?),
    }
}

/// Undo the savepoint of a writer that left without committing.
async fn settle(state: &mut State) {
    if !std::mem::take(&mut state.undo) {
        return;
    }
    let Some(batch) = state.batch.as_mut() else {
        return;
    };
    if let Err(e) = exec(&mut batch.tx, ROLLBACK_TO).await {
        end_batch(state, Err(e.to_string().into())).await;
    }
}

/// After a writer left without committing: a batch nobody else waits on
/// is ended now (committing what single statements wrote, as autocommit
/// would have), so the file's write lock is not kept.
async fn after_abandon(state: &mut State) {
    settle(state).await;
    if state.batch.as_ref().is_some_and(|b| b.writes == 0) {
        end_batch(state, Ok(())).await;
    }
}

/// Commit (`Ok`) or roll back (`Err`) the open batch and tell its writers.
/// Returns the commit's own error, if any.
async fn end_batch(state: &mut State, outcome: Outcome) -> Option<sqlx::Error> {
    let Batch {
        tx,
        pool,
        mut done,
        writes,
        ..
    } = state.batch.take()?;
    let (outcome, error) = match outcome {
        Ok(()) => match tx.commit().await {
            Ok(()) => {
                state.committed.0 += 1;
                state.committed.1 += writes;
                state.since_checkpoint += 1;
                start_checkpoint(state, pool);
                (Ok(()), None)
            }
            Err(e) => (Err(Arc::<str>::from(e.to_string())), Some(e)),
        },
        Err(message) => {
            let _ = tx.rollback().await;
            (Err(message), None)
        }
    };
    if let Some(done) = done.take() {
        let _ = done.send(outcome);
    }
    error
}

/// Start a passive checkpoint on a connection of its own when
/// [`CHECKPOINT_EVERY`] batches were committed since the last one and that
/// one is done. Passive: it copies what no reader still needs and never
/// waits for a lock, so neither the writer nor the readers wait for it.
fn start_checkpoint(state: &mut State, pool: SqlitePool) {
    if state.since_checkpoint < CHECKPOINT_EVERY
        || state.checkpoint.as_ref().is_some_and(|c| !c.is_finished())
    {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    state.since_checkpoint = 0;
    state.checkpoint = Some(runtime.spawn(async move {
        let checkpoint = async {
            let mut conn = pool.acquire().await?;
            exec(&mut conn, "PRAGMA wal_checkpoint(PASSIVE)").await
        };
        // The next one, or SQLite's own, copies what this one did not.
        if let Err(e) = checkpoint.await {
            tracing::debug!("WAL checkpoint beside the writer failed: {e}");
        }
    }));
}

/// One writer's transaction: a savepoint in the batch, holding the mutex
/// until it commits or is dropped.
pub(crate) struct WriteTx {
    guard: Option<OwnedMutexGuard<State>>,
    writer: Arc<Writer>,
    /// Set by [`Writer::begin`]; a single statement has none.
    savepoint: bool,
}

impl WriteTx {
    /// The batch's connection, inside this writer's savepoint.
    pub fn conn(&mut self) -> &mut SqliteConnection {
        let batch = self
            .guard
            .as_mut()
            .and_then(|g| g.batch.as_mut())
            .expect("a write holds the writer and its open batch until it ends");
        &mut batch.tx
    }

    /// Keep this writer's writes; returns once they are committed.
    pub async fn commit(mut self) -> StoreResult<()> {
        let Some(mut guard) = self.guard.take() else {
            return Err(StoreError::Uncommitted(
                "the write was already ended".into(),
            ));
        };
        let Some(batch) = guard.batch.as_mut() else {
            return Err(StoreError::Uncommitted("the batch is gone".into()));
        };
        if self.savepoint {
            if let Err(e) = exec(&mut batch.tx, RELEASE).await {
                end_batch(&mut guard, Err(e.to_string().into())).await;
                return Err(e.into());
            }
        }
        batch.writes += 1;
        if self.writer.queued.load(Ordering::SeqCst) == 0 {
            return match end_batch(&mut guard, Ok(())).await {
                None => Ok(()),
                Some(e) => Err(e.into()),
            };
        }
        // Others are queued: they write into this batch; a flush behind
        // them commits it if none of them does.
        let id = batch.id;
        let waiting = batch.waiting.clone();
        drop(guard);
        let flush = self.writer.clone();
        tokio::spawn(async move { flush.flush(id).await });
        waiting
            .await
            .map_err(|m| StoreError::Uncommitted(m.to_string()))
    }
}

impl Writer {
    /// Commit batch `id` if it is still open once the writers queued now
    /// have had their turn.
    async fn flush(&self, id: u64) {
        let mut guard = self.state.lock().await;
        settle(&mut guard).await;
        if guard.batch.as_ref().is_some_and(|b| b.id == id) {
            end_batch(&mut guard, Ok(())).await;
        }
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        let Some(mut guard) = self.guard.take() else {
            return;
        };
        guard.undo = self.savepoint;
        // Undo it now, holding the mutex, so the file's write lock is not
        // kept by a batch nobody continues. (Outside a runtime the next
        // writer undoes it.)
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let mut guard = guard;
                after_abandon(&mut guard).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::time::Duration;

    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
    use sqlx::{ConnectOptions, Connection, Row};

    use super::*;

    /// A pool on a new WAL file with one table `t (k TEXT PRIMARY KEY)`.
    async fn pool() -> (SqlitePool, SqliteConnectOptions, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = SqliteConnectOptions::from_str("sqlite:")
            .expect("options")
            .filename(dir.path().join("w.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .expect("pool");
        sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY)")
            .execute(&pool)
            .await
            .expect("table");
        (pool, options, dir)
    }

    async fn insert(tx: &mut WriteTx, k: &str) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO t (k) VALUES ($1)")
            .bind(k)
            .execute(tx.conn())
            .await
            .map(drop)
    }

    async fn keys(pool: &SqlitePool) -> Vec<String> {
        sqlx::query("SELECT k FROM t ORDER BY k")
            .fetch_all(pool)
            .await
            .expect("reads")
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect()
    }

    /// Another process's view: can it take the file's write lock now,
    /// without waiting?
    async fn lock_is_free(options: &SqliteConnectOptions) -> bool {
        let mut other = options
            .clone()
            .busy_timeout(Duration::ZERO)
            .connect()
            .await
            .expect("connects");
        let free = sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .is_ok();
        if free {
            sqlx::query("ROLLBACK").execute(&mut other).await.ok();
        }
        other.close().await.ok();
        free
    }

    #[tokio::test]
    async fn writers_that_queue_together_commit_in_one_batch_and_each_returns_committed() {
        let (pool, options, _dir) = pool().await;
        let writer = Arc::new(Writer::default());
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let (writer, pool) = (writer.clone(), pool.clone());
                tokio::spawn(async move {
                    let mut tx = writer.begin(&pool).await?;
                    insert(&mut tx, &format!("k{i:02}")).await?;
                    tx.commit().await?;
                    // Committed means visible to a reader at once.
                    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM t WHERE k = $1")
                        .bind(format!("k{i:02}"))
                        .fetch_one(&pool)
                        .await?;
                    Ok::<i64, StoreError>(seen)
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.expect("joins").expect("writes"), 1);
        }
        assert_eq!(keys(&pool).await.len(), 50);
        let (batches, writes) = writer.committed().await;
        assert_eq!(writes, 50);
        assert!(
            batches < 50,
            "no two writes shared a commit: {batches} batches"
        );
        assert!(lock_is_free(&options).await, "the write lock is kept");
    }

    #[tokio::test]
    async fn every_few_batches_a_checkpoint_copies_the_wal_into_the_file_beside_the_writer() {
        let (pool, _options, dir) = pool().await;
        let file = dir.path().join("w.db");
        let size = || std::fs::metadata(&file).expect("the database file").len();
        let writer = Arc::new(Writer::default());
        // Nothing copies the WAL into the file before: these connections
        // checkpoint by themselves only after 1,000 pages, and the writes
        // below are about 40.
        let before = size();
        let value = "x".repeat(8_000);
        for i in 0..CHECKPOINT_EVERY {
            let mut tx = writer.begin(&pool).await.expect("begins");
            insert(&mut tx, &format!("{i:02}{value}"))
                .await
                .expect("inserts");
            tx.commit().await.expect("commits");
            if i + 1 < CHECKPOINT_EVERY {
                assert!(
                    writer.state.lock().await.checkpoint.is_none(),
                    "a checkpoint after {} batches",
                    i + 1
                );
            }
        }
        let checkpoint = writer.state.lock().await.checkpoint.take();
        checkpoint
            .expect("a checkpoint started after the batches")
            .await
            .expect("joins");
        let written = CHECKPOINT_EVERY * 8_000;
        assert!(
            size() >= before + written,
            "the file grew from {before} to {} bytes, not by the {written} written",
            size()
        );
        assert_eq!(keys(&pool).await.len(), CHECKPOINT_EVERY as usize);
    }

    #[tokio::test]
    async fn a_writer_dropped_without_committing_is_undone_and_the_batch_goes_on() {
        let (pool, options, _dir) = pool().await;
        let writer = Arc::new(Writer::default());
        let mut kept = writer.begin(&pool).await.expect("begins");
        insert(&mut kept, "kept").await.expect("inserts");
        // A second writer queues, writes into the batch and leaves.
        let second = {
            let (writer, pool) = (writer.clone(), pool.clone());
            tokio::spawn(async move {
                let mut tx = writer.begin(&pool).await.expect("begins");
                insert(&mut tx, "dropped").await.expect("inserts");
                // A failed statement leaves the batch usable.
                assert!(insert(&mut tx, "dropped").await.is_err());
                drop(tx);
            })
        };
        while writer.queued.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        kept.commit().await.expect("commits");
        second.await.expect("joins");
        // And a single statement after it, in a batch of its own or not.
        let mut one = writer.begin_statement(&pool).await.expect("begins");
        insert(&mut one, "after").await.expect("inserts");
        one.commit().await.expect("commits");
        assert_eq!(keys(&pool).await, ["after", "kept"]);
        assert!(lock_is_free(&options).await, "the write lock is kept");
    }

    #[tokio::test]
    async fn a_batch_commits_when_the_writer_it_was_handed_to_goes_away() {
        let (pool, options, _dir) = pool().await;
        let writer = Arc::new(Writer::default());
        let mut first = writer.begin(&pool).await.expect("begins");
        insert(&mut first, "first").await.expect("inserts");
        // The writer queued behind it takes the batch and then hangs.
        let (took, taken) = oneshot::channel();
        let hanging = {
            let (writer, pool) = (writer.clone(), pool.clone());
            tokio::spawn(async move {
                let _tx = writer.begin(&pool).await.expect("begins");
                let _ = took.send(());
                std::future::pending::<()>().await;
            })
        };
        while writer.queued.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let commit = tokio::spawn(first.commit());
        taken.await.expect("the second writer took the batch");
        assert!(!commit.is_finished());
        hanging.abort();
        commit.await.expect("joins").expect("commits");
        assert_eq!(keys(&pool).await, ["first"]);
        assert!(lock_is_free(&options).await, "the write lock is kept");
    }

    #[tokio::test]
    async fn a_failed_commit_reaches_every_writer_of_the_batch() {
        let (pool, _options, _dir) = pool().await;
        // A deferred foreign key fails only at COMMIT, failing the batch.
        // (sqlx turns foreign keys on for every connection.)
        sqlx::query("CREATE TABLE c (k TEXT REFERENCES t (k) DEFERRABLE INITIALLY DEFERRED)")
            .execute(&pool)
            .await
            .expect("table");
        let writer = Arc::new(Writer::default());
        let mut good = writer.begin(&pool).await.expect("begins");
        insert(&mut good, "good").await.expect("inserts");
        let bad = {
            let (writer, pool) = (writer.clone(), pool.clone());
            tokio::spawn(async move {
                let mut tx = writer.begin(&pool).await?;
                sqlx::query("INSERT INTO c (k) VALUES ('nowhere')")
                    .execute(tx.conn())
                    .await?;
                tx.commit().await
            })
        };
        while writer.queued.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let good = good.commit().await;
        let bad = bad.await.expect("joins");
        assert!(good.is_err() && bad.is_err(), "{good:?} {bad:?}");
        assert!(keys(&pool).await.is_empty());
        // The writer goes on with a new batch.
        let mut next = writer.begin(&pool).await.expect("begins");
        insert(&mut next, "next").await.expect("inserts");
        next.commit().await.expect("commits");
        assert_eq!(keys(&pool).await, ["next"]);
    }
}
