//! The independent retention oracle (`tests/oracle/retention_keep.py`, a
//! Python implementation of restic's keep rules on zoneinfo's calendar):
//! one JSON case a line in, one line of `[[keep, [reason, ...]], ...]`
//! (oldest first) out.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use snapsched::retention::Policy;

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// One case: own ready snapshots created at `times` (epoch seconds) in
/// `zone`, planned with `policy` at `now`.
pub fn input(zone: &str, policy: &Policy, now: i64, times: &[i64]) -> String {
    let k = &policy.keep;
    json!({
        "zone": zone,
        "now": now,
        "max_age": policy.max_age.map(|d| d.as_secs()),
        "keep": {
            "last": k.last, "hourly": k.hourly, "daily": k.daily, "weekly": k.weekly,
            "monthly": k.monthly, "yearly": k.yearly, "within": k.within.map(|d| d.as_secs()),
        },
        "times": times,
    })
    .to_string()
}

/// Run the oracle once on every case; one answer per case.
pub fn run(inputs: &[String]) -> Vec<Value> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/oracle/retention_keep.py"
    );
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} {script}: {e}", python()));
    let input: String = inputs.iter().map(|c| c.clone() + "\n").collect();
    let mut stdin = child.stdin.take().expect("stdin pipe");
    // The oracle reads all of its input before it writes, so writing first
    // cannot deadlock.
    stdin
        .write_all(input.as_bytes())
        .expect("writing to the oracle");
    drop(stdin);
    let mut output = String::new();
    child
        .stdout
        .take()
        .expect("stdout pipe")
        .read_to_string(&mut output)
        .expect("reading the oracle");
    assert!(
        child.wait().expect("oracle exit").success(),
        "the oracle failed"
    );
    output
        .lines()
        .map(|l| serde_json::from_str(l).expect("oracle JSON"))
        .collect()
}
