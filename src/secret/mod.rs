//! Secrets (API tokens and keys) that must never be printed.
//!
//! [`Secret`] redacts itself in `Debug` and `Display`; the only way to the
//! value is [`Secret::expose`], which call sites use at the moment they build
//! an HTTP header, nowhere else.
//!
//! [`credentials`] says where a secret comes from (a private file, a systemd
//! credential, an environment variable, inline) and reads it.

use std::fmt;

pub mod credentials;

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

/// `text` with the password of every URL in it replaced by `[redacted]`
/// (`http://admin:pw@host/` → `http://admin:[redacted]@host/`): for
/// anything that may quote a configured URL on its way to a message, a log
/// line or `config show`. Text without credentials is returned as is.
pub fn redact_urls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends at the path, query or fragment, or where the
        // URL ends in prose.
        let end = tail
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`') || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => out.push_str(&format!("{user}:[redacted]@{host}")),
                None => out.push_str(authority),
            },
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// A URL as it may be shown: its password, if any, `[redacted]`.
pub fn redacted_url(url: &url::Url) -> String {
    if url.password().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    // Only URLs that cannot have a password refuse this.
    let _ = shown.set_password(Some("[redacted]"));
    shown.to_string().replace("%5Bredacted%5D", "[redacted]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_redacted_wherever_they_appear() {
        assert_eq!(
            redact_urls("error sending request for url (http://admin:URLSECRET@10.0.0.1:8080/api/vm/): refused"),
            "error sending request for url (http://admin:[redacted]@10.0.0.1:8080/api/vm/): refused"
        );
        assert_eq!(
            redact_urls("a https://u:p@w@h and http://plain.example/x@y"),
            "a https://u:[redacted]@h and http://plain.example/x@y"
        );
        assert_eq!(
            redact_urls("no url here, me@example.com"),
            "no url here, me@example.com"
        );
        let url = url::Url::parse("http://admin:URLSECRET@host/api").unwrap();
        assert_eq!(redacted_url(&url), "http://admin:[redacted]@host/api");
        let plain = url::Url::parse("https://api.digitalocean.com").unwrap();
        assert_eq!(redacted_url(&plain), "https://api.digitalocean.com/");
    }

    #[test]
    fn secret_never_prints_its_value() {
        let s = Secret::new("dop_v1_abcdef\n");
        assert_eq!(s.expose(), "dop_v1_abcdef");
        assert!(!format!("{s:?}").contains("abcdef"));
        assert!(!format!("{s}").contains("abcdef"));
    }
}
