//! The fake provider APIs (`snapsched-fake-api`) set up the way several
//! tests need them.

use std::sync::Arc;
use std::time::Duration;

use snapsched::clock::ManualClock;
use snapsched::provider::digitalocean::{DigitalOcean, DigitalOceanSettings};
use snapsched::provider::ratelimit::RateLimiter;
use snapsched::secret::Secret;
use snapsched_fake_api::digitalocean::{FakeConfig, FakeDigitalOcean, FakeHandle};

use super::fixtures::config_with_do_api;
use super::TestEnv;

/// The environment variable and value of the token the fake DigitalOcean
/// accepts by default; `do`'s `token_env` in the base configuration.
pub const DO_TOKEN: (&str, &str) = ("SNAPSCHED_TEST_DO_TOKEN", "fake-do-token");

/// The token the provider-level tests give the fake DigitalOcean API.
pub const TOKEN: &str = "dop_v1_test_token_0123456789";

/// Settings of a DigitalOcean provider that talks to `fake` with [`TOKEN`].
pub fn do_settings(fake: &FakeHandle) -> DigitalOceanSettings {
    let mut s = DigitalOceanSettings::new("do-test", Secret::new(TOKEN));
    s.api_url = fake.url().parse().expect("fake URL parses");
    s.connect_timeout = Duration::from_secs(2);
    s.request_timeout = Duration::from_secs(10);
    s
}

/// A DigitalOcean provider with its own limiter on `clock`, so tests never
/// share a budget and can move the limiter's time along with the fake's.
pub fn do_provider_with(settings: DigitalOceanSettings, clock: Arc<ManualClock>) -> DigitalOcean {
    let limiter = Arc::new(RateLimiter::with_clock(settings.limits, clock));
    DigitalOcean::with_limiter(settings, limiter).expect("provider builds")
}

/// [`do_provider_with`] the default settings for `fake`, on a clock of
/// its own.
pub fn do_provider(fake: &FakeHandle) -> DigitalOcean {
    do_provider_with(do_settings(fake), Arc::new(ManualClock::new()))
}

/// Fail unless neither the client nor the fake broke the OpenAPI contract.
pub fn assert_contract(fake: &FakeHandle) {
    let v = fake.contract_violations();
    assert!(v.is_empty(), "contract violations: {v:#?}");
}

/// A DigitalOcean volume id.
pub const VOLUME: &str = "7724db7c-e098-11e5-b522-000f53304e51";

/// `def add web` on `provider`'s `target` from the CLI: `0 3 * * *`,
/// retention 2.
pub fn add_web(env: &TestEnv, provider: &str, target: &str) {
    env.ok(&[
        "def",
        "add",
        "web",
        "--provider",
        provider,
        "--target",
        target,
        "--schedule",
        "0 3 * * *",
        "--retention",
        "2",
    ]);
}

/// The fake DigitalOcean API with one volume, and an environment whose `web`
/// definition snapshots it (retention 2).
pub async fn volume_web() -> (FakeHandle, TestEnv) {
    let fake = FakeDigitalOcean::start(FakeConfig::default())
        .await
        .expect("fake DigitalOcean");
    fake.add_volume(VOLUME.parse().expect("uuid"), "data");
    let env = TestEnv::new(&config_with_do_api(fake.url()));
    add_web(&env, "do", &format!("volume:{VOLUME}"));
    (fake, env)
}
