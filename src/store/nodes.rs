//! Node membership and leases (see [`crate::cluster`]).
//!
//! Every time here is the database's clock, in milliseconds since the Unix
//! epoch: a node is expired when its heartbeat is older than the lease by
//! the clock every node reads, whatever the nodes' own clocks say.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::backend::{Args, Backend};
use super::{active_states, parse_ts, ts_ms, Store, StoreError, StoreResult};
use crate::domain::{Identity, Node, NodeInfo, NodeRole, NodeState, Run};

/// The database's clock in milliseconds since the Unix epoch, as SQL.
pub(super) fn now_ms(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)",
        Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[derive(sqlx::FromRow)]
struct NodeRow {
    id: String,
    hostname: String,
    pid: i64,
    version: String,
    role: String,
    state: String,
    started_at: String,
    age_ms: i64,
    runs_held: i64,
}

impl NodeRow {
    fn into_node(self) -> StoreResult<Node> {
        Ok(Node {
            role: NodeRole::parse(&self.role)
                .ok_or_else(|| StoreError::Corrupt(format!("node role '{}'", self.role)))?,
            state: NodeState::parse(&self.state)
                .ok_or_else(|| StoreError::Corrupt(format!("node state '{}'", self.state)))?,
            started_at: parse_ts(&self.started_at)?,
            id: self.id,
            hostname: self.hostname,
            pid: u32::try_from(self.pid).unwrap_or(0),
            version: self.version,
            heartbeat_age_ms: self.age_ms,
            runs_held: self.runs_held,
        })
    }
}

#[derive(sqlx::FromRow)]
struct IdRow {
    id: String,
}

impl Store {
    /// Register `node` as live with a heartbeat of now.
    pub async fn register_node(&self, node: &NodeInfo, now: DateTime<Utc>) -> StoreResult<()> {
        self.pool
            .execute(
                &format!(
                    "INSERT INTO nodes (id, hostname, pid, version, role, started_at, heartbeat_ms, state)
                     VALUES ($1, $2, $3, $4, $5, $6, {}, 'live')",
                    now_ms(self.backend())
                ),
                &Args::new()
                    .text(node.id.as_str())
                    .text(node.hostname.as_str())
                    .int(node.pid)
                    .text(node.version.as_str())
                    .text(node.role.as_str())
                    .text(ts_ms(now)),
            )
            .await?;
        Ok(())
    }

    /// Renew a live node's heartbeat. False when the node is no longer live
    /// (another node declared it expired): it has lost its runs.
    pub async fn renew_node(&self, id: &str) -> StoreResult<bool> {
        let n = self
            .pool
            .execute(
                &format!(
                    "UPDATE nodes SET heartbeat_ms = {} WHERE id = $1 AND state = 'live'",
                    now_ms(self.backend())
                ),
                &Args::new().text(id),
            )
            .await?;
        Ok(n > 0)
    }

    /// Record that a node left cleanly: its unfinished runs may be taken
    /// over at once.
    pub async fn leave_node(&self, id: &str) -> StoreResult<()> {
        self.pool
            .execute(
                "UPDATE nodes SET state = 'stopped' WHERE id = $1 AND state = 'live'",
                &Args::new().text(id),
            )
            .await?;
        Ok(())
    }

    /// Declare expired every live node whose heartbeat is older than `ttl`;
    /// returns their ids.
    pub async fn expire_stale_nodes(&self, ttl: Duration) -> StoreResult<Vec<String>> {
        let rows: Vec<IdRow> = self
            .pool
            .fetch_all(
                &format!(
                    "UPDATE nodes SET state = 'expired'
                     WHERE state = 'live' AND heartbeat_ms < {} - $1 RETURNING id",
                    now_ms(self.backend())
                ),
                &Args::new().int(ms(ttl)),
            )
            .await?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    /// Declare one live node expired (a process on this host that is known
    /// to be gone). True if it was live.
    pub async fn expire_node(&self, id: &str) -> StoreResult<bool> {
        let n = self
            .pool
            .execute(
                "UPDATE nodes SET state = 'expired' WHERE id = $1 AND state = 'live'",
                &Args::new().text(id),
            )
            .await?;
        Ok(n > 0)
    }

    /// Forget nodes that left or expired more than a day ago holding
    /// nothing (part of a member's sweep; reading never writes).
    pub async fn forget_old_nodes(&self) -> StoreResult<u64> {
        let now = now_ms(self.backend());
        let active = active_states();
        self.pool
            .execute(
                &format!(
                    "DELETE FROM nodes WHERE state <> 'live' AND heartbeat_ms < {now} - 86400000
                       AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.owner_node = nodes.id
                                         AND runs.state IN ({active}))"
                ),
                &Args::new(),
            )
            .await
    }

    /// Every node still recorded, oldest first, with its heartbeat age and
    /// the runs it holds. Only reads: a read-only store can answer it.
    pub async fn nodes(&self) -> StoreResult<Vec<Node>> {
        let now = now_ms(self.backend());
        let active = active_states();
        let rows: Vec<NodeRow> = self
            .pool
            .fetch_all(
                &format!(
                    "SELECT id, hostname, pid, version, role, state, started_at,
                            {now} - heartbeat_ms AS age_ms,
                            (SELECT COUNT(*) FROM runs WHERE runs.owner_node = nodes.id
                               AND runs.state IN ({active})) AS runs_held
                     FROM nodes ORDER BY started_at, id"
                ),
                &Args::new(),
            )
            .await?;
        rows.into_iter().map(NodeRow::into_node).collect()
    }

    /// Ids of the daemons whose lease holds now (heartbeat within `ttl`).
    pub async fn live_daemons(&self, ttl: Duration) -> StoreResult<Vec<String>> {
        let rows: Vec<IdRow> = self
            .pool
            .fetch_all(
                &format!(
                    "SELECT id FROM nodes WHERE state = 'live' AND role = 'daemon'
                       AND heartbeat_ms >= {} - $1 ORDER BY id",
                    now_ms(self.backend())
                ),
                &Args::new().int(ms(ttl)),
            )
            .await?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    /// Runs in flight whose owner is not a live node (it stopped, expired,
    /// or the run predates nodes): the runs to take over.
    pub async fn orphaned_runs(&self) -> StoreResult<Vec<Run>> {
        self.runs_where(&format!(
            "state IN ({}) AND (owner_node IS NULL OR owner_node NOT IN
                 (SELECT id FROM nodes WHERE state = 'live'))",
            active_states()
        ))
        .await
    }

    /// Id and definition identity of each run in flight owned by `node`.
    pub async fn run_keys_owned_by(&self, node: &str) -> StoreResult<Vec<(i64, Identity)>> {
        self.run_keys_where_owner(node).await
    }
}
