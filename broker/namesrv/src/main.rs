//! `mqnamesrv`: RaftMQ's NameServer process, started as RocketMQ's is
//! (`mqnamesrv [-c namesrv.conf] [-p]`).
//!
//! It loads the config, then either prints the effective config (`-p`) or runs
//! [`NameServer::start`] until SIGINT or SIGTERM. Everything else is in the library. A config
//! that cannot be loaded exits 1 with the error, which names the file, key and line.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use raftmq_namesrv::{NameServer, NamesrvConfig};
use tracing_subscriber::EnvFilter;

/// RaftMQ NameServer: broker registry and topic routes for RocketMQ 4.x clients.
#[derive(Debug, Parser)]
#[command(name = "mqnamesrv", version)]
struct Args {
    /// The namesrv.conf to load (RocketMQ's `-c`). Without it every key has its default.
    #[arg(short = 'c', long = "configFile", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Print the effective config as sorted key=value lines and exit (RocketMQ's `-p`).
    #[arg(short = 'p', long = "printConfigItem")]
    print_config_item: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Logs go to stderr so that `-p` output and the boot line on stdout stay clean.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mqnamesrv: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => NamesrvConfig::from_file(path)
            .with_context(|| format!("cannot load {}", path.display()))?,
        None => NamesrvConfig::default(),
    };
    if args.print_config_item {
        print!("{}", config.render());
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mqnamesrv")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: NamesrvConfig) -> anyhow::Result<()> {
    let server = NameServer::start(config).await?;
    println!(
        "The Name Server boot success. serializeType=JSON, address {}",
        server.local_addr()
    );
    shutdown_signal().await;
    tracing::info!("stopping");
    server.shutdown().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
