//! Hook commands: what a definition (or its provider, or the daemon) runs
//! around and after a snapshot, and how a run records their progress.
//!
//! A command is an argv array run without a shell, its program an absolute
//! path (no `PATH` search), so what runs is exactly what the configuration
//! says. Every field of a [`HookSpec`] is optional: a definition's own value
//! wins over its provider's, which wins over the daemon's
//! ([`HookSpec::or`]); [`HookSpec::effective`] then fills in the defaults.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::definition::{parse_duration, FieldError};

/// A hook's timeout when none is configured.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(300);
/// The shortest hook timeout accepted.
pub const MIN_HOOK_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest hook timeout accepted: a hook that needs longer is holding
/// a database frozen for too long.
pub const MAX_HOOK_TIMEOUT: Duration = Duration::from_secs(3600);

/// A command to run: the program (an absolute path) and its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Command(Vec<String>);

impl Command {
    /// Validate an argv array for the hook key `field`.
    pub fn parse(field: &'static str, argv: &[String]) -> Result<Command, FieldError> {
        let Some(program) = argv.first().filter(|p| !p.trim().is_empty()) else {
            return Err(FieldError::new(
                field,
                "must not be empty: give the program and its arguments, as [\"/usr/local/sbin/pg-backup-start\", \"--fast\"]",
            ));
        };
        if argv.iter().any(|a| a.contains('\0')) {
            return Err(FieldError::new(
                field,
                "contains a NUL character, which no command line can carry; remove it",
            ));
        }
        if !program.starts_with('/') {
            return Err(FieldError::new(
                field,
                format!(
                    "'{program}' is not an absolute path: hooks run without a shell or PATH search; give the full path, as \"/usr/local/sbin/{}\"",
                    program.rsplit('/').next().unwrap_or(program)
                ),
            ));
        }
        Ok(Command(argv.to_vec()))
    }

    /// Parse a command given on the command line: a JSON array of strings
    /// (`["/usr/local/sbin/pg-backup-start", "--fast"]`) or one absolute
    /// path without arguments.
    pub fn parse_text(field: &'static str, text: &str) -> Result<Command, FieldError> {
        let text = text.trim();
        if text.starts_with('[') {
            let argv: Vec<String> = serde_json::from_str(text).map_err(|e| {
                FieldError::new(
                    field,
                    format!("'{text}' is not a JSON array of strings ({e}); write it as '[\"/usr/local/sbin/pg-backup-start\", \"--fast\"]'"),
                )
            })?;
            return Command::parse(field, &argv);
        }
        if text.chars().any(char::is_whitespace) {
            return Err(FieldError::new(
                field,
                format!("'{text}' has spaces, but no shell splits it: give a JSON array such as '[\"/usr/local/sbin/pg-backup-start\", \"--fast\"]'"),
            ));
        }
        Command::parse(field, &[text.to_owned()])
    }

    pub fn program(&self) -> &str {
        &self.0[0]
    }

    pub fn args(&self) -> &[String] {
        &self.0[1..]
    }

    pub fn argv(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for Command {
    /// The argv as a JSON array, so that arguments with spaces stay apart.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let json = serde_json::to_string(&self.0).map_err(|_| fmt::Error)?;
        f.write_str(&json)
    }
}

/// What a failed (or timed-out) pre hook means for the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnPreHookFailure {
    /// No snapshot is requested; the run fails.
    #[default]
    Abort,
    /// The snapshot is taken anyway and recorded crash-consistent.
    Continue,
}

impl OnPreHookFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            OnPreHookFailure::Abort => "abort",
            OnPreHookFailure::Continue => "continue",
        }
    }

    pub fn parse(field: &'static str, text: &str) -> Result<Self, FieldError> {
        match text.trim() {
            "abort" => Ok(OnPreHookFailure::Abort),
            "continue" => Ok(OnPreHookFailure::Continue),
            other => Err(FieldError::new(
                field,
                format!("'{other}' is not a choice: use \"abort\" (no snapshot without a successful pre hook) or \"continue\" (snapshot anyway, recorded crash-consistent)"),
            )),
        }
    }
}

/// Hook settings as configured at one level; `None` defers to the next.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct HookSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_hook: Option<Command>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_hook: Option<Command>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration"
    )]
    pub hook_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_pre_hook_failure: Option<OnPreHookFailure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<Command>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<Command>,
}

impl HookSpec {
    /// Nothing is set at this level.
    pub fn is_empty(&self) -> bool {
        *self == HookSpec::default()
    }

    /// Each field of `self`, or `fallback`'s where `self` has none.
    pub fn or(&self, fallback: &HookSpec) -> HookSpec {
        HookSpec {
            pre_hook: self.pre_hook.clone().or_else(|| fallback.pre_hook.clone()),
            post_hook: self
                .post_hook
                .clone()
                .or_else(|| fallback.post_hook.clone()),
            hook_timeout: self.hook_timeout.or(fallback.hook_timeout),
            on_pre_hook_failure: self.on_pre_hook_failure.or(fallback.on_pre_hook_failure),
            on_failure: self
                .on_failure
                .clone()
                .or_else(|| fallback.on_failure.clone()),
            on_success: self
                .on_success
                .clone()
                .or_else(|| fallback.on_success.clone()),
        }
    }

    /// The settings a run uses, defaults filled in.
    pub fn effective(&self) -> Hooks {
        Hooks {
            pre: self.pre_hook.clone(),
            post: self.post_hook.clone(),
            timeout: self.hook_timeout.unwrap_or(DEFAULT_HOOK_TIMEOUT),
            on_pre_failure: self.on_pre_hook_failure.unwrap_or_default(),
            on_failure: self.on_failure.clone(),
            on_success: self.on_success.clone(),
        }
    }

    /// Set `key` from text (`def set KEY=VALUE`, `def add` flags); an empty
    /// value or `default` clears it, so the next level's applies. Returns
    /// false for a key that is not a hook setting.
    pub fn set_text(&mut self, key: &str, value: &str) -> Result<bool, FieldError> {
        let clear = matches!(value.trim(), "" | "default" | "none");
        let command = |field: &'static str| -> Result<Option<Command>, FieldError> {
            if clear {
                Ok(None)
            } else {
                Command::parse_text(field, value).map(Some)
            }
        };
        match key {
            "pre_hook" => self.pre_hook = command("pre_hook")?,
            "post_hook" => self.post_hook = command("post_hook")?,
            "on_failure" => self.on_failure = command("on_failure")?,
            "on_success" => self.on_success = command("on_success")?,
            "hook_timeout" => {
                self.hook_timeout = if clear {
                    None
                } else {
                    Some(parse_hook_timeout("hook_timeout", value)?)
                }
            }
            "on_pre_hook_failure" => {
                self.on_pre_hook_failure = if clear {
                    None
                } else {
                    Some(OnPreHookFailure::parse("on_pre_hook_failure", value)?)
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The keys [`HookSpec::set_text`] takes.
pub const HOOK_KEYS: [&str; 6] = [
    "pre_hook",
    "post_hook",
    "hook_timeout",
    "on_pre_hook_failure",
    "on_failure",
    "on_success",
];

/// Hook fields as they come from a config section or the CLI.
#[derive(Debug, Clone, Default)]
pub struct RawHooks {
    pub pre_hook: Option<Vec<String>>,
    pub post_hook: Option<Vec<String>>,
    pub hook_timeout: Option<String>,
    pub on_pre_hook_failure: Option<String>,
    pub on_failure: Option<Vec<String>>,
    pub on_success: Option<Vec<String>>,
}

impl RawHooks {
    /// Validate every field, reporting every problem.
    pub fn validate(&self) -> Result<HookSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut command = |field: &'static str, argv: &Option<Vec<String>>| {
            argv.as_ref()
                .and_then(|a| Command::parse(field, a).map_err(|e| errors.push(e)).ok())
        };
        let spec = HookSpec {
            pre_hook: command("pre_hook", &self.pre_hook),
            post_hook: command("post_hook", &self.post_hook),
            on_failure: command("on_failure", &self.on_failure),
            on_success: command("on_success", &self.on_success),
            hook_timeout: self.hook_timeout.as_deref().and_then(|t| {
                parse_hook_timeout("hook_timeout", t)
                    .map_err(|e| errors.push(e))
                    .ok()
            }),
            on_pre_hook_failure: self.on_pre_hook_failure.as_deref().and_then(|t| {
                OnPreHookFailure::parse("on_pre_hook_failure", t)
                    .map_err(|e| errors.push(e))
                    .ok()
            }),
        };
        if errors.is_empty() {
            Ok(spec)
        } else {
            Err(errors)
        }
    }
}

/// A hook timeout: a duration from 1s to 1h.
pub fn parse_hook_timeout(field: &'static str, text: &str) -> Result<Duration, FieldError> {
    let d = parse_duration(field, text)?;
    if d < MIN_HOOK_TIMEOUT || d > MAX_HOOK_TIMEOUT {
        return Err(FieldError::new(
            field,
            format!(
                "'{text}' is out of range: give 1s to 1h (default {})",
                humantime::format_duration(DEFAULT_HOOK_TIMEOUT)
            ),
        ));
    }
    Ok(d)
}

/// The hook settings one run uses, every level and default applied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hooks {
    pub pre: Option<Command>,
    pub post: Option<Command>,
    pub timeout: Duration,
    pub on_pre_failure: OnPreHookFailure,
    pub on_failure: Option<Command>,
    pub on_success: Option<Command>,
}

impl Hooks {
    /// Whether this run has a pre or a post hook (and so records hook
    /// progress in its row).
    pub fn brackets_snapshot(&self) -> bool {
        self.pre.is_some() || self.post.is_some()
    }
}

/// How consistent a snapshot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// A pre hook succeeded before the snapshot was requested: the
    /// application was quiesced.
    App,
    /// Nothing quiesced the disk (no pre hook, or it failed and
    /// `on_pre_hook_failure = "continue"`): as after a power cut.
    Crash,
}

impl Consistency {
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::App => "app",
            Consistency::Crash => "crash",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "app" => Some(Consistency::App),
            "crash" => Some(Consistency::Crash),
            _ => None,
        }
    }
}

/// Where a run is with its pre and post hooks; recorded in the run row
/// before each hook starts, so that a crash between them is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HookState {
    /// The pre hook started; the post hook is owed.
    Pre,
    /// The post hook started (it may not have finished).
    Post,
    /// The post hook finished (or there is none).
    Done,
}

impl HookState {
    pub fn as_str(self) -> &'static str {
        match self {
            HookState::Pre => "pre",
            HookState::Post => "post",
            HookState::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pre" => Some(HookState::Pre),
            "post" => Some(HookState::Post),
            "done" => Some(HookState::Done),
            _ => None,
        }
    }

    /// A post hook is owed: the pre hook started and the post hook did not
    /// finish.
    pub fn post_owed(self) -> bool {
        matches!(self, HookState::Pre | HookState::Post)
    }
}

/// Serialize `Option<Duration>` as humantime text and read it back.
mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn commands_need_an_absolute_program() {
        let c = Command::parse("pre_hook", &argv(&["/usr/bin/true", "--fast"])).unwrap();
        assert_eq!(c.program(), "/usr/bin/true");
        assert_eq!(c.args(), ["--fast"]);
        let e = Command::parse("pre_hook", &[]).unwrap_err();
        assert_eq!(e.field, "pre_hook");
        assert!(e.message.contains("must not be empty"), "{e}");
        let e = Command::parse("pre_hook", &argv(&["", "x"])).unwrap_err();
        assert!(e.message.contains("must not be empty"), "{e}");
        let e = Command::parse("post_hook", &argv(&["pg-start"])).unwrap_err();
        assert!(
            e.message.contains("'pg-start' is not an absolute path"),
            "{e}"
        );
        assert!(e.message.contains("/usr/local/sbin/pg-start"), "{e}");
        assert!(Command::parse("on_failure", &argv(&["./x"])).is_err());
        assert!(Command::parse("on_failure", &argv(&["/x", "a\0b"])).is_err());
    }

    #[test]
    fn command_text_is_a_json_array_or_one_path() {
        let c = Command::parse_text("pre_hook", r#"["/bin/echo", "a b"]"#).unwrap();
        assert_eq!(c.argv(), ["/bin/echo", "a b"]);
        assert_eq!(c.to_string(), r#"["/bin/echo","a b"]"#);
        assert_eq!(
            Command::parse_text("pre_hook", "/bin/true").unwrap().argv(),
            ["/bin/true"]
        );
        let e = Command::parse_text("pre_hook", "/bin/echo hi").unwrap_err();
        assert!(e.message.contains("JSON array"), "{e}");
        assert!(Command::parse_text("pre_hook", "[1, 2]").is_err());
        assert!(Command::parse_text("pre_hook", "[]").is_err());
    }

    #[test]
    fn timeouts_are_bounded() {
        assert_eq!(
            parse_hook_timeout("hook_timeout", "90s").unwrap(),
            Duration::from_secs(90)
        );
        for bad in ["0s", "500ms", "2h", "soon"] {
            let e = parse_hook_timeout("hook_timeout", bad).unwrap_err();
            assert_eq!(e.field, "hook_timeout");
            assert!(e.message.contains(bad), "{e}");
        }
    }

    #[test]
    fn raw_hooks_report_every_problem() {
        let raw = RawHooks {
            pre_hook: Some(vec![]),
            post_hook: Some(argv(&["thaw"])),
            hook_timeout: Some("0s".into()),
            on_pre_hook_failure: Some("ignore".into()),
            on_failure: Some(argv(&["/bin/true"])),
            on_success: None,
        };
        let fields: Vec<_> = raw
            .validate()
            .unwrap_err()
            .iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "pre_hook",
                "post_hook",
                "hook_timeout",
                "on_pre_hook_failure"
            ]
        );
        let e = OnPreHookFailure::parse("on_pre_hook_failure", "ignore").unwrap_err();
        assert!(
            e.message.contains("'ignore'") && e.message.contains("abort"),
            "{e}"
        );
    }

    #[test]
    fn a_definition_overrides_its_provider_which_overrides_the_daemon() {
        let cmd = |p: &str| Some(Command::parse("x", &argv(&[p])).unwrap());
        let daemon = HookSpec {
            pre_hook: cmd("/daemon-pre"),
            on_failure: cmd("/daemon-fail"),
            hook_timeout: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        let provider = HookSpec {
            pre_hook: cmd("/provider-pre"),
            on_pre_hook_failure: Some(OnPreHookFailure::Continue),
            ..Default::default()
        };
        let own = HookSpec {
            post_hook: cmd("/own-post"),
            ..Default::default()
        };
        let h = own.or(&provider).or(&daemon).effective();
        assert_eq!(h.pre, cmd("/provider-pre"));
        assert_eq!(h.post, cmd("/own-post"));
        assert_eq!(h.on_failure, cmd("/daemon-fail"));
        assert_eq!(h.on_success, None);
        assert_eq!(h.timeout, Duration::from_secs(60));
        assert_eq!(h.on_pre_failure, OnPreHookFailure::Continue);
        let none = HookSpec::default().effective();
        assert_eq!(none.timeout, DEFAULT_HOOK_TIMEOUT);
        assert_eq!(none.on_pre_failure, OnPreHookFailure::Abort);
        assert!(!none.brackets_snapshot());
    }

    #[test]
    fn hook_specs_survive_the_store_round_trip() {
        let mut spec = HookSpec::default();
        assert!(spec.set_text("pre_hook", r#"["/a", "b c"]"#).unwrap());
        assert!(spec.set_text("hook_timeout", "90s").unwrap());
        assert!(spec.set_text("on_pre_hook_failure", "continue").unwrap());
        assert!(!spec.set_text("colour", "red").unwrap());
        let json = serde_json::to_string(&spec).unwrap();
        let back: HookSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
        assert_eq!(
            serde_json::from_str::<HookSpec>("{}").unwrap(),
            HookSpec::default()
        );
        assert!(spec.set_text("pre_hook", "default").unwrap());
        assert_eq!(spec.pre_hook, None);
    }
}
