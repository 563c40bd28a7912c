//! tracing setup. `RUST_LOG` wins over the configured level. When stderr is
//! the journal (`JOURNAL_STREAM` names our stderr), lines carry no ANSI
//! colours and no timestamps of our own (journald adds both); elsewhere they
//! are human-readable with timestamps; `log_format = "json"` gives one JSON
//! object per line.
//!
//! Owns [`LogFormat`] (the config's `log_format` parses into it). Installing
//! the subscriber never fails the caller: a second call, or a log line that
//! cannot be written, is silently dropped.

use std::io::IsTerminal;

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// True when stderr is connected to the systemd journal.
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// Install the global subscriber (once; later calls are ignored).
pub fn init(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A log line that cannot be written is dropped. The default reports
        // it with `eprint!`, which panics when stderr is a closed pipe, so
        // a daemon whose log reader went away would die.
        .log_internal_errors(false)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text if stderr_is_journal() => {
            builder.without_time().with_ansi(false).try_init()
        }
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}
