//! Keep tiers on definitions end to end: `def add` flags, `def set` keys,
//! `def show` and `--json`, the config file's keys, and refused input.

use crate::support::TestEnv;

fn add(name: &str, rest: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "def",
        "add",
        name,
        "--provider",
        "do",
        "--target",
        "droplet:3164444",
        "--schedule",
        "0 * * * *",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(rest.iter().map(|s| s.to_string()));
    a
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn tiers_alone_are_a_complete_policy_and_show_in_json_and_text() {
    let env = TestEnv::base();
    let a = add(
        "tiered",
        &[
            "--keep-hourly",
            "24",
            "--keep-daily",
            "7",
            "--keep-monthly",
            "12",
            "--keep-within",
            "2d",
        ],
    );
    let added = env.json(&args(&a));
    assert_eq!(added["retention"], 0, "{added}");
    assert_eq!(added["keep_hourly"], 24);
    assert_eq!(added["keep_daily"], 7);
    assert_eq!(added["keep_weekly"], 0);
    assert_eq!(added["keep_monthly"], 12);
    assert_eq!(added["keep_yearly"], 0);
    assert_eq!(added["keep_within"], "2days");

    let shown = env.ok(&["def", "show", "tiered"]);
    assert!(
        shown.contains("hourly 24, daily 7, monthly 12, within 2days"),
        "{shown}"
    );

    env.ok(&[
        "def",
        "set",
        "tiered",
        "keep_daily=3",
        "keep_within=none",
        "keep_last=5",
    ]);
    let after = env.json(&["def", "show", "tiered"]);
    assert_eq!(after["keep_daily"], 3);
    assert_eq!(after["keep_within"], serde_json::Value::Null);
    assert_eq!(after["retention"], 5);
    assert_eq!(after["keep_hourly"], 24, "untouched tiers stay");
}

#[test]
fn keep_last_is_retention() {
    let env = TestEnv::base();
    let added = env.json(&args(&add("last", &["--keep-last", "4"])));
    assert_eq!(added["retention"], 4);
    let err = env.usage_error(&args(&add(
        "both",
        &["--keep-last", "4", "--retention", "5"],
    )));
    assert!(
        err.contains("keep_last") && err.contains("retention 5"),
        "{err}"
    );
}

#[test]
fn bad_tier_values_are_refused_naming_key_and_value() {
    let env = TestEnv::base();
    for (flag, value, needle) in [
        (
            "--keep-daily",
            "-1",
            "keep_daily: -1 is out of range 0-65536",
        ),
        (
            "--keep-weekly",
            "65537",
            "keep_weekly: 65537 is out of range",
        ),
        (
            "--keep-within",
            "soon",
            "keep_within: 'soon' is not a duration",
        ),
        ("--keep-within", "0s", "keep_within: '0s' keeps nothing"),
    ] {
        let err = env.usage_error(&args(&add("x", &[flag, value])));
        assert!(err.contains(needle), "{flag} {value}: {err}");
    }
    env.add_droplet("daily", 1);
    let err = env.usage_error(&["def", "set", "daily", "keep_monthly=many"]);
    assert!(
        err.contains("keep_monthly: 'many' is not a number"),
        "{err}"
    );
    assert!(env.list().iter().all(|d| d["keep_monthly"] == 0));
}

#[test]
fn config_file_keys_reach_the_store() {
    let env = TestEnv::base_with(
        r#"
[[definitions]]
name = "gfs"
provider = "do"
target = "droplet:42"
schedule = "0 3 * * *"
keep_last = 3
keep_daily = 7
keep_weekly = 4
keep_yearly = 2
keep_within = "36h"
"#,
    );
    env.ok(&["config", "apply"]);
    let shown = env.json(&["def", "show", "gfs"]);
    assert_eq!(shown["retention"], 3);
    assert_eq!(shown["keep_daily"], 7);
    assert_eq!(shown["keep_weekly"], 4);
    assert_eq!(shown["keep_yearly"], 2);
    assert_eq!(shown["keep_within"], "1day 12h");

    let bad = TestEnv::base_with(
        r#"
[[definitions]]
name = "gfs"
provider = "do"
target = "droplet:42"
schedule = "0 3 * * *"
keep_hourly = -3
"#,
    );
    let err = bad.usage_error(&["config", "check"]);
    assert!(err.contains("keep_hourly") && err.contains("-3"), "{err}");
}
