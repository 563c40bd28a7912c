//! Next-fire computations per second with snapsched's schedule engine, in
//! process, for typical snapshot schedules and a sparse one, in UTC and in a
//! zone with DST.
//!
//! Each measurement walks a chain of fire times (each `next_after` starts at
//! the previous result) from starting instants spread over a year, so DST
//! transitions are in the mix; a warm-up round, then timed rounds.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use snapsched::domain::schedule::Schedule;

use crate::stats::Spread;

const EXPRS: [&str; 4] = ["30 5 * * *", "*/15 * * * *", "H H * * H(0-6)", "0 0 29 2 *"];
const ROUNDS: usize = 5;
const ROUND_TIME: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Serialize)]
pub struct CronRate {
    pub expression: String,
    pub zone: String,
    pub per_second: Spread,
}

fn round(s: &Schedule, tz: Tz, starts: &[DateTime<Utc>]) -> f64 {
    let begin = Instant::now();
    let mut n: u64 = 0;
    while begin.elapsed() < ROUND_TIME {
        for &start in starts {
            let mut t = start;
            for _ in 0..16 {
                match s.next_after(black_box(t), tz) {
                    Some(next) => t = next,
                    None => break,
                }
                n += 1;
            }
        }
    }
    n as f64 / begin.elapsed().as_secs_f64()
}

pub fn measure() -> Vec<CronRate> {
    let starts: Vec<DateTime<Utc>> = (0..12)
        .filter_map(|m| Utc.with_ymd_and_hms(2026, m + 1, 20, 7, 13, 0).single())
        .collect();
    let mut out = Vec::new();
    for expr in EXPRS {
        let s = match Schedule::parse(expr, "bench-definition") {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cron benchmark: {expr}: {e}");
                continue;
            }
        };
        for tz in [Tz::UTC, chrono_tz::Europe::Bratislava] {
            round(&s, tz, &starts); // warm-up
            let rates: Vec<f64> = (0..ROUNDS).map(|_| round(&s, tz, &starts)).collect();
            if let Some(per_second) = Spread::of(&rates) {
                out.push(CronRate {
                    expression: expr.to_owned(),
                    zone: tz.name().to_owned(),
                    per_second,
                });
            }
        }
    }
    out
}
