//! tracing setup. `RUST_LOG` wins over the configured level. When stderr is
//! the journal (`JOURNAL_STREAM` names our stderr), lines carry no ANSI
//! colours and no timestamps of our own (journald adds both) and start with
//! the syslog priority of their level (`<4>` for a warning, see
//! sd-daemon(3)), so `journalctl -p warning` finds them; elsewhere they
//! are human-readable with timestamps; `log_format = "json"` gives one JSON
//! object per line.
//!
//! Owns [`LogFormat`] (the config's `log_format` parses into it). Installing
//! the subscriber never fails the caller: a second call, or a log line that
//! cannot be written, is silently dropped.

use std::io::IsTerminal;

use serde::{Deserialize, Serialize};
use tracing::Level;
use tracing_subscriber::fmt::{format, FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
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

/// The syslog priority journald reads from a `<N>` line prefix.
fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// An event format that puts the level's syslog priority before the line
/// another format writes.
struct Priority<F>(F);

impl<S, N, F> FormatEvent<S, N> for Priority<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", syslog_priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Lines for the journal: no time, no colours, the priority first.
fn journal_format() -> Priority<format::Format<format::Full, ()>> {
    Priority(
        format::format()
            .without_time()
            .with_ansi(false)
            .with_target(false),
    )
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
        LogFormat::Text if stderr_is_journal() => builder
            .fmt_fields(escaped_fields())
            .event_format(journal_format())
            .try_init(),
        LogFormat::Text => builder
            .fmt_fields(escaped_fields())
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

/// The text format's fields, `message` first as is and the others as
/// `name=value`, with every control character escaped: a value that came
/// from outside (a provider's message, a snapshot name) cannot start a
/// line of its own, forge another record or drive the terminal.
pub fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        let text = crate::table::escape_controls(&text);
        match field.name() {
            "message" => write!(w, "{text}"),
            name => write!(w, "{}={text}", name.strip_prefix("r#").unwrap_or(name)),
        }
    })
    .delimited(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Journal lines start with their level's priority, one per level.
    #[test]
    fn journal_lines_carry_the_syslog_priority_of_their_level() {
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::TRACE)
            .with_writer(move || sink.clone())
            .event_format(journal_format())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(definition = "db", "e");
            tracing::warn!("w");
            tracing::info!("i");
            tracing::debug!("d");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        for (line, prefix) in lines.iter().zip(["<3>", "<4>", "<6>", "<7>"]) {
            assert!(
                line.starts_with(prefix),
                "{line} should start with {prefix}"
            );
        }
        assert!(lines[0].contains("definition=\"db\""), "{}", lines[0]);
    }

    #[test]
    fn a_value_from_outside_cannot_forge_a_text_log_line() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(super::escaped_fields())
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .finish();
        let outside = "gone\nINFO run ended result=\"succeeded\"\u{1b}[2J\u{7}";
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(snapshot = %outside, error = outside, "deleting {outside} failed");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains(['\u{1b}', '\u{7}']), "{text:?}");
        assert!(text.contains("deleting gone\\nINFO run ended"), "{text}");
        assert!(text.contains("snapshot=gone\\nINFO"), "{text}");
    }
}
