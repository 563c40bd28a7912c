//! `snapsched snapshots hold NAME SNAPSHOT [--reason TEXT]` and `snapshots
//! release NAME SNAPSHOT`.
//!
//! A hold lives in the store, on the snapshot's record: the prune executor
//! reads it with the records, and the planner keeps a held snapshot by no
//! other rule (`held: TEXT`), for the daemon's prune, `snapsched prune` and
//! `def rm --delete-snapshots` alike. Where the provider can show it
//! (DigitalOcean), the snapshot also carries the `snapsched-hold` tag.
//!
//! Only a snapshot the definition owns can be held: one recorded for it, or
//! one its name rule adopts (recorded as adopted first). Order of writes,
//! so that a failure leaves no half state: hold = store, then tag (the store
//! hold is taken back when tagging fails); release = untag, then store.

use chrono::Utc;
use clap::Args;

use super::super::context::{Address, Context};
use super::super::{CliError, CliResult};
use crate::domain::definition::Identity;
use crate::domain::{RecordState, SnapshotRecord};
use crate::provider::{AnyProvider, HoldMark, Provider};
use crate::retention::{self, Ownership, StoreRecords};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct HoldArgs {
    #[command(flatten)]
    pub address: Address,
    /// The snapshot: its name or the provider's id
    pub snapshot: String,
    /// Why it is held (shown in `snapshots` and `prune --dry-run`)
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub address: Address,
    /// The snapshot: its name or the provider's id
    pub snapshot: String,
}

/// Longest hold reason accepted, in characters.
const MAX_REASON: usize = 500;

pub async fn hold(args: HoldArgs, ctx: &Context) -> CliResult {
    let reason = args.reason.unwrap_or_default();
    let reason = reason.trim();
    if reason.chars().count() > MAX_REASON {
        return Err(CliError::usage(format!(
            "--reason is {} characters long; give at most {MAX_REASON}",
            reason.chars().count()
        )));
    }
    if reason.chars().any(char::is_control) {
        return Err(CliError::usage(
            "--reason contains a control character (newline, tab, escape); give one line of text",
        ));
    }
    let cfg = ctx.config()?;
    let store = ctx.open_store(&cfg).await?;
    let def = ctx.resolve(&store, &args.address).await?;
    let (provider, target) = ctx.provider_for(&cfg, &def, &store)?;
    let id = &def.spec.identity;
    let record = own_record(&store, &provider, &target, id, &args.snapshot).await?;
    if let Some(hold) = &record.hold {
        return Err(CliError::usage(format!(
            "snapshot {} of {id} is already held since {} ({}); release it first to change the reason",
            record.snapshot,
            hold.held_at.to_rfc3339(),
            hold.describe()
        )));
    }
    if !store
        .hold_snapshot(id, &record.snapshot, reason, Utc::now())
        .await?
    {
        return Err(CliError::usage(format!(
            "snapshot {} of {id} was held by someone else meanwhile; see `snapsched snapshots {}`",
            record.snapshot, id.name
        )));
    }
    let remote_id = record.remote_id.as_deref().unwrap_or(&record.snapshot);
    let mark = match provider
        .mark_held(&target, id.disk_id, remote_id, true)
        .await
    {
        Ok(mark) => mark,
        Err(e) => {
            // Take the store's hold back: the command failed as a whole.
            store.release_snapshot(id, &record.snapshot).await?;
            return Err(CliError::Runtime(anyhow::anyhow!(
                "tagging snapshot {} at {} failed, so it is not held: {e}",
                record.snapshot,
                id.provider
            )));
        }
    };
    println!(
        "held snapshot {} of {id}{}{}",
        record.snapshot,
        if reason.is_empty() {
            String::new()
        } else {
            format!(": {reason}")
        },
        match mark {
            HoldMark::Tagged(tag) => format!(" (tagged {tag} at the provider)"),
            HoldMark::NotShown => " (held in the store; the provider has no tags)".to_owned(),
        }
    );
    Ok(())
}

pub async fn release(args: ReleaseArgs, ctx: &Context) -> CliResult {
    let cfg = ctx.config()?;
    let store = ctx.open_store(&cfg).await?;
    let def = ctx.resolve(&store, &args.address).await?;
    let (provider, target) = ctx.provider_for(&cfg, &def, &store)?;
    let id = &def.spec.identity;
    let records = store
        .snapshot_records_on(&id.provider, &id.target, id.disk_id)
        .await?;
    let record = recorded(&records, id, &args.snapshot, false)?.ok_or_else(|| {
        CliError::usage(format!(
            "snapshot '{}' is not held: {id} has no record of it; see `snapsched snapshots {}`",
            args.snapshot, id.name
        ))
    })?;
    if record.hold.is_none() {
        return Err(CliError::usage(format!(
            "snapshot {} of {id} is not held",
            record.snapshot
        )));
    }
    let remote_id = record.remote_id.as_deref().unwrap_or(&record.snapshot);
    provider
        .mark_held(&target, id.disk_id, remote_id, false)
        .await
        .map_err(|e| {
            CliError::Runtime(anyhow::anyhow!(
                "removing the hold tag from snapshot {} at {} failed, so it stays held: {e}",
                record.snapshot,
                id.provider
            ))
        })?;
    if !store.release_snapshot(id, &record.snapshot).await? {
        return Err(CliError::usage(format!(
            "snapshot {} of {id} was released by someone else meanwhile",
            record.snapshot
        )));
    }
    println!(
        "released snapshot {} of {id}; the next prune applies the retention to it",
        record.snapshot
    );
    Ok(())
}

/// The record `wanted` (a name or a provider id) names among the records on
/// `id`'s disk: `id`'s own one, `None` when no record matches, or an error
/// when it is another definition's or (with `present_only`, for a new
/// hold) no longer present. A hold on a snapshot since deleted by hand can
/// still be released.
fn recorded<'a>(
    records: &'a [SnapshotRecord],
    id: &Identity,
    wanted: &str,
    present_only: bool,
) -> CliResult<Option<&'a SnapshotRecord>> {
    let named =
        |r: &&SnapshotRecord| r.snapshot == wanted || r.remote_id.as_deref() == Some(wanted);
    let Some(record) = records
        .iter()
        .filter(named)
        // Prefer the definition's own record over another's with that id.
        .min_by_key(|r| (r.identity != *id, r.state != RecordState::Present))
    else {
        return Ok(None);
    };
    if record.identity != *id {
        return Err(CliError::usage(format!(
            "snapshot {} belongs to definition {}, not {id}; hold it through its own definition",
            record.snapshot, record.identity
        )));
    }
    if present_only && record.state != RecordState::Present {
        return Err(CliError::usage(format!(
            "snapshot {} of {id} is {} ({}); only a present snapshot can be held",
            record.snapshot,
            record.state.as_str(),
            record
                .delete_reason
                .as_deref()
                .unwrap_or("no reason recorded")
        )));
    }
    Ok(Some(record))
}

/// `id`'s present record of `wanted`; a snapshot not recorded is looked up
/// at the provider and, when the definition's name rule adopts it, recorded
/// as adopted first.
async fn own_record(
    store: &Store,
    provider: &AnyProvider,
    target: &crate::domain::Target,
    id: &Identity,
    wanted: &str,
) -> CliResult<SnapshotRecord> {
    let records = store
        .snapshot_records_on(&id.provider, &id.target, id.disk_id)
        .await?;
    if let Some(r) = recorded(&records, id, wanted, true)? {
        return Ok(r.clone());
    }
    let listing = provider
        .list_snapshots(target, id.disk_id)
        .await
        .map_err(|e| {
            CliError::Runtime(anyhow::anyhow!(
                "listing snapshots of {target} disk {}: {e}",
                id.disk_id
            ))
        })?;
    let Some(snap) = listing.iter().find(|s| s.name == wanted || s.id == wanted) else {
        return Err(CliError::usage(format!(
            "no snapshot named or with id '{wanted}' on {target} disk {}; see `snapsched snapshots {} --all`",
            id.disk_id, id.name
        )));
    };
    let own = StoreRecords::of(id, &records);
    let classification = retention::classify(std::slice::from_ref(snap), &own, &id.name);
    if classification.candidates[0].ownership != Ownership::Adopted {
        return Err(CliError::usage(format!(
            "snapshot {} is not owned by {id} (not made by snapsched for it); snapsched never \
             deletes it, so it needs no hold",
            snap.name
        )));
    }
    let now = Utc::now();
    store.record_snapshot(id, snap, None, true, now).await?;
    tracing::info!(definition = %id.name, provider = %id.provider, target = %id.target, disk = id.disk_id, snapshot = %snap.name, "adopted snapshot to hold it");
    let records = store
        .snapshot_records_on(&id.provider, &id.target, id.disk_id)
        .await?;
    recorded(&records, id, &snap.name, true)?
        .cloned()
        .ok_or_else(|| {
            CliError::Runtime(anyhow::anyhow!(
                "snapshot {} vanished from the store",
                snap.name
            ))
        })
}
