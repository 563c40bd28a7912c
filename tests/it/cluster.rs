//! Several daemons on one PostgreSQL, end to end: real `snapsched daemon`
//! processes sharing a schema, the fake DigitalOcean API on loopback, and
//! the faults a cluster must survive.
//!
//! - [`three_nodes_killed_and_paused_at_random_neither_lose_nor_double_a_slot`]:
//!   nodes are SIGKILLed and restarted, SIGSTOPped past their lease and
//!   continued, at seeded random moments; failover (kill → another node
//!   takes the dead node's runs) is measured.
//! - [`a_store_outage_during_runs_loses_and_doubles_nothing`]: the daemons
//!   reach PostgreSQL through a proxy that is cut and restored during runs.
//!
//! What must hold afterwards, whatever the faults interrupted:
//! - no snapshot name (one per slot) exists twice at the provider;
//! - every snapshot the provider holds is recorded, with a succeeded run;
//! - every run reached a final state, and a succeeded run's snapshot exists;
//! - every slot of every definition in the checked window has a run, or is
//!   covered by a `missed` record (which counts the slots it stands for) or
//!   a `skipped` one, each with its reason;
//! - the provider never answered 429: the request budget held across nodes.
//!
//! Both tests need PostgreSQL and are skipped, saying so, on the SQLite pass
//! of the suite; the PostgreSQL pass always runs them. The seed is printed;
//! `SNAPSCHED_CLUSTER_SEED` replays a run, `SNAPSCHED_CLUSTER_SECS` sets the
//! length of the chaos phase (default 45).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use snapsched::domain::definition::{RawDefinition, Source};
use snapsched::domain::{Definition, ProviderKind, Run, RunState, Trigger};
use snapsched::store::runs::slot_text;
use snapsched::store::{Backend, Store};
use snapsched_fake_api::digitalocean::{
    FakeConfig, FakeDigitalOcean, FakeHandle, Fault, FaultRule, Resource,
};
use uuid::Uuid;

use crate::support::cluster::{Cluster, STARTED};
use crate::support::db;
use crate::support::proxy::Proxy;

const TOKEN: &str = "cluster-test-token";
const TOKEN_VAR: &str = "SNAPSCHED_TEST_DO_TOKEN";

/// The lease every node holds; a node silent for longer loses its runs.
const LEASE_TTL: Duration = Duration::from_secs(3);
/// Write `lease_ttl` into `[daemon]`. The key arrives with node leases; a
/// build without it refuses the config as an unknown key.
const LEASE_TTL_KEY: bool = true;
/// Failover must take at most this after a kill.
const FAILOVER_BOUND: Duration = Duration::from_secs(LEASE_TTL.as_secs() + 5);

/// Requests per minute the token allows, at the fake and in every node's
/// config. Three nodes together ask for about 1,300 a minute at full speed
/// (measured), each node alone for well under 900: a budget kept per
/// process (each node allowing itself all of it) draws 429s, a shared one
/// slows the runs down (overlapping slots are then recorded skipped).
/// `SNAPSCHED_CLUSTER_BUDGET` overrides it.
const BUDGET_PER_MINUTE: u32 = 900;
/// The fake allows this many requests a minute above the nodes' budget
/// for every pause so far: a node SIGSTOPped after the budget granted a
/// request and before the request left sends it late, into a later minute
/// at the server. That is at most one request per run the paused node had
/// in flight (`max_concurrent_runs`), and one node is paused at a time, but
/// several pauses fall within one minute of the chaos window, each adding
/// its late requests to that minute.
const HELD_ACROSS_A_PAUSE: u32 = 8;

fn volume(n: u128) -> Uuid {
    Uuid::from_u128(0xc105_7e40_0000_4000_8000_0000_0000_0000 + n)
}

/// A definition to create: name, target, schedule.
struct Def {
    name: String,
    target: String,
    schedule: &'static str,
}

fn droplet_defs(ids: impl IntoIterator<Item = u64>, schedule: &'static str) -> Vec<Def> {
    ids.into_iter()
        .map(|id| Def {
            name: format!("d{id}"),
            target: format!("droplet:{id}"),
            schedule,
        })
        .collect()
}

fn volume_defs(ns: impl IntoIterator<Item = u128>, schedule: &'static str) -> Vec<Def> {
    ns.into_iter()
        .map(|n| Def {
            name: format!("v{n}"),
            target: format!("volume:{}", volume(n)),
            schedule,
        })
        .collect()
}

/// Every node's config: `database` is the shared store's setting.
fn node_config(api_url: &str, database: &str, per_minute: u32) -> String {
    let lease = if LEASE_TTL_KEY {
        format!("lease_ttl = \"{}s\"\n", LEASE_TTL.as_secs())
    } else {
        String::new()
    };
    format!(
        r#"
[daemon]
database = "{database}"
timezone = "UTC"
catch_up_deadline = "10s"
shutdown_grace = "2s"
run_timeout = "1m"
max_concurrent_runs = 8
log_level = "debug"
{lease}
[providers.do]
kind = "digitalocean"
token_env = "{TOKEN_VAR}"
api_url = "{api_url}"
poll_interval = "250ms"
poll_max_interval = "500ms"
action_timeout = "30s"
requests_per_minute = {per_minute}
requests_per_hour = 1000000
"#
    )
}

/// The fake DigitalOcean API in real time, droplet actions taking a second,
/// creates answering late (the provider has the request, the store has no
/// operation id yet), the budget `per_minute`.
async fn start_fake(defs: &[Def], per_minute: u32) -> FakeHandle {
    let fake = FakeDigitalOcean::start(FakeConfig {
        token: TOKEN.to_owned(),
        action_duration: Duration::from_secs(1),
        real_time: true,
        per_minute,
        per_hour: 1_000_000,
        check_contract: true,
    })
    .await
    .expect("start fake DigitalOcean");
    for d in defs {
        match d.target.split_once(':') {
            Some(("droplet", id)) => fake.add_droplet(id.parse().expect("id"), &d.name),
            Some(("volume", id)) => fake.add_volume(id.parse().expect("uuid"), &d.name),
            _ => panic!("target {}", d.target),
        }
    }
    for route in [
        "POST /v2/droplets/{droplet_id}/actions",
        "POST /v2/volumes/{volume_id}/snapshots",
    ] {
        fake.inject(FaultRule::new(
            Some(route),
            Fault::SlowAnswer(Duration::from_millis(400)),
            u32::MAX,
        ));
    }
    fake
}

/// Create the definitions in the shared store, as `def add` would.
async fn add_definitions(store: &Store, defs: &[Def]) {
    for d in defs {
        let spec = RawDefinition {
            name: d.name.clone(),
            provider: "do".into(),
            target: d.target.clone(),
            schedule: Some(d.schedule.into()),
            retention: Some(0),
            ..RawDefinition::default()
        }
        .validate(ProviderKind::DigitalOcean)
        .unwrap_or_else(|e| panic!("definition {}: {e:?}", d.name));
        store
            .insert_definition(&spec, Source::Cli, None, Utc::now())
            .await
            .expect("insert definition");
    }
}

/// Deactivate every definition, so no new slot fires and what runs can end,
/// and wait until every running node has applied that: until then a node
/// may still claim a slot that fell due before it saw the change, and a
/// settle check would race that claim.
async fn disable_all(store: &Store, cluster: &mut Cluster) {
    for def in store.list_definitions().await.expect("list") {
        let mut spec = def.spec.clone();
        spec.active = false;
        store
            .update_definition(&spec, Utc::now())
            .await
            .expect("disable definition");
    }
    for i in 0..cluster.nodes.len() {
        if cluster.nodes[i].pid().is_some() {
            cluster.wait_for_any_log(
                i,
                &[
                    "definitions changed in the store: 0 scheduled",
                    "scheduler started: 0 definitions",
                ],
                Duration::from_secs(30),
            );
        }
    }
}

/// Scheduled runs (not prune runs), oldest first.
async fn runs(store: &Store) -> Vec<Run> {
    let mut all = store.history(None, u32::MAX).await.expect("read runs");
    all.reverse();
    all.retain(|r| r.trigger != Trigger::Prune);
    all
}

fn ours(fake: &FakeHandle, defs: &[Def]) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for d in defs {
        let of = match d.target.split_once(':') {
            Some(("droplet", id)) => Resource::Droplet(id.parse().expect("id")),
            Some(("volume", id)) => Resource::Volume(id.parse().expect("uuid")),
            _ => unreachable!(),
        };
        all.extend(fake.snapshots_of(of));
    }
    all.into_iter().map(|s| (s.name, s.id)).collect()
}

/// One line per run, for failure messages.
fn run_lines(runs: &[Run]) -> String {
    runs.iter()
        .map(|r| {
            format!(
                "{} {} {} {} owner={:?}/{:?} epoch={} {}\n",
                r.identity.name,
                slot_text(r.slot),
                r.trigger.as_str(),
                r.state.as_str(),
                r.owner_node,
                r.owner_pid,
                r.lease_epoch,
                r.error.as_deref().unwrap_or("")
            )
        })
        .collect()
}

/// Poll until every run is final and the provider has no action running.
async fn wait_until_settled(
    store: &Store,
    fake: &FakeHandle,
    within: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let all = runs(store).await;
        if all.iter().all(|r| r.state.is_final()) && fake.actions_in_progress() == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let open: Vec<Run> = all.into_iter().filter(|r| !r.state.is_final()).collect();
            let nodes: String = store
                .nodes()
                .await
                .expect("read nodes")
                .iter()
                .map(|n| {
                    format!(
                        "node {} pid {} {} heartbeat {} ms ago, {} runs held\n",
                        n.id,
                        n.pid,
                        n.state.as_str(),
                        n.heartbeat_age_ms,
                        n.runs_held
                    )
                })
                .collect();
            return Err(format!(
                "runs still unfinished {within:?} after the faults ended:\n{}nodes:\n{nodes}",
                run_lines(&open)
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The slots of `def` in (`from`, `to`].
fn slots(def: &Definition, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let zone = def.spec.timezone.unwrap_or(chrono_tz::UTC);
    let mut out = Vec::new();
    let mut at = from;
    while let Some(next) = def.spec.schedule.next_after(at, zone) {
        if next > to {
            break;
        }
        out.push(next);
        at = next;
    }
    out
}

/// Check the invariants of the module header; returns every violation.
async fn check_invariants(
    store: &Store,
    fake: &FakeHandle,
    defs: &[Def],
    window: (DateTime<Utc>, DateTime<Utc>),
) -> Vec<String> {
    let mut failures = Vec::new();
    let runs = runs(store).await;
    let recorded: BTreeMap<String, (Option<String>, String)> = store
        .snapshot_records(None)
        .await
        .expect("read snapshots")
        .into_iter()
        .map(|r| (r.snapshot, (r.remote_id, r.state.as_str().to_owned())))
        .collect();
    let at_provider = ours(fake, defs);

    let mut names = BTreeSet::new();
    for (name, id) in &at_provider {
        if !names.insert(name.clone()) {
            failures.push(format!(
                "snapshot {name} exists twice at the provider ({id})"
            ));
        }
    }
    let succeeded: BTreeMap<&str, &Run> = runs
        .iter()
        .filter(|r| r.state == RunState::Succeeded)
        .filter_map(|r| r.snapshot_name.as_deref().map(|n| (n, r)))
        .collect();
    for (name, id) in &at_provider {
        let rec = recorded.get(name);
        if !matches!(rec, Some((Some(rid), state)) if rid == id && state == "present") {
            failures.push(format!(
                "snapshot {name} ({id}) at the provider is recorded as {rec:?}"
            ));
        }
        if !succeeded.contains_key(name.as_str()) {
            failures.push(format!("snapshot {name} has no succeeded run"));
        }
    }
    for r in &runs {
        let what = format!("run {} {}", r.identity.name, slot_text(r.slot));
        if !r.state.is_final() {
            failures.push(format!("{what} left {}", r.state));
        }
        if r.state == RunState::Succeeded {
            let name = r.snapshot_name.as_deref().unwrap_or_default();
            if !at_provider
                .iter()
                .any(|(n, id)| n == name && Some(id) == r.snapshot_id.as_ref())
            {
                failures.push(format!(
                    "{what} succeeded with {name} but the provider does not have it"
                ));
            }
        }
        if matches!(r.state, RunState::Missed | RunState::Skipped)
            && r.error.as_deref().unwrap_or_default().is_empty()
        {
            failures.push(format!("{what} is {} without a reason", r.state));
        }
    }

    // Every slot in the window ran or is accounted for.
    let (from, to) = window;
    for def in store.list_definitions().await.expect("list") {
        let name = &def.spec.identity.name;
        let mine: Vec<&Run> = runs.iter().filter(|r| &r.identity.name == name).collect();
        let mut covered: BTreeSet<DateTime<Utc>> = mine.iter().map(|r| r.slot).collect();
        for m in mine.iter().filter(|r| r.state == RunState::Missed) {
            // A missed record stands for `missed_count` slots ending at its
            // own; the schedules here fire at least once a minute.
            let count = m.missed_count.unwrap_or(1);
            let since = m.slot - chrono::Duration::minutes(i64::from(count) + 1);
            let earlier = slots(&def, since, m.slot);
            covered.extend(earlier.iter().rev().take(count as usize));
        }
        let lost: Vec<String> = slots(&def, from, to)
            .into_iter()
            .filter(|s| !covered.contains(s))
            .map(slot_text)
            .collect();
        if !lost.is_empty() {
            failures.push(format!(
                "{name}: {} slots neither ran nor were recorded missed or skipped: {lost:?}",
                lost.len()
            ));
        }
    }

    let too_many = fake.responses(429);
    if too_many > 0 {
        failures.push(format!(
            "the provider answered 429 {too_many} times: the nodes together exceeded \
             the budget of {} requests per minute (with {HELD_ACROSS_A_PAUSE} more a \
             minute for each pause, for requests a paused node sends late)",
            budget()
        ));
    }
    let violations = fake.contract_violations();
    if !violations.is_empty() {
        failures.push(format!("contract violations: {violations:?}"));
    }
    if succeeded.is_empty() {
        failures.push("no run succeeded: the test exercised nothing".into());
    }
    let states = runs
        .iter()
        .fold(BTreeMap::<&str, usize>::new(), |mut m, r| {
            *m.entry(r.state.as_str()).or_default() += 1;
            m
        });
    eprintln!(
        "cluster: {} runs {states:?}, {} snapshots at the provider, {} requests, window {} .. {}",
        runs.len(),
        at_provider.len(),
        fake.requests_total(),
        from.to_rfc3339(),
        to.to_rfc3339()
    );
    if !failures.is_empty() {
        failures.push(format!("runs:\n{}", run_lines(&runs)));
    }
    failures
}

fn skip_on_sqlite(test: &str) -> bool {
    if matches!(db::backend(), Backend::Sqlite) {
        eprintln!(
            "{test}: skipped on SQLite: several daemons share PostgreSQL only \
             (the PostgreSQL pass, SNAPSCHED_TEST_BACKEND=postgres, runs it)"
        );
        return true;
    }
    false
}

fn seed() -> u64 {
    let seed = std::env::var("SNAPSCHED_CLUSTER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("cluster: seed {seed} (SNAPSCHED_CLUSTER_SEED={seed} replays)");
    seed
}

/// Runs not final and held by the process `pid`: their ids.
async fn held_by(store: &Store, pid: u32) -> Vec<(i64, Option<String>, i64)> {
    store
        .unfinished_runs()
        .await
        .expect("read runs")
        .into_iter()
        .filter(|r| r.owner_pid == Some(pid))
        .map(|r| (r.id, r.owner_node, r.lease_epoch))
        .collect()
}

/// How long after `killed` every run the dead process held was taken over
/// by another node (new owner or epoch) or ended; `None` if not within
/// `within`.
async fn failover(
    store: &Store,
    held: &[(i64, Option<String>, i64)],
    pid: u32,
    killed: Instant,
    within: Duration,
) -> Option<Duration> {
    loop {
        let mut all_moved = true;
        for (id, node, epoch) in held {
            let run = store
                .get_run(*id)
                .await
                .expect("read run")
                .expect("run exists");
            let moved = run.state.is_final()
                || run.owner_pid != Some(pid)
                || run.owner_node != *node
                || run.lease_epoch != *epoch;
            all_moved &= moved;
        }
        if all_moved {
            return Some(killed.elapsed());
        }
        if killed.elapsed() > within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Wait until every one of the `n` definitions has a row for a slot after
/// `t`: the nodes are past the window, every slot in it was handled.
async fn wait_past(store: &Store, n: usize, t: DateTime<Utc>, within: Duration, cluster: &Cluster) {
    let deadline = Instant::now() + within;
    loop {
        let past: BTreeSet<String> = runs(store)
            .await
            .into_iter()
            .filter(|r| r.slot > t)
            .map(|r| r.identity.name)
            .collect();
        if past.len() >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {past:?} of {n} definitions got past {t} within {within:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn budget() -> u32 {
    std::env::var("SNAPSCHED_CLUSTER_BUDGET")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(BUDGET_PER_MINUTE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_killed_and_paused_at_random_neither_lose_nor_double_a_slot() {
    const TEST: &str = "three_nodes_killed_and_paused_at_random";
    if skip_on_sqlite(TEST) {
        return;
    }
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let chaos_secs: u64 = std::env::var("SNAPSCHED_CLUSTER_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(45);

    let mut defs = droplet_defs(41..49, "*/2 * * * * *");
    defs.extend(volume_defs(1..5, "*/3 * * * * *"));
    let per_minute = budget();
    let fake = start_fake(&defs, per_minute).await;

    let shared = tempfile::tempdir().expect("temp dir");
    let store_path = shared.path().join("cluster.db");
    let store = db::open(&store_path).await;
    add_definitions(&store, &defs).await;
    let database = db::database_setting(&store_path);
    let config = node_config(fake.url(), &database, per_minute);
    let mut cluster = Cluster::new(3, &[(TOKEN_VAR, TOKEN)], |_| config.clone());
    for i in 0..3 {
        cluster.spawn(i);
    }
    for i in 0..3 {
        cluster.wait_for_log(i, STARTED, Duration::from_secs(30));
    }
    let window_from = Utc::now() + chrono::Duration::seconds(1);
    let chaos_end = Instant::now() + Duration::from_secs(chaos_secs);

    let mut failovers: Vec<Duration> = Vec::new();
    let mut no_failover: Vec<String> = Vec::new();
    let (mut kills, mut idle_kills, mut pauses) = (0, 0, 0);
    while Instant::now() < chaos_end {
        // The fault moments are the thing under test, not a synchronisation.
        tokio::time::sleep(Duration::from_millis(rng.random_range(1_000..4_000))).await;
        let mut i = rng.random_range(0..3);
        if rng.random_bool(0.6) {
            // Kill a node holding runs when there is one: its failover is
            // what is measured.
            let mut holding = Vec::new();
            for n in 0..3 {
                let pid = cluster.nodes[n].pid().expect("running");
                if !held_by(&store, pid).await.is_empty() {
                    holding.push(n);
                }
            }
            if !holding.is_empty() {
                i = holding[rng.random_range(0..holding.len())];
            }
            let pid = cluster.nodes[i].pid().expect("running");
            let held = held_by(&store, pid).await;
            let killed = Instant::now();
            cluster.kill(i);
            kills += 1;
            if held.is_empty() {
                idle_kills += 1;
            } else {
                let within = FAILOVER_BOUND + Duration::from_secs(5);
                match failover(&store, &held, pid, killed, within).await {
                    Some(d) => failovers.push(d),
                    None => no_failover.push(format!(
                        "kill {kills} (node {i}, pid {pid}): runs {:?} not taken over within {within:?}",
                        held.iter().map(|h| h.0).collect::<Vec<_>>()
                    )),
                }
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..2_000))).await;
            cluster.spawn(i);
            eprintln!(
                "cluster: t+{:>5.1}s kill node {i} (pid {pid}, {} runs held), restarted",
                (chaos_end - Duration::from_secs(chaos_secs))
                    .elapsed()
                    .as_secs_f64(),
                held.len()
            );
        } else {
            let pause = LEASE_TTL + Duration::from_millis(rng.random_range(1_000..3_000));
            pauses += 1;
            // Raised before the pause: the late requests arrive after it.
            fake.set_per_minute(per_minute + HELD_ACROSS_A_PAUSE * pauses);
            cluster.stop(i);
            tokio::time::sleep(pause).await;
            cluster.cont(i);
            eprintln!(
                "cluster: t+{:>5.1}s pause node {i} for {pause:?}",
                (chaos_end - Duration::from_secs(chaos_secs))
                    .elapsed()
                    .as_secs_f64()
            );
        }
    }
    let exited = cluster.exited();
    let window_to = Utc::now();
    for i in 0..3 {
        cluster.wait_for_log(i, STARTED, Duration::from_secs(30));
    }
    wait_past(
        &store,
        defs.len(),
        window_to,
        Duration::from_secs(15),
        &cluster,
    )
    .await;
    disable_all(&store, &mut cluster).await;
    let settled = wait_until_settled(&store, &fake, Duration::from_secs(45)).await;
    let still_running = cluster.exited().is_empty();
    if still_running {
        cluster.terminate_all();
    }

    let mut failures = check_invariants(&store, &fake, &defs, (window_from, window_to)).await;
    if let Err(e) = settled {
        failures.insert(0, e);
    }
    for (i, status) in exited {
        failures.insert(0, format!("node {i} exited by itself ({status})"));
    }
    failovers.sort();
    let ms = |d: &Duration| d.as_millis();
    eprintln!(
        "cluster: {kills} kills ({idle_kills} with no run in flight), {pauses} pauses; \
         failover over {} kills: min {:?} ms, median {:?} ms, max {:?} ms (bound {FAILOVER_BOUND:?})",
        failovers.len(),
        failovers.first().map(ms),
        failovers.get(failovers.len() / 2).map(ms),
        failovers.last().map(ms),
    );
    failures.extend(no_failover);
    if let Some(slow) = failovers.iter().find(|d| **d > FAILOVER_BOUND) {
        failures.push(format!(
            "failover took {slow:?}, more than lease_ttl + 5 s = {FAILOVER_BOUND:?}"
        ));
    }
    if failovers.is_empty() && kills > idle_kills {
        failures.push("no failover was measured".into());
    }
    let fenced = cluster.grep("fenced");
    eprintln!("cluster: {} log lines about fencing", fenced.len());
    assert!(
        failures.is_empty(),
        "seed {seed}: {} violations:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        cluster.logs_tail(12)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_during_runs_loses_and_doubles_nothing() {
    const TEST: &str = "a_store_outage_during_runs";
    if skip_on_sqlite(TEST) {
        return;
    }
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);

    let mut defs = droplet_defs(51..55, "*/2 * * * * *");
    defs.extend(volume_defs(11..13, "*/2 * * * * *"));
    // The budget is not under test here.
    let per_minute = 100_000;
    let fake = start_fake(&defs, per_minute).await;

    let shared = tempfile::tempdir().expect("temp dir");
    let store_path = shared.path().join("cluster.db");
    // The test reads the store directly; the daemons only through the proxy.
    let store = db::open(&store_path).await;
    add_definitions(&store, &defs).await;
    let proxy = Proxy::start(db::server_addr()).await;
    let database = db::database_setting_via(&store_path, proxy.addr());
    let config = node_config(fake.url(), &database, per_minute);
    let mut cluster = Cluster::new(2, &[(TOKEN_VAR, TOKEN)], |_| config.clone());
    for i in 0..2 {
        cluster.spawn(i);
    }
    for i in 0..2 {
        cluster.wait_for_log(i, STARTED, Duration::from_secs(30));
    }
    let window_from = Utc::now() + chrono::Duration::seconds(1);

    // The daemons must ride the outage out: a daemon that exits on a store
    // error is an engine bug, reported with its error lines; it is then
    // restarted so the other invariants are still checked.
    let mut failures = Vec::new();
    for cut in 0..2 {
        // Cut while runs are in flight: a droplet run waiting on its action.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !runs(&store)
            .await
            .iter()
            .any(|r| r.state == RunState::Waiting)
        {
            assert!(
                Instant::now() < deadline,
                "no run reached waiting\n{}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let outage = Duration::from_millis(rng.random_range(4_000..8_000));
        proxy.cut();
        tokio::time::sleep(outage).await;
        proxy.restore();
        let restored = Utc::now();
        eprintln!("store outage: cut {cut} lasted {outage:?}");
        // Progress after the outage: a slot after it succeeds.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let exited = cluster.exited();
            if !exited.is_empty() {
                for (i, status) in exited {
                    failures.push(format!(
                        "node {i} exited after store outage {cut} ({status}); its last lines:\n{}",
                        cluster.tail(i, 3)
                    ));
                }
                break;
            }
            let resumed = runs(&store)
                .await
                .iter()
                .any(|r| r.slot > restored && r.state == RunState::Succeeded);
            if resumed {
                break;
            }
            if Instant::now() > deadline {
                failures.push(format!(
                    "no slot after store outage {cut} succeeded within 20 s of the restore"
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !failures.is_empty() {
            break;
        }
    }
    let window_to = Utc::now();
    if failures.is_empty() {
        wait_past(
            &store,
            defs.len(),
            window_to,
            Duration::from_secs(15),
            &cluster,
        )
        .await;
    }
    for (i, _) in cluster.exited() {
        cluster.reap(i);
        cluster.spawn(i);
        cluster.wait_for_log(i, STARTED, Duration::from_secs(30));
    }
    disable_all(&store, &mut cluster).await;
    let settled = wait_until_settled(&store, &fake, Duration::from_secs(30)).await;
    cluster.terminate_all();
    if let Err(e) = settled {
        failures.push(e);
    }
    failures.extend(check_invariants(&store, &fake, &defs, (window_from, window_to)).await);
    assert!(
        failures.is_empty(),
        "seed {seed}: {} violations:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        cluster.logs_tail(12)
    );
}
