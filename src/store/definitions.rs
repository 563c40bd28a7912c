//! Definitions: one row per identity (provider, target, disk, name), from the
//! config file or the CLI. Every change bumps the change counter in `meta`
//! (by trigger), which is how a running daemon notices edits.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::backend::{Args, Conn, Tx};
use super::{disk_id, parse_ts, ts_ms, Store, StoreError, StoreResult};
use crate::domain::definition::{Definition, DefinitionSpec, Identity, KeepTiers, Source};
use crate::domain::{Schedule, Target};

/// `WHERE` condition on a definition's identity, for arguments `$1`–`$4`
/// bound by [`Args::identity`].
const DEF_OF_IDENTITY: &str = "provider = $1 AND target = $2 AND disk_id = $3 AND name = $4";

/// A `definitions` row as stored.
#[derive(sqlx::FromRow)]
struct DefinitionRow {
    id: i64,
    provider: String,
    target: String,
    disk_id: i64,
    name: String,
    schedule: String,
    timezone: Option<String>,
    retention: i64,
    active: bool,
    desc: String,
    fsfreeze: bool,
    max_age_secs: Option<i64>,
    catch_up_deadline_secs: Option<i64>,
    keep_hourly: i64,
    keep_daily: i64,
    keep_weekly: i64,
    keep_monthly: i64,
    keep_yearly: i64,
    keep_within_secs: Option<i64>,
    max_deletes_per_run: Option<i64>,
    hooks: String,
    copy_regions: String,
    tags: String,
    source: String,
    source_path: Option<String>,
    created_at: String,
    updated_at: String,
}

impl DefinitionRow {
    /// The definition, its schedule, zone and target parsed; a stored value
    /// that does not parse is a corrupt row, never a silent default.
    fn into_definition(self) -> StoreResult<Definition> {
        let secs = |s: Option<i64>| s.map(|s| Duration::from_secs(s.max(0) as u64));
        let identity = Identity {
            provider: self.provider,
            target: self.target,
            disk_id: disk_id(self.disk_id)?,
            name: self.name,
        };
        let corrupt = |what: String| StoreError::Corrupt(format!("definition {identity}: {what}"));
        let target = Target::from_canonical(&identity.target)
            .ok_or_else(|| corrupt(format!("target '{}'", identity.target)))?;
        let schedule = Schedule::parse(&self.schedule, &identity.hash_key())
            .map_err(|e| corrupt(format!("schedule '{}': {e}", self.schedule)))?;
        let timezone = self
            .timezone
            .map(|z| {
                z.parse::<chrono_tz::Tz>()
                    .map_err(|_| corrupt(format!("time zone '{z}'")))
            })
            .transpose()?;
        let retention = u32::try_from(self.retention)
            .map_err(|_| corrupt(format!("retention {}", self.retention)))?;
        let count =
            |what: &str, n: i64| u32::try_from(n).map_err(|_| corrupt(format!("{what} {n}")));
        let keep = KeepTiers {
            hourly: count("keep_hourly", self.keep_hourly)?,
            daily: count("keep_daily", self.keep_daily)?,
            weekly: count("keep_weekly", self.keep_weekly)?,
            monthly: count("keep_monthly", self.keep_monthly)?,
            yearly: count("keep_yearly", self.keep_yearly)?,
            within: secs(self.keep_within_secs).filter(|d| !d.is_zero()),
        };
        let max_deletes_per_run = self
            .max_deletes_per_run
            .map(|n| count("max_deletes_per_run", n))
            .transpose()?;
        let tags = serde_json::from_str(&self.tags)
            .map_err(|e| corrupt(format!("tags '{}': {e}", self.tags)))?;
        let hooks = serde_json::from_str(&self.hooks)
            .map_err(|e| corrupt(format!("hooks '{}': {e}", self.hooks)))?;
        let copy_regions = serde_json::from_str(&self.copy_regions)
            .map_err(|e| corrupt(format!("copy_regions '{}': {e}", self.copy_regions)))?;
        let source = Source::parse(&self.source)
            .ok_or_else(|| corrupt(format!("source '{}'", self.source)))?;
        Ok(Definition {
            id: self.id,
            spec: DefinitionSpec {
                identity,
                target,
                schedule,
                timezone,
                retention,
                keep,
                active: self.active,
                desc: self.desc,
                fsfreeze: self.fsfreeze,
                max_age: secs(self.max_age_secs),
                catch_up_deadline: secs(self.catch_up_deadline_secs),
                tags,
                max_deletes_per_run,
                hooks,
                copy_regions,
            },
            source,
            source_path: self.source_path,
            created_at: parse_ts(&self.created_at)?,
            updated_at: parse_ts(&self.updated_at)?,
        })
    }
}

/// What reconciling the config file changed.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reconciled {
    pub added: Vec<Identity>,
    pub updated: Vec<Identity>,
    pub removed: Vec<Identity>,
    pub unchanged: usize,
}

/// Optional narrowing of a definition name by provider, target and disk.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub provider: Option<String>,
    pub target: Option<String>,
    pub disk_id: Option<u32>,
}

impl Filter {
    pub fn matches(&self, id: &Identity) -> bool {
        self.provider.as_ref().is_none_or(|p| *p == id.provider)
            && self.target.as_ref().is_none_or(|t| *t == id.target)
            && self.disk_id.is_none_or(|d| d == id.disk_id)
    }
}

impl Store {
    /// Every definition, ordered by name then identity.
    pub async fn list_definitions(&self) -> StoreResult<Vec<Definition>> {
        let mut defs = Vec::new();
        self.for_each_definition(|def| defs.push(def)).await?;
        Ok(defs)
    }

    /// Hand every definition to `f` as it is read, in the order of
    /// [`Store::list_definitions`], without holding them all: at 100,000
    /// rows a transient copy of every row costs several times what the
    /// caller keeps, and the allocator keeps that peak long after it is
    /// freed.
    pub async fn for_each_definition(
        &self,
        mut f: impl FnMut(Definition) + Send,
    ) -> StoreResult<()> {
        self.pool
            .acquire()
            .await?
            .conn()
            .for_each(
                "SELECT * FROM definitions ORDER BY name, provider, target, disk_id",
                &Args::new(),
                |row: DefinitionRow| {
                    f(row.into_definition()?);
                    Ok(())
                },
            )
            .await
    }

    /// Definitions named `name`, narrowed by the optional filters.
    pub async fn find_definitions(
        &self,
        name: &str,
        filter: &Filter,
    ) -> StoreResult<Vec<Definition>> {
        // Look the name up by index rather than reading every definition.
        let rows: Vec<DefinitionRow> = self
            .pool
            .fetch_all(
                "SELECT * FROM definitions WHERE name = $1 ORDER BY provider, target, disk_id",
                &Args::new().text(name),
            )
            .await?;
        let mut defs = Vec::with_capacity(rows.len());
        for row in rows {
            let d = row.into_definition()?;
            if filter.matches(&d.spec.identity) {
                defs.push(d);
            }
        }
        Ok(defs)
    }

    /// Look one definition up by identity.
    pub async fn get_definition(&self, id: &Identity) -> StoreResult<Option<Definition>> {
        definition_by_identity(&mut self.pool.acquire().await?.conn(), id).await
    }

    /// Insert a new definition; a duplicate identity is refused.
    pub async fn insert_definition(
        &self,
        spec: &DefinitionSpec,
        source: Source,
        source_path: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<Definition> {
        let mut tx = self.pool.begin_write().await?;
        insert_in(&mut tx.conn(), spec, source, source_path, now).await?;
        let def = definition_by_identity(&mut tx.conn(), &spec.identity)
            .await?
            .ok_or_else(|| StoreError::Corrupt("inserted definition vanished".into()))?;
        tx.commit().await?;
        Ok(def)
    }

    /// Insert several new definitions in one transaction: either every row
    /// that could be written is, or (on an error) none is. An identity that
    /// already exists is not an error: its entry in the result is `false`
    /// and the existing row stays as it was.
    pub async fn insert_new_definitions(
        &self,
        specs: &[DefinitionSpec],
        source: Source,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<bool>> {
        let mut tx = self.pool.begin_write().await?;
        let mut inserted = Vec::with_capacity(specs.len());
        for spec in specs {
            // A duplicate is skipped by the statement itself (ON CONFLICT),
            // not by a failed statement, which would abort the whole
            // transaction on PostgreSQL.
            match insert_in(&mut tx.conn(), spec, source, None, now).await {
                Ok(()) => inserted.push(true),
                Err(StoreError::Duplicate(_)) => inserted.push(false),
                Err(e) => return Err(e),
            }
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Replace the mutable fields of an existing definition.
    pub async fn update_definition(
        &self,
        spec: &DefinitionSpec,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin_write().await?;
        let updated = update_in(&mut tx.conn(), spec, None, now).await?;
        tx.commit().await?;
        Ok(updated)
    }

    /// Delete a definition; its runs and snapshot records stay.
    pub async fn delete_definition(&self, id: &Identity) -> StoreResult<bool> {
        let deleted = self
            .pool
            .execute(
                &format!("DELETE FROM definitions WHERE {DEF_OF_IDENTITY}"),
                &Args::new().identity(id),
            )
            .await?;
        Ok(deleted > 0)
    }

    /// Make the config-sourced definitions equal `specs`, in one transaction:
    /// insert new ones, update changed ones, delete those gone from the file.
    /// A CLI definition with the same identity as a config one is taken over
    /// by the file.
    pub async fn reconcile_config(
        &self,
        specs: &[DefinitionSpec],
        source_path: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Reconciled> {
        // A write transaction from the start: on SQLite a read transaction
        // that later writes fails at once ("database is locked", without
        // waiting) when another process committed in between.
        let mut tx = self.pool.begin_write().await?;
        let report = reconcile_in(&mut tx, specs, source_path, now).await?;
        tx.commit().await?;
        Ok(report)
    }
}

/// [`Store::reconcile_config`] inside the caller's (write) transaction.
pub(crate) async fn reconcile_in(
    tx: &mut Tx,
    specs: &[DefinitionSpec],
    source_path: &str,
    now: DateTime<Utc>,
) -> StoreResult<Reconciled> {
    // Only the file's own rows are read in full; a CLI row the file
    // takes over is found by its identity (indexed), so a large store of
    // CLI definitions costs nothing here.
    let existing = tx
        .conn()
        .fetch_all::<DefinitionRow>(
            "SELECT * FROM definitions WHERE source = 'config'",
            &Args::new(),
        )
        .await?
        .into_iter()
        .map(DefinitionRow::into_definition)
        .collect::<StoreResult<Vec<_>>>()?;
    let by_identity: HashMap<&Identity, &Definition> =
        existing.iter().map(|d| (&d.spec.identity, d)).collect();
    let wanted: HashSet<&Identity> = specs.iter().map(|s| &s.identity).collect();
    let mut report = Reconciled::default();
    for spec in specs {
        let fetched;
        let found = match by_identity.get(&spec.identity) {
            Some(d) => Some(*d),
            None => {
                fetched = definition_by_identity(&mut tx.conn(), &spec.identity).await?;
                fetched.as_ref()
            }
        };
        match found {
            None => {
                insert_in(&mut tx.conn(), spec, Source::Config, Some(source_path), now).await?;
                report.added.push(spec.identity.clone());
            }
            Some(d) => {
                let same = d.spec == *spec
                    && d.source == Source::Config
                    && d.source_path.as_deref() == Some(source_path);
                if same {
                    report.unchanged += 1;
                } else {
                    update_in(&mut tx.conn(), spec, Some(source_path), now).await?;
                    report.updated.push(spec.identity.clone());
                }
            }
        }
    }
    for d in &existing {
        if !wanted.contains(&d.spec.identity) {
            tx.conn()
                .execute(
                    "DELETE FROM definitions WHERE id = $1",
                    &Args::new().int(d.id),
                )
                .await?;
            report.removed.push(d.spec.identity.clone());
        }
    }
    Ok(report)
}

/// One definition by identity, on a pooled connection or in a transaction.
async fn definition_by_identity(
    conn: &mut Conn<'_>,
    id: &Identity,
) -> StoreResult<Option<Definition>> {
    conn.fetch_optional::<DefinitionRow>(
        &format!("SELECT * FROM definitions WHERE {DEF_OF_IDENTITY}"),
        &Args::new().identity(id),
    )
    .await?
    .map(DefinitionRow::into_definition)
    .transpose()
}

/// The columns of a definition's spec after its identity, in the order
/// [`spec_args`] binds them.
const SPEC_COLUMNS: [&str; 9] = [
    "schedule",
    "timezone",
    "retention",
    "active",
    "\"desc\"",
    "fsfreeze",
    "max_age_secs",
    "catch_up_deadline_secs",
    "tags",
];

/// Bind the spec's fields after its identity, as [`SPEC_COLUMNS`] names them.
fn spec_args<'a>(args: Args<'a>, spec: &'a DefinitionSpec) -> Args<'a> {
    args.text(spec.schedule.source())
        .text(spec.timezone.map(|z| z.name()))
        .int(spec.retention)
        .bool(spec.active)
        .text(&spec.desc)
        .bool(spec.fsfreeze)
        .int(spec.max_age.map(|d| d.as_secs() as i64))
        .int(spec.catch_up_deadline.map(|d| d.as_secs() as i64))
        .text(serde_json::to_string(&spec.tags).unwrap_or_else(|_| "[]".into()))
}

/// The keep-tier, blast-radius, hook and copy columns, bound after everything
/// else (so that the other placeholders keep their numbers), in the order
/// [`keep_args`] binds them.
const KEEP_COLUMNS: [&str; 9] = [
    "keep_hourly",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
    "keep_within_secs",
    "max_deletes_per_run",
    "hooks",
    "copy_regions",
];

/// Bind the spec's keep tiers, as [`KEEP_COLUMNS`] names them.
fn keep_args<'a>(args: Args<'a>, spec: &'a DefinitionSpec) -> Args<'a> {
    let k = &spec.keep;
    args.int(k.hourly)
        .int(k.daily)
        .int(k.weekly)
        .int(k.monthly)
        .int(k.yearly)
        .int(k.within.map(|d| d.as_secs() as i64))
        .int(spec.max_deletes_per_run)
        .text(serde_json::to_string(&spec.hooks).unwrap_or_else(|_| "{}".into()))
        .text(serde_json::to_string(&spec.copy_regions).unwrap_or_else(|_| "[]".into()))
}

/// `$first, $first+1, ...` for the keep-tier columns.
fn keep_placeholders(first: usize) -> String {
    (first..first + KEEP_COLUMNS.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Insert a definition; an existing identity is [`StoreError::Duplicate`]
/// and leaves the row (and the transaction) as they were.
async fn insert_in(
    conn: &mut Conn<'_>,
    spec: &DefinitionSpec,
    source: Source,
    source_path: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    // $1–$4 identity, $5–$13 spec, then source, path and time, then $17–$25
    // keep tiers, max_deletes_per_run, hooks and copy_regions.
    let sql = format!(
        "INSERT INTO definitions (provider, target, disk_id, name, {}, source, source_path,
             created_at, updated_at, {})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16, {})
         ON CONFLICT (provider, target, disk_id, name) DO NOTHING",
        SPEC_COLUMNS.join(", "),
        KEEP_COLUMNS.join(", "),
        keep_placeholders(17)
    );
    let args = spec_args(Args::new().identity(&spec.identity), spec)
        .text(source.as_str())
        .text(source_path)
        .text(ts_ms(now));
    let args = keep_args(args, spec);
    match conn.execute(&sql, &args).await? {
        0 => Err(StoreError::Duplicate(spec.identity.clone())),
        _ => Ok(()),
    }
}

/// Update a definition's spec; with `config_path`, the config file takes it
/// over. Returns whether the identity was found.
async fn update_in(
    conn: &mut Conn<'_>,
    spec: &DefinitionSpec,
    config_path: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    // $1–$4 identity, $5–$13 spec, $14 config path, $15 time, $16–$24 keep
    // tiers, max_deletes_per_run, hooks and copy_regions.
    let sets: Vec<String> = SPEC_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, col)| format!("{col} = ${}", i + 5))
        .chain(
            KEEP_COLUMNS
                .iter()
                .enumerate()
                .map(|(i, col)| format!("{col} = ${}", i + 16)),
        )
        .collect();
    let sql = format!(
        "UPDATE definitions SET {},
             source = CASE WHEN $14 IS NULL THEN source ELSE 'config' END,
             source_path = COALESCE($14, source_path), updated_at = $15
         WHERE {DEF_OF_IDENTITY}",
        sets.join(", ")
    );
    let args = spec_args(Args::new().identity(&spec.identity), spec)
        .text(config_path)
        .text(ts_ms(now));
    let args = keep_args(args, spec);
    Ok(conn.execute(&sql, &args).await? > 0)
}
