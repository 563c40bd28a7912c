//! snapsched integration tests, in one binary so the crate graph links once.

mod cron_oracle;
mod digitalocean;
mod erigones;
