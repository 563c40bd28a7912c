//! The `meta` table and the schema's life: the mark that says a database is
//! snapsched's, the definitions change counter, and migrations.
//!
//! Migrations live in `migrations/sqlite/` and `migrations/postgres/`, one
//! file per version with the same numbers on both, embedded at build time.
//! Opening a store checks ownership and migrates under one lock, so that
//! several processes opening a new database at once neither see it
//! half-migrated (which would look foreign) nor apply a migration twice.
//! A store whose schema is already this build's takes no lock at all: the
//! daemon may hold SQLite's one write lock most of the time under load, and
//! a command that opens the store must not queue behind it just to learn
//! that there is nothing to do.

use chrono::{DateTime, Utc};

use super::backend::{Args, Conn, Pool, Tx};
use super::{Store, StoreError, StoreResult};

/// The newest migration a build carries.
fn latest_version(m: &sqlx::migrate::Migrator) -> i64 {
    m.iter().map(|m| m.version).max().unwrap_or(0)
}

impl Store {
    /// Refuse a foreign database, then bring the schema up to date. A
    /// schema that is already this build's is checked without a lock, so
    /// opening a store for a write (every CLI command that changes it)
    /// does not queue behind a daemon writing hard; only a new or older
    /// schema takes the lock (see [`Store::migrate`]).
    pub(super) async fn prepare(&self) -> StoreResult<()> {
        if self.is_current().await? {
            return Ok(());
        }
        self.migrate().await
    }

    /// True when the store is ours and holds exactly the migrations this
    /// build carries, each applied successfully with the same checksum.
    /// Anything else (a new store, an older or newer schema, a failed or
    /// edited migration) is left to [`Store::migrate`], which migrates or
    /// reports it.
    async fn is_current(&self) -> StoreResult<bool> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| self.store_open_error(e))?;
        let mut conn = conn.conn();
        let tables = self.tables(&mut conn).await?;
        if !tables.iter().any(|(t,)| t == "_sqlx_migrations") {
            return Ok(false);
        }
        self.ensure_ours(&mut conn).await?;
        let applied: Vec<(i64, bool, Vec<u8>)> = conn
            .fetch_all(
                "SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version",
                &Args::new(),
            )
            .await
            .map_err(|e| self.store_open_error(e))?;
        let mut ours: Vec<(i64, bool, Vec<u8>)> = self
            .migrator()
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .map(|m| (m.version, true, m.checksum.to_vec()))
            .collect();
        ours.sort();
        Ok(applied == ours)
    }

    /// Refuse a foreign database, then bring the schema up to date, in one
    /// transaction under a lock.
    async fn migrate(&self) -> StoreResult<()> {
        let migrate_err = |e: &dyn std::fmt::Display| StoreError::Migrate {
            location: self.location.to_string(),
            message: e.to_string(),
        };
        // SQLite: BEGIN IMMEDIATE takes the file's write lock; the others
        // wait on the busy timeout. PostgreSQL: a transaction-scoped advisory
        // lock named after the schema; DDL is transactional, so the others
        // see either nothing or every migration.
        let mut tx = self
            .pool
            .begin_write()
            .await
            .map_err(|e| self.store_open_error(e))?;
        if let Tx::Postgres(_) = tx {
            tx.conn()
                .execute(
                    "SELECT pg_advisory_xact_lock(
                         hashtextextended('snapsched.migrate:' || current_schema(), 0))",
                    &Args::new(),
                )
                .await
                .map_err(|e| self.store_open_error(e))?;
        }
        self.ensure_ours(&mut tx.conn()).await?;
        match &mut tx {
            Tx::Sqlite(t) => sqlx::migrate!("./migrations/sqlite")
                .run(t.conn())
                .await
                .map_err(|e| migrate_err(&e))?,
            Tx::Postgres(t) => {
                // The migrator's own lock is one per database, session-wide;
                // ours above is per schema and ends with the transaction.
                let mut migrator = sqlx::migrate!("./migrations/postgres");
                migrator.set_locking(false);
                migrator.run(&mut **t).await.map_err(|e| migrate_err(&e))?
            }
        }
        tx.commit().await.map_err(|e| migrate_err(&e))
    }

    /// For a read-only store: refuse a missing, foreign or outdated one,
    /// changing nothing (no lock, no migration).
    pub(super) async fn check_ready(&self) -> StoreResult<()> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| self.store_open_error(e))?;
        let mut conn = conn.conn();
        let tables = self.tables(&mut conn).await?;
        if tables.is_empty() {
            return Err(StoreError::Missing {
                location: self.location.to_string(),
                why: match self.pool {
                    Pool::Sqlite(..) => "; the file holds no tables".into(),
                    Pool::Postgres(_) => "; the schema holds no tables".into(),
                },
            });
        }
        self.ensure_ours(&mut conn).await?;
        let want = latest_version(&self.migrator());
        let (have,): (Option<i64>,) = conn
            .fetch_one(
                "SELECT MAX(version) FROM _sqlx_migrations WHERE success",
                &Args::new(),
            )
            .await
            .map_err(|e| self.store_open_error(e))?;
        let have = have.unwrap_or(0);
        if have < want {
            return Err(StoreError::Behind {
                location: self.location.to_string(),
                have,
                want,
            });
        }
        Ok(())
    }

    /// The migrations this build carries for the store's backend.
    fn migrator(&self) -> sqlx::migrate::Migrator {
        match self.pool {
            Pool::Sqlite(..) => sqlx::migrate!("./migrations/sqlite"),
            Pool::Postgres(_) => sqlx::migrate!("./migrations/postgres"),
        }
    }

    fn store_open_error(&self, e: StoreError) -> StoreError {
        match e {
            StoreError::Sqlx(e) => self.open_error(&e),
            other => other,
        }
    }

    /// Refuse a database (on PostgreSQL: a schema) that holds tables but is
    /// not ours.
    async fn ensure_ours(&self, conn: &mut Conn<'_>) -> StoreResult<()> {
        let tables = self.tables(conn).await?;
        if tables.is_empty() {
            return Ok(());
        }
        let foreign = || StoreError::Foreign {
            location: self.location.to_string(),
            what: match self.pool {
                Pool::Sqlite(..) => "file",
                Pool::Postgres(_) => "database or schema",
            },
        };
        if !tables.iter().any(|(t,)| t == "meta") {
            return Err(foreign());
        }
        let app: Option<(String,)> = conn
            .fetch_optional(
                "SELECT value FROM meta WHERE key = 'application'",
                &Args::new(),
            )
            .await
            .map_err(|_| foreign())?;
        if app.as_ref().map(|(a,)| a.as_str()) != Some("snapsched") {
            return Err(foreign());
        }
        Ok(())
    }

    /// The tables of the database (on PostgreSQL: of the current schema).
    async fn tables(&self, conn: &mut Conn<'_>) -> StoreResult<Vec<(String,)>> {
        let tables: Vec<(String,)> = match conn {
            Conn::Sqlite { .. } => {
                conn.fetch_all(
                    "SELECT name FROM sqlite_master WHERE type = 'table'",
                    &Args::new(),
                )
                .await
            }
            Conn::Postgres(_) => {
                let (schema,): (Option<String>,) = conn
                    .fetch_one("SELECT current_schema()::TEXT", &Args::new())
                    .await
                    .map_err(|e| self.store_open_error(e))?;
                if schema.is_none() {
                    return Err(StoreError::Open {
                        location: self.location.to_string(),
                        message: "no schema to create the tables in: none of the search_path's \
                                  schemas exists"
                            .into(),
                    });
                }
                conn.fetch_all(
                    "SELECT tablename::TEXT FROM pg_catalog.pg_tables
                     WHERE schemaname = current_schema()",
                    &Args::new(),
                )
                .await
            }
        }
        .map_err(|e| self.store_open_error(e))?;
        Ok(tables)
    }

    /// A counter bumped by every change to the definitions table (on
    /// PostgreSQL, once per transaction that changes it).
    pub async fn definitions_generation(&self) -> StoreResult<i64> {
        let (v,): (String,) = self
            .pool
            .fetch_one(
                "SELECT value FROM meta WHERE key = 'definitions_generation'",
                &Args::new(),
            )
            .await?;
        v.parse()
            .map_err(|_| StoreError::Corrupt(format!("definitions_generation '{v}'")))
    }

    /// Record which providers' requests this node's request budget holds
    /// back now (`provider`, waiting, since), replacing what it recorded
    /// before, so that `snapsched status` can say so.
    pub async fn record_budget_waits(
        &self,
        node: &str,
        waits: &[(String, usize, DateTime<Utc>)],
    ) -> StoreResult<()> {
        let prefix = format!("{BUDGET_WAIT}{node}:");
        let mut tx = self.pool.begin_write().await?;
        tx.conn()
            .execute(
                "DELETE FROM meta WHERE key LIKE $1",
                &Args::new().text(format!("{prefix}%")),
            )
            .await?;
        for (provider, waiting, since) in waits {
            tx.conn()
                .execute(
                    "INSERT INTO meta (key, value) VALUES ($1, $2)",
                    &Args::new()
                        .text(format!("{prefix}{provider}"))
                        .text(format!("{waiting} {}", since.to_rfc3339())),
                )
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every node's recorded budget waits: (node, provider, waiting, since).
    pub async fn budget_waits(&self) -> StoreResult<Vec<(String, String, usize, DateTime<Utc>)>> {
        let rows: Vec<(String, String)> = self
            .pool
            .fetch_all(
                "SELECT key, value FROM meta WHERE key LIKE $1 ORDER BY key",
                &Args::new().text(format!("{BUDGET_WAIT}%")),
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (key, value) in rows {
            let rest = key.trim_start_matches(BUDGET_WAIT);
            let (Some((node, provider)), Some((n, since))) =
                (rest.split_once(':'), value.split_once(' '))
            else {
                return Err(StoreError::Corrupt(format!("meta {key} = '{value}'")));
            };
            let (Ok(n), Ok(since)) = (n.parse(), DateTime::parse_from_rfc3339(since)) else {
                return Err(StoreError::Corrupt(format!("meta {key} = '{value}'")));
            };
            out.push((node.to_owned(), provider.to_owned(), n, since.to_utc()));
        }
        Ok(out)
    }
}

/// The meta key prefix of budget waits: `budget_wait:<node>:<provider>`.
const BUDGET_WAIT: &str = "budget_wait:";
