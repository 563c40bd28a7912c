//! Wall-clock search: the first local date and time at or after a given one
//! whose fields all match, ignoring time zones.
//!
//! The search jumps instead of stepping: a month outside the month set is
//! skipped whole, the matching days of a month come from one bitmask (day of
//! month combined with day of week by the Vixie rule), and the time of day
//! from the next set bit of the hour, minute and second sets. A year of a
//! sparse schedule such as `0 0 29 2 *` costs at most one step per month in
//! the month set, never one per minute.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use super::Schedule;

/// The search gives up after this many years. Valid schedules fire at least
/// every 40 years (a 29 February that must also be a given weekday, across
/// the skipped leap day of 2100); the parser refuses those that never fire.
const SEARCH_YEARS: i32 = 400;

/// The lowest set bit of `mask` at or above `from`.
#[inline]
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let m = mask & (u64::MAX << from);
    (m != 0).then(|| m.trailing_zeros())
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Schedule {
    /// The days of `year`-`month` on which the schedule fires, as bits 1..=31.
    #[inline]
    fn day_mask(&self, year: i32, month: u32, first: NaiveDate) -> u32 {
        let len = days_in_month(year, month);
        let valid = (u32::MAX >> (31 - len)) & !1; // bits 1..=len
        let dom = self.days & valid;
        // Weekday of day 1 (0 = Sunday); rotate the weekday set so that bit i
        // is the weekday of day i+1, then repeat it over five weeks.
        let w = first.weekday().num_days_from_sunday();
        let wd = u32::from(self.weekdays);
        let rot = ((wd >> w) | (wd << (7 - w))) & 0x7f;
        let dow = (rot | rot << 7 | rot << 14 | rot << 21 | rot << 28) << 1 & valid;
        if self.day_or() {
            dom | dow
        } else {
            dom & dow
        }
    }

    /// The first matching time of day at or after `h:m:s`.
    #[inline]
    fn time_from(&self, h: u32, m: u32, s: u32) -> Option<NaiveTime> {
        let first_s = self.seconds.trailing_zeros();
        let first_m = self.minutes.trailing_zeros();
        if self.hours & (1 << h) != 0 {
            if self.minutes & (1 << m) != 0 {
                if let Some(s) = next_bit(self.seconds, s) {
                    return NaiveTime::from_hms_opt(h, m, s);
                }
            }
            if let Some(m) = next_bit(self.minutes, m + 1) {
                return NaiveTime::from_hms_opt(h, m, first_s);
            }
        }
        let h = next_bit(u64::from(self.hours), h + 1)?;
        NaiveTime::from_hms_opt(h, first_m, first_s)
    }

    /// The first local date-time at or after `from` whose fields match.
    pub(crate) fn next_local(&self, from: NaiveDateTime) -> Option<NaiveDateTime> {
        let limit = from.year().saturating_add(SEARCH_YEARS);
        let mut year = from.year();
        let mut month = from.month();
        let mut day = from.day();
        let mut time = Some((from.hour(), from.minute(), from.second()));
        while year <= limit {
            if self.months & (1 << month) == 0 {
                let next = next_bit(u64::from(self.months), month + 1);
                match next {
                    Some(m) => month = m,
                    None => {
                        year += 1;
                        month = self.months.trailing_zeros();
                    }
                }
                day = 1;
                time = None;
                continue;
            }
            let first = NaiveDate::from_ymd_opt(year, month, 1)?;
            let days = self.day_mask(year, month, first) & (u32::MAX << day);
            if days != 0 {
                let d = days.trailing_zeros();
                if d != day {
                    day = d;
                    time = None;
                }
                let (h, m, s) = time.unwrap_or((0, 0, 0));
                if let Some(t) = self.time_from(h, m, s) {
                    return Some(NaiveDate::from_ymd_opt(year, month, day)?.and_time(t));
                }
                // No time left today: try the next day of this month.
                if day < 31 {
                    day += 1;
                    time = None;
                    continue;
                }
            }
            if month == 12 {
                year += 1;
                month = 1;
            } else {
                month += 1;
            }
            day = 1;
            time = None;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_bit_edges() {
        assert_eq!(next_bit(0b1010, 0), Some(1));
        assert_eq!(next_bit(0b1010, 2), Some(3));
        assert_eq!(next_bit(0b1010, 4), None);
        assert_eq!(next_bit(u64::MAX, 63), Some(63));
        assert_eq!(next_bit(u64::MAX, 64), None);
    }

    #[test]
    fn month_lengths() {
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2100, 2), 28);
        assert_eq!(days_in_month(2000, 2), 29);
        assert_eq!(days_in_month(2026, 4), 30);
        assert_eq!(days_in_month(2026, 12), 31);
    }
}
