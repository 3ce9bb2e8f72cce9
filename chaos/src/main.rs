//! `chaos`: run a fault-injection test against real `mqbroker` processes, or re-check a
//! recorded history. Exit code 0 = valid, 1 = invalid, 2 = unknown (the run proved nothing),
//! 3 = the harness itself failed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chaos::checker::Validity;
use chaos::cluster::NetMode;
use chaos::report::{self, CheckOptions, Results};
use chaos::run::{Control, Options, Protocol};
use chaos::workload::Kind;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "chaos",
    version,
    about = "RaftMQ's Jepsen-style fault-injection harness"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Net {
    Netns,
    Loopback,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a group, inject faults while clients work, heal, drain, check.
    Run {
        /// Seconds of load and faults (OpenChaos -t).
        #[arg(short = 't', long = "limit-time", default_value_t = 60)]
        time_limit: u64,
        /// Client processes (OpenChaos -c): producers and consumers, spread over the nodes.
        #[arg(short = 'c', long, default_value_t = 6)]
        concurrency: usize,
        /// Total sends per second across producers (OpenChaos -r).
        #[arg(short = 'r', long, default_value_t = 50.0)]
        rate: f64,
        /// Seconds normal, then seconds faulted (OpenChaos -i).
        #[arg(short = 'i', long = "fault-interval", default_value_t = 10)]
        interval: u64,
        /// Seconds of fault-free load after the last heal, before the drain.
        #[arg(long, default_value_t = 10)]
        recovery_time: u64,
        /// Seed of every random choice; printed in the reproduce line.
        #[arg(long)]
        seed: Option<u64>,
        /// Broker nodes (3, or 5 for bridge and partition-majorities-ring).
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Faults, comma-separated, taken in turn (e.g. leader-kill,random-partition); `mixed`
        /// draws a random one per window; `noop` injects nothing.
        #[arg(
            long,
            alias = "fault",
            short = 'f',
            value_delimiter = ',',
            default_value = "leader-kill"
        )]
        nemesis: Vec<String>,
        /// Nodes for fixed-* faults, `n0;n1`.
        #[arg(short = 'n', long = "fault-nodes", default_value = "n0")]
        fault_nodes: String,
        /// Workload.
        #[arg(short = 'w', long, value_enum, default_value = "queue")]
        workload: Kind,
        /// Share of the clients that consume (the rest produce); 0 makes every client a
        /// producer and leaves all reading to the final drain.
        #[arg(long, default_value_t = 0.5)]
        dequeue_ratio: f64,
        /// flushDiskType of the brokers.
        #[arg(long, default_value = "SYNC_FLUSH")]
        flush: String,
        /// A negative control: a broker setting that breaks a promise (the run must fail).
        #[arg(long, value_enum)]
        negative_control: Option<Control>,
        /// Network layout (default: netns when root with ip and iptables, else loopback).
        #[arg(long, value_enum)]
        net: Option<Net>,
        /// The mqbroker binary (default: next to this binary).
        #[arg(long)]
        broker: Option<PathBuf>,
        /// The clients' protocol: RocketMQ 5 gRPC, or 4.x remoting through a NameServer
        /// that the harness starts beside the group.
        #[arg(long, value_enum, default_value = "grpc")]
        protocol: Protocol,
        /// The mqnamesrv binary for --protocol remoting (default: next to this binary).
        #[arg(long)]
        namesrv: Option<PathBuf>,
        /// Where runs are stored: <store>/<timestamp>/, with a `latest` link.
        #[arg(long, default_value = "store/chaos")]
        store: PathBuf,
        /// Keep node disk images even when the run is valid.
        #[arg(long)]
        keep: bool,
        /// First port in loopback mode.
        #[arg(long, default_value_t = 47000)]
        base_port: u16,
    },
    /// Re-run the checkers over a recorded history.jsonl.
    Check {
        /// A run directory or a history.jsonl.
        path: PathBuf,
        /// Check per-group order (ordered workload).
        #[arg(long)]
        order: bool,
    },
    /// Remove namespaces and the bridge a crashed run left behind.
    Cleanup,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(v) => ExitCode::from(u8::try_from(report::exit_code(v)).unwrap_or(3)),
        Err(e) => {
            eprintln!("chaos: {e:#}");
            ExitCode::from(3)
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<Validity> {
    match cli.command {
        Command::Cleanup => {
            chaos::host::cleanup_network(9);
            Ok(Validity::True)
        }
        Command::Check { path, order } => {
            let file = if path.is_dir() {
                path.join("history.jsonl")
            } else {
                path
            };
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("read {}", file.display()))?;
            let mut history = Vec::new();
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                history.push(
                    serde_json::from_str(line).with_context(|| {
                        format!("{}:{}: not a history op", file.display(), i + 1)
                    })?,
                );
            }
            let check = CheckOptions {
                check_order: order,
                ..CheckOptions::default()
            };
            let results =
                Results::from_history(&history, &check, 0, serde_json::Value::Null, String::new());
            println!("{}", report::console_summary(&results));
            Ok(results.valid)
        }
        Command::Run {
            time_limit,
            concurrency,
            rate,
            interval,
            recovery_time,
            seed,
            nodes,
            nemesis,
            fault_nodes,
            workload,
            dequeue_ratio,
            flush,
            negative_control,
            net,
            broker,
            protocol,
            namesrv,
            store,
            keep,
            base_port,
        } => {
            if flush != "SYNC_FLUSH" && flush != "ASYNC_FLUSH" {
                anyhow::bail!("--flush {flush}: must be SYNC_FLUSH or ASYNC_FLUSH");
            }
            if concurrency == 0 || rate <= 0.0 {
                anyhow::bail!("-c and -r must be positive");
            }
            let fault_nodes = fault_nodes
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.strip_prefix('n')
                        .and_then(|i| i.parse::<usize>().ok())
                        .filter(|&i| i < nodes)
                        .with_context(|| {
                            format!("--fault-nodes: {s:?} is not one of n0..n{}", nodes - 1)
                        })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let broker_bin = match broker {
                Some(b) => b,
                None => std::env::current_exe()?
                    .parent()
                    .map(|d| d.join("mqbroker"))
                    .context("no directory for the mqbroker binary")?,
            };
            let namesrv_bin = match namesrv {
                Some(b) => b,
                None => std::env::current_exe()?
                    .parent()
                    .map(|d| d.join("mqnamesrv"))
                    .context("no directory for the mqnamesrv binary")?,
            };
            let seed = seed.unwrap_or_else(rand::random);
            let options = Options {
                time_limit,
                concurrency,
                rate,
                interval,
                recovery_time,
                seed,
                nodes,
                nemesis,
                fault_nodes,
                workload,
                dequeue_ratio,
                flush,
                control: negative_control,
                protocol,
                namesrv_bin,
                net: net.map(|n| match n {
                    Net::Netns => NetMode::Netns,
                    Net::Loopback => NetMode::Loopback,
                }),
                broker_bin,
                store,
                keep,
                base_port,
                argv: std::env::args().collect(),
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let outcome = runtime.block_on(chaos::run::run(options))?;
            println!("run directory: {}", outcome.dir.display());
            Ok(outcome.valid)
        }
    }
}
