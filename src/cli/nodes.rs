//! `snapsched nodes`: every node the store records (daemons, and CLI
//! processes driving a run), with its heartbeat age and the runs it holds.
//! A live node whose heartbeat is older than the lease is shown `stale`:
//! it stopped renewing, and another node will take its runs over.

use clap::Args;
use serde::Serialize;

use super::context::Context;
use super::output::{heartbeat_age, print_json, print_table};
use super::CliResult;
use crate::domain::Node;

#[derive(Debug, Args)]
pub struct NodesArgs {
    #[arg(long)]
    pub json: bool,
}

/// One node as `nodes --json` prints it; the field names are stable.
#[derive(Debug, Serialize)]
pub struct NodeView {
    #[serde(flatten)]
    pub node: Node,
    /// Live by its record but past its lease (see [`Node::is_stale`]).
    pub stale: bool,
}

pub async fn run(args: NodesArgs, ctx: &Context) -> CliResult {
    let cfg = ctx.config()?;
    let store = ctx.open_store_read_only(&cfg).await?;
    let ttl = crate::wiring::lease_ttl(&cfg);
    let nodes: Vec<NodeView> = store
        .nodes()
        .await?
        .into_iter()
        .map(|node| NodeView {
            stale: node.is_stale(ttl),
            node,
        })
        .collect();
    if args.json {
        return print_json(&nodes);
    }
    let rows: Vec<Vec<String>> = nodes.iter().map(row).collect();
    print_table(
        &[
            "Node",
            "Host",
            "PID",
            "Role",
            "Version",
            "State",
            "Started",
            "Heartbeat",
            "Runs",
        ],
        &rows,
    );
    Ok(())
}

fn row(v: &NodeView) -> Vec<String> {
    let n = &v.node;
    vec![
        n.short_id().to_owned(),
        n.hostname.clone(),
        n.pid.to_string(),
        n.role.as_str().to_owned(),
        n.version.clone(),
        if v.stale { "stale" } else { n.state.as_str() }.to_owned(),
        crate::store::ts(n.started_at),
        heartbeat_age(n.heartbeat_age_ms),
        n.runs_held.to_string(),
    ]
}
