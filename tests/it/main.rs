//! snapsched integration tests, in one binary so the crate graph links once.

mod digitalocean;
mod erigones;
mod scheduler;
