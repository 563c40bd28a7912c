//! `snapsched def ...` end to end through the real binary: the happy path,
//! every refused input (exit 2, a message naming the key, store unchanged),
//! addressing, and the store's behaviour with bad or shared database files.

use serde_json::Value;

use crate::support::process::{assert_no_panic, outcome};
use crate::support::TestEnv;

/// The JSON field names `def list/show/add --json` promise to keep.
const STABLE_FIELDS: &[&str] = &[
    "id",
    "name",
    "provider",
    "target",
    "disk_id",
    "schedule",
    "timezone",
    "retention",
    "active",
    "desc",
    "fsfreeze",
    "max_age",
    "catch_up_deadline",
    "tags",
    "source",
    "source_path",
    "created_at",
    "updated_at",
    "zone",
    "next_fire",
];

fn assert_stable_fields(v: &Value) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"));
    for f in STABLE_FIELDS {
        assert!(obj.contains_key(*f), "field {f} missing from {v}");
    }
}

/// The store as `def list --json` reports it, without `next_fire` (which
/// moves with the clock).
fn snapshot(env: &TestEnv) -> Vec<Value> {
    env.list()
        .into_iter()
        .map(|mut v| {
            if let Some(o) = v.as_object_mut() {
                o.remove("next_fire");
            }
            v
        })
        .collect()
}

/// An environment with one CLI definition already stored, so "unchanged"
/// means something.
fn seeded() -> TestEnv {
    let env = TestEnv::base();
    env.add_droplet("daily", 3164444);
    env
}

/// Run `args`, require exit 2, a stderr naming every one of `needles`, and
/// the store unchanged; returns stderr.
fn refused(env: &TestEnv, args: &[&str], needles: &[&str]) -> String {
    let before = snapshot(env);
    let err = env.usage_error(args);
    for n in needles {
        assert!(
            err.contains(n),
            "stderr of {args:?} does not name {n:?}:\n{err}"
        );
    }
    assert_eq!(snapshot(env), before, "{args:?} changed the store");
    err
}

/// `def add NAME --provider P --target T` plus `rest`, with a valid schedule
/// and retention unless `rest` gives them.
fn add_args<'a>(
    name: &'a str,
    provider: &'a str,
    target: &'a str,
    rest: &[&'a str],
) -> Vec<&'a str> {
    let mut a = vec![
        "def",
        "add",
        name,
        "--provider",
        provider,
        "--target",
        target,
    ];
    if !rest.contains(&"--schedule") {
        a.extend(["--schedule", "30 5 * * *"]);
    }
    if !rest.contains(&"--retention") {
        a.extend(["--retention", "7"]);
    }
    a.extend_from_slice(rest);
    a
}

// ---------------------------------------------------------------- happy path

#[test]
fn def_lifecycle_add_list_show_set_enable_disable_rm() {
    let env = TestEnv::base();
    // A read command does not create the store; a command that changes it does.
    let (code, _, err) = env.run(&["def", "list"]);
    assert!(code == 1 && err.contains("no snapsched store at"), "{err}");
    env.ok(&["config", "apply"]);
    assert!(env.list().is_empty());

    let added = env.json(&add_args(
        "daily",
        "do",
        "droplet:3164444",
        &["--tz", "Europe/Bratislava", "--desc", "nightly image"],
    ));
    assert_stable_fields(&added);
    assert_eq!(added["name"], "daily");
    assert_eq!(added["provider"], "do");
    assert_eq!(added["target"], "droplet:3164444");
    assert_eq!(added["disk_id"], 1);
    assert_eq!(added["schedule"], "30 5 * * *");
    assert_eq!(added["timezone"], "Europe/Bratislava");
    assert_eq!(added["zone"], "Europe/Bratislava");
    assert_eq!(added["retention"], 7);
    assert_eq!(added["active"], true);
    assert_eq!(added["desc"], "nightly image");
    assert_eq!(added["fsfreeze"], false);
    assert_eq!(added["source"], "cli");
    assert_eq!(added["source_path"], Value::Null);
    let next = added["next_fire"]
        .as_str()
        .expect("an active definition has a next fire");
    assert!(
        next.contains("T05:30:00"),
        "next fire {next} is not 05:30 local"
    );

    // An Erigones definition with fsfreeze and a disk other than 1.
    env.ok(&add_args(
        "hourly",
        "dc1",
        "web01.example.com",
        &["--disk", "2", "--fsfreeze"],
    ));

    let list = env.list();
    assert_eq!(list.len(), 2);
    list.iter().for_each(assert_stable_fields);
    let names: Vec<&str> = list.iter().filter_map(|d| d["name"].as_str()).collect();
    assert_eq!(names, ["daily", "hourly"], "list is ordered by name");
    assert_eq!(list[1]["disk_id"], 2);
    assert_eq!(list[1]["fsfreeze"], true);
    assert_eq!(
        list[1]["zone"], "UTC",
        "no zone falls back to daemon.timezone"
    );

    // The human table has a header and a row per definition.
    let table = env.ok(&["def", "list"]);
    assert!(
        table.contains("Name") && table.contains("Next fire"),
        "{table}"
    );
    assert!(
        table.contains("droplet:3164444") && table.contains("web01.example.com"),
        "{table}"
    );

    let shown = env.json(&["def", "show", "daily"]);
    assert_stable_fields(&shown);
    assert_eq!(shown["id"], added["id"]);

    env.ok(&[
        "def",
        "set",
        "daily",
        "retention=3",
        "schedule=0 3 * * *",
        "desc=changed",
        "timezone=",
    ]);
    let shown = env.json(&["def", "show", "daily"]);
    assert_eq!(shown["retention"], 3);
    assert_eq!(shown["schedule"], "0 3 * * *");
    assert_eq!(shown["desc"], "changed");
    assert_eq!(shown["timezone"], Value::Null);
    assert_eq!(shown["created_at"], added["created_at"]);

    env.ok(&["def", "disable", "daily"]);
    let shown = env.json(&["def", "show", "daily"]);
    assert_eq!(shown["active"], false);
    assert_eq!(
        shown["next_fire"],
        Value::Null,
        "an inactive definition never fires"
    );

    env.ok(&["def", "enable", "daily"]);
    assert_eq!(env.json(&["def", "show", "daily"])["active"], true);

    env.ok(&["def", "rm", "daily"]);
    let left: Vec<Value> = env.list();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["name"], "hourly");
    let err = env.usage_error(&["def", "show", "daily"]);
    assert!(err.contains("no definition named 'daily'"), "{err}");
}

#[test]
fn def_add_inactive_and_erigones_default_names() {
    let env = TestEnv::base();
    env.ok(&add_args("paused", "do", "droplet:1", &["--inactive"]));
    assert_eq!(env.json(&["def", "show", "paused"])["active"], false);
    // Erigones' named defaults: no schedule and no retention given.
    env.ok(&[
        "def",
        "add",
        "daily",
        "--provider",
        "dc1",
        "--target",
        "web01",
    ]);
    let d = env.json(&["def", "show", "daily"]);
    assert_eq!(d["schedule"], "H H * * *");
    assert_eq!(d["retention"], 30);
}

#[test]
fn def_set_rejects_unknown_setting_and_bad_bool() {
    let env = seeded();
    refused(&env, &["def", "set", "daily", "colour=blue"], &["colour"]);
    refused(
        &env,
        &["def", "set", "daily", "active=maybe"],
        &["active", "maybe"],
    );
    refused(&env, &["def", "set", "daily", "retention"], &["KEY=VALUE"]);
}

// ------------------------------------------------------------ refused input

#[test]
fn name_with_invalid_characters_is_refused() {
    let env = seeded();
    for bad in ["bad name", ".dot", "a/b", "ž", "a:b"] {
        let err = refused(&env, &add_args(bad, "do", "droplet:1", &[]), &["name"]);
        assert!(err.contains(bad), "{err}");
    }
    // A leading '-' reaches the validator only after `--`.
    let mut args = add_args("placeholder", "do", "droplet:1", &[]);
    args.retain(|a| *a != "placeholder");
    args.extend(["--", "-lead"]);
    refused(&env, &args, &["name", "-lead"]);
}

#[test]
fn name_longer_than_64_characters_is_refused() {
    let env = seeded();
    let long = "x".repeat(65);
    refused(
        &env,
        &add_args(&long, "do", "droplet:1", &[]),
        &["name", "at most 64"],
    );
    let max = "x".repeat(64);
    env.ok(&add_args(&max, "do", "droplet:1", &[]));
}

#[test]
fn name_longer_than_8_characters_on_erigones_is_refused() {
    let env = seeded();
    refused(
        &env,
        &add_args("ninechars", "dc1", "web01", &[]),
        &["name", "ninechars", "at most 8"],
    );
    env.ok(&add_args("eightchr", "dc1", "web01", &[]));
}

#[test]
fn empty_name_is_refused() {
    let env = seeded();
    refused(&env, &add_args("", "do", "droplet:1", &[]), &["name"]);
}

#[test]
fn duplicate_identity_is_refused() {
    let env = seeded();
    let err = refused(
        &env,
        &add_args("daily", "do", "droplet:3164444", &[]),
        &["already exists"],
    );
    assert!(err.contains("'daily' (do droplet:3164444 disk 1)"), "{err}");
}

#[test]
fn unknown_provider_is_refused() {
    let env = seeded();
    refused(
        &env,
        &add_args("daily", "nope", "droplet:1", &[]),
        &["provider", "'nope'", "do"],
    );
}

#[test]
fn malformed_droplet_target_is_refused() {
    let env = seeded();
    refused(
        &env,
        &add_args("x", "do", "droplet:abc", &[]),
        &["target", "droplet:abc"],
    );
}

#[test]
fn malformed_volume_target_is_refused() {
    let env = seeded();
    refused(
        &env,
        &add_args("x", "do", "volume:not-a-uuid", &[]),
        &["target", "volume:not-a-uuid"],
    );
}

#[test]
fn empty_target_is_refused() {
    let env = seeded();
    refused(&env, &add_args("x", "do", "", &[]), &["target", "empty"]);
    refused(&env, &add_args("x", "dc1", "", &[]), &["target", "empty"]);
}

#[test]
fn target_of_another_provider_kind_is_refused() {
    let env = seeded();
    refused(
        &env,
        &add_args("x", "do", "web01", &[]),
        &["target", "web01"],
    );
    refused(
        &env,
        &add_args("x", "dc1", "droplet:1", &[]),
        &["target", "droplet:1"],
    );
}

#[test]
fn disk_id_zero_is_refused() {
    let env = seeded();
    refused(
        &env,
        &add_args("x", "dc1", "web01", &["--disk", "0"]),
        &["disk_id", "0"],
    );
}

#[test]
fn negative_disk_id_is_refused() {
    let env = seeded();
    refused(
        &env,
        &add_args("x", "dc1", "web01", &["--disk", "-1"]),
        &["disk_id", "-1"],
    );
}

#[test]
fn disk_id_other_than_1_on_digitalocean_is_refused() {
    let env = seeded();
    refused(
        &env,
        &add_args("x", "do", "droplet:1", &["--disk", "2"]),
        &["disk_id", "2", "only disk 1"],
    );
    let vol = "volume:7724db7c-e098-11e5-b522-000f53304e51";
    refused(
        &env,
        &add_args("x", "do", vol, &["--disk", "2"]),
        &["disk_id", "only disk 1"],
    );
}

#[test]
fn negative_retention_is_refused() {
    let env = seeded();
    refused(
        &env,
        &add_args("x", "do", "droplet:1", &["--retention", "-1"]),
        &["retention", "-1"],
    );
}

#[test]
fn retention_above_65536_is_refused() {
    let env = seeded();
    refused(
        &env,
        &add_args("x", "do", "droplet:1", &["--retention", "65537"]),
        &["retention", "65537"],
    );
    env.ok(&add_args("x", "do", "droplet:1", &["--retention", "65536"]));
}

#[test]
fn non_numeric_retention_is_refused() {
    let env = seeded();
    refused(
        &env,
        &add_args("x", "do", "droplet:1", &["--retention", "abc"]),
        &["retention", "abc"],
    );
    refused(
        &env,
        &["def", "set", "daily", "retention=abc"],
        &["retention", "abc"],
    );
}

#[test]
fn invalid_cron_is_refused() {
    let env = seeded();
    // The cron engine's wording may change; the key must be named.
    refused(
        &env,
        &add_args("x", "do", "droplet:1", &["--schedule", "60 * * * *"]),
        &["schedule"],
    );
    refused(
        &env,
        &add_args("x", "do", "droplet:1", &["--schedule", "not cron"]),
        &["schedule"],
    );
    refused(
        &env,
        &["def", "set", "daily", "schedule=60 * * * *"],
        &["schedule"],
    );
}

#[test]
fn missing_schedule_without_erigones_default_name_is_refused() {
    let env = seeded();
    refused(
        &env,
        &[
            "def",
            "add",
            "nightly",
            "--provider",
            "do",
            "--target",
            "droplet:1",
            "--retention",
            "3",
        ],
        &["schedule", "required"],
    );
}

#[test]
fn unknown_time_zone_is_refused() {
    let env = seeded();
    refused(
        &env,
        &add_args("x", "do", "droplet:1", &["--tz", "Mars/Olympus"]),
        &["timezone", "Mars/Olympus"],
    );
    refused(
        &env,
        &["def", "set", "daily", "timezone=Mars/Olympus"],
        &["timezone", "Mars/Olympus"],
    );
}

#[test]
fn desc_of_129_characters_is_refused() {
    let env = seeded();
    let long = "d".repeat(129);
    refused(
        &env,
        &add_args("x", "do", "droplet:1", &["--desc", &long]),
        &["desc", "129", "at most 128"],
    );
    refused(
        &env,
        &["def", "set", "daily", &format!("desc={long}")],
        &["desc", "129"],
    );
    env.ok(&add_args(
        "x",
        "do",
        "droplet:1",
        &["--desc", &"d".repeat(128)],
    ));
}

#[test]
fn fsfreeze_on_digitalocean_is_refused() {
    let env = seeded();
    refused(
        &env,
        &add_args("x", "do", "droplet:1", &["--fsfreeze"]),
        &["fsfreeze"],
    );
    refused(
        &env,
        &["def", "set", "daily", "fsfreeze=true"],
        &["fsfreeze"],
    );
}

#[test]
fn every_bad_field_is_reported_at_once_including_the_schedule() {
    let env = seeded();
    refused(
        &env,
        &add_args(
            "bad name",
            "do",
            "droplet:abc",
            &[
                "--retention",
                "65537",
                "--schedule",
                "60 * * * *",
                "--tz",
                "Mars/Olympus",
            ],
        ),
        &["name", "target", "retention", "schedule", "timezone"],
    );
}

#[test]
fn def_set_cannot_change_name_target_or_disk() {
    let env = seeded();
    for (change, key) in [
        ("name=other", "name"),
        ("target=droplet:1", "target"),
        ("disk=2", "disk"),
        ("disk_id=2", "disk"),
        ("provider=dc1", "provider"),
    ] {
        let err = refused(
            &env,
            &["def", "set", "daily", change],
            &[key, "cannot be changed"],
        );
        assert!(err.contains("identify a definition"), "{err}");
    }
    // A refused change in a batch leaves the valid ones unapplied too.
    refused(
        &env,
        &["def", "set", "daily", "retention=1", "name=other"],
        &["name"],
    );
}

const CONFIG_DAILY: &str = r#"
[[definitions]]
name = "daily"
provider = "do"
target = "droplet:3164444"
disk_id = 1
schedule = "30 5 * * *"
retention = 30
"#;

#[test]
fn editing_a_config_sourced_definition_is_refused() {
    let env = TestEnv::base_with(CONFIG_DAILY);
    env.ok(&["config", "apply"]);
    let path = std::fs::canonicalize(&env.config).expect("canonical path");
    let expected = format!(
        "definition 'daily' (do droplet:3164444 disk 1) is managed by {}: edit the file and reload",
        path.display()
    );
    for args in [
        vec!["def", "set", "daily", "retention=3"],
        vec!["def", "rm", "daily"],
        vec!["def", "enable", "daily"],
        vec!["def", "disable", "daily"],
    ] {
        let err = refused(&env, &args, &[]);
        assert!(
            err.contains(&expected),
            "{args:?}:\n{err}\nexpected: {expected}"
        );
    }
    // Reading it is fine, and says where it comes from.
    let shown = env.json(&["def", "show", "daily"]);
    assert_eq!(shown["source"], "config");
    assert_eq!(shown["source_path"], path.to_string_lossy().as_ref());
}

// ------------------------------------------------------------- addressing

#[test]
fn ambiguous_name_lists_every_match_and_filters_narrow_it() {
    let env = TestEnv::base();
    env.add_droplet("daily", 1);
    env.add_droplet("daily", 2);
    let err = refused(
        &env,
        &["def", "show", "daily"],
        &["2 definitions are named 'daily'", "--target"],
    );
    assert!(err.contains("(do droplet:1 disk 1)"), "{err}");
    assert!(err.contains("(do droplet:2 disk 1)"), "{err}");
    // Every addressing command refuses to guess.
    refused(&env, &["def", "rm", "daily"], &["2 definitions"]);
    refused(
        &env,
        &["def", "set", "daily", "retention=1"],
        &["2 definitions"],
    );
    refused(&env, &["def", "disable", "daily"], &["2 definitions"]);

    let one = env.json(&["def", "show", "daily", "--target", "droplet:2"]);
    assert_eq!(one["target"], "droplet:2");
    env.ok(&["def", "disable", "daily", "--target", "droplet:2"]);
    let list = env.list();
    let active: Vec<(&str, bool)> = list
        .iter()
        .map(|d| {
            (
                d["target"].as_str().unwrap_or(""),
                d["active"].as_bool().unwrap_or(true),
            )
        })
        .collect();
    assert_eq!(active, [("droplet:1", true), ("droplet:2", false)]);
    env.ok(&[
        "def",
        "rm",
        "daily",
        "--provider",
        "do",
        "--target",
        "droplet:1",
        "--disk",
        "1",
    ]);
    assert_eq!(env.list().len(), 1);
    refused(
        &env,
        &["def", "show", "daily", "--target", "droplet:1"],
        &["matches the filters"],
    );
}

// ------------------------------------------------------------------ store

fn assert_clean_failure(code: i32, err: &str) {
    assert_ne!(code, 0, "expected a failure:\n{err}");
    assert_no_panic(err);
    assert!(
        err.starts_with("snapsched: "),
        "no plain error message:\n{err}"
    );
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_cleanly() {
    let env = TestEnv::base();
    let bogus = env.write("notes.txt", &"this is not a database\n".repeat(200), 0o600);
    let (code, _, err) = env.run(&["--database", bogus.to_str().unwrap(), "def", "list"]);
    assert_clean_failure(code, &err);
    assert!(err.contains("not an SQLite database"), "{err}");
    assert!(err.contains("notes.txt"), "{err}");
    let after = std::fs::read_to_string(&bogus).expect("file still readable");
    assert!(
        after.starts_with("this is not a database"),
        "the file was modified"
    );
}

#[test]
fn an_sqlite_file_with_foreign_tables_is_refused_cleanly() {
    let env = TestEnv::base();
    let other = env.path().join("other.db");
    {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            use sqlx::ConnectOptions;
            let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&other)
                .create_if_missing(true)
                .connect()
                .await
                .expect("create foreign db");
            sqlx::query("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
                .execute(&mut conn)
                .await
                .expect("create table");
        });
    }
    let (code, _, err) = env.run(&["--database", other.to_str().unwrap(), "def", "list"]);
    assert_clean_failure(code, &err);
    assert!(err.contains("not a snapsched database"), "{err}");
    let (code, _, err) = env.run(&[
        "--database",
        other.to_str().unwrap(),
        "def",
        "add",
        "x",
        "--provider",
        "do",
        "--target",
        "droplet:1",
        "--schedule",
        "0 * * * *",
        "--retention",
        "1",
    ]);
    assert_clean_failure(code, &err);
    assert!(err.contains("not a snapsched database"), "{err}");
}

#[test]
fn an_unwritable_database_path_is_refused_cleanly() {
    let env = TestEnv::base();
    // A directory where the file should be, and a file where a directory
    // should be: both fail whoever runs the test (root included).
    let dir = env.path().join("a-directory.db");
    std::fs::create_dir(&dir).expect("mkdir");
    let (code, _, err) = env.run(&["--database", dir.to_str().unwrap(), "def", "list"]);
    assert_clean_failure(code, &err);
    assert!(err.contains("a-directory.db"), "{err}");

    let file = env.write("plain-file", "x", 0o600);
    let under_file = file.join("snapsched.db");
    let (code, _, err) = env.run(&["--database", under_file.to_str().unwrap(), "def", "list"]);
    assert_clean_failure(code, &err);
    assert!(err.contains("plain-file"), "{err}");
}

#[test]
fn the_database_path_is_in_the_open_error() {
    let env = TestEnv::base();
    let (code, _, err) = env.run(&["--database", "/proc/definitely/not/here.db", "def", "list"]);
    assert_clean_failure(code, &err);
    assert!(err.contains("/proc/definitely/not/here.db"), "{err}");
}

/// Start every command at once, then require each to succeed without a
/// lock error.
fn all_at_once(env: &TestEnv, commands: Vec<Vec<String>>) {
    let children: Vec<_> = commands
        .iter()
        .map(|args| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            env.command(&args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for (args, child) in commands.iter().zip(children) {
        let (code, out, err) = outcome(child.wait_with_output().expect("wait"));
        assert!(!err.contains("locked"), "{args:?}: {err}");
        assert_eq!(code, 0, "{args:?}:\nstdout: {out}\nstderr: {err}");
    }
}

#[test]
fn parallel_def_add_processes_all_succeed() {
    let env = TestEnv::base();
    // Against a database that does not exist yet: all of them race to
    // create and migrate it.
    let adds = (1..=8)
        .map(|i| {
            let target = format!("droplet:{i}");
            add_args("daily", "do", &target, &[])
                .into_iter()
                .map(str::to_owned)
                .collect()
        })
        .collect();
    all_at_once(&env, adds);
    let targets: std::collections::BTreeSet<String> = env
        .list()
        .iter()
        .filter_map(|d| d["target"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(targets.len(), 8, "{targets:?}");

    // And writes to an existing one.
    let sets = (1..=8)
        .map(|i| {
            vec![
                "def".to_owned(),
                "set".to_owned(),
                "daily".to_owned(),
                "--target".to_owned(),
                format!("droplet:{i}"),
                format!("retention={i}"),
            ]
        })
        .collect();
    all_at_once(&env, sets);
    for d in env.list() {
        let target = d["target"].as_str().unwrap_or("");
        let i: u64 = target.trim_start_matches("droplet:").parse().expect("id");
        assert_eq!(d["retention"], i, "{d}");
    }
}

/// `H` depends on the identity: `schedule next --definition` previews the
/// times the definition really fires at (the status's next fire), while a
/// bare expression with `H` says it used an example identity.
#[test]
fn schedule_next_for_a_definition_resolves_its_own_h() {
    let env = TestEnv::base();
    let mut firsts = Vec::new();
    for (name, target) in [("a", "droplet:3164444"), ("b", "droplet:3164445")] {
        env.json(&add_args(name, "do", target, &["--schedule", "H H * * *"]));
        let next = env.json(&["schedule", "next", "--definition", name, "--count", "1"]);
        let status = env.json(&["status"]);
        let def = status
            .as_array()
            .and_then(|a| a.iter().find(|d| d["name"] == name))
            .unwrap_or_else(|| panic!("{name} not in status: {status}"))
            .clone();
        let at = |v: &serde_json::Value| {
            chrono::DateTime::parse_from_rfc3339(v.as_str().expect("a time")).expect("RFC 3339")
        };
        assert_eq!(
            at(&next[0]),
            at(&def["next_fire"]),
            "{name}: {next} vs {def}"
        );
        firsts.push(at(&next[0]));
    }
    // Two identities, two (almost surely) different resolutions; the hash
    // is stable, so this is deterministic for these identities.
    assert_ne!(firsts[0], firsts[1], "H resolved alike for two identities");

    let (code, _, err) = env.run(&["schedule", "next", "H H * * *", "--count", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("example identity") && err.contains("--definition"),
        "{err}"
    );
    let err = env.usage_error(&["schedule", "next", "--definition", "nosuch"]);
    assert!(err.contains("no definition named 'nosuch'"), "{err}");
    let err = env.usage_error(&["schedule", "next", "0 3 * * *", "--target", "x"]);
    assert!(err.contains("--definition"), "{err}");
}
