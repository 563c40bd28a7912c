//! Where the store lives: a SQLite file (the embedded default) or a
//! PostgreSQL server shared by several daemons.
//!
//! The configuration layer builds a [`Location`]; the store opens it. A
//! location renders without its password wherever it is shown.

use std::fmt;
use std::path::PathBuf;

use sqlx::postgres::PgConnectOptions;

/// A store backend and its address.
#[derive(Clone)]
pub enum Location {
    /// A SQLite database file, created if missing.
    Sqlite(PathBuf),
    /// A PostgreSQL database. The options carry the password when one was
    /// configured (password file, systemd credential, `$PGPASSWORD` or
    /// `.pgpass`); [`fmt::Display`] never shows it.
    Postgres(Box<PgConnectOptions>),
}

impl Location {
    /// The backend's name as used in logs and `status`: `sqlite` or
    /// `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Location::Sqlite(_) => "sqlite",
            Location::Postgres(_) => "postgres",
        }
    }
}

impl fmt::Display for Location {
    /// A SQLite path, or `postgres://user@host:port/database` without the
    /// password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(opts) => write!(
                f,
                "postgres://{}@{}:{}/{}",
                opts.get_username(),
                opts.get_host(),
                opts.get_port(),
                opts.get_database().unwrap_or(opts.get_username()),
            ),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}
