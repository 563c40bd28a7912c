//! Per-definition gauges for alerting: when a definition last succeeded,
//! how many snapshots it owns, and how often it is meant to fire.
//!
//! - `snapsched_last_success_timestamp_seconds`: Unix time the latest
//!   successful run finished. Set by the run engine the moment a run
//!   succeeds and re-read from the store by [`start`], so a restart (or a
//!   `snapsched run` in another process) never resets or hides it.
//! - `snapsched_last_failure_timestamp_seconds`: the same for the latest
//!   failed run, re-read from the store only (so it shows failures of
//!   `snapsched run` in another process too).
//! - `snapsched_snapshots`: present snapshots the definition owns, per the
//!   store. Set after every prune and re-read by [`start`].
//! - `snapsched_prune_blocked`: 1 while the definition's latest prune was
//!   blocked by `max_deletes_per_run` (per the store's runs, see
//!   [`Store::blocked_prunes`]), else 0. Set by the run engine when a
//!   post-run prune is blocked or applied, and re-read by [`start`], so a
//!   `snapsched prune --yes` in another process clears it at the next
//!   refresh.
//! - `snapsched_copy_failed`: per region of `copy_regions`, 1 while the
//!   latest copy to it failed ([`Store::failed_copies`]), else 0. Set by the
//!   run engine and re-read by [`start`].
//! - `snapsched_interval_seconds`: the schedule's nominal interval, the
//!   longest gap between consecutive fires over the coming week (at least
//!   two gaps), see [`nominal_interval`]. The longest rather than the next
//!   gap keeps `time() - last_success > 2 * interval` quiet over a
//!   weekdays-only schedule's weekend and a DST night.
//!
//! Every series carries the definition's whole identity (see
//! [`super::metrics`], which names and records them): two definitions may
//! share a name on different VMs, and one must not hide the other's
//! staleness.
//!
//! Only active definitions are published. The recorder cannot drop a
//! series, so a removed or disabled definition's gauges simply stop being
//! refreshed and the exporter's idle timeout (see
//! [`super::metrics_server::GAUGE_IDLE_TIMEOUT`]) removes them; without
//! the recorder installed (no `[metrics] listen`) every call here is a no-op.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio_util::sync::CancellationToken;

use super::metrics;
use crate::domain::definition::Identity;
use crate::domain::schedule::Schedule;
use crate::store::{Store, StoreResult};

/// How often [`start`]'s task re-reads the store. Well inside the idle
/// timeout, so a live definition's series never expires.
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);

/// [`nominal_interval`] looks this far ahead (a week covers weekly
/// patterns), but at most [`MAX_FIRES`] fires ahead.
const WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(8);
/// Bounds the work for a schedule that fires every second (the result is
/// cached per schedule anyway).
const MAX_FIRES: usize = 4096;

/// The longest gap between consecutive fires of `schedule` in `zone` after
/// `from`, over at least [`WINDOW`] and at least two gaps (a monthly
/// schedule looks two months ahead), capped at [`MAX_FIRES`] fires. `None`
/// when the schedule fires fewer than twice from `from` on.
pub fn nominal_interval(schedule: &Schedule, zone: Tz, from: DateTime<Utc>) -> Option<Duration> {
    let first = schedule.next_after(from, zone)?;
    let mut prev = first;
    let mut longest: Option<chrono::TimeDelta> = None;
    for gaps in 1..MAX_FIRES {
        let Some(next) = schedule.next_after(prev, zone) else {
            break;
        };
        let gap = next - prev;
        longest = Some(longest.map_or(gap, |l| l.max(gap)));
        prev = next;
        if gaps >= 2 && next - first >= WINDOW {
            break;
        }
    }
    longest.and_then(|d| d.to_std().ok())
}

/// What the store says about one active definition.
#[derive(Debug, Clone, PartialEq)]
pub struct DefinitionValues {
    pub identity: Identity,
    /// When the latest successful run finished; `None` before the first.
    pub last_success: Option<DateTime<Utc>>,
    pub last_failure: Option<DateTime<Utc>>,
    /// Present snapshots the definition owns.
    pub snapshots: i64,
    /// Whether its latest prune was blocked by `max_deletes_per_run`.
    pub prune_blocked: bool,
    /// Each of its `copy_regions` and whether the latest copy to it failed.
    pub copies: Vec<(String, bool)>,
    /// See [`nominal_interval`]; `None` for a schedule that (no longer)
    /// fires twice, or one that does not parse.
    pub interval: Option<Duration>,
}

/// Reads the store and publishes the gauges; remembers each schedule's
/// interval so that only new or edited schedules are expanded again.
pub struct DefinitionGauges {
    default_tz: Tz,
    /// (schedule text, `H` hash key, zone) → interval.
    intervals: HashMap<(String, String, Tz), Option<Duration>>,
}

impl DefinitionGauges {
    /// `default_tz` is `[daemon] timezone`, for definitions without their own.
    pub fn new(default_tz: Tz) -> Self {
        DefinitionGauges {
            default_tz,
            intervals: HashMap::new(),
        }
    }

    /// The values of every active definition, from the store, as of `now`.
    pub async fn read(
        &mut self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<DefinitionValues>> {
        let defs = store.list_definitions().await?;
        let successes: HashMap<Identity, DateTime<Utc>> =
            store.last_successes().await?.into_iter().collect();
        let failures: HashMap<Identity, DateTime<Utc>> =
            store.last_failures().await?.into_iter().collect();
        let counts: HashMap<Identity, i64> = store.owned_counts().await?.into_iter().collect();
        let blocked = store.blocked_prunes().await?;
        let failed_copies = store.failed_copies().await?;
        let mut seen = HashSet::with_capacity(defs.len());
        let mut out = Vec::with_capacity(defs.len());
        for def in defs.into_iter().filter(|d| d.spec.active) {
            let spec = def.spec;
            let zone = spec.zone(self.default_tz);
            let key = (
                spec.schedule.source().to_owned(),
                spec.identity.hash_key(),
                zone,
            );
            let interval = match self.intervals.get(&key) {
                Some(i) => *i,
                None => {
                    let i = nominal_interval(&spec.schedule, zone, now);
                    self.intervals.insert(key.clone(), i);
                    i
                }
            };
            seen.insert(key);
            out.push(DefinitionValues {
                last_success: successes.get(&spec.identity).copied(),
                last_failure: failures.get(&spec.identity).copied(),
                snapshots: counts.get(&spec.identity).copied().unwrap_or(0),
                prune_blocked: blocked.contains_key(&spec.identity),
                copies: spec
                    .copy_regions
                    .iter()
                    .map(|r| {
                        let failed = failed_copies
                            .get(&spec.identity)
                            .is_some_and(|f| f.iter().any(|c| c.region == *r));
                        (r.clone(), failed)
                    })
                    .collect(),
                interval,
                identity: spec.identity,
            });
        }
        self.intervals.retain(|k, _| seen.contains(k));
        Ok(out)
    }

    /// [`DefinitionGauges::read`], then set the gauges.
    pub async fn refresh(&mut self, store: &Store, now: DateTime<Utc>) -> StoreResult<usize> {
        let values = self.read(store, now).await?;
        // Here because it is refreshed well inside the gauges' idle timeout.
        metrics::build_info();
        for v in &values {
            if let Some(at) = v.last_success {
                metrics::last_success(&v.identity, at);
            }
            if let Some(at) = v.last_failure {
                metrics::last_failure(&v.identity, at);
            }
            metrics::snapshot_count(&v.identity, v.snapshots);
            metrics::prune_blocked(&v.identity, v.prune_blocked);
            for (region, failed) in &v.copies {
                metrics::copy_failed(&v.identity, region, *failed);
            }
            if let Some(i) = v.interval {
                metrics::definition_interval(&v.identity, i);
            }
        }
        Ok(values.len())
    }
}

/// Publish the gauges from the store now, then every [`REFRESH_EVERY`]
/// until `shutdown`, in a background task. The first refresh is awaited so
/// that the first scrape after start already shows them.
pub async fn start(store: Store, default_tz: Tz, shutdown: CancellationToken) -> StoreResult<()> {
    let mut gauges = DefinitionGauges::new(default_tz);
    gauges.refresh(&store, Utc::now()).await?;
    tokio::spawn(async move {
        let mut every = tokio::time::interval(REFRESH_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate and the refresh above covered it.
        every.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = every.tick() => {}
            }
            if let Err(e) = gauges.refresh(&store, Utc::now()).await {
                // At shutdown the store closes under a refresh in flight.
                if !shutdown.is_cancelled() {
                    tracing::warn!("cannot refresh the per-definition gauges: {e}");
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .expect("valid time")
    }

    fn interval(expr: &str, zone: Tz, from: DateTime<Utc>) -> Option<u64> {
        let s = Schedule::parse(expr, "lab/web01/0/web").expect("schedule parses");
        nominal_interval(&s, zone, from).map(|d| d.as_secs())
    }

    #[test]
    fn nominal_interval_is_the_longest_gap_ahead() {
        let utc = chrono_tz::UTC;
        let prague = chrono_tz::Europe::Prague;
        // 2026-03-25 is a Wednesday; Prague leaves CET on 2026-03-29.
        let wed = at(2026, 3, 25, 12);
        let cases: &[(&str, Tz, DateTime<Utc>, Option<u64>)] = &[
            ("* * * * * *", utc, wed, Some(1)),
            ("*/15 * * * *", utc, wed, Some(900)),
            ("0 3 * * *", utc, wed, Some(86_400)),
            // Friday 03:00 to Monday 03:00.
            ("0 3 * * 1-5", utc, wed, Some(3 * 86_400)),
            // Business hours only: the overnight gap counts, then the weekend.
            (
                "*/5 9-17 * * 1-5",
                utc,
                wed,
                Some(2 * 86_400 + 15 * 3600 + 5 * 60),
            ),
            // April 1 → May 1 is 30 days, May 1 → June 1 is 31.
            ("0 0 1 * *", utc, wed, Some(31 * 86_400)),
            // Daily at 01:00 local is 23 h apart across the spring change.
            ("0 1 * * *", prague, wed, Some(86_400)),
            // Across the autumn change one day lasts 25 h.
            ("0 1 * * *", prague, at(2026, 10, 21, 12), Some(25 * 3600)),
            // 2027 → 2028 → 2029: 2028 is a leap year.
            ("0 0 1 1 *", utc, wed, Some(366 * 86_400)),
        ];
        for (expr, zone, from, want) in cases {
            assert_eq!(interval(expr, *zone, *from), *want, "{expr} in {zone}");
        }
    }

    #[test]
    fn nominal_interval_needs_two_fires() {
        // 2026-02-29 does not exist; the next Feb 29 is 2028, then 2032.
        assert_eq!(
            interval("0 0 29 2 *", chrono_tz::UTC, at(2026, 1, 1, 0)),
            Some((365 * 3 + 366) * 86_400)
        );
    }
}
