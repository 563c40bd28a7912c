//! `[daemon] database` and `database_password_file`: where the store lives.
//!
//! A SQLite file path (the default, relative to the config file) or a
//! `postgres://` / `postgresql://` URL, parsed into a [`Location`]. The
//! password never sits in the configuration: a URL that carries one is
//! refused. It comes, in order, from `database_password_file`, the systemd
//! credential `database`, then `$PGPASSWORD` / `~/.pgpass`, which the
//! PostgreSQL driver reads itself (see `crate::secret::credentials`); the
//! wiring module applies it when it opens the store. Every message shows the
//! URL redacted.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

use super::problems::Collector;
use crate::secret::Credential;
use crate::store::Location;

const KEY: &str = "daemon.database";
const PASSWORD_FILE_KEY: &str = "daemon.database_password_file";
const EXAMPLE: &str = "postgres://snapsched@db.example.com/snapsched";
const PASSWORD_FIX: &str = "put the password in a mode-0600 file named by daemon.database_password_file, a systemd credential named 'database', $PGPASSWORD or ~/.pgpass";

/// Where the packaged service keeps its store (the unit's
/// `StateDirectory=snapsched`).
pub const SERVICE_DATABASE: &str = "/var/lib/snapsched/snapsched.db";

/// The database path when the configuration names none:
/// `$STATE_DIRECTORY/snapsched.db` under systemd; else the installed
/// service's store when it exists, so that the CLI on the service's host
/// sees what the service does; else `$XDG_STATE_HOME/snapsched/snapsched.db`,
/// else `~/.local/state/snapsched/snapsched.db`.
pub fn default_database() -> PathBuf {
    default_database_with(Path::new(SERVICE_DATABASE))
}

fn default_database_with(service: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
        // systemd may pass several colon-separated directories; the first is ours.
        let first = dir
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or("")
            .to_owned();
        return PathBuf::from(first).join("snapsched.db");
    }
    // The service's directory is 0700: a user who may not look inside
    // still sees that it exists, and then gets the store's own "permission
    // denied" naming it rather than a new, empty store of their own.
    if service
        .parent()
        .is_some_and(|dir| dir.symlink_metadata().is_ok())
    {
        return service.to_owned();
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("snapsched/snapsched.db");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
    PathBuf::from(home).join(".local/state/snapsched/snapsched.db")
}

/// The store's location and, for PostgreSQL, where its password comes from
/// beyond what the driver finds itself.
pub(super) fn parse(
    text: Option<&str>,
    password_file: Option<PathBuf>,
    base_dir: &Path,
    c: &mut Collector,
) -> (Location, Option<Credential>) {
    let location = match text.map(str::trim) {
        None | Some("") => Location::Sqlite(default_database()),
        Some(t) => match scheme(t) {
            None => Location::Sqlite(base_dir.join(t)),
            Some(s)
                if s.eq_ignore_ascii_case("postgres") || s.eq_ignore_ascii_case("postgresql") =>
            {
                // A refused URL stands in as the default; the config is refused anyway.
                postgres(t, c).unwrap_or_else(|| Location::Sqlite(default_database()))
            }
            Some(_) => {
                c.push(
                    KEY,
                    format!(
                        "'{}' is not a database snapsched can use: give a SQLite file path or a PostgreSQL URL such as {EXAMPLE}",
                        redact(t)
                    ),
                );
                Location::Sqlite(default_database())
            }
        },
    };
    let password = match (&location, password_file) {
        (Location::Postgres(_), file) => {
            Credential::database_password(file.map(|f| base_dir.join(f)))
        }
        (Location::Sqlite(_), Some(_)) => {
            c.push(
                PASSWORD_FILE_KEY,
                format!("is only used with a PostgreSQL {KEY} (postgres://...); remove it, or set {KEY} to a postgres:// URL"),
            );
            None
        }
        (Location::Sqlite(_), None) => None,
    };
    (location, password)
}

/// The URL scheme of `text` (`postgres` in `postgres://...`), if it is one.
fn scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

/// A PostgreSQL URL without a password, as connection options.
fn postgres(text: &str, c: &mut Collector) -> Option<Location> {
    let url = match url::Url::parse(text) {
        Ok(u) => u,
        Err(e) => {
            c.push(
                KEY,
                format!(
                    "'{}' is not a valid PostgreSQL URL ({e}); write it like {EXAMPLE}",
                    redact(text)
                ),
            );
            return None;
        }
    };
    if url.password().is_some() || url.query_pairs().any(|(k, _)| k == "password") {
        c.push(
            KEY,
            format!(
                "'{}' holds a password, which must not sit in the configuration: remove it from the URL and {PASSWORD_FIX}",
                redact(text)
            ),
        );
        return None;
    }
    match PgConnectOptions::from_str(url.as_str()) {
        Ok(options) => Some(Location::Postgres(Box::new(options))),
        Err(e) => {
            c.push(
                KEY,
                format!(
                    "'{}' is not a valid PostgreSQL URL ({e}); write it like {EXAMPLE}",
                    redact(text)
                ),
            );
            None
        }
    }
}

/// `text` with the password of a URL's user part and any `password=`
/// parameter replaced by `[redacted]`. Works on text that is not a valid
/// URL, erring on the side of hiding too much.
pub fn redact(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    // The user part ends at the last '@': a password may hold '/' or '@'.
    let rest = match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:[redacted]@{host}"),
            None => rest.to_owned(),
        },
        None => rest.to_owned(),
    };
    let (head, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest.as_str(), None),
    };
    let mut out = format!("{scheme}://{head}");
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=[redacted]"),
                _ => p.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_installed_services_store_is_the_default_when_its_directory_exists() {
        if std::env::var_os("STATE_DIRECTORY").is_some() {
            return; // under systemd the unit's directory comes first
        }
        let root = tempfile::TempDir::new().unwrap();
        let service = root.path().join("snapsched/snapsched.db");
        assert_ne!(default_database_with(&service), service, "no service yet");
        std::fs::create_dir(root.path().join("snapsched")).unwrap();
        assert_eq!(default_database_with(&service), service);
    }

    fn parse_one(text: &str) -> (Result<Location, Vec<String>>, Option<Credential>) {
        let mut c = Collector::default();
        let (loc, pw) = parse(Some(text), None, Path::new("/etc/snapsched"), &mut c);
        if c.problems.is_empty() {
            (Ok(loc), pw)
        } else {
            (
                Err(c.problems.iter().map(ToString::to_string).collect()),
                pw,
            )
        }
    }

    #[test]
    fn a_path_is_a_sqlite_file_relative_to_the_config() {
        let (loc, _) = parse_one("snapsched.db");
        match loc.unwrap() {
            Location::Sqlite(p) => assert_eq!(p, Path::new("/etc/snapsched/snapsched.db")),
            other => panic!("{other:?}"),
        }
        let (loc, _) = parse_one("/var/lib/snapsched/snapsched.db");
        assert!(
            matches!(loc.unwrap(), Location::Sqlite(p) if p == Path::new("/var/lib/snapsched/snapsched.db"))
        );
    }

    #[test]
    fn nothing_given_is_the_default_sqlite_file() {
        let mut c = Collector::default();
        let (loc, pw) = parse(None, None, Path::new("/etc"), &mut c);
        assert!(matches!(loc, Location::Sqlite(p) if p == default_database()));
        assert!(pw.is_none() && c.problems.is_empty());
    }

    #[test]
    fn postgres_urls_in_both_spellings_parse_into_options() {
        for text in [
            "postgres://snapsched@db.example.com:5433/backups",
            "postgresql://snapsched@db.example.com:5433/backups?sslmode=require",
        ] {
            let (loc, _) = parse_one(text);
            let loc = loc.unwrap_or_else(|e| panic!("{text}: {e:?}"));
            let Location::Postgres(opts) = &loc else {
                panic!("{text}: {loc:?}")
            };
            assert_eq!(opts.get_host(), "db.example.com");
            assert_eq!(opts.get_port(), 5433);
            assert_eq!(opts.get_username(), "snapsched");
            assert_eq!(opts.get_database(), Some("backups"));
            assert_eq!(loc.backend(), "postgres");
        }
    }

    #[test]
    fn a_password_in_the_url_is_refused_naming_the_key_and_the_fix_without_the_password() {
        for text in [
            "postgres://snapsched:hunter2SECRET@db.example.com/backups",
            "postgresql://db.example.com/backups?user=snapsched&password=hunter2SECRET",
        ] {
            let (loc, _) = parse_one(text);
            let errors = loc.expect_err(text);
            let e = &errors[0];
            assert!(e.starts_with("daemon.database: "), "{e}");
            assert!(e.contains("holds a password"), "{e}");
            assert!(e.contains("daemon.database_password_file"), "{e}");
            assert!(e.contains("[redacted]"), "{e}");
            assert!(!e.contains("hunter2"), "the password leaked: {e}");
        }
    }

    #[test]
    fn a_malformed_url_is_refused_without_its_password() {
        let (loc, _) = parse_one("postgres://u:hunter2/x@:notaport/db");
        let e = loc.unwrap_err().join("\n");
        assert!(e.contains("daemon.database"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn another_scheme_is_refused() {
        let (loc, _) = parse_one("mysql://root:pw@localhost/db");
        let e = loc.unwrap_err().join("\n");
        assert!(
            e.contains("daemon.database") && e.contains("SQLite file path"),
            "{e}"
        );
        assert!(!e.contains(":pw@"), "{e}");
    }

    #[test]
    fn a_password_file_is_relative_to_the_config_and_only_for_postgres() {
        let mut c = Collector::default();
        let (_, pw) = parse(
            Some("postgres://snapsched@db/backups"),
            Some("db.password".into()),
            Path::new("/etc/snapsched"),
            &mut c,
        );
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(
            pw,
            Some(Credential::File("/etc/snapsched/db.password".into()))
        );

        let mut c = Collector::default();
        parse(
            Some("snapsched.db"),
            Some("db.password".into()),
            Path::new("/etc"),
            &mut c,
        );
        assert_eq!(c.problems[0].key, "daemon.database_password_file");
    }

    #[test]
    fn redact_hides_user_passwords_and_password_parameters() {
        assert_eq!(
            redact("postgres://u:p@h/db"),
            "postgres://u:[redacted]@h/db"
        );
        assert_eq!(
            redact("postgres://u:p/s@ss@h:5432/db"),
            "postgres://u:[redacted]@h:5432/db"
        );
        assert_eq!(
            redact("postgres://h/db?user=u&password=p&sslmode=require"),
            "postgres://h/db?user=u&password=[redacted]&sslmode=require"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("/var/lib/x.db"), "/var/lib/x.db");
    }
}
