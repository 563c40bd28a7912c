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
    /// Serve a fake Erigones / Danube Cloud API (VM disk snapshots).
    Erigones(erigones_cmd::Args),
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
        Api::Erigones(args) => erigones_cmd::run(args).await,
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

mod erigones_cmd {
    use std::time::Duration;

    use anyhow::Context;
    use snapsched_fake_api::erigones::{self, FakeErigones, FakeErigonesConfig};

    #[derive(Debug, clap::Args)]
    pub struct Args {
        /// Address to listen on (loopback only is advised).
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: std::net::SocketAddr,
        /// The `ES-API-KEY` clients must send.
        #[arg(long, default_value = "fake-erigones-key")]
        api_key: String,
        /// VMs as `HOSTNAME:DISKS`, repeatable.
        #[arg(long = "vm", default_value = "web01.example.com:2")]
        vms: Vec<String>,
        /// Seconds a snapshot task stays pending.
        #[arg(long, default_value_t = 5)]
        task_seconds: u64,
        /// Seconds a delete task stays pending.
        #[arg(long, default_value_t = 1)]
        delete_task_seconds: u64,
    }

    pub async fn run(args: Args) -> anyhow::Result<()> {
        let state = FakeErigones::new(FakeErigonesConfig {
            api_key: args.api_key,
            snapshot_task_duration: Duration::from_secs(args.task_seconds),
            delete_task_duration: Duration::from_secs(args.delete_task_seconds),
            start_time: chrono::Utc::now(),
            real_clock: true,
            synchronous_create: false,
        });
        for vm in &args.vms {
            let (host, disks) = vm
                .rsplit_once(':')
                .with_context(|| format!("--vm {vm}: expected HOSTNAME:DISKS"))?;
            let disks: u32 = disks
                .parse()
                .with_context(|| format!("--vm {vm}: disk count {disks:?} is not a number"))?;
            state.add_vm(host, disks);
        }
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let handle = erigones::serve(listener, state).await?;
        println!("fake Erigones API at {}", handle.base_url);
        tokio::signal::ctrl_c().await?;
        Ok(())
    }
}
