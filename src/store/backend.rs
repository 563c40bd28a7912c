//! The two database engines behind one set of store operations.
//!
//! Every query is written once, with `$1, $2, …` placeholders, which both
//! sqlx's SQLite driver and PostgreSQL accept; its arguments are collected in
//! [`Args`] and bound on whichever engine the store runs on. Rows are read
//! into `#[derive(sqlx::FromRow)]` structs, which decode from either
//! engine's rows. Where the dialects differ (how a writer takes the lock,
//! where the catalogue lives), the caller asks [`Backend`] and picks the SQL.
//!
//! Adding an engine means a variant in each enum here and a `match` arm in
//! each method below, not a copy of every query.
//!
//! On SQLite every write of this process goes through the pool's one
//! [`Writer`] (group commit, see [`super::writer`]): a write transaction
//! ([`Pool::begin_write`]), and a single write statement on the pool,
//! which is a write transaction of one statement. A connection taken with
//! [`Pool::acquire`] is for reads only (debug builds assert it).

use std::borrow::Cow;

use futures_util::TryStreamExt;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool, PgRow, Postgres};
use sqlx::sqlite::{Sqlite, SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{FromRow, Transaction};

use super::writer::{WriteTx, Writer};
use super::StoreResult;
use crate::domain::Identity;

/// Whether `sql` may write: anything but a `SELECT`. (A `WITH … SELECT`
/// read counts as a write here: it only queues behind writers.)
fn writes(sql: &str) -> bool {
    !sql.trim_start()
        .get(..6)
        .is_some_and(|head| head.eq_ignore_ascii_case("select"))
}

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A row type that decodes from either engine.
pub(crate) trait Record:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

impl<T> Record for T where
    T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

/// One bound value. The three kinds cover every column: integers are
/// 64-bit on both engines (BIGINT on PostgreSQL), times are RFC 3339 text.
#[derive(Debug, Clone)]
pub(crate) enum Arg<'a> {
    Int(Option<i64>),
    Text(Option<Cow<'a, str>>),
    Bool(bool),
}

/// The arguments of one statement, in placeholder order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Args<'a>(Vec<Arg<'a>>);

/// Values bound as integers.
pub(crate) trait IntoInt {
    fn into_int(self) -> Option<i64>;
}

impl IntoInt for i64 {
    fn into_int(self) -> Option<i64> {
        Some(self)
    }
}

impl IntoInt for u32 {
    fn into_int(self) -> Option<i64> {
        Some(i64::from(self))
    }
}

impl<T: IntoInt> IntoInt for Option<T> {
    fn into_int(self) -> Option<i64> {
        self.and_then(IntoInt::into_int)
    }
}

/// Values bound as text.
pub(crate) trait IntoText<'a> {
    fn into_text(self) -> Option<Cow<'a, str>>;
}

impl<'a> IntoText<'a> for &'a str {
    fn into_text(self) -> Option<Cow<'a, str>> {
        Some(Cow::Borrowed(self))
    }
}

impl<'a> IntoText<'a> for &'a String {
    fn into_text(self) -> Option<Cow<'a, str>> {
        Some(Cow::Borrowed(self))
    }
}

impl<'a> IntoText<'a> for String {
    fn into_text(self) -> Option<Cow<'a, str>> {
        Some(Cow::Owned(self))
    }
}

impl<'a> IntoText<'a> for Option<&'a str> {
    fn into_text(self) -> Option<Cow<'a, str>> {
        self.map(Cow::Borrowed)
    }
}

impl<'a> IntoText<'a> for &'a Option<String> {
    fn into_text(self) -> Option<Cow<'a, str>> {
        self.as_deref().map(Cow::Borrowed)
    }
}

impl<'a> IntoText<'a> for Option<String> {
    fn into_text(self) -> Option<Cow<'a, str>> {
        self.map(Cow::Owned)
    }
}

impl<'a> Args<'a> {
    pub fn new() -> Self {
        Args(Vec::new())
    }

    pub fn with_capacity(n: usize) -> Self {
        Args(Vec::with_capacity(n))
    }

    pub fn int(mut self, v: impl IntoInt) -> Self {
        self.0.push(Arg::Int(v.into_int()));
        self
    }

    pub fn text(mut self, v: impl IntoText<'a>) -> Self {
        self.0.push(Arg::Text(v.into_text()));
        self
    }

    pub fn bool(mut self, v: bool) -> Self {
        self.0.push(Arg::Bool(v));
        self
    }

    /// The definition identity as four arguments, in the order every table
    /// keys it: provider, target, disk id, name (`def_name` in `runs` and
    /// `snapshots`).
    pub fn identity(self, id: &'a Identity) -> Self {
        self.text(&id.provider)
            .text(&id.target)
            .int(id.disk_id)
            .text(&id.name)
    }
}

/// `$first, $first+1, …` for `n` placeholders, comma-separated.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Bind every argument of `$args` to the query `$q`, on whichever engine
/// its type names.
macro_rules! bind_all {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in &$args.0 {
            q = match a {
                Arg::Int(v) => q.bind(*v),
                Arg::Text(v) => q.bind(v.as_deref()),
                Arg::Bool(v) => q.bind(*v),
            };
        }
        q
    }};
}

/// A connection of either engine, borrowed from a pool or a transaction.
pub(crate) enum Conn<'c> {
    /// `reads_only`: taken with [`Pool::acquire`], not the writer's.
    Sqlite {
        conn: &'c mut SqliteConnection,
        reads_only: bool,
    },
    Postgres(&'c mut PgConnection),
}

impl Conn<'_> {
    /// Debug builds: a write on a read connection is a bug (it would bypass
    /// the writer and contend for SQLite's lock through the busy handler).
    fn check(&self, sql: &str) {
        if let Conn::Sqlite {
            reads_only: true, ..
        } = self
        {
            debug_assert!(
                !writes(sql),
                "a write on a read connection bypasses the writer: {sql}"
            );
        }
    }

    pub async fn fetch_all<T: Record>(
        &mut self,
        sql: &str,
        args: &Args<'_>,
    ) -> StoreResult<Vec<T>> {
        self.check(sql);
        Ok(match self {
            Conn::Sqlite { conn: c, .. } => {
                bind_all!(sqlx::query_as::<_, T>(sql), args)
                    .fetch_all(&mut **c)
                    .await?
            }
            Conn::Postgres(c) => {
                bind_all!(sqlx::query_as::<_, T>(sql), args)
                    .fetch_all(&mut **c)
                    .await?
            }
        })
    }

    pub async fn fetch_optional<T: Record>(
        &mut self,
        sql: &str,
        args: &Args<'_>,
    ) -> StoreResult<Option<T>> {
        self.check(sql);
        Ok(match self {
            Conn::Sqlite { conn: c, .. } => {
                bind_all!(sqlx::query_as::<_, T>(sql), args)
                    .fetch_optional(&mut **c)
                    .await?
            }
            Conn::Postgres(c) => {
                bind_all!(sqlx::query_as::<_, T>(sql), args)
                    .fetch_optional(&mut **c)
                    .await?
            }
        })
    }

    pub async fn fetch_one<T: Record>(&mut self, sql: &str, args: &Args<'_>) -> StoreResult<T> {
        self.check(sql);
        Ok(match self {
            Conn::Sqlite { conn: c, .. } => {
                bind_all!(sqlx::query_as::<_, T>(sql), args)
                    .fetch_one(&mut **c)
                    .await?
            }
            Conn::Postgres(c) => {
                bind_all!(sqlx::query_as::<_, T>(sql), args)
                    .fetch_one(&mut **c)
                    .await?
            }
        })
    }

    /// Run a statement; returns the number of rows it changed.
    pub async fn execute(&mut self, sql: &str, args: &Args<'_>) -> StoreResult<u64> {
        self.check(sql);
        Ok(match self {
            Conn::Sqlite { conn: c, .. } => bind_all!(sqlx::query(sql), args)
                .execute(&mut **c)
                .await?
                .rows_affected(),
            Conn::Postgres(c) => bind_all!(sqlx::query(sql), args)
                .execute(&mut **c)
                .await?
                .rows_affected(),
        })
    }

    /// Run an insert; returns the rows it inserted and, on SQLite, the
    /// rowid of the last one (PostgreSQL has no such thing: `None`).
    pub async fn insert(&mut self, sql: &str, args: &Args<'_>) -> StoreResult<(u64, Option<i64>)> {
        self.check(sql);
        Ok(match self {
            Conn::Sqlite { conn: c, .. } => {
                let done = bind_all!(sqlx::query(sql), args).execute(&mut **c).await?;
                (done.rows_affected(), Some(done.last_insert_rowid()))
            }
            Conn::Postgres(c) => {
                let done = bind_all!(sqlx::query(sql), args).execute(&mut **c).await?;
                (done.rows_affected(), None)
            }
        })
    }

    /// Hand each row to `f` as it arrives, without holding them all.
    pub async fn for_each<T, F>(&mut self, sql: &str, args: &Args<'_>, mut f: F) -> StoreResult<()>
    where
        T: Record,
        F: FnMut(T) -> StoreResult<()> + Send,
    {
        self.check(sql);
        match self {
            Conn::Sqlite { conn: c, .. } => {
                let mut rows = bind_all!(sqlx::query_as::<_, T>(sql), args).fetch(&mut **c);
                while let Some(row) = rows.try_next().await? {
                    f(row)?;
                }
            }
            Conn::Postgres(c) => {
                let mut rows = bind_all!(sqlx::query_as::<_, T>(sql), args).fetch(&mut **c);
                while let Some(row) = rows.try_next().await? {
                    f(row)?;
                }
            }
        }
        Ok(())
    }
}

/// A pool of either engine; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool, std::sync::Arc<Writer>),
    Postgres(PgPool),
}

/// A connection taken from a [`Pool`], returned to it on drop.
pub(crate) enum Pooled {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

impl Pooled {
    /// The connection, for reads (see the module header).
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Pooled::Sqlite(c) => Conn::Sqlite {
                conn: c,
                reads_only: true,
            },
            Pooled::Postgres(c) => Conn::Postgres(c),
        }
    }
}

/// A transaction of either engine; rolled back on drop unless committed.
/// A SQLite one is a savepoint in the writer's batch.
pub(crate) enum Tx {
    Sqlite(WriteTx),
    Postgres(Transaction<'static, Postgres>),
}

impl Tx {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Sqlite(t) => Conn::Sqlite {
                conn: t.conn(),
                reads_only: false,
            },
            Tx::Postgres(t) => Conn::Postgres(t),
        }
    }

    pub async fn commit(self) -> StoreResult<()> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }
}

/// Close the idle SQLite connections that believe they are inside a
/// transaction. A COMMIT that fails because the disk is full leaves the
/// connection's transaction count at one while SQLite has already rolled
/// the transaction back, so the ROLLBACK on drop fails too; every later
/// `BEGIN IMMEDIATE` on that connection is then refused, and without this
/// the store would stay unwritable after the space came back.
pub(super) async fn close_stuck_sqlite_connections(p: &sqlx::SqlitePool) {
    use sqlx::Connection;
    let mut healthy = Vec::new();
    let mut closed = 0;
    while let Some(mut conn) = p.try_acquire() {
        let stuck = match conn.begin_with("BEGIN").await {
            Err(sqlx::Error::InvalidSavePointStatement) => true,
            Err(_) => false,
            // Dropping it rolls the probe back.
            Ok(_probe) => false,
        };
        if stuck {
            conn.close_on_drop();
            closed += 1;
        } else {
            // Held until the sweep ends, so `try_acquire` hands out each
            // idle connection once.
            healthy.push(conn);
        }
    }
    drop(healthy);
    if closed > 0 {
        tracing::warn!(
            closed,
            "closed database connections left inside a failed transaction (a commit failed, the disk was full?)"
        );
    }
}

impl Pool {
    pub fn backend(&self) -> Backend {
        match self {
            Pool::Sqlite(..) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// The writer's transaction for one write statement, `None` for a
    /// read or on PostgreSQL (where a single statement commits by itself).
    async fn write_statement(&self, sql: &str) -> StoreResult<Option<Tx>> {
        Ok(match self {
            Pool::Sqlite(p, writer) if writes(sql) => {
                Some(Tx::Sqlite(writer.begin_statement(p).await?))
            }
            _ => None,
        })
    }

    /// A connection for reads. A write goes through [`Pool::begin_write`]
    /// or the statement methods below, which use the writer for a write on
    /// SQLite.
    pub async fn acquire(&self) -> StoreResult<Pooled> {
        Ok(match self {
            Pool::Sqlite(p, _) => Pooled::Sqlite(p.acquire().await?),
            Pool::Postgres(p) => Pooled::Postgres(p.acquire().await?),
        })
    }

    /// A transaction that will write. On SQLite it is a savepoint in the
    /// writer's batch, whose transaction took the file's write lock up
    /// front (`BEGIN IMMEDIATE`), so a writer of another process waits on
    /// the busy timeout instead of failing our commit; PostgreSQL locks
    /// rows as it writes them.
    pub async fn begin_write(&self) -> StoreResult<Tx> {
        Ok(match self {
            Pool::Sqlite(p, writer) => Tx::Sqlite(writer.begin(p).await?),
            Pool::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    pub async fn close(&self) {
        match self {
            Pool::Sqlite(p, writer) => {
                writer.finish().await;
                p.close().await
            }
            Pool::Postgres(p) => p.close().await,
        }
    }

    pub async fn fetch_all<T: Record>(&self, sql: &str, args: &Args<'_>) -> StoreResult<Vec<T>> {
        if let Some(mut tx) = self.write_statement(sql).await? {
            let rows = tx.conn().fetch_all(sql, args).await?;
            tx.commit().await?;
            return Ok(rows);
        }
        self.acquire().await?.conn().fetch_all(sql, args).await
    }

    pub async fn fetch_optional<T: Record>(
        &self,
        sql: &str,
        args: &Args<'_>,
    ) -> StoreResult<Option<T>> {
        if let Some(mut tx) = self.write_statement(sql).await? {
            let row = tx.conn().fetch_optional(sql, args).await?;
            tx.commit().await?;
            return Ok(row);
        }
        self.acquire().await?.conn().fetch_optional(sql, args).await
    }

    pub async fn fetch_one<T: Record>(&self, sql: &str, args: &Args<'_>) -> StoreResult<T> {
        if let Some(mut tx) = self.write_statement(sql).await? {
            let row = tx.conn().fetch_one(sql, args).await?;
            tx.commit().await?;
            return Ok(row);
        }
        self.acquire().await?.conn().fetch_one(sql, args).await
    }

    pub async fn execute(&self, sql: &str, args: &Args<'_>) -> StoreResult<u64> {
        if let Some(mut tx) = self.write_statement(sql).await? {
            let changed = tx.conn().execute(sql, args).await?;
            tx.commit().await?;
            return Ok(changed);
        }
        self.acquire().await?.conn().execute(sql, args).await
    }
}
