//! snapsched integration tests, in one binary so the crate graph links once.

mod cli_def;
mod config_file;
mod cron_oracle;
mod digitalocean;
mod erigones;
mod metrics;
mod notify;
mod retention_e2e;
mod scheduler;
mod secrets;
mod support;
