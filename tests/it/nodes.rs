//! `snapsched nodes` and the node column of `status`, through the real
//! binary, on nodes registered through the store API as daemons and CLI
//! runs register themselves.

use chrono::Utc;
use serde_json::Value;
use snapsched::domain::definition::Identity;
use snapsched::domain::{Claim, NodeInfo, NodeRole, Trigger};
use snapsched::store::Store;

use crate::support::fake::add_web;
use crate::support::process::assert_no_panic;
use crate::support::{db, TestEnv};

const A: &str = "aaaa1111-0000-4000-8000-000000000001";
const B: &str = "bbbb2222-0000-4000-8000-000000000002";
const C: &str = "cccc3333-0000-4000-8000-000000000003";

fn info(id: &str, hostname: &str, role: NodeRole) -> NodeInfo {
    NodeInfo {
        id: id.to_owned(),
        hostname: hostname.to_owned(),
        pid: 4242,
        version: "9.8.7".to_owned(),
        role,
    }
}

fn web(target: &str) -> Identity {
    Identity {
        provider: "fake".to_owned(),
        target: target.to_owned(),
        disk_id: 1,
        name: "web".to_owned(),
    }
}

/// Two definitions (`web` on vm1 and vm2) and three nodes: daemon A on
/// `web01` holding a run of vm1's `web`, CLI node B on `web02`, and C on
/// `web03`, which left.
async fn three_nodes() -> (TestEnv, Store) {
    let env = TestEnv::base();
    add_web(&env, "fake", "vm1");
    add_web(&env, "fake", "vm2");
    let store = db::open(&env.db()).await;
    let now = Utc::now();
    for (id, host, role) in [
        (A, "web01", NodeRole::Daemon),
        (B, "web02", NodeRole::Cli),
        (C, "web03", NodeRole::Daemon),
    ] {
        store
            .register_node(&info(id, host, role), now)
            .await
            .expect("register");
    }
    store.leave_node(C).await.expect("leave");
    store.set_node_id(Some(A.into()));
    let slot = now - chrono::Duration::minutes(1);
    match store
        .claim_run(&web("vm1"), slot, Trigger::Schedule, now)
        .await
        .expect("claim")
    {
        Claim::Claimed(_) => {}
        other => panic!("not claimed: {other:?}"),
    }
    (env, store)
}

fn by_id<'a>(nodes: &'a Value, id: &str) -> &'a Value {
    nodes
        .as_array()
        .and_then(|a| a.iter().find(|n| n["id"] == id))
        .unwrap_or_else(|| panic!("node {id} not listed: {nodes}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_lists_every_node_with_heartbeat_age_runs_held_and_stale_ones_marked() {
    let (env, store) = three_nodes().await;
    db::age_heartbeat(&store, &env.db(), B, 120).await;
    let env_ref = &env;
    let nodes = tokio::task::block_in_place(|| env_ref.json(&["nodes"]));
    assert_eq!(nodes.as_array().map(Vec::len), Some(3), "{nodes}");

    let a = by_id(&nodes, A);
    let fields: Vec<&str> = a
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = [
        "id",
        "hostname",
        "pid",
        "version",
        "role",
        "state",
        "started_at",
        "heartbeat_age_seconds",
        "runs_held",
        "stale",
    ];
    let mut got = fields.clone();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want, "{a}");
    assert_eq!(
        (&a["hostname"], &a["pid"], &a["version"], &a["role"]),
        (
            &Value::from("web01"),
            &Value::from(4242),
            &Value::from("9.8.7"),
            &Value::from("daemon")
        ),
        "{a}"
    );
    assert_eq!((&a["state"], &a["stale"]), (&"live".into(), &false.into()));
    assert_eq!(a["runs_held"], 1, "{a}");
    let age = a["heartbeat_age_seconds"].as_f64().expect("an age");
    assert!(
        (0.0..60.0).contains(&age),
        "a fresh heartbeat is {age} s old"
    );

    let b = by_id(&nodes, B);
    assert_eq!((&b["role"], &b["runs_held"]), (&"cli".into(), &0.into()));
    assert_eq!(
        (&b["state"], &b["stale"]),
        (&"live".into(), &true.into()),
        "a heartbeat older than the lease: {b}"
    );
    assert!(b["heartbeat_age_seconds"].as_f64() >= Some(120.0), "{b}");
    let c = by_id(&nodes, C);
    assert_eq!(
        (&c["state"], &c["stale"]),
        (&"stopped".into(), &false.into())
    );

    let table = tokio::task::block_in_place(|| env_ref.ok(&["nodes"]));
    let line = |host: &str| -> Vec<String> {
        table
            .lines()
            .find(|l| l.contains(host))
            .unwrap_or_else(|| panic!("no line for {host}:\n{table}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "Node",
            "Host",
            "PID",
            "Role",
            "Version",
            "State",
            "Started",
            "Heartbeat",
            "Runs"
        ],
        "{table}"
    );
    let a = line("web01");
    assert_eq!(
        a[..6],
        ["aaaa1111", "web01", "4242", "daemon", "9.8.7", "live"]
    );
    assert!(a[7].ends_with('s') && a[8] == "ago", "heartbeat age: {a:?}");
    assert_eq!(a.last().map(String::as_str), Some("1"), "runs held: {a:?}");
    let b = line("web02");
    assert_eq!(b[5], "stale", "{table}");
    assert!(
        b[7..b.len() - 1].join(" ").starts_with("2m"),
        "two minutes ago: {b:?}"
    );
    assert_eq!(line("web03")[5], "stopped", "{table}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_the_node_running_each_run_in_flight() {
    let (env, store) = three_nodes().await;
    let env_ref = &env;
    let status = tokio::task::block_in_place(|| env_ref.json(&["status"]));
    let of = |target: &str| -> &Value {
        status
            .as_array()
            .and_then(|a| a.iter().find(|s| s["target"] == target))
            .unwrap_or_else(|| panic!("no status for {target}: {status}"))
    };
    assert_eq!(
        of("vm1")["node"],
        serde_json::json!({ "id": A, "hostname": "web01" }),
        "{status}"
    );
    assert!(of("vm2")["node"].is_null(), "nothing in flight: {status}");

    let table = tokio::task::block_in_place(|| env_ref.ok(&["status"]));
    assert!(
        table.lines().next().is_some_and(|h| h.contains("Node")),
        "{table}"
    );
    let vm1 = table
        .lines()
        .find(|l| l.contains("vm1"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(vm1.contains("web01 (aaaa1111)"), "{table}");
    store.close().await;
}

#[test]
fn status_without_runs_in_flight_has_no_node_column() {
    let env = TestEnv::base();
    add_web(&env, "fake", "vm1");
    let table = env.ok(&["status"]);
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("Definition") && !header.contains("Node"),
        "{table}"
    );
    assert!(env.json(&["status"])[0]["node"].is_null());
}

#[test]
fn nodes_on_a_store_that_cannot_be_opened_is_a_runtime_error() {
    let env = TestEnv::base();
    let not_a_db = env.write("garbage.db", &"not a database\n".repeat(200), 0o600);
    let (code, out, err) = env.run(&["nodes", "--database", &not_a_db.display().to_string()]);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert_no_panic(&err);
    assert!(err.contains("not an SQLite database"), "{err}");
    assert!(out.is_empty(), "{out}");
}

#[test]
fn nodes_on_a_fresh_store_is_an_empty_list() {
    let env = TestEnv::base();
    env.ok(&["config", "apply"]);
    assert_eq!(env.json(&["nodes"]), serde_json::json!([]));
    let table = env.ok(&["nodes"]);
    assert!(table.starts_with("Node"), "{table}");
}
