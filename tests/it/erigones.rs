//! The Erigones provider against the fake Erigones API, over real HTTP on
//! loopback. Task durations run on the fake's manual clock, so a 30-second
//! snapshot task costs a few milliseconds.

use std::time::Duration;

use snapsched::domain::{RemoteSnapshot, SnapshotStatus, Target};
use snapsched::provider::erigones::{Erigones, ErigonesDefinition, ErigonesSettings};
use snapsched::provider::{
    CreateOutcome, CreateRequest, ErrorClass, PollOutcome, PollPolicy, Provider, ProviderError,
};
use snapsched::secret::Secret;
use snapsched_fake_api::erigones::{
    self as fake, route, FakeDefinition, FakeErigonesConfig, FakeHandle, FakeSnapshot, Fault,
    FaultKind, TaskEnd, STATUS_LOST, TYPE_AUTO, TYPE_MANUAL,
};

const KEY: &str = "es-key-7f3a9c1e-do-not-print";
const VM: &str = "web01.example.com";

struct Env {
    fake: FakeHandle,
    provider: Erigones,
}

fn settings(base: &str, request_timeout: Duration) -> ErigonesSettings {
    ErigonesSettings {
        provider_name: "dc1".to_owned(),
        api_url: url::Url::parse(base).expect("fake base url parses"),
        api_key: Secret::new(KEY),
        poll: PollPolicy {
            initial: Duration::from_millis(2),
            max: Duration::from_millis(20),
            timeout: Duration::from_secs(2),
        },
        connect_timeout: Duration::from_secs(2),
        request_timeout,
        max_response_bytes: snapsched::provider::DEFAULT_MAX_RESPONSE_BYTES,
    }
}

async fn env_with(config: FakeErigonesConfig) -> Env {
    let fake = fake::start(FakeErigonesConfig {
        api_key: KEY.to_owned(),
        ..config
    })
    .await
    .expect("fake Erigones starts");
    fake.state.add_vm(VM, 2);
    let provider =
        Erigones::new(settings(&fake.base_url, Duration::from_secs(2))).expect("provider builds");
    Env { fake, provider }
}

async fn env() -> Env {
    env_with(FakeErigonesConfig::default()).await
}

fn vm() -> Target {
    Target::Vm(VM.to_owned())
}

fn req(disk_id: u32, name: &str) -> CreateRequest {
    CreateRequest {
        target: vm(),
        disk_id,
        name: name.to_owned(),
        note: format!(
            "snapsched: definition {}",
            name.split('-').next().unwrap_or("")
        ),
        fsfreeze: false,
        tags: Vec::new(),
        may_exist: false,
    }
}

/// Stand-in for the run engine: poll, moving the fake clock between polls.
async fn finish(env: &Env, req: &CreateRequest, outcome: CreateOutcome) -> RemoteSnapshot {
    let op = match outcome {
        CreateOutcome::Done(snap) => return snap,
        CreateOutcome::Pending(op) => op,
    };
    for _ in 0..10 {
        match env.provider.poll(req, &op).await.expect("poll succeeds") {
            PollOutcome::Done(snap) => return snap,
            PollOutcome::Pending => env.fake.state.advance(Duration::from_secs(20)),
        }
    }
    panic!("task {} still pending after 200 fake seconds", op.id);
}

async fn create(env: &Env, req: &CreateRequest) -> RemoteSnapshot {
    let outcome = env
        .provider
        .create_snapshot(req)
        .await
        .expect("create accepted");
    finish(env, req, outcome).await
}

fn names(list: &[RemoteSnapshot]) -> Vec<&str> {
    let mut n: Vec<&str> = list.iter().map(|s| s.name.as_str()).collect();
    n.sort_unstable();
    n
}

fn assert_class(err: &ProviderError, class: ErrorClass) {
    assert_eq!(err.class, class, "wrong class for: {err}");
    assert!(!err.message.contains(KEY), "API key leaked: {err}");
}

#[tokio::test]
async fn create_and_prune_cycles_on_two_disks() {
    let env = env().await;
    for cycle in 0..4u32 {
        for disk in 1..=2u32 {
            let name = format!("daily-2026010{}_00000{disk}", cycle + 1);
            let snap = create(&env, &req(disk, &name)).await;
            assert_eq!(snap.name, name);
            assert_eq!(snap.id, name);
            assert_eq!(snap.status, SnapshotStatus::Ok);
            assert_eq!(snap.note.as_deref(), Some("snapsched: definition daily"));
            env.fake.state.advance(Duration::from_secs(3600));

            // Keep the two newest of ours, like a retention of 2.
            let mut ours = env
                .provider
                .list_snapshots(&vm(), disk)
                .await
                .expect("list");
            ours.sort_by_key(|s| std::cmp::Reverse(s.created_at));
            let doomed: Vec<RemoteSnapshot> = ours.iter().skip(2).cloned().collect();
            let results = env.provider.delete_snapshots(&vm(), disk, &doomed).await;
            assert_eq!(results.len(), doomed.len());
            assert!(results.iter().all(Result::is_ok), "{results:?}");
        }
    }
    for disk in 1..=2u32 {
        let left = env
            .provider
            .list_snapshots(&vm(), disk)
            .await
            .expect("list");
        assert_eq!(
            names(&left),
            [
                format!("daily-20260103_00000{disk}"),
                format!("daily-20260104_00000{disk}")
            ]
        );
        assert_eq!(env.fake.state.snapshots(VM, disk).len(), 2);
    }
}

#[tokio::test]
async fn manual_and_foreign_snapshots_are_listed_and_never_deleted() {
    let env = env().await;
    let t0 = env.fake.state.now();
    env.fake.state.add_snapshot(
        VM,
        FakeSnapshot::manual("backup1", 1, t0 - chrono::TimeDelta::days(3)),
    );
    for h in 0..3 {
        env.fake.state.add_snapshot(
            VM,
            FakeSnapshot::auto(
                format!("hourly-2025123{h}_120000"),
                1,
                "hourly",
                t0 - chrono::TimeDelta::hours(10 - h),
            ),
        );
    }
    let first = create(&env, &req(1, "daily-20260101_000000")).await;
    env.fake.state.advance(Duration::from_secs(86_400));
    create(&env, &req(1, "daily-20260102_000000")).await;

    let list = env.provider.list_snapshots(&vm(), 1).await.expect("list");
    assert_eq!(
        names(&list),
        [
            "backup1",
            "daily-20260101_000000",
            "daily-20260102_000000",
            "hourly-20251230_120000",
            "hourly-20251231_120000",
            "hourly-20251232_120000"
        ]
    );
    let backup = list
        .iter()
        .find(|s| s.name == "backup1")
        .expect("manual listed");
    assert_eq!(backup.status, SnapshotStatus::Ok);
    assert_eq!(backup.note, None);
    assert_eq!(backup.created_at, t0 - chrono::TimeDelta::days(3));

    // Prune our older one only; the others stay untouched.
    let results = env.provider.delete_snapshots(&vm(), 1, &[first]).await;
    assert_eq!(results, vec![Ok(())]);
    let left = env.fake.state.snapshots(VM, 1);
    assert_eq!(left.len(), 5);
    assert!(left
        .iter()
        .any(|s| s.name == "backup1" && s.kind == TYPE_MANUAL));
    assert_eq!(left.iter().filter(|s| s.kind == TYPE_AUTO).count(), 3);
    assert!(left.iter().all(|s| s.name != "daily-20260101_000000"));
}

#[tokio::test]
async fn vm_not_operational_is_transient_then_succeeds() {
    let env = env().await;
    env.fake.state.set_operational(VM, false);
    let r = req(1, "daily-20260101_000000");
    let err = env.provider.create_snapshot(&r).await.expect_err("423");
    assert_class(&err, ErrorClass::Transient);
    assert!(
        err.message.contains("(423): VM is not operational"),
        "{err}"
    );

    env.fake.state.set_operational(VM, true);
    let snap = create(&env, &r).await;
    assert_eq!(snap.status, SnapshotStatus::Ok);
}

#[tokio::test]
async fn lock_contention_on_one_disk_is_transient() {
    let env = env().await;
    let a = req(1, "daily-20260101_000000");
    let pending = env
        .provider
        .create_snapshot(&a)
        .await
        .expect("first create");
    assert!(matches!(pending, CreateOutcome::Pending(_)));

    let b = req(1, "weekly-20260101_000000");
    let err = env
        .provider
        .create_snapshot(&b)
        .await
        .expect_err("disk locked");
    assert_class(&err, ErrorClass::Transient);
    assert!(err.message.contains("Task did not acquire lock"), "{err}");

    // The other disk has its own lock.
    create(&env, &req(2, "weekly-20260101_000000")).await;

    finish(&env, &a, pending).await;
    let snap = create(&env, &b).await;
    assert_eq!(snap.name, "weekly-20260101_000000");
}

#[tokio::test]
async fn snapshot_count_limit_is_permanent_with_erigones_message() {
    let env = env().await;
    env.fake.state.set_snapshot_limit(VM, Some(1));
    create(&env, &req(1, "daily-20251231_000000")).await;
    let err = env
        .provider
        .create_snapshot(&req(1, "daily-20260101_000000"))
        .await
        .expect_err("over the limit");
    assert_class(&err, ErrorClass::Permanent);
    assert_eq!(
        err.message,
        format!("Erigones refused snapshot daily-20260101_000000 of {VM} disk 1 (417): Snapshot count limit reached")
    );
}

#[tokio::test]
async fn task_failure_and_revocation_are_permanent() {
    let env = env().await;
    env.fake
        .state
        .end_next_task(VM, TaskEnd::Failure("zfs: dataset is busy".to_owned()));
    env.fake.state.end_next_task(VM, TaskEnd::Revoked);
    for name in ["daily-20260101_000000", "daily-20260102_000000"] {
        let r = req(1, name);
        let CreateOutcome::Pending(op) = env.provider.create_snapshot(&r).await.expect("accepted")
        else {
            panic!("expected a task");
        };
        env.fake.state.advance(Duration::from_secs(60));
        let err = env
            .provider
            .poll(&r, &op)
            .await
            .expect_err("task ended badly");
        assert_class(&err, ErrorClass::Permanent);
        assert!(err.message.contains(&op.id), "{err}");
    }
    let msgs: Vec<String> = env
        .fake
        .state
        .snapshots(VM, 1)
        .iter()
        .map(|s| s.name.clone())
        .collect();
    assert!(msgs.is_empty(), "failed snapshots left behind: {msgs:?}");
}

#[tokio::test]
async fn failed_task_message_is_kept() {
    let env = env().await;
    env.fake
        .state
        .end_next_task(VM, TaskEnd::Failure("zfs: dataset is busy".to_owned()));
    let r = req(1, "daily-20260101_000000");
    let CreateOutcome::Pending(op) = env.provider.create_snapshot(&r).await.expect("accepted")
    else {
        panic!("expected a task");
    };
    env.fake.state.advance(Duration::from_secs(60));
    let err = env.provider.poll(&r, &op).await.expect_err("failed");
    assert!(
        err.message.ends_with("failed: zfs: dataset is busy"),
        "{err}"
    );
}

#[tokio::test]
async fn existing_name_is_adopted_after_a_crash() {
    let env = env().await;
    let r = req(1, "daily-20260101_000000");
    // The first attempt started a task and then the daemon died.
    let _lost = env.provider.create_snapshot(&r).await.expect("accepted");
    env.fake.state.advance(Duration::from_secs(60));

    // Recovery knows an attempt may have reached Erigones: no second POST.
    let posts = env.fake.state.request_count(route::CREATE_SNAPSHOT);
    let again = CreateRequest {
        may_exist: true,
        ..r.clone()
    };
    let CreateOutcome::Done(snap) = env.provider.create_snapshot(&again).await.expect("adopted")
    else {
        panic!("expected the existing snapshot");
    };
    assert_eq!(snap.name, r.name);
    assert_eq!(env.fake.state.request_count(route::CREATE_SNAPSHOT), posts);

    // Without the hint, the 406 answer leads to the same adoption.
    let CreateOutcome::Done(snap) = env.provider.create_snapshot(&r).await.expect("406 adopted")
    else {
        panic!("expected the existing snapshot");
    };
    assert_eq!(snap.status, SnapshotStatus::Ok);
    assert_eq!(
        env.fake.state.request_count(route::CREATE_SNAPSHOT),
        posts + 1
    );
    assert_eq!(env.fake.state.snapshots(VM, 1).len(), 1);
}

#[tokio::test]
async fn existing_name_still_being_created_is_retried_not_duplicated() {
    let env = env().await;
    let r = req(1, "daily-20260101_000000");
    env.provider.create_snapshot(&r).await.expect("accepted");
    let err = env
        .provider
        .create_snapshot(&CreateRequest {
            may_exist: true,
            ..r.clone()
        })
        .await
        .expect_err("still pending");
    assert_class(&err, ErrorClass::Transient);
    assert_eq!(env.fake.state.snapshots(VM, 1).len(), 1);
}

#[tokio::test]
async fn bulk_delete_with_a_non_ok_member_falls_back_to_one_by_one() {
    let env = env().await;
    let mut ours = Vec::new();
    for day in 1..=3 {
        ours.push(create(&env, &req(1, &format!("daily-2026010{day}_000000"))).await);
    }
    env.fake
        .state
        .set_snapshot_status(VM, 1, "daily-20260102_000000", STATUS_LOST);
    // Already gone: deleting it again counts as done.
    let gone = RemoteSnapshot {
        name: "daily-20251201_000000".to_owned(),
        id: "daily-20251201_000000".to_owned(),
        ..ours[0].clone()
    };
    let mut doomed = ours.clone();
    doomed.push(gone);

    let results = env.provider.delete_snapshots(&vm(), 1, &doomed).await;
    assert_eq!(results.len(), 4);
    assert!(results[0].is_ok(), "{:?}", results[0]);
    let lost = results[1]
        .as_ref()
        .expect_err("lost snapshot is not deleted");
    assert_class(lost, ErrorClass::Permanent);
    assert!(results[2].is_ok(), "{:?}", results[2]);
    assert!(results[3].is_ok(), "{:?}", results[3]);

    assert_eq!(env.fake.state.request_count(route::BULK_DELETE), 1);
    assert_eq!(env.fake.state.request_count(route::DELETE_SNAPSHOT), 2);
    let left: Vec<String> = env
        .fake
        .state
        .snapshots(VM, 1)
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(left, ["daily-20260102_000000"]);
}

#[tokio::test]
async fn deleting_snapshots_that_are_gone_succeeds() {
    let env = env().await;
    let snap = create(&env, &req(1, "daily-20260101_000000")).await;
    assert_eq!(
        env.provider
            .delete_snapshots(&vm(), 1, std::slice::from_ref(&snap))
            .await,
        vec![Ok(())]
    );
    assert_eq!(
        env.provider.delete_snapshots(&vm(), 1, &[snap]).await,
        vec![Ok(())]
    );
}

#[tokio::test]
async fn delete_task_that_outlives_the_poll_timeout_is_transient() {
    let env = env_with(FakeErigonesConfig {
        delete_task_duration: Duration::from_secs(600),
        ..Default::default()
    })
    .await;
    let snap = create(&env, &req(1, "daily-20260101_000000")).await;
    let mut provider_settings = settings(&env.fake.base_url, Duration::from_secs(2));
    provider_settings.poll.timeout = Duration::from_millis(50);
    let impatient = Erigones::new(provider_settings).expect("provider");
    let results = impatient.delete_snapshots(&vm(), 1, &[snap]).await;
    let err = results[0].as_ref().expect_err("still running");
    assert_class(err, ErrorClass::Transient);
    assert!(err.message.contains("still running"), "{err}");
}

#[tokio::test]
async fn list_definitions_of_all_vms_and_of_one() {
    let env = env().await;
    env.fake.state.add_vm("db01.example.com", 1);
    let def = |host: &str, name: &str, disk_id: u32| FakeDefinition {
        hostname: host.to_owned(),
        name: name.to_owned(),
        disk_id,
        schedule: "30 5 * * *".to_owned(),
        retention: 30,
        active: true,
        desc: format!("{name} of {host}"),
        fsfreeze: disk_id == 2,
    };
    env.fake.state.add_definition(def(VM, "daily", 1));
    env.fake.state.add_definition(def(VM, "hourly", 2));
    env.fake
        .state
        .add_definition(def("db01.example.com", "daily", 1));

    let all = env
        .provider
        .list_definitions(None)
        .await
        .expect("all definitions");
    assert_eq!(all.len(), 3);
    let web = env
        .provider
        .list_definitions(Some(VM))
        .await
        .expect("one VM");
    assert_eq!(
        web,
        vec![
            ErigonesDefinition {
                hostname: VM.to_owned(),
                name: "daily".to_owned(),
                disk_id: 1,
                schedule: "30 5 * * *".to_owned(),
                retention: 30,
                active: true,
                desc: format!("daily of {VM}"),
                fsfreeze: false,
            },
            ErigonesDefinition {
                hostname: VM.to_owned(),
                name: "hourly".to_owned(),
                disk_id: 2,
                schedule: "30 5 * * *".to_owned(),
                retention: 30,
                active: true,
                desc: format!("hourly of {VM}"),
                fsfreeze: true,
            },
        ]
    );
    let err = env
        .provider
        .list_definitions(Some("nope.example.com"))
        .await
        .expect_err("unknown VM");
    assert_class(&err, ErrorClass::Permanent);
}

#[tokio::test]
async fn errors_are_classified() {
    let env = env().await;
    let r = req(1, "daily-20260101_000000");

    env.fake.state.inject(Fault {
        route: Some(route::CREATE_SNAPSHOT.into()),
        kind: FaultKind::Status(503),
        times: 1,
    });
    assert_class(
        &env.provider.create_snapshot(&r).await.expect_err("503"),
        ErrorClass::Transient,
    );

    env.fake.state.inject(Fault {
        route: Some(route::CREATE_SNAPSHOT.into()),
        kind: FaultKind::Drop,
        times: 1,
    });
    assert_class(
        &env.provider.create_snapshot(&r).await.expect_err("dropped"),
        ErrorClass::Transient,
    );

    let unknown = CreateRequest {
        target: Target::Vm("nope.example.com".into()),
        ..r.clone()
    };
    let err = env
        .provider
        .create_snapshot(&unknown)
        .await
        .expect_err("404");
    assert_class(&err, ErrorClass::Permanent);
    assert!(err.message.contains("(404): VM not found"), "{err}");

    let err = env
        .provider
        .create_snapshot(&req(3, "daily-20260101_000000"))
        .await
        .expect_err("412");
    assert_class(&err, ErrorClass::Permanent);
    assert!(err.message.contains("(412)"), "{err}");

    env.fake.state.set_installed(VM, false);
    let err = env.provider.create_snapshot(&r).await.expect_err("428");
    assert_class(&err, ErrorClass::Permanent);
    env.fake.state.set_installed(VM, true);

    let droplet = CreateRequest {
        target: Target::Droplet(7),
        ..r.clone()
    };
    assert_class(
        &env.provider
            .create_snapshot(&droplet)
            .await
            .expect_err("not a VM"),
        ErrorClass::Permanent,
    );

    let err = env
        .provider
        .list_snapshots(&Target::Vm("nope.example.com".into()), 1)
        .await
        .expect_err("404");
    assert_class(&err, ErrorClass::Permanent);

    // All of those left no snapshot behind; the next plain create works.
    create(&env, &r).await;
}

#[tokio::test]
async fn slow_answers_time_out_as_transient() {
    let env = env().await;
    let impatient =
        Erigones::new(settings(&env.fake.base_url, Duration::from_millis(100))).expect("provider");
    env.fake.state.inject(Fault {
        route: Some(route::LIST_SNAPSHOTS.into()),
        kind: FaultKind::Slow(Duration::from_secs(5)),
        times: 1,
    });
    let err = impatient
        .list_snapshots(&vm(), 1)
        .await
        .expect_err("timed out");
    assert_class(&err, ErrorClass::Transient);
    assert!(err.message.contains("timed out"), "{err}");
    // The fault is spent: the next call answers.
    assert!(impatient
        .list_snapshots(&vm(), 1)
        .await
        .expect("list")
        .is_empty());
}

#[tokio::test]
async fn api_key_never_appears_in_errors() {
    let env = env().await;
    // A misbehaving server that echoes the key back.
    env.fake.state.inject(Fault {
        route: None,
        kind: FaultKind::StatusWithDetail(502, format!("upstream said: ES-API-KEY {KEY} rejected")),
        times: 1,
    });
    let err = env
        .provider
        .list_snapshots(&vm(), 1)
        .await
        .expect_err("502");
    assert_class(&err, ErrorClass::Transient);
    assert!(err.message.contains("[redacted]"), "{err}");

    let wrong = Erigones::new(ErigonesSettings {
        api_key: Secret::new("wrong-key-0000"),
        ..settings(&env.fake.base_url, Duration::from_secs(2))
    })
    .expect("provider");
    let err = wrong.list_snapshots(&vm(), 1).await.expect_err("403");
    assert_eq!(err.class, ErrorClass::Permanent);
    assert!(!err.message.contains("wrong-key-0000"), "{err}");

    let stopped = env.fake.base_url.clone();
    let provider = env.provider.clone();
    drop(env);
    let err = provider
        .list_snapshots(&vm(), 1)
        .await
        .expect_err("server gone");
    assert_class(&err, ErrorClass::Transient);
    assert!(!format!("{err:?}").contains(KEY));
    assert!(!format!("{provider:?}").contains(KEY));
    assert!(!format!("{:?}", settings(&stopped, Duration::from_secs(1))).contains(KEY));
}

#[tokio::test]
async fn synchronous_create_is_done_at_once() {
    let env = env_with(FakeErigonesConfig {
        synchronous_create: true,
        ..Default::default()
    })
    .await;
    let outcome = env
        .provider
        .create_snapshot(&req(2, "daily-20260101_000000"))
        .await
        .expect("created");
    let CreateOutcome::Done(snap) = outcome else {
        panic!("200 SUCCESS should be Done");
    };
    assert_eq!(snap.status, SnapshotStatus::Ok);
}

#[tokio::test]
async fn request_count_of_one_create_poll_list_delete_cycle() {
    let env = env().await;
    let r = req(1, "daily-20260101_000000");
    let before = env.provider.requests_sent();
    let snap = create(&env, &r).await;
    let after_create = env.provider.requests_sent();
    env.provider.list_snapshots(&vm(), 1).await.expect("list");
    let results = env.provider.delete_snapshots(&vm(), 1, &[snap]).await;
    assert_eq!(results, vec![Ok(())]);
    let total = env.provider.requests_sent() - before;
    // POST + 3 task polls (PENDING, STARTED, SUCCESS) + 1 list to fetch the
    // snapshot; then 1 list; then bulk DELETE + 1 task poll.
    assert_eq!(
        after_create - before,
        5,
        "{:?}",
        env.fake.state.requests_by_route()
    );
    assert_eq!(total, 8, "{:?}", env.fake.state.requests_by_route());
    assert_eq!(env.fake.state.total_requests(), total);
}

/// A server on loopback that answers every request with `200` and `body`.
async fn answering(body: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let _ = conn.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/api/")
}

#[tokio::test]
async fn a_snapshot_list_of_the_wrong_shape_is_worded_plainly() {
    let base = answering(r#"{"result": "nope"}"#).await;
    let provider = Erigones::new(settings(&base, Duration::from_secs(2))).expect("provider");
    let e = provider
        .list_snapshots(&vm(), 1)
        .await
        .expect_err("a string is not a snapshot list");
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    assert!(
        e.message.starts_with(&format!(
            "Erigones sent the snapshot list of {VM} disk 1 in an unexpected shape"
        )),
        "{e}"
    );
    assert!(!e.message.contains("unexpected the"), "{e}");
}

/// Erigones has no tags: a hold lives in the store only, and marking it
/// sends nothing to the API.
#[tokio::test]
async fn a_hold_is_not_shown_at_erigones_and_sends_no_request() {
    let env = env().await;
    let before = env.fake.state.total_requests();
    for held in [true, false] {
        let mark = env
            .provider
            .mark_held(&vm(), 1, "web-20260101_000000", held)
            .await
            .expect("mark");
        assert_eq!(mark, snapsched::provider::HoldMark::NotShown);
    }
    assert_eq!(env.fake.state.total_requests(), before);
}
