//! Cluster gauges re-read from the store: every node it lists, and whether
//! the store answered at all.
//!
//! - `snapsched_node_up{node,hostname,role}`: 1 for a node holding its
//!   lease (live, heartbeat within the lease ttl), 0 for one still listed
//!   that is stale, expired or stopped. The store forgets a node a day
//!   after it stopped or expired (if it holds nothing), and the series
//!   idles out of `/metrics` 10 minutes later.
//! - `snapsched_node_heartbeat_age_seconds{node,hostname}` and
//!   `snapsched_node_runs_held{node,hostname}`.
//! - `snapsched_store_up`: 1 when the latest read succeeded, 0 when it
//!   failed (the database unreachable, or not answering).
//!
//! Refreshed every [`REFRESH_EVERY`], a couple of cheap queries: a node's
//! death shows within a lease ttl plus one refresh. A change of the store's
//! reachability is logged once, not on every refresh.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::metrics;
use crate::domain::Node;
use crate::store::{Store, StoreError, StoreResult};

/// How often [`start`]'s task re-reads the nodes.
pub const REFRESH_EVERY: Duration = Duration::from_secs(15);

/// Set the gauges from one read of the store: every node, judged against
/// the lease `ttl`, and `snapsched_store_up`.
pub fn publish(read: Result<&[Node], &StoreError>, ttl: Duration) {
    match read {
        Ok(nodes) => {
            metrics::store_up(true);
            for node in nodes {
                metrics::node_status(node, node.is_up(ttl));
            }
        }
        Err(_) => metrics::store_up(false),
    }
}

/// Read the nodes and [`publish`] them; the number of nodes listed.
pub async fn refresh(store: &Store, ttl: Duration) -> StoreResult<usize> {
    let read = store.nodes().await;
    publish(read.as_ref().map(Vec::as_slice), ttl);
    read.map(|nodes| nodes.len())
}

/// Publish the gauges now, then every [`REFRESH_EVERY`] until `shutdown`,
/// in a background task. The first refresh is awaited so the first scrape
/// after start shows them; a store that fails it does not stop the daemon.
pub async fn start(store: Store, ttl: Duration, shutdown: CancellationToken) {
    let mut was_up = true;
    let mut observe = move |result: StoreResult<usize>, shutdown: &CancellationToken| {
        match &result {
            Ok(_) if !was_up => tracing::info!("the store answers again"),
            // At shutdown the store closes under a refresh in flight.
            Err(e) if was_up && !shutdown.is_cancelled() => {
                tracing::error!("the store does not answer: {e}")
            }
            _ => {}
        }
        was_up = result.is_ok();
    };
    observe(refresh(&store, ttl).await, &shutdown);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(REFRESH_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate and the refresh above covered it.
        every.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = every.tick() => {}
            }
            observe(refresh(&store, ttl).await, &shutdown);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{NodeRole, NodeState};
    use metrics_exporter_prometheus::PrometheusBuilder;

    fn node(id: &str, state: NodeState, age_ms: i64, runs_held: i64) -> Node {
        Node {
            id: id.into(),
            hostname: format!("host-{id}"),
            pid: 1,
            version: "0".into(),
            role: NodeRole::Daemon,
            state,
            started_at: chrono::DateTime::UNIX_EPOCH,
            heartbeat_age_ms: age_ms,
            runs_held,
        }
    }

    /// The rendered `/metrics` text after `publish`.
    fn rendered(read: Result<&[Node], &StoreError>) -> String {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, || {
            publish(read, Duration::from_secs(30));
        });
        handle.render()
    }

    #[test]
    fn live_nodes_with_fresh_heartbeats_are_up_and_every_other_listed_node_down() {
        let nodes = [
            node("a", NodeState::Live, 2_500, 3),
            node("b", NodeState::Live, 31_000, 1),
            node("c", NodeState::Stopped, 0, 0),
            node("d", NodeState::Expired, 90_000, 0),
        ];
        let text = rendered(Ok(&nodes));
        for line in [
            r#"snapsched_node_up{node="a",hostname="host-a",role="daemon"} 1"#,
            r#"snapsched_node_up{node="b",hostname="host-b",role="daemon"} 0"#,
            r#"snapsched_node_up{node="c",hostname="host-c",role="daemon"} 0"#,
            r#"snapsched_node_up{node="d",hostname="host-d",role="daemon"} 0"#,
            r#"snapsched_node_heartbeat_age_seconds{node="a",hostname="host-a"} 2.5"#,
            r#"snapsched_node_heartbeat_age_seconds{node="d",hostname="host-d"} 90"#,
            r#"snapsched_node_runs_held{node="a",hostname="host-a"} 3"#,
            r#"snapsched_node_runs_held{node="b",hostname="host-b"} 1"#,
            "snapsched_store_up 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
    }

    #[test]
    fn a_failed_read_sets_store_up_to_zero() {
        let failed = StoreError::Sqlx(sqlx::Error::PoolClosed);
        let text = rendered(Err(&failed));
        assert!(text.lines().any(|l| l == "snapsched_store_up 0"), "{text}");
        assert!(!text.contains("snapsched_node_up"), "{text}");
    }
}
