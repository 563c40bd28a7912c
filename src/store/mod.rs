//! The SQLite store (through sqlx): definitions, runs and snapshot records.
//!
//! One database file is shared by the daemon and every CLI invocation. WAL
//! mode and a generous busy timeout let them write concurrently without
//! "database is locked"; every multi-row change is one transaction, so a
//! failed command leaves the store as it was. Migrations are embedded and
//! applied by every command that opens the store.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row;

use crate::domain::definition::{Definition, DefinitionSpec, Identity, Source};
use crate::domain::{Schedule, Target};

pub mod location;
pub mod runs;
pub mod snapshots;

pub use location::Location;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("{path} is not a snapsched database (it holds other tables); point daemon.database or --database at a new or snapsched file")]
    Foreign { path: PathBuf },
    #[error("database {path}: migration failed: {message}")]
    Migrate { path: PathBuf, message: String },
    #[error("definition {0} already exists")]
    Duplicate(Identity),
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("corrupt row in the database: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
}

/// RFC 3339 UTC with seconds, the one timestamp format in the database: it
/// sorts lexically in time order.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// RFC 3339 UTC with milliseconds, for bookkeeping times.
pub fn ts_ms(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(crate) fn parse_ts(s: &str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp '{s}': {e}")))
}

impl Store {
    /// Open (creating if missing) the database at `path` and apply migrations.
    pub async fn open(path: &Path) -> StoreResult<Store> {
        let open_err = |message: String| StoreError::Open {
            path: path.to_owned(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| open_err(format!("cannot create directory {}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(|e| open_err(e.to_string()))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        // A local file does not go stale: no ping before each acquire and no
        // reaping of idle connections. Both would run sqlite work inside the
        // pool's acquire timeout, which tokio's paused clock (engine tests)
        // skips to as soon as the runtime idles.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .test_before_acquire(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|e| open_err(describe_sqlx(&e)))?;
        let store = Store {
            pool,
            path: path.to_owned(),
        };
        // Several processes may open a new file at once. Checking ownership
        // and migrating under one write lock (BEGIN IMMEDIATE; the others
        // wait on the busy timeout) means nobody sees a half-migrated file,
        // which would look foreign, or applies a migration twice.
        let mut tx = store
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| open_err(describe_sqlx(&e)))?;
        store.ensure_ours(&mut tx).await?;
        sqlx::migrate!("./migrations")
            .run(&mut *tx)
            .await
            .map_err(|e| StoreError::Migrate {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        tx.commit().await.map_err(|e| StoreError::Migrate {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Ok(store)
    }

    /// Refuse a database that holds tables but is not ours.
    async fn ensure_ours(&self, conn: &mut sqlx::SqliteConnection) -> StoreResult<()> {
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| StoreError::Open {
                    path: self.path.clone(),
                    message: describe_sqlx(&e),
                })?;
        if tables.is_empty() {
            return Ok(());
        }
        if !tables.iter().any(|t| t == "meta") {
            return Err(StoreError::Foreign {
                path: self.path.clone(),
            });
        }
        let app: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'application'")
                .fetch_optional(&mut *conn)
                .await?;
        if app.as_deref() != Some("snapsched") {
            return Err(StoreError::Foreign {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Close the pool, checkpointing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A counter bumped by every change to the definitions table.
    pub async fn definitions_generation(&self) -> StoreResult<i64> {
        let v: String =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'definitions_generation'")
                .fetch_one(&self.pool)
                .await?;
        v.parse()
            .map_err(|_| StoreError::Corrupt(format!("definitions_generation '{v}'")))
    }

    /// Every definition, ordered by name then identity.
    pub async fn list_definitions(&self) -> StoreResult<Vec<Definition>> {
        use futures_util::TryStreamExt;
        // Rows are converted as they arrive: holding every raw row at once
        // costs several times the definitions themselves at 100,000 rows,
        // and the allocator keeps that peak long after it is freed.
        let mut rows =
            sqlx::query("SELECT * FROM definitions ORDER BY name, provider, target, disk_id")
                .fetch(&self.pool);
        let mut defs = Vec::new();
        while let Some(row) = rows.try_next().await? {
            defs.push(definition_from_row(&row)?);
        }
        Ok(defs)
    }

    /// Definitions named `name`, narrowed by the optional filters.
    pub async fn find_definitions(
        &self,
        name: &str,
        filter: &Filter,
    ) -> StoreResult<Vec<Definition>> {
        // Look the name up by index rather than reading every definition.
        let rows = sqlx::query(
            "SELECT * FROM definitions WHERE name = ? ORDER BY provider, target, disk_id",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        let defs = rows
            .iter()
            .map(definition_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(defs
            .into_iter()
            .filter(|d| filter.matches(&d.spec.identity))
            .collect())
    }

    /// Look one definition up by identity.
    pub async fn get_definition(&self, id: &Identity) -> StoreResult<Option<Definition>> {
        definition_by_identity(&self.pool, id).await
    }

    /// Insert a new definition; a duplicate identity is refused.
    pub async fn insert_definition(
        &self,
        spec: &DefinitionSpec,
        source: Source,
        source_path: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<Definition> {
        let mut tx = self.pool.begin().await?;
        insert_in(&mut tx, spec, source, source_path, now).await?;
        tx.commit().await?;
        self.get_definition(&spec.identity)
            .await?
            .ok_or_else(|| StoreError::Corrupt("inserted definition vanished".into()))
    }

    /// Insert several new definitions in one transaction: either every row
    /// that could be written is, or (on an error) none is. An identity that
    /// already exists is not an error: its entry in the result is `false`
    /// and the existing row stays as it was.
    pub async fn insert_new_definitions(
        &self,
        specs: &[DefinitionSpec],
        source: Source,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<bool>> {
        // IMMEDIATE takes the write lock up front, so a concurrent writer
        // waits on the busy timeout instead of failing our commit.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut inserted = Vec::with_capacity(specs.len());
        for spec in specs {
            // SQLite rolls back only the failing statement on a unique
            // violation; the transaction and its earlier rows stay intact.
            match insert_in(&mut tx, spec, source, None, now).await {
                Ok(()) => inserted.push(true),
                Err(StoreError::Duplicate(_)) => inserted.push(false),
                Err(e) => return Err(e),
            }
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Replace the mutable fields of an existing definition.
    pub async fn update_definition(
        &self,
        spec: &DefinitionSpec,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let changed = update_in(&mut tx, spec, None, now).await?;
        tx.commit().await?;
        Ok(changed)
    }

    /// Delete a definition; its runs and snapshot records stay.
    pub async fn delete_definition(&self, id: &Identity) -> StoreResult<bool> {
        let done = sqlx::query(
            "DELETE FROM definitions WHERE provider = ? AND target = ? AND disk_id = ? AND name = ?",
        )
        .bind(&id.provider)
        .bind(&id.target)
        .bind(id.disk_id)
        .bind(&id.name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Make the config-sourced definitions equal `specs`, in one transaction:
    /// insert new ones, update changed ones, delete those gone from the file.
    /// A CLI definition with the same identity as a config one is taken over
    /// by the file.
    pub async fn reconcile_config(
        &self,
        specs: &[DefinitionSpec],
        source_path: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Reconciled> {
        let mut tx = self.pool.begin().await?;
        // Only the file's own rows are read in full; a CLI row the file
        // takes over is found by its identity (indexed), so a large store of
        // CLI definitions costs nothing here.
        let existing: Vec<Definition> =
            sqlx::query("SELECT * FROM definitions WHERE source = 'config'")
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(definition_from_row)
                .collect::<StoreResult<_>>()?;
        let by_identity: std::collections::HashMap<&Identity, &Definition> =
            existing.iter().map(|d| (&d.spec.identity, d)).collect();
        let wanted: std::collections::HashSet<&Identity> =
            specs.iter().map(|s| &s.identity).collect();
        let mut report = Reconciled::default();
        for spec in specs {
            let fetched;
            let found = match by_identity.get(&spec.identity) {
                Some(d) => Some(*d),
                None => {
                    fetched = definition_by_identity(&mut *tx, &spec.identity).await?;
                    fetched.as_ref()
                }
            };
            match found {
                None => {
                    insert_in(&mut tx, spec, Source::Config, Some(source_path), now).await?;
                    report.added.push(spec.identity.clone());
                }
                Some(d) => {
                    let same = d.spec == *spec
                        && d.source == Source::Config
                        && d.source_path.as_deref() == Some(source_path);
                    if same {
                        report.unchanged += 1;
                    } else {
                        update_in(&mut tx, spec, Some(source_path), now).await?;
                        report.updated.push(spec.identity.clone());
                    }
                }
            }
        }
        for d in &existing {
            if !wanted.contains(&d.spec.identity) {
                sqlx::query("DELETE FROM definitions WHERE id = ?")
                    .bind(d.id)
                    .execute(&mut *tx)
                    .await?;
                report.removed.push(d.spec.identity.clone());
            }
        }
        tx.commit().await?;
        Ok(report)
    }
}

/// One definition by identity, on the pool or inside a transaction.
async fn definition_by_identity<'e, E>(ex: E, id: &Identity) -> StoreResult<Option<Definition>>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let row = sqlx::query(
        "SELECT * FROM definitions WHERE provider = ? AND target = ? AND disk_id = ? AND name = ?",
    )
    .bind(&id.provider)
    .bind(&id.target)
    .bind(id.disk_id)
    .bind(&id.name)
    .fetch_optional(ex)
    .await?;
    row.as_ref().map(definition_from_row).transpose()
}

/// What reconciling the config file changed.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reconciled {
    pub added: Vec<Identity>,
    pub updated: Vec<Identity>,
    pub removed: Vec<Identity>,
    pub unchanged: usize,
}

/// Optional narrowing of a definition name by provider, target and disk.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub provider: Option<String>,
    pub target: Option<String>,
    pub disk_id: Option<u32>,
}

impl Filter {
    pub fn matches(&self, id: &Identity) -> bool {
        self.provider.as_ref().is_none_or(|p| *p == id.provider)
            && self.target.as_ref().is_none_or(|t| *t == id.target)
            && self.disk_id.is_none_or(|d| d == id.disk_id)
    }
}

async fn insert_in(
    tx: &mut sqlx::SqliteConnection,
    spec: &DefinitionSpec,
    source: Source,
    source_path: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let result = sqlx::query(
        "INSERT INTO definitions (provider, target, disk_id, name, schedule, timezone, retention,
             active, desc, fsfreeze, max_age_secs, catch_up_deadline_secs, tags, source,
             source_path, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&spec.identity.provider)
    .bind(&spec.identity.target)
    .bind(spec.identity.disk_id)
    .bind(&spec.identity.name)
    .bind(spec.schedule.source())
    .bind(spec.timezone.map(|z| z.name()))
    .bind(spec.retention)
    .bind(spec.active)
    .bind(&spec.desc)
    .bind(spec.fsfreeze)
    .bind(spec.max_age.map(|d| d.as_secs() as i64))
    .bind(spec.catch_up_deadline.map(|d| d.as_secs() as i64))
    .bind(serde_json::to_string(&spec.tags).unwrap_or_else(|_| "[]".into()))
    .bind(source.as_str())
    .bind(source_path)
    .bind(ts_ms(now))
    .bind(ts_ms(now))
    .execute(&mut *tx)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(StoreError::Duplicate(spec.identity.clone()))
        }
        Err(e) => Err(e.into()),
    }
}

async fn update_in(
    tx: &mut sqlx::SqliteConnection,
    spec: &DefinitionSpec,
    config_path: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    // Every placeholder is numbered: ?10 appears twice, and SQLite gives a
    // bare `?` after `?N` the number N+1, which silently shifts the rest.
    let done = sqlx::query(
        "UPDATE definitions SET schedule = ?1, timezone = ?2, retention = ?3, active = ?4,
             desc = ?5, fsfreeze = ?6, max_age_secs = ?7, catch_up_deadline_secs = ?8, tags = ?9,
             source = CASE WHEN ?10 IS NULL THEN source ELSE 'config' END,
             source_path = COALESCE(?10, source_path), updated_at = ?11
         WHERE provider = ?12 AND target = ?13 AND disk_id = ?14 AND name = ?15",
    )
    .bind(spec.schedule.source())
    .bind(spec.timezone.map(|z| z.name()))
    .bind(spec.retention)
    .bind(spec.active)
    .bind(&spec.desc)
    .bind(spec.fsfreeze)
    .bind(spec.max_age.map(|d| d.as_secs() as i64))
    .bind(spec.catch_up_deadline.map(|d| d.as_secs() as i64))
    .bind(serde_json::to_string(&spec.tags).unwrap_or_else(|_| "[]".into()))
    .bind(config_path)
    .bind(ts_ms(now))
    .bind(&spec.identity.provider)
    .bind(&spec.identity.target)
    .bind(spec.identity.disk_id)
    .bind(&spec.identity.name)
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// The definition identity of a `runs` or `snapshots` row (`def_name`).
pub(crate) fn identity_from_row(row: &SqliteRow) -> StoreResult<Identity> {
    Ok(Identity {
        provider: row.try_get("provider")?,
        target: row.try_get("target")?,
        disk_id: row.try_get::<i64, _>("disk_id")? as u32,
        name: row.try_get("def_name")?,
    })
}

fn definition_from_row(row: &SqliteRow) -> StoreResult<Definition> {
    let source: String = row.try_get("source")?;
    let tags: String = row.try_get("tags")?;
    let secs = |col: &str| -> StoreResult<Option<Duration>> {
        Ok(row
            .try_get::<Option<i64>, _>(col)?
            .map(|s| Duration::from_secs(s.max(0) as u64)))
    };
    let identity = Identity {
        provider: row.try_get("provider")?,
        target: row.try_get("target")?,
        disk_id: row.try_get::<i64, _>("disk_id")? as u32,
        name: row.try_get("name")?,
    };
    let corrupt = |what: String| StoreError::Corrupt(format!("definition {identity}: {what}"));
    let target = Target::from_canonical(&identity.target)
        .ok_or_else(|| corrupt(format!("target '{}'", identity.target)))?;
    let expr: String = row.try_get("schedule")?;
    let schedule = Schedule::parse(&expr, &identity.hash_key())
        .map_err(|e| corrupt(format!("schedule '{expr}': {e}")))?;
    let timezone = row
        .try_get::<Option<String>, _>("timezone")?
        .map(|z| {
            z.parse::<chrono_tz::Tz>()
                .map_err(|_| corrupt(format!("time zone '{z}'")))
        })
        .transpose()?;
    Ok(Definition {
        id: row.try_get("id")?,
        spec: DefinitionSpec {
            identity,
            target,
            schedule,
            timezone,
            retention: row.try_get::<i64, _>("retention")? as u32,
            active: row.try_get("active")?,
            desc: row.try_get("desc")?,
            fsfreeze: row.try_get("fsfreeze")?,
            max_age: secs("max_age_secs")?,
            catch_up_deadline: secs("catch_up_deadline_secs")?,
            tags: serde_json::from_str(&tags)
                .map_err(|e| StoreError::Corrupt(format!("tags '{tags}': {e}")))?,
        },
        source: Source::parse(&source)
            .ok_or_else(|| StoreError::Corrupt(format!("source '{source}'")))?,
        source_path: row.try_get("source_path")?,
        created_at: parse_ts(&row.try_get::<String, _>("created_at")?)?,
        updated_at: parse_ts(&row.try_get::<String, _>("updated_at")?)?,
    })
}

/// sqlx's messages for common open failures, in plain words.
fn describe_sqlx(e: &sqlx::Error) -> String {
    let text = e.to_string();
    if text.contains("file is not a database") {
        "the file is not an SQLite database".into()
    } else if text.contains("unable to open database file") || text.contains("readonly") {
        format!("{text} (check that the path and its directory are writable)")
    } else {
        text
    }
}
