//! The domain: definitions, their identity and target, runs, snapshots and
//! schedules. This tree imports nothing else of the crate; every other layer
//! (store, providers, engine, CLI) speaks in these types.

pub mod definition;
pub mod event;
pub mod hooks;
pub mod node;
pub mod run;
pub mod schedule;
pub mod snapshot;
pub mod target;
pub mod text;

pub use definition::{
    Definition, DefinitionSpec, FieldError, Identity, KeepTiers, RawDefinition, Source,
};
pub use hooks::{Consistency, HookSpec, HookState, Hooks};
pub use node::{Node, NodeInfo, NodeRole, NodeState};
pub use run::{Claim, Run, RunState, Trigger};
pub use schedule::Schedule;
pub use snapshot::{
    describe_hold, CopyState, Hold, RecordState, RemoteSnapshot, SnapshotCopy, SnapshotRecord,
    SnapshotStatus,
};
pub use target::{ProviderKind, Target};
