//! What the configuration needs to know about each provider kind, declared
//! by the kind's own module and listed here. The config parser is generic
//! over this table: a kind not listed (the fake, without the cargo feature
//! `fake-provider`) is an unknown kind like any misspelt one.
//!
//! The kind's secret is named in `crate::secret::credentials::secret_name`;
//! the kind's client is built in `crate::wiring`.

use std::time::Duration;

use crate::domain::ProviderKind;

/// A provider kind's configuration shape.
#[derive(Debug, Clone, Copy)]
pub struct KindSpec {
    pub kind: ProviderKind,
    /// How `api_url` is treated.
    pub api_url: ApiUrl,
    /// Settings only this kind takes, all durations, with their defaults
    /// (the fake's `latency` and `operation_time`).
    pub settings: &'static [(&'static str, Duration)],
}

/// `providers.NAME.api_url` for a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiUrl {
    /// Optional, with this default.
    Default(&'static str),
    /// Required; the example is shown when it is missing.
    Required { example: &'static str },
    /// The kind talks to no API; giving one is an error.
    Unused,
}

/// Every provider kind in this build.
pub const KINDS: &[KindSpec] = &[
    super::digitalocean::KIND,
    super::erigones::KIND,
    #[cfg(feature = "fake-provider")]
    super::fake::KIND,
];

/// The kind written as `name` in `kind = "..."`, if this build has it.
pub fn kind_named(name: &str) -> Option<&'static KindSpec> {
    KINDS.iter().find(|k| k.kind.as_str() == name)
}

/// The spec of `kind`, if this build has it.
pub fn spec_of(kind: ProviderKind) -> Option<&'static KindSpec> {
    KINDS.iter().find(|k| k.kind == kind)
}

/// `"digitalocean" or "erigones"`: the kinds, quoted, for messages.
pub fn kind_list() -> String {
    let names: Vec<String> = KINDS
        .iter()
        .map(|k| format!("\"{}\"", k.kind.as_str()))
        .collect();
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_kinds_are_always_there() {
        assert!(kind_named("digitalocean").is_some());
        assert!(kind_named("erigones").is_some());
        assert!(kind_named("nope").is_none());
        assert!(
            kind_list().starts_with("\"digitalocean\", \"erigones\"")
                || kind_list() == "\"digitalocean\" or \"erigones\""
        );
    }

    #[test]
    fn the_fake_exists_only_with_its_feature() {
        assert_eq!(
            kind_named("fake").is_some(),
            cfg!(feature = "fake-provider")
        );
    }
}
