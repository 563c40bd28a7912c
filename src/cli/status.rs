//! `snapsched status`: one line per definition.

use std::collections::HashMap;

use chrono::Utc;
use clap::Args;
use serde::Serialize;

use super::context::Context;
use super::output::{node_label, print_json, print_table, run_duration, view};
use super::CliResult;
use crate::domain::{Identity, Run};

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long)]
    pub json: bool,
}

/// One definition's status; the JSON field names are stable.
#[derive(Debug, Serialize)]
pub struct DefinitionStatus {
    #[serde(flatten)]
    pub identity: crate::domain::definition::Identity,
    pub active: bool,
    pub schedule: String,
    pub timezone: String,
    pub next_fire: Option<String>,
    pub last_run: Option<Run>,
    pub last_success: Option<Run>,
    pub snapshots: i64,
    pub last_error: Option<String>,
    /// The node running the definition's run in flight; `None` when nothing
    /// is in flight (or the run predates nodes).
    pub node: Option<NodeRef>,
    /// Whether this configuration file's definitions differ from the
    /// version the store holds (the same for every row).
    pub config_drift: bool,
    /// Requests of the definition's provider held back by a live daemon's
    /// request budget (as of its last lease renewal); `None` when none are.
    pub budget_wait: Option<BudgetWait>,
}

/// Requests of one provider waiting for a node's API request budget.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetWait {
    pub waiting: usize,
    pub since: chrono::DateTime<Utc>,
    pub node: NodeRef,
}

/// Budget waits by provider, recorded by nodes that are live.
async fn budget_waits(store: &crate::store::Store) -> CliResult<HashMap<String, BudgetWait>> {
    let live: HashMap<String, String> = store
        .nodes()
        .await?
        .into_iter()
        .filter(|n| n.state == crate::domain::NodeState::Live)
        .map(|n| (n.id, n.hostname))
        .collect();
    let mut out: HashMap<String, BudgetWait> = HashMap::new();
    for (node, provider, waiting, since) in store.budget_waits().await? {
        let Some(hostname) = live.get(&node) else {
            continue;
        };
        let entry = out.entry(provider).or_insert(BudgetWait {
            waiting: 0,
            since,
            node: NodeRef {
                id: node.clone(),
                hostname: Some(hostname.clone()),
            },
        });
        entry.waiting += waiting;
        entry.since = entry.since.min(since);
    }
    Ok(out)
}

/// The node owning a run in flight.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRef {
    pub id: String,
    /// `None` when the store no longer lists the node.
    pub hostname: Option<String>,
}

/// Which node runs each definition's run in flight, from the runs in flight
/// and the nodes the store lists.
async fn owners(store: &crate::store::Store) -> CliResult<HashMap<Identity, NodeRef>> {
    let hostnames: HashMap<String, String> = store
        .nodes()
        .await?
        .into_iter()
        .map(|n| (n.id, n.hostname))
        .collect();
    Ok(store
        .unfinished_runs()
        .await?
        .into_iter()
        .filter_map(|run| {
            let id = run.owner_node?;
            let node = NodeRef {
                hostname: hostnames.get(&id).cloned(),
                id,
            };
            Some((run.identity, node))
        })
        .collect())
}

pub async fn run(args: StatusArgs, ctx: &Context) -> CliResult {
    let cfg = ctx.config()?;
    let store = ctx.open_store(&cfg).await?;
    let now = Utc::now();
    let mut owners = owners(&store).await?;
    let drift = crate::wiring::config_drift(&cfg, &store).await?;
    let waits = budget_waits(&store).await?;
    let mut out = Vec::new();
    for def in store.list_definitions().await? {
        let view = view(def, cfg.daemon.timezone, now);
        let id = view.definition.spec.identity.clone();
        let (last_run, last_success) = store.last_runs(&id).await?;
        let last_error = last_run
            .as_ref()
            .filter(|r| r.state != crate::domain::RunState::Succeeded || r.error.is_some())
            .and_then(|r| r.error.clone());
        out.push(DefinitionStatus {
            active: view.definition.spec.active,
            schedule: view.definition.spec.schedule.source().to_owned(),
            timezone: view.zone.clone(),
            next_fire: view.next_fire.clone(),
            snapshots: store.owned_count(&id).await?,
            node: owners.remove(&id),
            budget_wait: waits.get(&id.provider).cloned(),
            identity: id,
            last_run,
            last_success,
            last_error,
            config_drift: drift.is_some(),
        });
    }
    if args.json {
        return print_json(&out);
    }
    // The node column only while something runs, so an idle (or one-host)
    // status reads as it always did.
    let with_node = out.iter().any(|s| s.node.is_some());
    let rows: Vec<Vec<String>> = out
        .iter()
        .map(|s| {
            let mut row = vec![
                s.identity.name.clone(),
                format!(
                    "{} {} disk {}",
                    s.identity.provider, s.identity.target, s.identity.disk_id
                ),
                if s.active { "yes" } else { "no" }.into(),
                format!("{} ({})", s.schedule, s.timezone),
                s.next_fire.clone().unwrap_or_else(|| "-".into()),
                s.last_run
                    .as_ref()
                    .map(|r| format!("{} {} ({})", r.state, r.slot.to_rfc3339(), run_duration(r)))
                    .unwrap_or_else(|| "-".into()),
                s.last_success
                    .as_ref()
                    .map(|r| r.slot.to_rfc3339())
                    .unwrap_or_else(|| "-".into()),
                s.snapshots.to_string(),
                s.last_error.clone().unwrap_or_default(),
            ];
            if with_node {
                row.insert(
                    NODE_COLUMN,
                    s.node.as_ref().map_or_else(|| "-".into(), label),
                );
            }
            row
        })
        .collect();
    let mut headers = vec![
        "Definition",
        "Where",
        "Active",
        "Schedule",
        "Next fire",
        "Last run",
        "Last success",
        "Snapshots",
        "Last error",
    ];
    if with_node {
        headers.insert(NODE_COLUMN, "Node");
    }
    print_table(&headers, &rows);
    let mut held: Vec<(&String, &BudgetWait)> = waits.iter().collect();
    held.sort_by(|a, b| a.0.cmp(b.0));
    for (provider, w) in held {
        println!(
            "request budget: {} requests of provider {provider} wait for the API request budget since {} (node {}); runs are held back until it allows them",
            w.waiting,
            w.since.to_rfc3339(),
            label(&w.node)
        );
    }
    if let Some(a) = drift {
        println!(
            "config drift: the definitions in {} differ from the version {} applied from {} \
             (dated {}) on {}; `snapsched config apply` applies this file",
            cfg.path.display(),
            a.hostname,
            a.source_path,
            a.file_mtime.to_rfc3339(),
            a.applied_at.to_rfc3339()
        );
    }
    Ok(())
}

/// The node column sits right after "Last run".
const NODE_COLUMN: usize = 6;

fn label(node: &NodeRef) -> String {
    node_label(node.hostname.as_deref().unwrap_or("?"), &node.id)
}
