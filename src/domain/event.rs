//! Notification events: what the webhook receives, and the rule that decides
//! which finished runs produce one.
//!
//! Every event is one JSON object ([`Event`]) with the same envelope
//! (`schema`, `event_id`, `event`, `occurred_at`, `summary`, `definition`,
//! `node`) and the parts its kind needs (`run`, `snapshot`, `failures`).
//! README *Notifications* documents the fields; a change here is a change of
//! that documented schema.
//!
//! The rate limit ([`on_run_end`]) is per definition identity: the first
//! failed run of a definition that is not failing sends `run_failed` and
//! makes it failing; further failures while it is failing only count; its
//! first succeeded run sends `run_recovered` and clears the state. So a
//! flapping definition sends at most one failure notice per recovery.
//!
//! Nothing here ever holds a secret: the payload is built from the run row
//! and the snapshot record only (provider error messages carry no secret by
//! the provider contract), never from configuration.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::definition::Identity;
use super::run::{Run, RunState, Trigger};

/// The version of the payload's shape; bumped by an incompatible change.
pub const SCHEMA: u32 = 1;

/// The error class a succeeded run carries when its post-run prune was
/// blocked by `max_deletes_per_run` (the run engine's `PRUNE_BLOCKED`).
pub const PRUNE_BLOCKED_CLASS: &str = "prune_blocked";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A run ended failed or interrupted (after its last retry), and its
    /// definition was not already failing.
    RunFailed,
    /// The first succeeded run of a failing definition.
    RunRecovered,
    /// A run succeeded but its prune was blocked by `max_deletes_per_run`.
    PruneBlocked,
    /// A recorded snapshot the provider no longer lists (deleted outside
    /// snapsched).
    SnapshotGone,
}

impl EventKind {
    pub const ALL: [EventKind; 4] = [
        EventKind::RunFailed,
        EventKind::RunRecovered,
        EventKind::PruneBlocked,
        EventKind::SnapshotGone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RunFailed => "run_failed",
            EventKind::RunRecovered => "run_recovered",
            EventKind::PruneBlocked => "prune_blocked",
            EventKind::SnapshotGone => "snapshot_gone",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The definition an event is about: its whole identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DefinitionRef {
    pub name: String,
    pub provider: String,
    pub target: String,
    pub disk: u32,
}

impl From<&Identity> for DefinitionRef {
    fn from(id: &Identity) -> Self {
        DefinitionRef {
            name: id.name.clone(),
            provider: id.provider.clone(),
            target: id.target.clone(),
            disk: id.disk_id,
        }
    }
}

/// The node (process) that recorded the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRef {
    pub id: Option<String>,
    pub hostname: String,
}

/// A run as an event shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInfo {
    pub id: i64,
    pub slot: DateTime<Utc>,
    pub trigger: Trigger,
    /// The final state: `succeeded`, `failed` or `interrupted`.
    pub result: RunState,
    /// `permanent`, `transient`, `prune_blocked`, `prune`, or null.
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub snapshot_name: Option<String>,
    pub snapshot_id: Option<String>,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// From start (the first create attempt) to finish.
    pub duration_seconds: Option<f64>,
    /// From the run's claim to finish, waiting for a permit included.
    pub total_seconds: Option<f64>,
}

fn seconds(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

impl From<&Run> for RunInfo {
    fn from(r: &Run) -> Self {
        RunInfo {
            id: r.id,
            slot: r.slot,
            trigger: r.trigger,
            result: r.state,
            error_class: r.error_class.clone(),
            error: r.error.clone(),
            snapshot_name: r.snapshot_name.clone(),
            snapshot_id: r.snapshot_id.clone(),
            attempts: r.attempts,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            duration_seconds: r.finished_at.zip(r.started_at).map(|(f, s)| seconds(f - s)),
            total_seconds: r.finished_at.map(|f| seconds(f - r.created_at)),
        }
    }
}

/// A snapshot as a `snapshot_gone` event shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    pub name: String,
    pub id: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    /// The run that made it, when snapsched made it.
    pub run_id: Option<i64>,
}

/// The failures a `run_recovered` event ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failures {
    /// Failed runs since the definition became failing.
    pub count: u32,
    /// When the first of them finished.
    pub since: DateTime<Utc>,
    pub first_run_id: i64,
}

/// One notification, as POSTed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub schema: u32,
    pub event_id: String,
    pub event: EventKind,
    pub occurred_at: DateTime<Utc>,
    /// One line for humans (chat receivers can show it as is).
    pub summary: String,
    pub definition: DefinitionRef,
    pub node: NodeRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<RunInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failures: Option<Failures>,
}

impl Event {
    fn new(
        kind: EventKind,
        id: &Identity,
        node: NodeRef,
        at: DateTime<Utc>,
        summary: String,
    ) -> Self {
        Event {
            schema: SCHEMA,
            event_id: uuid::Uuid::new_v4().to_string(),
            event: kind,
            occurred_at: at,
            summary,
            definition: id.into(),
            node,
            run: None,
            snapshot: None,
            failures: None,
        }
    }

    /// A run event of `kind` about `run` (final).
    pub fn of_run(kind: EventKind, run: &Run, node: NodeRef, failures: Option<Failures>) -> Self {
        let at = run.finished_at.unwrap_or(run.updated_at);
        let id = &run.identity;
        let summary = match kind {
            EventKind::RunFailed => format!(
                "snapsched: {} on {} {} disk {}: run {} {}: {}",
                id.name,
                id.provider,
                id.target,
                id.disk_id,
                run.id,
                run.state,
                run.error.as_deref().unwrap_or("no error recorded")
            ),
            EventKind::RunRecovered => format!(
                "snapsched: {} on {} {} disk {} recovered: run {} succeeded after {} failed run(s)",
                id.name,
                id.provider,
                id.target,
                id.disk_id,
                run.id,
                failures.as_ref().map_or(0, |f| f.count)
            ),
            EventKind::PruneBlocked | EventKind::SnapshotGone => format!(
                "snapsched: {} on {} {} disk {}: run {}: {}",
                id.name,
                id.provider,
                id.target,
                id.disk_id,
                run.id,
                run.error.as_deref().unwrap_or("prune blocked")
            ),
        };
        Event {
            run: Some(run.into()),
            failures,
            ..Event::new(kind, id, node, at, summary)
        }
    }

    /// A `snapshot_gone` event.
    pub fn snapshot_gone(
        id: &Identity,
        snapshot: SnapshotInfo,
        node: NodeRef,
        at: DateTime<Utc>,
    ) -> Self {
        let summary = format!(
            "snapsched: {} on {} {} disk {}: snapshot {} is no longer listed by the provider (deleted outside snapsched)",
            id.name, id.provider, id.target, id.disk_id, snapshot.name
        );
        Event {
            snapshot: Some(snapshot),
            ..Event::new(EventKind::SnapshotGone, id, node, at, summary)
        }
    }
}

/// A definition's failing state, as the store keeps it between runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failing {
    pub since: DateTime<Utc>,
    pub first_run_id: i64,
    pub failures: u32,
}

/// What a finished run does to its definition's failing state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailingChange {
    Keep,
    Set(Failing),
    Clear,
}

/// The rate-limit rule: the events a final `run` produces and the new
/// failing state of its definition, given the current one.
///
/// - Prune runs (`snapsched prune`) and runs not final produce nothing.
/// - `failed` or `interrupted`: `run_failed` if the definition is not
///   failing (it becomes failing, count 1); else nothing (count + 1).
/// - `succeeded`: `run_recovered` (with the failures it ends) if failing,
///   and the state clears; `prune_blocked` as well when its error class
///   says the prune was blocked.
pub fn on_run_end(failing: Option<&Failing>, run: &Run) -> (Vec<EventKind>, FailingChange) {
    if run.trigger == Trigger::Prune {
        return (Vec::new(), FailingChange::Keep);
    }
    let at = run.finished_at.unwrap_or(run.updated_at);
    match run.state {
        RunState::Failed | RunState::Interrupted => match failing {
            None => (
                vec![EventKind::RunFailed],
                FailingChange::Set(Failing {
                    since: at,
                    first_run_id: run.id,
                    failures: 1,
                }),
            ),
            Some(f) => (
                Vec::new(),
                FailingChange::Set(Failing {
                    failures: f.failures.saturating_add(1),
                    ..f.clone()
                }),
            ),
        },
        RunState::Succeeded => {
            let mut events = Vec::new();
            let mut change = FailingChange::Keep;
            if failing.is_some() {
                events.push(EventKind::RunRecovered);
                change = FailingChange::Clear;
            }
            if run.error_class.as_deref() == Some(PRUNE_BLOCKED_CLASS) {
                events.push(EventKind::PruneBlocked);
            }
            (events, change)
        }
        _ => (Vec::new(), FailingChange::Keep),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn run(id: i64, state: RunState, class: Option<&str>) -> Run {
        let t = Utc.with_ymd_and_hms(2026, 3, 1, 3, 0, 0).unwrap();
        Run {
            id,
            identity: Identity {
                provider: "do".into(),
                target: "droplet:1".into(),
                disk_id: 1,
                name: "web".into(),
            },
            slot: t,
            trigger: Trigger::Schedule,
            state,
            snapshot_name: Some("web-20260301_030000".into()),
            snapshot_id: None,
            operation_id: None,
            attempts: 1,
            missed_count: None,
            error_class: class.map(str::to_owned),
            error: class.map(|c| format!("{c} error")),
            owner_pid: None,
            owner_node: Some("n1".into()),
            lease_epoch: 1,
            consistency: None,
            hook_state: None,
            hook_output: None,
            created_at: t,
            started_at: Some(t + chrono::Duration::seconds(1)),
            updated_at: t + chrono::Duration::seconds(91),
            finished_at: Some(t + chrono::Duration::seconds(91)),
        }
    }

    /// Feed a sequence of run results through the rule, returning every
    /// event in order.
    fn replay(states: &[(RunState, Option<&str>)]) -> Vec<EventKind> {
        let mut failing: Option<Failing> = None;
        let mut out = Vec::new();
        for (i, (state, class)) in states.iter().enumerate() {
            let (events, change) = on_run_end(failing.as_ref(), &run(i as i64 + 1, *state, *class));
            out.extend(events);
            match change {
                FailingChange::Keep => {}
                FailingChange::Set(f) => failing = Some(f),
                FailingChange::Clear => failing = None,
            }
        }
        out
    }

    #[test]
    fn three_failures_then_a_success_send_one_failure_and_one_recovery() {
        use RunState::*;
        let p = Some("permanent");
        assert_eq!(
            replay(&[
                (Failed, p),
                (Failed, p),
                (Interrupted, p),
                (Succeeded, None)
            ]),
            [EventKind::RunFailed, EventKind::RunRecovered]
        );
    }

    #[test]
    fn a_flapping_definition_sends_one_failure_per_recovery() {
        use RunState::*;
        let p = Some("permanent");
        assert_eq!(
            replay(&[
                (Succeeded, None),
                (Failed, p),
                (Succeeded, None),
                (Succeeded, None),
                (Failed, p),
                (Failed, p),
            ]),
            [
                EventKind::RunFailed,
                EventKind::RunRecovered,
                EventKind::RunFailed
            ]
        );
    }

    #[test]
    fn a_blocked_prune_is_reported_on_a_succeeded_run_and_ends_a_failure() {
        use RunState::*;
        assert_eq!(
            replay(&[(Succeeded, Some(PRUNE_BLOCKED_CLASS))]),
            [EventKind::PruneBlocked]
        );
        assert_eq!(
            replay(&[
                (Failed, Some("permanent")),
                (Succeeded, Some(PRUNE_BLOCKED_CLASS))
            ]),
            [
                EventKind::RunFailed,
                EventKind::RunRecovered,
                EventKind::PruneBlocked
            ]
        );
        // A prune that failed (not blocked) is no event of its own.
        assert!(replay(&[(Succeeded, Some("prune"))]).is_empty());
    }

    #[test]
    fn prune_runs_and_unfinished_runs_change_nothing() {
        let mut r = run(1, RunState::Failed, Some("permanent"));
        r.trigger = Trigger::Prune;
        assert_eq!(on_run_end(None, &r), (Vec::new(), FailingChange::Keep));
        let r = run(2, RunState::Waiting, None);
        assert_eq!(on_run_end(None, &r), (Vec::new(), FailingChange::Keep));
    }

    #[test]
    fn the_failing_state_counts_failures_from_the_first() {
        let first = run(7, RunState::Failed, Some("permanent"));
        let (_, change) = on_run_end(None, &first);
        let FailingChange::Set(f) = change else {
            panic!("not set: {change:?}")
        };
        assert_eq!((f.first_run_id, f.failures), (7, 1));
        let (events, change) = on_run_end(Some(&f), &run(8, RunState::Failed, Some("transient")));
        assert!(events.is_empty());
        assert_eq!(
            change,
            FailingChange::Set(Failing {
                failures: 2,
                ..f.clone()
            })
        );
    }

    #[test]
    fn a_run_event_serialises_the_documented_fields() {
        let r = run(5, RunState::Failed, Some("permanent"));
        let node = NodeRef {
            id: Some("n1".into()),
            hostname: "host1".into(),
        };
        let e = Event::of_run(EventKind::RunFailed, &r, node, None);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["schema"], 1);
        assert_eq!(v["event"], "run_failed");
        assert_eq!(v["definition"]["name"], "web");
        assert_eq!(v["definition"]["disk"], 1);
        assert_eq!(v["run"]["id"], 5);
        assert_eq!(v["run"]["result"], "failed");
        assert_eq!(v["run"]["trigger"], "schedule");
        assert_eq!(v["run"]["error_class"], "permanent");
        assert_eq!(v["run"]["duration_seconds"], 90.0);
        assert_eq!(v["run"]["total_seconds"], 91.0);
        assert_eq!(v["node"]["hostname"], "host1");
        assert!(v.get("failures").is_none(), "{v}");
        assert!(v["summary"].as_str().unwrap().contains("permanent error"));
        assert!(uuid::Uuid::parse_str(v["event_id"].as_str().unwrap()).is_ok());
    }
}
