//! Where in the file a problem is, and which key a misspelt one meant.
//!
//! The layered configuration keeps no positions, so a problem's dotted key
//! (`definitions[0].retention`) is looked up again in the file's own text,
//! parsed with spans. Suggestions come from the keys the shipped example
//! names (it lists every key, some commented out), per section.

use std::collections::BTreeSet;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Line and column (1-based, columns in characters) of `key` in `text`: of
/// the key itself for a table entry, of the element for an array index.
/// `None` when the file does not have the key (it came from the
/// environment or is missing) or does not parse.
pub fn position(text: &str, key: &str) -> Option<(usize, usize)> {
    let root = DeTable::parse(text).ok()?;
    let mut table: &DeTable<'_> = root.get_ref();
    let mut segments = segments(key).into_iter().peekable();
    let mut at = None;
    while let Some(segment) = segments.next() {
        let Segment::Key(name) = segment else {
            return None;
        };
        let (k, v) = table.iter().find(|(k, _)| k.get_ref().as_ref() == name)?;
        at = Some(k.span().start);
        let mut value: &Spanned<DeValue<'_>> = v;
        while let Some(Segment::Index(i)) = segments.peek() {
            let DeValue::Array(items) = value.get_ref() else {
                return None;
            };
            value = items.get(*i)?;
            at = Some(value.span().start);
            segments.next();
        }
        match value.get_ref() {
            DeValue::Table(t) => table = t,
            _ if segments.peek().is_none() => break,
            _ => return None,
        }
    }
    at.map(|offset| line_column(text, offset))
}

#[derive(Debug, PartialEq)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// `definitions[0].retention` → `definitions`, `0`, `retention`.
fn segments(key: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in key.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Segment::Key(name));
        }
        while let Some(close) = rest.find(']') {
            if let Ok(i) = rest[1..close].parse() {
                out.push(Segment::Index(i));
            }
            rest = &rest[close + 1..];
        }
    }
    out
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The known key nearest to the unknown `key` in the same section, when
/// one is near enough to be a slip (`daemon.databse` → `database`).
pub fn suggest(key: &str) -> Option<String> {
    let (section, name) = match key.rfind('.') {
        Some(i) => (&key[..i], &key[i + 1..]),
        None => ("", key),
    };
    let section = normalize(section);
    known_keys()
        .iter()
        .filter(|(s, _)| *s == section)
        .map(|(_, k)| (strsim::damerau_levenshtein(name, k), k))
        .filter(|(d, k)| *d > 0 && *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k.clone())
}

/// A section path with the parts that vary made generic: a provider's
/// name and a definition's index.
fn normalize(section: &str) -> String {
    let mut parts = section.split('.');
    match (parts.next(), parts.next()) {
        (Some("providers"), Some(_)) => "providers.*".to_owned(),
        (Some(d), None) if d.starts_with("definitions[") => "definitions".to_owned(),
        (Some(first), None) => first.to_owned(),
        _ => section.to_owned(),
    }
}

/// `(section, key)` for every key the example names, written or commented.
fn known_keys() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut section = String::new();
    for line in super::EXAMPLE.lines() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            section = normalize(header);
        } else if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = normalize(header);
        } else {
            let line = line.trim_start_matches('#').trim_start();
            if let Some((key, _)) = line.split_once('=') {
                let key = key.trim();
                if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    out.insert((section.clone(), key.to_owned()));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[daemon]\ntimezone = \"UTC\"\n\n[[definitions]]\nname = \"a\"\n\n[[definitions]]\nname = \"b\"\n  retention = \"x\"\ntags = [\"one\", 2]\n";

    #[test]
    fn positions_point_at_the_key_or_the_element() {
        assert_eq!(position(TEXT, "daemon.timezone"), Some((2, 1)));
        assert_eq!(position(TEXT, "definitions[1].retention"), Some((9, 3)));
        assert_eq!(position(TEXT, "definitions[1].tags[1]"), Some((10, 16)));
        assert_eq!(position(TEXT, "daemon.database"), None);
        assert_eq!(position(TEXT, "definitions[5].name"), None);
        assert_eq!(position("not = [toml", "not"), None);
    }

    #[test]
    fn slips_get_the_nearest_key_of_their_section() {
        assert_eq!(suggest("daemon.databse").as_deref(), Some("database"));
        assert_eq!(
            suggest("providers.do.token_fiel").as_deref(),
            Some("token_file")
        );
        assert_eq!(
            suggest("definitions[3].retension").as_deref(),
            Some("retention")
        );
        assert_eq!(suggest("daemon.colour"), None);
        // A key of another section is not a suggestion.
        assert_eq!(suggest("metrics.retention"), None);
    }
}
