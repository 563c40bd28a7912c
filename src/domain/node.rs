//! Nodes: the daemons (and CLI processes driving a run) that share a store.

use serde::Serialize;

/// Milliseconds written as seconds with a fraction.
fn ms_as_seconds<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    #[allow(clippy::cast_precision_loss)] // ages are far below 2^52 ms
    s.serialize_f64(*ms as f64 / 1000.0)
}

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
    /// Milliseconds since the last heartbeat, by the store's clock
    /// (`heartbeat_age_seconds` in JSON, like every duration there).
    #[serde(rename = "heartbeat_age_seconds", serialize_with = "ms_as_seconds")]
    pub heartbeat_age_ms: i64,
    /// Runs in flight that this node owns.
    pub runs_held: i64,
}

/// How long a node's heartbeat holds when `[daemon] lease_ttl` does not say.
pub const DEFAULT_LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl Node {
    /// Live by its record, but its heartbeat is older than `ttl`: it stopped
    /// renewing, and the next sweep by another node declares it expired.
    pub fn is_stale(&self, ttl: std::time::Duration) -> bool {
        self.state == NodeState::Live
            && u128::try_from(self.heartbeat_age_ms).unwrap_or(0) > ttl.as_millis()
    }

    /// Live with a fresh heartbeat: the node holds its lease.
    pub fn is_up(&self, ttl: std::time::Duration) -> bool {
        self.state == NodeState::Live && !self.is_stale(ttl)
    }

    /// The first 8 characters of the id, as tables show it.
    pub fn short_id(&self) -> &str {
        short_id(&self.id)
    }
}

/// The first 8 characters of a node id (the whole id when shorter).
pub fn short_id(id: &str) -> &str {
    id.char_indices().nth(8).map_or(id, |(i, _)| &id[..i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn node(state: NodeState, age_ms: i64) -> Node {
        Node {
            id: "0123456789abcdef".into(),
            hostname: "web01".into(),
            pid: 1,
            version: "0".into(),
            role: NodeRole::Daemon,
            state,
            started_at: chrono::DateTime::UNIX_EPOCH,
            heartbeat_age_ms: age_ms,
            runs_held: 0,
        }
    }

    #[test]
    fn a_live_node_past_its_lease_is_stale_and_not_up() {
        let ttl = Duration::from_secs(30);
        let cases = [
            (NodeState::Live, 0, false, true),
            (NodeState::Live, 30_000, false, true),
            (NodeState::Live, 30_001, true, false),
            (NodeState::Stopped, 60_000, false, false),
            (NodeState::Expired, 0, false, false),
        ];
        for (state, age, stale, up) in cases {
            let n = node(state, age);
            assert_eq!(
                (n.is_stale(ttl), n.is_up(ttl)),
                (stale, up),
                "{state:?} {age}"
            );
        }
    }

    #[test]
    fn short_ids_are_eight_characters_at_most() {
        assert_eq!(short_id("0123456789abcdef"), "01234567");
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(short_id("ééééééééé"), "éééééééé");
    }
}
