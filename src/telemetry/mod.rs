//! Telemetry: everything snapsched reports about itself, in one place.
//!
//! - [`metrics`]: every metric name, label set and help text, and the typed
//!   functions the rest of the crate records through
//!   (`telemetry::metrics::run_finished(&identity, state)`).
//! - [`metrics_server`]: the optional `[metrics] listen` endpoint
//!   (`/metrics`, `/healthz`) and the tick hook that feeds it.
//! - [`definition_gauges`]: per-definition gauges re-read from the store.
//! - [`node_gauges`]: per-node gauges and the store's reachability, re-read
//!   from the store.
//! - [`notify`]: the systemd `sd_notify` protocol.
//! - [`logging`]: the tracing subscriber.
//! - [`Status`], [`Tick`], [`Hooks`]: what the scheduler and the daemon hand
//!   to those observers.
//!
//! Invariants: no other module names a metric or a label key; a series
//! about a definition carries its whole identity; telemetry never fails or
//! stalls the scheduler (every sink is in-memory or non-blocking, and a
//! missing recorder or service manager makes the calls no-ops).
//!
//! Layering: [`metrics`], [`notify`] and [`logging`] depend on the domain
//! only; [`definition_gauges`], [`node_gauges`] and the endpoint's health
//! check also read the store, and [`Hooks`] hand the store over once open.
//! Nothing here imports the scheduler, the daemon, the config or the CLI.

pub mod definition_gauges;
pub mod logging;
pub mod metrics;
pub mod metrics_server;
pub mod node_gauges;
pub mod notify;
mod status;

pub use status::{Hooks, Status, Tick};
