//! How parsed values print in `snapsched config show`: as they are written
//! in the file (zones and URLs as text, durations as humantime), secrets
//! redacted.

use std::fmt;
use std::time::Duration;

pub(super) fn display<T: fmt::Display, S: serde::Serializer>(
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

pub(super) fn duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

/// A URL without its password.
pub(super) fn opt_url<S: serde::Serializer>(v: &Option<url::Url>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(u) => s.serialize_str(&crate::secret::redacted_url(u)),
        None => s.serialize_none(),
    }
}
