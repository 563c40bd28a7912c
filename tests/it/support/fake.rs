//! The fake provider APIs (`snapsched-fake-api`) set up the way several
//! tests need them.

use snapsched_fake_api::digitalocean::{FakeConfig, FakeDigitalOcean, FakeHandle};

use super::fixtures::config_with_do_api;
use super::TestEnv;

/// The environment variable and value of the token the fake DigitalOcean
/// accepts by default; `do`'s `token_env` in the base configuration.
pub const DO_TOKEN: (&str, &str) = ("SNAPSCHED_TEST_DO_TOKEN", "fake-do-token");

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
