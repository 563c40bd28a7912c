//! The one integration test binary; each module covers one area.

mod cli_def;
mod config_file;
mod support;
