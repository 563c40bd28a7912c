//! Secrets (API tokens and keys) that must never be printed.
//!
//! [`Secret`] redacts itself in `Debug` and `Display`; the only way to the
//! value is [`Secret::expose`], which call sites use at the moment they build
//! an HTTP header, nowhere else.
//!
//! [`credentials`] says where a secret comes from (a private file, a systemd
//! credential, an environment variable, inline) and reads it; [`webhook`]
//! holds the webhook's URL (which may carry a token in its path) and reads
//! the HTTP headers that carry its token.

use std::fmt;

pub mod credentials;
pub mod webhook;

pub use credentials::Credential;

/// A credential. `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value, trimming surrounding whitespace and newlines (token files
    /// usually end with one).
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into().trim().to_owned())
    }

    /// The raw value, for building an `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints_its_value() {
        let s = Secret::new("dop_v1_abcdef\n");
        assert_eq!(s.expose(), "dop_v1_abcdef");
        assert!(!format!("{s:?}").contains("abcdef"));
        assert!(!format!("{s}").contains("abcdef"));
    }
}
