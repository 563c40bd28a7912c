//! Static dispatch over the provider kinds. Building one from the
//! configuration is the wiring module's job (`crate::wiring`).

use super::digitalocean::DigitalOcean;
use super::erigones::Erigones;
#[cfg(feature = "fake-provider")]
use super::fake::FakeProvider;
use super::{
    CopyPoll, CopyRequest, CopyStart, CreateOutcome, CreateRequest, HoldMark, Operation,
    PointInTime, PollOutcome, PollPolicy, Provider, ProviderResult,
};
use crate::domain::{RemoteSnapshot, Target};

/// Any configured provider.
#[derive(Debug, Clone)]
pub enum AnyProvider {
    DigitalOcean(DigitalOcean),
    Erigones(Erigones),
    /// The in-memory fake (cargo feature `fake-provider`: tests and the bench).
    #[cfg(feature = "fake-provider")]
    Fake(FakeProvider),
}

macro_rules! dispatch {
    ($self:ident, $p:ident => $e:expr) => {
        match $self {
            AnyProvider::DigitalOcean($p) => $e,
            AnyProvider::Erigones($p) => $e,
            #[cfg(feature = "fake-provider")]
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

    async fn mark_held(
        &self,
        target: &Target,
        disk_id: u32,
        snapshot_id: &str,
        held: bool,
    ) -> ProviderResult<HoldMark> {
        dispatch!(self, p => p.mark_held(target, disk_id, snapshot_id, held).await)
    }

    async fn tag_members(&self, tag: &str) -> ProviderResult<Vec<u64>> {
        dispatch!(self, p => p.tag_members(tag).await)
    }

    async fn snapshot_tag(&self, tag: &str, name: &str) -> ProviderResult<Vec<(u64, Operation)>> {
        dispatch!(self, p => p.snapshot_tag(tag, name).await)
    }

    fn fresh_listing(
        &self,
        target: &Target,
        disk_id: u32,
        made_id: &str,
    ) -> Option<Vec<RemoteSnapshot>> {
        dispatch!(self, p => p.fresh_listing(target, disk_id, made_id))
    }

    async fn start_copy(&self, req: &CopyRequest) -> ProviderResult<CopyStart> {
        dispatch!(self, p => p.start_copy(req).await)
    }

    async fn poll_copy(&self, req: &CopyRequest, op: &Operation) -> ProviderResult<CopyPoll> {
        dispatch!(self, p => p.poll_copy(req, op).await)
    }

    async fn snapshot_regions(
        &self,
        target: &Target,
        snapshot_id: &str,
    ) -> ProviderResult<Vec<String>> {
        dispatch!(self, p => p.snapshot_regions(target, snapshot_id).await)
    }

    fn poll_policy(&self) -> PollPolicy {
        dispatch!(self, p => p.poll_policy())
    }

    fn point_in_time(&self, target: &Target) -> PointInTime {
        dispatch!(self, p => p.point_in_time(target))
    }
}
