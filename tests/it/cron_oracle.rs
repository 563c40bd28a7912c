//! Oracle comparison: our engine against the Python package `cronsim`, which
//! implements Debian cron's semantics (DST included).
//!
//! Thousands of random expressions from the subset both understand, in zones
//! with 1-hour, 30-minute, midnight and no DST, asked from instants close to
//! DST transitions; the next few fire times must be identical. `H` is ours
//! only: cronsim gets the expression with `H` resolved (`expand_hashes`).
//! cronsim applies its DST handling to five-field expressions only, so a
//! six-field fixed-time expression with one seconds value is compared as the
//! five-field expression shifted by that many seconds.
//!
//! Python runs once per test with every case on stdin
//! (`tests/oracle/cronsim_next.py`). A missing `cronsim` fails the test.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use chrono::{DateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use snapsched::domain::schedule::{expand_hashes, format_in_zone, Schedule};

const ZONES: [&str; 7] = [
    "Europe/Bratislava",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "America/Santiago",
    "UTC",
];
const EXPRESSIONS: usize = 2500;
const INSTANTS_PER_ZONE: usize = 2;
const FIRES: usize = 6;

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn require_cronsim() {
    let ok = Command::new(python())
        .args(["-c", "import cronsim"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the cron oracle needs the Python package cronsim: run \
         `pip install -r tests/requirements.txt` (interpreter: {}; set PYTHON to choose another)",
        python()
    );
}

/// One random field item.
fn item(rng: &mut StdRng, lo: u32, hi: u32, names: &[&str], names_base: u32) -> String {
    let num = |rng: &mut StdRng, v: u32| -> String {
        if !names.is_empty() && rng.random_bool(0.3) {
            let i = (v.max(names_base) - names_base) as usize % names.len();
            let n = names[i];
            if rng.random_bool(0.5) {
                n.to_uppercase()
            } else {
                n.to_owned()
            }
        } else {
            v.to_string()
        }
    };
    match rng.random_range(0..10) {
        0..=2 => "*".to_owned(),
        3 => format!("*/{}", rng.random_range(1..=(hi - lo + 1).min(13))),
        4 | 5 => {
            let v = rng.random_range(lo..=hi);
            num(rng, v)
        }
        6 => {
            let a = rng.random_range(lo..=hi);
            let b = rng.random_range(a..=hi.min(a + 8));
            let (a, b) = (num(rng, a), num(rng, b));
            format!("{a}-{b}")
        }
        7 => {
            // a < b: cronsim reads `a-a/n` as `a/n`, i.e. a to the field's end.
            let a = rng.random_range(lo..hi);
            let b = rng.random_range(a + 1..=hi);
            format!("{a}-{b}/{}", rng.random_range(1..=5))
        }
        8 => {
            let n = rng.random_range(2..=4);
            (0..n)
                .map(|_| {
                    let v = rng.random_range(lo..=hi);
                    num(rng, v)
                })
                .collect::<Vec<_>>()
                .join(",")
        }
        _ => {
            // A hashed item; resolved before cronsim sees it.
            let a = rng.random_range(lo..=hi);
            let b = rng.random_range(a..=hi);
            match rng.random_range(0..3) {
                0 => "H".to_owned(),
                1 => format!("H({a}-{b})"),
                _ => format!("H/{}", rng.random_range(1..=(hi - lo + 1).min(12))),
            }
        }
    }
}

/// Hours near the usual transition times come up more often.
fn hour_item(rng: &mut StdRng) -> String {
    match rng.random_range(0..10) {
        0..=2 => rng.random_range(0..=3).to_string(),
        3 => format!("{}-{}", rng.random_range(0..=2), rng.random_range(2..=4)),
        4 => "*/2".to_owned(),
        _ => item(rng, 0, 23, &[], 0),
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn random_expression(rng: &mut StdRng) -> String {
    if rng.random_ratio(1, 40) {
        let macros = ["@yearly", "@monthly", "@weekly", "@daily", "@hourly"];
        return macros[rng.random_range(0..macros.len())].to_owned();
    }
    let field = |rng: &mut StdRng, restrict: f64, f: &dyn Fn(&mut StdRng) -> String| {
        if rng.random_bool(restrict) {
            f(rng)
        } else {
            "*".to_owned()
        }
    };
    let minute = item(rng, 0, 59, &[], 0);
    let hour = hour_item(rng);
    let dom = field(rng, 0.3, &|r| item(r, 1, 31, &[], 0));
    let month = field(rng, 0.2, &|r| item(r, 1, 12, &MONTHS, 1));
    let dow = field(rng, 0.3, &|r| item(r, 0, 7, &DAYS, 0));
    let mut fields = vec![minute, hour, dom, month, dow];
    if rng.random_ratio(1, 8) {
        fields.insert(0, item(rng, 0, 59, &[], 0));
    }
    fields.join(" ")
}

/// DST transitions of `tz` between 2024 and 2060, found by scanning offsets
/// every six hours and bisecting, each with whether cronsim's hour stepping
/// mishandles it for interval jobs: its local time is off the full hour on
/// either side (Lord Howe, Chatham) or at midnight (Santiago, where a day can
/// start inside the gap).
fn transitions(tz: Tz) -> Vec<(i64, bool)> {
    let offset = |t: i64| {
        let utc = DateTime::from_timestamp(t, 0)
            .unwrap_or_default()
            .naive_utc();
        tz.offset_from_utc_datetime(&utc).fix().local_minus_utc()
    };
    let start = Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .map_or(0, |t| t.timestamp());
    let end = Utc
        .with_ymd_and_hms(2060, 1, 1, 0, 0, 0)
        .single()
        .map_or(0, |t| t.timestamp());
    let mut out = Vec::new();
    let mut t = start;
    while t < end {
        let next = t + 6 * 3600;
        if offset(t) != offset(next) {
            let (mut lo, mut hi) = (t, next);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if offset(mid) == offset(lo) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let (old, new) = (hi + i64::from(offset(lo)), hi + i64::from(offset(hi)));
            let odd = old % 3600 != 0 || new % 3600 != 0 || old % 86400 == 0 || new % 86400 == 0;
            out.push((hi, odd));
        }
        t = next;
    }
    out
}

/// A zone's name, rules and transitions (instant, irregular for cronsim).
type ZoneData = (&'static str, Tz, Vec<(i64, bool)>);

struct Case {
    odd_transitions: Vec<i64>,
    expr: String,
    key: String,
    /// What cronsim gets.
    oracle_expr: String,
    zone: &'static str,
    tz: Tz,
    after: i64,
    add_seconds: i64,
}

fn build_cases() -> Vec<Case> {
    let mut rng = StdRng::seed_from_u64(0x0C0F_FEE0_0D57);
    let zone_data: Vec<ZoneData> = ZONES
        .iter()
        .map(|z| {
            let tz: Tz = z.parse().unwrap_or_else(|e| panic!("zone {z}: {e}"));
            (*z, tz, transitions(tz))
        })
        .collect();
    let uniform_lo = Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .map_or(0, |t| t.timestamp());
    let mut cases = Vec::new();
    let mut made = 0;
    while made < EXPRESSIONS {
        let expr = random_expression(&mut rng);
        let key = format!("def-{made}");
        let Ok(schedule) = Schedule::parse(&expr, &key) else {
            continue; // e.g. a day of month that no chosen month has
        };
        made += 1;
        let resolved = expand_hashes(&expr, &key).unwrap_or_else(|e| panic!("{expr}: {e}"));
        for (zone, tz, trans) in &zone_data {
            for _ in 0..INSTANTS_PER_ZONE {
                let after = if !trans.is_empty() && rng.random_bool(0.8) {
                    trans[rng.random_range(0..trans.len())].0
                        + rng.random_range(-30 * 3600..6 * 3600)
                } else {
                    uniform_lo + rng.random_range(0..7 * 365 * 86400)
                };
                let odd_transitions = trans.iter().filter(|t| t.1).map(|t| t.0).collect();
                let mut case = Case {
                    odd_transitions,
                    expr: expr.clone(),
                    key: key.clone(),
                    oracle_expr: resolved.clone(),
                    zone,
                    tz: *tz,
                    after,
                    add_seconds: 0,
                };
                if schedule.has_seconds() && schedule.is_fixed_time() && !trans.is_empty() {
                    // cronsim's DST handling is for five fields only; compare
                    // a single seconds value as a shift of the five-field form.
                    let mut fields = resolved.split(' ');
                    let secs = fields.next().unwrap_or("");
                    let Ok(s) = secs.parse::<i64>() else { continue };
                    case.oracle_expr = fields.collect::<Vec<_>>().join(" ");
                    case.add_seconds = s;
                }
                cases.push(case);
            }
        }
    }
    cases
}

fn run_oracle(cases: &[Case]) -> HashMap<usize, Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracle/cronsim_next.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} {script}: {e}", python()));
    let mut stdin = child
        .stdin
        .take()
        .unwrap_or_else(|| panic!("no stdin pipe"));
    let input: Vec<String> = cases
        .iter()
        .enumerate()
        .map(|(id, c)| {
            json!({
                "id": id,
                "expr": c.oracle_expr,
                "tz": c.zone,
                "after": c.after - c.add_seconds,
                "n": FIRES,
                "add_seconds": c.add_seconds,
                "odd_transitions": c.odd_transitions,
            })
            .to_string()
        })
        .collect();
    // Feed from a thread: the pipes would fill and deadlock otherwise.
    let writer = std::thread::spawn(move || {
        for line in input {
            if writeln!(stdin, "{line}").is_err() {
                break;
            }
        }
    });
    let stdout = child
        .stdout
        .take()
        .unwrap_or_else(|| panic!("no stdout pipe"));
    let mut out = HashMap::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap_or_else(|e| panic!("reading oracle output: {e}"));
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
        let id = v["id"].as_u64().unwrap_or(u64::MAX) as usize;
        out.insert(id, v);
    }
    let _ = writer.join();
    let status = child
        .wait()
        .unwrap_or_else(|e| panic!("waiting for oracle: {e}"));
    assert!(status.success(), "oracle script failed: {status}");
    out
}

fn show(ts: &[i64], tz: Tz) -> Vec<String> {
    ts.iter()
        .map(|t| {
            DateTime::from_timestamp(*t, 0).map_or_else(|| t.to_string(), |d| format_in_zone(d, tz))
        })
        .collect()
}

#[test]
fn engine_matches_cronsim_on_random_expressions_zones_and_dst_instants() {
    require_cronsim();
    let cases = build_cases();
    let oracle = run_oracle(&cases);
    assert_eq!(oracle.len(), cases.len(), "oracle answered only some cases");

    let mut mismatches = Vec::new();
    let mut full = 0usize;
    let mut ends: HashMap<String, usize> = HashMap::new();
    for (id, c) in cases.iter().enumerate() {
        let v = &oracle[&id];
        let end = v["end"].as_str().unwrap_or("?").to_owned();
        *ends.entry(end.clone()).or_default() += 1;
        assert_ne!(
            end, "error",
            "cronsim refused {:?}: {}",
            c.oracle_expr, v["message"]
        );

        let theirs: Vec<i64> = v["times"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        let schedule =
            Schedule::parse(&c.expr, &c.key).unwrap_or_else(|e| panic!("{}: {e}", c.expr));
        let mut ours = Vec::new();
        let mut t = DateTime::from_timestamp(c.after, 0).unwrap_or_default();
        let complete = end == "count" || end == "brute";
        for _ in 0..theirs.len().max(if complete { FIRES } else { 0 }) {
            match schedule.next_after(t, c.tz) {
                Some(next) => {
                    ours.push(next.timestamp());
                    t = next;
                }
                None => break,
            }
        }
        if end == "count" || end == "brute" {
            full += 1;
        }
        if ours[..theirs.len().min(ours.len())] != theirs[..] || ours.len() < theirs.len() {
            mismatches.push(format!(
                "{:?} (cronsim: {:?}) in {} after {}: ours {:?}, cronsim {:?} ({end})",
                c.expr,
                c.oracle_expr,
                c.zone,
                show(&[c.after], c.tz)[0],
                show(&ours, c.tz),
                show(&theirs, c.tz),
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} cases differ from cronsim; first ones:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The comparison must have covered the bulk of cases in full.
    assert!(
        full * 100 >= cases.len() * 95,
        "only {full} of {} cases compared in full: {ends:?}",
        cases.len()
    );
    eprintln!(
        "cron oracle: {} cases, {full} compared in full, ends {ends:?}",
        cases.len()
    );
}
