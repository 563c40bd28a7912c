//! `snapsched retention simulate` through the real binary: from flags
//! alone, from a definition with flags over it, and its usage errors.

use crate::support::fake::add_web;
use crate::support::process::assert_no_panic;
use crate::support::TestEnv;

const WINDOW: [&str; 4] = ["--from", "2026-01-01T00:00:00Z", "--for", "60d"];

#[test]
fn flags_alone_simulate_a_tiered_policy_and_price_it() {
    let env = TestEnv::base();
    let mut args = vec![
        "retention",
        "simulate",
        "--schedule",
        "0 * * * *",
        "--keep-hourly",
        "24",
        "--keep-daily",
        "7",
        "--keep-weekly",
        "4",
        "--size",
        "10",
    ];
    args.extend_from_slice(&WINDOW);
    let v = env.json(&args);
    assert_eq!(v["runs"], 1440, "{v}");
    assert_eq!(v["final"], 33, "{v}");
    assert!(v["peak"].as_u64() >= v["final"].as_u64(), "{v}");
    assert_eq!(v["kept"].as_array().map(Vec::len), Some(33));
    assert_eq!(v["kept"][0]["name"], "snapshot-20260208_230000");
    assert_eq!(v["final_storage_gb"], 330.0);
    assert_eq!(v["monthly_cost_usd"], 19.8);

    let text = env.ok(&args);
    assert!(text.contains("final: 33 snapshots"), "{text}");
    assert!(text.contains("weekly 4/4"), "{text}");
}

#[test]
fn a_definition_gives_the_policy_and_flags_override_it() {
    let env = TestEnv::base();
    // 0 3 * * *, retention 2, on the fake provider (not priced).
    add_web(&env, "fake", "vm1");
    let mut args = vec!["retention", "simulate", "web", "--size", "10"];
    args.extend_from_slice(&WINDOW);
    let v = env.json(&args);
    assert_eq!(
        (v["runs"].as_u64(), v["final"].as_u64()),
        (Some(60), Some(2)),
        "{v}"
    );
    assert_eq!(v["kept"][1]["name"], "web-20260301_030000");
    assert!(v["monthly_cost_usd"].is_null(), "{v}");

    args.extend_from_slice(&["--keep-last", "5", "--schedule", "0 */12 * * *"]);
    let v = env.json(&args);
    assert_eq!(
        (v["runs"].as_u64(), v["final"].as_u64()),
        (Some(120), Some(5)),
        "{v}"
    );
    assert_eq!(v["schedule"], "0 */12 * * *");
}

#[test]
fn bad_input_exits_2_with_the_fix() {
    let env = TestEnv::base();
    env.ok(&["config", "apply"]);
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "--schedule",
                "0 * * * *",
                "--from",
                "2026-01-01",
                "--for",
                "1d",
            ],
            "--from '2026-01-01' is not an RFC 3339 instant",
        ),
        (
            &[
                "--schedule",
                "0 * * * *",
                "--from",
                "2026-01-01T00:00:00Z",
                "--for",
                "0s",
            ],
            "--for '0s' replays nothing",
        ),
        (
            &[
                "--schedule",
                "0 25 * * *",
                "--from",
                "2026-01-01T00:00:00Z",
                "--for",
                "1d",
            ],
            "--schedule '0 25 * * *'",
        ),
        (
            &[
                "--schedule",
                "* * * * *",
                "--from",
                "2026-01-01T00:00:00Z",
                "--for",
                "3y",
            ],
            "more than 1000000 times",
        ),
        (
            &["nosuch", "--from", "2026-01-01T00:00:00Z", "--for", "1d"],
            "no definition named 'nosuch'",
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec!["retention", "simulate"];
        args.extend_from_slice(extra);
        let err = env.usage_error(&args);
        assert_no_panic(&err);
        assert!(err.contains(want), "{extra:?}: {err}");
    }
}
