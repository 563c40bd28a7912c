//! The configured providers by name, shared by the scheduler (which looks
//! one up when a run starts) and the daemon's reload (which swaps in a new
//! set).
//!
//! Invariants: the map is replaced as a whole, never edited in place, so a
//! reader sees one configuration or the next, never a mix; a reader holds
//! the lock only to clone an `Arc`, and keeps using the snapshot it got
//! after a swap; a poisoned lock is read and written through (the map
//! behind it is always whole).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::domain::ProviderKind;

/// Providers by configured name, each with its kind.
pub type ProviderMap<P> = HashMap<String, (P, ProviderKind)>;

/// A shared, swappable [`ProviderMap`]. Cloning shares it.
pub struct Providers<P>(Arc<RwLock<Arc<ProviderMap<P>>>>);

impl<P> Providers<P> {
    pub fn new(map: ProviderMap<P>) -> Self {
        Providers(Arc::new(RwLock::new(Arc::new(map))))
    }

    /// The providers now.
    pub fn current(&self) -> Arc<ProviderMap<P>> {
        self.0
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Swap in a new set (a reload).
    pub fn replace(&self, map: ProviderMap<P>) {
        let map = Arc::new(map);
        match self.0.write() {
            Ok(mut p) => *p = map,
            Err(e) => *e.into_inner() = map,
        }
    }
}

impl<P> Clone for Providers<P> {
    fn clone(&self) -> Self {
        Providers(self.0.clone())
    }
}

impl<P> From<ProviderMap<P>> for Providers<P> {
    fn from(map: ProviderMap<P>) -> Self {
        Providers::new(map)
    }
}
