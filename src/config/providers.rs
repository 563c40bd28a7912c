//! `[providers.NAME]`: one section per provider account.
//!
//! Parsing is generic over the kinds this build has
//! ([`crate::provider::kinds`]): a kind says how `api_url` is treated and
//! which settings only it takes; its secret's name comes from
//! [`crate::secret::credentials::secret_name`]. No kind is special-cased
//! here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::problems::Collector;
use super::{database, ser};
use crate::domain::definition::DurationRange;
use crate::domain::hooks::{HookSpec, RawHooks};
use crate::domain::ProviderKind;
use crate::provider::kinds::{self, ApiUrl, KindSpec};
use crate::provider::PollPolicy;
use crate::secret::credentials::{self, Credential, Given, SECRET_NAMES};
use crate::secret::Secret;

/// `[providers.NAME]`, parsed.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// Shown with any password in it redacted.
    #[serde(serialize_with = "ser::opt_url")]
    pub api_url: Option<url::Url>,
    /// Where the kind's secret comes from; `None` for a kind that takes none.
    pub credential: Option<Credential>,
    #[serde(skip)]
    pub poll: PollPolicy,
    #[serde(serialize_with = "ser::duration")]
    pub connect_timeout: Duration,
    #[serde(serialize_with = "ser::duration")]
    pub request_timeout: Duration,
    pub tags: Vec<String>,
    pub requests_per_minute: u32,
    pub requests_per_hour: u32,
    /// `max_response_mib`, in bytes: a larger response body fails the
    /// request (as a transient error naming the size).
    pub max_response_bytes: usize,
    /// The settings only this kind takes ([`KindSpec::settings`]).
    #[serde(flatten)]
    pub settings: KindSettings,
    /// Hook settings for this provider's definitions that set none of
    /// their own; unset ones come from `[daemon]`.
    #[serde(flatten)]
    pub hooks: HookSpec,
}

/// A kind's own settings by key, each given or defaulted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindSettings(BTreeMap<&'static str, Duration>);

impl KindSettings {
    /// The setting `key`; zero for a key the kind does not have.
    pub fn get(&self, key: &str) -> Duration {
        self.0.get(key).copied().unwrap_or_default()
    }
}

impl Serialize for KindSettings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(
            self.0
                .iter()
                .map(|(k, v)| (k, humantime::format_duration(*v).to_string())),
        )
    }
}

#[derive(Debug, Default, Deserialize)]
struct RawProvider {
    kind: Option<String>,
    api_url: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    token_env: Option<String>,
    api_key: Option<String>,
    api_key_file: Option<PathBuf>,
    api_key_env: Option<String>,
    poll_interval: Option<String>,
    poll_max_interval: Option<String>,
    action_timeout: Option<String>,
    connect_timeout: Option<String>,
    request_timeout: Option<String>,
    tags: Option<Vec<String>>,
    requests_per_minute: Option<i64>,
    requests_per_hour: Option<i64>,
    pre_hook: Option<Vec<String>>,
    post_hook: Option<Vec<String>>,
    hook_timeout: Option<String>,
    on_pre_hook_failure: Option<String>,
    on_failure: Option<Vec<String>>,
    on_success: Option<Vec<String>>,
    max_response_mib: Option<i64>,
}

/// The keys of one secret family (`token`, `token_file`, `token_env`).
struct SecretKeys<'a> {
    inline: Option<&'a String>,
    file: Option<&'a PathBuf>,
    env: Option<&'a String>,
}

impl RawProvider {
    fn secret_keys(&self, name: &str) -> SecretKeys<'_> {
        match name {
            "token" => SecretKeys {
                inline: self.token.as_ref(),
                file: self.token_file.as_ref(),
                env: self.token_env.as_ref(),
            },
            _ => SecretKeys {
                inline: self.api_key.as_ref(),
                file: self.api_key_file.as_ref(),
                env: self.api_key_env.as_ref(),
            },
        }
    }
}

impl SecretKeys<'_> {
    /// The keys given, as written (`token_file`).
    fn given(&self, name: &str) -> Vec<String> {
        [
            (name.to_owned(), self.inline.is_some()),
            (format!("{name}_file"), self.file.is_some()),
            (format!("{name}_env"), self.env.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, present)| present.then_some(k))
        .collect()
    }
}

/// What every provider section is read against.
struct File<'a> {
    path: &'a Path,
    base_dir: &'a Path,
    /// The config file is private, so an inline secret is acceptable.
    private: bool,
}

/// Parse every `[providers.NAME]`; a section whose kind is unknown is left
/// out (its definitions then name an unknown provider).
pub(super) fn parse(
    sections: BTreeMap<String, config::Value>,
    path: &Path,
    base_dir: &Path,
    c: &mut Collector,
) -> BTreeMap<String, ProviderConfig> {
    let file = File {
        path,
        base_dir,
        private: credentials::check_private(path).is_ok(),
    };
    sections
        .into_iter()
        .filter_map(|(name, value)| parse_one(&name, value, &file, c).map(|p| (name, p)))
        .collect()
}

fn parse_one(
    name: &str,
    value: config::Value,
    file: &File<'_>,
    c: &mut Collector,
) -> Option<ProviderConfig> {
    let prefix = format!("providers.{name}");
    let key = |k: &str| format!("{prefix}.{k}");
    let (raw, unknown): (RawProvider, Vec<String>) = c.deserialize(value.clone(), &prefix)?;
    let Some(spec) = kind(raw.kind.as_deref(), &key("kind"), c) else {
        c.unknown_in(&prefix, unknown);
        return None;
    };
    let settings = kind_settings(spec, unknown, value, &prefix, c);
    let credential = credential(&raw, name, spec.kind, file, c);
    let api_url = api_url(raw.api_url.as_deref(), spec, &key("api_url"), c);
    let hooks = c.hooks(
        &prefix,
        RawHooks {
            pre_hook: raw.pre_hook.clone(),
            post_hook: raw.post_hook.clone(),
            hook_timeout: raw.hook_timeout.clone(),
            on_pre_hook_failure: raw.on_pre_hook_failure.clone(),
            on_failure: raw.on_failure.clone(),
            on_success: raw.on_success.clone(),
        },
    );
    let defaults = PollPolicy::default();
    let poll = PollPolicy {
        initial: c.dur(
            &key("poll_interval"),
            raw.poll_interval.as_deref(),
            defaults.initial,
            DurationRange::POLL_INTERVAL,
        ),
        max: c.dur(
            &key("poll_max_interval"),
            raw.poll_max_interval.as_deref(),
            defaults.max,
            DurationRange::POLL_INTERVAL,
        ),
        timeout: c.dur(
            &key("action_timeout"),
            raw.action_timeout.as_deref(),
            defaults.timeout,
            DurationRange::ACTION_TIMEOUT,
        ),
    };
    Some(ProviderConfig {
        name: name.to_owned(),
        kind: spec.kind,
        api_url,
        credential,
        poll,
        connect_timeout: c.dur(
            &key("connect_timeout"),
            raw.connect_timeout.as_deref(),
            Duration::from_secs(10),
            DurationRange::CONNECT_TIMEOUT,
        ),
        request_timeout: c.dur(
            &key("request_timeout"),
            raw.request_timeout.as_deref(),
            Duration::from_secs(60),
            DurationRange::REQUEST_TIMEOUT,
        ),
        tags: raw.tags.unwrap_or_default(),
        requests_per_minute: rate(&key("requests_per_minute"), raw.requests_per_minute, 250, c),
        requests_per_hour: rate(&key("requests_per_hour"), raw.requests_per_hour, 5000, c),
        max_response_bytes: response_cap(&key("max_response_mib"), raw.max_response_mib, c),
        settings,
        hooks,
    })
}

fn kind(text: Option<&str>, key: &str, c: &mut Collector) -> Option<&'static KindSpec> {
    match text {
        Some(k) => kinds::kind_named(k).or_else(|| {
            c.push(
                key,
                format!("'{k}' is not a provider kind: use {}", kinds::kind_list()),
            );
            None
        }),
        None => {
            c.push(key, format!("is required: {}", kinds::kind_list()));
            None
        }
    }
}

/// Take the kind's own settings out of the keys the common section did not
/// know; the rest are unknown keys.
fn kind_settings(
    spec: &KindSpec,
    unknown: Vec<String>,
    value: config::Value,
    prefix: &str,
    c: &mut Collector,
) -> KindSettings {
    let table = value.into_table().unwrap_or_default();
    let mut settings: BTreeMap<&'static str, Duration> = spec.settings.iter().copied().collect();
    for k in unknown {
        let Some((name, default)) = spec.settings.iter().find(|(n, _)| *n == k) else {
            c.unknown_in(prefix, vec![k]);
            continue;
        };
        let key = format!("{prefix}.{k}");
        let text = match table
            .get(k.as_str())
            .cloned()
            .map(config::Value::into_string)
        {
            Some(Ok(t)) => t,
            _ => {
                c.push(key, "must be a duration such as \"90s\"");
                continue;
            }
        };
        settings.insert(
            name,
            c.dur(&key, Some(&text), *default, DurationRange::KIND_SETTING),
        );
    }
    KindSettings(settings)
}

/// Where the secret comes from (see [`crate::secret::credentials`] for the
/// order); the other families' keys and more than one key of the own family
/// are problems.
fn credential(
    raw: &RawProvider,
    name: &str,
    kind: ProviderKind,
    file: &File<'_>,
    c: &mut Collector,
) -> Option<Credential> {
    let key = |k: &str| format!("providers.{name}.{k}");
    let own = credentials::secret_name(kind);
    let fix = match own {
        Some(w) => format!("use {w}, {w}_file or {w}_env"),
        None => "this kind takes no secret".to_owned(),
    };
    for other in SECRET_NAMES.iter().filter(|w| Some(**w) != own) {
        for k in raw.secret_keys(other).given(other) {
            c.push(key(&k), format!("is not a {kind} setting; {fix}"));
        }
    }
    let word = own?;
    let keys = raw.secret_keys(word);
    if keys.given(word).len() > 1 {
        c.push(
            key(word),
            format!("give only one of {word}, {word}_file and {word}_env"),
        );
    }
    if keys.inline.is_some() && !file.private {
        c.push(
            key(word),
            format!(
                "an inline secret is only accepted in a file that group and others cannot read; run: chmod 600 {} (or use {word}_file)",
                file.path.display()
            ),
        );
    }
    // An empty value (often an environment variable set to nothing) is a
    // mistake of its own: joined to the config directory, an empty file
    // name would name the directory and be blamed on its mode.
    let empty = [
        (
            format!("{word}_file"),
            keys.file
                .is_some_and(|f| f.as_os_str().to_string_lossy().trim().is_empty()),
        ),
        (
            format!("{word}_env"),
            keys.env.is_some_and(|v| v.trim().is_empty()),
        ),
        (
            word.to_owned(),
            keys.inline.is_some_and(|v| v.trim().is_empty()),
        ),
    ];
    for (k, _) in empty.iter().filter(|(_, e)| *e) {
        let dotted = key(k);
        let from = super::layers::env_var_for(&dotted)
            .map(|var| {
                format!(
                    " (the environment variable {var} is set to nothing; unset it or give a value)"
                )
            })
            .unwrap_or_default();
        c.push(
            dotted,
            format!("is empty{from}: give a value, or leave the key out; the secret can come from {word}_file, {word}_env or a systemd credential named '{name}'"),
        );
    }
    if empty.iter().any(|(_, e)| *e) {
        return None;
    }
    // An inline secret is in hand already: check it at load, not only when
    // a request is about to carry it.
    if let Some(inline) = keys.inline {
        if let Err(message) = credentials::check_one_line(
            inline,
            "the inline secret",
            &format!("write it on one line, or move it to {word}_file"),
        ) {
            c.push(key(word), message);
        }
    }
    let given = (keys.file.map(|f| Given::File(file.base_dir.join(f))))
        .or_else(|| keys.env.map(|v| Given::Env(v.clone())))
        .or_else(|| keys.inline.map(|v| Given::Inline(Secret::new(v.clone()))));
    let credential = Credential::resolve(given, name);
    if credential.is_none() {
        c.push(
            key(word),
            format!("no credential: set {word}_file, {word}_env, or load a systemd credential named '{name}'"),
        );
    }
    credential
}

fn api_url(text: Option<&str>, spec: &KindSpec, key: &str, c: &mut Collector) -> Option<url::Url> {
    match (text, spec.api_url) {
        (Some(_), ApiUrl::Unused) => {
            c.push(
                key,
                format!("is not used by providers of kind {}", spec.kind),
            );
            None
        }
        (Some(u), _) => match url::Url::parse(u) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
            _ => {
                let shown = database::redact(u);
                c.push(key, format!("'{shown}' is not an http(s) URL"));
                None
            }
        },
        (None, ApiUrl::Default(d)) => url::Url::parse(d).ok(),
        (None, ApiUrl::Required { example }) => {
            c.push(
                key,
                format!("is required for kind {}, e.g. \"{example}\"", spec.kind),
            );
            None
        }
        (None, ApiUrl::Unused) => None,
    }
}

/// `max_response_mib`: 1 to 1024 MiB, in bytes.
fn response_cap(key: &str, v: Option<i64>, c: &mut Collector) -> usize {
    const MIB: usize = 1024 * 1024;
    match v {
        None => crate::provider::DEFAULT_MAX_RESPONSE_BYTES,
        Some(n) if (1..=1024).contains(&n) => n as usize * MIB,
        Some(n) => {
            c.push(
                key,
                format!(
                    "{n} is out of range: give a size in MiB from 1 to 1024 (default {})",
                    crate::provider::DEFAULT_MAX_RESPONSE_BYTES / MIB
                ),
            );
            crate::provider::DEFAULT_MAX_RESPONSE_BYTES
        }
    }
}

fn rate(key: &str, v: Option<i64>, default: u32, c: &mut Collector) -> u32 {
    match v {
        None => default,
        Some(n) if n >= 1 && n <= i64::from(u32::MAX) => n as u32,
        Some(n) => {
            c.push(key, format!("{n} must be a positive number"));
            default
        }
    }
}
