//! Config files in a cluster: two nodes whose files differ, on one store,
//! never flap definitions back and forth. A daemon applies its file only
//! when it differs from the applied version and is newer; `config apply`
//! always applies; a file that differs but is older is drift, which
//! `status` reports from the store.

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use snapsched::config::{self, Overrides};
use snapsched::store::{ApplyMode, ConfigOutcome};

use crate::support::{db, TestEnv, BASE_CONFIG};

/// Node A's config file: its own database and the definition `only_a`.
/// Node B's: the same database and the definition `only_b`.
fn two_nodes() -> (TestEnv, TestEnv) {
    let a = TestEnv::base_with(&def_toml("only_a", 1));
    let b = TestEnv::base();
    let shared = BASE_CONFIG.replace(
        "database = \"snapsched.db\"",
        &format!("database = \"{}\"", db::database_setting(&a.db())),
    );
    b.write_config(&format!("{shared}\n{}", def_toml("only_b", 2)));
    (a, b)
}

fn def_toml(name: &str, droplet: u32) -> String {
    format!(
        "[[definitions]]\nname = \"{name}\"\nprovider = \"do\"\ntarget = \"droplet:{droplet}\"\nschedule = \"0 3 * * *\"\nretention = 2\n"
    )
}

/// Set the file's modification time `secs` after a fixed instant.
fn set_mtime(path: &Path, secs: u64) {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000 + secs);
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(at))
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", path.display()));
}

/// What a daemon does on start and SIGHUP with `env`'s file.
async fn daemon_reconcile(env: &TestEnv) -> ConfigOutcome {
    let cfg = config::load(&env.config, &Overrides::default()).expect("config loads");
    let store = snapsched::wiring::open_store(&cfg)
        .await
        .expect("store opens");
    let outcome = snapsched::wiring::apply_config(&cfg, &store, ApplyMode::IfNewer)
        .await
        .expect("reconcile");
    store.close().await;
    outcome
}

fn names(env: &TestEnv) -> Vec<String> {
    env.list()
        .iter()
        .map(|d| d["name"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// `status --json`'s drift flag (the same on every row) and whether the
/// table carries the drift line.
fn drift(env: &TestEnv) -> (bool, bool) {
    let json = env.json(&["status"]);
    let rows = json.as_array().expect("status is an array");
    let flags: Vec<&Value> = rows.iter().map(|r| &r["config_drift"]).collect();
    let first = flags
        .first()
        .and_then(|v| v.as_bool())
        .expect("config_drift");
    assert!(flags.iter().all(|f| f.as_bool() == Some(first)), "{json}");
    let table = env.ok(&["status"]);
    (first, table.contains("config drift:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differing_config_files_on_one_store_never_flap() {
    let (a, b) = two_nodes();
    set_mtime(&a.config, 100);
    set_mtime(&b.config, 50);
    let outcome = daemon_reconcile(&a).await;
    assert!(
        matches!(outcome, ConfigOutcome::Applied { .. }),
        "{outcome:?}"
    );
    assert_eq!(names(&a), ["only_a"]);

    // B differs and is older: not applied, drift reported on B only.
    let outcome = daemon_reconcile(&b).await;
    let ConfigOutcome::Drift { applied } = outcome else {
        panic!("an older file was applied: {outcome:?}");
    };
    assert_eq!(applied.source_path, a.config.to_string_lossy());
    assert_eq!(names(&b), ["only_a"]);
    let (a_ref, b_ref) = (&a, &b);
    let (b_drift, a_drift) = tokio::task::block_in_place(|| (drift(b_ref), drift(a_ref)));
    assert_eq!(b_drift, (true, true), "B's file is not the applied one");
    assert_eq!(a_drift, (false, false), "A's file is the applied one");

    // B touched newer: applies on its next reconcile.
    set_mtime(&b.config, 200);
    let outcome = daemon_reconcile(&b).await;
    assert!(
        matches!(
            outcome,
            ConfigOutcome::Applied {
                replaced: Some(_),
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(names(&a), ["only_b"]);

    // A reconciles again, its file older now: no change.
    let outcome = daemon_reconcile(&a).await;
    assert!(
        matches!(outcome, ConfigOutcome::Drift { .. }),
        "flapped back: {outcome:?}"
    );
    assert_eq!(names(&a), ["only_b"]);
    let a_drift = tokio::task::block_in_place(|| drift(a_ref));
    assert_eq!(a_drift, (true, true));

    // An explicit apply with A's file wins.
    a.ok(&["config", "apply"]);
    assert_eq!(names(&b), ["only_a"]);
    let (a_drift, b_drift) = tokio::task::block_in_place(|| (drift(a_ref), drift(b_ref)));
    assert_eq!((a_drift, b_drift), ((false, false), (true, true)));
    // And a daemon restart of B (older than the record now) leaves it.
    let outcome = daemon_reconcile(&b).await;
    assert!(
        matches!(outcome, ConfigOutcome::Drift { .. }),
        "{outcome:?}"
    );
    assert_eq!(names(&b), ["only_a"]);
}
