//! The scenarios on PostgreSQL: the real daemon (one process, or three
//! sharing the store as a cluster) over a schema of its own on the server
//! named by `--postgres-url`, filled with N definitions on the in-memory
//! fake provider. Every scenario gets a fresh schema, dropped afterwards.
//!
//! - idle: start-up (spawn to `READY=1`, each node), CPU and RSS of each
//!   node, the statements each node sends (a counting proxy per node, see
//!   [`crate::pgwire`]) and the server's transactions/s for the database
//!   (`pg_stat_database`, every client of that database included);
//! - all due at one slot: claims/s and claim lateness over the nodes;
//! - spread (`H * * * * *`): claim lateness p50/p99;
//! - failover (three nodes): a node holding runs is SIGKILLed (its pid is
//!   gone: the others take its runs over at their next sweep) and then
//!   another is SIGSTOPped (alive but silent, as a host that went away:
//!   its runs are taken over once its lease lapses); each is timed from the
//!   signal until every run it held has a new owner or epoch, or ended.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use snapsched::store::{Location, Store};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::pgwire::{xacts_per_second, CountingProxy, XactSample};
use crate::procfs;
use crate::scenario;
use crate::snap::{wait_ready, READY_TIMEOUT};
use crate::stats::Lateness;

/// The lease every node holds (the configuration default, written out).
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// Runs due at once in the failover scenario: a few per node, fewer than
/// `max_concurrent_runs` (8) each.
const FAILOVER_RUNS: usize = 18;
/// The application name the daemons' sessions carry, so other sessions on
/// the server can be told apart.
const APP_NAME: &str = "snapsched-bench-node";
const SCHEDULED: &str = "('schedule', 'catchup')";
/// A run in flight as first seen: id, owner node, lease epoch.
type Held = (i64, Option<String>, i64);
/// A run as polled: id, state, owner pid, owner node, lease epoch.
type Polled = (i64, String, Option<i64>, Option<String>, i64);
const ACTIVE: &str = "('pending', 'creating', 'waiting', 'pruning')";

/// The server named by `--postgres-url`.
#[derive(Clone)]
pub struct PgServer {
    /// Without the password: what a daemon's config may name.
    base: url::Url,
    password: Option<String>,
    admin: PgConnectOptions,
}

impl PgServer {
    /// Parse `--postgres-url`; a password in it is handed to the daemons
    /// as `PGPASSWORD` (their configuration refuses a URL with one).
    pub fn parse(text: &str) -> anyhow::Result<PgServer> {
        let bad = |why: String| {
            anyhow::anyhow!(
                "--postgres-url: {why}; give a URL such as postgres://postgres@127.0.0.1:5432/test"
            )
        };
        let mut base = url::Url::parse(text).map_err(|e| bad(format!("not a URL ({e})")))?;
        if !matches!(base.scheme(), "postgres" | "postgresql") {
            return Err(bad(format!(
                "scheme '{}' is not postgres:// or postgresql://",
                base.scheme()
            )));
        }
        if base.host_str().is_none_or(str::is_empty) {
            return Err(bad("no host".into()));
        }
        let admin = PgConnectOptions::from_str(text)
            .map_err(|e| bad(format!("not a PostgreSQL URL ({e})")))?;
        let password = base.password().map(percent_decode);
        let _ = base.set_password(None);
        Ok(PgServer {
            base,
            password,
            admin,
        })
    }

    /// The URL as shown in the report (never a password).
    pub fn shown(&self) -> String {
        self.base.to_string()
    }

    fn upstream(&self) -> String {
        format!(
            "{}:{}",
            self.base.host_str().unwrap_or("127.0.0.1"),
            self.base.port().unwrap_or(5432)
        )
    }

    /// The `[daemon] database` value for `schema`, reaching the server
    /// directly or through a local proxy on port `via`.
    fn daemon_url(&self, schema: &str, via: Option<u16>) -> String {
        let mut u = self.base.clone();
        let kept: Vec<(String, String)> = u
            .query_pairs()
            .filter(|(k, _)| {
                k != "options" && k != "application_name" && (via.is_none() || k != "sslmode")
            })
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if let Some(port) = via {
            let _ = u.set_host(Some("127.0.0.1"));
            let _ = u.set_port(Some(port));
        }
        {
            let mut q = u.query_pairs_mut();
            q.clear();
            for (k, v) in &kept {
                q.append_pair(k, v);
            }
            if via.is_some() {
                // The proxy reads the protocol: no TLS on loopback.
                q.append_pair("sslmode", "disable");
            }
            q.append_pair("application_name", APP_NAME);
            q.append_pair("options", &format!("-c search_path={schema}"));
        }
        u.to_string()
    }

    async fn connect(&self) -> anyhow::Result<PgConnection> {
        Ok(self.admin.connect().await?)
    }

    /// Create `schema` with snapsched's tables in it; connect options that
    /// use it.
    async fn create_schema(&self, schema: &str) -> anyhow::Result<PgConnectOptions> {
        let mut admin = self.connect().await?;
        sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        let opts = self.admin.clone().options([("search_path", schema)]);
        let store = Store::connect(&Location::Postgres(Box::new(opts.clone()))).await?;
        store.close().await;
        Ok(opts)
    }

    async fn drop_schema(&self, schema: &str) -> anyhow::Result<()> {
        let mut admin = self.connect().await?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        Ok(())
    }

    /// `xact_commit + xact_rollback` of the database, on a connection of
    /// its own (a session caches what it read of the statistics).
    async fn xacts(&self) -> anyhow::Result<XactSample> {
        let mut c = self.connect().await?;
        let xacts: i64 = sqlx::query_scalar(
            "SELECT (xact_commit + xact_rollback)::BIGINT FROM pg_stat_database
              WHERE datname = current_database()",
        )
        .fetch_one(&mut c)
        .await?;
        let at = Instant::now();
        c.close().await?;
        Ok(XactSample { xacts, at })
    }

    /// Sessions on the database other than the daemons' and this one.
    async fn other_sessions(&self) -> anyhow::Result<i64> {
        let mut c = self.connect().await?;
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid()
                AND COALESCE(application_name, '') <> $1",
        )
        .bind(APP_NAME)
        .fetch_one(&mut c)
        .await?;
        c.close().await?;
        Ok(n)
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("p={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Idle: nothing due.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PgIdle {
    pub fill_s: Option<f64>,
    /// Spawn to ready, per node.
    pub startup_s: Vec<f64>,
    /// CPU seconds per wall second over the window, per node.
    pub cpu_fraction: Vec<f64>,
    pub rss_bytes: Vec<u64>,
    /// Statements each node sent per second (counted at its proxy).
    pub statements_per_s: Vec<f64>,
    /// The database's transactions per second by `pg_stat_database`
    /// (every client of the database, this benchmark's readings removed).
    pub server_xacts_per_s: Option<f64>,
    /// Sessions on the database that were not the daemons', the more of
    /// two counts at the start and the end of the window: when non-zero the
    /// server figure includes their work (sessions that came and went in
    /// between are not seen).
    pub other_sessions: Option<i64>,
}

/// All due at one slot, or the spread window.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PgBurst {
    pub startup_s: Vec<f64>,
    pub expected: usize,
    /// Run rows claimed for the measured slots.
    pub claimed: usize,
    pub lateness: Option<Lateness>,
    /// All due: claims over the time from the slot to the last claim.
    pub claims_per_s: Option<f64>,
    pub peak_rss_bytes: Vec<u64>,
}

/// Failover in a cluster of three.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PgFailover {
    pub lease_ttl_s: u64,
    /// Runs the SIGKILLed node held.
    pub killed_runs: usize,
    /// SIGKILL to every one of its runs taken over.
    pub kill_s: Option<f64>,
    /// Runs the SIGSTOPped node held.
    pub silent_runs: usize,
    /// SIGSTOP to every one of its runs taken over.
    pub silent_s: Option<f64>,
}

/// One N on one cluster size.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PgResult {
    pub n: usize,
    pub nodes: usize,
    pub idle: PgIdle,
    pub all_due: Vec<PgBurst>,
    pub spread: PgBurst,
    pub failover: Option<PgFailover>,
    pub problems: Vec<String>,
}

/// How the PostgreSQL part is sized.
#[derive(Debug, Clone, Copy)]
pub struct PgPlan {
    pub idle_window_s: u64,
    pub spread_window_s: u64,
    pub all_due_repeats: usize,
}

/// A daemon of the scenario.
struct Node {
    child: Option<Child>,
    pid: u32,
    started: Instant,
    sock: Option<UnixDatagram>,
    draining: Arc<AtomicBool>,
    drain: Option<std::thread::JoinHandle<()>>,
    log: PathBuf,
}

impl Node {
    fn spawn(
        dir: &Path,
        database: &str,
        operation_time: &str,
        password: Option<&str>,
    ) -> anyhow::Result<Node> {
        std::fs::create_dir_all(dir)?;
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                r#"[daemon]
database = "{database}"
log_level = "warn"
shutdown_grace = "5s"
lease_ttl = "{}s"

[providers.lab]
kind = "fake"
operation_time = "{operation_time}"
"#,
                LEASE_TTL.as_secs()
            ),
        )?;
        let sock_path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&sock_path)?;
        let log = dir.join("daemon.log");
        let started = Instant::now();
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["child", "daemon", "--config"])
            .arg(&config)
            .env("NOTIFY_SOCKET", &sock_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        if let Some(p) = password {
            cmd.env("PGPASSWORD", p);
        }
        let child = cmd.spawn()?;
        Ok(Node {
            pid: child.id(),
            child: Some(child),
            started,
            sock: Some(sock),
            draining: Arc::new(AtomicBool::new(true)),
            drain: None,
            log,
        })
    }

    /// Wait for `READY=1` (blocking); then keep draining `STATUS=` lines.
    fn wait_ready(&mut self) -> anyhow::Result<f64> {
        let sock = self
            .sock
            .take()
            .ok_or_else(|| anyhow::anyhow!("waited twice"))?;
        let ready = wait_ready(&sock, self.started + READY_TIMEOUT).ok_or_else(|| {
            anyhow::anyhow!(
                "node pid {} not ready within {}s",
                self.pid,
                READY_TIMEOUT.as_secs()
            )
        })?;
        let draining = self.draining.clone();
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        self.drain = Some(std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while draining.load(Ordering::Relaxed) {
                let _ = sock.recv(&mut buf);
            }
        }));
        Ok((ready - self.started).as_secs_f64())
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(3).collect();
        tail.join(" | ")
    }

    /// SIGKILL and reap at once (a zombie would still look alive).
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        self.draining.store(false, Ordering::Relaxed);
        if let Some(d) = self.drain.take() {
            let _ = d.join();
        }
    }
}

/// SIGTERM every node, then wait for each (SIGKILL after 30 s).
fn stop_all(nodes: &mut [Node]) {
    for n in nodes.iter() {
        if n.child.is_some() {
            procfs::terminate(n.pid);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in nodes.iter_mut() {
        if let Some(c) = n.child.as_mut() {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        n.kill();
    }
}

/// Start `count` nodes; `database(i)` is node i's setting. Returns them
/// ready, with their start-up times.
async fn start_nodes(
    server: &PgServer,
    dir: &Path,
    count: usize,
    database: &dyn Fn(usize) -> String,
    operation_time: &str,
) -> anyhow::Result<(Vec<Node>, Vec<f64>)> {
    let mut nodes = Vec::new();
    for i in 0..count {
        nodes.push(Node::spawn(
            &dir.join(format!("node{i}")),
            &database(i),
            operation_time,
            server.password.as_deref(),
        )?);
    }
    let mut waits = Vec::new();
    for mut node in nodes {
        waits.push(tokio::task::spawn_blocking(move || {
            let r = node.wait_ready();
            (node, r)
        }));
    }
    let mut nodes = Vec::new();
    let mut startups = Vec::new();
    let mut failed = Vec::new();
    for w in waits {
        let (node, r) = w.await?;
        match r {
            Ok(s) => startups.push(s),
            Err(e) => failed.push(format!("{e}; log: {}", node.log_tail())),
        }
        nodes.push(node);
    }
    if !failed.is_empty() {
        stop_all(&mut nodes);
        anyhow::bail!("{}", failed.join("; "));
    }
    Ok((nodes, startups))
}

static SCHEMAS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn schema_name(what: &str, n: usize, nodes: usize) -> String {
    format!(
        "bench_{}_{}_{what}_{n}x{nodes}",
        std::process::id(),
        SCHEMAS.fetch_add(1, Ordering::Relaxed)
    )
}

/// Fill with `n` definitions: the first `due.1` on `due.0`, the rest on
/// `rest`. Returns the seconds it took.
async fn fill(
    opts: &PgConnectOptions,
    n: usize,
    due: (&str, usize),
    rest: &str,
) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut c = opts.connect().await?;
    let now = snapsched::store::ts_ms(Utc::now());
    sqlx::query(
        "INSERT INTO definitions (provider, target, disk_id, name, schedule, retention, active,
             \"desc\", fsfreeze, tags, source, created_at, updated_at)
         SELECT 'lab', 'vm' || i::TEXT, 1, 'd' || i::TEXT,
                CASE WHEN i < $1 THEN $2 ELSE $3 END, 3, TRUE, '', FALSE, '[]', 'cli', $4, $4
           FROM generate_series(0, $5 - 1) AS i",
    )
    .bind(due.1 as i64)
    .bind(due.0)
    .bind(rest)
    .bind(&now)
    .bind(n as i64)
    .execute(&mut c)
    .await?;
    c.close().await?;
    Ok(t.elapsed().as_secs_f64())
}

const YEARLY: &str = "0 0 1 1 *";

/// A scenario in a fresh schema, dropped afterwards whatever happened.
async fn in_schema<T, F, Fut>(server: &PgServer, name: String, f: F) -> anyhow::Result<T>
where
    F: FnOnce(PgConnectOptions, String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let opts = server.create_schema(&name).await?;
    let r = f(opts, name.clone()).await;
    if let Err(e) = server.drop_schema(&name).await {
        eprintln!("  cannot drop schema {name}: {e}");
    }
    r
}

async fn idle(
    server: &PgServer,
    n: usize,
    count: usize,
    plan: PgPlan,
    ticks: f64,
) -> anyhow::Result<PgIdle> {
    in_schema(
        server,
        schema_name("idle", n, count),
        |opts, schema| async move {
            let fill_s = fill(&opts, n, (YEARLY, 0), YEARLY).await?;
            let dir = tempfile::tempdir()?;
            let mut proxies = Vec::new();
            for _ in 0..count {
                proxies.push(CountingProxy::start(server.upstream()).await?);
            }
            let ports: Vec<u16> = proxies.iter().map(|p| p.port).collect();
            let (mut nodes, startup_s) = start_nodes(
                server,
                dir.path(),
                count,
                &|i| server.daemon_url(&schema, Some(ports[i])),
                "0s",
            )
            .await?;
            let r = async {
                // Start-up work (the first sync, joining) settles first.
                tokio::time::sleep(Duration::from_secs(2)).await;
                let c0: Vec<f64> = nodes
                    .iter()
                    .map(|n| procfs::cpu_seconds(n.pid, ticks))
                    .collect::<anyhow::Result<_>>()?;
                let q0: Vec<u64> = proxies.iter().map(CountingProxy::statements).collect();
                let x0 = server.xacts().await?;
                let others_before = server.other_sessions().await.ok();
                let t0 = Instant::now();
                tokio::time::sleep(Duration::from_secs(plan.idle_window_s)).await;
                let c1: Vec<f64> = nodes
                    .iter()
                    .map(|n| procfs::cpu_seconds(n.pid, ticks))
                    .collect::<anyhow::Result<_>>()?;
                let q1: Vec<u64> = proxies.iter().map(CountingProxy::statements).collect();
                let secs = t0.elapsed().as_secs_f64();
                let x1 = server.xacts().await?;
                let other = server.other_sessions().await.ok().max(others_before);
                let rss = nodes
                    .iter()
                    .map(|n| procfs::memory(n.pid).map(|m| m.0))
                    .collect::<anyhow::Result<_>>()?;
                anyhow::Ok(PgIdle {
                    fill_s: Some(fill_s),
                    startup_s: startup_s.clone(),
                    cpu_fraction: c0.iter().zip(&c1).map(|(a, b)| (b - a) / secs).collect(),
                    rss_bytes: rss,
                    statements_per_s: q0
                        .iter()
                        .zip(&q1)
                        .map(|(a, b)| (b - a) as f64 / secs)
                        .collect(),
                    // The first reading's own SELECT lands in the window.
                    server_xacts_per_s: xacts_per_second(x0, x1, 1),
                    other_sessions: other,
                })
            }
            .await;
            stop_all(&mut nodes);
            drop(proxies);
            r
        },
    )
    .await
}

async fn count_runs(
    c: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<usize> {
    let n: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM runs WHERE slot >= $1 AND slot < $2 AND trigger IN {SCHEDULED}"
    ))
    .bind(snapsched::store::ts(from))
    .bind(snapsched::store::ts(to))
    .fetch_one(&mut *c)
    .await?;
    Ok(n as usize)
}

/// Claim lateness (created_at - slot) in ms of the runs in `[from, to)`.
async fn lateness_ms(
    c: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Vec<f64>> {
    let rows: Vec<(String, String)> = sqlx::query_as(&format!(
        "SELECT slot, created_at FROM runs WHERE slot >= $1 AND slot < $2 AND trigger IN {SCHEDULED}"
    ))
    .bind(snapsched::store::ts(from))
    .bind(snapsched::store::ts(to))
    .fetch_all(&mut *c)
    .await?;
    let parse = |t: &str| -> anyhow::Result<DateTime<Utc>> {
        Ok(DateTime::parse_from_rfc3339(t)?.with_timezone(&Utc))
    };
    rows.iter()
        .map(|(s, c)| {
            let d = parse(c)? - parse(s)?;
            Ok(d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0)
        })
        .collect()
}

/// Poll until `want` runs in `[from, to)` are claimed or `limit` after
/// `to` has passed; a shortfall goes to `problems`.
async fn wait_claimed(
    c: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    want: usize,
    limit: Duration,
    problems: &mut Vec<String>,
) -> anyhow::Result<usize> {
    let deadline = Instant::now() + (to - Utc::now()).to_std().unwrap_or_default() + limit;
    loop {
        let got = count_runs(c, from, to).await?;
        if got >= want {
            return Ok(got);
        }
        if Instant::now() > deadline {
            problems.push(format!(
                "only {got} of {want} runs claimed {}s after the slots",
                limit.as_secs()
            ));
            return Ok(got);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[derive(Clone, Copy)]
enum Burst {
    AllDue { at: DateTime<Utc> },
    Spread { from: DateTime<Utc>, window_s: u64 },
}

async fn burst(
    server: &PgServer,
    n: usize,
    count: usize,
    mode: Burst,
    problems: &mut Vec<String>,
) -> anyhow::Result<PgBurst> {
    let what = match mode {
        Burst::AllDue { .. } => "alldue",
        Burst::Spread { .. } => "spread",
    };
    in_schema(
        server,
        schema_name(what, n, count),
        |opts, schema| async move {
            let (from, to, schedule, expected) = match mode {
                Burst::AllDue { at } => (
                    at,
                    at + chrono::Duration::seconds(1),
                    scenario::at_expression(at),
                    n,
                ),
                Burst::Spread { from, window_s } => {
                    let seconds: Vec<u32> = (0..n)
                        .map(scenario::hashed_second)
                        .collect::<Result<_, _>>()?;
                    (
                        from,
                        from + chrono::Duration::seconds(window_s as i64),
                        "H * * * * *".to_owned(),
                        scenario::spread_expected(&seconds, from, window_s),
                    )
                }
            };
            fill(&opts, n, (&schedule, n), &schedule).await?;
            let dir = tempfile::tempdir()?;
            let (mut nodes, startup_s) = start_nodes(
                server,
                dir.path(),
                count,
                &|_| server.daemon_url(&schema, None),
                "0s",
            )
            .await?;
            let r = async {
                if Utc::now() > from {
                    problems.push(format!("{what}: nodes ready after the first slot"));
                }
                let mut c = opts.connect().await?;
                if let Some(until) = (to - Utc::now()).to_std().ok().filter(|_| what == "spread") {
                    tokio::time::sleep(until).await;
                }
                let limit = Duration::from_secs(60 + n as u64 / 200);
                let claimed = wait_claimed(&mut c, from, to, expected, limit, problems).await?;
                let ms = lateness_ms(&mut c, from, to).await?;
                c.close().await?;
                let claims_per_s = match mode {
                    Burst::AllDue { .. } => ms
                        .iter()
                        .copied()
                        .max_by(f64::total_cmp)
                        .map(|last| ms.len() as f64 / (last / 1000.0).max(0.001)),
                    Burst::Spread { .. } => None,
                };
                let peak = nodes
                    .iter()
                    .map(|n| procfs::memory(n.pid).map(|m| m.1))
                    .collect::<anyhow::Result<_>>()?;
                anyhow::Ok(PgBurst {
                    startup_s: startup_s.clone(),
                    expected,
                    claimed,
                    lateness: (!ms.is_empty()).then(|| Lateness::of(ms)),
                    claims_per_s,
                    peak_rss_bytes: peak,
                })
            }
            .await;
            stop_all(&mut nodes);
            r
        },
    )
    .await
}

/// Runs in flight owned by `pid`: (id, owner_node, lease_epoch).
async fn held_by(c: &mut PgConnection, pid: u32) -> anyhow::Result<Vec<Held>> {
    Ok(sqlx::query_as(&format!(
        "SELECT id, owner_node, lease_epoch FROM runs WHERE state IN {ACTIVE} AND owner_pid = $1"
    ))
    .bind(i64::from(pid))
    .fetch_all(&mut *c)
    .await?)
}

/// Time from `signalled` until every run in `held` has a new owner or
/// epoch or ended; `None` past `within`.
async fn until_taken_over(
    c: &mut PgConnection,
    held: &[Held],
    pid: u32,
    signalled: Instant,
    within: Duration,
) -> anyhow::Result<Option<f64>> {
    let ids: Vec<i64> = held.iter().map(|h| h.0).collect();
    loop {
        let rows: Vec<Polled> = sqlx::query_as(
            "SELECT id, state, owner_pid, owner_node, lease_epoch FROM runs WHERE id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&mut *c)
        .await?;
        let moved = rows.iter().all(|(id, state, owner_pid, node, epoch)| {
            let before = held.iter().find(|h| h.0 == *id);
            !ACTIVE.contains(&format!("'{state}'"))
                || *owner_pid != Some(i64::from(pid))
                || before.is_none_or(|b| b.1 != *node || b.2 != *epoch)
        });
        if moved {
            return Ok(Some(signalled.elapsed().as_secs_f64()));
        }
        if signalled.elapsed() > within {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn failover(
    server: &PgServer,
    n: usize,
    lead: Duration,
    problems: &mut Vec<String>,
) -> anyhow::Result<PgFailover> {
    in_schema(
        server,
        schema_name("failover", n, 3),
        |opts, schema| async move {
            let k = FAILOVER_RUNS.min(n);
            let at = crate::slot_in(lead);
            fill(&opts, n, (&scenario::at_expression(at), k), YEARLY).await?;
            let dir = tempfile::tempdir()?;
            // Operations outlast the measurement: the runs stay in flight.
            let (mut nodes, _) = start_nodes(
                server,
                dir.path(),
                3,
                &|_| server.daemon_url(&schema, None),
                "10m",
            )
            .await?;
            let r = async {
                let mut c = opts.connect().await?;
                let to = at + chrono::Duration::seconds(1);
                wait_claimed(&mut c, at, to, k, Duration::from_secs(30), problems).await?;
                // Every claimed run reaches `waiting` (the operation is out).
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    let waiting: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM runs WHERE state = 'waiting' AND owner_pid IS NOT NULL",
                )
                .fetch_one(&mut c)
                .await?;
                    if waiting as usize >= k || Instant::now() > deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let mut out = PgFailover {
                    lease_ttl_s: LEASE_TTL.as_secs(),
                    ..PgFailover::default()
                };
                let within = LEASE_TTL * 2 + Duration::from_secs(20);
                for silent in [false, true] {
                    let mut best: Option<(usize, Vec<Held>)> = None;
                    for (i, node) in nodes.iter().enumerate() {
                        if node.child.is_none() {
                            continue;
                        }
                        let held = held_by(&mut c, node.pid).await?;
                        if best.as_ref().is_none_or(|b| held.len() > b.1.len()) {
                            best = Some((i, held));
                        }
                    }
                    let Some((i, held)) = best.filter(|b| !b.1.is_empty()) else {
                        problems.push(format!(
                            "failover: no live node held runs before the {}",
                            if silent { "SIGSTOP" } else { "SIGKILL" }
                        ));
                        break;
                    };
                    let pid = nodes[i].pid;
                    let t = Instant::now();
                    if silent {
                        let _ = Command::new("kill")
                            .args(["-STOP", &pid.to_string()])
                            .status();
                    } else {
                        nodes[i].kill();
                    }
                    let took = until_taken_over(&mut c, &held, pid, t, within).await?;
                    if took.is_none() {
                        problems.push(format!(
                            "failover: runs of the {} node not taken over within {}s",
                            if silent { "SIGSTOPped" } else { "SIGKILLed" },
                            within.as_secs()
                        ));
                    }
                    if silent {
                        out.silent_runs = held.len();
                        out.silent_s = took;
                        nodes[i].kill();
                    } else {
                        out.killed_runs = held.len();
                        out.kill_s = took;
                    }
                }
                c.close().await?;
                anyhow::Ok(out)
            }
            .await;
            stop_all(&mut nodes);
            r
        },
    )
    .await
}

/// Every scenario at `n` on `count` nodes.
pub async fn measure(
    server: &PgServer,
    n: usize,
    count: usize,
    plan: PgPlan,
    ticks: f64,
) -> PgResult {
    let mut out = PgResult {
        n,
        nodes: count,
        ..PgResult::default()
    };
    let label = format!("postgres N={n} nodes={count}");
    eprintln!("{label}: idle {}s", plan.idle_window_s);
    match idle(server, n, count, plan, ticks).await {
        Ok(i) => out.idle = i,
        Err(e) => out.problems.push(format!("idle: {e:#}")),
    }
    let startup = out
        .idle
        .startup_s
        .iter()
        .copied()
        .max_by(f64::total_cmp)
        .unwrap_or(30.0);
    // Fill, start every node, then the slot.
    let lead = Duration::from_secs_f64(
        out.idle.fill_s.unwrap_or(n as f64 / 5_000.0) * 2.0 + startup * 1.5 + 5.0,
    );
    for r in 0..plan.all_due_repeats {
        eprintln!("{label}: all due at one slot, run {}", r + 1);
        let at = crate::slot_in(lead);
        match burst(server, n, count, Burst::AllDue { at }, &mut out.problems).await {
            Ok(b) => out.all_due.push(b),
            Err(e) => out.problems.push(format!("all due: {e:#}")),
        }
    }
    eprintln!("{label}: spread over {}s", plan.spread_window_s);
    let from = crate::slot_in(lead + Duration::from_secs(1));
    let spread = Burst::Spread {
        from,
        window_s: plan.spread_window_s,
    };
    match burst(server, n, count, spread, &mut out.problems).await {
        Ok(b) => out.spread = b,
        Err(e) => out.problems.push(format!("spread: {e:#}")),
    }
    if count == 3 {
        eprintln!("{label}: failover (SIGKILL, then SIGSTOP)");
        match failover(server, n, lead, &mut out.problems).await {
            Ok(f) => out.failover = Some(f),
            Err(e) => out.problems.push(format!("failover: {e:#}")),
        }
    }
    for p in &out.problems {
        eprintln!("  {label}: {p}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_url_names_the_schema_and_never_the_password() {
        let s = PgServer::parse("postgres://bench:s3cr%40t@db.example:6432/snap?sslmode=require")
            .expect("parses");
        assert_eq!(s.password.as_deref(), Some("s3cr@t"));
        assert!(!s.shown().contains("s3cr"));
        let direct = s.daemon_url("bench_1", None);
        let opts = PgConnectOptions::from_str(&direct).expect("sqlx reads it");
        assert_eq!(opts.get_host(), "db.example");
        assert_eq!(opts.get_port(), 6432);
        assert!(direct.contains("sslmode=require"), "{direct}");
        assert!(direct.contains("search_path%3Dbench_1"), "{direct}");
        let via = s.daemon_url("bench_1", Some(40000));
        let opts = PgConnectOptions::from_str(&via).expect("sqlx reads it");
        assert_eq!((opts.get_host(), opts.get_port()), ("127.0.0.1", 40000));
        assert!(
            via.contains("sslmode=disable") && !via.contains("require"),
            "{via}"
        );
    }

    #[test]
    fn a_url_that_is_not_postgres_is_refused_with_an_example() {
        for bad in ["mysql://x@h/db", "not a url", "postgres:///db"] {
            let e = PgServer::parse(bad).err().expect("refused").to_string();
            assert!(
                e.contains("--postgres-url") && e.contains("postgres://"),
                "{e}"
            );
        }
    }
}
