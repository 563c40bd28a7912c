//! Definition changes: the store's definitions change counter is polled,
//! and when it moved the scheduled set is rebuilt from the store.
//!
//! The CLI (`def add`, `def edit`, ...) and the daemon's own reload write
//! definitions to the store and bump its change counter; the loop notices
//! within one `change_poll` and calls [`Scheduler::sync_definitions`].
//!
//! Invariants:
//! - The counter is read at most once per `change_poll`, however often the
//!   loop wakes (runs ending wake it too).
//! - Only active definitions whose provider is configured and whose
//!   schedule and target parse are scheduled; others are logged and left
//!   out (never a default in their place).
//! - An unchanged definition keeps its timer untouched; a changed one is
//!   rescheduled from the later of its last handled slot and its edit, so
//!   an edit never re-runs a slot already handled nor fires a slot from
//!   before the edit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Entry, Scheduler};
use crate::domain::definition::parse_target;
use crate::domain::{Definition, Identity, ProviderKind};
use crate::provider::Provider;
use crate::store::{Store, StoreResult};

/// When the definitions change counter was last read, and what it said
/// at the last sync.
pub(crate) struct ChangeWatch {
    every: Duration,
    generation: i64,
    checked: Option<tokio::time::Instant>,
}

impl ChangeWatch {
    pub fn new(every: Duration) -> Self {
        ChangeWatch {
            every,
            generation: -1,
            checked: None,
        }
    }

    /// A sync saw `generation`.
    pub fn synced(&mut self, generation: i64) {
        self.generation = generation;
    }

    /// True when the counter moved since the last sync; reads it only when
    /// `every` has passed since the last read.
    pub async fn changed(&mut self, store: &Store) -> StoreResult<bool> {
        let due = self.checked.is_none_or(|t| t.elapsed() >= self.every);
        if !due {
            return Ok(false);
        }
        self.checked = Some(tokio::time::Instant::now());
        Ok(store.definitions_generation().await? != self.generation)
    }
}

impl<P: Provider + Clone + 'static> Scheduler<P> {
    /// Re-read definitions from the store and rebuild changed entries.
    /// Rows are handled as they are read, never all held at once: the
    /// queue keeps only a small entry per definition, and a transient copy
    /// of every row would leave its peak in the process's memory.
    pub async fn sync_definitions(&mut self) -> StoreResult<()> {
        self.status.mark_dirty();
        self.changes
            .synced(self.store.definitions_generation().await?);
        let providers = self.providers.current();
        let now = self.clock.now();
        let default_tz = self.settings.default_tz;
        let (timers, last_slot) = (&mut self.timers, &self.last_slot);
        // The queue's own keys, so that remembering what was seen copies
        // no identity.
        let mut seen: HashSet<Arc<Identity>> = HashSet::with_capacity(timers.len());
        self.store
            .for_each_definition(|def| {
                let id = &def.spec.identity;
                if !def.spec.active {
                    return;
                }
                let Some((_, kind)) = providers.get(&id.provider) else {
                    tracing::warn!(definition = %id.name, provider = %id.provider, target = %id.target, disk = id.disk_id, "provider '{}' is not configured; definition not scheduled", id.provider);
                    return;
                };
                let current = timers.get(id).map(|e| e.fingerprint);
                if let Some(key) = timers.key(id) {
                    seen.insert(key.clone());
                }
                if current == Some(super::fingerprint(&def.spec)) {
                    return;
                }
                if let Some((entry, next)) = entry_for(&def, *kind, now, default_tz, last_slot) {
                    let key = Arc::new(id.clone());
                    seen.insert(key.clone());
                    timers.insert(key, entry, next);
                }
            })
            .await?;
        self.timers.retain(|id| seen.contains(id));
        // A slot not yet claimed (deferred to its preferred node, or kept
        // through a store outage) of a definition no longer scheduled is
        // dropped: once this sync is done, nothing of it is claimed here.
        let timers = &self.timers;
        self.cluster
            .deferred
            .retain(|(_, due)| timers.get(&due.id).is_some());
        self.cluster
            .unclaimed
            .retain(|due| timers.get(&due.id).is_some());
        Ok(())
    }
}

/// The timer entry of a new or changed definition and its next fire,
/// or `None` (logged) when its target does not suit its provider's kind.
fn entry_for(
    def: &Definition,
    kind: ProviderKind,
    now: DateTime<Utc>,
    default_tz: chrono_tz::Tz,
    last_slot: &HashMap<Arc<Identity>, DateTime<Utc>>,
) -> Option<(Entry, Option<DateTime<Utc>>)> {
    let id = &def.spec.identity;
    // The target was parsed when the definition was made; this checks it
    // against the provider's kind, which the config may have changed.
    if let Err(e) = parse_target(&id.target, kind) {
        tracing::error!(definition = %id.name, provider = %id.provider, target = %id.target, disk = id.disk_id, "{e}; definition not scheduled");
        return None;
    }
    let zone = def.spec.zone(default_tz);
    let from = last_slot
        .get(id)
        .copied()
        .into_iter()
        .chain([def.updated_at.min(now)])
        .max()
        .unwrap_or(now);
    let next = def.spec.schedule.next_after(from, zone);
    Some((Entry::new(&def.spec, zone), next))
}
