//! Holds through the real binary against the fake DigitalOcean API: a held
//! snapshot survives retention (`prune`) and `def rm --delete-snapshots`,
//! shows in `snapshots` and `prune --dry-run` with its reason, carries the
//! `snapsched-hold` tag at the provider while held, and the first prune
//! after its release deletes it.

use chrono::{TimeZone, Utc};
use serde_json::Value;
use snapsched_fake_api::digitalocean::{FakeConfig, FakeDigitalOcean, FakeHandle, Resource};

use crate::support::fake::{DO_TOKEN, VOLUME};
use crate::support::fixtures::config_with_do_api;
use crate::support::TestEnv;

const TAG: &str = "snapsched-hold";

/// The fake API with the volume, three snapshots `web` made on 1–3 January
/// (recorded by a first prune that adopts them), a manual snapshot, and
/// `web` with retention 1 and no blast-radius limit.
async fn three_days() -> (FakeHandle, TestEnv, Vec<String>) {
    let fake = FakeDigitalOcean::start(FakeConfig::default())
        .await
        .expect("fake DigitalOcean");
    let volume = VOLUME.parse().expect("uuid");
    fake.add_volume(volume, "data");
    let mut names = Vec::new();
    for day in 1..=3 {
        let at = Utc
            .with_ymd_and_hms(2026, 1, day, 3, 0, 0)
            .single()
            .expect("valid time");
        let name = format!("web-{}", at.format("%Y%m%d_%H%M%S"));
        fake.add_snapshot(Resource::Volume(volume), &name, at);
        names.push(name);
    }
    fake.add_snapshot(
        Resource::Volume(volume),
        "before upgrade",
        Utc.with_ymd_and_hms(2025, 12, 1, 0, 0, 0)
            .single()
            .expect("valid time"),
    );
    let config =
        config_with_do_api(fake.url()).replace("[daemon]\n", "[daemon]\nmax_deletes_per_run = 0\n");
    let env = TestEnv::new(&config);
    let target = format!("volume:{VOLUME}");
    env.ok(&[
        "def",
        "add",
        "web",
        "--provider",
        "do",
        "--target",
        &target,
        "--schedule",
        "0 3 * * *",
        "--retention",
        "1",
    ]);
    (fake, env, names)
}

fn tags_of(fake: &FakeHandle, name: &str) -> Vec<String> {
    fake.snapshots()
        .into_iter()
        .find(|s| s.name == name)
        .map(|s| s.tags)
        .unwrap_or_else(|| panic!("{name} is not at the fake"))
}

fn names_at(fake: &FakeHandle) -> Vec<String> {
    let mut v: Vec<String> = fake.snapshots().into_iter().map(|s| s.name).collect();
    v.sort();
    v
}

fn json_env(env: &TestEnv, args: &[&str]) -> Value {
    let (code, out, err) = env.run_env(args, &[DO_TOKEN]);
    assert_eq!(code, 0, "snapsched {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: bad JSON ({e}): {out}"))
}

fn decision<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["decisions"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["snapshot"]["name"] == name))
        .unwrap_or_else(|| panic!("no decision for {name}: {plan}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_snapshot_survives_prune_and_def_rm_until_released() {
    let (fake, env, names) = three_days().await;
    let oldest = &names[0];
    tokio::task::block_in_place(|| {
        // Held before snapsched recorded it: the name rule adopts it.
        let out = env.run_env(
            &[
                "snapshots",
                "hold",
                "web",
                oldest,
                "--reason",
                "legal hold 7",
            ],
            &[DO_TOKEN],
        );
        assert_eq!(out.0, 0, "hold failed: {}", out.2);
        assert!(out.1.contains("tagged snapsched-hold"), "{}", out.1);
        assert_eq!(tags_of(&fake, oldest), [TAG]);

        let shown = env.json(&["snapshots", "web"]);
        let row = shown
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["snapshot_name"] == oldest.as_str()))
            .unwrap_or_else(|| panic!("{oldest} not shown: {shown}"));
        assert_eq!(row["hold"]["reason"], "legal hold 7", "{row}");
        assert!(row["hold"]["held_at"].is_string(), "{row}");
        let table = env.ok(&["snapshots", "web"]);
        assert!(table.contains("held: legal hold 7"), "{table}");

        let plan = json_env(&env, &["prune", "web", "--dry-run", "--json"]);
        let held = decision(&plan, oldest);
        assert_eq!(held["keep"], true, "{held}");
        assert_eq!(held["reasons"][0]["kind"], "held", "{held}");
        assert_eq!(held["reasons"][0]["text"], "held: legal hold 7", "{held}");
        // It takes no slot: retention 1 still keeps the newest as well.
        assert_eq!(decision(&plan, &names[2])["keep"], true);
        assert_eq!(decision(&plan, &names[1])["keep"], false);
        let (code, text, err) = env.run_env(&["prune", "web", "--dry-run"], &[DO_TOKEN]);
        assert_eq!(code, 0, "{err}");
        assert!(text.contains("held: legal hold 7"), "{text}");

        let (code, _out, err) = env.run_env(&["prune", "web", "--yes"], &[DO_TOKEN]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            names_at(&fake),
            ["before upgrade", names[0].as_str(), names[2].as_str()]
        );

        // def rm --delete-snapshots deletes nothing while a hold stands.
        let err = env.usage_error_env(
            &["def", "rm", "web", "--delete-snapshots", "--yes"],
            &[DO_TOKEN],
        );
        assert!(
            err.contains(oldest.as_str())
                && err.contains("held: legal hold 7")
                && err.contains("snapshots release web"),
            "{err}"
        );
        assert_eq!(names_at(&fake).len(), 3, "def rm deleted something");
        assert_eq!(env.list().len(), 1, "def rm removed the definition");

        let out = env.run_env(&["snapshots", "release", "web", oldest], &[DO_TOKEN]);
        assert_eq!(out.0, 0, "release failed: {}", out.2);
        assert!(tags_of(&fake, oldest).is_empty(), "the tag stayed");
        assert!(env
            .json(&["snapshots", "web"])
            .as_array()
            .is_some_and(|rows| rows.iter().all(|r| r["hold"].is_null())));

        let (code, _out, err) = env.run_env(&["prune", "web", "--yes"], &[DO_TOKEN]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(names_at(&fake), ["before upgrade", names[2].as_str()]);
        assert_eq!(fake.contract_violations(), Vec::<String>::new());
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_and_release_refuse_what_they_cannot_do() {
    let (fake, env, names) = three_days().await;
    tokio::task::block_in_place(|| {
        // Record the three as web's.
        let (code, _out, err) = env.run_env(&["prune", "web", "--dry-run"], &[DO_TOKEN]);
        assert_eq!(code, 0, "{err}");
        let err = env.usage_error_env(&["snapshots", "hold", "web", "no-such"], &[DO_TOKEN]);
        assert!(
            err.contains("no snapshot named or with id 'no-such'"),
            "{err}"
        );
        let err = env.usage_error_env(&["snapshots", "hold", "web", "before upgrade"], &[DO_TOKEN]);
        assert!(err.contains("not owned by"), "{err}");
        let err = env.usage_error_env(&["snapshots", "hold", "nosuchdef", &names[1]], &[DO_TOKEN]);
        assert!(err.contains("no definition named 'nosuchdef'"), "{err}");
        let err = env.usage_error_env(&["snapshots", "release", "web", &names[1]], &[DO_TOKEN]);
        assert!(err.contains("is not held"), "{err}");

        // By the provider's id, then a second hold is refused.
        let id = fake
            .snapshots()
            .into_iter()
            .find(|s| s.name == names[1])
            .map(|s| s.id)
            .expect("listed");
        let (code, _out, err) = env.run_env(&["snapshots", "hold", "web", &id], &[DO_TOKEN]);
        assert_eq!(code, 0, "{err}");
        let err = env.usage_error_env(
            &["snapshots", "hold", "web", &names[1], "--reason", "again"],
            &[DO_TOKEN],
        );
        assert!(err.contains("already held"), "{err}");
        let err = env.usage_error_env(
            &["snapshots", "hold", "web", &names[2], "--reason", "a\nb"],
            &[DO_TOKEN],
        );
        assert!(err.contains("control character"), "{err}");
        assert_eq!(tags_of(&fake, &names[1]), [TAG]);
        assert!(tags_of(&fake, &names[2]).is_empty());
        assert_eq!(fake.contract_violations(), Vec::<String>::new());
    });
}

/// A droplet snapshot is an `image` to the tags API; the hold tag is
/// created at the provider the first time it is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_droplet_snapshot_is_tagged_as_an_image() {
    let fake = FakeDigitalOcean::start(FakeConfig::default())
        .await
        .expect("fake DigitalOcean");
    fake.add_droplet(3164494, "web01");
    let at = Utc
        .with_ymd_and_hms(2026, 1, 1, 5, 30, 0)
        .single()
        .expect("valid time");
    let name = format!("app-{}", at.format("%Y%m%d_%H%M%S"));
    fake.add_snapshot(Resource::Droplet(3164494), &name, at);
    let env = TestEnv::new(&config_with_do_api(fake.url()));
    env.add_droplet("app", 3164494);
    tokio::task::block_in_place(|| {
        let (code, _out, err) = env.run_env(
            &[
                "snapshots",
                "hold",
                "app",
                &name,
                "--reason",
                "before migration",
            ],
            &[DO_TOKEN],
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(tags_of(&fake, &name), [TAG]);
        let (code, _out, err) = env.run_env(&["snapshots", "release", "app", &name], &[DO_TOKEN]);
        assert_eq!(code, 0, "{err}");
        assert!(tags_of(&fake, &name).is_empty());
        assert_eq!(fake.contract_violations(), Vec::<String>::new());
    });
}
