//! From wall-clock matches to instants, the way Debian cron treats daylight
//! saving changes.
//!
//! * Fixed-time schedules (neither minute nor hour starts with `*`) follow
//!   the wall clock: a matching local time inside a spring-forward gap fires
//!   once, at the first existing minute after the gap (the time moved forward
//!   by whole minutes, as Debian's catch-up loop does); a local time that
//!   occurs twice fires at its first occurrence only.
//! * Interval schedules follow real time: they fire at every instant whose
//!   local time matches, so a repeated hour fires twice and a skipped hour
//!   never fires.
//!
//! Invariants: offsets are looked up from the zone rules for every instant
//! involved (never cached); results are whole seconds strictly after the
//! `after` instant; each search restarts at most a bounded number of times,
//! each restart moving past one transition.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone};
use chrono_tz::{GapInfo, Tz};

use super::Schedule;

/// Upper bound on restarts (one per transition or repeated-range skip that a
/// search crosses); far more than any real zone needs for one answer.
const MAX_RESTARTS: usize = 64;

fn offset_at(tz: Tz, t: i64) -> Option<i64> {
    let utc = DateTime::from_timestamp(t, 0)?.naive_utc();
    Some(i64::from(
        tz.offset_from_utc_datetime(&utc).fix().local_minus_utc(),
    ))
}

fn local_at(tz: Tz, t: i64) -> Option<NaiveDateTime> {
    Some(DateTime::from_timestamp(t + offset_at(tz, t)?, 0)?.naive_utc())
}

/// The earlier and the later instant of a local time.
fn instants(r: &LocalResult<DateTime<Tz>>) -> Option<(i64, i64)> {
    match r {
        LocalResult::Single(x) => Some((x.timestamp(), x.timestamp())),
        LocalResult::Ambiguous(a, b) => {
            let (a, b) = (a.timestamp(), b.timestamp());
            Some((a.min(b), a.max(b)))
        }
        LocalResult::None => None,
    }
}

/// The first instant in `(lo, hi]` whose offset differs from the offset at
/// `lo`; `hi` must have a different offset.
fn transition_between(tz: Tz, mut lo: i64, mut hi: i64) -> Option<i64> {
    let base = offset_at(tz, lo)?;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if offset_at(tz, mid)? == base {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(hi)
}

/// The first instant after the gap that local time `n` falls into.
fn gap_end(tz: Tz, n: &NaiveDateTime) -> Option<DateTime<Tz>> {
    GapInfo::new(n, &tz)?.end
}

impl Schedule {
    /// Interval semantics: the first instant after `after` whose local time
    /// matches.
    pub(crate) fn next_interval(&self, after: i64, tz: Tz) -> Option<i64> {
        let mut t0 = after.checked_add(1)?;
        for _ in 0..MAX_RESTARTS {
            let l0 = local_at(tz, t0)?;
            // If `t0` lies in the first pass through a repeated range, the
            // clock will go back to the range's start at the transition; the
            // times before `l0` in that range then occur again.
            let fall_back = match instants(&tz.from_local_datetime(&l0)) {
                Some((early, late)) if early == t0 && late != t0 => {
                    Some(transition_between(tz, early, late)?)
                }
                _ => None,
            };
            let n = self.next_local(l0)?;
            let candidate = match instants(&tz.from_local_datetime(&n)) {
                Some((early, late)) => Ok(if early >= t0 { early } else { late }),
                None => Err(gap_end(tz, &n)?.timestamp()),
            };
            match (candidate, fall_back) {
                (Ok(c), Some(f)) if c >= f => t0 = f,
                (Err(_), Some(f)) => t0 = f,
                (Ok(c), _) => return Some(c),
                (Err(g), None) => t0 = g,
            }
        }
        None
    }

    /// Fixed-time semantics: wall-clock matches, a skipped time moved to the
    /// first existing minute after its gap, a repeated time at its first
    /// occurrence.
    pub(crate) fn next_fixed(&self, after: i64, tz: Tz) -> Option<i64> {
        // Continue on the wall clock from the local time of `after`: starting
        // from the local time of `after + 1s` would step over a gap that
        // begins right after `after`, and with it the times it catches up.
        let mut start = local_at(tz, after)?.checked_add_signed(Duration::seconds(1))?;
        for _ in 0..MAX_RESTARTS {
            let n = self.next_local(start)?;
            let resolved = tz.from_local_datetime(&n);
            let fire = match instants(&resolved) {
                Some((early, _)) => early,
                None => {
                    let end = gap_end(tz, &n)?;
                    let behind = (end.naive_local() - n).num_seconds().max(0);
                    let minutes = (behind + 59) / 60;
                    let moved = n.checked_add_signed(Duration::minutes(minutes))?;
                    instants(&tz.from_local_datetime(&moved))
                        .map_or(end.timestamp(), |(early, _)| early)
                }
            };
            if fire > after {
                return Some(fire);
            }
            // Only a repeated time seen from its second pass lands here: its
            // first occurrence is already past, and so is every first
            // occurrence of the rest of the range, so skip to the range's end.
            start = match instants(&resolved) {
                Some((early, late)) if early != late => {
                    let t = transition_between(tz, early, late)?;
                    let before = offset_at(tz, early)?;
                    DateTime::from_timestamp(t + before, 0)?.naive_utc()
                }
                _ => n.checked_add_signed(Duration::seconds(1))?,
            };
        }
        None
    }
}
