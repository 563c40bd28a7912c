//! Building providers from configuration, and static dispatch over kinds.

use std::collections::BTreeMap;

use super::digitalocean::{DigitalOcean, DigitalOceanSettings};
use super::erigones::{Erigones, ErigonesSettings};
use super::fake::FakeProvider;
use super::ratelimit::RateLimits;
use super::{
    CreateOutcome, CreateRequest, Operation, PollOutcome, PollPolicy, Provider, ProviderError,
    ProviderResult,
};
use crate::config::{Config, ProviderConfig};
use crate::domain::{ProviderKind, RemoteSnapshot, Target};

/// Any configured provider.
#[derive(Debug, Clone)]
pub enum AnyProvider {
    DigitalOcean(DigitalOcean),
    Erigones(Erigones),
    Fake(FakeProvider),
}

macro_rules! dispatch {
    ($self:ident, $p:ident => $e:expr) => {
        match $self {
            AnyProvider::DigitalOcean($p) => $e,
            AnyProvider::Erigones($p) => $e,
            AnyProvider::Fake($p) => $e,
        }
    };
}

impl Provider for AnyProvider {
    async fn create_snapshot(&self, req: &CreateRequest) -> ProviderResult<CreateOutcome> {
        dispatch!(self, p => p.create_snapshot(req).await)
    }

    async fn poll(&self, req: &CreateRequest, op: &Operation) -> ProviderResult<PollOutcome> {
        dispatch!(self, p => p.poll(req, op).await)
    }

    async fn list_snapshots(
        &self,
        target: &Target,
        disk_id: u32,
    ) -> ProviderResult<Vec<RemoteSnapshot>> {
        dispatch!(self, p => p.list_snapshots(target, disk_id).await)
    }

    async fn delete_snapshots(
        &self,
        target: &Target,
        disk_id: u32,
        snapshots: &[RemoteSnapshot],
    ) -> Vec<ProviderResult<()>> {
        dispatch!(self, p => p.delete_snapshots(target, disk_id, snapshots).await)
    }

    fn poll_policy(&self) -> PollPolicy {
        dispatch!(self, p => p.poll_policy())
    }
}

/// Build one provider: reads its credential.
pub fn build(cfg: &ProviderConfig) -> Result<AnyProvider, String> {
    match cfg.kind {
        ProviderKind::Fake => Ok(AnyProvider::Fake(
            FakeProvider::new(cfg.fake.latency, cfg.fake.operation_time).with_poll_policy(cfg.poll),
        )),
        ProviderKind::Erigones => {
            let api_key = cfg.credential.load()?;
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
            })
            .map(AnyProvider::Erigones)
            .map_err(|e: ProviderError| e.message)
        }
        ProviderKind::DigitalOcean => {
            let token = cfg.credential.load()?;
            let mut settings = DigitalOceanSettings::new(cfg.name.clone(), token);
            if let Some(url) = &cfg.api_url {
                settings.api_url = url.clone();
            }
            settings.poll = cfg.poll;
            settings.tags = cfg.tags.clone();
            settings.connect_timeout = cfg.connect_timeout;
            settings.request_timeout = cfg.request_timeout;
            settings.limits = RateLimits {
                per_minute: cfg.requests_per_minute,
                per_hour: cfg.requests_per_hour,
            };
            DigitalOcean::new(settings)
                .map(AnyProvider::DigitalOcean)
                .map_err(|e: ProviderError| e.message)
        }
    }
}

/// Build every configured provider; errors name the provider.
pub fn build_all(cfg: &Config) -> Result<BTreeMap<String, AnyProvider>, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, p) in &cfg.providers {
        match build(p) {
            Ok(provider) => {
                out.insert(name.clone(), provider);
            }
            Err(e) => errors.push(format!("providers.{name}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}
