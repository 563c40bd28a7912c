//! `snapsched snapshots [NAME] [filters] [--all | --orphaned] [--json]`.
//!
//! By default: the snapshots the store records for the matching definitions,
//! with their state (present, deleted, gone). `--all` lists the one matching
//! definition's disk at the provider and adds every other snapshot there,
//! marked as not managed. `--orphaned`: present snapshots recorded for a
//! definition identity that no longer exists, or for a droplet that left
//! its tag target's tag. A tag target's snapshots are its members'. Held snapshots show their
//! hold in the Hold column (`held: TEXT`) and the JSON `hold` object
//! (`reason`, `held_at`). The Regions column (JSON `regions`, `copies`)
//! shows where a snapshot of a definition with `copy_regions` is available
//! and each copy to another region not (yet) done.
//!
//! `snapshots hold` and `snapshots release`: see [`hold`].

mod hold;

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde::Serialize;

use super::context::{Address, Context, Filters};
use super::output::{print_json, Times};
use super::{CliError, CliResult};
use crate::domain::definition::Identity;
use crate::domain::{CopyState, Hold, RecordState, SnapshotCopy, SnapshotRecord};
use crate::provider::Provider;
use crate::retention::{self, Ownership, StoreRecords};
use crate::table;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SnapshotsArgs {
    #[command(subcommand)]
    pub action: Option<SnapshotsAction>,
    /// Definition name (all definitions when omitted)
    pub name: Option<String>,
    #[command(flatten)]
    pub filters: Filters,
    /// Also list the target's other snapshots at the provider, marked not
    /// managed (needs exactly one matching definition)
    #[arg(long, conflicts_with = "orphaned")]
    pub all: bool,
    /// Snapshots still present whose definition was removed
    #[arg(long)]
    pub orphaned: bool,
    #[arg(long)]
    pub json: bool,
}

/// Holding a snapshot so that snapsched never deletes it.
#[derive(Debug, Subcommand)]
pub enum SnapshotsAction {
    /// Hold a snapshot: snapsched deletes it by no rule (retention,
    /// prune, def rm --delete-snapshots) until it is released. On
    /// DigitalOcean the snapshot is also tagged snapsched-hold
    Hold(hold::HoldArgs),
    /// Release a held snapshot: the next prune applies the retention to it
    Release(hold::ReleaseArgs),
}

/// One line of output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotRow {
    /// The owning definition's name; `None` for a snapshot no definition
    /// owns. `name` in JSON, as in every other command's output.
    #[serde(rename = "name")]
    pub definition: Option<String>,
    pub provider: String,
    pub target: String,
    pub disk_id: u32,
    #[serde(rename = "snapshot_name")]
    pub snapshot: String,
    pub snapshot_id: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    /// `present`, `deleted`, `gone`, `not managed` or `other definition`.
    pub state: String,
    pub adopted: bool,
    /// Why it was deleted or gone, or what `--all` found.
    pub note: Option<String>,
    /// Set while the snapshot is held (`reason`, `held_at`).
    pub hold: Option<Hold>,
    /// The regions the snapshot is available in, as the provider last said
    /// (read by runs of definitions with `copy_regions`); `None` when never
    /// read.
    pub regions: Option<Vec<String>>,
    /// Its copies to other regions (`region`, `state`: sending, copying,
    /// done or failed, `operation_id`, `attempts`, `error`, `updated_at`).
    pub copies: Vec<SnapshotCopy>,
}

fn from_record(r: SnapshotRecord) -> SnapshotRow {
    SnapshotRow {
        definition: Some(r.identity.name),
        provider: r.identity.provider,
        target: r.identity.target,
        disk_id: r.identity.disk_id,
        snapshot: r.snapshot,
        snapshot_id: r.remote_id,
        created_at: r.created_at,
        state: r.state.as_str().to_owned(),
        adopted: r.adopted,
        note: match r.state {
            // A present record carries a reason only while its deletion
            // is asked for and not yet confirmed.
            RecordState::Present => r
                .delete_reason
                .map(|reason| format!("deletion requested: {reason}")),
            _ => r.delete_reason,
        },
        hold: r.hold,
        regions: r.regions,
        copies: Vec::new(),
    }
}

/// Attach each row's copies (matched by disk and snapshot name).
fn with_copies(mut rows: Vec<SnapshotRow>, copies: Vec<SnapshotCopy>) -> Vec<SnapshotRow> {
    for c in copies {
        if let Some(row) = rows.iter_mut().find(|r| {
            r.provider == c.identity.provider
                && r.target == c.identity.target
                && r.disk_id == c.identity.disk_id
                && r.snapshot == c.snapshot
        }) {
            row.copies.push(c);
        }
    }
    rows
}

/// The Regions column: where the snapshot is, then each copy not (yet)
/// there (`fra1 failed`, `ams3 copying`).
fn regions_cell(r: &SnapshotRow) -> String {
    let mut parts: Vec<String> = r.regions.clone().unwrap_or_default();
    for c in &r.copies {
        let there = parts.contains(&c.region);
        match c.state {
            CopyState::Done if there => {}
            CopyState::Done => parts.push(c.region.clone()),
            state => parts.push(format!("{} {}", c.region, state.as_str())),
        }
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
}

pub async fn run(args: SnapshotsArgs, ctx: &Context) -> CliResult {
    match args.action {
        Some(SnapshotsAction::Hold(a)) => return hold::hold(a, ctx).await,
        Some(SnapshotsAction::Release(a)) => return hold::release(a, ctx).await,
        None => {}
    }
    let cfg = ctx.config()?;
    let store = ctx.open_store_read_only(&cfg).await?;
    let filter = args.filters.filter();

    let rows = if args.orphaned {
        let mut defined: HashSet<Identity> = HashSet::new();
        for d in store.list_definitions().await? {
            if d.spec.target.tag().is_some() {
                // A tag target owns the snapshots of its current members;
                // a droplet that left the tag leaves its own orphaned.
                defined.extend(store.current_members(&d.spec.identity).await?);
            }
            defined.insert(d.spec.identity);
        }
        store
            .snapshot_records(args.name.as_deref())
            .await?
            .into_iter()
            .filter(|r| {
                r.state == RecordState::Present
                    && filter.matches(&r.identity)
                    && !defined.contains(&r.identity)
            })
            .map(from_record)
            .collect()
    } else if args.all {
        let Some(name) = args.name.clone() else {
            return Err(CliError::usage(
                "--all lists one definition's disk at the provider: give a definition NAME",
            ));
        };
        let address = Address {
            name,
            filters: args.filters.clone(),
        };
        let def = ctx.resolve(&store, &address).await?;
        // The listing's requests count against the API budget every
        // process shares, which lives in the store: that needs it writable
        // (it exists: the definition was just read from it).
        let budget = ctx.open_store(&cfg).await?;
        let (provider, target) = ctx.provider_for(&cfg, &def, &budget)?;
        let id = &def.spec.identity;
        let listing = provider
            .list_snapshots(&target, id.disk_id)
            .await
            .map_err(|e| {
                CliError::Runtime(anyhow::anyhow!(
                    "listing snapshots of {target} disk {}: {e}",
                    id.disk_id
                ))
            })?;
        let records = store
            .snapshot_records_on(&id.provider, &id.target, id.disk_id)
            .await?;
        all_rows(id, &listing, records)
    } else {
        let defs: HashSet<Identity> = match &args.name {
            Some(name) => store.find_definitions(name, &filter).await?,
            None => store
                .list_definitions()
                .await?
                .into_iter()
                .filter(|d| filter.matches(&d.spec.identity))
                .collect(),
        }
        .into_iter()
        .map(|d| d.spec.identity)
        .collect();
        if defs.is_empty() {
            if let Some(name) = &args.name {
                return Err(CliError::usage(format!(
                    "no definition named '{name}' matches; see `snapsched def list` \
                     (removed definitions: `snapsched snapshots --orphaned`)"
                )));
            }
        }
        store
            .snapshot_records(args.name.as_deref())
            .await?
            .into_iter()
            .filter(|r| {
                defs.contains(&r.identity)
                    || r.identity
                        .member_of()
                        .is_some_and(|(tag, _)| defs.contains(&tag))
            })
            .map(from_record)
            .collect()
    };

    let rows = with_copies(rows, store.copies(args.name.as_deref()).await?);
    if args.json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        println!("no snapshots");
        return Ok(());
    }
    print!("{}", render(&rows, &ctx.times(Utc::now())));
    Ok(())
}

/// `--all`: every listed snapshot of the definition's disk with its
/// ownership, then the definition's records the provider no longer lists.
pub fn all_rows(
    id: &Identity,
    listing: &[crate::domain::RemoteSnapshot],
    records: Vec<SnapshotRecord>,
) -> Vec<SnapshotRow> {
    let own = StoreRecords::of(id, &records);
    let classification = retention::classify(listing, &own, &id.name);
    let listed: HashSet<&str> = listing.iter().map(|s| s.name.as_str()).collect();
    let mut rows: Vec<SnapshotRow> = classification
        .candidates
        .iter()
        .map(|c| {
            let record = records.iter().find(|r| r.snapshot == c.snapshot.name);
            let (definition, state, note) = match c.ownership {
                Ownership::Recorded => (
                    Some(id.name.clone()),
                    record.map_or("present", |r| r.state.as_str()).to_owned(),
                    record
                        .filter(|r| r.state != RecordState::Present)
                        .map(|_| "listed again by the provider".to_owned()),
                ),
                Ownership::Adopted => (
                    Some(id.name.clone()),
                    "present".to_owned(),
                    Some("not recorded; the name matches, adopted at the next prune".to_owned()),
                ),
                Ownership::OtherDefinition => (
                    record.map(|r| r.identity.name.clone()),
                    "other definition".to_owned(),
                    None,
                ),
                Ownership::Unmanaged => (None, "not managed".to_owned(), None),
            };
            SnapshotRow {
                definition,
                provider: id.provider.clone(),
                target: id.target.clone(),
                disk_id: id.disk_id,
                snapshot: c.snapshot.name.clone(),
                snapshot_id: Some(c.snapshot.id.clone()),
                created_at: Some(c.snapshot.created_at),
                state,
                adopted: record.is_some_and(|r| r.adopted) || c.ownership == Ownership::Adopted,
                note,
                hold: record
                    .filter(|r| r.identity == *id)
                    .and_then(|r| r.hold.clone()),
                regions: record.and_then(|r| r.regions.clone()),
                copies: Vec::new(),
            }
        })
        .collect();
    rows.extend(
        records
            .into_iter()
            .filter(|r| r.identity == *id && !listed.contains(r.snapshot.as_str()))
            .map(|r| {
                let present = r.state == RecordState::Present;
                let mut row = from_record(r);
                if present {
                    row.note = Some("no longer listed; marked gone at the next prune".to_owned());
                }
                row
            }),
    );
    rows.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then_with(|| a.snapshot.cmp(&b.snapshot))
    });
    rows
}

/// The rows as an aligned table, times in the output's one zone.
pub fn render(rows: &[SnapshotRow], times: &Times) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.definition.clone().unwrap_or_else(|| "-".to_owned()),
                r.provider.clone(),
                r.target.clone(),
                r.disk_id.to_string(),
                r.snapshot.clone(),
                r.created_at
                    .map(|t| times.at(t))
                    .unwrap_or_else(|| "-".to_owned()),
                if r.adopted {
                    format!("{} (adopted)", r.state)
                } else {
                    r.state.clone()
                },
                r.hold.as_ref().map(Hold::describe).unwrap_or_default(),
                regions_cell(r),
                r.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table::render(
        &[
            "Definition",
            "Provider",
            "Target",
            "Disk",
            "Snapshot",
            "Created",
            "State",
            "Hold",
            "Regions",
            "Note",
        ],
        &body,
    )
}
