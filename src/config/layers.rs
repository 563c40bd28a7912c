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
    if !path.exists() {
        return Err(problem(format!(
            "config file {} not found: pass --config PATH, set SNAPSCHED_CONFIG, or create it with `snapsched config default > {}`",
            path.display(),
            path.display()
        )));
    }
    if path.is_dir() {
        return Err(problem(format!(
            "{} is a directory; pass the config file itself, e.g. {}",
            path.display(),
            path.join("config.toml").display()
        )));
    }
    // Syntax errors are reported from here, not by the `config` crate: its
    // message quotes the offending line, and that line may be a token
    // (`token = "dop_v1_...` without its closing quote).
    if let Ok(text) = std::fs::read_to_string(path) {
        if let Err(e) = toml::from_str::<toml::Table>(&text) {
            return Err(syntax_problem(&text, &e));
        }
    }
    let to_problem = |e: config::ConfigError| problem(e.to_string());
    let mut builder = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
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

fn problem(message: String) -> Problem {
    Problem {
        key: String::new(),
        message,
    }
}

/// Unknown dotted keys as problems, each blamed on the environment variable
/// that set it when the file does not have it, else on the file.
pub(super) fn unknown_problems(unknown: &[String], path: &Path) -> Vec<Problem> {
    let file_layer = std::fs::read_to_string(path)
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
fn env_var_for(key: &str) -> Option<String> {
    let wanted = format!("SNAPSCHED__{}", key.replace('.', "__")).to_ascii_uppercase();
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .find(|k| k.to_ascii_uppercase() == wanted)
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
