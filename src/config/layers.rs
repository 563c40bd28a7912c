//! The layers — built-in defaults < file < environment
//! (`SNAPSCHED__SECTION__KEY`) < command-line overrides — merged into one
//! value by the `config` crate, and the problems that belong to layering:
//! the file is missing or not TOML, a key is unknown (blamed on the file or
//! on the environment variable that set it).

use std::path::Path;

use super::problems::{bracket_indices, Problem};
use super::Overrides;

/// The merged layers of the file at `path` (already made absolute).
pub(super) fn read(path: &Path, overrides: &Overrides) -> Result<config::Value, Problem> {
    let text = read_file(path)?;
    // Syntax errors are reported from here, not by the `config` crate: its
    // message quotes the offending line, and that line may be a token
    // (`token = "dop_v1_...` without its closing quote).
    if let Err(e) = toml::from_str::<toml::Table>(&text) {
        return Err(syntax_problem(&text, &e));
    }
    let to_problem = |e: config::ConfigError| problem(e.to_string());
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("SNAPSCHED")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
    if let Some(db) = &overrides.database {
        builder = builder
            .set_override("daemon.database", db.clone())
            .map_err(to_problem)?;
    }
    if let Some(level) = &overrides.log_level {
        builder = builder
            .set_override("daemon.log_level", level.clone())
            .map_err(to_problem)?;
    }
    builder
        .build()
        .and_then(|layered| layered.try_deserialize())
        .map_err(to_problem)
}

/// The largest config file read: a configuration with thousands of
/// definitions is a fraction of it; anything bigger is not a config file.
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// The file's text, or a problem that says what is wrong with the path
/// itself: missing, a dangling or looping symbolic link, a directory,
/// a device or FIFO (`/dev/zero` would be read forever), too big, not
/// readable or not UTF-8.
pub(super) fn read_file(path: &Path) -> Result<String, Problem> {
    use std::io::Read;
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) => return Err(problem(unreadable_path(path, &e))),
    };
    if meta.is_dir() {
        return Err(problem(format!(
            "{shown} is a directory; pass the config file itself, e.g. {}",
            path.join("config.toml").display()
        )));
    }
    if !meta.is_file() {
        return Err(problem(format!(
            "config file {shown} is {}, not a regular file; pass a TOML config file (see `snapsched config default`)",
            file_type_name(&meta.file_type())
        )));
    }
    if meta.len() > MAX_FILE_SIZE {
        return Err(problem(format!(
            "config file {shown} is {} bytes; a config file is at most {MAX_FILE_SIZE} bytes (1 MiB): is this the right file?",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes))
        .map_err(|e| problem(format!("cannot read config file {shown}: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(problem(format!(
            "config file {shown} grew past {MAX_FILE_SIZE} bytes (1 MiB) while it was read: is this the right file?"
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        problem(format!(
            "config file {shown} is not UTF-8 text (invalid byte at offset {}): is this the right file?",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Why `path` cannot be looked at, in the words that fit the case.
fn unreadable_path(path: &Path, e: &std::io::Error) -> String {
    let shown = path.display();
    // ELOOP: too many levels of symbolic links.
    if e.raw_os_error() == Some(40) {
        return format!(
            "config file {shown} is a symbolic link that loops (too many levels of symbolic links); point --config or SNAPSCHED_CONFIG at the file itself"
        );
    }
    if e.kind() != std::io::ErrorKind::NotFound {
        return format!("cannot read config file {shown}: {e}");
    }
    if let Ok(target) = std::fs::read_link(path) {
        return format!(
            "config file {shown} is a symbolic link to {}, which does not exist; fix the link or pass the file itself",
            target.display()
        );
    }
    format!(
        "config file {shown} not found: pass --config PATH, set SNAPSCHED_CONFIG, or create it with `snapsched config default > {shown}`"
    )
}

fn file_type_name(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

fn problem(message: String) -> Problem {
    Problem {
        key: String::new(),
        message,
    }
}

/// Unknown dotted keys as problems, each blamed on the environment variable
/// that set it when the file does not have it, else on the file.
pub(super) fn unknown_problems(unknown: &[String], path: &Path) -> Vec<Problem> {
    let file_layer = read_file(path)
        .ok()
        .and_then(|text| toml::from_str::<toml::Value>(&text).ok());
    unknown
        .iter()
        .map(|key| {
            let from_env = file_layer
                .as_ref()
                .is_some_and(|file| !written_in(file, key))
                .then(|| env_var_for(key))
                .flatten();
            let message = match from_env {
                Some(var) => format!(
                    "unknown key from the environment variable {var}; see `snapsched config default` for the keys there are"
                ),
                None => match super::locate::suggest(key) {
                    Some(near) => format!(
                        "unknown key in {}; did you mean `{near}`? (`snapsched config default` lists every key)",
                        path.display()
                    ),
                    None => format!(
                        "unknown key in {}; see `snapsched config default` for the keys there are",
                        path.display()
                    ),
                },
            };
            Problem {
                message,
                key: bracket_indices(key),
            }
        })
        .collect()
}

/// A TOML syntax error as "line L, column C: what is wrong", without the
/// text of the line, which may hold a secret.
fn syntax_problem(text: &str, e: &toml::de::Error) -> Problem {
    let what = e.message().trim_end();
    let message = match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("TOML syntax error at line {line}, column {column}: {what}")
        }
        None => format!("TOML syntax error: {what}"),
    };
    problem(message)
}

/// Whether the dotted `key` (numeric parts index arrays) is written in the
/// parsed file. Keys are compared without case, as the loader does.
fn written_in(file: &toml::Value, key: &str) -> bool {
    let mut at = file;
    for part in key.split('.') {
        let next = match at {
            toml::Value::Table(t) => t
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(part))
                .map(|(_, v)| v),
            toml::Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        match next {
            Some(v) => at = v,
            None => return false,
        }
    }
    true
}

/// The set environment variable that produced the dotted `key`
/// (`daemon.bogus` -> `SNAPSCHED__DAEMON__BOGUS`), if there is one.
/// A whole section (`nosection`) is found by the variables under it
/// (`SNAPSCHED__NOSECTION__X`).
pub(super) fn env_var_for(key: &str) -> Option<String> {
    let wanted = format!("SNAPSCHED__{}", key.replace('.', "__")).to_ascii_uppercase();
    let under = format!("{wanted}__");
    let vars: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    vars.iter()
        .find(|k| k.to_ascii_uppercase() == wanted)
        .or_else(|| {
            vars.iter()
                .find(|k| k.to_ascii_uppercase().starts_with(&under))
        })
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_in_finds_keys_of_the_file_only() {
        let file: toml::Value = toml::from_str(
            "[daemon]\nTimeZone = \"UTC\"\n[[definitions]]\nname = \"a\"\n[[definitions]]\ncolour = 1\n",
        )
        .unwrap();
        assert!(written_in(&file, "daemon.timezone"));
        assert!(written_in(&file, "definitions.1.colour"));
        assert!(!written_in(&file, "definitions.0.colour"));
        assert!(!written_in(&file, "definitions.2"));
        assert!(!written_in(&file, "daemon.bogus"));
        assert!(!written_in(&file, "metrics"));
    }

    #[test]
    fn a_syntax_error_gives_line_and_column_but_not_the_line() {
        let text = "[daemon]\ntoken = \"dop_v1_SECRET\n";
        let e = toml::from_str::<toml::Table>(text).unwrap_err();
        let p = syntax_problem(text, &e);
        assert!(p.message.contains("line 2"), "{p}");
        assert!(!p.message.contains("SECRET"), "{p}");
    }
}
