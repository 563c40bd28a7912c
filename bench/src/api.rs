//! API efficiency: requests per snapshot cycle against the in-process fake
//! DigitalOcean and Erigones APIs, through snapsched's real HTTP clients.
//!
//! A cycle is what one run asks of the provider in steady state with
//! retention 1: create, poll the action or task until it is done (waits
//! follow the provider's poll policy, the defaults of the configuration),
//! list the disk's snapshots (or plan from the listing that found the new
//! snapshot's id, as the prune after a run does), delete the one beyond
//! retention. The fakes'
//! clocks move by the waits instead of sleeping, so a 3-minute droplet action
//! costs no real time. The first cycle only seeds a snapshot to delete; the
//! second one is counted.

use std::time::Duration;

use serde::Serialize;
use snapsched::domain::{RemoteSnapshot, Target};
use snapsched::provider::digitalocean::{DigitalOcean, DigitalOceanSettings};
use snapsched::provider::erigones::{Erigones, ErigonesSettings};
use snapsched::provider::{CreateOutcome, CreateRequest, PollOutcome, PollPolicy, Provider};
use snapsched::secret::Secret;
use snapsched_fake_api::digitalocean::{FakeConfig, FakeDigitalOcean};
use snapsched_fake_api::erigones::{self as fake_erigones, FakeErigonesConfig};

const DO_TOKEN: &str = "dop_v1_bench_token_0123456789";
const ES_KEY: &str = "es-bench-key";
/// DigitalOcean's documented budget per token.
const DO_REQUESTS_PER_HOUR: f64 = 5_000.0;

/// Requests of one counted cycle.
#[derive(Debug, Clone, Serialize)]
pub struct Cycle {
    pub what: String,
    pub requests: u64,
    pub polls: u64,
    /// Snapshots per hour one DigitalOcean token sustains at this pattern.
    pub snapshots_per_hour_per_token: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApiResult {
    pub cycles: Vec<Cycle>,
    pub poll_policy: String,
    pub budget_note: String,
}

fn request(target: Target, disk_id: u32, name: &str) -> CreateRequest {
    CreateRequest {
        target,
        disk_id,
        name: name.to_owned(),
        note: "snapsched bench".to_owned(),
        fsfreeze: false,
        tags: Vec::new(),
        may_exist: false,
    }
}

/// One cycle; `advance` moves the fake's clock. Returns the polls made.
async fn cycle<P: Provider>(
    p: &P,
    req: &CreateRequest,
    advance: &dyn Fn(Duration),
) -> anyhow::Result<u64> {
    let policy = p.poll_policy();
    let mut polls = 0;
    let mut snap: Option<RemoteSnapshot> = match p.create_snapshot(req).await? {
        CreateOutcome::Done(s) => Some(s),
        CreateOutcome::Pending(op) => {
            let mut wait = policy.initial;
            let mut waited = Duration::ZERO;
            let mut done = None;
            while done.is_none() {
                advance(wait);
                waited += wait;
                anyhow::ensure!(
                    waited <= policy.timeout,
                    "operation outlived the poll timeout"
                );
                polls += 1;
                match p.poll(req, &op).await? {
                    PollOutcome::Done(s) => done = Some(s),
                    PollOutcome::Pending => wait = (wait * 2).min(policy.max),
                }
            }
            done
        }
    };
    let made = snap.take().ok_or_else(|| anyhow::anyhow!("no snapshot"))?;
    // As the prune after a run: the listing that found the new snapshot's
    // id, when the provider kept it, else a new one.
    let listed = match p.fresh_listing(&req.target, req.disk_id, &made.id) {
        Some(l) => l,
        None => p.list_snapshots(&req.target, req.disk_id).await?,
    };
    let old: Vec<RemoteSnapshot> = listed.into_iter().filter(|s| s.id != made.id).collect();
    for r in p.delete_snapshots(&req.target, req.disk_id, &old).await {
        r?;
    }
    Ok(polls)
}

fn per_hour(requests: u64) -> Option<u64> {
    (requests > 0).then(|| (DO_REQUESTS_PER_HOUR / requests as f64).floor() as u64)
}

pub async fn measure() -> anyhow::Result<ApiResult> {
    let mut cycles = Vec::new();
    let policy = PollPolicy::default();

    let fake = FakeDigitalOcean::start(FakeConfig {
        token: DO_TOKEN.to_owned(),
        action_duration: Duration::from_secs(180),
        ..FakeConfig::default()
    })
    .await?;
    let volume = uuid::Uuid::from_u128(0x7724db7c_e098_11e5_b522_000f53304e51);
    fake.add_droplet(3164444, "web-01");
    fake.add_volume(volume, "data-01");
    let mut settings = DigitalOceanSettings::new("do", Secret::new(DO_TOKEN));
    settings.api_url = fake.url().parse()?;
    let p = DigitalOcean::new(settings).map_err(|e| anyhow::anyhow!("{e}"))?;
    let advance = |d: Duration| fake.advance(d);
    for (what, target) in [
        (
            "DigitalOcean droplet (3-minute action)",
            Target::Droplet(3164444),
        ),
        ("DigitalOcean volume", Target::Volume(volume)),
    ] {
        cycle(
            &p,
            &request(target.clone(), 0, "bench-20260101_000000"),
            &advance,
        )
        .await?;
        let before = fake.requests_total();
        let polls = cycle(&p, &request(target, 0, "bench-20260101_010000"), &advance).await?;
        let requests = fake.requests_total() - before;
        cycles.push(Cycle {
            what: what.to_owned(),
            requests,
            polls,
            snapshots_per_hour_per_token: per_hour(requests),
        });
    }

    let es = fake_erigones::start(FakeErigonesConfig {
        api_key: ES_KEY.to_owned(),
        ..FakeErigonesConfig::default()
    })
    .await?;
    es.state.add_vm("web01.example.com", 2);
    let p = Erigones::new(ErigonesSettings {
        provider_name: "dc1".to_owned(),
        api_url: url::Url::parse(&es.base_url)?,
        api_key: Secret::new(ES_KEY),
        poll: policy,
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(30),
        max_response_bytes: snapsched::provider::DEFAULT_MAX_RESPONSE_BYTES,
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let advance = |d: Duration| es.state.advance(d);
    let vm = Target::Vm("web01.example.com".to_owned());
    cycle(
        &p,
        &request(vm.clone(), 1, "bench-20260101_000000"),
        &advance,
    )
    .await?;
    let before = es.state.total_requests();
    let polls = cycle(&p, &request(vm, 1, "bench-20260101_010000"), &advance).await?;
    cycles.push(Cycle {
        what: "Erigones disk (30-second task)".to_owned(),
        requests: es.state.total_requests() - before,
        polls,
        snapshots_per_hour_per_token: None,
    });

    Ok(ApiResult {
        cycles,
        poll_policy: format!(
            "first poll after {}s, doubling to {}s (configuration defaults)",
            policy.initial.as_secs(),
            policy.max.as_secs()
        ),
        budget_note: "snapshots/hour per DigitalOcean token = floor(5,000 requests/hour / requests per cycle), every snapshot following the measured pattern".to_owned(),
    })
}
