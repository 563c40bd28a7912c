//! snapsched: a snapshot scheduler for cloud VM disks.
//!
//! The binary (`src/main.rs`) is a thin shell over this library so that tests
//! and benchmarks drive everything in-process.

pub mod cli;
pub mod provider;
pub mod schedule;
pub mod secret;
