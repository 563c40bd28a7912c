//! snapsched: a snapshot scheduler for cloud VM disks.
//!
//! The binary (`src/main.rs`) is a thin shell over this library so that tests
//! and benchmarks drive everything in-process.

pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod domain;
pub mod notify;
pub mod provider;
pub mod prune;
pub mod retention;
pub mod run;
pub mod scheduler;
pub mod secret;
pub mod store;
pub mod table;
pub mod telemetry;
pub mod wiring;
