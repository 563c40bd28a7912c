//! `snapsched-fake-api digitalocean|erigones`: run a fake API standalone,
//! on loopback, for the README's no-account demo.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use snapsched_fake_api::digitalocean::{FakeConfig, FakeDigitalOcean};
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(name = "snapsched-fake-api", version, about)]
struct Cli {
    #[command(subcommand)]
    api: Api,
}

#[derive(Debug, Subcommand)]
enum Api {
    /// Serve a fake DigitalOcean API v2 (droplet and volume snapshots).
    Digitalocean(DigitalOceanArgs),
}

#[derive(Debug, Args)]
struct DigitalOceanArgs {
    /// Loopback address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The bearer token the fake accepts.
    #[arg(long, default_value = "fake-do-token")]
    token: String,
    /// A droplet id that exists (repeatable).
    #[arg(long = "droplet")]
    droplets: Vec<u64>,
    /// A volume UUID that exists (repeatable).
    #[arg(long = "volume")]
    volumes: Vec<Uuid>,
    /// How long a droplet snapshot action stays in progress.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    action_duration: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().api {
        Api::Digitalocean(args) => digitalocean(args).await,
    }
}

async fn digitalocean(args: DigitalOceanArgs) -> anyhow::Result<()> {
    let config = FakeConfig {
        token: args.token,
        action_duration: args.action_duration,
        real_time: true,
        ..FakeConfig::default()
    };
    let fake = FakeDigitalOcean::start_on(config, args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    for id in args.droplets {
        fake.add_droplet(id, &format!("droplet-{id}"));
    }
    for id in args.volumes {
        fake.add_volume(id, &format!("volume-{}", &id.to_string()[..8]));
    }
    println!("{}", fake.url());
    fake.serve_forever().await;
    Ok(())
}
