//! Parsing cron expressions into per-field bitsets.
//!
//! Invariants of a successful parse: every bitset is non-empty and holds only
//! values inside its field's range; day-of-week is folded so that 7 is 0
//! (both Sunday); the text of each field with `H` items replaced by the values
//! they resolve to is kept, and it starts with `*` exactly when the written
//! field did, so the Vixie rules that look at the leading `*` (day OR/AND,
//! fixed time vs. interval) read the same on both.

use super::hash::HashSource;
use super::ScheduleError;

/// One field's static description.
pub(crate) struct FieldSpec {
    pub(crate) name: &'static str,
    lo: u32,
    hi: u32,
    /// Range a bare `H` (or `H/n`) hashes into; narrower than `lo..=hi` for
    /// day-of-month (1-28, so it fires every month) and day-of-week (0-6, so
    /// Sunday is not twice as likely).
    hash_lo: u32,
    hash_hi: u32,
    names: &'static [&'static str],
    /// Value of `names[0]`.
    names_base: u32,
    allowed: &'static str,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

pub(crate) const SECOND: FieldSpec = FieldSpec::numeric("second", 0, 59, "0-59");
pub(crate) const MINUTE: FieldSpec = FieldSpec::numeric("minute", 0, 59, "0-59");
pub(crate) const HOUR: FieldSpec = FieldSpec::numeric("hour", 0, 23, "0-23");
pub(crate) const DAY_OF_MONTH: FieldSpec = FieldSpec {
    hash_hi: 28,
    ..FieldSpec::numeric("day-of-month", 1, 31, "1-31")
};
pub(crate) const MONTH: FieldSpec = FieldSpec {
    names: &MONTHS,
    names_base: 1,
    ..FieldSpec::numeric("month", 1, 12, "1-12 or jan-dec")
};
pub(crate) const DAY_OF_WEEK: FieldSpec = FieldSpec {
    hash_hi: 6,
    names: &DAYS,
    names_base: 0,
    ..FieldSpec::numeric("day-of-week", 0, 7, "0-7 or sun-sat")
};

impl FieldSpec {
    const fn numeric(name: &'static str, lo: u32, hi: u32, allowed: &'static str) -> Self {
        FieldSpec {
            name,
            lo,
            hi,
            hash_lo: lo,
            hash_hi: hi,
            names: &[],
            names_base: 0,
            allowed,
        }
    }

    fn err(&self, msg: impl std::fmt::Display) -> ScheduleError {
        ScheduleError(format!("{} field: {msg}", self.name))
    }

    fn out_of_range(&self, value: &str) -> ScheduleError {
        self.err(format_args!("{value} is out of range {}", self.allowed))
    }

    /// A value: a decimal number or, for month and day of week, a name.
    fn value(&self, text: &str) -> Result<u32, ScheduleError> {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return match text.parse::<u32>() {
                Ok(v) if (self.lo..=self.hi).contains(&v) => Ok(v),
                _ => Err(self.out_of_range(text)),
            };
        }
        if let Some(i) = self.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
            return Ok(self.names_base + i as u32);
        }
        if text.is_empty() {
            return Err(self.err(format_args!("missing value (allowed {})", self.allowed)));
        }
        let what = if self.names.is_empty() {
            "is not a number"
        } else {
            "is not a number or a known name"
        };
        Err(self.err(format_args!("{text} {what} (allowed {})", self.allowed)))
    }

    fn step(&self, text: &str, item: &str) -> Result<u32, ScheduleError> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.err(format_args!(
                "step {text:?} in {item} is not a number (a step must be 1 or more)"
            )));
        }
        match text.parse::<u32>() {
            Ok(0) => Err(self.err(format_args!(
                "step 0 in {item} is out of range (a step must be 1 or more)"
            ))),
            Ok(n) => Ok(n),
            // Larger than any range: selects only the start, as a big number would.
            Err(_) => Ok(u32::MAX),
        }
    }

    fn range(&self, text: &str, item: &str) -> Result<(u32, u32), ScheduleError> {
        let (a, b) = match text.split_once('-') {
            Some((a, b)) if a.is_empty() || b.is_empty() => {
                return Err(self.err(format_args!(
                    "{item} is not a value or a range a-b (allowed {})",
                    self.allowed
                )))
            }
            Some((a, b)) => (self.value(a)?, self.value(b)?),
            None => {
                let v = self.value(text)?;
                (v, v)
            }
        };
        if a > b {
            return Err(self.err(format_args!(
                "range {item} is reversed: its start must not exceed its end (allowed {})",
                self.allowed
            )));
        }
        Ok((a, b))
    }
}

/// `lo..=hi` every `step`, as bits.
fn bits_between(lo: u32, hi: u32, step: u32) -> u64 {
    let mut bits = 0u64;
    let mut v = u64::from(lo);
    while v <= u64::from(hi) {
        bits |= 1 << v;
        v += u64::from(step);
    }
    bits
}

/// A parsed field: its bits and its text with `H` resolved.
pub(crate) struct Field {
    pub(crate) bits: u64,
    pub(crate) resolved: String,
}

/// Parses one field. `hash` supplies the values of `H` items in order.
pub(crate) fn field(
    spec: &FieldSpec,
    text: &str,
    hash: &mut HashSource,
) -> Result<Field, ScheduleError> {
    let mut bits = 0u64;
    let mut resolved = String::with_capacity(text.len());
    for (i, item) in text.split(',').enumerate() {
        if i > 0 {
            resolved.push(',');
        }
        if item.is_empty() {
            return Err(spec.err(format_args!(
                "empty item in list {text:?} (allowed {})",
                spec.allowed
            )));
        }
        let (item_bits, hashed) = self::item(spec, item, hash)?;
        bits |= item_bits;
        if hashed {
            let values: Vec<String> = (0..64)
                .filter(|v| item_bits & (1 << v) != 0)
                .map(|v| v.to_string())
                .collect();
            resolved.push_str(&values.join(","));
        } else {
            resolved.push_str(item);
        }
    }
    Ok(Field { bits, resolved })
}

/// Parses one list item; the flag tells whether it was an `H` item.
fn item(spec: &FieldSpec, item: &str, hash: &mut HashSource) -> Result<(u64, bool), ScheduleError> {
    let (base, step) = match item.split_once('/') {
        Some((base, step)) => (base, Some(spec.step(step, item)?)),
        None => (item, None),
    };
    if base == "*" {
        return Ok((bits_between(spec.lo, spec.hi, step.unwrap_or(1)), false));
    }
    if let Some(rest) = base.strip_prefix(['H', 'h']) {
        return hashed(spec, item, rest, step, hash).map(|b| (b, true));
    }
    if base.contains('-') || step.is_none() {
        let (a, b) = spec.range(base, item)?;
        return Ok((bits_between(a, b, step.unwrap_or(1)), false));
    }
    // Vixie cron reads `5/15` as just 5, other crons as 5-59/15: refuse the
    // ambiguity instead of guessing.
    Err(spec.err(format_args!(
        "step in {item} needs a range or `*` before the `/` (e.g. {base}-{}/…); allowed {}",
        spec.hi, spec.allowed
    )))
}

/// Jenkins-style hashed item: `H`, `H(a-b)`, `H/n`, `H(a-b)/n`.
fn hashed(
    spec: &FieldSpec,
    item: &str,
    rest: &str,
    step: Option<u32>,
    hash: &mut HashSource,
) -> Result<u64, ScheduleError> {
    let (lo, hi) = if rest.is_empty() {
        (spec.hash_lo, spec.hash_hi)
    } else if let Some(inner) = rest.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        if !inner.contains('-') {
            return Err(spec.err(format_args!(
                "{item}: H takes a range like H(0-29) (allowed {})",
                spec.allowed
            )));
        }
        spec.range(inner, item)?
    } else {
        return Err(spec.err(format_args!(
            "{item} is not a valid hashed value: use H, H(a-b), H/n or H(a-b)/n (allowed {})",
            spec.allowed
        )));
    };
    let width = hi - lo + 1;
    match step {
        None => Ok(1 << (lo + hash.next_below(width))),
        Some(n) if n > width => Err(spec.err(format_args!(
            "step {n} in {item} is out of range: it exceeds the {width} values of {lo}-{hi}"
        ))),
        Some(n) => Ok(bits_between(lo + hash.next_below(n), hi, n)),
    }
}

/// Expands `@` macros to their five-field form.
pub(crate) fn expand_macro(expr: &str) -> Result<Option<&'static str>, ScheduleError> {
    let Some(name) = expr.strip_prefix('@') else {
        return Ok(None);
    };
    let fields = match name.to_ascii_lowercase().as_str() {
        "yearly" | "annually" => "0 0 1 1 *",
        "monthly" => "0 0 1 * *",
        "weekly" => "0 0 * * 0",
        "daily" | "midnight" => "0 0 * * *",
        "hourly" => "0 * * * *",
        "reboot" => {
            return Err(ScheduleError(
                "@reboot is not supported: a snapshot schedule needs times, not a boot event \
                 (allowed @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)"
                    .into(),
            ))
        }
        _ => {
            return Err(ScheduleError(format!(
                "unknown macro {expr} (allowed @yearly, @annually, @monthly, @weekly, @daily, \
                 @midnight, @hourly)"
            )))
        }
    };
    Ok(Some(fields))
}

/// Fold day-of-week bit 7 into 0: both are Sunday.
pub(crate) fn fold_sunday(bits: u64) -> u8 {
    ((bits | (bits >> 7)) & 0x7f) as u8
}

/// Days in `month` in a leap year: the most a month can have.
pub(crate) fn max_days(month: u32) -> u32 {
    match month {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Refuses day fields that no selected month can satisfy.
pub(crate) fn check_can_fire(days: u32, months: u16, day_and: bool) -> Result<(), ScheduleError> {
    if !day_and {
        // A restricted day of week fires every week of every month.
        return Ok(());
    }
    let longest = (1..=12u32)
        .filter(|m| months & (1 << m) != 0)
        .map(max_days)
        .max()
        .unwrap_or(0);
    let first_day = days.trailing_zeros();
    if first_day > longest {
        return Err(DAY_OF_MONTH.err(format_args!(
            "{first_day} is out of range 1-{longest} for the months in the month field, \
             so the schedule would never fire"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(spec: &FieldSpec, text: &str) -> Result<u64, String> {
        field(spec, text, &mut HashSource::new("k"))
            .map(|f| f.bits)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn field_forms() {
        assert_eq!(bits(&MINUTE, "*"), Ok((1u64 << 60) - 1));
        assert_eq!(bits(&MINUTE, "*/15"), Ok(1 | 1 << 15 | 1 << 30 | 1 << 45));
        assert_eq!(bits(&MINUTE, "5"), Ok(1 << 5));
        assert_eq!(bits(&HOUR, "1-3"), Ok(0b1110));
        assert_eq!(bits(&HOUR, "1-7/3"), Ok(1 << 1 | 1 << 4 | 1 << 7));
        assert_eq!(
            bits(&HOUR, "1,3-4,*/12"),
            Ok(1 | 1 << 1 | 1 << 3 | 1 << 4 | 1 << 12)
        );
        assert_eq!(
            bits(&MONTH, "JAN,mar-May"),
            Ok(1 << 1 | 1 << 3 | 1 << 4 | 1 << 5)
        );
        assert_eq!(bits(&DAY_OF_WEEK, "Sun,sat"), Ok(1 | 1 << 6));
        assert_eq!(bits(&DAY_OF_WEEK, "5-7"), Ok(1 << 5 | 1 << 6 | 1 << 7));
        assert_eq!(bits(&DAY_OF_WEEK, "*/2"), Ok(1 | 1 << 2 | 1 << 4 | 1 << 6));
        assert_eq!(
            bits(&DAY_OF_MONTH, "*/10"),
            Ok(1 << 1 | 1 << 11 | 1 << 21 | 1 << 31)
        );
        assert_eq!(bits(&MINUTE, "*/100"), Ok(1));
        assert_eq!(fold_sunday(1 << 7 | 1 << 1), 0b11);
    }

    #[test]
    fn hashed_items_stay_in_their_range() {
        for key in ["a", "b", "c", "hourly", "daily", ""] {
            let mut h = HashSource::new(key);
            let m = field(&MINUTE, "H", &mut h).map(|f| f.bits);
            assert!(matches!(m, Ok(b) if b.count_ones() == 1 && b < 1 << 60));
            let d = field(&DAY_OF_MONTH, "H", &mut h).map(|f| f.bits);
            assert!(matches!(d, Ok(b) if b.count_ones() == 1 && (2..1 << 29).contains(&b)));
            let w = field(&DAY_OF_WEEK, "H", &mut h).map(|f| f.bits);
            assert!(matches!(w, Ok(b) if b.count_ones() == 1 && b < 1 << 7));
            let r = field(&MINUTE, "H(10-19)", &mut h).map(|f| f.bits);
            assert!(matches!(r, Ok(b) if b.count_ones() == 1 && (1 << 10..1 << 20).contains(&b)));
            let s = field(&MINUTE, "H/15", &mut h).map(|f| f.bits);
            assert!(matches!(s, Ok(b) if b.count_ones() == 4 && b.trailing_zeros() < 15));
            let rs = field(&HOUR, "H(0-11)/6", &mut h).map(|f| f.bits);
            assert!(matches!(rs, Ok(b) if b.count_ones() == 2 && b < 1 << 12));
        }
    }

    #[test]
    fn resolved_text_keeps_plain_items_and_expands_hashes() {
        let mut h = HashSource::new("k");
        let f = field(&MINUTE, "*/20,H/30", &mut h).ok().map(|f| f.resolved);
        let text = f.unwrap_or_default();
        assert!(text.starts_with("*/20,"), "{text}");
        assert_eq!(text.split(',').count(), 3, "{text}");
    }
}
