//! Next-fire computations per second, for typical snapshot schedules and
//! sparse ones, in UTC and in a zone with DST.
//!
//! Each measurement walks a chain of fire times (each `next_after` starts at
//! the previous result) from several starting instants spread over a year, so
//! DST transitions are included in the mix. After a warm-up, several rounds
//! are timed; the median and the spread (min-max) are printed.
//!
//! Run: `cargo bench --bench cron`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use snapsched::schedule::Schedule;

const EXPRS: [&str; 6] = [
    "30 5 * * *",
    "*/15 * * * *",
    "0 */4 * * *",
    "H H * * H(0-6)",
    "0 0 29 2 *",
    "0 0 1 * 1",
];
const ROUNDS: usize = 7;
const ROUND_TIME: Duration = Duration::from_millis(300);

/// Computations per second over one timed round.
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

fn main() {
    let starts: Vec<DateTime<Utc>> = (0..12)
        .filter_map(|m| Utc.with_ymd_and_hms(2026, m + 1, 20, 7, 13, 0).single())
        .collect();
    println!(
        "{:<18} {:<18} {:>14} {:>24}",
        "schedule", "zone", "median/s", "spread (min-max)/s"
    );
    for expr in EXPRS {
        let s = match Schedule::parse(expr, "bench-definition") {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{expr}: {e}");
                std::process::exit(2);
            }
        };
        for tz in [Tz::UTC, chrono_tz::Europe::Bratislava] {
            round(&s, tz, &starts); // warm-up
            let mut rates: Vec<f64> = (0..ROUNDS).map(|_| round(&s, tz, &starts)).collect();
            rates.sort_by(f64::total_cmp);
            println!(
                "{:<18} {:<18} {:>14.0} {:>11.0}-{:<12.0}",
                expr,
                tz.name(),
                rates[ROUNDS / 2],
                rates[0],
                rates[ROUNDS - 1]
            );
        }
    }
}
