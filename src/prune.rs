//! Pruning a definition's own snapshots at the provider (see `retention`
//! for the pure planner).

use chrono::{DateTime, Utc};

use crate::model::DefinitionSpec;
use crate::provider::{Provider, Target};
use crate::store::Store;

/// Prune after a successful create.
pub async fn after_success<P: Provider>(
    _store: &Store,
    _provider: &P,
    _spec: &DefinitionSpec,
    _target: &Target,
    _now: DateTime<Utc>,
) -> anyhow::Result<()> {
    Ok(())
}
