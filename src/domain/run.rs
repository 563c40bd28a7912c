//! Runs: one attempt to take (or prune) a definition's snapshot for a slot.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::definition::Identity;
use super::hooks::{Consistency, HookState};

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Pending,
    Creating,
    Waiting,
    Pruning,
    Succeeded,
    Failed,
    Skipped,
    Missed,
    Interrupted,
}

impl RunState {
    pub const ACTIVE: [RunState; 4] = [
        RunState::Pending,
        RunState::Creating,
        RunState::Waiting,
        RunState::Pruning,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Creating => "creating",
            RunState::Waiting => "waiting",
            RunState::Pruning => "pruning",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Skipped => "skipped",
            RunState::Missed => "missed",
            RunState::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            RunState::Pending,
            RunState::Creating,
            RunState::Waiting,
            RunState::Pruning,
            RunState::Succeeded,
            RunState::Failed,
            RunState::Skipped,
            RunState::Missed,
            RunState::Interrupted,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        !Self::ACTIVE.contains(&self)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// The slot came.
    Schedule,
    /// The most recent missed slot, run late within the catch-up deadline.
    Catchup,
    /// `snapsched run`.
    Manual,
    /// `snapsched prune`.
    Prune,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Catchup => "catchup",
            Trigger::Manual => "manual",
            Trigger::Prune => "prune",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "schedule" => Some(Trigger::Schedule),
            "catchup" => Some(Trigger::Catchup),
            "manual" => Some(Trigger::Manual),
            "prune" => Some(Trigger::Prune),
            _ => None,
        }
    }
}

/// One run as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub id: i64,
    #[serde(flatten)]
    pub identity: Identity,
    pub slot: DateTime<Utc>,
    pub trigger: Trigger,
    pub state: RunState,
    pub snapshot_name: Option<String>,
    pub snapshot_id: Option<String>,
    pub operation_id: Option<String>,
    pub attempts: u32,
    pub missed_count: Option<u32>,
    pub error_class: Option<String>,
    pub error: Option<String>,
    /// The process driving the run (bookkeeping, not in JSON).
    #[serde(skip)]
    pub owner_pid: Option<u32>,
    /// The node driving the run while it is not final (`node` in JSON).
    #[serde(rename = "node")]
    pub owner_node: Option<String>,
    /// Incremented by every takeover; with `owner_node`, the fencing token
    /// every state change of the run is conditional on (not in JSON).
    #[serde(skip)]
    pub lease_epoch: i64,
    /// How consistent the snapshot is, once its create request was sent.
    pub consistency: Option<Consistency>,
    /// Where the run is with its pre and post hooks (`None`: it has none).
    pub hook_state: Option<HookState>,
    /// The tail of the pre and post hooks' output, each with its exit status.
    pub hook_output: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Run {
    /// Wall time from start to finish, when both are known.
    pub fn duration(&self) -> Option<chrono::Duration> {
        Some(self.finished_at? - self.started_at.unwrap_or(self.created_at))
    }
}

/// The outcome of trying to claim a slot.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// A new pending run.
    Claimed(Run),
    /// This slot already has a run (another process, or before a restart).
    AlreadyRan,
    /// Another run of this definition is in flight.
    Busy(Run),
}

/// The error class of a tag member's run skipped because its droplet left
/// the tag (or was deleted) between the listing and the snapshot.
pub const DEPARTED: &str = "departed";

/// The error class of a run whose post-run prune was blocked by
/// `max_deletes_per_run`; the run itself succeeded.
pub const PRUNE_BLOCKED: &str = "prune_blocked";

/// A duration as people read it in a log or a table: `850ms`, `4.55s`,
/// `12.3s`, then whole seconds (`2m 5s`, `1h 2m 3s`).
pub fn human_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=9_999 => format!("{:.2}s", d.as_secs_f64()),
        10_000..=59_999 => format!("{:.1}s", d.as_secs_f64()),
        _ => humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string(),
    }
}

#[cfg(test)]
mod human_duration_tests {
    use super::human_duration;
    use std::time::Duration;

    #[test]
    fn rounds_for_people() {
        let cases = [
            (Duration::from_millis(0), "0ms"),
            (Duration::from_millis(850), "850ms"),
            (Duration::from_nanos(4_550_783_919), "4.55s"),
            (Duration::from_millis(12_345), "12.3s"),
            (Duration::from_millis(125_900), "2m 5s"),
            (Duration::from_secs(3723), "1h 2m 3s"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(d), want, "{d:?}");
        }
    }
}
