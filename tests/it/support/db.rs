//! The store backend the suite runs on: SQLite (the default) or PostgreSQL.
//!
//! `SNAPSCHED_TEST_BACKEND=postgres` runs every test that opens its store
//! through [`open`] on the PostgreSQL server at `SNAPSCHED_TEST_POSTGRES_URL`
//! (for example `postgres://postgres@127.0.0.1:5432/test`), each test in a
//! schema of its own, so tests run in parallel as on SQLite. The command runs
//! the suite once per backend (see `.ci/run`).
//!
//! Invariants: asking for PostgreSQL without a URL, or with a server that
//! does not answer, fails the test (it never quietly falls back to SQLite or
//! skips); a test's schema is named after its database path, so reopening
//! the same path (a restart) finds the same data; schemas left by test
//! processes that have exited are dropped by the next run on the same host.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use snapsched::store::{Backend, Location, PoolSettings, Store};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// Selects the backend: `sqlite` (or unset) or `postgres`.
pub const BACKEND_VAR: &str = "SNAPSCHED_TEST_BACKEND";
/// The PostgreSQL server for `SNAPSCHED_TEST_BACKEND=postgres`.
pub const URL_VAR: &str = "SNAPSCHED_TEST_POSTGRES_URL";

/// The backend this run of the suite tests.
pub fn backend() -> Backend {
    match std::env::var(BACKEND_VAR).unwrap_or_default().as_str() {
        "" | "sqlite" => Backend::Sqlite,
        "postgres" | "postgresql" => Backend::Postgres,
        other => panic!("{BACKEND_VAR}={other}: expected sqlite or postgres"),
    }
}

/// The PostgreSQL server's URL, if one is configured.
pub fn postgres_url() -> Option<String> {
    std::env::var(URL_VAR).ok().filter(|u| !u.is_empty())
}

/// Connect options for the configured server; panics without one.
pub fn server() -> PgConnectOptions {
    let url = postgres_url().unwrap_or_else(|| {
        panic!(
            "{BACKEND_VAR}=postgres needs {URL_VAR} \
             (e.g. postgres://postgres@127.0.0.1:5432/test)"
        )
    });
    PgConnectOptions::from_str(&url)
        .unwrap_or_else(|e| panic!("{URL_VAR} is not a PostgreSQL URL: {e}"))
}

/// Pool settings for tests: no acquire timeout to speak of, since engine
/// tests run on tokio's paused clock, which can jump past any timeout while
/// a connection is being opened or handed back in real time.
pub fn settings() -> PoolSettings {
    PoolSettings {
        acquire_timeout: Duration::from_secs(365 * 86400),
    }
}

/// The schema a database path maps to in this process.
fn schema_for(path: &Path) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    format!("t_{}_{:016x}", std::process::id(), h.finish())
}

/// Where the store for `path` lives on this run's backend: the file itself
/// on SQLite; on PostgreSQL a schema of its own (created if missing) on the
/// configured server.
pub async fn location(path: &Path) -> Location {
    match backend() {
        Backend::Sqlite => Location::Sqlite(path.to_owned()),
        Backend::Postgres => Location::Postgres(Box::new(schema(&schema_for(path)).await)),
    }
}

/// Open (creating if missing) the store for `path` on this run's backend.
pub async fn open(path: &Path) -> Store {
    let location = location(path).await;
    Store::connect_with(&location, &settings())
        .await
        .unwrap_or_else(|e| panic!("store at {location} opens: {e}"))
}

/// A fresh PostgreSQL schema for one test: connect options whose
/// `search_path` is a new, empty schema `t_<pid>_<random>`.
pub async fn fresh_schema() -> PgConnectOptions {
    schema(&format!(
        "t_{}_{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ))
    .await
}

/// Connect options for `name` on the configured server, creating the
/// schema if it does not exist.
pub async fn schema(name: &str) -> PgConnectOptions {
    let server = server();
    let mut admin = server.connect().await.unwrap_or_else(|e| {
        panic!(
            "cannot reach the PostgreSQL server of {URL_VAR} ({}:{}): {e}",
            server.get_host(),
            server.get_port()
        )
    });
    static SWEPT: AtomicBool = AtomicBool::new(false);
    if !SWEPT.swap(true, Ordering::SeqCst) {
        drop_stale_schemas(&mut admin).await;
    }
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{name}\""))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("create schema {name}: {e}"));
    admin.close().await.ok();
    server.options([("search_path", name)])
}

/// Drop the test schemas of processes on this host that have exited.
async fn drop_stale_schemas(admin: &mut sqlx::PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT nspname::TEXT FROM pg_namespace WHERE nspname LIKE 't\\_%\\_%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    for name in names {
        let Some(pid) = name
            .strip_prefix("t_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        // Another process may be dropping it too: an error here is harmless.
        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
            .execute(&mut *admin)
            .await;
    }
}

/// The `[daemon] database` value of a config file naming the store for
/// `path` on this run's backend: the path, or the server's URL with the
/// test's schema (created here) as `search_path`. For the tests that run the
/// binary, once the configuration accepts a PostgreSQL URL. Synchronous, so
/// that fixtures building a config file can call it from plain and async
/// tests alike.
pub fn database_setting(path: &Path) -> String {
    match backend() {
        Backend::Sqlite => path.display().to_string(),
        Backend::Postgres => {
            let name = schema_for(path);
            // A runtime of its own on a thread of its own: the caller may be
            // inside one already.
            std::thread::scope(|s| {
                s.spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime")
                        .block_on(schema(&name))
                })
                .join()
                .expect("schema created")
            });
            let url = postgres_url().expect("checked by schema()");
            with_search_path(&url, &name)
        }
    }
}

fn with_search_path(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// The configured server's address, for a proxy in front of it.
pub fn server_addr() -> std::net::SocketAddr {
    use std::net::ToSocketAddrs;
    let server = server();
    (server.get_host(), server.get_port())
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("{URL_VAR}: cannot resolve {}", server.get_host()))
}

/// [`database_setting`] on PostgreSQL, but reaching the server through
/// `via` (a [`super::proxy::Proxy`]): the same schema, another address.
pub fn database_setting_via(path: &Path, via: std::net::SocketAddr) -> String {
    assert_eq!(backend(), Backend::Postgres, "a proxy is for PostgreSQL");
    let direct = database_setting(path);
    let url = postgres_url().expect("checked by database_setting");
    let server = server();
    let host_port = format!("{}:{}", server.get_host(), server.get_port());
    let (scheme, rest) = url.split_once("://").expect("a URL has a scheme");
    let (auth, after) = match rest.split_once('@') {
        Some((auth, after)) => (format!("{auth}@"), after),
        None => (String::new(), rest),
    };
    let tail = after
        .strip_prefix(&host_port)
        .or_else(|| after.strip_prefix(server.get_host()))
        .unwrap_or_else(|| panic!("{URL_VAR}: expected {host_port} after the user in {url}"));
    let query = direct
        .split_once("options=")
        .map(|(_, q)| q)
        .expect("options");
    let proxied = format!("{scheme}://{auth}{via}{tail}");
    let sep = if proxied.contains('?') { '&' } else { '?' };
    format!("{proxied}{sep}options={query}")
}

/// The config value [`database_setting`] writes reaches the same schema as
/// [`open`]: what the binary will open is what the test reads.
#[tokio::test]
async fn the_database_setting_names_the_tests_store() {
    use snapsched::domain::definition::{RawDefinition, Source};
    use snapsched::domain::ProviderKind;

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("snapsched.db");
    let store = open(&path).await;
    let spec = RawDefinition {
        name: "daily".into(),
        provider: "fake".into(),
        target: "vm1".into(),
        schedule: Some("30 5 * * *".into()),
        retention: Some(7),
        ..RawDefinition::default()
    }
    .validate(ProviderKind::Fake)
    .expect("valid definition");
    store
        .insert_definition(&spec, Source::Cli, None, chrono::Utc::now())
        .await
        .expect("insert");
    store.close().await;
    let setting = database_setting(&path);
    let location = match backend() {
        Backend::Sqlite => Location::Sqlite(setting.into()),
        Backend::Postgres => Location::Postgres(Box::new(
            PgConnectOptions::from_str(&setting).expect("the setting is a URL"),
        )),
    };
    let again = Store::connect_with(&location, &settings())
        .await
        .expect("reopens");
    assert_eq!(again.list_definitions().await.expect("list").len(), 1);
    again.close().await;
}

/// Make node `id`'s heartbeat `secs` seconds old, by the database's clock
/// (for the store of `path` on this run's backend).
pub async fn age_heartbeat(store: &Store, path: &Path, id: &str, secs: i64) {
    let sql = "UPDATE nodes SET heartbeat_ms = heartbeat_ms - $1 WHERE id = $2";
    let by = secs * 1000;
    match store.backend() {
        Backend::Sqlite => {
            let pool = store.sqlite_pool().expect("a SQLite store");
            sqlx::query(sql)
                .bind(by)
                .bind(id)
                .execute(pool)
                .await
                .expect("age heartbeat");
        }
        Backend::Postgres => {
            use sqlx::{ConnectOptions, Connection};
            let Location::Postgres(options) = location(path).await else {
                unreachable!("a PostgreSQL location on the PostgreSQL pass");
            };
            let mut conn = options.connect().await.expect("connect");
            sqlx::query(sql)
                .bind(by)
                .bind(id)
                .execute(&mut conn)
                .await
                .expect("age heartbeat");
            conn.close().await.ok();
        }
    }
}

/// One integer a query reads from the store of `path` on this run's
/// backend (for example a `COUNT(*)`), through a connection of its own:
/// read-only on SQLite, so it never waits on the daemon writing.
pub async fn scalar(path: &Path, sql: &str) -> i64 {
    match backend() {
        Backend::Sqlite => {
            let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(path)
                .read_only(true)
                .connect()
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let n = sqlx::query_scalar(sql)
                .fetch_one(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            conn.close().await.ok();
            n
        }
        Backend::Postgres => {
            let Location::Postgres(options) = location(path).await else {
                unreachable!("a PostgreSQL location on the PostgreSQL pass");
            };
            let mut conn = options.connect().await.expect("connect");
            let n = sqlx::query_scalar(sql)
                .fetch_one(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            conn.close().await.ok();
            n
        }
    }
}
