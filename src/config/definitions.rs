//! `[[definitions]]`: each entry is the domain's [`RawDefinition`],
//! validated by the domain for its provider's kind; a problem's key is
//! `definitions[i].field`.

use std::collections::BTreeMap;

use super::problems::Collector;
use super::providers::ProviderConfig;
use crate::domain::definition::{DefinitionSpec, FieldError, RawDefinition};

/// The fields a definition always has; a missing one is read as empty so
/// that validation names it (`definitions[0].name: must not be empty`).
const REQUIRED: [&str; 3] = ["name", "provider", "target"];

/// Parse and validate every `[[definitions]]` entry against the providers.
pub(super) fn parse(
    entries: Vec<config::Value>,
    providers: &BTreeMap<String, ProviderConfig>,
    c: &mut Collector,
) -> Vec<DefinitionSpec> {
    let mut definitions: Vec<DefinitionSpec> = Vec::new();
    for (i, value) in entries.into_iter().enumerate() {
        let Some(raw) = raw_entry(i, value, c) else {
            continue;
        };
        let at = |field: &str| format!("definitions[{i}].{field}");
        let Some(provider) = providers.get(&raw.provider) else {
            c.push(at("provider"), unknown_provider(&raw.provider, providers));
            continue;
        };
        match raw.validate(provider.kind) {
            Ok(spec) => match definitions.iter().position(|d| d.identity == spec.identity) {
                Some(j) => c.push(
                    at("name"),
                    format!(
                        "definition {} is declared twice (also at definitions[{j}])",
                        spec.identity
                    ),
                ),
                None => definitions.push(spec),
            },
            Err(errors) => {
                for FieldError { field, message } in errors {
                    c.push(at(field), message);
                }
            }
        }
    }
    definitions
}

/// One entry as a [`RawDefinition`]; unknown keys and wrong types are
/// problems.
fn raw_entry(i: usize, value: config::Value, c: &mut Collector) -> Option<RawDefinition> {
    let prefix = format!("definitions.{i}");
    let mut table = match value.into_table() {
        Ok(t) => t,
        Err(_) => {
            c.push(
                format!("definitions[{i}]"),
                "must be a table: write each definition as a [[definitions]] section",
            );
            return None;
        }
    };
    for field in REQUIRED {
        table
            .entry(field.to_owned())
            .or_insert_with(|| config::Value::from(""));
    }
    let (raw, unknown) = c.deserialize(config::Value::from(table), &prefix)?;
    c.unknown_in(&prefix, unknown);
    Some(raw)
}

fn unknown_provider(name: &str, providers: &BTreeMap<String, ProviderConfig>) -> String {
    if name.is_empty() {
        return "is required: the name of a [providers.NAME] section".into();
    }
    let known: Vec<&str> = providers.keys().map(String::as_str).collect();
    format!(
        "'{name}' is not a configured provider (configured: {})",
        if known.is_empty() {
            "none".into()
        } else {
            known.join(", ")
        }
    )
}
