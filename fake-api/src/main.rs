//! `snapsched-fake-api digitalocean|erigones`: run a fake API standalone.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "snapsched-fake-api", about = "Fake cloud APIs on loopback")]
struct Cli {
    #[command(subcommand)]
    api: Api,
}

#[derive(Subcommand)]
enum Api {
    /// Fake Erigones / Danube Cloud API.
    Erigones(erigones_cmd::Args),
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
        Api::Erigones(args) => erigones_cmd::run(args).await,
    }
}

mod erigones_cmd {
    use std::time::Duration;

    use anyhow::Context;
    use snapsched_fake_api::erigones::{self, FakeErigones, FakeErigonesConfig};

    #[derive(clap::Args)]
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
