//! Which listed snapshots belong to a definition, and why.
//!
//! Ownership is decided from two facts only: what the store recorded and the
//! snapshot's exact name. The rules, in order, for each snapshot in the
//! provider's complete listing of one (target, disk):
//!
//! 1. Its name is recorded in the store as created for this definition
//!    identity (live, deleted or gone): [`Ownership::Recorded`]. snapsched
//!    made it, so it stays ours even if the store believed it gone (a
//!    deletion the provider has not finished yet is deleted again, which is
//!    harmless: "not found" is success).
//! 2. Its name is recorded for any other definition identity on this target
//!    and disk: [`Ownership::OtherDefinition`]. Never adopted, even when the
//!    name fits this definition's pattern (a removed and re-added definition,
//!    or a second provider account pointing at the same disk).
//! 3. The store has no row of any kind for the name, and the name is
//!    exactly `<definition>-YYYYmmdd_HHMMSS` with a real calendar date-time:
//!    [`Ownership::Adopted`]. This covers a lost database and one restored
//!    from an older backup: the snapshots made since are adopted one by one
//!    instead of being left as orphans that are never pruned. The caller
//!    logs each adoption and records it, so it is `Recorded` next time.
//! 4. Anything else (manual snapshots, backups, other tools' snapshots, near
//!    misses such as `daily2-…` or `daily-…-copy` for `daily`):
//!    [`Ownership::Unmanaged`].
//!
//! Invariant: only `Recorded` and `Adopted` are owned; the planner never
//! counts or deletes anything else.
//!
//! The listing must be complete (the provider contract makes a partial
//! listing an error), otherwise "missing from the listing" would wrongly mark
//! snapshots gone.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::NaiveDateTime;
use serde::Serialize;

use crate::domain::definition::Identity;
use crate::domain::{RecordState, RemoteSnapshot, SnapshotRecord};

/// Why a listed snapshot does or does not belong to the definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ownership {
    /// The store recorded it as created for this definition identity.
    Recorded,
    /// No store row at all, and the name is exactly this definition's
    /// `<name>-YYYYmmdd_HHMMSS`.
    Adopted,
    /// The store recorded it for another definition identity.
    OtherDefinition,
    /// Manual, another tool's, or a name that does not fit the pattern.
    Unmanaged,
}

impl Ownership {
    /// Whether retention may count and delete the snapshot.
    pub fn is_owned(self) -> bool {
        matches!(self, Ownership::Recorded | Ownership::Adopted)
    }

    /// Stable lower-case label, as shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Ownership::Recorded => "recorded",
            Ownership::Adopted => "adopted",
            Ownership::OtherDefinition => "other definition",
            Ownership::Unmanaged => "not managed",
        }
    }
}

/// A listed snapshot with its ownership: the planner's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub snapshot: RemoteSnapshot,
    pub ownership: Ownership,
}

/// What the store knows about snapshot names on one (target, disk).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreRecords {
    /// Names recorded as created for this definition identity and not known
    /// to be gone.
    pub live: HashSet<String>,
    /// Names recorded for this definition identity as deleted or gone.
    pub gone: HashSet<String>,
    /// Names recorded for any other definition identity on this target and
    /// disk, whatever their state.
    pub others: HashSet<String>,
    /// This definition's held snapshots: name → the hold's reason text
    /// (empty when none was given). The planner keeps them by no other rule.
    pub held: Holds,
}

/// Held snapshots by name, with the hold's reason text.
pub type Holds = BTreeMap<String, String>;

impl StoreRecords {
    /// Split the store's records of one (provider, target, disk) into
    /// `id`'s own (live, or deleted and gone) and everyone else's.
    pub fn of(id: &Identity, records: &[SnapshotRecord]) -> StoreRecords {
        let mut out = StoreRecords::default();
        for r in records {
            let set = if r.identity != *id {
                &mut out.others
            } else if r.state == RecordState::Present {
                &mut out.live
            } else {
                &mut out.gone
            };
            set.insert(r.snapshot.clone());
            if let (Some(hold), true) = (&r.hold, r.identity == *id) {
                out.held.insert(r.snapshot.clone(), hold.reason.clone());
            }
        }
        out
    }
}

/// The result of [`classify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// Every listed snapshot, in listing order, with its ownership.
    pub candidates: Vec<Candidate>,
    /// Names the store holds as live for this definition that the provider no
    /// longer lists (deleted by hand): to be marked gone, sorted.
    pub missing: Vec<String>,
    /// Names the store holds as deleted or gone that the provider lists
    /// again (a deletion still in progress, or a listing that lagged):
    /// counted as owned again, sorted.
    pub reappeared: Vec<String>,
}

impl Classification {
    /// The adopted snapshots, for the caller to log and record.
    pub fn adopted(&self) -> impl Iterator<Item = &RemoteSnapshot> {
        self.candidates
            .iter()
            .filter(|c| c.ownership == Ownership::Adopted)
            .map(|c| &c.snapshot)
    }
}

/// Decide the ownership of every snapshot in `listing` (the provider's
/// complete listing of one target and disk) for definition `definition`.
pub fn classify(
    listing: &[RemoteSnapshot],
    store: &StoreRecords,
    definition: &str,
) -> Classification {
    let candidates: Vec<Candidate> = listing
        .iter()
        .map(|snapshot| Candidate {
            ownership: ownership_of(&snapshot.name, store, definition),
            snapshot: snapshot.clone(),
        })
        .collect();

    let listed: HashSet<&str> = listing.iter().map(|s| s.name.as_str()).collect();
    let missing: BTreeSet<String> = store
        .live
        .iter()
        .filter(|name| !listed.contains(name.as_str()))
        .cloned()
        .collect();
    let reappeared: BTreeSet<String> = store
        .gone
        .iter()
        .filter(|name| listed.contains(name.as_str()) && !store.live.contains(*name))
        .cloned()
        .collect();

    Classification {
        candidates,
        missing: missing.into_iter().collect(),
        reappeared: reappeared.into_iter().collect(),
    }
}

fn ownership_of(name: &str, store: &StoreRecords, definition: &str) -> Ownership {
    if store.live.contains(name) || store.gone.contains(name) {
        Ownership::Recorded
    } else if store.others.contains(name) {
        Ownership::OtherDefinition
    } else if matches_definition_pattern(name, definition) {
        Ownership::Adopted
    } else {
        Ownership::Unmanaged
    }
}

/// The `YYYYmmdd_HHMMSS` suffix of snapshot names, as the run engine writes
/// it with chrono.
pub const NAME_TIME_FORMAT: &str = "%Y%m%d_%H%M%S";

/// Whether `name` is exactly `<definition>-YYYYmmdd_HHMMSS` with a real
/// date-time (no leap second, no month 13).
pub fn matches_definition_pattern(name: &str, definition: &str) -> bool {
    let Some(rest) = name.strip_prefix(definition) else {
        return false;
    };
    let Some(stamp) = rest.strip_prefix('-') else {
        return false;
    };
    parse_name_time(stamp).is_some()
}

/// Parse a `YYYYmmdd_HHMMSS` stamp strictly: exactly that shape of ASCII
/// digits, a valid calendar date and time.
fn parse_name_time(stamp: &str) -> Option<NaiveDateTime> {
    let bytes = stamp.as_bytes();
    // chrono's `%Y` accepts signs and more than four digits; pin the shape
    // first so that only what the engine itself writes is accepted.
    let shape_ok = bytes.len() == 15
        && bytes[8] == b'_'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 8 || b.is_ascii_digit());
    if !shape_ok {
        return None;
    }
    // chrono parses second 60 as a leap second; the engine never writes one.
    if &stamp[13..15] >= "60" {
        return None;
    }
    NaiveDateTime::parse_from_str(stamp, NAME_TIME_FORMAT).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SnapshotStatus;
    use chrono::{TimeZone, Utc};

    fn snap(name: &str) -> RemoteSnapshot {
        RemoteSnapshot {
            id: format!("id-{name}"),
            name: name.to_string(),
            created_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            status: SnapshotStatus::Ok,
            size_bytes: None,
            note: None,
        }
    }

    fn set(names: &[&str]) -> HashSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn adoption_requires_the_exact_name_pattern() {
        let cases: &[(&str, bool)] = &[
            ("daily-20260101_000000", true),
            ("daily-20241231_235959", true),
            ("daily-20240229_120000", true), // leap day
            ("daily2-20260101_000000", false),
            ("daily-20260101_000000-copy", false),
            ("daily-20261341_000000", false), // month 13
            ("daily-20250229_000000", false), // not a leap year
            ("daily-20260101_240000", false),
            ("daily-20260101_006000", false),
            ("daily-20261231_235960", false), // leap second
            ("daily-2026011_0000000", false),
            ("daily-20260101-000000", false),
            ("daily-+2026010_000000", false),
            ("daily-２０２６0101_000000", false), // non-ASCII digits
            ("daily_20260101_000000", false),
            ("daily20260101_000000", false),
            ("Daily-20260101_000000", false),
            ("daily-", false),
            ("daily", false),
            ("", false),
            ("manual backup", false),
        ];
        for (name, expected) in cases {
            assert_eq!(
                matches_definition_pattern(name, "daily"),
                *expected,
                "name {name:?}"
            );
        }
    }

    #[test]
    fn adoption_works_for_definition_names_with_dashes_and_digits() {
        assert!(matches_definition_pattern(
            "web-1-daily-20260101_000000",
            "web-1-daily"
        ));
        // `web` must not adopt the snapshots of `web-1`.
        assert!(!matches_definition_pattern("web-1-20260101_000000", "web"));
    }

    #[test]
    fn classify_applies_each_ownership_rule() {
        let listing = vec![
            snap("daily-20260101_000000"),      // recorded live
            snap("daily-20260102_000000"),      // recorded gone, listed again
            snap("daily-20260103_000000"),      // no row: adopted
            snap("daily-20260104_000000"),      // recorded for another identity
            snap("weekly-20260105_000000"),     // recorded for another identity
            snap("daily2-20260101_000000"),     // near miss
            snap("before upgrade"),             // manual
            snap("daily-20260101_000000-copy"), // near miss
        ];
        let store = StoreRecords {
            live: set(&["daily-20260101_000000", "daily-20251231_000000"]),
            gone: set(&["daily-20260102_000000", "daily-20251201_000000"]),
            others: set(&["daily-20260104_000000", "weekly-20260105_000000"]),
            ..StoreRecords::default()
        };
        let c = classify(&listing, &store, "daily");
        let got: Vec<(&str, Ownership)> = c
            .candidates
            .iter()
            .map(|c| (c.snapshot.name.as_str(), c.ownership))
            .collect();
        assert_eq!(
            got,
            vec![
                ("daily-20260101_000000", Ownership::Recorded),
                ("daily-20260102_000000", Ownership::Recorded),
                ("daily-20260103_000000", Ownership::Adopted),
                ("daily-20260104_000000", Ownership::OtherDefinition),
                ("weekly-20260105_000000", Ownership::OtherDefinition),
                ("daily2-20260101_000000", Ownership::Unmanaged),
                ("before upgrade", Ownership::Unmanaged),
                ("daily-20260101_000000-copy", Ownership::Unmanaged),
            ]
        );
        assert_eq!(c.missing, vec!["daily-20251231_000000".to_string()]);
        assert_eq!(c.reappeared, vec!["daily-20260102_000000".to_string()]);
        let adopted: Vec<&str> = c.adopted().map(|s| s.name.as_str()).collect();
        assert_eq!(adopted, vec!["daily-20260103_000000"]);
    }

    #[test]
    fn classify_with_an_empty_store_adopts_only_pattern_names() {
        let listing = vec![
            snap("daily-20260101_000000"),
            snap("daily-20261341_000000"),
            snap("hourly-20260101_000000"),
        ];
        let c = classify(&listing, &StoreRecords::default(), "daily");
        let owned: Vec<&str> = c
            .candidates
            .iter()
            .filter(|c| c.ownership.is_owned())
            .map(|c| c.snapshot.name.as_str())
            .collect();
        assert_eq!(owned, vec!["daily-20260101_000000"]);
        assert!(c.missing.is_empty());
    }

    #[test]
    fn recorded_snapshots_missing_from_the_listing_are_reported_once_sorted() {
        let store = StoreRecords {
            live: set(&["daily-20260103_000000", "daily-20260101_000000"]),
            gone: set(&["daily-20251201_000000"]),
            others: set(&["weekly-20251201_000000"]),
            ..StoreRecords::default()
        };
        let c = classify(&[], &store, "daily");
        assert_eq!(
            c.missing,
            vec![
                "daily-20260101_000000".to_string(),
                "daily-20260103_000000".to_string()
            ]
        );
        assert!(c.reappeared.is_empty());
    }
}
