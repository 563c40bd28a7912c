//! snapsched: a snapshot scheduler for cloud VM disks.
//!
//! The binary (`src/main.rs`) is a thin shell over this library so that tests
//! and benchmarks drive everything in-process.

pub mod provider;
pub mod retention;
pub mod schedule;
pub mod secret;
pub mod table;
