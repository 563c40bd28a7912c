//! What one measurement asks of a scheduler, and what it found, shared by the
//! snapsched and the peer drivers so both are measured the same way.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serialize;
use snapsched::domain::definition::Identity;
use snapsched::domain::schedule::Schedule;

use crate::procfs;
use crate::stats::Lateness;

/// The measurement a child process is started for.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Nothing due (a yearly schedule on 1 January): CPU over the window, RSS.
    Idle { window_s: u64 },
    /// Every definition due at the same instant.
    AllDue { at: DateTime<Utc> },
    /// Each definition due once a minute at its own hashed second; the slots
    /// in `[from, from + window)` are measured.
    Spread { from: DateTime<Utc>, window_s: u64 },
}

/// What one child process showed.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Outcome {
    /// Spawn to ready (sd_notify `READY=1` / the peer's ready line).
    pub startup_s: Option<f64>,
    /// Idle: CPU seconds per wall second over the window (1.0 = one core).
    pub idle_cpu_fraction: Option<f64>,
    pub rss_bytes: Option<u64>,
    pub peak_rss_bytes: Option<u64>,
    /// Slots that should have fired in the measured window.
    pub expected: usize,
    /// Slots dispatched (snapsched: claimed run rows; peer: job calls).
    pub dispatched: usize,
    pub lateness: Option<Lateness>,
    /// Dispatched slots per second, from the slot to the last dispatch.
    pub dispatch_per_s: Option<f64>,
    /// snapsched only: from the slot until the last run reached a final state.
    pub all_finished_s: Option<f64>,
    /// What went wrong (time-out, late start); empty when nothing did.
    pub problems: Vec<String>,
}

impl Outcome {
    /// Record the process's resident memory now and its peak.
    pub fn record_memory(&mut self, pid: u32) -> anyhow::Result<()> {
        let (rss, hwm) = procfs::memory(pid)?;
        self.rss_bytes = Some(rss);
        self.peak_rss_bytes = Some(hwm);
        Ok(())
    }

    /// CPU seconds per wall second over an idle window of `window_s`, after
    /// two seconds for start-up work (WAL checkpoint, allocator) to settle;
    /// then memory.
    pub async fn measure_idle(
        &mut self,
        pid: u32,
        ticks: f64,
        window_s: u64,
    ) -> anyhow::Result<()> {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let c0 = procfs::cpu_seconds(pid, ticks)?;
        let t0 = std::time::Instant::now();
        tokio::time::sleep(std::time::Duration::from_secs(window_s)).await;
        let c1 = procfs::cpu_seconds(pid, ticks)?;
        self.idle_cpu_fraction = Some((c1 - c0) / t0.elapsed().as_secs_f64());
        self.record_memory(pid)
    }
}

/// The identity of benchmark definition `i`: one definition per fake VM.
pub fn identity(i: usize) -> Identity {
    Identity {
        provider: "lab".into(),
        target: format!("vm{i}"),
        disk_id: 1,
        name: format!("d{i}"),
    }
}

/// The second of the minute definition `i` fires at with `H * * * * *`, as
/// snapsched's engine derives it, so the peer gets the same spread.
pub fn hashed_second(i: usize) -> anyhow::Result<u32> {
    let s = Schedule::parse("H * * * * *", &identity(i).hash_key())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let base = DateTime::<Utc>::UNIX_EPOCH;
    let next = s
        .next_after(base, chrono_tz::Tz::UTC)
        .ok_or_else(|| anyhow::anyhow!("H * * * * * never fires"))?;
    Ok(next.second())
}

/// A six-field expression (seconds first) that fires once a year at `at`.
pub fn at_expression(at: DateTime<Utc>) -> String {
    format!(
        "{} {} {} {} {} *",
        at.second(),
        at.minute(),
        at.hour(),
        at.day(),
        at.month()
    )
}

/// The most recent instant at or before `fire` whose second is `second`.
pub fn slot_of(fire: DateTime<Utc>, second: u32) -> DateTime<Utc> {
    let minute = fire
        - chrono::Duration::nanoseconds(fire.timestamp_subsec_nanos() as i64)
        - chrono::Duration::seconds(i64::from(fire.second()));
    let slot = minute + chrono::Duration::seconds(i64::from(second));
    if slot > fire {
        slot - chrono::Duration::seconds(60)
    } else {
        slot
    }
}

/// Slots of the spread scenario that fall in the window, per definition.
pub fn spread_expected(seconds: &[u32], from: DateTime<Utc>, window_s: u64) -> usize {
    let end = from + chrono::Duration::seconds(window_s as i64);
    seconds
        .iter()
        .map(|&s| {
            // Slots of one definition are 60 s apart; count those in range.
            let mut t = slot_of(from, s);
            if t < from {
                t += chrono::Duration::seconds(60);
            }
            let mut n = 0;
            while t < end {
                n += 1;
                t += chrono::Duration::seconds(60);
            }
            n
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn slot_of_goes_back_to_the_named_second() {
        let fire = Utc
            .with_ymd_and_hms(2026, 1, 1, 10, 0, 5)
            .single()
            .expect("valid");
        let fire = fire + chrono::Duration::milliseconds(30);
        assert_eq!(slot_of(fire, 5), fire - chrono::Duration::milliseconds(30));
        assert_eq!(
            slot_of(fire, 59),
            fire - chrono::Duration::milliseconds(30) - chrono::Duration::seconds(6)
        );
    }

    #[test]
    fn a_minute_window_holds_one_slot_per_definition() {
        let from = Utc
            .with_ymd_and_hms(2026, 1, 1, 10, 0, 17)
            .single()
            .expect("valid");
        assert_eq!(spread_expected(&[0, 17, 16, 59], from, 60), 4);
        assert_eq!(spread_expected(&[0, 17, 16, 59], from, 1), 1);
    }

    #[test]
    fn hashed_seconds_spread_over_the_minute() {
        let secs: std::collections::HashSet<u32> = (0..600)
            .map(|i| hashed_second(i).expect("parses"))
            .collect();
        assert!(secs.len() > 50, "only {} distinct seconds", secs.len());
    }
}
