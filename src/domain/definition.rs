//! Snapshot definitions as domain types.
//!
//! Everything that enters snapsched (config file, CLI flags, the store) is
//! parsed into these types at the boundary, so an invalid name, target,
//! retention or schedule cannot travel further than the loader. Field errors
//! carry the offending value and what would be accepted.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::hooks::{HookSpec, RawHooks};
use super::schedule::Schedule;
use super::target::{ProviderKind, Target};
pub use super::text::excerpt;

/// Longest definition name in general.
pub const NAME_MAX: usize = 64;
/// Longest definition name on Erigones: snapshot names there are at most 24
/// characters and ours are `<name>-YYYYmmdd_HHMMSS` (16 more).
pub const ERIGONES_NAME_MAX: usize = 8;
/// Highest retention Erigones accepts; we keep the same bound.
pub const RETENTION_MAX: u32 = 65536;
/// Longest description.
pub const DESC_MAX: usize = 128;

/// A problem with one field of a definition: `field` is the key (`name`,
/// `target`, ...), `message` says what is wrong with which value and how to
/// fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub(crate) fn new(field: &'static str, message: impl Into<String>) -> Self {
        FieldError {
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Validate a definition name for a provider kind.
pub fn parse_name(name: &str, kind: ProviderKind) -> Result<String, FieldError> {
    let max = if kind == ProviderKind::Erigones {
        ERIGONES_NAME_MAX
    } else {
        NAME_MAX
    };
    if name.is_empty() {
        return Err(FieldError::new("name", "must not be empty"));
    }
    let shown = excerpt(name);
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !first_ok || !rest_ok {
        return Err(FieldError::new(
            "name",
            format!(
                "'{shown}' is not a valid name: use letters, digits, '.', '_' and '-', starting with a letter or digit"
            ),
        ));
    }
    if name.chars().count() > max {
        let why = if kind == ProviderKind::Erigones {
            " on Erigones (snapshot names are at most 24 characters)"
        } else {
            ""
        };
        return Err(FieldError::new(
            "name",
            format!(
                "'{shown}' is {} characters long; at most {max} are allowed{why}",
                name.chars().count()
            ),
        ));
    }
    Ok(name.to_owned())
}

/// Parse a target for a provider kind: `droplet:<id>` or `volume:<uuid>` on
/// DigitalOcean, a VM hostname on Erigones and the fake provider.
pub fn parse_target(text: &str, kind: ProviderKind) -> Result<Target, FieldError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(FieldError::new("target", "must not be empty"));
    }
    let shown = excerpt(text);
    match kind {
        ProviderKind::DigitalOcean => {
            if let Some(id) = text.strip_prefix("droplet:") {
                match id.parse::<u64>() {
                    Ok(n) if n > 0 => Ok(Target::Droplet(n)),
                    _ => Err(FieldError::new(
                        "target",
                        format!("'{shown}': the droplet id must be a positive integer, as in droplet:3164444"),
                    )),
                }
            } else if let Some(tag) = text.strip_prefix("tag:") {
                parse_tag(tag, &shown)
            } else if let Some(id) = text.strip_prefix("volume:") {
                if id.starts_with("tag:") {
                    return Err(FieldError::new(
                        "target",
                        format!("'{shown}': volumes cannot be selected by tag, because the DigitalOcean API lists volumes only by name and region (GET /v2/volumes); name each volume as volume:<uuid>, or use tag:<name> for droplets"),
                    ));
                }
                uuid::Uuid::parse_str(id).map(Target::Volume).map_err(|_| {
                    FieldError::new(
                        "target",
                        format!("'{shown}': the volume id must be a UUID, as in volume:7724db7c-e098-11e5-b522-000f53304e51"),
                    )
                })
            } else {
                Err(FieldError::new(
                    "target",
                    format!(
                        "'{shown}' is not a DigitalOcean target: use droplet:<id>, volume:<uuid> or tag:<name>"
                    ),
                ))
            }
        }
        ProviderKind::Erigones | ProviderKind::Fake => {
            let valid = text.len() <= 253
                && text.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                });
            if valid {
                Ok(Target::Vm(text.to_owned()))
            } else {
                Err(FieldError::new(
                    "target",
                    format!("'{shown}' is not a valid VM hostname"),
                ))
            }
        }
    }
}

/// A DigitalOcean tag name as the API allows it: letters, digits, `:`,
/// `-` and `_`, at most 255 characters.
fn parse_tag(tag: &str, shown: &str) -> Result<Target, FieldError> {
    let valid = !tag.is_empty()
        && tag.len() <= 255
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_'));
    if valid {
        Ok(Target::Tag(tag.to_owned()))
    } else {
        Err(FieldError::new(
            "target",
            format!("'{shown}': a DigitalOcean tag name has 1 to 255 letters, digits, ':', '-' or '_', as in tag:web or tag:env:prod"),
        ))
    }
}

/// Validate a disk id for a target.
pub fn parse_disk_id(disk: i64, target: &Target) -> Result<u32, FieldError> {
    if disk < 1 || disk > i64::from(u32::MAX) {
        return Err(FieldError::new(
            "disk_id",
            format!("{disk} is not a valid disk number: disks are numbered from 1"),
        ));
    }
    if matches!(
        target,
        Target::Droplet(_) | Target::Volume(_) | Target::Tag(_) | Target::Member { .. }
    ) && disk != 1
    {
        return Err(FieldError::new(
            "disk_id",
            format!("{disk}: DigitalOcean droplets and volumes have only disk 1"),
        ));
    }
    Ok(disk as u32)
}

/// Validate a retention count (0 = keep everything).
pub fn parse_retention(n: i64) -> Result<u32, FieldError> {
    if (0..=i64::from(RETENTION_MAX)).contains(&n) {
        Ok(n as u32)
    } else {
        Err(FieldError::new(
            "retention",
            format!("{n} is out of range 0-{RETENTION_MAX} (0 keeps every snapshot)"),
        ))
    }
}

/// Parse a retention count given as text (CLI).
pub fn parse_retention_text(text: &str) -> Result<u32, FieldError> {
    match text.trim().parse::<i64>() {
        Ok(n) => parse_retention(n),
        Err(_) => Err(FieldError::new(
            "retention",
            format!(
                "'{}' is not a number: give a count of snapshots to keep, 0-{RETENTION_MAX}",
                excerpt(text)
            ),
        )),
    }
}

/// Validate a keep-tier count (`keep_hourly` and the like; 0 = off).
pub fn parse_keep_count(field: &'static str, n: i64) -> Result<u32, FieldError> {
    if (0..=i64::from(RETENTION_MAX)).contains(&n) {
        Ok(n as u32)
    } else {
        Err(FieldError::new(
            field,
            format!("{n} is out of range 0-{RETENTION_MAX} (0 turns the tier off)"),
        ))
    }
}

/// Parse a keep-tier count given as text (CLI).
pub fn parse_keep_count_text(field: &'static str, text: &str) -> Result<u32, FieldError> {
    match text.trim().parse::<i64>() {
        Ok(n) => parse_keep_count(field, n),
        Err(_) => Err(FieldError::new(
            field,
            format!("'{}' is not a number: give a count of periods to keep, 0-{RETENTION_MAX} (0 turns the tier off)", excerpt(text)),
        )),
    }
}

/// The most regions a definition copies its snapshots to.
pub const COPY_REGIONS_MAX: usize = 16;

/// Validate `copy_regions` for `target`: DigitalOcean region slugs
/// (lower-case letters then digits, such as `ams3`), each once, at most
/// [`COPY_REGIONS_MAX`]. Only droplet snapshots can be copied: DigitalOcean
/// cannot transfer volume snapshots, and Erigones has no regions. An empty
/// list means no copies.
pub fn parse_copy_regions(regions: &[String], target: &Target) -> Result<Vec<String>, FieldError> {
    let shown = || {
        let list: Vec<String> = regions
            .iter()
            .map(|r| format!("{:?}", excerpt(r)))
            .collect();
        format!("[{}]", list.join(", "))
    };
    if regions.is_empty() {
        return Ok(Vec::new());
    }
    match target {
        // A tag target's members are droplets.
        Target::Droplet(_) | Target::Tag(_) | Target::Member { .. } => {}
        Target::Volume(_) => {
            return Err(FieldError::new(
                "copy_regions",
                format!(
                    "{}: volume snapshots cannot be transferred to another region (DigitalOcean copies only droplet snapshots); remove copy_regions from this volume definition",
                    shown()
                ),
            ))
        }
        Target::Vm(_) => {
            return Err(FieldError::new(
                "copy_regions",
                format!(
                    "{}: only DigitalOcean droplet snapshots can be copied to other regions; remove copy_regions from this Erigones definition",
                    shown()
                ),
            ))
        }
    }
    if regions.len() > COPY_REGIONS_MAX {
        return Err(FieldError::new(
            "copy_regions",
            format!(
                "{} regions: at most {COPY_REGIONS_MAX} can be given",
                regions.len()
            ),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(regions.len());
    for r in regions {
        let slug = r.trim();
        let letters = slug.trim_end_matches(|c: char| c.is_ascii_digit());
        let valid = !letters.is_empty()
            && letters.len() < slug.len()
            && slug.len() <= 16
            && letters.chars().all(|c| c.is_ascii_lowercase());
        if !valid {
            return Err(FieldError::new(
                "copy_regions",
                format!(
                    "{:?} is not a DigitalOcean region slug: give lower-case letters then digits, such as \"ams3\" or \"fra1\"",
                    excerpt(r)
                ),
            ));
        }
        if out.iter().any(|o| o == slug) {
            return Err(FieldError::new(
                "copy_regions",
                format!("{slug:?} is given twice: name each region once"),
            ));
        }
        out.push(slug.to_owned());
    }
    Ok(out)
}

/// Validate a blast-radius limit: the most snapshots one post-run prune may
/// delete (0 = no limit).
pub fn parse_max_deletes(field: &'static str, n: i64) -> Result<u32, FieldError> {
    if (0..=i64::from(RETENTION_MAX)).contains(&n) {
        Ok(n as u32)
    } else {
        Err(FieldError::new(
            field,
            format!("{n} is out of range 0-{RETENTION_MAX} (0 means no limit)"),
        ))
    }
}

/// Calendar keep tiers of a definition, besides its `retention` (which is
/// `keep_last`). Counts of 0 and `within: None` are off. How they keep
/// snapshots is the retention planner's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct KeepTiers {
    #[serde(rename = "keep_hourly")]
    pub hourly: u32,
    #[serde(rename = "keep_daily")]
    pub daily: u32,
    #[serde(rename = "keep_weekly")]
    pub weekly: u32,
    #[serde(rename = "keep_monthly")]
    pub monthly: u32,
    #[serde(rename = "keep_yearly")]
    pub yearly: u32,
    /// Everything created within this before the newest own snapshot.
    #[serde(rename = "keep_within", with = "opt_humantime")]
    pub within: Option<Duration>,
}

impl KeepTiers {
    /// No tier is on.
    pub fn is_off(&self) -> bool {
        *self == KeepTiers::default()
    }
}

/// Validate a description.
pub fn parse_desc(desc: &str) -> Result<String, FieldError> {
    let n = desc.chars().count();
    if n > DESC_MAX {
        Err(FieldError::new(
            "desc",
            format!("is {n} characters long; at most {DESC_MAX} are allowed"),
        ))
    } else {
        Ok(desc.to_owned())
    }
}

/// Parse an IANA time zone name.
pub fn parse_timezone(name: &str) -> Result<Tz, FieldError> {
    name.parse::<Tz>().map_err(|_| {
        FieldError::new(
            "timezone",
            format!(
                "'{}' is not a known IANA time zone (such as UTC or Europe/Bratislava)",
                excerpt(name)
            ),
        )
    })
}

/// Parse a humantime duration such as `90s` or `1h 30m`.
pub fn parse_duration(field: &'static str, text: &str) -> Result<Duration, FieldError> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        FieldError::new(
            field,
            format!(
                "'{}' is not a duration ({e}); write it like \"90s\", \"1h 30m\" or \"30d\"",
                excerpt(text)
            ),
        )
    })
}

/// The range a duration setting may take. Every duration read from a
/// config file or a flag has one: a value far outside it is a typo or an
/// attack, and an unbounded one overflows date arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationRange {
    pub min: Duration,
    pub max: Duration,
}

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
/// A hundred years of 365.25 days: the longest age or window a retention
/// rule may name.
const CENTURY: Duration = Duration::from_secs(100 * 31_557_600);

impl DurationRange {
    pub const fn new(min: Duration, max: Duration) -> Self {
        DurationRange { min, max }
    }

    /// `keep_within`: positive, at most 100 years.
    pub const KEEP_WITHIN: DurationRange = DurationRange::new(SECOND, CENTURY);
    /// `max_age`: at least a minute (0 would prune every snapshot but the
    /// newest), at most 100 years.
    pub const MAX_AGE: DurationRange = DurationRange::new(MINUTE, CENTURY);
    /// `catch_up_deadline` (daemon and definition): 0 (never catch up) to
    /// 366 days.
    pub const CATCH_UP_DEADLINE: DurationRange =
        DurationRange::new(Duration::ZERO, Duration::from_secs(366 * 86_400));
    /// `retention simulate --for`: a second to 100 years.
    pub const SIMULATION: DurationRange = DurationRange::new(SECOND, CENTURY);
    /// `run_timeout`: a second to 7 days.
    pub const RUN_TIMEOUT: DurationRange =
        DurationRange::new(SECOND, Duration::from_secs(7 * 86_400));
    /// `action_timeout`: a second to 7 days.
    pub const ACTION_TIMEOUT: DurationRange =
        DurationRange::new(SECOND, Duration::from_secs(7 * 86_400));
    /// `poll_interval`, `poll_max_interval`: 100 ms to an hour.
    pub const POLL_INTERVAL: DurationRange = DurationRange::new(Duration::from_millis(100), HOUR);
    /// `connect_timeout`: 100 ms to 10 minutes.
    pub const CONNECT_TIMEOUT: DurationRange =
        DurationRange::new(Duration::from_millis(100), Duration::from_secs(600));
    /// `request_timeout`: a second to an hour.
    pub const REQUEST_TIMEOUT: DurationRange = DurationRange::new(SECOND, HOUR);
    /// `shutdown_grace`: 0 to an hour.
    pub const SHUTDOWN_GRACE: DurationRange = DurationRange::new(Duration::ZERO, HOUR);
    /// `lease_ttl`: a second (a node renews every third of it) to an hour.
    pub const LEASE_TTL: DurationRange = DurationRange::new(SECOND, HOUR);
    /// A provider kind's own duration settings: 0 to a day.
    pub const KIND_SETTING: DurationRange = DurationRange::new(Duration::ZERO, DAY);

    pub fn contains(&self, d: Duration) -> bool {
        (self.min..=self.max).contains(&d)
    }
}

impl fmt::Display for DurationRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "\"{}\" to \"{}\"",
            humantime::format_duration(self.min),
            humantime::format_duration(self.max)
        )
    }
}

/// [`parse_duration`] within `range`; the error names the value and the
/// allowed range.
pub fn parse_duration_in(
    field: &'static str,
    text: &str,
    range: DurationRange,
) -> Result<Duration, FieldError> {
    let d = parse_duration(field, text)?;
    if range.contains(d) {
        Ok(d)
    } else {
        Err(FieldError::new(
            field,
            format!(
                "'{}' is out of range: give a duration from {range}",
                excerpt(text.trim())
            ),
        ))
    }
}

/// `max_age`: 0 (or anything under a minute) would prune every own
/// snapshot but the newest at each run, so it is refused.
pub fn parse_max_age(text: &str) -> Result<Duration, FieldError> {
    match parse_duration("max_age", text)? {
        d if d < DurationRange::MAX_AGE.min => Err(FieldError::new(
            "max_age",
            format!(
                "'{}' would prune every snapshot but the newest at each run; give at least \"1m\" (e.g. \"30d\"), or leave max_age out to prune by the keep rules alone",
                excerpt(text.trim())
            ),
        )),
        _ => parse_duration_in("max_age", text, DurationRange::MAX_AGE),
    }
}

/// `keep_within`: positive (0 keeps nothing), at most 100 years.
pub fn parse_keep_within(text: &str) -> Result<Duration, FieldError> {
    match parse_duration("keep_within", text)? {
        d if d.is_zero() => Err(FieldError::new(
            "keep_within",
            format!(
                "'{}' keeps nothing; give a positive duration such as \"2d\", or leave it out",
                excerpt(text)
            ),
        )),
        _ => parse_duration_in("keep_within", text, DurationRange::KEEP_WITHIN),
    }
}

/// Where a definition comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `[[definitions]]` in the config file; the CLI must not edit it.
    Config,
    /// Added with `snapsched def add` (or `import`).
    Cli,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Cli => "cli",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "config" => Some(Source::Config),
            "cli" => Some(Source::Cli),
            _ => None,
        }
    }
}

/// A definition's identity, unique as in Erigones: (provider, target,
/// disk_id, name). Runs and snapshot records are keyed by it, so deleting
/// and re-adding a definition finds its history again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Identity {
    pub provider: String,
    pub target: String,
    pub disk_id: u32,
    pub name: String,
}

impl Identity {
    /// The identity of droplet `droplet` of this tag definition: same
    /// provider, disk and name, target `tag:<name>/droplet:<id>`.
    pub fn member(&self, droplet: u64) -> Identity {
        Identity {
            target: format!("{}/droplet:{droplet}", self.target),
            ..self.clone()
        }
    }

    /// The tag definition a member identity belongs to, and its droplet.
    pub fn member_of(&self) -> Option<(Identity, u64)> {
        match Target::from_canonical(&self.target)? {
            Target::Member { tag, droplet } => Some((
                Identity {
                    target: Target::Tag(tag).to_string(),
                    ..self.clone()
                },
                droplet,
            )),
            _ => None,
        }
    }

    /// Stable key from which `H` schedule fields are derived.
    pub fn hash_key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.provider, self.target, self.disk_id, self.name
        )
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' ({} {} disk {})",
            self.name, self.provider, self.target, self.disk_id
        )
    }
}

/// A complete, validated definition (without store bookkeeping).
#[derive(Debug, Clone, PartialEq, Hash, Serialize)]
pub struct DefinitionSpec {
    #[serde(flatten)]
    pub identity: Identity,
    /// The parsed target; `identity.target` is its canonical text.
    #[serde(skip)]
    pub target: Target,
    /// The parsed schedule (shown as written).
    #[serde(serialize_with = "schedule_source")]
    pub schedule: Schedule,
    /// IANA zone; `None` means the daemon's default zone.
    #[serde(serialize_with = "zone_name")]
    pub timezone: Option<Tz>,
    /// `keep_last`: the newest N own snapshots; 0 = this rule is off.
    pub retention: u32,
    /// Calendar tiers and `keep_within`.
    #[serde(flatten)]
    pub keep: KeepTiers,
    pub active: bool,
    pub desc: String,
    pub fsfreeze: bool,
    /// Own snapshots older than this are pruned even within the count.
    #[serde(with = "opt_humantime")]
    pub max_age: Option<Duration>,
    /// Overrides `[daemon] catch_up_deadline`.
    #[serde(with = "opt_humantime")]
    pub catch_up_deadline: Option<Duration>,
    /// Extra provider tags (DigitalOcean).
    pub tags: Vec<String>,
    /// Overrides `[daemon] max_deletes_per_run` (0 = no limit).
    pub max_deletes_per_run: Option<u32>,
    /// The definition's own hook settings; what it leaves unset comes from
    /// its provider's, then the daemon's.
    #[serde(flatten)]
    pub hooks: HookSpec,
    /// Regions each new snapshot is copied to once it is made (DigitalOcean
    /// droplets only; see [`parse_copy_regions`]). Empty: no copies.
    pub copy_regions: Vec<String>,
}

impl DefinitionSpec {
    /// The spec one droplet of a tag definition runs with: the member's
    /// identity and the droplet as target, everything else the definition's.
    pub fn for_member(&self, droplet: u64) -> DefinitionSpec {
        let identity = self.identity.member(droplet);
        let tag = self.target.tag().unwrap_or_default().to_owned();
        DefinitionSpec {
            identity,
            target: Target::Member { tag, droplet },
            ..self.clone()
        }
    }

    /// Parse `expr` as this definition's schedule: `H` fields hash its
    /// identity.
    pub fn parse_schedule(&self, expr: &str) -> Result<Schedule, FieldError> {
        let expr = expr.trim();
        Schedule::parse(expr, &self.identity.hash_key()).map_err(|e| {
            FieldError::new(
                "schedule",
                format!("'{}': {}", excerpt(expr), excerpt(&e.to_string())),
            )
        })
    }

    /// The zone the schedule is evaluated in.
    pub fn zone(&self, default: Tz) -> Tz {
        self.timezone.unwrap_or(default)
    }
}

/// A definition as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Definition {
    pub id: i64,
    #[serde(flatten)]
    pub spec: DefinitionSpec,
    pub source: Source,
    /// The config file a `config` definition comes from.
    pub source_path: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Raw definition fields as they come from the config file or the CLI.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct RawDefinition {
    pub name: String,
    pub provider: String,
    pub target: String,
    pub disk_id: Option<i64>,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub retention: Option<i64>,
    /// Same as `retention`; both may be given only with one value.
    pub keep_last: Option<i64>,
    pub keep_hourly: Option<i64>,
    pub keep_daily: Option<i64>,
    pub keep_weekly: Option<i64>,
    pub keep_monthly: Option<i64>,
    pub keep_yearly: Option<i64>,
    pub keep_within: Option<String>,
    pub active: Option<bool>,
    pub desc: Option<String>,
    pub fsfreeze: Option<bool>,
    pub max_age: Option<String>,
    pub catch_up_deadline: Option<String>,
    pub tags: Option<Vec<String>>,
    pub max_deletes_per_run: Option<i64>,
    pub pre_hook: Option<Vec<String>>,
    pub post_hook: Option<Vec<String>>,
    pub hook_timeout: Option<String>,
    pub on_pre_hook_failure: Option<String>,
    pub on_failure: Option<Vec<String>>,
    pub on_success: Option<Vec<String>>,
    pub copy_regions: Option<Vec<String>>,
}

/// Check the schedule even when other fields failed, so one attempt
/// reports every problem. `H` fields hash the identity; parts that did
/// not parse stand in as written, which only matters for a definition
/// that is refused anyway.
fn parse_schedule(
    raw: &RawDefinition,
    expr: &str,
    target: Option<&Target>,
    disk_id: Option<u32>,
    name: Option<&str>,
) -> Result<Schedule, FieldError> {
    let hash_key = Identity {
        provider: raw.provider.clone(),
        target: target.map_or_else(|| raw.target.trim().to_owned(), ToString::to_string),
        disk_id: disk_id.unwrap_or(1),
        name: name.map_or_else(|| raw.name.clone(), str::to_owned),
    }
    .hash_key();
    Schedule::parse(expr, &hash_key).map_err(|e| {
        FieldError::new(
            "schedule",
            format!("'{}': {}", excerpt(expr), excerpt(&e.to_string())),
        )
    })
}

impl RawDefinition {
    /// Validate every field for a provider of `kind`, reporting every problem.
    /// A name that is one of Erigones' defaults (`hourly`, `daily`, `weekly`,
    /// `monthly`) given without schedule and retention takes Erigones'
    /// default schedule and retention.
    pub fn validate(&self, kind: ProviderKind) -> Result<DefinitionSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = parse_name(&self.name, kind)
            .map_err(|e| errors.push(e))
            .ok();
        let target = parse_target(&self.target, kind)
            .map_err(|e| errors.push(e))
            .ok();
        let disk_id = target.as_ref().and_then(|t| {
            parse_disk_id(self.disk_id.unwrap_or(1), t)
                .map_err(|e| errors.push(e))
                .ok()
        });
        let (keep, keep_last) = self.keep_fields(&mut errors);
        let (schedule, retention) = self.schedule_and_count(&keep, keep_last, &mut errors);
        let parsed_schedule = schedule.as_deref().and_then(|expr| {
            parse_schedule(self, expr, target.as_ref(), disk_id, name.as_deref())
                .map_err(|e| errors.push(e))
                .ok()
        });
        let timezone = match &self.timezone {
            Some(tz) => parse_timezone(tz).map_err(|e| errors.push(e)).ok(),
            None => None,
        };
        let desc = parse_desc(self.desc.as_deref().unwrap_or(""))
            .map_err(|e| errors.push(e))
            .ok();
        let fsfreeze = self.fsfreeze.unwrap_or(false);
        if fsfreeze && kind == ProviderKind::DigitalOcean {
            errors.push(FieldError::new(
                "fsfreeze",
                "is only supported by Erigones providers; remove it",
            ));
        }
        let max_age = self
            .max_age
            .as_deref()
            .map(|s| parse_max_age(s).map_err(|e| errors.push(e)).ok())
            .unwrap_or(None);
        let catch_up_deadline = self
            .catch_up_deadline
            .as_deref()
            .map(|s| {
                parse_duration_in("catch_up_deadline", s, DurationRange::CATCH_UP_DEADLINE)
                    .map_err(|e| errors.push(e))
                    .ok()
            })
            .unwrap_or(None);
        if self.provider.trim().is_empty() {
            errors.push(FieldError::new("provider", "must not be empty"));
        }
        let tags = self.tags.clone().unwrap_or_default();
        let max_deletes_per_run = self.max_deletes_per_run.and_then(|n| {
            parse_max_deletes("max_deletes_per_run", n)
                .map_err(|e| errors.push(e))
                .ok()
        });
        let hooks = self
            .raw_hooks()
            .validate()
            .map_err(|e| errors.extend(e))
            .unwrap_or_default();
        let copy_regions = match (&self.copy_regions, &target) {
            (Some(regions), Some(target)) => parse_copy_regions(regions, target)
                .map_err(|e| errors.push(e))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let (Some(name), Some(target), Some(disk_id), Some(schedule), Some(retention), Some(desc)) =
            (name, target, disk_id, parsed_schedule, retention, desc)
        else {
            return Err(errors);
        };
        let spec = DefinitionSpec {
            identity: Identity {
                provider: self.provider.clone(),
                target: target.to_string(),
                disk_id,
                name,
            },
            target,
            schedule,
            timezone,
            retention,
            keep,
            active: self.active.unwrap_or(true),
            desc,
            fsfreeze,
            max_age,
            catch_up_deadline,
            tags,
            max_deletes_per_run,
            hooks,
            copy_regions,
        };
        if errors.is_empty() {
            Ok(spec)
        } else {
            Err(errors)
        }
    }
}

impl RawDefinition {
    /// The hook fields, for [`RawHooks::validate`].
    pub fn raw_hooks(&self) -> RawHooks {
        RawHooks {
            pre_hook: self.pre_hook.clone(),
            post_hook: self.post_hook.clone(),
            hook_timeout: self.hook_timeout.clone(),
            on_pre_hook_failure: self.on_pre_hook_failure.clone(),
            on_failure: self.on_failure.clone(),
            on_success: self.on_success.clone(),
        }
    }

    /// The keep tiers (invalid ones reported and left off) and `keep_last`.
    /// The schedule's text and the count rule, from the fields or, for a
    /// definition named hourly, daily, weekly or monthly with neither set,
    /// Erigones' defaults for that name.
    fn schedule_and_count(
        &self,
        keep: &KeepTiers,
        keep_last: Option<i64>,
        errors: &mut Vec<FieldError>,
    ) -> (Option<String>, Option<u32>) {
        let count = match (self.retention, keep_last) {
            (Some(r), Some(k)) if r != k => {
                errors.push(FieldError::new(
                    "keep_last",
                    format!("{k} contradicts retention {r}: they are one setting; give only one of them"),
                ));
                None
            }
            (r, k) => r.or(k),
        };
        let tiered = !keep.is_off();
        let defaults = match (&self.schedule, count) {
            (None, None) if !tiered => super::schedule::erigones_default(&self.name),
            _ => None,
        };
        let schedule = match (&self.schedule, defaults) {
            (Some(s), _) => Some(s.trim().to_owned()),
            (None, Some((s, _))) => Some(s.to_owned()),
            (None, None) => {
                errors.push(FieldError::new(
                    "schedule",
                    "is required (a 5-field cron expression such as \"30 5 * * *\"); only the names hourly, daily, weekly and monthly have a default",
                ));
                None
            }
        };
        let retention = match (count, defaults) {
            (Some(n), _) => parse_retention(n).map_err(|e| errors.push(e)).ok(),
            (None, Some((_, n))) => Some(n),
            // Tiers alone: no count rule.
            (None, None) if tiered => Some(0),
            (None, None) => {
                errors.push(FieldError::new(
                    "retention",
                    format!("is required: the number of snapshots to keep, 0-{RETENTION_MAX} (0 keeps all), or keep_hourly/daily/weekly/monthly/yearly/within tiers"),
                ));
                None
            }
        };
        (schedule, retention)
    }

    fn keep_fields(&self, errors: &mut Vec<FieldError>) -> (KeepTiers, Option<i64>) {
        let mut count = |field: &'static str, n: Option<i64>| -> u32 {
            n.map(|n| {
                parse_keep_count(field, n)
                    .map_err(|e| errors.push(e))
                    .unwrap_or(0)
            })
            .unwrap_or(0)
        };
        let mut keep = KeepTiers {
            hourly: count("keep_hourly", self.keep_hourly),
            daily: count("keep_daily", self.keep_daily),
            weekly: count("keep_weekly", self.keep_weekly),
            monthly: count("keep_monthly", self.keep_monthly),
            yearly: count("keep_yearly", self.keep_yearly),
            within: None,
        };
        if let Some(text) = &self.keep_within {
            match parse_keep_within(text) {
                Ok(d) => keep.within = Some(d),
                Err(e) => errors.push(e),
            }
        }
        (keep, self.keep_last)
    }
}

fn schedule_source<S: serde::Serializer>(schedule: &Schedule, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(schedule.source())
}

fn zone_name<S: serde::Serializer>(zone: &Option<Tz>, s: S) -> Result<S::Ok, S::Error> {
    match zone {
        Some(z) => s.serialize_str(z.name()),
        None => s.serialize_none(),
    }
}

/// Serialize `Option<Duration>` as a humantime string.
pub(crate) mod opt_humantime {
    use std::time::Duration;

    use serde::Serializer;

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(name: &str, target: &str) -> RawDefinition {
        RawDefinition {
            name: name.into(),
            provider: "do".into(),
            target: target.into(),
            schedule: Some("30 5 * * *".into()),
            retention: Some(30),
            ..Default::default()
        }
    }

    fn field_errors(r: &RawDefinition, kind: ProviderKind) -> Vec<&'static str> {
        r.validate(kind)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn names_follow_erigones_rules() {
        for ok in ["daily", "a", "A1._-", &"x".repeat(64)] {
            assert!(parse_name(ok, ProviderKind::DigitalOcean).is_ok(), "{ok}");
        }
        for bad in ["", "-x", ".x", "a b", "ž", "a/b", &"x".repeat(65)] {
            assert!(
                parse_name(bad, ProviderKind::DigitalOcean).is_err(),
                "{bad}"
            );
        }
        assert!(parse_name("12345678", ProviderKind::Erigones).is_ok());
        let e = parse_name("123456789", ProviderKind::Erigones).unwrap_err();
        assert!(e.message.contains("at most 8"), "{e}");
    }

    #[test]
    fn targets_are_checked_per_kind() {
        use ProviderKind::*;
        assert_eq!(
            parse_target("droplet:3164444", DigitalOcean).unwrap(),
            Target::Droplet(3164444)
        );
        assert!(parse_target("volume:7724db7c-e098-11e5-b522-000f53304e51", DigitalOcean).is_ok());
        for bad in [
            "droplet:abc",
            "droplet:",
            "droplet:0",
            "volume:not-a-uuid",
            "",
            "web01",
        ] {
            assert!(parse_target(bad, DigitalOcean).is_err(), "{bad}");
        }
        assert!(parse_target("web01.example.com", Erigones).is_ok());
        for bad in ["", "web 01", "-web", "a..b"] {
            assert!(parse_target(bad, Erigones).is_err(), "{bad}");
        }
    }

    #[test]
    fn disk_ids_start_at_one_and_digitalocean_has_only_disk_one() {
        let vm = Target::Vm("web01".into());
        assert_eq!(parse_disk_id(2, &vm).unwrap(), 2);
        assert!(parse_disk_id(0, &vm).is_err());
        assert!(parse_disk_id(-1, &vm).is_err());
        assert!(parse_disk_id(2, &Target::Droplet(1)).is_err());
        assert!(parse_disk_id(1, &Target::Droplet(1)).is_ok());
    }

    #[test]
    fn retention_bounds() {
        assert_eq!(parse_retention(0).unwrap(), 0);
        assert_eq!(parse_retention(65536).unwrap(), 65536);
        assert!(parse_retention(-1).is_err());
        assert!(parse_retention(65537).is_err());
        assert!(parse_retention_text("abc").is_err());
    }

    #[test]
    fn validate_reports_every_problem_at_once() {
        let mut r = raw("bad name", "droplet:abc");
        r.retention = Some(-1);
        r.timezone = Some("Mars/Olympus".into());
        r.desc = Some("x".repeat(129));
        let fields = field_errors(&r, ProviderKind::DigitalOcean);
        for f in ["name", "target", "retention", "timezone", "desc"] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn schedule_is_checked_even_when_other_fields_fail() {
        let mut r = raw("bad name", "droplet:abc");
        r.schedule = Some("not a schedule".into());
        r.disk_id = Some(0);
        let fields = field_errors(&r, ProviderKind::DigitalOcean);
        for f in ["name", "target", "schedule"] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
        let mut r = raw("ok", "droplet:1");
        r.disk_id = Some(2);
        r.schedule = Some("not a schedule".into());
        let fields = field_errors(&r, ProviderKind::DigitalOcean);
        assert_eq!(fields, ["disk_id", "schedule"]);
    }

    #[test]
    fn a_valid_definition_reports_its_schedule_once() {
        let mut r = raw("daily", "droplet:1");
        r.schedule = Some("not a schedule".into());
        assert_eq!(field_errors(&r, ProviderKind::DigitalOcean), ["schedule"]);
        assert!(raw("daily", "droplet:1")
            .validate(ProviderKind::DigitalOcean)
            .is_ok());
    }

    #[test]
    fn empty_provider_is_refused() {
        let mut r = raw("daily", "droplet:1");
        r.provider = " ".into();
        assert_eq!(field_errors(&r, ProviderKind::DigitalOcean), ["provider"]);
    }

    #[test]
    fn desc_and_timezone_limits() {
        assert!(parse_desc(&"d".repeat(128)).is_ok());
        let e = parse_desc(&"d".repeat(129)).unwrap_err();
        assert_eq!(e.field, "desc");
        assert!(e.message.contains("129"), "{e}");
        assert!(parse_timezone("Europe/Bratislava").is_ok());
        let e = parse_timezone("Mars/Olympus").unwrap_err();
        assert!(e.message.contains("Mars/Olympus"), "{e}");
    }

    #[test]
    fn erigones_default_names_fill_schedule_and_retention() {
        let r = RawDefinition {
            name: "daily".into(),
            provider: "dc1".into(),
            target: "web01".into(),
            ..Default::default()
        };
        let spec = r.validate(ProviderKind::Erigones).unwrap();
        assert_eq!(spec.schedule.source(), "H H * * *");
        assert_eq!(spec.retention, 30);
        let r = RawDefinition {
            name: "nightly".into(),
            ..r
        };
        assert!(field_errors(&r, ProviderKind::Erigones).contains(&"schedule"));
    }

    #[test]
    fn copy_regions_are_droplet_only_region_slugs() {
        let regions = |list: &[&str]| Some(list.iter().map(|r| r.to_string()).collect());
        let r = RawDefinition {
            copy_regions: regions(&["ams3", "fra1"]),
            ..raw("web", "droplet:3164444")
        };
        let spec = r.validate(ProviderKind::DigitalOcean).unwrap();
        assert_eq!(spec.copy_regions, ["ams3", "fra1"]);
        let volume = RawDefinition {
            copy_regions: regions(&["ams3"]),
            ..raw("db", "volume:7724db7c-e098-11e5-b522-000f53304e51")
        };
        let e = volume.validate(ProviderKind::DigitalOcean).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].field, "copy_regions");
        assert!(e[0].message.contains("[\"ams3\"]"), "{}", e[0]);
        assert!(
            e[0].message
                .contains("volume snapshots cannot be transferred"),
            "{}",
            e[0]
        );
        let vm = RawDefinition {
            provider: "dc1".into(),
            copy_regions: regions(&["ams3"]),
            ..raw("daily", "web01")
        };
        assert_eq!(field_errors(&vm, ProviderKind::Erigones), ["copy_regions"]);
        for bad in [
            &["AMS3"][..],
            &["ams"],
            &["3"],
            &["ams3", "ams3"],
            &["ams 3"],
        ] {
            let r = RawDefinition {
                copy_regions: regions(bad),
                ..raw("web", "droplet:1")
            };
            assert_eq!(
                field_errors(&r, ProviderKind::DigitalOcean),
                ["copy_regions"],
                "{bad:?}"
            );
        }
        // An empty list on a volume is no copy at all.
        let none = RawDefinition {
            copy_regions: Some(Vec::new()),
            ..raw("db", "volume:7724db7c-e098-11e5-b522-000f53304e51")
        };
        assert!(none.validate(ProviderKind::DigitalOcean).is_ok());
    }
}
