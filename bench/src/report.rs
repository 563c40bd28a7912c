//! The report: JSON as measured, and the printed table with ratios.

use std::fmt::Write as _;

use serde::Serialize;

use crate::api::ApiResult;
use crate::cron::CronRate;
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
    pub store: StoreResult,
    pub api: ApiResult,
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
            for (name, x, y, r) in rows {
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
        let _ = writeln!(
            t,
            "{:<34} {:<18} {:>24}",
            "cron next-fire", "zone", "per second"
        );
        for c in &self.cron {
            let _ = writeln!(
                t,
                "{:<34} {:<18} {:>24}",
                c.expression,
                c.zone,
                spread(Some(c.per_second), 1.0)
            );
        }
        let st = &self.store;
        let _ = writeln!(
            t,
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
        let _ = writeln!(t, "store size after runs: {}", sizes.join(", "));
        let _ = writeln!(t, "rows left at the end: {}", st.rows_at_end);
        let _ = writeln!(t, "\nAPI ({}):", self.api.poll_policy);
        for c in &self.api.cycles {
            let _ = writeln!(
                t,
                "{:<42} {:>3} requests per cycle ({} polls){}",
                c.what,
                c.requests,
                c.polls,
                c.snapshots_per_hour_per_token
                    .map(|s| format!(", {s} snapshots/hour per token"))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(t, "{}", self.api.budget_note);
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
