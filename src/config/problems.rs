//! Problems with a configuration, and the collector every section's parser
//! writes them to, so that one `config check` reports them all.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::domain::definition::{self, DurationRange};
use crate::domain::hooks::{HookSpec, RawHooks};

/// One problem with the configuration, at a key path such as
/// `definitions[2].schedule` or `providers.do.token_file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = crate::domain::text::bounded_error(&self.message);
        if self.key.is_empty() {
            f.write_str(&message)
        } else {
            write!(f, "{}: {message}", self.key)
        }
    }
}

/// Everything wrong with a configuration file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
    /// Line and column in the file of the problems' keys that it has.
    pub positions: BTreeMap<String, (usize, usize)>,
}

impl ConfigError {
    /// The problems of the file at `path`, each located in its text.
    pub fn new(path: &Path, problems: Vec<Problem>) -> ConfigError {
        // Through the loader's checks: the path may be /dev/zero or huge.
        let text = super::layers::read_file(path).unwrap_or_default();
        let positions = problems
            .iter()
            .filter(|p| !p.key.is_empty())
            .filter_map(|p| Some((p.key.clone(), super::locate::position(&text, &p.key)?)))
            .collect();
        ConfigError {
            path: path.to_owned(),
            problems,
            positions,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration {}:", self.path.display())?;
        for p in &self.problems {
            match self.positions.get(&p.key) {
                // file:line:column, as compilers say it, so editors jump there.
                Some((line, column)) => {
                    write!(f, "\n  {}:{line}:{column}: {p}", self.path.display())?
                }
                None => write!(f, "\n  {p}")?,
            }
        }
        Ok(())
    }
}

/// The problems found so far, and the keys no section knows (dotted, as
/// `definitions.1.colour`), which the loader reports at the end naming the
/// file or the environment variable they came from.
#[derive(Debug, Default)]
pub(super) struct Collector {
    pub problems: Vec<Problem>,
    pub unknown: Vec<String>,
}

impl Collector {
    pub fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    /// A humantime duration at `key` within `range`, or `default` when not
    /// given; a value that does not parse or lies outside the range is a
    /// problem (with the wording definitions use) naming the value and the
    /// range.
    pub fn dur(
        &mut self,
        key: &str,
        text: Option<&str>,
        default: Duration,
        range: DurationRange,
    ) -> Duration {
        match text {
            None => default,
            Some(t) => definition::parse_duration_in("", t, range).unwrap_or_else(|e| {
                self.push(key, e.message);
                default
            }),
        }
    }

    /// The hook settings of the section at `prefix`; each invalid one is a
    /// problem at its key (the configuration is then refused as a whole).
    pub fn hooks(&mut self, prefix: &str, raw: RawHooks) -> HookSpec {
        raw.validate().unwrap_or_else(|errors| {
            for e in errors {
                self.push(join(prefix, e.field), e.message);
            }
            HookSpec::default()
        })
    }

    /// Deserialize the section at the dotted `prefix` from its layered
    /// value. Unknown keys are returned relative to the section; a wrongly
    /// typed value is a problem at its key, and the section is then `None`.
    pub fn deserialize<T: DeserializeOwned>(
        &mut self,
        value: config::Value,
        prefix: &str,
    ) -> Option<(T, Vec<String>)> {
        let mut unknown = Vec::new();
        match serde_ignored::deserialize(value, |p| unknown.push(p.to_string())) {
            Ok(v) => Some((v, unknown)),
            Err(e) => {
                self.problems.push(type_problem(prefix, e));
                None
            }
        }
    }

    /// [`Collector::deserialize`], reporting unknown keys; a missing
    /// section is the default one.
    pub fn section<T: DeserializeOwned + Default>(
        &mut self,
        value: Option<config::Value>,
        prefix: &str,
    ) -> Option<T> {
        let Some(value) = value else {
            return Some(T::default());
        };
        let (v, unknown) = self.deserialize(value, prefix)?;
        self.unknown_in(prefix, unknown);
        Some(v)
    }

    /// Record keys unknown to the section at `prefix`.
    pub fn unknown_in(&mut self, prefix: &str, keys: Vec<String>) {
        self.unknown
            .extend(keys.into_iter().map(|k| join(prefix, &k)));
    }
}

/// `prefix` and `key` as one dotted path (`definitions.1` + `tags[0]`).
pub(super) fn join(prefix: &str, key: &str) -> String {
    match (prefix, key) {
        ("", k) => k.to_owned(),
        (p, "") => p.to_owned(),
        (p, k) if k.starts_with('[') => format!("{p}{k}"),
        (p, k) => format!("{p}.{k}"),
    }
}

/// A deserialization error as a problem at the key it names.
fn type_problem(prefix: &str, e: config::ConfigError) -> Problem {
    match e {
        config::ConfigError::Type {
            unexpected,
            expected,
            key,
            ..
        } => Problem {
            key: bracket_indices(&join(prefix, key.as_deref().unwrap_or(""))),
            message: format!("invalid type: {unexpected}, expected {expected}"),
        },
        config::ConfigError::At { error, key, .. } => Problem {
            key: bracket_indices(&join(prefix, key.as_deref().unwrap_or(""))),
            message: error.to_string(),
        },
        other => Problem {
            key: bracket_indices(prefix),
            message: other.to_string(),
        },
    }
}

/// `definitions.2.schedule` -> `definitions[2].schedule`.
pub(super) fn bracket_indices(path: &str) -> String {
    let mut out = String::new();
    for (i, part) in path.split('.').enumerate() {
        if part.chars().all(|c| c.is_ascii_digit()) && !part.is_empty() {
            out.push_str(&format!("[{part}]"));
        } else {
            if i > 0 {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_ignored_paths_become_bracketed_keys() {
        assert_eq!(
            bracket_indices("definitions.2.schedule"),
            "definitions[2].schedule"
        );
        assert_eq!(bracket_indices("daemon.bogus"), "daemon.bogus");
        assert_eq!(bracket_indices("providers.do.x"), "providers.do.x");
    }

    #[test]
    fn keys_join_with_a_dot_except_before_an_index() {
        assert_eq!(join("definitions.1", "tags[0]"), "definitions.1.tags[0]");
        assert_eq!(join("definitions.1", "[0]"), "definitions.1[0]");
        assert_eq!(join("", "daemon"), "daemon");
        assert_eq!(join("daemon", ""), "daemon");
    }

    #[test]
    fn a_duration_problem_uses_the_one_wording() {
        let mut c = Collector::default();
        let d = c.dur(
            "daemon.run_timeout",
            Some("soon"),
            Duration::from_secs(1),
            DurationRange::RUN_TIMEOUT,
        );
        assert_eq!(d, Duration::from_secs(1));
        let p = &c.problems[0];
        assert_eq!(p.key, "daemon.run_timeout");
        let expected = definition::parse_duration("x", "soon").unwrap_err().message;
        assert_eq!(p.message, expected);
        assert!(p.message.contains("'soon'"), "{p}");
    }

    #[test]
    fn a_duration_out_of_its_range_names_key_value_and_range() {
        let mut c = Collector::default();
        let d = c.dur(
            "daemon.run_timeout",
            Some("1000000y"),
            Duration::from_secs(60),
            DurationRange::RUN_TIMEOUT,
        );
        assert_eq!(d, Duration::from_secs(60));
        let p = &c.problems[0];
        assert_eq!(p.key, "daemon.run_timeout");
        assert!(p.message.contains("'1000000y'"), "{p}");
        assert!(p.message.contains("\"1s\" to \"7days\""), "{p}");
    }
}
