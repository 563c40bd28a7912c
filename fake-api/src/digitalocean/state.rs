//! The fake's world: droplets, volumes, snapshots, actions, tags, its
//! clock, injected faults and the counters tests assert on.
//!
//! Invariants: a droplet has at most one in-progress action; actions are
//! settled lazily against the fake clock (`settle`) before every read, so
//! advancing the clock is all it takes to finish one; droplet snapshot ids
//! are integers, volume snapshot ids UUIDs.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

/// One injected misbehaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and a DigitalOcean error body.
    Status(u16),
    /// A burst-limit 429 with `retry-after: seconds`.
    TooManyRequests { retry_after: u64 },
    /// Wait this long (real time) before answering normally.
    Delay(Duration),
    /// Do the work, then wait this long (real time) before answering: the
    /// request has taken effect even if the client dies waiting.
    SlowAnswer(Duration),
    /// Send the status line, then cut the connection mid-body.
    DropConnection,
    /// Answer with this status and this body verbatim (e.g. a proxy's HTML
    /// page); not checked against the contract.
    Raw { status: u16, body: String },
}

/// Apply `fault` to the next `times` requests on `route`
/// (`"GET /v2/actions/{action_id}"`), or on any route when `None`.
#[derive(Debug, Clone)]
pub struct FaultRule {
    pub route: Option<String>,
    pub fault: Fault,
    pub times: u32,
}

impl FaultRule {
    pub fn new(route: Option<&str>, fault: Fault, times: u32) -> Self {
        FaultRule {
            route: route.map(str::to_owned),
            fault,
            times,
        }
    }
}

/// A snapshot as the fake stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeSnapshot {
    /// Integer for droplet snapshots, UUID for volume snapshots.
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub resource: Resource,
    pub tags: Vec<String>,
    /// Regions the snapshot is available in: where it was made, then each
    /// region an image transfer reached ([`super::images`]).
    pub regions: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Droplet(u64),
    Volume(Uuid),
}

#[derive(Debug, Clone)]
pub(crate) struct Action {
    pub id: u64,
    pub droplet: u64,
    pub name: String,
    pub started_at: DateTime<Utc>,
    pub completes_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub status: &'static str,
    pub fails: bool,
    /// An image transfer (`droplet` is then 0) rather than a droplet
    /// snapshot action.
    pub transfer: Option<super::images::Transfer>,
}

/// The fake's clock: frozen at start (plus what tests advance), or running
/// in real time for the standalone server.
#[derive(Debug)]
pub(crate) struct Clock {
    start_wall: DateTime<Utc>,
    start: std::time::Instant,
    real_time: bool,
    offset: Duration,
}

impl Clock {
    pub fn new(real_time: bool) -> Self {
        Clock {
            // Frozen clocks start on a whole second for readable tests; a
            // real-time clock must not run up to a second behind the wall.
            start_wall: if real_time {
                Utc::now()
            } else {
                Utc::now().trunc_subsecs(0)
            },
            start: std::time::Instant::now(),
            real_time,
            offset: Duration::ZERO,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        let run = if self.real_time {
            self.start.elapsed()
        } else {
            Duration::ZERO
        };
        self.start_wall + chrono::Duration::from_std(run + self.offset).unwrap_or_default()
    }

    pub fn advance(&mut self, by: Duration) {
        self.offset += by;
    }
}

pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[derive(Debug)]
pub(crate) struct State {
    pub token: String,
    pub clock: Clock,
    pub action_duration: Duration,
    pub region: String,
    pub per_minute: u32,
    pub per_hour: u32,
    pub droplets: BTreeMap<u64, String>,
    /// Tags on droplets (`tags.rs`); a droplet without tags has no entry.
    pub droplet_tags: BTreeMap<u64, BTreeSet<String>>,
    /// Droplets a test locked: they refuse actions like a busy droplet.
    pub locked_droplets: BTreeSet<u64>,
    pub volumes: BTreeMap<Uuid, String>,
    pub snapshots: Vec<FakeSnapshot>,
    pub actions: BTreeMap<u64, Action>,
    pub tags: BTreeSet<String>,
    pub next_action: u64,
    pub next_image: u64,
    pub fail_next_actions: u32,
    pub faults: Vec<FaultRule>,
    /// Times of requests counted against the rate limit.
    pub hits: VecDeque<DateTime<Utc>>,
    pub by_route: BTreeMap<String, u64>,
    pub by_status: HashMap<u16, u64>,
    pub violations: Vec<String>,
    /// Image transfers' own settings and faults.
    pub images: super::images::Images,
}

impl State {
    pub fn new(
        token: String,
        action_duration: Duration,
        real_time: bool,
        per_minute: u32,
        per_hour: u32,
    ) -> Self {
        State {
            token,
            clock: Clock::new(real_time),
            action_duration,
            region: "nyc3".to_owned(),
            per_minute,
            per_hour,
            droplets: BTreeMap::new(),
            droplet_tags: BTreeMap::new(),
            locked_droplets: BTreeSet::new(),
            volumes: BTreeMap::new(),
            snapshots: Vec::new(),
            actions: BTreeMap::new(),
            tags: BTreeSet::new(),
            next_action: 36_804_636,
            next_image: 6_372_321,
            fail_next_actions: 0,
            faults: Vec::new(),
            hits: VecDeque::new(),
            by_route: BTreeMap::new(),
            by_status: HashMap::new(),
            violations: Vec::new(),
            images: super::images::Images::default(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Finish every action whose time has come.
    pub fn settle(&mut self) {
        let now = self.now();
        let mut made = Vec::new();
        let mut transferred = Vec::new();
        for a in self.actions.values_mut() {
            if a.status != "in-progress" || a.completes_at > now {
                continue;
            }
            a.completed_at = Some(a.completes_at);
            if let Some(t) = &a.transfer {
                a.status = if a.fails { "errored" } else { "completed" };
                if !a.fails {
                    transferred.push(t.clone());
                }
            } else if a.fails {
                a.status = "errored";
            } else {
                a.status = "completed";
                made.push((a.droplet, a.name.clone(), a.started_at));
            }
        }
        for (droplet, name, started) in made {
            let id = self.next_image;
            self.next_image += 1;
            self.snapshots.push(FakeSnapshot {
                id: id.to_string(),
                name,
                created_at: started,
                resource: Resource::Droplet(droplet),
                tags: Vec::new(),
                regions: vec![self.region.clone()],
            });
        }
        for t in transferred {
            super::images::arrived(self, &t);
        }
    }

    pub fn pending_action(&self, droplet: u64) -> Option<&Action> {
        self.actions
            .values()
            .find(|a| a.droplet == droplet && a.transfer.is_none() && a.status == "in-progress")
    }

    pub fn start_action(&mut self, droplet: u64, name: String) -> Action {
        let id = self.next_action;
        self.next_action += 1;
        let now = self.now();
        let fails = self.fail_next_actions > 0;
        if fails {
            self.fail_next_actions -= 1;
        }
        let action = Action {
            id,
            droplet,
            name,
            started_at: now,
            completes_at: now
                + chrono::Duration::from_std(self.action_duration).unwrap_or_default(),
            completed_at: None,
            status: "in-progress",
            fails,
            transfer: None,
        };
        self.actions.insert(id, action.clone());
        action
    }

    pub fn add_snapshot(
        &mut self,
        resource: Resource,
        name: String,
        created_at: DateTime<Utc>,
    ) -> String {
        let id = match resource {
            Resource::Droplet(_) => {
                let id = self.next_image;
                self.next_image += 1;
                id.to_string()
            }
            Resource::Volume(_) => Uuid::new_v4().to_string(),
        };
        self.snapshots.push(FakeSnapshot {
            id: id.clone(),
            name,
            created_at: created_at.trunc_subsecs(0),
            resource,
            tags: Vec::new(),
            regions: vec![self.region.clone()],
        });
        id
    }

    /// Take the fault that applies to this request, if any.
    pub fn take_fault(&mut self, route: &str) -> Option<Fault> {
        let idx = self
            .faults
            .iter()
            .position(|r| r.times > 0 && r.route.as_deref().is_none_or(|x| x == route))?;
        let rule = &mut self.faults[idx];
        rule.times -= 1;
        let fault = rule.fault.clone();
        if rule.times == 0 {
            self.faults.remove(idx);
        }
        Some(fault)
    }

    /// Count this request against the sliding windows, or say how long the
    /// caller must wait.
    pub fn admit(&mut self) -> Result<(), u64> {
        let now = self.now();
        let hour = chrono::Duration::hours(1);
        let minute = chrono::Duration::minutes(1);
        while self.hits.front().is_some_and(|t| now - *t >= hour) {
            self.hits.pop_front();
        }
        let in_minute: Vec<_> = self.hits.iter().filter(|t| now - **t < minute).collect();
        if in_minute.len() >= self.per_minute as usize {
            let oldest = *in_minute[0];
            return Err(((oldest + minute - now).num_seconds()).max(1) as u64);
        }
        if self.hits.len() >= self.per_hour as usize {
            let oldest = self.hits[0];
            return Err(((oldest + hour - now).num_seconds()).max(1) as u64);
        }
        self.hits.push_back(now);
        Ok(())
    }

    /// `ratelimit-limit`, `ratelimit-remaining`, `ratelimit-reset`.
    pub fn rate_headers(&self) -> (u64, u64, i64) {
        let now = self.now();
        let used = self.hits.len() as u64;
        let reset = self
            .hits
            .front()
            .map(|t| *t + chrono::Duration::hours(1))
            .unwrap_or(now)
            .timestamp();
        (
            u64::from(self.per_hour),
            u64::from(self.per_hour).saturating_sub(used),
            reset,
        )
    }

    pub fn region_json(&self) -> Value {
        json!({
            "name": "New York 3",
            "slug": self.region,
            "features": ["backups", "ipv6", "metadata"],
            "available": true,
            "sizes": ["s-1vcpu-1gb"],
        })
    }

    pub fn action_json(&self, a: &Action) -> Value {
        if let Some(t) = &a.transfer {
            return super::images::transfer_json(self, a, t);
        }
        json!({
            "id": a.id,
            "status": a.status,
            "type": "snapshot",
            "started_at": ts(a.started_at),
            "completed_at": a.completed_at.map(ts),
            "resource_id": a.droplet,
            "resource_type": "droplet",
            "region": self.region_json(),
            "region_slug": self.region,
        })
    }

    pub fn snapshot_json(&self, s: &FakeSnapshot) -> Value {
        match s.resource {
            Resource::Droplet(_) => json!({
                "id": s.id.parse::<u64>().unwrap_or_default(),
                "name": s.name,
                "created_at": ts(s.created_at),
                "regions": s.regions,
                "min_disk_size": 25,
                "size_gigabytes": 2.34,
                "type": "snapshot",
            }),
            Resource::Volume(v) => json!({
                "id": s.id,
                "name": s.name,
                "created_at": ts(s.created_at),
                "regions": s.regions,
                "min_disk_size": 10,
                "size_gigabytes": 0.5,
                "resource_id": v.to_string(),
                "resource_type": "volume",
                "tags": s.tags,
            }),
        }
    }
}
