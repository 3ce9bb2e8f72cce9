//! `mqbroker`: RaftMQ's broker process, started as RocketMQ's is (`mqbroker -c broker.conf`).
//!
//! It loads and checks the config, logs the warnings about keys RaftMQ does not use, and either
//! prints the effective config (`-p`) or runs [`Broker::start`] (the raft-log node on its
//! `dLegerPeers` address and the RocketMQ 5 gRPC service on `listenPort`) until SIGINT or
//! SIGTERM. The wiring is in the library; this file is arguments, logging and signals. A config
//! that cannot be loaded exits 1 with the error, which names the file, key and line.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use broker::config::BrokerConfig;
use broker::server::Broker;
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// RaftMQ broker: RocketMQ-compatible, stored in raft-log.
#[derive(Debug, Parser)]
#[command(name = "mqbroker", version)]
struct Args {
    /// The broker.conf to load (RocketMQ's `-c`). Without it every key has its default.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Print the effective config as sorted key=value lines and exit (RocketMQ's `-p`).
    #[arg(short = 'p', long = "printConfigItem")]
    print_config_item: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Logs go to stderr so that `-p` output on stdout stays a clean broker.conf.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mqbroker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let (config, warnings, source) = match &args.config {
        Some(path) => {
            let (config, warnings) =
                BrokerConfig::from_file(path).context("cannot load broker config")?;
            (config, warnings, path.display().to_string())
        }
        None => {
            let (config, warnings) =
                BrokerConfig::from_str("", "<defaults>").context("cannot build default config")?;
            (config, warnings, "<defaults>".to_string())
        }
    };
    for w in &warnings {
        match w.line {
            Some(line) => tracing::warn!(file = %source, line, key = %w.key, "{}", w.message),
            None => tracing::warn!(file = %source, key = %w.key, "{}", w.message),
        }
    }
    if args.print_config_item {
        print!("{}", config.render());
        return Ok(ExitCode::SUCCESS);
    }
    tracing::info!(
        file = %source,
        broker = %config.broker_name,
        group = %config.raft_log.group,
        self_id = %config.raft_log.self_id,
        "config loaded"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mqbroker")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: BrokerConfig) -> anyhow::Result<()> {
    let broker = Broker::start(config).await?;
    broker.run_until(shutdown_signal()).await?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM (what fast-try's stop sends first).
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
