//! Where a secret comes from, and reading it.
//!
//! One order for every secret (provider tokens and keys, the database
//! password), first found wins:
//!
//! 1. a file named in the configuration (`token_file`, `api_key_file`,
//!    `database_password_file`);
//! 2. the systemd credential (`LoadCredential=`), read from
//!    `$CREDENTIALS_DIRECTORY/<name>` when that file exists: the provider's
//!    section name for a provider, `database` for the database;
//! 3. an environment variable (`token_env`, `api_key_env`) or an inline value
//!    (`token`, `api_key`; accepted only in a private config file); for the
//!    database, `$PGPASSWORD` and `~/.pgpass`, which the PostgreSQL driver
//!    reads itself.
//!
//! So an installed service's credential is used even when the shipped
//! example names an environment variable the service does not have, and an
//! explicit file always wins.
//!
//! Every file holding a secret must be private (no access for group and
//! others); errors name where the secret was looked for, never its value.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Secret;
use crate::domain::ProviderKind;

/// The systemd credential holding the database password.
pub const DATABASE_CREDENTIAL: &str = "database";

/// The config key families of provider secrets; `token` stands for `token`,
/// `token_file` and `token_env`.
pub const SECRET_NAMES: [&str; 2] = ["token", "api_key"];

/// The name of a provider kind's secret in the configuration (`token` for
/// DigitalOcean, `api_key` for Erigones), or `None` for a kind that needs no
/// secret. The one place that maps a kind to its secret.
pub fn secret_name(kind: ProviderKind) -> Option<&'static str> {
    match kind {
        ProviderKind::DigitalOcean => Some("token"),
        ProviderKind::Erigones => Some("api_key"),
        ProviderKind::Fake => None,
    }
}

/// Where a secret comes from, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    /// `token_file` / `api_key_file` / `database_password_file`.
    File(PathBuf),
    /// `$CREDENTIALS_DIRECTORY/<name>` (systemd `LoadCredential=`).
    Systemd(PathBuf),
    /// `token_env` / `api_key_env`.
    Env(String),
    /// Inline in the config file (accepted only when the file is private).
    #[serde(serialize_with = "redacted")]
    Inline(Secret),
}

fn redacted<S: serde::Serializer>(_: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("[redacted]")
}

/// What a configuration section gives for a secret, before the order above
/// is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Given {
    File(PathBuf),
    Env(String),
    Inline(Secret),
}

impl Credential {
    /// Choose the source of the secret of `name` (a provider's section name)
    /// from what the section gives, in the documented order. `None` when
    /// there is nothing at all.
    pub fn resolve(given: Option<Given>, name: &str) -> Option<Credential> {
        Self::resolve_in(given, name, credentials_directory().as_deref())
    }

    /// [`Credential::resolve`] with systemd's credentials directory given.
    pub fn resolve_in(given: Option<Given>, name: &str, dir: Option<&Path>) -> Option<Credential> {
        let systemd = dir.map(|d| d.join(name));
        match (given, systemd) {
            (Some(Given::File(p)), _) => Some(Credential::File(p)),
            (_, Some(p)) if p.exists() => Some(Credential::Systemd(p)),
            (Some(Given::Env(var)), _) => Some(Credential::Env(var)),
            (Some(Given::Inline(s)), _) => Some(Credential::Inline(s)),
            // Under systemd with no credential file: point at where it was
            // expected, so the error says so.
            (None, Some(p)) => Some(Credential::Systemd(p)),
            (None, None) => None,
        }
    }

    /// The database password's source beyond the URL: the password file,
    /// else the systemd credential `database` when present, else `None`
    /// (the PostgreSQL driver then reads `$PGPASSWORD` and `~/.pgpass`).
    pub fn database_password(file: Option<PathBuf>) -> Option<Credential> {
        Self::database_password_in(file, credentials_directory().as_deref())
    }

    /// [`Credential::database_password`] with systemd's credentials
    /// directory given.
    pub fn database_password_in(file: Option<PathBuf>, dir: Option<&Path>) -> Option<Credential> {
        match file {
            Some(p) => Some(Credential::File(p)),
            None => dir
                .map(|d| d.join(DATABASE_CREDENTIAL))
                .filter(|p| p.exists())
                .map(Credential::Systemd),
        }
    }

    /// Read the secret. The error names where it was looked for and never
    /// contains the secret.
    pub fn load(&self) -> Result<Secret, String> {
        match self {
            Credential::File(p) | Credential::Systemd(p) => read_private(p),
            Credential::Env(var) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => {
                    check_one_line(
                        &v,
                        &format!("environment variable {var}"),
                        "set it to the secret alone, on one line",
                    )?;
                    Ok(Secret::new(v))
                }
                Ok(_) => Err(format!("environment variable {var} is empty")),
                Err(_) => Err(format!("environment variable {var} is not set")),
            },
            Credential::Inline(s) => {
                check_one_line(
                    s.expose(),
                    "the inline secret",
                    "write the secret alone, on one line",
                )?;
                Ok(s.clone())
            }
        }
    }
}

/// `$CREDENTIALS_DIRECTORY`, when systemd passed credentials.
pub fn credentials_directory() -> Option<PathBuf> {
    std::env::var_os("CREDENTIALS_DIRECTORY")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

/// Read a private, non-empty secret file.
fn read_private(path: &Path) -> Result<Secret, String> {
    check_private(path)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
    let s = Secret::new(text.as_str());
    if s.is_empty() {
        return Err(format!("secret file {} is empty", path.display()));
    }
    check_one_line(
        &text,
        &format!("secret file {}", path.display()),
        &format!(
            "write the secret alone on one line, e.g. printf '%s\\n' \"$TOKEN\" > {}",
            path.display()
        ),
    )?;
    Ok(s)
}

/// A secret goes into an HTTP header: one line, no control characters.
/// One line ending (`\n` or `\r\n`) after it is allowed, as editors and
/// `echo` write one. The message says where the secret came from and how to
/// fix it, never the secret.
pub fn check_one_line(raw: &str, from: &str, fix: &str) -> Result<(), String> {
    let body = raw
        .strip_suffix("\r\n")
        .or_else(|| raw.strip_suffix('\n'))
        .unwrap_or(raw);
    match body.chars().enumerate().find(|(_, c)| c.is_control()) {
        None => Ok(()),
        Some((at, c)) => {
            let what = match c {
                '\n' => "a line break".to_owned(),
                '\r' => "a carriage return".to_owned(),
                '\t' => "a tab".to_owned(),
                c => format!("the control character U+{:04X}", u32::from(c)),
            };
            Err(format!(
                "{from} holds {what} at character {} of the secret (only one line ending after it is allowed); {fix}",
                at + 1
            ))
        }
    }
}

/// Refuse a file holding a secret that group or others can read.
pub fn check_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is readable by group or others (mode {:o}); run: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn a_secret_with_a_line_break_or_control_character_inside_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for ok in ["tok\n", "tok\r\n", "tok", " tok \n"] {
            let p = write(dir.path(), "ok", ok, 0o600);
            assert_eq!(
                Credential::File(p).load().unwrap().expose(),
                "tok",
                "{ok:?}"
            );
        }
        for (bad, what) in [
            ("dop_v1_SECRET\nmore\n", "a line break at character 14"),
            ("dop_v1_SECRET\n\n", "a line break"),
            ("dop\x1b_SECRET", "U+001B"),
            ("dop\t_SECRET", "a tab"),
        ] {
            let p = write(dir.path(), "bad", bad, 0o600);
            let e = Credential::File(p.clone()).load().unwrap_err();
            assert!(
                e.contains(what) && e.contains(&p.display().to_string()),
                "{bad:?}: {e}"
            );
            assert!(e.contains("printf"), "no fix in: {e}");
            assert!(!e.contains("SECRET"), "{e}");
        }
        let e = Credential::Inline(Secret::new("a\u{7}b"))
            .load()
            .unwrap_err();
        assert!(e.contains("U+0007"), "{e}");
    }

    #[test]
    fn every_kind_that_needs_a_secret_names_one_of_the_families() {
        for kind in [ProviderKind::DigitalOcean, ProviderKind::Erigones] {
            let name = secret_name(kind).expect("a secret");
            assert!(SECRET_NAMES.contains(&name), "{kind}: {name}");
        }
        assert_eq!(secret_name(ProviderKind::Fake), None);
    }

    #[test]
    fn a_private_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "t", "dop_v1_x\n", 0o600);
        assert_eq!(Credential::File(p).load().unwrap().expose(), "dop_v1_x");
    }

    #[test]
    fn a_group_readable_file_is_refused_with_the_fix_and_without_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "t", "SECRETVALUE\n", 0o640);
        let err = Credential::File(p.clone()).load().unwrap_err();
        assert!(err.contains(&format!("chmod 600 {}", p.display())), "{err}");
        assert!(!err.contains("SECRETVALUE"), "{err}");
    }

    #[test]
    fn an_empty_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "t", " \n", 0o600);
        let err = Credential::File(p).load().unwrap_err();
        assert!(err.contains("is empty"), "{err}");
    }

    #[test]
    fn a_configured_file_beats_the_systemd_credential_which_beats_env_and_inline() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).unwrap();
        let file = || Some(Given::File("/etc/snapsched/do.token".into()));
        let env = || Some(Given::Env("DIGITALOCEAN_TOKEN".into()));
        let inline = || Some(Given::Inline(Secret::new("x")));
        let no_dir: Option<&Path> = None;

        // No credential loaded: what the section gives.
        let c = Credential::resolve_in(env(), "do", Some(&creds));
        assert_eq!(c, Some(Credential::Env("DIGITALOCEAN_TOKEN".into())));
        assert_eq!(Credential::resolve_in(None, "do", no_dir), None);
        // Under systemd with nothing given, the expected credential path.
        assert_eq!(
            Credential::resolve_in(None, "do", Some(&creds)),
            Some(Credential::Systemd(creds.join("do")))
        );

        // The credential is present: it beats env and inline, not a file.
        write(&creds, "do", "t", 0o400);
        for given in [env(), inline(), None] {
            assert_eq!(
                Credential::resolve_in(given, "do", Some(&creds)),
                Some(Credential::Systemd(creds.join("do")))
            );
        }
        assert_eq!(
            Credential::resolve_in(file(), "do", Some(&creds)),
            Some(Credential::File("/etc/snapsched/do.token".into()))
        );
        // Another provider's credential is not ours.
        assert_eq!(
            Credential::resolve_in(env(), "dc1", Some(&creds)),
            Some(Credential::Env("DIGITALOCEAN_TOKEN".into()))
        );
    }

    #[test]
    fn the_database_password_comes_from_the_file_then_the_credential_then_nowhere() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).unwrap();
        let file = PathBuf::from("/etc/snapsched/db.password");
        assert_eq!(Credential::database_password_in(None, Some(&creds)), None);
        assert_eq!(Credential::database_password_in(None, None), None);
        let pw = write(&creds, DATABASE_CREDENTIAL, "hunter2\n", 0o400);
        let c = Credential::database_password_in(None, Some(&creds));
        assert_eq!(c, Some(Credential::Systemd(pw)));
        assert_eq!(c.unwrap().load().unwrap().expose(), "hunter2");
        assert_eq!(
            Credential::database_password_in(Some(file.clone()), Some(&creds)),
            Some(Credential::File(file))
        );
    }

    #[test]
    fn inline_secrets_serialize_redacted() {
        let c = Credential::Inline(Secret::new("SECRETVALUE"));
        let text = serde_json::to_string(&c).unwrap();
        assert!(!text.contains("SECRETVALUE"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }
}
