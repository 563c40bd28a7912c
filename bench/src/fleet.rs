//! Fleet request budget: N droplets snapshotted hourly with `keep_last 24`,
//! as N droplet definitions and as one `tag:` definition over all of them, against the in-process fake DigitalOcean API
//! through snapsched's real HTTP client, with its client-side limiter on
//! (250 requests/minute, 5,000/hour, the defaults).
//!
//! Each droplet's cycle is what a run asks of the provider: create the
//! snapshot action (3 minutes at the fake), poll it with the provider's
//! poll policy (15 s doubling to 120 s), take the listing that found the
//! new snapshot's id (`Provider::fresh_listing`, as the prune after a run
//! does) or list again, and delete what `keep_last 24` drops. Slots are
//! spread over the hour the way `H * * * *` spreads them. Every droplet
//! starts with 24 snapshots, so the cycles are steady state from the
//! first; the first hour is a warm-up, the second is counted.
//!
//! Time is tokio's paused clock, moved a second at a time together with
//! the fake's clock, only once every request sent has been answered: two
//! hours of virtual time take seconds to minutes of real time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use snapsched::domain::{RemoteSnapshot, Target};
use snapsched::provider::digitalocean::{DigitalOcean, DigitalOceanSettings};
use snapsched::provider::{
    CreateOutcome, CreateRequest, Operation, PollOutcome, Provider, ProviderError,
};
use snapsched::secret::Secret;
use snapsched_fake_api::digitalocean::{FakeConfig, FakeDigitalOcean, FakeHandle, Resource};

const TOKEN: &str = "dop_v1_bench_fleet_token_0123456789";
const KEEP_LAST: usize = 24;
/// The tag every droplet of the fleet carries.
const TAG: &str = "fleet";
const HOUR: Duration = Duration::from_secs(3600);
/// DigitalOcean's budget per token.
pub const PER_HOUR: u64 = 5_000;

/// One fleet size.
#[derive(Debug, Clone, Serialize)]
pub struct FleetRow {
    pub droplets: usize,
    /// Requests at the fake in the counted hour.
    pub requests_per_hour: u64,
    /// Droplet cycles finished in the counted hour.
    pub cycles: u64,
    /// Requests in the counted hour per droplet: each droplet makes one
    /// cycle an hour.
    pub requests_per_cycle: f64,
    /// By route, in the counted hour.
    pub by_route: BTreeMap<String, u64>,
    /// 429 answers over both hours.
    pub too_many_requests: u64,
    /// Cycles that failed (an error the cycle did not retry away).
    pub failed_cycles: u64,
    pub contract_violations: usize,
    /// Real time the two virtual hours took.
    pub wall_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetResult {
    /// One definition per droplet, each at its own minute (`H * * * *`).
    pub rows: Vec<FleetRow>,
    /// One `tag:` definition over every droplet, all at the same minute.
    pub tag_rows: Vec<FleetRow>,
    /// floor(5,000 / requests per cycle at the largest N measured).
    pub largest_hourly_fleet_per_token: Option<u64>,
    /// The same for the tag definition.
    pub largest_hourly_tag_fleet_per_token: Option<u64>,
    pub note: String,
}

fn request(droplet: u64, slot: &str) -> CreateRequest {
    CreateRequest {
        target: Target::Droplet(droplet),
        disk_id: 1,
        name: format!("fleet-{droplet}-{slot}"),
        note: "snapsched bench".to_owned(),
        fsfreeze: false,
        tags: Vec::new(),
        may_exist: false,
    }
}

/// Counters the droplet tasks share.
#[derive(Default)]
struct Tally {
    cycles: AtomicU64,
    failed: AtomicU64,
}

/// One cycle of one droplet; transient errors are retried after the
/// server's hint or the current wait, as the run engine does.
async fn cycle(p: &DigitalOcean, req: &CreateRequest) -> Result<(), ProviderError> {
    let policy = p.poll_policy();
    let mut retries = 0u32;
    let op = loop {
        match p.create_snapshot(req).await {
            Ok(CreateOutcome::Pending(op)) => break op,
            Ok(CreateOutcome::Done(_)) => return Ok(()),
            Err(e) if e.is_transient() && retries < 20 => {
                retries += 1;
                tokio::time::sleep(e.retry_after.unwrap_or(policy.initial)).await;
            }
            Err(e) => return Err(e),
        }
    };
    finish(p, req, op, retries).await
}

/// The rest of a droplet's cycle once its action `op` runs: poll it, find
/// the new snapshot, delete what `keep_last 24` drops.
async fn finish(
    p: &DigitalOcean,
    req: &CreateRequest,
    op: Operation,
    mut retries: u32,
) -> Result<(), ProviderError> {
    let policy = p.poll_policy();
    let mut wait = policy.initial;
    let made = loop {
        tokio::time::sleep(wait).await;
        match p.poll(req, &op).await {
            Ok(PollOutcome::Done(s)) => break s,
            Ok(PollOutcome::Pending) => wait = (wait * 2).min(policy.max),
            Err(e) if e.is_transient() && retries < 20 => {
                retries += 1;
                wait = e.retry_after.unwrap_or(wait);
            }
            Err(e) => return Err(e),
        }
    };
    let listing = match p.fresh_listing(&req.target, req.disk_id, &made.id) {
        Some(l) => l,
        None => p.list_snapshots(&req.target, req.disk_id).await?,
    };
    let mut own: Vec<RemoteSnapshot> = listing
        .into_iter()
        .filter(|s| s.name.starts_with("fleet-"))
        .collect();
    own.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    let drop: Vec<RemoteSnapshot> = own.into_iter().skip(KEEP_LAST).collect();
    for r in p.delete_snapshots(&req.target, req.disk_id, &drop).await {
        r?;
    }
    Ok(())
}

/// One slot of the tag definition, as its fan-out makes it: list the
/// tagged droplets, start every snapshot with one tag request, create alone
/// for a droplet it left out, then finish each droplet's cycle.
async fn tag_slot(p: &DigitalOcean, name: &str, tally: &Tally) {
    let members = loop {
        match p.tag_members(TAG).await {
            Ok(m) => break m,
            Err(e) if e.is_transient() => {
                tokio::time::sleep(e.retry_after.unwrap_or(Duration::from_secs(15))).await
            }
            Err(_) => return,
        }
    };
    let mut started: BTreeMap<u64, Operation> = match p.snapshot_tag(TAG, name).await {
        Ok(actions) => actions.into_iter().collect(),
        Err(_) => BTreeMap::new(),
    };
    let cycles = members.into_iter().map(|d| {
        let req = CreateRequest {
            name: name.to_owned(),
            ..request(d, "")
        };
        let op = started.remove(&d);
        async move {
            match op {
                Some(op) => finish(p, &req, op, 0).await,
                None => cycle(p, &req).await,
            }
        }
    });
    for ok in futures_util::future::join_all(cycles).await {
        tally.cycles.fetch_add(1, Ordering::Relaxed);
        if ok.is_err() {
            tally.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Move tokio's paused clock and the fake's by `by`, a second at a time,
/// each step only once every request sent has been answered.
async fn run_for(by: Duration, p: &DigitalOcean, fake: &FakeHandle) -> anyhow::Result<()> {
    let step = Duration::from_secs(1);
    let mut moved = Duration::ZERO;
    while moved < by {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            for _ in 0..64 {
                tokio::task::yield_now().await;
            }
            if p.requests_sent() == fake.responses_total() {
                break;
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "a request got no answer within 30 s of real time"
            );
        }
        fake.advance(step);
        tokio::time::advance(step).await;
        moved += step;
    }
    Ok(())
}

/// One fleet of `n` droplets, on a current-thread runtime with tokio's
/// clock paused.
async fn fleet(n: usize, by_tag: bool) -> anyhow::Result<FleetRow> {
    let began = std::time::Instant::now();
    let fake = FakeDigitalOcean::start(FakeConfig {
        token: TOKEN.to_owned(),
        action_duration: Duration::from_secs(180),
        ..FakeConfig::default()
    })
    .await?;
    // Keep the runtime busy so tokio never skips ahead on its own.
    let spinner = tokio::spawn(async {
        loop {
            tokio::task::yield_now().await;
        }
    });
    let start = fake.now();
    for i in 0..n as u64 {
        let id = 1_000_000 + i;
        fake.add_droplet(id, &format!("web-{i}"));
        fake.tag_droplet(id, TAG);
        for h in 1..=KEEP_LAST as i64 {
            let at = start - chrono::Duration::hours(h);
            fake.add_snapshot(
                Resource::Droplet(id),
                &format!("fleet-{id}-{}", at.format("%Y%m%d_%H%M%S")),
                at,
            );
        }
    }
    let mut settings = DigitalOceanSettings::new("do", Secret::new(TOKEN));
    settings.api_url = fake.url().parse()?;
    let p = DigitalOcean::new(settings).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    if by_tag {
        let (p, tally) = (p.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let origin = tokio::time::Instant::now();
            for hour in 0u32.. {
                tokio::time::sleep_until(origin + HOUR * hour).await;
                tag_slot(&p, &format!("fleet-tag-{hour:02}"), &tally).await;
            }
        }));
    }
    for i in (0..n as u64).filter(|_| !by_tag) {
        let (p, tally) = (p.clone(), tally.clone());
        // `H * * * *`: each definition's slot at its own offset in the hour.
        let offset = HOUR.mul_f64(i as f64 / n as f64);
        tasks.push(tokio::spawn(async move {
            let origin = tokio::time::Instant::now();
            for hour in 0u32.. {
                let slot = origin + HOUR * hour + offset;
                tokio::time::sleep_until(slot).await;
                let name = format!("{hour:02}{i:08}");
                let ok = cycle(&p, &request(1_000_000 + i, &name)).await.is_ok();
                tally.cycles.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    tally.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    run_for(HOUR, &p, &fake).await?;
    let before = fake.route_counts();
    let cycles_before = tally.cycles.load(Ordering::Relaxed);
    run_for(HOUR, &p, &fake).await?;
    let after = fake.route_counts();
    // Every cycle is a steady-state one (24 snapshots from the start), so
    // every cycle that ended in the counted hour counts.
    let cycles = tally.cycles.load(Ordering::Relaxed) - cycles_before;
    for t in &tasks {
        t.abort();
    }
    spinner.abort();
    let by_route: BTreeMap<String, u64> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect();
    let requests_per_hour: u64 = by_route.values().sum();
    Ok(FleetRow {
        droplets: n,
        requests_per_hour,
        cycles,
        requests_per_cycle: requests_per_hour as f64 / n.max(1) as f64,
        by_route,
        too_many_requests: fake.responses(429),
        failed_cycles: tally.failed.load(Ordering::Relaxed),
        contract_violations: fake.contract_violations().len(),
        wall_s: began.elapsed().as_secs_f64(),
    })
}

/// Measure each fleet size on its own paused runtime (in a thread of its
/// own, so it does not share the bench's multi-thread runtime).
pub fn measure(sizes: &[usize]) -> anyhow::Result<FleetResult> {
    let mut rows = Vec::new();
    let mut tag_rows = Vec::new();
    for &n in sizes {
        for by_tag in [false, true] {
            let how = if by_tag {
                "one tag definition"
            } else {
                "one definition each"
            };
            eprintln!(
                "fleet: {n} droplets ({how}), hourly, keep_last {KEEP_LAST}, 3-minute actions"
            );
            let row = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .start_paused(true)
                    .build()?;
                rt.block_on(fleet(n, by_tag))
            })
            .join()
            .map_err(|_| anyhow::anyhow!("fleet N={n} panicked"))??;
            if by_tag {
                tag_rows.push(row);
            } else {
                rows.push(row);
            }
        }
    }
    let largest = |rows: &[FleetRow]| {
        rows.iter()
            .max_by_key(|r| r.droplets)
            .filter(|r| r.requests_per_cycle > 0.0)
            .map(|r| (PER_HOUR as f64 / r.requests_per_cycle).floor() as u64)
    };
    Ok(FleetResult {
        largest_hourly_fleet_per_token: largest(&rows),
        largest_hourly_tag_fleet_per_token: largest(&tag_rows),
        rows,
        tag_rows,
        note: "largest hourly fleet per token = floor(5,000 requests/hour / requests per droplet-cycle at the largest N)".to_owned(),
    })
}
