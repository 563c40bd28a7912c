//! Wiring: everything built from a [`Config`] — the providers (one client
//! per `[providers.NAME]`, by kind), the scheduler's and runs' settings, and
//! the store at `[daemon] database`. The daemon and the CLI build these
//! here and nowhere else; the provider layer never sees the configuration.
//!
//! The store is also the providers' shared request budget ([`StoreBudget`]),
//! plugged into each rate limiter here: the provider layer never sees the
//! store either.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, ProviderConfig};
use crate::domain::definition::{self, Definition};
use crate::domain::{ProviderKind, Target};
use crate::provider::digitalocean::{DigitalOcean, DigitalOceanSettings};
use crate::provider::erigones::{Erigones, ErigonesSettings};
use crate::provider::ratelimit::{BudgetFuture, RateLimits, SharedBudget, SharedGrant};
use crate::provider::{AnyProvider, ProviderError};
use crate::run::{HookDefaults, HookLevels, RunOptions};
use crate::scheduler::Settings;
use crate::secret::Credential;
use crate::store::{
    AppliedConfig, ApplyMode, BudgetWindow, ConfigFile, ConfigOutcome, Grant, Location, Store,
    StoreError,
};

/// Every configured provider by name, with its kind (what the scheduler
/// takes).
pub type ProviderMap = HashMap<String, (AnyProvider, ProviderKind)>;

/// Why the configuration could not be wired.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    /// The configuration asks for something that cannot be built as
    /// written (a provider without its secret, an unknown provider, a
    /// backend not in this build): the message names the key and the fix.
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

// ---------------------------------------------------------------- budget

/// The store as the providers' shared request budget: one minute and one
/// hour window per token, counted on the database's clock across every
/// process on the store.
#[derive(Debug, Clone)]
pub struct StoreBudget {
    store: Store,
    minute: Duration,
    hour: Duration,
}

impl StoreBudget {
    /// Windows 5 s longer than the server's minute and hour: a request is
    /// counted when the budget grants it and counted by the server when it
    /// arrives, and the margin absorbs what happens in between (latency, a
    /// stalled process).
    pub fn new(store: Store) -> Self {
        let margin = Duration::from_secs(5);
        StoreBudget::with_windows(
            store,
            Duration::from_secs(60) + margin,
            Duration::from_secs(3600) + margin,
        )
    }

    /// Windows other than a minute and an hour (tests that must not wait a
    /// minute for a window to pass).
    pub fn with_windows(store: Store, minute: Duration, hour: Duration) -> Self {
        StoreBudget {
            store,
            minute,
            hour,
        }
    }
}

impl SharedBudget for StoreBudget {
    fn grant<'a>(&'a self, bucket: &'a str, limits: RateLimits) -> BudgetFuture<'a> {
        Box::pin(async move {
            let windows = [
                BudgetWindow {
                    limit: limits.per_minute,
                    length: self.minute,
                },
                BudgetWindow {
                    limit: limits.per_hour,
                    length: self.hour,
                },
            ];
            // Once more on a fresh connection before giving up: the server
            // ends a grant transaction that a stalled process left open (see
            // `Store::grant_request`), and that process's next grant finds
            // its connection gone.
            let answer = match self.store.grant_request(bucket, &windows).await {
                Err(_) => self.store.grant_request(bucket, &windows).await,
                ok => ok,
            };
            match answer {
                Ok(Grant::Granted) => Ok(SharedGrant::Granted),
                Ok(Grant::RetryIn(d)) => Ok(SharedGrant::RetryIn(d)),
                Err(e) => Err(format!("{}: {e}", self.store.location())),
            }
        })
    }
}

/// The shared budget of `store`, for [`build_providers`] and friends.
pub fn shared_budget(store: &Store) -> Arc<dyn SharedBudget> {
    Arc::new(StoreBudget::new(store.clone()))
}

// ---------------------------------------------------------------- providers

/// Build one provider by its kind; reads its secret. Its requests also
/// count against `budget` (the store's, shared by every process on it)
/// when one is given.
pub fn build_provider(
    cfg: &ProviderConfig,
    budget: Option<&Arc<dyn SharedBudget>>,
) -> Result<AnyProvider, String> {
    match cfg.kind {
        ProviderKind::DigitalOcean => digitalocean(cfg, budget).map(AnyProvider::DigitalOcean),
        ProviderKind::Erigones => erigones(cfg).map(AnyProvider::Erigones),
        ProviderKind::Fake => fake(cfg),
    }
}

fn secret(cfg: &ProviderConfig) -> Result<crate::secret::Secret, String> {
    match &cfg.credential {
        Some(c) => c.load(),
        None => Err("no credential configured".into()),
    }
}

fn digitalocean(
    cfg: &ProviderConfig,
    budget: Option<&Arc<dyn SharedBudget>>,
) -> Result<DigitalOcean, String> {
    let mut settings = DigitalOceanSettings::new(cfg.name.clone(), secret(cfg)?);
    if let Some(url) = &cfg.api_url {
        settings.api_url = url.clone();
    }
    settings.poll = cfg.poll;
    settings.tags = cfg.tags.clone();
    settings.connect_timeout = cfg.connect_timeout;
    settings.request_timeout = cfg.request_timeout;
    settings.max_response_bytes = cfg.max_response_bytes;
    settings.limits = RateLimits {
        per_minute: cfg.requests_per_minute,
        per_hour: cfg.requests_per_hour,
    };
    settings.shared_budget = budget.cloned();
    DigitalOcean::new(settings).map_err(|e: ProviderError| e.message)
}

fn erigones(cfg: &ProviderConfig) -> Result<Erigones, String> {
    let api_key = secret(cfg)?;
    let api_url = cfg
        .api_url
        .clone()
        .ok_or_else(|| format!("providers.{}.api_url is required", cfg.name))?;
    Erigones::new(ErigonesSettings {
        provider_name: cfg.name.clone(),
        api_url,
        api_key,
        poll: cfg.poll,
        connect_timeout: cfg.connect_timeout,
        request_timeout: cfg.request_timeout,
        max_response_bytes: cfg.max_response_bytes,
    })
    .map_err(|e: ProviderError| e.message)
}

#[cfg(feature = "fake-provider")]
fn fake(cfg: &ProviderConfig) -> Result<AnyProvider, String> {
    use crate::provider::fake::FakeProvider;
    let fake = FakeProvider::new(
        cfg.settings.get("latency"),
        cfg.settings.get("operation_time"),
    );
    Ok(AnyProvider::Fake(fake.with_poll_policy(cfg.poll)))
}

#[cfg(not(feature = "fake-provider"))]
fn fake(_: &ProviderConfig) -> Result<AnyProvider, String> {
    // The loader refuses kind "fake" in such a build; this is for a
    // hand-made `ProviderConfig`.
    Err("the fake provider is not in this build (cargo feature fake-provider)".into())
}

/// Build every configured provider, their requests counted against the
/// shared budget in `store`; errors name the provider.
pub fn build_providers(cfg: &Config, store: &Store) -> Result<ProviderMap, WiringError> {
    let budget = shared_budget(store);
    let mut out = HashMap::new();
    let mut errors = Vec::new();
    for (name, p) in &cfg.providers {
        match build_provider(p, Some(&budget)) {
            Ok(provider) => {
                out.insert(name.clone(), (provider, p.kind));
            }
            Err(e) => errors.push(format!("providers.{name}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(WiringError::Config(errors.join("\n")))
    }
}

/// The provider and parsed target of a stored definition, its requests
/// counted against the shared budget in `store`.
pub fn provider_for(
    cfg: &Config,
    def: &Definition,
    store: &Store,
) -> Result<(AnyProvider, Target), WiringError> {
    let id = &def.spec.identity;
    let pcfg = cfg.provider(&id.provider).ok_or_else(|| {
        WiringError::Config(format!(
            "definition {id} uses provider '{}', which is not configured in {}",
            id.provider,
            cfg.path.display()
        ))
    })?;
    // A tag target's member (narrowed by `for_member`) acts on its droplet.
    let target = match &def.spec.target {
        member @ Target::Member { .. } => member.resource(),
        _ => definition::parse_target(&id.target, pcfg.kind)
            .map_err(|e| WiringError::Config(format!("definition {id}: {e}")))?,
    };
    let provider = build_provider(pcfg, Some(&shared_budget(store)))
        .map_err(|e| WiringError::Config(format!("providers.{}: {e}", id.provider)))?;
    Ok((provider, target))
}

// ---------------------------------------------------------------- settings

/// The scheduler's settings from `[daemon]`.
pub fn settings(cfg: &Config) -> Settings {
    Settings {
        max_concurrent_runs: cfg.daemon.max_concurrent_runs,
        catch_up_deadline: cfg.daemon.catch_up_deadline,
        default_tz: cfg.daemon.timezone,
        run: run_options(cfg),
        lease_ttl: cfg.daemon.lease_ttl,
        // A preferred node that is alive claims within a loop turn; the
        // others wait this long, bounded by the lease so that a dead
        // preferred node delays a slot by little.
        claim_grace: (cfg.daemon.lease_ttl / 10).clamp(
            std::time::Duration::from_millis(500),
            std::time::Duration::from_secs(3),
        ),
        ..Settings::default()
    }
}

/// How one run behaves, from `[daemon]` (the daemon's and `snapsched run`'s).
pub fn run_options(cfg: &Config) -> RunOptions {
    RunOptions {
        run_timeout: cfg.daemon.run_timeout,
        history_keep: cfg.daemon.history_keep,
        default_zone: cfg.daemon.timezone,
        max_deletes_per_run: cfg.daemon.max_deletes_per_run,
        hooks: HookDefaults::new(hook_levels(cfg)),
        shutdown_grace: cfg.daemon.shutdown_grace,
        ..RunOptions::default()
    }
}

/// The hook settings definitions fall back to: their provider's, then the
/// daemon's.
pub fn hook_levels(cfg: &Config) -> HookLevels {
    HookLevels {
        daemon: cfg.daemon.hooks.clone(),
        providers: cfg
            .providers
            .iter()
            .filter(|(_, p)| !p.hooks.is_empty())
            .map(|(name, p)| (name.clone(), p.hooks.clone()))
            .collect(),
    }
}

/// How long a node's heartbeat holds before other nodes may take its runs
/// over (`[daemon] lease_ttl`); `nodes` and the node gauges call an older
/// heartbeat stale.
pub fn lease_ttl(cfg: &Config) -> std::time::Duration {
    cfg.daemon.lease_ttl
}

// ---------------------------------------------------------------- store

/// The store's location with its password applied: from
/// `database_password_file` or the systemd credential `database` when one
/// is configured (else the driver's own `$PGPASSWORD` / `~/.pgpass`).
pub fn store_location(cfg: &Config) -> Result<Location, WiringError> {
    match (&cfg.daemon.database, &cfg.daemon.database_password) {
        (Location::Postgres(options), Some(credential)) => {
            let password = credential.load().map_err(|e| {
                WiringError::Config(match credential {
                    Credential::File(_) => format!("daemon.database_password_file: {e}"),
                    _ => format!(
                        "daemon.database: the password for {}: {e}",
                        cfg.daemon.database
                    ),
                })
            })?;
            let options = options.as_ref().clone().password(password.expose());
            Ok(Location::Postgres(Box::new(options)))
        }
        (location, _) => Ok(location.clone()),
    }
}

/// Whether the store already exists (a SQLite file that is there; a
/// server is assumed to be), for commands that must not create one.
pub fn store_exists(cfg: &Config) -> bool {
    match &cfg.daemon.database {
        Location::Sqlite(path) => path.exists(),
        Location::Postgres(_) => true,
    }
}

/// Open the existing store at `[daemon] database` for reading only: it is
/// never created, locked or migrated (see [`Store::connect_read_only`]).
pub async fn open_store_read_only(cfg: &Config) -> Result<Store, WiringError> {
    Ok(Store::connect_read_only(&store_location(cfg)?).await?)
}

/// Open (and migrate) the store at `[daemon] database`.
pub async fn open_store(cfg: &Config) -> Result<Store, WiringError> {
    let store = Store::connect(&store_location(cfg)?).await?;
    // Every process that finishes runs (the daemon, `snapsched run`,
    // `snapsched prune`) queues the events a configured webhook gets.
    store.set_notify_queue(
        cfg.notify
            .webhook_url
            .as_ref()
            .map(|_| cfg.notify.queue_limit),
    );
    Ok(store)
}

// ---------------------------------------------------------------- notify

/// The webhook delivery task's settings from `[notify]` (reading the
/// headers file), or `None` when no webhook is configured.
pub fn notify_settings(cfg: &Config) -> Result<Option<crate::notify::Settings>, WiringError> {
    let n = &cfg.notify;
    let Some(url) = &n.webhook_url else {
        return Ok(None);
    };
    let headers = match &n.webhook_headers {
        Some(source) => crate::secret::webhook::load_headers(source)
            .map_err(|e| WiringError::Config(format!("notify.webhook_headers_file: {e}")))?,
        None => Vec::new(),
    };
    Ok(Some(crate::notify::Settings {
        url: url.clone(),
        headers,
        timeout: n.timeout,
        retry_initial: n.retry_initial,
        retry_max: n.retry_max,
        idle_poll: crate::notify::IDLE_POLL,
        lease_ttl: cfg.daemon.lease_ttl,
    }))
}

// ---------------------------------------------------------------- config file

/// The config file's modification time: it orders versions of the file
/// across nodes (see [`crate::store::config_state`]).
fn config_mtime(cfg: &Config) -> Result<chrono::DateTime<chrono::Utc>, WiringError> {
    std::fs::metadata(&cfg.path)
        .and_then(|m| m.modified())
        .map(chrono::DateTime::from)
        .map_err(|e| {
            WiringError::Config(format!(
                "cannot read the modification time of {}: {e}; check that the file exists and is readable",
                cfg.path.display()
            ))
        })
}

/// Offer the configuration's definitions to the store: applied by the rule
/// of [`crate::store::config_state`], or reported as drift.
pub async fn apply_config(
    cfg: &Config,
    store: &Store,
    mode: ApplyMode,
) -> Result<ConfigOutcome, WiringError> {
    let path = cfg.path.to_string_lossy();
    let hostname = crate::cluster::membership::hostname();
    let file = ConfigFile {
        specs: &cfg.definitions,
        path: &path,
        mtime: config_mtime(cfg)?,
        hostname: &hostname,
    };
    Ok(store
        .apply_config_file(file, mode, chrono::Utc::now())
        .await?)
}

/// The applied version when the configuration's definitions differ from it
/// (drift); `None` when they match or nothing was applied yet.
pub async fn config_drift(
    cfg: &Config,
    store: &Store,
) -> Result<Option<AppliedConfig>, WiringError> {
    let digest = crate::store::config_state::digest(&cfg.definitions);
    Ok(store.applied_config().await?.filter(|a| a.digest != digest))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;
    use crate::config::Overrides;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn load(dir: &Path, text: &str) -> Config {
        let path = write(dir, "config.toml", text, 0o600);
        crate::config::load(&path, &Overrides::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The password the options carry (they have no getter; their `Debug`
    /// shows it, which is why `Location` has its own).
    fn carries_password(location: &Location, password: &str) -> bool {
        match location {
            Location::Postgres(options) => format!("{options:?}").contains(password),
            Location::Sqlite(_) => false,
        }
    }

    #[test]
    fn the_database_password_file_is_applied_to_the_location() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "db.password", "hunter2\n", 0o600);
        let cfg = load(
            dir.path(),
            "[daemon]\ndatabase = \"postgres://snapsched@db.example.com/backups\"\n\
             database_password_file = \"db.password\"\n",
        );
        let location = store_location(&cfg).unwrap();
        assert!(carries_password(&location, "hunter2"));
        assert!(!location.to_string().contains("hunter2"), "{location}");
        assert!(!format!("{location:?}").contains("hunter2"), "{location:?}");
    }

    #[test]
    fn an_unreadable_database_password_is_an_error_naming_the_key_without_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "db.password", "hunter2\n", 0o644);
        let cfg = load(
            dir.path(),
            "[daemon]\ndatabase = \"postgres://snapsched@db.example.com/backups\"\n\
             database_password_file = \"db.password\"\n",
        );
        let e = store_location(&cfg).unwrap_err().to_string();
        assert!(
            e.contains("daemon.database") && e.contains("chmod 600"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[tokio::test]
    async fn an_unreachable_postgres_store_is_named_in_the_error_and_sqlite_opens() {
        let dir = tempfile::tempdir().unwrap();
        // Port 1 on loopback: refused at once, and no traffic leaves the host.
        let cfg = load(
            dir.path(),
            "[daemon]\ndatabase = \"postgres://snapsched@127.0.0.1:1/backups\"\n",
        );
        assert!(store_exists(&cfg));
        let e = match open_store(&cfg).await {
            Ok(_) => panic!("an unreachable postgres location opened"),
            Err(e) => e.to_string(),
        };
        assert!(
            e.contains("postgres://snapsched@127.0.0.1:1/backups"),
            "{e}"
        );

        let cfg = load(dir.path(), "[daemon]\ndatabase = \"s.db\"\n");
        assert!(!store_exists(&cfg));
        let store = open_store(&cfg).await.unwrap();
        store.close().await;
        assert!(store_exists(&cfg));
    }

    #[test]
    fn settings_come_from_the_daemon_section() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = load(
            dir.path(),
            "[daemon]\nmax_concurrent_runs = 3\nrun_timeout = \"1h\"\nhistory_keep = 7\n\
             timezone = \"Europe/Bratislava\"\n",
        );
        let s = settings(&cfg);
        assert_eq!(s.max_concurrent_runs, 3);
        assert_eq!(s.default_tz, chrono_tz::Europe::Bratislava);
        assert_eq!(s.run.run_timeout, std::time::Duration::from_secs(3600));
        assert_eq!(s.run.history_keep, 7);
    }

    #[tokio::test]
    async fn providers_build_by_kind_and_a_missing_secret_names_the_provider() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "do.token", "dop_v1_x\n", 0o600);
        let cfg = load(
            dir.path(),
            "[providers.do]\nkind = \"digitalocean\"\ntoken_file = \"do.token\"\n\
             [providers.dc1]\nkind = \"erigones\"\napi_url = \"https://e.example/api\"\n\
             api_key_env = \"SNAPSCHED_WIRING_TEST_UNSET\"\n",
        );
        assert!(matches!(
            build_provider(&cfg.providers["do"], None),
            Ok(AnyProvider::DigitalOcean(_))
        ));
        let store = Store::open(&dir.path().join("s.db")).await.unwrap();
        let e = build_providers(&cfg, &store).unwrap_err().to_string();
        assert!(e.contains("providers.dc1:"), "{e}");
        assert!(e.contains("SNAPSCHED_WIRING_TEST_UNSET"), "{e}");
    }
}
