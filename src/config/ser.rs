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

pub(super) fn opt_display<T: fmt::Display, S: serde::Serializer>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
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

/// The configuration as `snapsched config show` prints it: a file that
/// `config check` accepts and that has the same effect as the one loaded
/// (secrets redacted, defaults written out). Providers are written with the
/// keys the file takes: their secret as `token_file`/`token_env` (or the
/// `api_key_…` twins), the poll settings, no internal keys.
pub fn shown(cfg: &super::Config) -> Result<toml::Value, String> {
    use crate::secret::credentials::secret_name;
    use crate::secret::Credential;
    let mut value = toml::Value::try_from(cfg).map_err(|e| e.to_string())?;
    let Some(providers) = value.get_mut("providers").and_then(|p| p.as_table_mut()) else {
        return Ok(value);
    };
    for (name, table) in providers.iter_mut() {
        let (Some(p), Some(table)) = (cfg.providers.get(name), table.as_table_mut()) else {
            continue;
        };
        table.remove("name");
        table.remove("credential");
        // Kept in bytes, written in the MiB the file takes.
        if table.remove("max_response_bytes").is_some() {
            table.insert(
                "max_response_mib".to_owned(),
                toml::Value::Integer((p.max_response_bytes / (1024 * 1024)) as i64),
            );
        }
        if let (Some(word), Some(credential)) = (secret_name(p.kind), &p.credential) {
            let given = match credential {
                Credential::File(path) => {
                    Some((format!("{word}_file"), path.display().to_string()))
                }
                Credential::Env(var) => Some((format!("{word}_env"), var.clone())),
                Credential::Inline(_) => Some((word.to_owned(), "[redacted]".to_owned())),
                // Found in $CREDENTIALS_DIRECTORY without a key.
                Credential::Systemd(_) => None,
            };
            if let Some((key, text)) = given {
                table.insert(key, toml::Value::String(text));
            }
        }
        for (key, d) in [
            ("poll_interval", p.poll.initial),
            ("poll_max_interval", p.poll.max),
            ("action_timeout", p.poll.timeout),
        ] {
            table.insert(
                key.to_owned(),
                toml::Value::String(humantime::format_duration(d).to_string()),
            );
        }
    }
    Ok(value)
}
