//! The `api_budget` table: the API request budget shared by every process
//! (daemons on several hosts, CLI commands) that uses one store.
//!
//! A provider's per-token budget (DigitalOcean: 250 a minute, 5,000 an hour)
//! is the server's, not one process's. Each process keeps its own limiter,
//! which spaces its requests and honours the server's hints; before sending
//! it also asks [`Store::grant_request`] here, which grants a request only if
//! the bucket's sliding windows have room across all processes together.
//!
//! Invariants:
//! - Time is the database's clock, read after the bucket's lock is taken,
//!   so grants are ordered by the clock they are counted with and the
//!   processes' own clocks (which may disagree) play no part.
//! - Grants of one bucket are serialised: on PostgreSQL by a transaction
//!   advisory lock named after the bucket, on SQLite by the write
//!   transaction (`BEGIN IMMEDIATE`), so two processes never both take the
//!   last free request of a window.
//! - A bucket is a hash supplied by the caller; the table never holds a
//!   token.

use std::time::Duration;

use super::backend::{Args, Backend, Conn, Tx};
use super::{Store, StoreResult};

/// One sliding window of a budget: at most `limit` grants in any `length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetWindow {
    pub limit: u32,
    pub length: Duration,
}

/// The answer to a request for a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Recorded: the request may be sent now.
    Granted,
    /// Every window has room again after this long (by the database's
    /// clock); nothing was recorded.
    RetryIn(Duration),
}

/// The database's clock in milliseconds since the Unix epoch, and the
/// statement that serialises grants of one bucket (`$1`), per dialect: the
/// one place where the two differ. On SQLite the write transaction already
/// serialises every writer.
fn dialect(backend: Backend) -> (&'static str, Option<&'static str>) {
    match backend {
        Backend::Sqlite => (
            "SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)",
            None,
        ),
        Backend::Postgres => (
            // clock_timestamp(), not now(): now() is the transaction's start,
            // which may be long before the lock was granted.
            "SELECT CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp()) * 1000) AS BIGINT)",
            Some(
                "SELECT pg_advisory_xact_lock(hashtextextended('snapsched.api_budget:' || $1, 0))",
            ),
        ),
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Grant one request of `bucket` if, by the database's clock, every
    /// window has fewer than its `limit` grants within its `length`; record
    /// it and answer [`Grant::Granted`]. Otherwise record nothing and answer
    /// how long until the fullest window has room. Grants older than the
    /// longest window are pruned on the way.
    pub async fn grant_request(
        &self,
        bucket: &str,
        windows: &[BudgetWindow],
    ) -> StoreResult<Grant> {
        let (clock, lock) = dialect(self.backend());
        let mut tx: Tx = self.pool.begin_write().await?;
        let mut conn = tx.conn();
        if let Some(lock) = lock {
            // A process stalled inside this transaction (SIGSTOP, a frozen
            // VM) would hold the bucket's lock and stop every node's
            // requests: the server ends such a transaction after a second.
            conn.execute(
                "SET LOCAL idle_in_transaction_session_timeout = '1s'",
                &Args::new(),
            )
            .await?;
            conn.execute(lock, &Args::new().text(bucket)).await?;
        }
        let (now,): (i64,) = conn.fetch_one(clock, &Args::new()).await?;
        let longest = windows.iter().map(|w| millis(w.length)).max().unwrap_or(0);
        conn.execute(
            "DELETE FROM api_budget WHERE bucket = $1 AND at_ms <= $2",
            &Args::new().text(bucket).int(now.saturating_sub(longest)),
        )
        .await?;
        let mut ready = now;
        for w in windows {
            if let Some(at) = nth_newest(&mut conn, bucket, now, w).await? {
                ready = ready.max(at.saturating_add(millis(w.length)));
            }
        }
        if ready > now {
            // Nothing written but the prune; committing keeps it.
            tx.commit().await?;
            let wait = u64::try_from(ready - now).unwrap_or(0);
            return Ok(Grant::RetryIn(Duration::from_millis(wait)));
        }
        conn.execute(
            "INSERT INTO api_budget (bucket, at_ms) VALUES ($1, $2)",
            &Args::new().text(bucket).int(now),
        )
        .await?;
        tx.commit().await?;
        Ok(Grant::Granted)
    }

    /// The times (database clock, ms since the epoch) of the grants of
    /// `bucket` still on record, oldest first.
    pub async fn budget_grants(&self, bucket: &str) -> StoreResult<Vec<i64>> {
        let rows: Vec<(i64,)> = self
            .pool
            .fetch_all(
                "SELECT at_ms FROM api_budget WHERE bucket = $1 ORDER BY at_ms",
                &Args::new().text(bucket),
            )
            .await?;
        Ok(rows.into_iter().map(|(t,)| t).collect())
    }
}

/// The `limit`-th newest grant inside the window, if the window holds that
/// many: the window has room again once that one has aged out of it.
async fn nth_newest(
    conn: &mut Conn<'_>,
    bucket: &str,
    now: i64,
    w: &BudgetWindow,
) -> StoreResult<Option<i64>> {
    // A window that admits nothing would never have room: it admits one
    // (the limiter raises zero limits the same way).
    let limit = w.limit.max(1);
    let row: Option<(i64,)> = conn
        .fetch_optional(
            "SELECT at_ms FROM api_budget WHERE bucket = $1 AND at_ms > $2
             ORDER BY at_ms DESC LIMIT 1 OFFSET $3",
            &Args::new()
                .text(bucket)
                .int(now.saturating_sub(millis(w.length)))
                .int(i64::from(limit) - 1),
        )
        .await?;
    Ok(row.map(|(t,)| t))
}
