//! The webhook's secrets: its URL ([`WebhookUrl`]: refused with
//! credentials in it, printed as its origin only, since receivers often
//! carry a token in the path) and the HTTP headers that carry a token,
//! read from a private credential file of `Name: value` lines.
//!
//! The file goes through the same checks as every other secret file (private
//! mode, readable, not empty; see [`super::credentials`]). Blank lines and
//! lines starting with `#` are skipped. Errors name the file, the line
//! number and the header name, never a value.

use std::path::{Path, PathBuf};

use super::credentials::credentials_directory;
use super::{Credential, Secret};

/// An `http` or `https` URL without user or password. `Debug` and
/// `Display` show the origin (scheme, host, port) and hide the path and
/// query: chat webhooks put their token there.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

impl WebhookUrl {
    /// Parse and check a URL; the error says what is wrong and how to fix
    /// it, showing the URL only as its origin.
    pub fn parse(text: &str) -> Result<WebhookUrl, String> {
        let url = url::Url::parse(text.trim()).map_err(|e| {
            format!("not a URL ({e}): write it like \"https://hooks.example.com/snapsched\"")
        })?;
        let shown = origin(&url);
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "'{shown}' is not an http or https URL: write it like \"https://hooks.example.com/snapsched\""
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(
                "the URL names no host: write it like \"https://hooks.example.com/snapsched\""
                    .into(),
            );
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "credentials in the URL are refused (they would end up in logs and process listings): \
                 remove them from '{shown}/…' and put `Authorization: Basic <base64 of user:password>` \
                 in webhook_headers_file"
            ));
        }
        Ok(WebhookUrl(url))
    }

    /// The whole URL, for the request only.
    pub fn expose(&self) -> &url::Url {
        &self.0
    }
}

/// `scheme://host[:port]` of a URL, without user, password, path or query.
fn origin(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{}://{host}:{p}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

impl std::fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = self.0.path() != "/" || self.0.query().is_some();
        write!(
            f,
            "{}{}",
            origin(&self.0),
            if hidden { "/[redacted]" } else { "/" }
        )
    }
}

impl std::fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookUrl({self})")
    }
}

/// The systemd credential holding the webhook's headers, used when
/// `[notify] webhook_headers_file` is not set.
pub const WEBHOOK_HEADERS_CREDENTIAL: &str = "webhook_headers";

/// Headers the HTTP client sets itself; a file may not override them.
const RESERVED: [&str; 5] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
];

/// One header; its value is a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Secret,
}

/// Where the webhook's headers come from: the configured file, else the
/// systemd credential `webhook_headers` when present, else nowhere.
pub fn webhook_headers_source(file: Option<PathBuf>) -> Option<Credential> {
    webhook_headers_source_in(file, credentials_directory().as_deref())
}

/// [`webhook_headers_source`] with systemd's credentials directory given.
pub fn webhook_headers_source_in(file: Option<PathBuf>, dir: Option<&Path>) -> Option<Credential> {
    match file {
        Some(p) => Some(Credential::File(p)),
        None => dir
            .map(|d| d.join(WEBHOOK_HEADERS_CREDENTIAL))
            .filter(|p| p.exists())
            .map(Credential::Systemd),
    }
}

/// Read and parse the headers from `source` (a file or a systemd
/// credential).
pub fn load_headers(source: &Credential) -> Result<Vec<Header>, String> {
    let where_ = match source {
        Credential::File(p) | Credential::Systemd(p) => p.display().to_string(),
        Credential::Env(v) => format!("${v}"),
        Credential::Inline(_) => "the configuration".to_owned(),
    };
    parse_headers(source.load_lines()?.expose(), &where_)
}

/// Parse `Name: value` lines; `where_` names the source in errors.
pub fn parse_headers(text: &str, where_: &str) -> Result<Vec<Header>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{where_} line {}", i + 1);
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!(
                "{at}: not a header: write one `Name: value` per line, e.g. `Authorization: Bearer <token>`"
            ));
        };
        let name = name.trim();
        let value = value.trim();
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(format!(
                "{at}: the header name before ':' must be letters, digits and -, e.g. Authorization"
            ));
        }
        if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{at}: header {name} is set by snapsched itself; remove the line"
            ));
        }
        if value.is_empty() {
            return Err(format!("{at}: header {name} has no value"));
        }
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(format!(
                "{at}: the value of header {name} holds a control character"
            ));
        }
        out.push(Header {
            name: name.to_owned(),
            value: Secret::new(value),
        });
    }
    if out.is_empty() {
        return Err(format!("{where_} holds no `Name: value` header line"));
    }
    Ok(out)
}

/// RFC 9110 `tchar`.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_webhook_url_is_http_without_credentials_and_prints_its_origin_only() {
        let u =
            WebhookUrl::parse("https://hooks.example.com:8443/services/T0/B0/s3cret?x=1").unwrap();
        assert_eq!(u.to_string(), "https://hooks.example.com:8443/[redacted]");
        assert!(!format!("{u:?}").contains("s3cret"));
        assert_eq!(u.expose().path(), "/services/T0/B0/s3cret");
        assert_eq!(
            WebhookUrl::parse("http://127.0.0.1:9/")
                .unwrap()
                .to_string(),
            "http://127.0.0.1:9/"
        );
        for (text, want) in [
            (
                "https://user:s3cret@hooks.example.com/x",
                "credentials in the URL are refused",
            ),
            (
                "https://s3cret@hooks.example.com/x",
                "credentials in the URL are refused",
            ),
            ("ftp://hooks.example.com/s3cret", "not an http or https URL"),
            ("hooks.example.com/s3cret", "not a URL"),
        ] {
            let err = WebhookUrl::parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn header_lines_are_parsed_with_comments_and_blanks_skipped() {
        let h = parse_headers(
            "# the receiver's token\nAuthorization: Bearer s3cret\n\nX-Team:  ops \n",
            "f",
        )
        .unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].name, "Authorization");
        assert_eq!(h[0].value.expose(), "Bearer s3cret");
        assert_eq!((h[1].name.as_str(), h[1].value.expose()), ("X-Team", "ops"));
        assert!(!format!("{h:?}").contains("s3cret"));
    }

    #[test]
    fn bad_lines_are_refused_by_line_number_without_the_value() {
        for (text, want) in [
            ("Authorization Bearer s3cret", "line 1: not a header"),
            ("\nBad Name: s3cret", "line 2: the header name"),
            ("Host: s3cret", "set by snapsched itself"),
            ("Authorization:", "has no value"),
            ("# nothing\n", "holds no"),
        ] {
            let err = parse_headers(text, "/etc/snapsched/webhook.headers").unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn a_headers_file_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h");
        std::fs::write(&p, "Authorization: Bearer s3cret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_headers(&Credential::File(p.clone())).unwrap_err();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_headers(&Credential::File(p)).unwrap().len(), 1);
    }

    #[test]
    fn the_file_beats_the_systemd_credential() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(webhook_headers_source_in(None, Some(dir.path())), None);
        let cred = dir.path().join(WEBHOOK_HEADERS_CREDENTIAL);
        std::fs::write(&cred, "A: b").unwrap();
        assert_eq!(
            webhook_headers_source_in(None, Some(dir.path())),
            Some(Credential::Systemd(cred))
        );
        assert_eq!(
            webhook_headers_source_in(Some("/x".into()), Some(dir.path())),
            Some(Credential::File("/x".into()))
        );
    }
}
