//! `snapsched import erigones` through the real binary against the fake
//! Erigones API on loopback. The fake runs on its own small runtime, so the
//! tests can block on the child process while the server keeps answering.

use serde_json::Value;
use snapsched_fake_api::erigones::{
    self as fake, route, FakeDefinition, FakeErigonesConfig, FakeHandle,
};

use crate::support::process::assert_no_panic;
use crate::support::{TestEnv, BASE_CONFIG};

const KEY: &str = "es-key-import-5b1d-do-not-print";
const WEB: &str = "web01.example.com";
const DB: &str = "db01.example.com";
/// The variable the base configuration reads dc1's API key from.
const KEY_ENV: &str = "SNAPSCHED_TEST_DC1_KEY";

/// A fake Erigones with two VMs and a config whose `dc1` points at it.
/// Fields drop in order: the server stops before its runtime goes.
struct World {
    fake: FakeHandle,
    env: TestEnv,
    _rt: tokio::runtime::Runtime,
}

fn erigones_def(host: &str, name: &str, disk_id: u32, schedule: &str) -> FakeDefinition {
    FakeDefinition {
        hostname: host.to_owned(),
        name: name.to_owned(),
        disk_id,
        schedule: schedule.to_owned(),
        retention: 10 + i64::from(disk_id),
        active: true,
        desc: format!("{name} of {host}"),
        fsfreeze: disk_id == 2,
    }
}

impl World {
    fn new() -> World {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime for the fake");
        let fake = rt
            .block_on(fake::start(FakeErigonesConfig {
                api_key: KEY.to_owned(),
                ..FakeErigonesConfig::default()
            }))
            .expect("fake Erigones starts");
        fake.state.add_vm(WEB, 2);
        fake.state.add_vm(DB, 1);
        let env = TestEnv::new(&BASE_CONFIG.replace("http://127.0.0.1:9/api", &fake.base_url));
        World { fake, env, _rt: rt }
    }

    /// Three Erigones definitions on two VMs.
    fn seeded() -> World {
        let w = World::new();
        w.fake
            .state
            .add_definition(erigones_def(WEB, "daily", 1, "30 5 * * *"));
        w.fake
            .state
            .add_definition(erigones_def(WEB, "hourly", 2, "15 * * * *"));
        w.fake
            .state
            .add_definition(erigones_def(DB, "weekly", 1, "0 3 * * 0"));
        w
    }

    /// Run with dc1's API key in the environment: (code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.env.run_env(args, &[(KEY_ENV, KEY)]);
        assert_no_panic(&out.2);
        assert!(
            !out.1.contains(KEY) && !out.2.contains(KEY),
            "API key printed by {args:?}:\n{}\n{}",
            out.1,
            out.2
        );
        out
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "{args:?} failed\nstdout: {out}\nstderr: {err}");
        out
    }

    fn import_json(&self, extra: &[&str]) -> Value {
        let mut args = vec!["import", "erigones", "--provider", "dc1", "--json"];
        args.extend_from_slice(extra);
        let out = self.ok(&args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON ({e}): {out}"))
    }

    /// `def list --json`, keyed for easy lookup as "target/disk/name".
    fn defs(&self) -> Vec<Value> {
        self.env.list()
    }
}

fn key_of(d: &Value) -> String {
    format!("{}/{}/{}", d["target"], d["disk_id"], d["name"]).replace('"', "")
}

fn keys(defs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = defs.iter().map(key_of).collect();
    k.sort();
    k
}

fn actions(report: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = report["items"]
        .as_array()
        .expect("items array")
        .iter()
        .map(|i| (key_of(i), i["action"].as_str().unwrap_or("?").to_owned()))
        .collect();
    v.sort();
    v
}

#[test]
fn imports_every_vm_inactive_with_utc_schedules() {
    let w = World::seeded();
    let out = w.ok(&["import", "erigones", "--provider", "dc1"]);
    assert!(
        out.contains("created 3 definitions (inactive), skipped 0"),
        "{out}"
    );
    assert!(out.contains("def enable"), "no hint to activate: {out}");

    let defs = w.defs();
    assert_eq!(
        keys(&defs),
        [
            format!("{DB}/1/weekly"),
            format!("{WEB}/1/daily"),
            format!("{WEB}/2/hourly")
        ]
    );
    let hourly = defs
        .iter()
        .find(|d| d["name"] == "hourly")
        .expect("hourly imported");
    assert_eq!(hourly["provider"], "dc1");
    assert_eq!(hourly["schedule"], "15 * * * *");
    assert_eq!(hourly["timezone"], "UTC");
    assert_eq!(hourly["retention"], 12);
    assert_eq!(hourly["desc"], format!("hourly of {WEB}"));
    assert_eq!(hourly["fsfreeze"], true);
    assert_eq!(hourly["source"], "cli");
    for d in &defs {
        assert_eq!(d["active"], false, "imported active: {d}");
        assert_eq!(d["next_fire"], Value::Null, "inactive yet scheduled: {d}");
    }
    assert_eq!(w.fake.state.request_count(route::LIST_ALL_DEFINITIONS), 1);
}

#[test]
fn vm_flag_imports_only_that_vm() {
    let w = World::seeded();
    let report = w.import_json(&["--vm", WEB]);
    assert_eq!(report["created"], 2);
    assert_eq!(report["skipped"], 0);
    assert_eq!(
        keys(&w.defs()),
        [format!("{WEB}/1/daily"), format!("{WEB}/2/hourly")]
    );
    assert_eq!(w.fake.state.request_count(route::LIST_VM_DEFINITIONS), 1);
    assert_eq!(w.fake.state.request_count(route::LIST_ALL_DEFINITIONS), 0);
}

#[test]
fn reimport_skips_existing_identities_and_leaves_them_alone() {
    let w = World::seeded();
    w.ok(&["import", "erigones", "--provider", "dc1", "--vm", WEB]);
    // An operator's change to an imported definition must survive a re-import.
    w.ok(&[
        "def",
        "set",
        "daily",
        "--target",
        WEB,
        "retention=99",
        "active=true",
    ]);

    let out = w.ok(&["import", "erigones", "--provider", "dc1"]);
    assert!(
        out.contains("created 1 definition (inactive), skipped 2"),
        "{out}"
    );
    let skipped: Vec<&str> = out.lines().filter(|l| l.starts_with("skipped ")).collect();
    assert_eq!(skipped.len(), 2, "{out}");
    assert!(
        skipped
            .iter()
            .all(|l| l.contains("already defined (from the CLI)")),
        "{out}"
    );

    let defs = w.defs();
    assert_eq!(defs.len(), 3);
    let daily = defs
        .iter()
        .find(|d| d["name"] == "daily")
        .expect("daily kept");
    assert_eq!(daily["retention"], 99);
    assert_eq!(daily["active"], true);
}

#[test]
fn config_file_definitions_count_as_existing() {
    let w = World::seeded();
    w.env.write_config(&format!(
        "{}\n[[definitions]]\nname = \"daily\"\nprovider = \"dc1\"\ntarget = \"{WEB}\"\nschedule = \"0 1 * * *\"\nretention = 3\n",
        std::fs::read_to_string(&w.env.config).expect("read config")
    ));
    w.ok(&["config", "apply"]);
    let report = w.import_json(&["--vm", WEB]);
    let daily = report["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["name"] == "daily")
        .expect("daily listed");
    assert_eq!(daily["action"], "skip");
    let reason = daily["reason"].as_str().expect("a reason");
    assert!(
        reason.contains("already defined") && reason.contains("config.toml"),
        "{reason}"
    );
}

#[test]
fn activate_makes_them_active_and_warns_about_erigones_twins() {
    let w = World::seeded();
    let out = w.ok(&["import", "erigones", "--provider", "dc1", "--activate"]);
    assert!(out.contains("created 3 definitions (active)"), "{out}");
    assert!(
        out.contains("warning: 3 of them are also active inside Erigones"),
        "{out}"
    );
    for d in w.defs() {
        assert_eq!(d["active"], true, "{d}");
        assert!(d["next_fire"].is_string(), "active but no next fire: {d}");
    }
}

#[test]
fn schedules_the_parser_refuses_are_skipped_with_the_parse_error() {
    let w = World::seeded();
    w.fake
        .state
        .add_definition(erigones_def(DB, "broken", 1, "61 3 * * *"));
    let report = w.import_json(&[]);
    assert_eq!(report["created"], 3);
    assert_eq!(report["skipped"], 1);
    let broken = report["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["name"] == "broken")
        .expect("broken listed");
    assert_eq!(broken["action"], "skip");
    let reason = broken["reason"].as_str().expect("a reason");
    assert!(
        reason.starts_with("schedule: '61 3 * * *'") && reason.contains("61"),
        "{reason}"
    );
    assert!(!keys(&w.defs()).contains(&format!("{DB}/1/broken")));
}

#[test]
fn a_retention_snapsched_refuses_skips_that_definition_alone() {
    let w = World::seeded();
    let mut negative = erigones_def(DB, "minus", 1, "0 4 * * *");
    negative.retention = -1;
    w.fake.state.add_definition(negative);
    let mut huge = erigones_def(WEB, "huge", 1, "0 4 * * *");
    huge.retention = 1 << 40;
    w.fake.state.add_definition(huge);
    let report = w.import_json(&[]);
    assert_eq!(report["created"], 3, "{report}");
    assert_eq!(report["skipped"], 2, "{report}");
    for (name, value) in [("minus", "-1"), ("huge", "1099511627776")] {
        let item = report["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("{name} listed: {report}"));
        assert_eq!(item["action"], "skip");
        let reason = item["reason"].as_str().expect("a reason");
        assert!(
            reason.contains("retention") && reason.contains(value),
            "{reason}"
        );
    }
    assert_eq!(keys(&w.defs()).len(), 3);
}

#[test]
fn dry_run_writes_nothing() {
    let w = World::seeded();
    let report = w.import_json(&["--dry-run"]);
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["created"], 3);
    assert_eq!(
        actions(&report),
        [
            (format!("{DB}/1/weekly"), "create".to_owned()),
            (format!("{WEB}/1/daily"), "create".to_owned()),
            (format!("{WEB}/2/hourly"), "create".to_owned()),
        ]
    );
    assert!(
        !w.env.db().exists(),
        "a dry run created the database {}",
        w.env.db().display()
    );
    let (code, _, err) = w.env.run(&["def", "list"]);
    assert!(code == 1 && err.contains("no snapsched store at"), "{err}");

    // With a database in place, a dry run reports skips and still writes nothing.
    w.ok(&["import", "erigones", "--provider", "dc1", "--vm", DB]);
    let out = w.ok(&["import", "erigones", "--provider", "dc1", "--dry-run"]);
    assert!(
        out.contains("would create 2 definitions (inactive), would skip 1")
            && out.contains("dry run, nothing written"),
        "{out}"
    );
    assert_eq!(keys(&w.defs()), [format!("{DB}/1/weekly")]);
}

#[test]
fn a_provider_that_is_not_erigones_is_a_usage_error() {
    let w = World::seeded();
    let (code, _, err) = w.run(&["import", "erigones", "--provider", "do"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("provider 'do' is of kind digitalocean") && err.contains("kind erigones"),
        "{err}"
    );

    let (code, _, err) = w.run(&["import", "erigones", "--provider", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("provider 'nope' is not configured") && err.contains("dc1 (erigones)"),
        "{err}"
    );
    assert_eq!(w.fake.state.total_requests(), 0);
}

#[test]
fn a_bad_vm_hostname_is_a_usage_error() {
    let w = World::seeded();
    let (code, _, err) = w.run(&["import", "erigones", "--provider", "dc1", "--vm", "web 01"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--vm") && err.contains("web 01"), "{err}");
    assert_eq!(w.fake.state.total_requests(), 0);
}

#[test]
fn a_wrong_api_key_fails_with_erigones_message_and_no_key() {
    let w = World::seeded();
    let wrong = "wrong-key-4e2c-must-not-print";
    let (code, out, err) = w.env.run_env(
        &["import", "erigones", "--provider", "dc1"],
        &[(KEY_ENV, wrong)],
    );
    assert_no_panic(&err);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(err.contains("Invalid API key"), "{err}");
    assert!(err.contains("dc1"), "{err}");
    for secret in [wrong, KEY] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "key printed:\n{out}\n{err}"
        );
    }
    assert!(!w.env.db().exists() || w.defs().is_empty());
}

#[test]
fn an_unknown_vm_fails_with_erigones_message() {
    let w = World::seeded();
    let (code, _, err) = w.run(&[
        "import",
        "erigones",
        "--provider",
        "dc1",
        "--vm",
        "ghost.example.com",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("ghost.example.com") && err.contains("VM not found"),
        "{err}"
    );
}

#[test]
fn an_unreachable_api_fails_with_exit_1() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port();
    let env = TestEnv::new(&BASE_CONFIG.replace(
        "http://127.0.0.1:9/api",
        &format!("http://127.0.0.1:{port}/api"),
    ));
    let (code, out, err) = env.run_env(
        &["import", "erigones", "--provider", "dc1"],
        &[(KEY_ENV, KEY)],
    );
    assert_no_panic(&err);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(err.contains("could not connect"), "{err}");
    assert!(!err.contains(KEY) && !out.contains(KEY));
}

#[test]
fn nothing_listed_is_a_quiet_success() {
    let w = World::new();
    let out = w.ok(&["import", "erigones", "--provider", "dc1"]);
    assert!(
        out.contains("created 0 definitions (inactive), skipped 0, of 0 listed"),
        "{out}"
    );
    assert!(w.defs().is_empty());
}

/// The store half of the import: one transaction, existing rows untouched.
mod store_batch {
    use chrono::Utc;
    use snapsched::domain::definition::{DefinitionSpec, Source};
    use snapsched::store::Store;

    use crate::support::fixtures;

    fn spec(name: &str, retention: u32) -> DefinitionSpec {
        fixtures::spec("dc1", super::WEB, name)
            .schedule("30 5 * * *")
            .timezone("UTC")
            .retention(retention)
            .active(false)
            .build()
    }

    async fn store_with_daily() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = crate::support::db::open(&dir.path().join("s.db")).await;
        store
            .insert_definition(&spec("daily", 5), Source::Cli, None, Utc::now())
            .await
            .expect("seed daily");
        (dir, store)
    }

    async fn names(store: &Store) -> Vec<(String, u32)> {
        store
            .list_definitions()
            .await
            .expect("list")
            .into_iter()
            .map(|d| (d.spec.identity.name, d.spec.retention))
            .collect()
    }

    #[tokio::test]
    async fn existing_identities_are_reported_and_left_unchanged() {
        let (_dir, store) = store_with_daily().await;
        let inserted = store
            .insert_new_definitions(
                &[spec("daily", 30), spec("weekly", 12)],
                Source::Cli,
                Utc::now(),
            )
            .await
            .expect("batch insert");
        assert_eq!(inserted, [false, true]);
        assert_eq!(
            names(&store).await,
            [("daily".to_owned(), 5), ("weekly".to_owned(), 12)]
        );
    }

    #[tokio::test]
    async fn a_failing_row_rolls_back_the_whole_batch() {
        let (_dir, store) = store_with_daily().await;
        // Beyond the table's CHECK: the third row fails after two were written.
        let result = store
            .insert_new_definitions(
                &[
                    spec("hourly", 24),
                    spec("daily", 30),
                    DefinitionSpec {
                        retention: 70_000,
                        ..spec("monthly", 7)
                    },
                ],
                Source::Cli,
                Utc::now(),
            )
            .await;
        assert!(result.is_err(), "out-of-range row accepted: {result:?}");
        assert_eq!(names(&store).await, [("daily".to_owned(), 5)]);
    }
}
