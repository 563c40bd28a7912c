//! The store: definitions, runs and snapshot records, in a SQLite file (the
//! embedded default) or a PostgreSQL database shared by several processes.
//!
//! One database is shared by the daemon and every CLI invocation. On SQLite,
//! WAL mode and a generous busy timeout let them write concurrently without
//! "database is locked"; every multi-row change is one transaction, so a
//! failed command leaves the store as it was. Migrations for each backend are
//! embedded and applied by every command that opens the store.
//!
//! One file per table: [`definitions`], [`runs`], [`snapshots`],
//! [`config_state`] (which version of the config file is applied),
//! [`notify`] (the webhook's queue and rate-limit state), and
//! [`meta`] (ownership mark, change counter, migrations). The operations are
//! methods of the one [`Store`] type whatever the backend; [`backend`] runs
//! each query, written once, on the engine the store was opened on. Times are
//! RFC 3339 text on both backends, so ordering and output are identical.

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

use crate::domain::{Identity, RunState};

pub mod backend;
pub mod budget;
pub mod config_state;
pub mod copies;
pub mod definitions;
pub mod location;
pub mod meta;
pub mod nodes;
pub mod notify;
pub mod runs;
pub mod snapshots;
mod writer;

pub use backend::Backend;
pub use budget::{BudgetWindow, Grant};
pub use config_state::{AppliedConfig, ApplyMode, ConfigFile, ConfigOutcome};
pub use definitions::{Filter, Reconciled};
pub use location::Location;
pub use notify::QueuedEvent;

use backend::Pool;

/// Store failures. None of the messages carries a password: a location is
/// always shown through its redacted [`Location`] display.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {location}: {message}")]
    Open { location: String, message: String },
    #[error("{location} is not a snapsched database (it holds other tables); point daemon.database or --database at a new or snapsched {what}")]
    Foreign {
        location: String,
        /// What to point at instead: a file, or a database or schema.
        what: &'static str,
    },
    /// A read command found no store: it never creates one.
    #[error("no snapsched store at {location}{why}: the daemon creates it when it starts, as does a command that changes it (`snapsched config apply`, `snapsched def add`); if it lives elsewhere, point [daemon] database, SNAPSCHED__DAEMON__DATABASE or --database at it")]
    Missing {
        location: String,
        /// What was found instead, with a leading "; " (an empty file, no
        /// tables in the schema), or empty.
        why: String,
    },
    /// A read command found a schema older than this build: read commands
    /// never migrate (they may run on a read-only copy, or while the daemon
    /// of the older version still runs).
    #[error("the store at {location} has an older schema (version {have}; this snapsched needs {want}), and read commands do not migrate it: start the daemon of this version, or run a command that changes the store (e.g. `snapsched config apply`), then try again")]
    Behind {
        location: String,
        have: i64,
        want: i64,
    },
    #[error("database {location}: migration failed: {message}")]
    Migrate { location: String, message: String },
    #[error("definition {0} already exists")]
    Duplicate(Identity),
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// A write's batch was not committed (see `writer.rs`): the error
    /// of the batch's commit, which every write in it shares.
    #[error("database error: {0} (the write was not committed)")]
    Uncommitted(String),
    #[error("corrupt row in the database: {0}")]
    Corrupt(String),
    /// The run was taken over by another node (this node's lease lapsed):
    /// the change was not applied, and this node must drop the run.
    #[error("run {run_id} was taken over by another node")]
    Fenced { run_id: i64 },
    /// The database did not answer a query in time (see [`Store::ping`]).
    #[error("database {location} did not answer within {} ms", within.as_millis())]
    NoAnswer { location: String, within: Duration },
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    location: Arc<Location>,
    /// The node this process acts as (shared by every clone of the store):
    /// claims and takeovers name it as the owner of their runs.
    node: Arc<std::sync::RwLock<Option<Arc<str>>>>,
    /// The notification queue's limit while a webhook is configured (see
    /// [`notify`]); `None` records no events.
    notify: Arc<std::sync::RwLock<Option<u32>>>,
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

pub(crate) fn parse_opt_ts(s: Option<&str>) -> StoreResult<Option<DateTime<Utc>>> {
    s.map(parse_ts).transpose()
}

/// The in-flight run states as an SQL list, `'pending', 'creating', …`, from
/// [`RunState::ACTIVE`]. (The migrations' partial index `runs_one_active`
/// spells the same list; a test holds the two together.)
pub(crate) fn active_states() -> &'static str {
    static LIST: LazyLock<String> = LazyLock::new(|| {
        RunState::ACTIVE
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    });
    &LIST
}

/// `WHERE` condition on the identity of a `runs` or `snapshots` row, for
/// arguments `$1`–`$4` bound by [`backend::Args::identity`].
pub(crate) const OF_IDENTITY: &str =
    "provider = $1 AND target = $2 AND disk_id = $3 AND def_name = $4";

/// The definition identity of a `runs` or `snapshots` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct IdentityRow {
    provider: String,
    target: String,
    disk_id: i64,
    def_name: String,
}

impl IdentityRow {
    pub(crate) fn into_identity(self) -> StoreResult<Identity> {
        Ok(Identity {
            provider: self.provider,
            target: self.target,
            disk_id: disk_id(self.disk_id)?,
            name: self.def_name,
        })
    }
}

pub(crate) fn disk_id(n: i64) -> StoreResult<u32> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("disk id {n}")))
}

/// Connections per pool. SQLite serialises writers anyway; PostgreSQL gets
/// a few more for runs in flight writing in parallel.
const SQLITE_CONNECTIONS: u32 = 4;
const POSTGRES_CONNECTIONS: u32 = 8;

/// A PostgreSQL connection idle in the pool for this long is pinged before
/// it is handed out (see [`open_postgres`]).
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// How the store's connection pool behaves. The defaults suit the daemon and
/// the CLI.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// How long an operation waits for a free connection (including opening
    /// one) before it fails.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            acquire_timeout: Duration::from_secs(30),
        }
    }
}

impl Store {
    /// Open (creating if missing) the SQLite database at `path` and apply
    /// migrations: [`Store::connect`] of a [`Location::Sqlite`].
    pub async fn open(path: &Path) -> StoreResult<Store> {
        Store::connect(&Location::Sqlite(path.to_owned())).await
    }

    /// Open the store at `location`, refuse it if it holds another
    /// application's tables, and apply migrations. A SQLite file (and its
    /// directory) is created if missing; a PostgreSQL database must exist,
    /// and the tables go in the first schema of its `search_path`.
    pub async fn connect(location: &Location) -> StoreResult<Store> {
        Store::connect_with(location, &PoolSettings::default()).await
    }

    /// [`Store::connect`] with pool settings other than the defaults (tests
    /// on tokio's paused clock, where virtual time can jump past any
    /// timeout while a connection is being opened, wait without one).
    pub async fn connect_with(location: &Location, settings: &PoolSettings) -> StoreResult<Store> {
        let pool = match location {
            Location::Sqlite(path) => open_sqlite(location, path, settings).await?,
            Location::Postgres(options) => open_postgres(location, options, settings).await?,
        };
        let store = Store {
            pool,
            location: Arc::new(location.clone()),
            node: Arc::default(),
            notify: Arc::default(),
        };
        store.prepare().await?;
        Ok(store)
    }

    /// Open an existing store for reading only: nothing is created (no
    /// file, directory, table or WAL switch), no lock is taken and nothing
    /// is migrated. A missing store is [`StoreError::Missing`], a foreign
    /// one [`StoreError::Foreign`], one an older build left behind
    /// [`StoreError::Behind`]. SQLite opens the file read-only (immutable
    /// when even the WAL's shared memory cannot be made, as on a read-only
    /// mount); PostgreSQL sessions are read-only transactions.
    pub async fn connect_read_only(location: &Location) -> StoreResult<Store> {
        Store::connect_read_only_with(location, &PoolSettings::default()).await
    }

    /// [`Store::connect_read_only`] with pool settings other than the
    /// defaults.
    pub async fn connect_read_only_with(
        location: &Location,
        settings: &PoolSettings,
    ) -> StoreResult<Store> {
        let pool = match location {
            Location::Sqlite(path) => open_sqlite_read_only(location, path, settings).await?,
            Location::Postgres(options) => {
                let options = options
                    .as_ref()
                    .clone()
                    .options([("default_transaction_read_only", "on")]);
                open_postgres(location, &options, settings).await?
            }
        };
        let store = Store {
            pool,
            location: Arc::new(location.clone()),
            node: Arc::default(),
            notify: Arc::default(),
        };
        store.check_ready().await?;
        Ok(store)
    }

    /// The node this process acts as, once it has joined (see
    /// [`crate::cluster`]).
    pub fn node_id(&self) -> Option<Arc<str>> {
        self.node.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Act as `node` from now on (every clone of this store).
    pub fn set_node_id(&self, node: Option<Arc<str>>) {
        *self.node.write().unwrap_or_else(|e| e.into_inner()) = node;
    }

    /// Where the store lives (shown without a password).
    pub fn location(&self) -> &Location {
        &self.location
    }

    pub fn backend(&self) -> Backend {
        self.pool.backend()
    }

    /// The SQLite pool, for tools that read the file directly (benchmarks);
    /// `None` on PostgreSQL.
    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match &self.pool {
            Pool::Sqlite(p, _) => Some(p),
            Pool::Postgres(_) => None,
        }
    }

    /// One cheap round trip (`SELECT 1`) through the pool, for health
    /// checks: fails when the database cannot be reached or does not
    /// answer within `within`, or when the store was closed.
    pub async fn ping(&self, within: Duration) -> StoreResult<()> {
        let args = backend::Args::new();
        let query = self.pool.execute("SELECT 1", &args);
        match tokio::time::timeout(within, query).await {
            Ok(answer) => answer.map(drop),
            Err(_) => Err(StoreError::NoAnswer {
                location: self.location.to_string(),
                within,
            }),
        }
    }

    /// Close the pool (on SQLite, checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn open_error(&self, e: &sqlx::Error) -> StoreError {
        StoreError::Open {
            location: self.location.to_string(),
            message: describe_sqlx(e),
        }
    }
}

async fn open_sqlite(
    location: &Location,
    path: &Path,
    settings: &PoolSettings,
) -> StoreResult<Pool> {
    let open_err = |message: String| StoreError::Open {
        location: location.to_string(),
        message,
    };
    // Another application's file is refused before anything changes it
    // (the switch to WAL below rewrites its header).
    refuse_foreign_sqlite(location, path).await?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| open_err(format!("cannot create directory {}: {e}", dir.display())))?;
    }
    let options = SqliteConnectOptions::from_str("sqlite:")
        .map_err(|e| open_err(e.to_string()))?
        .filename(path)
        .create_if_missing(true)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
        .pragma("journal_size_limit", JOURNAL_SIZE_LIMIT_BYTES.to_string());
    enable_wal(&options)
        .await
        .map_err(|e| open_err(describe_sqlx(&e)))?;
    // A local file does not go stale: no ping before each acquire and no
    // reaping of idle connections. Both would run sqlite work inside the
    // pool's acquire timeout, which tokio's paused clock (engine tests)
    // skips to as soon as the runtime idles.
    let pool = SqlitePoolOptions::new()
        .max_connections(SQLITE_CONNECTIONS)
        .min_connections(1)
        .acquire_timeout(settings.acquire_timeout)
        .test_before_acquire(false)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options)
        .await
        .map_err(|e| open_err(describe_sqlx(&e)))?;
    Ok(Pool::Sqlite(pool, Default::default()))
}

/// Refuse an existing SQLite file that holds tables but not snapsched's
/// mark, reading it on a read-only connection of its own, so that a
/// refused file is left byte-identical. A file that cannot be read this way
/// is left to the normal open, which reports why.
async fn refuse_foreign_sqlite(location: &Location, path: &Path) -> StoreResult<()> {
    if std::fs::metadata(path).map_or(true, |m| m.len() == 0) {
        return Ok(());
    }
    let options = SqliteConnectOptions::from_str("sqlite:")
        .map_err(|e| StoreError::Open {
            location: location.to_string(),
            message: e.to_string(),
        })?
        .filename(path)
        .read_only(true)
        .busy_timeout(SQLITE_BUSY_TIMEOUT);
    let Ok(mut conn) = options.connect().await else {
        return Ok(());
    };
    let verdict = sqlite_mark(&mut conn).await;
    conn.close().await.ok();
    match verdict {
        Ok(Mark::Foreign) => Err(StoreError::Foreign {
            location: location.to_string(),
            what: "file",
        }),
        Err(e) if is_not_a_database(&e) => Err(StoreError::Open {
            location: location.to_string(),
            message: describe_sqlx(&e),
        }),
        _ => Ok(()),
    }
}

/// What a database file's tables say about whose it is.
#[derive(Debug, PartialEq, Eq)]
enum Mark {
    Empty,
    Ours,
    Foreign,
}

async fn sqlite_mark(conn: &mut sqlx::SqliteConnection) -> Result<Mark, sqlx::Error> {
    let tables: Vec<(String,)> =
        sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&mut *conn)
            .await?;
    if tables.is_empty() {
        return Ok(Mark::Empty);
    }
    if !tables.iter().any(|(t,)| t == "meta") {
        return Ok(Mark::Foreign);
    }
    let app: Option<(String,)> = sqlx::query_as("SELECT value FROM meta WHERE key = 'application'")
        .fetch_optional(&mut *conn)
        .await
        .unwrap_or(None);
    Ok(match app {
        Some((a,)) if a == "snapsched" => Mark::Ours,
        _ => Mark::Foreign,
    })
}

/// SQLITE_NOTADB (26).
fn is_not_a_database(e: &sqlx::Error) -> bool {
    sqlite_code(e).is_some_and(|c| c & 0xff == 26)
}

/// SQLITE_CANTOPEN (14) or SQLITE_READONLY (8), extended codes included:
/// what a read-only open of a WAL file reports when it cannot make the WAL's
/// shared-memory file (a read-only directory or mount).
fn is_cannot_open(e: &sqlx::Error) -> bool {
    sqlite_code(e).is_some_and(|c| matches!(c & 0xff, 8 | 14))
}

fn sqlite_code(e: &sqlx::Error) -> Option<i32> {
    e.as_database_error()
        .and_then(|d| d.code())
        .and_then(|c| c.parse::<i32>().ok())
}

/// Open an existing SQLite file read-only (see
/// [`Store::connect_read_only`]).
async fn open_sqlite_read_only(
    location: &Location,
    path: &Path,
    settings: &PoolSettings,
) -> StoreResult<Pool> {
    let open_err = |message: String| StoreError::Open {
        location: location.to_string(),
        message,
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::Missing {
                location: location.to_string(),
                why: String::new(),
            })
        }
        Err(e) => return Err(open_err(e.to_string())),
        Ok(m) if !m.is_file() => return Err(open_err("not a regular file".into())),
        Ok(m) if m.len() == 0 => {
            return Err(StoreError::Missing {
                location: location.to_string(),
                why: "; the file is empty".into(),
            })
        }
        Ok(_) => {}
    }
    let options = SqliteConnectOptions::from_str("sqlite:")
        .map_err(|e| open_err(e.to_string()))?
        .filename(path)
        .read_only(true)
        .foreign_keys(true)
        .busy_timeout(SQLITE_BUSY_TIMEOUT);
    // Probe with a read: a WAL file opens lazily, at its first read.
    let probe = async |options: &SqliteConnectOptions| {
        let mut conn = options.connect().await?;
        let read = sqlx::query("SELECT count(*) FROM sqlite_master")
            .execute(&mut conn)
            .await;
        conn.close().await.ok();
        read.map(drop)
    };
    let options = match probe(&options).await {
        Ok(()) => options,
        // Nobody can change a file nobody can make the WAL's shared memory
        // for: read it as immutable.
        Err(e) if is_cannot_open(&e) => {
            let immutable = options.immutable(true);
            probe(&immutable)
                .await
                .map_err(|e| open_err(describe_sqlx(&e)))?;
            immutable
        }
        Err(e) => return Err(open_err(describe_sqlx(&e))),
    };
    let pool = SqlitePoolOptions::new()
        .max_connections(SQLITE_CONNECTIONS)
        .min_connections(0)
        .acquire_timeout(settings.acquire_timeout)
        .test_before_acquire(false)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options)
        .await
        .map_err(|e| open_err(describe_sqlx(&e)))?;
    Ok(Pool::Sqlite(pool, Default::default()))
}

/// WAL pages after which a commit checkpoints in its own connection
/// (SQLite's default is 1,000). The writer checkpoints beside the writing
/// connection long before (see [`writer`]); this is the backstop for a WAL
/// those checkpoints fall behind on, about 40 MB with 4 KB pages.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// The size SQLite cuts the WAL file back to when it starts it over after
/// a checkpoint (by default it keeps the file at its largest): a burst that
/// grew it towards the backstop above does not leave tens of megabytes on
/// disk for good.
pub(crate) const JOURNAL_SIZE_LIMIT_BYTES: u64 = 8 << 20;

/// How long a SQLite statement waits for another writer's lock.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Put the file in WAL mode, once, on a connection of its own.
///
/// The journal mode is a property of the file, so the pool's connections
/// need not set it again. Switching a new file to WAL takes an exclusive
/// lock that SQLite does not wait for through the busy timeout: two
/// connections (the pool's first two, or a CLI command and the daemon
/// starting on a fresh file) setting it at once make one of them fail with
/// "database is locked". Here the loser retries until the busy timeout
/// is spent.
async fn enable_wal(options: &SqliteConnectOptions) -> Result<(), sqlx::Error> {
    let deadline = std::time::Instant::now() + SQLITE_BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(5);
    loop {
        let attempt = async {
            let mut conn = options.connect().await?;
            let set = sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&mut conn)
                .await;
            conn.close().await.ok();
            set.map(drop)
        };
        match attempt.await {
            Err(e) if is_sqlite_busy(&e) && std::time::Instant::now() < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

/// SQLITE_BUSY (5) or SQLITE_LOCKED (6), extended codes included.
fn is_sqlite_busy(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| matches!(c & 0xff, 5 | 6))
}

async fn open_postgres(
    location: &Location,
    options: &PgConnectOptions,
    settings: &PoolSettings,
) -> StoreResult<Pool> {
    let open_err = |message: String| StoreError::Open {
        location: location.to_string(),
        message,
    };
    // One connection first, outside the pool: the pool retries a refused
    // connection until its timeout and then reports only that it timed
    // out, where the user needs the server's own answer (refused, no such
    // database, authentication failed).
    let probe = tokio::time::timeout(settings.acquire_timeout, options.connect())
        .await
        .map_err(|_| {
            open_err(format!(
                "no answer within {} s",
                settings.acquire_timeout.as_secs()
            ))
        })?
        .map_err(|e| open_err(describe_sqlx(&e)))?;
    probe.close().await.ok();
    // No ping before an acquire that follows closely on the connection's
    // last use: under load that would double the round trips of every query.
    // A connection idle for longer is pinged first and replaced if the ping
    // fails: after a server restart or a cut network every idle connection
    // is dead, and without the ping each would fail one query in turn (the
    // daemon retrying one turn per failure, a backoff apart) before the pool
    // held only live ones.
    let pool = PgPoolOptions::new()
        .max_connections(POSTGRES_CONNECTIONS)
        .min_connections(0)
        .acquire_timeout(settings.acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for < PING_AFTER_IDLE {
                    return Ok(true);
                }
                match sqlx::Connection::ping(conn).await {
                    Ok(()) => Ok(true),
                    Err(e) => {
                        tracing::debug!("dropping a pooled connection that failed its ping: {e}");
                        Ok(false)
                    }
                }
            })
        })
        .connect_with(options.clone())
        .await
        .map_err(|e| open_err(describe_sqlx(&e)))?;
    Ok(Pool::Postgres(pool))
}

/// sqlx's messages for common open failures, in plain words.
fn describe_sqlx(e: &sqlx::Error) -> String {
    let text = e.to_string();
    if text.contains("file is not a database") || is_not_a_database(e) {
        "the file is not an SQLite database".into()
    } else if text.contains("unable to open database file") || text.contains("readonly") {
        format!("{text} (check that the path and its directory are writable)")
    } else {
        text
    }
}

#[cfg(test)]
mod tests;
