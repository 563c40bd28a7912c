//! Nodes: the daemons (and CLI processes driving a run) that share a store.

use serde::Serialize;

/// What a node says about itself when it joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Unique per process start; never reused, so it doubles as a fencing
    /// token for the runs the node owns.
    pub id: String,
    pub hostname: String,
    pub pid: u32,
    pub version: String,
    pub role: NodeRole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    Daemon,
    Cli,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Daemon => "daemon",
            NodeRole::Cli => "cli",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "daemon" => Some(NodeRole::Daemon),
            "cli" => Some(NodeRole::Cli),
            _ => None,
        }
    }
}

/// A node's membership as the store records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Renewing its heartbeat (or, if the heartbeat is older than the lease,
    /// about to be declared expired).
    Live,
    /// Left cleanly.
    Stopped,
    /// Declared dead by another node; its runs were or will be taken over.
    Expired,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Live => "live",
            NodeState::Stopped => "stopped",
            NodeState::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "live" => Some(NodeState::Live),
            "stopped" => Some(NodeState::Stopped),
            "expired" => Some(NodeState::Expired),
            _ => None,
        }
    }
}

/// One node as listed by `snapsched nodes`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    pub id: String,
    pub hostname: String,
    pub pid: u32,
    pub version: String,
    pub role: NodeRole,
    pub state: NodeState,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Milliseconds since the last heartbeat, by the store's clock.
    pub heartbeat_age_ms: i64,
    /// Runs in flight that this node owns.
    pub runs_held: i64,
}
