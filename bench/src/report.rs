//! The report: JSON as measured, and the printed table with ratios.

use std::fmt::Write as _;

use serde::Serialize;

use crate::api::ApiResult;
use crate::cron::CronRate;
use crate::fleet::FleetResult;
use crate::pg::PgResult;
use crate::scenario::Outcome;
use crate::stats::Spread;
use crate::store_growth::StoreResult;
use crate::Plan;

/// One system at one N.
#[derive(Debug, Clone, Serialize)]
pub struct SystemResult {
    pub idle: Outcome,
    pub all_due: Vec<Outcome>,
    pub spread: Outcome,
    /// Start-up of every process started for this N (idle, all-due, spread).
    pub startup_s: Option<Spread>,
    pub all_due_dispatch_per_s: Option<Spread>,
    pub all_due_p50_ms: Option<Spread>,
    pub all_due_p99_ms: Option<Spread>,
    pub all_due_max_ms: Option<Spread>,
    pub all_due_peak_rss_bytes: Option<Spread>,
}

impl SystemResult {
    pub fn new(idle: Outcome, all_due: Vec<Outcome>, spread: Outcome) -> Self {
        let startups: Vec<f64> = std::iter::once(&idle)
            .chain(&all_due)
            .chain(std::iter::once(&spread))
            .filter_map(|o| o.startup_s)
            .collect();
        let of = |f: &dyn Fn(&Outcome) -> Option<f64>| {
            Spread::of(&all_due.iter().filter_map(f).collect::<Vec<_>>())
        };
        SystemResult {
            startup_s: Spread::of(&startups),
            all_due_dispatch_per_s: of(&|o| o.dispatch_per_s),
            all_due_p50_ms: of(&|o| o.lateness.map(|l| l.p50_ms)),
            all_due_p99_ms: of(&|o| o.lateness.map(|l| l.p99_ms)),
            all_due_max_ms: of(&|o| o.lateness.map(|l| l.max_ms)),
            all_due_peak_rss_bytes: of(&|o| o.peak_rss_bytes.map(|b| b as f64)),
            idle,
            all_due,
            spread,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ScaleResult {
    pub n: usize,
    pub snapsched: SystemResult,
    pub peer: SystemResult,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: serde_json::Value,
    pub clock_ticks_per_s: f64,
    pub clock_ticks_from_getconf: bool,
    pub plan: Plan,
    pub scale: Vec<ScaleResult>,
    pub cron: Vec<CronRate>,
    /// SQLite store growth; `None` when SQLite was not measured.
    pub store: Option<StoreResult>,
    pub api: Option<ApiResult>,
    pub fleet: Option<FleetResult>,
    pub postgres: PgReport,
}

/// The PostgreSQL part: measured rows, or why there are none.
#[derive(Debug, Clone, Serialize)]
pub struct PgReport {
    /// The server, without a password.
    pub server: Option<String>,
    pub skipped: Option<String>,
    pub lease_ttl_s: u64,
    pub results: Vec<PgResult>,
}

fn num(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn spread(s: Option<Spread>, scale: f64) -> String {
    match s {
        Some(s) if s.runs > 1 => format!(
            "{} ({}-{})",
            num(s.median * scale),
            num(s.min * scale),
            num(s.max * scale)
        ),
        Some(s) => num(s.median * scale),
        None => "-".into(),
    }
}

fn one(v: Option<f64>) -> String {
    v.map(num).unwrap_or_else(|| "-".into())
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 && a.is_finite() && b.is_finite() => num(a / b),
        _ => "-".into(),
    }
}

const MB: f64 = 1024.0 * 1024.0;

impl Report {
    pub fn table(&self) -> String {
        let mut t = String::new();
        let m = &self.machine;
        let _ = writeln!(
            t,
            "\nMachine: {} CPUs ({}), {} GiB RAM. CPU time from /proc at {} ticks/s{}.",
            m["nproc"],
            m["cpu_model"].as_str().unwrap_or("?"),
            m["ram_gib"],
            self.clock_ticks_per_s,
            if self.clock_ticks_from_getconf {
                ""
            } else {
                " (assumed; getconf missing)"
            }
        );
        if !self.scale.is_empty() {
            let _ = writeln!(
            t,
            "Each figure from its own child process. Start-up: median (min-max) of every process \
             started for that N. All due: median (min-max) of {} runs. Idle ({} s window) and spread \
             ({} s window) measured once per N per system.{}",
            self.plan.all_due_repeats,
            self.plan.idle_window_s,
            self.plan.spread_window_s,
            if self.plan.quick { " QUICK RUN: not the reference figures." } else { "" }
        );
            let _ = writeln!(
            t,
            "snapsched: the real daemon, fake provider, log_level warn, max_concurrent_runs 8. \
             Peer: tokio-cron-scheduler, JobScheduler::new() defaults, job records its instant.\n"
        );
            let _ = writeln!(
                t,
                "{:<34} {:>8} {:>24} {:>24} {:>10}",
                "metric", "N", "snapsched", "tokio-cron-scheduler", "ratio s/p"
            );
            for s in &self.scale {
                let (a, b) = (&s.snapsched, &s.peer);
                let med = |x: Option<Spread>| x.map(|x| x.median);
                let rows: Vec<(&str, String, String, String)> = vec![
                    (
                        "start-up (s)",
                        spread(a.startup_s, 1.0),
                        spread(b.startup_s, 1.0),
                        ratio(med(a.startup_s), med(b.startup_s)),
                    ),
                    (
                        "idle CPU (% of one core)",
                        one(a.idle.idle_cpu_fraction.map(|f| f * 100.0)),
                        one(b.idle.idle_cpu_fraction.map(|f| f * 100.0)),
                        ratio(a.idle.idle_cpu_fraction, b.idle.idle_cpu_fraction),
                    ),
                    (
                        "idle RSS (MB)",
                        one(a.idle.rss_bytes.map(|r| r as f64 / MB)),
                        one(b.idle.rss_bytes.map(|r| r as f64 / MB)),
                        ratio(
                            a.idle.rss_bytes.map(|r| r as f64),
                            b.idle.rss_bytes.map(|r| r as f64),
                        ),
                    ),
                    (
                        "all due: dispatched/s",
                        spread(a.all_due_dispatch_per_s, 1.0),
                        spread(b.all_due_dispatch_per_s, 1.0),
                        ratio(med(a.all_due_dispatch_per_s), med(b.all_due_dispatch_per_s)),
                    ),
                    (
                        "all due: lateness p50 (ms)",
                        spread(a.all_due_p50_ms, 1.0),
                        spread(b.all_due_p50_ms, 1.0),
                        ratio(med(a.all_due_p50_ms), med(b.all_due_p50_ms)),
                    ),
                    (
                        "all due: lateness p99 (ms)",
                        spread(a.all_due_p99_ms, 1.0),
                        spread(b.all_due_p99_ms, 1.0),
                        ratio(med(a.all_due_p99_ms), med(b.all_due_p99_ms)),
                    ),
                    (
                        "all due: lateness max (ms)",
                        spread(a.all_due_max_ms, 1.0),
                        spread(b.all_due_max_ms, 1.0),
                        ratio(med(a.all_due_max_ms), med(b.all_due_max_ms)),
                    ),
                    (
                        "all due: peak RSS (MB)",
                        spread(a.all_due_peak_rss_bytes, 1.0 / MB),
                        spread(b.all_due_peak_rss_bytes, 1.0 / MB),
                        ratio(med(a.all_due_peak_rss_bytes), med(b.all_due_peak_rss_bytes)),
                    ),
                    (
                        "all due: dispatched / expected",
                        fired(&a.all_due),
                        fired(&b.all_due),
                        String::new(),
                    ),
                    (
                        "spread: lateness p50 (ms)",
                        one(a.spread.lateness.map(|l| l.p50_ms)),
                        one(b.spread.lateness.map(|l| l.p50_ms)),
                        ratio(
                            a.spread.lateness.map(|l| l.p50_ms),
                            b.spread.lateness.map(|l| l.p50_ms),
                        ),
                    ),
                    (
                        "spread: lateness p99 (ms)",
                        one(a.spread.lateness.map(|l| l.p99_ms)),
                        one(b.spread.lateness.map(|l| l.p99_ms)),
                        ratio(
                            a.spread.lateness.map(|l| l.p99_ms),
                            b.spread.lateness.map(|l| l.p99_ms),
                        ),
                    ),
                    (
                        "spread: dispatched / expected",
                        format!("{}/{}", a.spread.dispatched, a.spread.expected),
                        format!("{}/{}", b.spread.dispatched, b.spread.expected),
                        String::new(),
                    ),
                ];
                // `--idle-only` measured start-up and idle only.
                let measured = |name: &str| {
                    !self.plan.idle_only || name.starts_with("start-up") || name.starts_with("idle")
                };
                for (name, x, y, r) in rows.into_iter().filter(|r| measured(r.0)) {
                    let _ = writeln!(t, "{name:<34} {:>8} {x:>24} {y:>24} {r:>10}", s.n);
                }
                if let Some(f) = a
                    .all_due
                    .iter()
                    .filter_map(|o| o.all_finished_s)
                    .max_by(f64::total_cmp)
                {
                    let _ = writeln!(
                        t,
                        "{:<34} {:>8} {:>24}",
                        "all due: every run final (s, max)",
                        s.n,
                        num(f)
                    );
                }
                let _ = writeln!(t);
            }
        }
        if !self.cron.is_empty() {
            let _ = writeln!(
                t,
                "{:<34} {:<18} {:>24}",
                "cron next-fire", "zone", "per second"
            );
        }
        for c in &self.cron {
            let _ = writeln!(
                t,
                "{:<34} {:<18} {:>24}",
                c.expression,
                c.zone,
                spread(Some(c.per_second), 1.0)
            );
        }
        if let Some(st) = &self.store {
            store_lines(&mut t, st);
        }
        if let Some(api) = &self.api {
            api_lines(&mut t, api);
        }
        if let Some(fleet) = &self.fleet {
            fleet_lines(&mut t, fleet);
        }
        t.push_str(&ha_table(&self.scale, &self.postgres));
        for s in &self.scale {
            for (sys, r) in [
                ("snapsched", &s.snapsched),
                ("tokio-cron-scheduler", &s.peer),
            ] {
                for o in std::iter::once(&r.idle)
                    .chain(&r.all_due)
                    .chain(std::iter::once(&r.spread))
                {
                    for p in &o.problems {
                        let _ = writeln!(t, "note: {sys} N={}: {p}", s.n);
                    }
                }
            }
        }
        t
    }
}

fn fired(runs: &[Outcome]) -> String {
    let d: usize = runs.iter().map(|o| o.dispatched).sum();
    let e: usize = runs.iter().map(|o| o.expected).sum();
    format!("{d}/{e}")
}

fn store_lines(t: &mut String, st: &StoreResult) {
    let _ = writeln!(
            *t,
            "\nstore: {} runs over {} definitions, history_keep {}: {} bytes per run, {} runs recorded/s",
            st.runs,
            st.definitions,
            st.history_keep,
            num(st.bytes_per_run),
            num(st.runs_per_s)
        );
    let sizes: Vec<String> = st
        .size_after
        .iter()
        .map(|(r, b)| format!("{}k: {} MB", r / 1000, num(*b as f64 / MB)))
        .collect();
    let _ = writeln!(*t, "store size after runs: {}", sizes.join(", "));
    let _ = writeln!(*t, "rows left at the end: {}", st.rows_at_end);
}

/// The fleet rows: requests per droplet-cycle and per hour by fleet size.
pub fn fleet_lines(t: &mut String, fleet: &FleetResult) {
    let _ = writeln!(
        *t,
        "\nFleet (DigitalOcean droplets, hourly `H * * * *`, keep_last 24, 3-minute actions, limiter 250/min 5000/h; second hour counted):"
    );
    fleet_table(t, &fleet.rows, fleet.largest_hourly_fleet_per_token);
    let _ = writeln!(
        *t,
        "\nFleet by tag (one `tag:` definition over every droplet, hourly `0 * * * *`, keep_last 24, 3-minute actions, limiter 250/min 5000/h; second hour counted):"
    );
    fleet_table(t, &fleet.tag_rows, fleet.largest_hourly_tag_fleet_per_token);
    let _ = writeln!(*t, "{}", fleet.note);
}

fn fleet_table(t: &mut String, rows: &[crate::fleet::FleetRow], largest: Option<u64>) {
    let _ = writeln!(
        *t,
        "{:>9} {:>14} {:>8} {:>18} {:>6} {:>7} {:>10} {:>8}",
        "droplets",
        "requests/hour",
        "cycles",
        "requests/cycle",
        "429s",
        "failed",
        "contract",
        "wall s"
    );
    for r in rows {
        let _ = writeln!(
            *t,
            "{:>9} {:>14} {:>8} {:>18.3} {:>6} {:>7} {:>10} {:>8.1}",
            r.droplets,
            r.requests_per_hour,
            r.cycles,
            r.requests_per_cycle,
            r.too_many_requests,
            r.failed_cycles,
            r.contract_violations,
            r.wall_s
        );
    }
    if let Some(r) = rows.iter().max_by_key(|r| r.droplets) {
        let routes: Vec<String> = r
            .by_route
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let _ = writeln!(
            *t,
            "requests by route at {}: {}",
            r.droplets,
            routes.join(", ")
        );
    }
    if let Some(n) = largest {
        let _ = writeln!(*t, "largest hourly fleet per token: {n} droplets");
    }
}

pub fn api_lines(t: &mut String, api: &ApiResult) {
    let _ = writeln!(*t, "\nAPI ({}):", api.poll_policy);
    for c in &api.cycles {
        let _ = writeln!(
            *t,
            "{:<42} {:>3} requests per cycle ({} polls){}",
            c.what,
            c.requests,
            c.polls,
            c.snapshots_per_hour_per_token
                .map(|s| format!(", {s} snapshots/hour per token"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(*t, "{}", api.budget_note);
}

/// Issue targets for the PostgreSQL rows at 100,000 definitions.
pub const TARGET_N: usize = 100_000;
pub const TARGET_IDLE_STATEMENTS_PER_NODE: f64 = 5.0;
pub const TARGET_SPREAD_P99_MS: f64 = 200.0;
/// Failover may take the lease plus this.
pub const TARGET_FAILOVER_OVER_LEASE_S: f64 = 5.0;

fn per_node<T: Copy>(v: &[T], f: impl Fn(T) -> f64) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.iter().map(|x| num(f(*x))).collect::<Vec<_>>().join(" / ")
}

fn verdict(n: usize, value: Option<f64>, ok: impl Fn(f64) -> bool, target: &str) -> String {
    match value {
        Some(v) if n == TARGET_N => format!("{target}: {}", if ok(v) { "met" } else { "MISSED" }),
        _ => target.to_owned(),
    }
}

/// The PostgreSQL rows beside the SQLite ones (same N, one node), one
/// column per backend and cluster size.
pub fn ha_table(sqlite: &[ScaleResult], pg: &PgReport) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "\nHigh availability: the store on PostgreSQL");
    if let Some(why) = &pg.skipped {
        let _ = writeln!(t, "note: PostgreSQL rows skipped: {why}");
        return t;
    }
    let lease = pg.lease_ttl_s as f64;
    let _ = writeln!(
        t,
        "Server {}; every scenario in a fresh schema; lease_ttl {}s; values per node as a / b / c. \
         Statements/s: counted at a proxy in front of each node. Server xact/s: pg_stat_database \
         for the whole database. Lateness: run row created_at - slot. Failover: signal until \
         every run the node held has a new owner (SIGKILL: pid gone, taken at the next sweep on \
         the same host; SIGSTOP: alive but silent, taken once its lease lapses).\n",
        pg.server.as_deref().unwrap_or("?"),
        pg.lease_ttl_s
    );
    let _ = writeln!(
        t,
        "{:<38} {:>7} {:>20} {:>20} {:>24}  target at N=100000",
        "metric", "N", "sqlite 1 node", "postgres 1 node", "postgres 3 nodes"
    );
    let mut sizes: Vec<usize> = pg.results.iter().map(|r| r.n).collect();
    sizes.dedup();
    for n in sizes {
        let lite = sqlite.iter().find(|s| s.n == n).map(|s| &s.snapsched);
        let one_node = pg.results.iter().find(|r| r.n == n && r.nodes == 1);
        let three = pg.results.iter().find(|r| r.n == n && r.nodes == 3);
        let med = |x: Option<Spread>| x.map(|x| x.median);
        let startups = |r: &PgResult| {
            let all: Vec<f64> = r
                .idle
                .startup_s
                .iter()
                .chain(r.all_due.iter().flat_map(|b| &b.startup_s))
                .chain(&r.spread.startup_s)
                .copied()
                .collect();
            Spread::of(&all)
        };
        let burst = |r: &PgResult, f: &dyn Fn(&crate::pg::PgBurst) -> Option<f64>| {
            Spread::of(&r.all_due.iter().filter_map(f).collect::<Vec<_>>())
        };
        let pg_cell = |r: Option<&PgResult>, f: &dyn Fn(&PgResult) -> String| {
            r.map(f).unwrap_or_else(|| "-".into())
        };
        let max_statements = [one_node, three]
            .iter()
            .flatten()
            .flat_map(|r| r.idle.statements_per_s.iter().copied())
            .max_by(f64::total_cmp);
        let spread_p99 = [one_node, three]
            .iter()
            .flatten()
            .filter_map(|r| r.spread.lateness.map(|l| l.p99_ms))
            .max_by(f64::total_cmp);
        let failover_max =
            three
                .and_then(|r| r.failover.as_ref())
                .and_then(|f| match (f.kill_s, f.silent_s) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                });
        let fail_target = format!(
            "<= lease_ttl + 5 = {} s",
            num(lease + TARGET_FAILOVER_OVER_LEASE_S)
        );
        let rows: Vec<(&str, String, String, String, String)> = vec![
            (
                "start-up (s)",
                lite.map(|a| spread(a.startup_s, 1.0)).unwrap_or("-".into()),
                pg_cell(one_node, &|r| spread(startups(r), 1.0)),
                pg_cell(three, &|r| spread(startups(r), 1.0)),
                String::new(),
            ),
            (
                "idle CPU (% of one core)",
                one(lite.and_then(|a| a.idle.idle_cpu_fraction.map(|f| f * 100.0))),
                pg_cell(one_node, &|r| per_node(&r.idle.cpu_fraction, |f| f * 100.0)),
                pg_cell(three, &|r| per_node(&r.idle.cpu_fraction, |f| f * 100.0)),
                String::new(),
            ),
            (
                "idle RSS (MB)",
                one(lite.and_then(|a| a.idle.rss_bytes.map(|b| b as f64 / MB))),
                pg_cell(one_node, &|r| {
                    per_node(&r.idle.rss_bytes, |b| b as f64 / MB)
                }),
                pg_cell(three, &|r| per_node(&r.idle.rss_bytes, |b| b as f64 / MB)),
                String::new(),
            ),
            (
                "idle statements/s to the server",
                "-".into(),
                pg_cell(one_node, &|r| per_node(&r.idle.statements_per_s, |q| q)),
                pg_cell(three, &|r| per_node(&r.idle.statements_per_s, |q| q)),
                verdict(
                    n,
                    max_statements,
                    |q| q <= TARGET_IDLE_STATEMENTS_PER_NODE,
                    "<= 5 per node",
                ),
            ),
            (
                "idle server xact/s (pg_stat_database)",
                "-".into(),
                pg_cell(one_node, &|r| one(r.idle.server_xacts_per_s)),
                pg_cell(three, &|r| one(r.idle.server_xacts_per_s)),
                String::new(),
            ),
            (
                "all due: claims/s",
                lite.map(|a| spread(a.all_due_dispatch_per_s, 1.0))
                    .unwrap_or("-".into()),
                pg_cell(one_node, &|r| spread(burst(r, &|b| b.claims_per_s), 1.0)),
                pg_cell(three, &|r| spread(burst(r, &|b| b.claims_per_s), 1.0)),
                String::new(),
            ),
            (
                "all due: lateness p50 (ms)",
                one(lite.and_then(|a| med(a.all_due_p50_ms))),
                pg_cell(one_node, &|r| {
                    spread(burst(r, &|b| b.lateness.map(|l| l.p50_ms)), 1.0)
                }),
                pg_cell(three, &|r| {
                    spread(burst(r, &|b| b.lateness.map(|l| l.p50_ms)), 1.0)
                }),
                String::new(),
            ),
            (
                "all due: lateness p99 (ms)",
                one(lite.and_then(|a| med(a.all_due_p99_ms))),
                pg_cell(one_node, &|r| {
                    spread(burst(r, &|b| b.lateness.map(|l| l.p99_ms)), 1.0)
                }),
                pg_cell(three, &|r| {
                    spread(burst(r, &|b| b.lateness.map(|l| l.p99_ms)), 1.0)
                }),
                String::new(),
            ),
            (
                "all due: claimed / expected",
                lite.map(|a| fired(&a.all_due)).unwrap_or("-".into()),
                pg_cell(one_node, &|r| claimed(&r.all_due)),
                pg_cell(three, &|r| claimed(&r.all_due)),
                String::new(),
            ),
            (
                "spread: lateness p50 (ms)",
                one(lite.and_then(|a| a.spread.lateness.map(|l| l.p50_ms))),
                pg_cell(one_node, &|r| one(r.spread.lateness.map(|l| l.p50_ms))),
                pg_cell(three, &|r| one(r.spread.lateness.map(|l| l.p50_ms))),
                String::new(),
            ),
            (
                "spread: lateness p99 (ms)",
                one(lite.and_then(|a| a.spread.lateness.map(|l| l.p99_ms))),
                pg_cell(one_node, &|r| one(r.spread.lateness.map(|l| l.p99_ms))),
                pg_cell(three, &|r| one(r.spread.lateness.map(|l| l.p99_ms))),
                verdict(n, spread_p99, |p| p < TARGET_SPREAD_P99_MS, "< 200 ms"),
            ),
            (
                "spread: claimed / expected",
                lite.map(|a| format!("{}/{}", a.spread.dispatched, a.spread.expected))
                    .unwrap_or("-".into()),
                pg_cell(one_node, &|r| claimed(std::slice::from_ref(&r.spread))),
                pg_cell(three, &|r| claimed(std::slice::from_ref(&r.spread))),
                String::new(),
            ),
            (
                "failover after SIGKILL (s)",
                "-".into(),
                "-".into(),
                pg_cell(three, &|r| failover_cell(r, true)),
                fail_target.clone(),
            ),
            (
                "failover after SIGSTOP (s)",
                "-".into(),
                "-".into(),
                pg_cell(three, &|r| failover_cell(r, false)),
                verdict(
                    n,
                    failover_max,
                    |s| s <= lease + TARGET_FAILOVER_OVER_LEASE_S,
                    &fail_target,
                ),
            ),
        ];
        for (name, a, b, c, target) in rows {
            let line = format!("{name:<38} {n:>7} {a:>20} {b:>20} {c:>24}  {target}");
            let _ = writeln!(t, "{}", line.trim_end());
        }
        let _ = writeln!(t);
    }
    for r in &pg.results {
        if let Some(o) = r.idle.other_sessions.filter(|o| *o > 0) {
            let _ = writeln!(
                t,
                "note: postgres N={} nodes={}: {o} other session(s) on the database during the idle window; the server xact/s includes their work",
                r.n, r.nodes
            );
        }
        for p in &r.problems {
            let _ = writeln!(t, "note: postgres N={} nodes={}: {p}", r.n, r.nodes);
        }
    }
    t
}

fn claimed(bursts: &[crate::pg::PgBurst]) -> String {
    if bursts.is_empty() {
        return "-".into();
    }
    let c: usize = bursts.iter().map(|b| b.claimed).sum();
    let e: usize = bursts.iter().map(|b| b.expected).sum();
    format!("{c}/{e}")
}

fn failover_cell(r: &PgResult, kill: bool) -> String {
    let Some(f) = &r.failover else {
        return "-".into();
    };
    let (s, runs) = if kill {
        (f.kill_s, f.killed_runs)
    } else {
        (f.silent_s, f.silent_runs)
    };
    match s {
        Some(s) => format!("{} ({runs} runs)", num(s)),
        None if runs > 0 => format!("not within bound ({runs} runs)"),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::{PgBurst, PgFailover, PgIdle};
    use crate::stats::Lateness;

    fn pg_result(n: usize, nodes: usize, statements: f64, p99: f64) -> PgResult {
        PgResult {
            n,
            nodes,
            idle: PgIdle {
                startup_s: vec![0.5; nodes],
                cpu_fraction: vec![0.001; nodes],
                rss_bytes: vec![30 << 20; nodes],
                statements_per_s: vec![statements; nodes],
                server_xacts_per_s: Some(3.0),
                ..PgIdle::default()
            },
            all_due: vec![PgBurst {
                expected: n,
                claimed: n,
                claims_per_s: Some(2000.0),
                ..PgBurst::default()
            }],
            spread: PgBurst {
                expected: n,
                claimed: n - 1,
                lateness: Some(Lateness {
                    samples: n,
                    p50_ms: 10.0,
                    p99_ms: p99,
                    max_ms: p99,
                }),
                ..PgBurst::default()
            },
            failover: (nodes == 3).then_some(PgFailover {
                lease_ttl_s: 30,
                killed_runs: 6,
                kill_s: Some(4.0),
                silent_runs: 7,
                silent_s: Some(41.0),
            }),
            problems: vec!["something late".into()],
        }
    }

    fn report(results: Vec<PgResult>) -> PgReport {
        PgReport {
            server: Some("postgres://u@h:5432/db".into()),
            skipped: None,
            lease_ttl_s: 30,
            results,
        }
    }

    fn row<'a>(table: &'a str, metric: &str, n: usize) -> Vec<&'a str> {
        let line = table
            .lines()
            .find(|l| {
                l.starts_with(metric)
                    && l.get(39..46).map(str::trim) == Some(n.to_string().as_str())
            })
            .unwrap_or_else(|| panic!("no row {metric} N={n} in\n{table}"));
        vec![
            &line[..38],
            &line[39..46],
            &line[47..67],
            &line[68..88],
            &line[89..113],
            line.get(115..).unwrap_or(""),
        ]
    }

    #[test]
    fn postgres_columns_sit_beside_sqlite_with_each_node_and_the_verdicts() {
        let t = ha_table(
            &[],
            &report(vec![
                pg_result(100_000, 1, 2.0, 150.0),
                pg_result(100_000, 3, 6.5, 150.0),
            ]),
        );
        let idle = row(&t, "idle statements/s to the server", 100_000);
        assert_eq!(idle[2].trim(), "-", "no SQLite figure for statements");
        assert_eq!(idle[3].trim(), "2.00");
        assert_eq!(idle[4].trim(), "6.50 / 6.50 / 6.50");
        assert_eq!(idle[5], "<= 5 per node: MISSED", "one node over 5/s misses");
        let p99 = row(&t, "spread: lateness p99 (ms)", 100_000);
        assert_eq!(p99[5], "< 200 ms: met");
        let stop = row(&t, "failover after SIGSTOP (s)", 100_000);
        assert_eq!(stop[3].trim(), "-", "no failover on one node");
        assert_eq!(stop[4].trim(), "41.0 (7 runs)");
        assert_eq!(stop[5], "<= lease_ttl + 5 = 35.0 s: MISSED");
        assert_eq!(
            row(&t, "spread: claimed / expected", 100_000)[4].trim(),
            "99999/100000"
        );
        assert!(t.contains("note: postgres N=100000 nodes=3: something late"));
    }

    #[test]
    fn verdicts_only_at_the_target_size_and_skipped_rows_say_why() {
        let t = ha_table(&[], &report(vec![pg_result(10_000, 1, 9.0, 900.0)]));
        assert_eq!(
            row(&t, "idle statements/s to the server", 10_000)[5],
            "<= 5 per node"
        );
        assert_eq!(row(&t, "all due: claims/s", 10_000)[3].trim(), "2000");
        let skipped = ha_table(
            &[],
            &PgReport {
                server: None,
                skipped: Some("no PostgreSQL server: give --postgres-url".into()),
                lease_ttl_s: 30,
                results: Vec::new(),
            },
        );
        assert!(skipped.contains("note: PostgreSQL rows skipped: no PostgreSQL server"));
        assert!(!skipped.contains("metric"));
    }
}
