//! Table tests: one table per rule of the spec, one row per case.

use super::*;
use chrono::TimeZone;

const BRATISLAVA: Tz = chrono_tz::Europe::Bratislava;
const NEW_YORK: Tz = chrono_tz::America::New_York;
const LORD_HOWE: Tz = chrono_tz::Australia::Lord_Howe;
const SANTIAGO: Tz = chrono_tz::America::Santiago;
const CHATHAM: Tz = chrono_tz::Pacific::Chatham;
const KOLKATA: Tz = chrono_tz::Asia::Kolkata;

fn instant(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("bad test instant {rfc3339}: {e}"))
        .with_timezone(&Utc)
}

/// The next `n` fire times after `after`, formatted in the zone.
fn fires(expr: &str, tz: Tz, after: &str, n: usize) -> Vec<String> {
    let s = Schedule::parse(expr, "test-key").unwrap_or_else(|e| panic!("{expr}: {e}"));
    let mut t = instant(after);
    let mut out = Vec::new();
    for _ in 0..n {
        match s.next_after(t, tz) {
            Some(next) => {
                assert!(next > t, "{expr}: {next} is not after {t}");
                out.push(format_in_zone(next, tz));
                t = next;
            }
            None => break,
        }
    }
    out
}

struct Case {
    expr: &'static str,
    tz: Tz,
    after: &'static str,
    want: &'static [&'static str],
}

fn check(table: &[Case]) {
    for c in table {
        assert_eq!(
            fires(c.expr, c.tz, c.after, c.want.len()),
            c.want,
            "{} in {} after {}",
            c.expr,
            c.tz,
            c.after
        );
    }
}

#[test]
fn fields_ranges_steps_lists_and_names() {
    check(&[
        Case {
            expr: "*/20 * * * *",
            tz: Tz::UTC,
            after: "2026-01-01T00:00:00Z",
            want: &[
                "2026-01-01T00:20:00+00:00",
                "2026-01-01T00:40:00+00:00",
                "2026-01-01T01:00:00+00:00",
            ],
        },
        Case {
            expr: "5-10/5,59 1-2 * * *",
            tz: Tz::UTC,
            after: "2026-01-01T00:00:00Z",
            want: &[
                "2026-01-01T01:05:00+00:00",
                "2026-01-01T01:10:00+00:00",
                "2026-01-01T01:59:00+00:00",
                "2026-01-01T02:05:00+00:00",
            ],
        },
        Case {
            expr: "0 12 * JAN,Mar-apr *",
            tz: Tz::UTC,
            after: "2026-01-31T12:00:00Z",
            want: &["2026-03-01T12:00:00+00:00"],
        },
        Case {
            expr: "0 9 * * Mon-FRI",
            tz: Tz::UTC,
            after: "2026-01-02T10:00:00Z", // a Friday
            want: &["2026-01-05T09:00:00+00:00", "2026-01-06T09:00:00+00:00"],
        },
        Case {
            expr: "0 0 */10 * *",
            tz: Tz::UTC,
            after: "2026-01-21T00:00:00Z",
            want: &["2026-01-31T00:00:00+00:00", "2026-02-01T00:00:00+00:00"],
        },
        Case {
            expr: "0 0 1 */5 *",
            tz: Tz::UTC,
            after: "2026-01-01T00:00:00Z",
            want: &["2026-06-01T00:00:00+00:00", "2026-11-01T00:00:00+00:00"],
        },
    ]);
}

#[test]
fn zero_and_seven_are_both_sunday() {
    for expr in [
        "0 0 * * 0",
        "0 0 * * 7",
        "0 0 * * sun",
        "0 0 * * SUN",
        "0 0 * * 6-7",
    ] {
        let got = fires(expr, Tz::UTC, "2026-01-02T12:00:00Z", 1);
        let want = if expr.ends_with("6-7") {
            "2026-01-03T00:00:00+00:00"
        } else {
            "2026-01-04T00:00:00+00:00"
        };
        assert_eq!(got, [want], "{expr}");
    }
}

#[test]
fn day_fields_or_when_both_restricted_and_when_either_starts_with_star() {
    check(&[
        // Both restricted: the 1st of the month OR any Monday.
        Case {
            expr: "0 0 1 * 1",
            tz: Tz::UTC,
            after: "2025-12-31T12:00:00Z",
            want: &[
                "2026-01-01T00:00:00+00:00",
                "2026-01-05T00:00:00+00:00",
                "2026-01-12T00:00:00+00:00",
                "2026-01-19T00:00:00+00:00",
                "2026-01-26T00:00:00+00:00",
                "2026-02-01T00:00:00+00:00",
                "2026-02-02T00:00:00+00:00",
            ],
        },
        // `*/2` starts with `*`: odd days that are Mondays (AND).
        Case {
            expr: "0 0 */2 * 1",
            tz: Tz::UTC,
            after: "2025-12-31T12:00:00Z",
            want: &[
                "2026-01-05T00:00:00+00:00",
                "2026-01-19T00:00:00+00:00",
                "2026-02-09T00:00:00+00:00",
                "2026-02-23T00:00:00+00:00",
            ],
        },
        // Day of week `*/2` (Sun, Tue, Thu, Sat) ANDed with the 13th-15th.
        Case {
            expr: "0 0 13-15 * */2",
            tz: Tz::UTC,
            after: "2026-01-01T00:00:00Z",
            want: &["2026-01-13T00:00:00+00:00", "2026-01-15T00:00:00+00:00"],
        },
        // The 13th OR any Friday.
        Case {
            expr: "0 0 13 * 5",
            tz: Tz::UTC,
            after: "2026-01-01T00:00:00Z",
            want: &[
                "2026-01-02T00:00:00+00:00",
                "2026-01-09T00:00:00+00:00",
                "2026-01-13T00:00:00+00:00",
                "2026-01-16T00:00:00+00:00",
            ],
        },
        // Day of week `*`: only the 13th.
        Case {
            expr: "0 0 13 * *",
            tz: Tz::UTC,
            after: "2026-01-01T00:00:00Z",
            want: &["2026-01-13T00:00:00+00:00", "2026-02-13T00:00:00+00:00"],
        },
        // 29 February OR any Monday of February.
        Case {
            expr: "0 0 29 2 1",
            tz: Tz::UTC,
            after: "2026-01-01T00:00:00Z",
            want: &["2026-02-02T00:00:00+00:00", "2026-02-09T00:00:00+00:00"],
        },
    ]);
}

#[test]
fn sparse_schedules_jump_years() {
    check(&[
        Case {
            expr: "0 0 29 2 *",
            tz: Tz::UTC,
            after: "2026-01-01T00:00:00Z",
            want: &["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"],
        },
        // Across 2100, which has no 29 February.
        Case {
            expr: "0 0 29 2 *",
            tz: Tz::UTC,
            after: "2096-03-01T00:00:00Z",
            want: &["2104-02-29T00:00:00+00:00"],
        },
        // A 29 February that is also a Monday (AND through `*/1`).
        Case {
            expr: "0 0 */1 2 1",
            tz: Tz::UTC,
            after: "2026-02-28T00:00:00Z",
            want: &["2027-02-01T00:00:00+00:00"],
        },
        Case {
            expr: "0 0 29 */1 1",
            tz: Tz::UTC,
            after: "2026-01-01T00:00:00Z",
            want: &["2026-01-05T00:00:00+00:00"],
        },
    ]);
}

#[test]
fn macros_expand_to_their_fields() {
    for (mac, plain) in [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ] {
        assert_eq!(expand_hashes(mac, "k").as_deref(), Ok(plain));
        for tz in [Tz::UTC, BRATISLAVA] {
            for after in ["2026-03-29T00:30:00Z", "2026-10-25T00:10:00Z"] {
                assert_eq!(
                    fires(mac, tz, after, 4),
                    fires(plain, tz, after, 4),
                    "{mac}"
                );
            }
        }
    }
    let weekly = Schedule::parse("@weekly", "k").map(|s| s.source().to_owned());
    assert_eq!(weekly.as_deref(), Ok("@weekly"));
}

#[test]
fn leading_seconds_field() {
    check(&[
        Case {
            expr: "*/20 * * * * *",
            tz: Tz::UTC,
            after: "2026-01-01T00:00:00Z",
            want: &[
                "2026-01-01T00:00:20+00:00",
                "2026-01-01T00:00:40+00:00",
                "2026-01-01T00:01:00+00:00",
            ],
        },
        Case {
            expr: "30 0 12 * * *",
            tz: Tz::UTC,
            after: "2026-01-01T12:00:30Z",
            want: &["2026-01-02T12:00:30+00:00"],
        },
        // A fixed time in the spring gap keeps its seconds.
        Case {
            expr: "15 30 2 * * *",
            tz: BRATISLAVA,
            after: "2026-03-29T00:00:00Z",
            want: &["2026-03-29T03:00:15+02:00", "2026-03-30T02:30:15+02:00"],
        },
    ]);
    assert_eq!(
        Schedule::parse("0 * * * * *", "").map(|s| s.has_seconds()),
        Ok(true)
    );
    assert_eq!(
        Schedule::parse("* * * * *", "").map(|s| s.has_seconds()),
        Ok(false)
    );
}

#[test]
fn strictly_after_even_with_fractions_of_a_second() {
    let s = Schedule::parse("0 0 * * *", "").unwrap_or_else(|e| panic!("{e}"));
    let midnight = instant("2026-01-01T00:00:00Z");
    assert_eq!(
        s.next_after(midnight, Tz::UTC),
        Some(instant("2026-01-02T00:00:00Z"))
    );
    let just_before = midnight - chrono::Duration::milliseconds(1);
    assert_eq!(s.next_after(just_before, Tz::UTC), Some(midnight));
    let just_after = midnight + chrono::Duration::milliseconds(1);
    assert_eq!(
        s.next_after(just_after, Tz::UTC),
        Some(instant("2026-01-02T00:00:00Z"))
    );
}

#[test]
fn fixed_time_follows_the_wall_clock_across_dst() {
    check(&[
        // The examples: spring gap -> first minute after the gap.
        Case {
            expr: "30 2 * * *",
            tz: BRATISLAVA,
            after: "2026-03-28T12:00:00+01:00",
            want: &["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
        },
        // Repeated hour: once, at the first occurrence.
        Case {
            expr: "30 2 * * *",
            tz: BRATISLAVA,
            after: "2026-10-24T12:00:00+02:00",
            want: &["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
        },
        // Asked from inside the second pass: the first occurrence is past.
        Case {
            expr: "30 2 * * *",
            tz: BRATISLAVA,
            after: "2026-10-25T02:15:00+01:00",
            want: &["2026-10-26T02:30:00+01:00"],
        },
        // A list is still a fixed time; two gap times fire once.
        Case {
            expr: "0 2,3 * * *",
            tz: BRATISLAVA,
            after: "2026-03-29T00:00:00+01:00",
            want: &["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"],
        },
        Case {
            expr: "0-59/20 2 * * *",
            tz: BRATISLAVA,
            after: "2026-10-25T00:00:00+02:00",
            want: &[
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:20:00+02:00",
                "2026-10-25T02:40:00+02:00",
                "2026-10-26T02:00:00+01:00",
            ],
        },
        Case {
            expr: "30 2 * * *",
            tz: NEW_YORK,
            after: "2026-03-07T12:00:00-05:00",
            want: &["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
        },
        Case {
            expr: "30 1 * * *",
            tz: NEW_YORK,
            after: "2026-10-31T12:00:00-04:00",
            want: &["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
        },
        // 30-minute DST: 02:00 -> 02:30.
        Case {
            expr: "15 2 * * *",
            tz: LORD_HOWE,
            after: "2026-10-03T12:00:00+10:30",
            want: &["2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"],
        },
        // DST at midnight: 00:00 -> 01:00.
        Case {
            expr: "30 0 * * *",
            tz: SANTIAGO,
            after: "2026-09-05T12:00:00-04:00",
            want: &["2026-09-06T01:00:00-03:00", "2026-09-07T00:30:00-03:00"],
        },
        // Gap from 02:45 to 03:45.
        Case {
            expr: "45 2 * * *",
            tz: CHATHAM,
            after: "2026-09-26T12:00:00+12:45",
            want: &["2026-09-27T03:45:00+13:45", "2026-09-28T02:45:00+13:45"],
        },
        Case {
            expr: "0 6,18 * * *",
            tz: KOLKATA,
            after: "2026-03-29T00:00:00Z",
            want: &["2026-03-29T06:00:00+05:30", "2026-03-29T18:00:00+05:30"],
        },
    ]);
}

#[test]
fn intervals_follow_real_time_across_dst() {
    check(&[
        // The example: the repeated hour fires twice.
        Case {
            expr: "*/30 * * * *",
            tz: BRATISLAVA,
            after: "2026-10-25T01:50:00+02:00",
            want: &[
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T02:30:00+01:00",
                "2026-10-25T03:00:00+01:00",
            ],
        },
        // Started inside the first pass, past the matches of the range start.
        Case {
            expr: "0 * * * *",
            tz: BRATISLAVA,
            after: "2026-10-25T02:50:00+02:00",
            want: &["2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"],
        },
        // A skipped hour does not fire.
        Case {
            expr: "*/30 * * * *",
            tz: BRATISLAVA,
            after: "2026-03-29T01:15:00+01:00",
            want: &[
                "2026-03-29T01:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T03:30:00+02:00",
            ],
        },
        Case {
            expr: "15 */2 * * *",
            tz: BRATISLAVA,
            after: "2026-10-25T00:00:00+02:00",
            want: &[
                "2026-10-25T00:15:00+02:00",
                "2026-10-25T02:15:00+02:00",
                "2026-10-25T02:15:00+01:00",
                "2026-10-25T04:15:00+01:00",
            ],
        },
        Case {
            expr: "* 2 * * *",
            tz: BRATISLAVA,
            after: "2026-03-29T00:00:00+01:00",
            want: &["2026-03-30T02:00:00+02:00"],
        },
        Case {
            expr: "*/15 * * * *",
            tz: LORD_HOWE,
            after: "2026-04-05T01:20:00+11:00",
            want: &[
                "2026-04-05T01:30:00+11:00",
                "2026-04-05T01:45:00+11:00",
                "2026-04-05T01:30:00+10:30",
                "2026-04-05T01:45:00+10:30",
                "2026-04-05T02:00:00+10:30",
            ],
        },
        Case {
            expr: "*/20 0 * * *",
            tz: SANTIAGO,
            after: "2026-09-05T12:00:00-04:00",
            want: &["2026-09-07T00:00:00-03:00", "2026-09-07T00:20:00-03:00"],
        },
    ]);
    let fixed = |e: &str| Schedule::parse(e, "").map(|s| s.is_fixed_time());
    assert_eq!(fixed("30 2 * * *"), Ok(true));
    assert_eq!(fixed("0 6,18 * * *"), Ok(true));
    assert_eq!(fixed("H H * * *"), Ok(true));
    assert_eq!(fixed("0 * * * *"), Ok(false));
    assert_eq!(fixed("*/30 2 * * *"), Ok(false));
    assert_eq!(fixed("15 */2 * * *"), Ok(false));
    assert_eq!(fixed("@hourly"), Ok(false));
    assert_eq!(fixed("@daily"), Ok(true));
}

#[test]
fn hashed_fields_are_stable_per_key_and_spread_across_keys() {
    let a = expand_hashes("H H * * H(0-6)", "vm1/disk0");
    assert_eq!(a, expand_hashes("H H * * H(0-6)", "vm1/disk0"));
    let mut minutes = std::collections::HashSet::new();
    for i in 0..100 {
        let text = expand_hashes("H * * * *", &format!("def-{i}"));
        let text = text.unwrap_or_else(|e| panic!("{e}"));
        let minute: u32 = text
            .split(' ')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(99);
        assert!(minute < 60, "{text}");
        minutes.insert(minute);
    }
    assert!(
        minutes.len() > 30,
        "H spread over only {} minutes",
        minutes.len()
    );
    // The resolved form fires exactly when the hashed one does.
    for expr in [
        "H H * * *",
        "H/15 * * * *",
        "H(0-29)/10 H(1-5) H(1-28) * *",
        "H H * * H",
    ] {
        let resolved = expand_hashes(expr, "key").unwrap_or_else(|e| panic!("{e}"));
        let a = Schedule::parse(expr, "key").unwrap_or_else(|e| panic!("{e}"));
        let b = Schedule::parse(&resolved, "other").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (a.minutes, a.hours, a.days, a.weekdays),
            (b.minutes, b.hours, b.days, b.weekdays)
        );
        assert_eq!(
            (a.day_or(), a.is_fixed_time()),
            (b.day_or(), b.is_fixed_time()),
            "{expr}"
        );
    }
}

#[test]
fn erigones_defaults_parse_and_fire_as_erigones_spreads_them() {
    for name in ["hourly", "daily", "weekly", "monthly"] {
        let Some((expr, _retention)) = erigones_default(name) else {
            panic!("{name} has no default");
        };
        let s = Schedule::parse(expr, name).unwrap_or_else(|e| panic!("{expr}: {e}"));
        let got = fires(expr, BRATISLAVA, "2026-01-01T00:00:00Z", 3);
        assert_eq!(got.len(), 3, "{name}");
        let gap = |a: &str, b: &str| (instant(b) - instant(a)).num_hours();
        let want = match name {
            "hourly" => 1,
            "daily" => 24,
            "weekly" => 24 * 7,
            _ => 24 * 28, // at least
        };
        if name == "monthly" {
            assert!(gap(&got[0], &got[1]) >= want, "{name}: {got:?}");
        } else {
            assert_eq!(gap(&got[0], &got[1]), want, "{name}: {got:?}");
        }
        assert_eq!(s.is_fixed_time(), name != "hourly");
    }
    assert_eq!(erigones_default("yearly"), None);
}

#[test]
fn refused_forms_name_field_value_and_range() {
    let table: &[(&str, &str)] = &[
        ("60 * * * *", "minute field: 60 is out of range 0-59"),
        ("* 24 * * *", "hour field: 24 is out of range 0-23"),
        ("* * 0 * *", "day-of-month field: 0 is out of range 1-31"),
        ("* * 32 * *", "day-of-month field: 32 is out of range 1-31"),
        (
            "* * * 0 *",
            "month field: 0 is out of range 1-12 or jan-dec",
        ),
        (
            "* * * 13 *",
            "month field: 13 is out of range 1-12 or jan-dec",
        ),
        (
            "* * * * 8",
            "day-of-week field: 8 is out of range 0-7 or sun-sat",
        ),
        ("60 * * * * *", "second field: 60 is out of range 0-59"),
        (
            "99999999999 * * * *",
            "minute field: 99999999999 is out of range 0-59",
        ),
        (
            "5-3 * * * *",
            "minute field: range 5-3 is reversed: its start must not exceed its end (allowed 0-59)",
        ),
        (
            "* * * * fri-mon",
            "day-of-week field: range fri-mon is reversed: its start must not exceed its end \
             (allowed 0-7 or sun-sat)",
        ),
        (
            "*/0 * * * *",
            "minute field: step 0 in */0 is out of range (a step must be 1 or more)",
        ),
        (
            "* 1-5/0 * * *",
            "hour field: step 0 in 1-5/0 is out of range (a step must be 1 or more)",
        ),
        (
            "1,,2 * * * *",
            "minute field: empty item in list \"1,,2\" (allowed 0-59)",
        ),
        (
            "1, * * * *",
            "minute field: empty item in list \"1,\" (allowed 0-59)",
        ),
        (
            "* * * *",
            "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading \
             seconds field, found 4 in \"* * * *\"",
        ),
        (
            "* * * * * * *",
            "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading \
             seconds field, found 7 in \"* * * * * * *\"",
        ),
        (
            "",
            "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading \
             seconds field, found 0 in \"\"",
        ),
        (
            "* * * foo *",
            "month field: foo is not a number or a known name (allowed 1-12 or jan-dec)",
        ),
        (
            "* * * * funday",
            "day-of-week field: funday is not a number or a known name (allowed 0-7 or sun-sat)",
        ),
        (
            "* * * * jan",
            "day-of-week field: jan is not a number or a known name (allowed 0-7 or sun-sat)",
        ),
        (
            "x * * * *",
            "minute field: x is not a number (allowed 0-59)",
        ),
        (
            "-1 * * * *",
            "minute field: -1 is not a value or a range a-b (allowed 0-59)",
        ),
        (
            "*/x * * * *",
            "minute field: step \"x\" in */x is not a number (a step must be 1 or more)",
        ),
        (
            "5/15 * * * *",
            "minute field: step in 5/15 needs a range or `*` before the `/` (e.g. 5-59/…); \
             allowed 0-59",
        ),
        (
            "@reboot",
            "@reboot is not supported: a snapshot schedule needs times, not a boot event \
             (allowed @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)",
        ),
        (
            "@every_5m",
            "unknown macro @every_5m (allowed @yearly, @annually, @monthly, @weekly, @daily, \
             @midnight, @hourly)",
        ),
        (
            "0 0 30 2 *",
            "day-of-month field: 30 is out of range 1-29 for the months in the month field, so \
             the schedule would never fire",
        ),
        (
            "0 0 31 4 *",
            "day-of-month field: 31 is out of range 1-30 for the months in the month field, so \
             the schedule would never fire",
        ),
        (
            "0 0 31 4,6,9,11 *",
            "day-of-month field: 31 is out of range 1-30 for the months in the month field, so \
             the schedule would never fire",
        ),
        (
            "0 0 30-31 2 */2",
            "day-of-month field: 30 is out of range 1-29 for the months in the month field, so \
             the schedule would never fire",
        ),
    ];
    assert_refused(table);
    // Both day fields restricted: Mondays of February still fire.
    assert!(Schedule::parse("0 0 30 2 1", "").is_ok());
    assert!(Schedule::parse("0 0 31 4,5 *", "").is_ok());
}

fn assert_refused(table: &[(&str, &str)]) {
    for (expr, want) in table {
        assert_eq!(
            Schedule::parse(expr, "k").map(|_| ()),
            Err(ScheduleError((*want).to_owned())),
            "{expr:?}"
        );
    }
}

#[test]
fn refused_hashed_forms_name_field_value_and_range() {
    let table: &[(&str, &str)] = &[
        (
            "H(70) * * * *",
            "minute field: H(70): H takes a range like H(0-29) (allowed 0-59)",
        ),
        ("H(40-70) * * * *", "minute field: 70 is out of range 0-59"),
        (
            "Hx * * * *",
            "minute field: Hx is not a valid hashed value: use H, H(a-b), H/n or H(a-b)/n \
             (allowed 0-59)",
        ),
        (
            "H/0 * * * *",
            "minute field: step 0 in H/0 is out of range (a step must be 1 or more)",
        ),
        (
            "H(0-9)/20 * * * *",
            "minute field: step 20 in H(0-9)/20 is out of range: it exceeds the 10 values of 0-9",
        ),
    ];
    assert_refused(table);
}

#[test]
fn schedule_is_small_and_shareable() {
    fn assert_send_sync<T: Send + Sync + Clone + std::fmt::Debug>() {}
    assert_send_sync::<Schedule>();
    assert!(
        std::mem::size_of::<Schedule>() <= 48,
        "{}",
        std::mem::size_of::<Schedule>()
    );
}

#[test]
fn formats_with_the_offset_of_the_instant() {
    let t = instant("2026-03-29T01:00:00Z");
    assert_eq!(format_in_zone(t, BRATISLAVA), "2026-03-29T03:00:00+02:00");
    assert_eq!(format_in_zone(t, Tz::UTC), "2026-03-29T01:00:00+00:00");
    assert_eq!(format_in_zone(t, KOLKATA), "2026-03-29T06:30:00+05:30");
}

/// croner agrees with us in UTC once its day rule is set the Vixie way per
/// expression; a second, independent implementation to compare against.
#[test]
fn matches_croner_in_utc_on_random_expressions() {
    use croner::parser::{CronParser, Seconds, Year};
    use rand::{rngs::StdRng, Rng, SeedableRng};

    let mut rng = StdRng::seed_from_u64(0x5eed_c40e);
    let item = |rng: &mut StdRng, lo: u32, hi: u32| -> String {
        match rng.random_range(0..6) {
            0 => "*".into(),
            1 => format!("*/{}", rng.random_range(1..=hi - lo + 1)),
            2 => rng.random_range(lo..=hi).to_string(),
            3 => {
                let a = rng.random_range(lo..=hi);
                format!("{a}-{}", rng.random_range(a..=hi))
            }
            4 => {
                let a = rng.random_range(lo..=hi);
                let b = rng.random_range(a..=hi);
                format!("{a}-{b}/{}", rng.random_range(1..=4))
            }
            _ => format!(
                "{},{}",
                rng.random_range(lo..=hi),
                rng.random_range(lo..=hi)
            ),
        }
    };
    let mut compared = 0;
    for _ in 0..3000 {
        let fields = [
            item(&mut rng, 0, 59),
            item(&mut rng, 0, 23),
            item(&mut rng, 1, 31),
            item(&mut rng, 1, 12),
            item(&mut rng, 0, 6),
        ];
        let expr = fields.join(" ");
        let Ok(ours) = Schedule::parse(&expr, "") else {
            continue; // e.g. `0 0 31 2 *`; croner's rules for those differ
        };
        let croner = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .dom_and_dow(!ours.day_or())
            .build()
            .parse(&expr)
            .unwrap_or_else(|e| panic!("croner refused {expr}: {e}"));
        let mut t = instant("2025-01-01T00:00:00Z")
            + chrono::Duration::minutes(rng.random_range(0..60 * 24 * 800));
        for _ in 0..5 {
            let mine = ours.next_after(t, Tz::UTC);
            let theirs = croner.find_next_occurrence(&t, false).ok();
            assert_eq!(mine, theirs, "{expr} after {t}");
            let Some(next) = mine else { break };
            t = next;
            compared += 1;
        }
    }
    assert!(compared > 10_000, "only {compared} comparisons");
}

#[test]
fn dates_far_out_do_not_panic() {
    let s = Schedule::parse("0 0 29 2 1", "").unwrap_or_else(|e| panic!("{e}"));
    let far = Utc.with_ymd_and_hms(262_000, 1, 1, 0, 0, 0).single();
    if let Some(far) = far {
        let _ = s.next_after(far, BRATISLAVA);
    }
    assert!(s.next_after(DateTime::<Utc>::MAX_UTC, Tz::UTC).is_none());
    assert!(s.next_after(DateTime::<Utc>::MIN_UTC, BRATISLAVA).is_some());
}
