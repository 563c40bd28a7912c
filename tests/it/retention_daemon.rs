//! Retention end to end through the daemon's loop on tokio's paused clock:
//! days of hourly slots across a DST change with tiered retention, against
//! the in-memory fake provider and the fake DigitalOcean API over loopback,
//! checked against the independent retention oracle; a held snapshot
//! survives every prune.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use snapsched::clock::Clock;
use snapsched::domain::definition::Source;
use snapsched::domain::{ProviderKind, RunState};
use snapsched::scheduler::{Providers, Scheduler};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use crate::support::fixtures;
use crate::support::paused::{
    env, hold_clock, in_flight_counter, runs, settings, spec_with, step_through, utc,
};

/// The daemon's loop makes hourly snapshots for three days across the
/// fall-back night in Europe/Bratislava and prunes after each run with
/// keep_last 3, keep_hourly 6, keep_daily 3. It ends with exactly the set
/// the independent oracle keeps from everything made, plus a snapshot held
/// since its second hour, which no prune deleted.
#[tokio::test]
async fn the_daemon_keeps_exactly_the_tiered_set_across_a_dst_change() {
    let env = env(Duration::ZERO).await;
    let start = utc(2026, 10, 23, 21, 30, 0);
    let clock = Clock::tokio(start);
    let provider = env.fake.clone().with_clock(clock);
    let map = HashMap::from([("fake".to_owned(), (provider, ProviderKind::Fake))]);
    let providers = Providers::new(map);
    let zone = "Europe/Bratislava";
    let mut def = spec_with("tiered", "web01", "0 * * * *", Some(zone), None);
    def.retention = 3;
    def.keep.hourly = 6;
    def.keep.daily = 3;
    env.store
        .insert_definition(&def, Source::Cli, None, start)
        .await
        .expect("definition inserted");
    let mut st = settings();
    st.change_poll = Duration::from_secs(3600);
    let token = CancellationToken::new();
    let mut s = Scheduler::new(env.store.clone(), providers, clock, st, token.clone());
    let (in_flight, tick) = in_flight_counter();
    s.on_tick(tick);
    let handle = tokio::spawn(async move {
        s.start().await.expect("scheduler starts");
        s.run(Duration::from_secs(30)).await.expect("loop runs");
    });

    // Hold the second snapshot once it exists; retention would delete it
    // within hours.
    let tz: chrono_tz::Tz = zone.parse().expect("zone");
    let step = Duration::from_secs(300);
    let no_other_clock = |_: Duration| {};
    let h = step_through(
        &env.store,
        &def,
        tz,
        clock,
        start,
        start + chrono::TimeDelta::hours(2),
        step,
        &no_other_clock,
        &in_flight,
    )
    .await;
    assert_eq!(h.len(), 2, "{h:#?}");
    let held = h[1].snapshot_name.clone().expect("second run's snapshot");
    assert!(env
        .store
        .hold_snapshot(&def.identity, &held, "audit", clock.now())
        .await
        .expect("hold"));

    let last_slot = utc(2026, 10, 26, 11, 0, 0);
    let h = step_through(
        &env.store,
        &def,
        tz,
        clock,
        start,
        last_slot,
        step,
        &no_other_clock,
        &in_flight,
    )
    .await;
    assert_eq!(h.last().map(|r| r.slot), Some(last_slot));
    token.cancel();
    handle.await.expect("loop ends");
    for r in &h {
        assert_eq!(r.state, RunState::Succeeded, "{r:?}");
        assert_eq!(r.error, None, "a prune failed or was blocked: {r:?}");
    }
    // Both 02:00 of the fall-back night are slots of "0 * * * *" or one is;
    // either way the history spans it.
    assert!(h
        .first()
        .is_some_and(|r| r.slot < utc(2026, 10, 25, 0, 0, 0)));

    let records = env
        .store
        .snapshot_records(Some("tiered"))
        .await
        .expect("records");
    assert_eq!(records.len(), h.len(), "one snapshot per run");
    let times: Vec<i64> = records
        .iter()
        .filter(|r| r.snapshot != held)
        .map(|r| r.created_at.expect("created_at recorded").timestamp())
        .collect();
    let policy = snapsched::prune::policy(&def, zone.parse().expect("zone"));
    let now = *times.iter().max().expect("snapshots made");
    let answer =
        crate::support::oracle::run(&[crate::support::oracle::input(zone, &policy, now, &times)]);
    let verdicts = answer[0].as_array().expect("one verdict a snapshot");
    let mut sorted_times = times.clone();
    sorted_times.sort_unstable();
    assert_eq!(verdicts.len(), sorted_times.len());
    let kept_times: Vec<i64> = sorted_times
        .iter()
        .zip(verdicts)
        .filter(|(_, v)| v[0] == true)
        .map(|(t, _)| *t)
        .collect();
    let mut expected: Vec<String> = records
        .iter()
        .filter(|r| {
            r.snapshot == held
                || kept_times.contains(&r.created_at.expect("created_at").timestamp())
        })
        .map(|r| r.snapshot.clone())
        .collect();
    expected.sort();
    assert!(
        expected.len() > 4 && expected.len() < records.len() / 2,
        "a trivial expectation: {expected:?}"
    );

    let target =
        snapsched::domain::definition::parse_target("web01", ProviderKind::Fake).expect("target");
    let mut at_provider = env.fake.names(&target, def.identity.disk_id);
    at_provider.sort();
    assert_eq!(at_provider, expected, "the provider keeps another set");
    let mut present: Vec<String> = records
        .iter()
        .filter(|r| r.state == snapsched::domain::RecordState::Present)
        .map(|r| r.snapshot.clone())
        .collect();
    present.sort();
    assert_eq!(present, expected, "the store records another set");
    assert!(at_provider.contains(&held), "the held snapshot was deleted");
}

/// The same over HTTP: the daemon's loop against the fake DigitalOcean API
/// (its clock advanced in step with tokio's paused one) makes a volume
/// snapshot every hour for three days across the next DST change of
/// Europe/Bratislava and ends with exactly the oracle's tiered set.
#[tokio::test]
async fn the_daemon_keeps_the_tiered_set_at_the_fake_digitalocean_api() {
    use chrono::Offset;
    use snapsched::provider::digitalocean::{DigitalOcean, DigitalOceanSettings};
    use snapsched::secret::Secret;
    use snapsched_fake_api::digitalocean::{FakeConfig, FakeDigitalOcean, Resource};

    let dir = TempDir::new().expect("temp dir");
    let store = crate::support::db::open(&dir.path().join("snapsched.db")).await;
    let fake = FakeDigitalOcean::start(FakeConfig::default())
        .await
        .expect("fake DigitalOcean");
    let volume: uuid::Uuid = crate::support::fake::VOLUME.parse().expect("uuid");
    fake.add_volume(volume, "data");
    let mut settings_do = DigitalOceanSettings::new("do", Secret::new("fake-do-token"));
    settings_do.api_url = url::Url::parse(fake.url()).expect("fake url");
    let provider = DigitalOcean::new(settings_do).expect("provider builds");

    // The fake's clock starts at the wall clock: move it (and start tokio's)
    // to the evening two days before the zone's next DST change.
    let zone_name = "Europe/Bratislava";
    let zone: chrono_tz::Tz = zone_name.parse().expect("zone");
    let offset = |t: DateTime<Utc>| t.with_timezone(&zone).offset().fix();
    let mut change = fake.now();
    while offset(change) == offset(fake.now()) {
        change += chrono::TimeDelta::hours(1);
    }
    let start = change - chrono::TimeDelta::hours(52) - chrono::TimeDelta::minutes(30);
    fake.advance((start - fake.now()).to_std().expect("start is ahead"));
    assert_eq!(fake.now(), start);

    tokio::time::pause();
    let spinner = hold_clock();
    let clock = Clock::tokio(start);
    let map = HashMap::from([("do".to_owned(), (provider, ProviderKind::DigitalOcean))]);
    let target = format!("volume:{volume}");
    let mut def = fixtures::spec("do", &target, "tiered")
        .schedule("0 * * * *")
        .timezone(zone_name)
        .retention(3)
        .build();
    def.keep.hourly = 6;
    def.keep.daily = 3;
    store
        .insert_definition(&def, Source::Cli, None, start)
        .await
        .expect("definition inserted");
    let mut st = settings();
    st.change_poll = Duration::from_secs(3600);
    let token = CancellationToken::new();
    let mut s = Scheduler::new(store.clone(), Providers::new(map), clock, st, token.clone());
    let (in_flight, tick) = in_flight_counter();
    s.on_tick(tick);
    let handle = tokio::spawn(async move {
        s.start().await.expect("scheduler starts");
        s.run(Duration::from_secs(30)).await.expect("loop runs");
    });

    // Three days of virtual time, the fake's clock in step with tokio's.
    let end = start + chrono::TimeDelta::days(3);
    let move_fake = |by: Duration| fake.advance(by);
    step_through(
        &store,
        &def,
        zone,
        clock,
        start,
        end,
        Duration::from_secs(300),
        &move_fake,
        &in_flight,
    )
    .await;
    token.cancel();
    handle.await.expect("loop ends");
    spinner.abort();

    let h = runs(&store, "tiered").await;
    assert!(h.len() >= 70, "only {} runs in three days", h.len());
    for r in &h {
        assert_eq!(r.state, RunState::Succeeded, "{r:?}");
        assert_eq!(r.error, None, "a prune failed or was blocked: {r:?}");
    }
    let made: Vec<(String, i64)> = store
        .snapshot_records(Some("tiered"))
        .await
        .expect("records")
        .into_iter()
        .map(|r| (r.snapshot, r.created_at.expect("created_at").timestamp()))
        .collect();
    assert_eq!(made.len(), h.len(), "one snapshot per run");
    let mut times: Vec<i64> = made.iter().map(|(_, t)| *t).collect();
    times.sort_unstable();
    let policy = snapsched::prune::policy(&def, zone);
    let answer = crate::support::oracle::run(&[crate::support::oracle::input(
        zone_name,
        &policy,
        *times.last().expect("made"),
        &times,
    )]);
    let kept: Vec<i64> = times
        .iter()
        .zip(answer[0].as_array().expect("verdicts"))
        .filter(|(_, v)| v[0] == true)
        .map(|(t, _)| *t)
        .collect();
    let mut expected: Vec<String> = made
        .iter()
        .filter(|(_, t)| kept.contains(t))
        .map(|(n, _)| n.clone())
        .collect();
    expected.sort();
    let mut at_fake: Vec<String> = fake
        .snapshots_of(Resource::Volume(volume))
        .into_iter()
        .map(|s| s.name)
        .collect();
    at_fake.sort();
    assert!(expected.len() > 4, "a trivial expectation: {expected:?}");
    assert_eq!(at_fake, expected);
    assert_eq!(fake.contract_violations(), Vec::<String>::new());
    store.close().await;
}

/// Three droplet definitions on one token through the daemon's loop against
/// the fake DigitalOcean API: each run lists its droplet's snapshots once,
/// and that listing both finds the new snapshot's id and serves the prune
/// (retention 1 deletes the previous snapshot every cycle); the three
/// actions in flight together are polled with pages of `GET /v2/actions`.
#[tokio::test]
async fn the_daemon_lists_each_droplet_once_per_cycle_at_the_fake_digitalocean_api() {
    use snapsched::provider::digitalocean::{DigitalOcean, DigitalOceanSettings};
    use snapsched::provider::PollPolicy;
    use snapsched::secret::Secret;
    use snapsched_fake_api::digitalocean::{FakeConfig, FakeDigitalOcean, Resource};

    let dir = TempDir::new().expect("temp dir");
    let store = crate::support::db::open(&dir.path().join("snapsched.db")).await;
    let fake = FakeDigitalOcean::start(FakeConfig {
        action_duration: Duration::from_secs(20),
        ..FakeConfig::default()
    })
    .await
    .expect("fake DigitalOcean");
    let start = fake.now();
    let mut settings_do = DigitalOceanSettings::new("do", Secret::new("fake-do-token"));
    settings_do.api_url = url::Url::parse(fake.url()).expect("fake url");
    settings_do.poll = PollPolicy {
        initial: Duration::from_secs(5),
        max: Duration::from_secs(10),
        timeout: Duration::from_secs(3600),
    };
    let provider = DigitalOcean::new(settings_do).expect("provider builds");

    tokio::time::pause();
    let spinner = hold_clock();
    let clock = Clock::tokio(start);
    let mut defs = Vec::new();
    for i in 0..3u64 {
        let droplet = 5100 + i;
        fake.add_droplet(droplet, &format!("web-{i}"));
        let name = format!("web{i}");
        fake.add_snapshot(
            Resource::Droplet(droplet),
            &format!("{name}-20200101_000000"),
            start - chrono::TimeDelta::days(30),
        );
        let def = fixtures::spec("do", &format!("droplet:{droplet}"), &name)
            .schedule("0 * * * *")
            .retention(1)
            .build();
        store
            .insert_definition(&def, Source::Cli, None, start)
            .await
            .expect("definition inserted");
        defs.push(def);
    }
    let map = HashMap::from([("do".to_owned(), (provider, ProviderKind::DigitalOcean))]);
    let mut st = settings();
    st.change_poll = Duration::from_secs(3600);
    let token = CancellationToken::new();
    let mut s = Scheduler::new(store.clone(), Providers::new(map), clock, st, token.clone());
    let (in_flight, tick) = in_flight_counter();
    s.on_tick(tick);
    let handle = tokio::spawn(async move {
        s.start().await.expect("scheduler starts");
        s.run(Duration::from_secs(30)).await.expect("loop runs");
    });
    let move_fake = |by: Duration| fake.advance(by);
    step_through(
        &store,
        &defs[0],
        chrono_tz::Tz::UTC,
        clock,
        start,
        start + chrono::TimeDelta::hours(3),
        Duration::from_secs(300),
        &move_fake,
        &in_flight,
    )
    .await;
    token.cancel();
    handle.await.expect("loop ends");
    spinner.abort();

    let mut total = 0;
    for def in &defs {
        let h = runs(&store, &def.identity.name).await;
        assert!(h.len() >= 2, "{}: {h:#?}", def.identity.name);
        for r in &h {
            assert_eq!(r.state, RunState::Succeeded, "{r:?}");
            assert_eq!(r.error, None, "{r:?}");
        }
        total += h.len() as u64;
    }
    let routes = fake.route_counts();
    let count = |route: &str| routes.get(route).copied().unwrap_or(0);
    assert_eq!(count("POST /v2/droplets/{droplet_id}/actions"), total);
    assert_eq!(
        count("GET /v2/droplets/{droplet_id}/snapshots"),
        total,
        "one listing per cycle: {routes:?}"
    );
    assert_eq!(count("DELETE /v2/snapshots/{snapshot_id}"), total);
    assert!(count("GET /v2/actions") >= 1, "{routes:?}");
    eprintln!("{total} droplet cycles: {routes:?}");
    assert_eq!(fake.contract_violations(), Vec::<String>::new());
    store.close().await;
}
