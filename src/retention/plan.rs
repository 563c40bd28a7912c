//! The pure retention planner: which snapshots to keep and which to delete,
//! with the reasons, as a function of the listing, the policy and `now`.
//!
//! Rules, applied to the definition's own ready snapshots (owned, status
//! `ok`) ordered by creation time, then name, then id:
//! - The keep rules ([`Tiers`]: `last` = `retention`, hourly, daily,
//!   weekly, monthly, yearly, within; see [`super::tiers`]): a snapshot no
//!   rule keeps is deleted. With every rule off everything is kept.
//! - `max_age`: snapshots strictly older than it (at `now`) are deleted even
//!   when a rule keeps them.
//! - The newest owned ready snapshot is never deleted by anything.
//!
//! Everything else is kept and never counted: snapshots not owned by the
//! definition, owned ones that are not ready, and held ones.
//!
//! Holds ([`plan_held`]): a held own snapshot is kept with the one reason
//! `held: TEXT`, whatever its status, and is left out of every rule as if
//! it were not there, as restic does with `--keep-tag`: it takes no tier
//! slot, is not "the newest", and `keep_within` measures from the newest
//! snapshot that is not held. So a hold keeps that snapshot *in addition*
//! to what the policy keeps, and releasing it later gives exactly the plan
//! a never-held snapshot would get.
//!
//! Invariants (property-tested): a decision for every input; output order
//! and content do not depend on input order; nothing not owned and nothing
//! held is deleted; planning again after applying a plan deletes nothing
//! more.

use std::cmp::Ordering;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Serialize, Serializer};

use super::ownership::{Candidate, Holds, Ownership};
use super::tiers::{keep_reasons, Tier, Tiers};
use crate::domain::{describe_hold, RemoteSnapshot, SnapshotStatus};

/// A definition's retention settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The keep rules; all off keeps everything.
    pub keep: Tiers,
    /// Own snapshots older than this are deleted even when a rule keeps
    /// them.
    pub max_age: Option<Duration>,
    /// The zone of the calendar buckets: the definition's.
    pub zone: Tz,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            keep: Tiers::default(),
            max_age: None,
            zone: Tz::UTC,
        }
    }
}

impl Policy {
    /// A plain count (`retention`) in UTC, with an optional `max_age`.
    pub fn count(retention: u32, max_age: Option<Duration>) -> Self {
        Policy {
            keep: Tiers {
                last: retention,
                ..Tiers::default()
            },
            max_age,
            zone: Tz::UTC,
        }
    }
}

/// Why a snapshot is kept or deleted. `Display` gives the CLI wording; the
/// JSON form is `{"kind": "...", "text": "...", ...fields}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Held by an operator (`snapsched snapshots hold`): never deleted,
    /// never counted; the hold's reason text (empty for none).
    Held(String),
    /// Not owned by the definition: never counted, never deleted.
    NotManaged(Ownership),
    /// Owned but not ready (being created, rolled back, lost): not counted.
    NotReady(SnapshotStatus),
    /// The newest own ready snapshot, which nothing deletes.
    Newest,
    /// Kept by a counted rule: the `nth` of its `of` buckets (`daily 3/7`).
    Tier { tier: Tier, nth: u32, of: u32 },
    /// Created less than this before the newest own ready snapshot.
    Within(Duration),
    /// Every keep rule is off (`retention = 0` and no tier): keep all.
    NoCountLimit,
    /// Not older than `max_age`.
    WithinMaxAge(Duration),
    /// Older than the newest `retention`, the only rule: delete.
    BeyondRetention(u32),
    /// No keep rule keeps it (with more rules than a count): delete.
    NoRuleKeeps(Tiers),
    /// Older than `max_age`: delete.
    OlderThanMaxAge(Duration),
    /// Owned by a definition being removed with its snapshots: delete,
    /// whatever the retention or the snapshot's status.
    DefinitionRemoved,
}

impl Reason {
    /// Stable machine-readable name of the reason.
    pub fn kind(&self) -> &'static str {
        match self {
            Reason::Held(_) => "held",
            Reason::NotManaged(_) => "not_managed",
            Reason::NotReady(_) => "not_ready",
            Reason::Newest => "newest",
            Reason::Tier { .. } => "tier",
            Reason::Within(_) => "within",
            Reason::NoCountLimit => "no_count_limit",
            Reason::WithinMaxAge(_) => "within_max_age",
            Reason::BeyondRetention(_) => "beyond_retention",
            Reason::NoRuleKeeps(_) => "no_rule_keeps",
            Reason::OlderThanMaxAge(_) => "older_than_max_age",
            Reason::DefinitionRemoved => "definition_removed",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotManaged(Ownership::OtherDefinition) => {
                f.write_str("not managed by this definition (another definition's)")
            }
            Reason::NotManaged(_) => f.write_str("not managed by this definition"),
            Reason::Held(reason) => f.write_str(&describe_hold(reason)),
            Reason::NotReady(status) => write!(f, "not ready ({})", status_str(*status)),
            Reason::Newest => f.write_str("newest ready snapshot"),
            Reason::Tier { tier, nth, of } => write!(f, "{tier} {nth}/{of}"),
            Reason::Within(d) => write!(f, "within {} of the newest", format_duration(*d)),
            Reason::NoCountLimit => f.write_str("retention 0 keeps all"),
            Reason::WithinMaxAge(d) => write!(f, "within max_age {}", format_duration(*d)),
            Reason::BeyondRetention(n) => write!(f, "beyond retention {n}"),
            Reason::NoRuleKeeps(tiers) => write!(f, "kept by no rule ({tiers})"),
            Reason::OlderThanMaxAge(d) => write!(f, "older than max_age {}", format_duration(*d)),
            Reason::DefinitionRemoved => f.write_str("definition removed with --delete-snapshots"),
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("kind", self.kind())?;
        map.serialize_entry("text", &self.to_string())?;
        match self {
            Reason::Held(reason) => map.serialize_entry("hold_reason", reason)?,
            Reason::NotManaged(o) => map.serialize_entry("ownership", o)?,
            Reason::NotReady(s) => map.serialize_entry("status", s)?,
            Reason::BeyondRetention(n) => map.serialize_entry("retention", n)?,
            Reason::Tier { tier, nth, of } => {
                map.serialize_entry("tier", tier)?;
                map.serialize_entry("nth", nth)?;
                map.serialize_entry("of", of)?;
            }
            Reason::Within(d) => {
                map.serialize_entry("within", &format_duration(*d))?;
                map.serialize_entry("within_secs", &d.as_secs())?;
            }
            Reason::NoRuleKeeps(tiers) => map.serialize_entry("rules", tiers)?,
            Reason::WithinMaxAge(d) | Reason::OlderThanMaxAge(d) => {
                map.serialize_entry("max_age", &format_duration(*d))?;
                map.serialize_entry("max_age_secs", &d.as_secs())?;
            }
            Reason::Newest | Reason::NoCountLimit | Reason::DefinitionRemoved => {}
        }
        map.end()
    }
}

fn status_str(status: SnapshotStatus) -> &'static str {
    match status {
        SnapshotStatus::Ok => "ok",
        SnapshotStatus::Pending => "pending",
        SnapshotStatus::Rollback => "rollback",
        SnapshotStatus::Lost => "lost",
    }
}

/// Format a duration compactly in days, hours, minutes and seconds
/// (`90d`, `1d 12h`, `90m`→`1h 30m`). humantime parses the result back;
/// its own formatter would render 90 days as months with a remainder.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return if d.is_zero() {
            "0s".to_string()
        } else {
            format!("{}ms", d.as_millis())
        };
    }
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            parts.push(format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    parts.join(" ")
}

/// The planner's verdict on one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub snapshot: RemoteSnapshot,
    pub ownership: Ownership,
    /// False means delete.
    pub keep: bool,
    /// Why; at least one entry.
    pub reasons: Vec<Reason>,
}

impl Decision {
    /// `keep` or `delete`, as shown in the Action column.
    pub fn action(&self) -> &'static str {
        if self.keep {
            "keep"
        } else {
            "delete"
        }
    }
}

/// Counts of a plan and what it deletes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanSummary {
    pub keep: usize,
    pub delete: usize,
    /// The snapshots to delete, oldest first.
    pub to_delete: Vec<RemoteSnapshot>,
}

impl PlanSummary {
    pub fn from_decisions(decisions: &[Decision]) -> Self {
        let to_delete: Vec<RemoteSnapshot> = decisions
            .iter()
            .filter(|d| !d.keep)
            .map(|d| d.snapshot.clone())
            .collect();
        PlanSummary {
            keep: decisions.len() - to_delete.len(),
            delete: to_delete.len(),
            to_delete,
        }
    }
}

impl fmt::Display for PlanSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} to keep, {} to delete", self.keep, self.delete)
    }
}

/// Plan retention for one definition on one (target, disk).
///
/// Returns one decision per input, ordered by creation time, name, id (then
/// the remaining fields), whatever the input order.
pub fn plan(snapshots: &[Candidate], policy: &Policy, now: DateTime<Utc>) -> Vec<Decision> {
    plan_held(snapshots, &Holds::new(), policy, now)
}

/// [`plan`] with the definition's holds (snapshot name → reason): a held
/// own snapshot is kept and takes no part in any rule (see the module
/// header).
pub fn plan_held(
    snapshots: &[Candidate],
    held: &Holds,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Vec<Decision> {
    let mut sorted: Vec<&Candidate> = snapshots.iter().collect();
    sorted.sort_by(|a, b| total_order(a, b));

    let hold = |c: &Candidate| {
        held.get(&c.snapshot.name)
            .filter(|_| c.ownership.is_owned())
    };
    let ready = |c: &Candidate| {
        c.ownership.is_owned() && c.snapshot.status == SnapshotStatus::Ok && hold(c).is_none()
    };
    let newest_first: Vec<DateTime<Utc>> = sorted
        .iter()
        .rev()
        .filter(|c| ready(c))
        .map(|c| c.snapshot.created_at)
        .collect();
    let owned_ready = newest_first.len();
    // Indexed oldest first, as the ready snapshots are met below.
    let mut rule_reasons = keep_reasons(&newest_first, &policy.keep, policy.zone);
    rule_reasons.reverse();
    let mut rule_reasons = rule_reasons.into_iter();
    // A max_age too large for chrono cannot be exceeded.
    let max_age = policy
        .max_age
        .and_then(|d| TimeDelta::from_std(d).ok().map(|td| (d, td)));

    let mut ready_index = 0usize;
    sorted
        .into_iter()
        .map(|c| {
            let (keep, reasons) = if !c.ownership.is_owned() {
                (true, vec![Reason::NotManaged(c.ownership)])
            } else if let Some(reason) = hold(c) {
                (true, vec![Reason::Held(reason.clone())])
            } else if c.snapshot.status != SnapshotStatus::Ok {
                (true, vec![Reason::NotReady(c.snapshot.status)])
            } else {
                let newest = ready_index + 1 == owned_ready;
                ready_index += 1;
                let rules = rule_reasons.next().unwrap_or_default();
                let too_old = max_age
                    .filter(|(_, td)| now.signed_duration_since(c.snapshot.created_at) > *td)
                    .map(|(d, _)| d);
                decide_ready(newest, rules, too_old, policy)
            };
            Decision {
                snapshot: c.snapshot.clone(),
                ownership: c.ownership,
                keep,
                reasons,
            }
        })
        .collect()
}

/// Plan the removal of a definition with its snapshots (`def rm
/// --delete-snapshots`): every owned snapshot is deleted, ready or not;
/// nothing else is touched. Same order as [`plan`].
pub fn plan_removal(snapshots: &[Candidate]) -> Vec<Decision> {
    plan_removal_held(snapshots, &Holds::new())
}

/// [`plan_removal`] that keeps the held own snapshots.
pub fn plan_removal_held(snapshots: &[Candidate], held: &Holds) -> Vec<Decision> {
    let mut sorted: Vec<&Candidate> = snapshots.iter().collect();
    sorted.sort_by(|a, b| total_order(a, b));
    sorted
        .into_iter()
        .map(|c| {
            let owned = c.ownership.is_owned();
            let hold = held.get(&c.snapshot.name).filter(|_| owned);
            Decision {
                snapshot: c.snapshot.clone(),
                ownership: c.ownership,
                keep: !owned || hold.is_some(),
                reasons: vec![match hold {
                    Some(reason) => Reason::Held(reason.clone()),
                    None if owned => Reason::DefinitionRemoved,
                    None => Reason::NotManaged(c.ownership),
                }],
            }
        })
        .collect()
}

/// The verdict on one own ready snapshot, given the keep rules that keep
/// it (`rules`) and whether it is older than `max_age`.
fn decide_ready(
    newest: bool,
    rules: Vec<Reason>,
    too_old: Option<Duration>,
    policy: &Policy,
) -> (bool, Vec<Reason>) {
    if newest {
        // Why it is kept matters more than the rules it would break, but
        // show both so that an old newest snapshot is not a surprise.
        let mut reasons = vec![Reason::Newest];
        reasons.extend(rules);
        reasons.extend(too_old.map(Reason::OlderThanMaxAge));
        return (true, reasons);
    }

    let rules = if policy.keep.is_off() {
        vec![Reason::NoCountLimit]
    } else {
        rules
    };
    if rules.is_empty() {
        let mut delete = vec![if policy.keep.is_count_only() {
            Reason::BeyondRetention(policy.keep.last)
        } else {
            Reason::NoRuleKeeps(policy.keep)
        }];
        delete.extend(too_old.map(Reason::OlderThanMaxAge));
        return (false, delete);
    }
    if let Some(d) = too_old {
        return (false, vec![Reason::OlderThanMaxAge(d)]);
    }
    let mut keep = rules;
    keep.extend(policy.max_age.map(Reason::WithinMaxAge));
    (true, keep)
}

/// A total order on candidates so that the plan never depends on the
/// listing's order, even for duplicate names (DigitalOcean allows them).
fn total_order(a: &Candidate, b: &Candidate) -> Ordering {
    let (x, y) = (&a.snapshot, &b.snapshot);
    x.created_at
        .cmp(&y.created_at)
        .then_with(|| x.name.cmp(&y.name))
        .then_with(|| x.id.cmp(&y.id))
        .then_with(|| a.ownership.cmp(&b.ownership))
        .then_with(|| status_rank(x.status).cmp(&status_rank(y.status)))
        .then_with(|| x.size_bytes.cmp(&y.size_bytes))
        .then_with(|| x.note.cmp(&y.note))
}

fn status_rank(status: SnapshotStatus) -> u8 {
    match status {
        SnapshotStatus::Ok => 0,
        SnapshotStatus::Pending => 1,
        SnapshotStatus::Rollback => 2,
        SnapshotStatus::Lost => 3,
    }
}
