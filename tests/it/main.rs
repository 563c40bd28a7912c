//! snapsched integration tests, in one binary so the crate graph links once.

mod api_budget;
mod check;
mod cli_def;
mod cli_keep;
mod cluster;
mod config_cluster;
mod config_file;
mod confirm;
mod crash;
mod cron_oracle;
mod digitalocean;
mod erigones;
mod hostile;
mod import;
mod lost_answers;
mod metrics;
mod nodes;
mod notify;
mod prune_guard;
mod retention_e2e;
mod retention_oracle;
mod retention_simulate;
mod run_cli;
mod scheduler;
mod secrets;
mod support;
