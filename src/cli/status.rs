//! `snapsched status`: one line per definition.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use clap::Args;
use serde::Serialize;

use super::context::Context;
use super::output::{
    node_label, print_json, print_table, print_table_fit, run_duration, view, Times,
};
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
    /// Set while the definition's latest prune was blocked by
    /// `max_deletes_per_run`: that run and why.
    pub prune_blocked: Option<PruneBlocked>,
    /// Requests of the definition's provider held back by a live daemon's
    /// request budget (as of its last lease renewal); `None` when none are.
    pub budget_wait: Option<BudgetWait>,
    /// A tag target's droplets, each its own unit (empty for other targets).
    pub members: Vec<MemberStatus>,
}

/// One droplet of a tag target: its own runs and snapshots.
#[derive(Debug, Serialize)]
pub struct MemberStatus {
    /// `tag:<name>/droplet:<id>`, the member's identity's target.
    pub target: String,
    pub droplet: u64,
    /// False once the droplet has left the tag: its snapshots are then
    /// orphaned (kept, never pruned by the definition).
    pub current: bool,
    pub last_run: Option<Run>,
    pub last_success: Option<Run>,
    pub snapshots: i64,
    pub last_error: Option<String>,
}

/// Each identity's last run and last successful run.
type LastRuns = HashMap<Identity, (Option<Run>, Option<Run>)>;

/// The members of tag target `id`, current ones first.
async fn members(
    store: &crate::store::Store,
    id: &Identity,
    owned: &HashMap<Identity, i64>,
    last: &mut LastRuns,
) -> CliResult<Vec<MemberStatus>> {
    let current = store.current_members(id).await?;
    let mut out = Vec::new();
    for m in store.members_of(id).await? {
        let Some((_, droplet)) = m.member_of() else {
            continue;
        };
        let (last_run, last_success) = last.remove(&m).unwrap_or_default();
        out.push(MemberStatus {
            droplet,
            current: current.contains(&m),
            last_error: last_error(last_run.as_ref()),
            snapshots: owned.get(&m).copied().unwrap_or(0),
            target: m.target,
            last_run,
            last_success,
        });
    }
    out.sort_by_key(|m| (!m.current, m.droplet));
    Ok(out)
}

fn last_error(run: Option<&Run>) -> Option<String> {
    run.filter(|r| r.state != crate::domain::RunState::Succeeded || r.error.is_some())
        .and_then(|r| r.error.clone())
}

/// A prune the blast-radius guard blocked, waiting for `snapsched prune
/// NAME` to apply it.
#[derive(Debug, Serialize)]
pub struct PruneBlocked {
    pub run_id: i64,
    pub slot: String,
    pub message: Option<String>,
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
    let store = ctx.open_store_read_only(&cfg).await?;
    let now = Utc::now();
    let mut owners = owners(&store).await?;
    let drift = crate::wiring::config_drift(&cfg, &store).await?;
    let mut blocked = store.blocked_prunes().await?;
    let waits = budget_waits(&store).await?;
    // Present snapshots of every identity in one query (a tag target's
    // members are identities of their own).
    let owned: HashMap<Identity, i64> = store.owned_counts().await?.into_iter().collect();
    // Likewise every identity's last run and last success.
    let mut last = store.every_last_run().await?;
    let mut out = Vec::new();
    for def in store.list_definitions().await? {
        let view = view(def, cfg.daemon.timezone, now);
        let id = view.definition.spec.identity.clone();
        let (last_run, last_success) = last.remove(&id).unwrap_or_default();
        let last_error = last_error(last_run.as_ref());
        let members = if view.definition.spec.target.tag().is_some() {
            members(&store, &id, &owned, &mut last).await?
        } else {
            Vec::new()
        };
        let snapshots =
            owned.get(&id).copied().unwrap_or(0) + members.iter().map(|m| m.snapshots).sum::<i64>();
        out.push(DefinitionStatus {
            members,
            active: view.definition.spec.active,
            schedule: view.definition.spec.schedule.source().to_owned(),
            timezone: view.zone.clone(),
            next_fire: view.next_fire.clone(),
            snapshots,
            node: owners.remove(&id),
            budget_wait: waits.get(&id.provider).cloned(),
            identity: id,
            last_run,
            last_success,
            last_error,
            config_drift: drift.is_some(),
            prune_blocked: blocked
                .remove(&view.definition.spec.identity)
                .map(|r| PruneBlocked {
                    run_id: r.id,
                    slot: r.slot.to_rfc3339(),
                    message: r.error,
                }),
        });
    }
    if args.json {
        return print_json(&out);
    }
    let times = ctx.times(Utc::now());
    print_status_table(&out, &times, ctx.wide);
    for s in &out {
        if let Some(b) = &s.prune_blocked {
            println!(
                "prune blocked: {} {} disk {} (run {}, slot {}): {}",
                s.identity.name,
                s.identity.target,
                s.identity.disk_id,
                b.run_id,
                b.slot,
                b.message
                    .as_deref()
                    .unwrap_or("more deletions than max_deletes_per_run")
            );
        }
    }
    let mut held: Vec<(&String, &BudgetWait)> = waits.iter().collect();
    held.sort_by(|a, b| a.0.cmp(b.0));
    for (provider, w) in held {
        println!(
            "request budget: {} requests of provider {provider} wait for the API request budget since {} (node {}); runs are held back until it allows them",
            w.waiting,
            times.at(w.since),
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
            times.at(a.file_mtime),
            times.at(a.applied_at)
        );
    }
    Ok(())
}

/// The status table. Compact by default, fitted to the terminal (the last
/// error is shortened): relative times, no Active column (an inactive
/// definition's next fire reads `inactive`). `--wide`: every column, full
/// times with their zone and the relative time.
fn print_status_table(out: &[DefinitionStatus], times: &Times, wide: bool) {
    // The node column only while something runs, so an idle (or one-host)
    // status reads as it always did.
    let with_node = out.iter().any(|s| s.node.is_some());
    let when = |t: DateTime<Utc>| {
        if wide {
            times.at_relative(t)
        } else {
            times.relative(t)
        }
    };
    let rows: Vec<Vec<String>> = out
        .iter()
        .flat_map(|s| {
            let next = match (&s.next_fire, s.active) {
                (Some(t), _) => DateTime::parse_from_rfc3339(t)
                    .map(|t| when(t.with_timezone(&Utc)))
                    .unwrap_or_else(|_| t.clone()),
                (None, false) => "inactive".into(),
                (None, true) => "-".into(),
            };
            let mut row = vec![
                s.identity.name.clone(),
                format!(
                    "{} {} disk {}",
                    s.identity.provider, s.identity.target, s.identity.disk_id
                ),
            ];
            if wide {
                row.push(if s.active { "yes" } else { "no" }.into());
            }
            row.extend([
                format!("{} ({})", s.schedule, s.timezone),
                next,
                s.last_run
                    .as_ref()
                    .map(|r| format!("{} {} ({})", r.state, when(r.slot), run_duration(r)))
                    .unwrap_or_else(|| "-".into()),
            ]);
            if with_node {
                row.push(s.node.as_ref().map_or_else(|| "-".into(), label));
            }
            row.extend([
                s.last_success
                    .as_ref()
                    .map(|r| when(r.slot))
                    .unwrap_or_else(|| "-".into()),
                s.snapshots.to_string(),
                s.last_error.clone().unwrap_or_default(),
            ]);
            let mut rows = vec![row];
            for m in &s.members {
                let mut row = vec![format!("  droplet {}", m.droplet), m.target.clone()];
                if wide {
                    row.push(String::new());
                }
                row.extend([
                    String::new(),
                    if m.current { "-" } else { "left the tag" }.into(),
                    m.last_run
                        .as_ref()
                        .map(|r| format!("{} {} ({})", r.state, when(r.slot), run_duration(r)))
                        .unwrap_or_else(|| "-".into()),
                ]);
                if with_node {
                    row.push(String::new());
                }
                row.extend([
                    m.last_success
                        .as_ref()
                        .map(|r| when(r.slot))
                        .unwrap_or_else(|| "-".into()),
                    m.snapshots.to_string(),
                    m.last_error.clone().unwrap_or_default(),
                ]);
                rows.push(row);
            }
            rows
        })
        .collect();
    let mut headers = vec!["Definition", "Where"];
    if wide {
        headers.push("Active");
    }
    headers.extend(["Schedule", "Next fire", "Last run"]);
    if with_node {
        headers.push("Node");
    }
    headers.extend(["Last success", "Snapshots", "Last error"]);
    if wide {
        print_table(&headers, &rows);
    } else {
        print_table_fit(&headers, &rows, headers.len() - 1);
    }
}

fn label(node: &NodeRef) -> String {
    node_label(node.hostname.as_deref().unwrap_or("?"), &node.id)
}
