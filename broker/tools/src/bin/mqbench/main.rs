//! `mqbench`: a load generator for a RaftMQ group, with the habits of RocketMQ's
//! `benchmark/producer.sh` and `consumer.sh`.
//!
//! By default it speaks the RocketMQ 5 gRPC API as the SDKs do (client id headers, QueryRoute,
//! one `SendMessage` per message; `ReceiveMessage` long polls and `AckMessage` as a
//! SimpleConsumer), over `--connections` HTTP/2 channels with `--inflight` concurrent requests on
//! each. `--protocol remoting` speaks RocketMQ 4.x remoting instead, as the 4.x clients do:
//! SEND_MESSAGE_V2 round-robin over the topic's queues, PULL_MESSAGE from each queue's min
//! offset with UPDATE_CONSUMER_OFFSET after every pull; `-n` may then be a NameServer
//! ([`remoting`]). Every response's status is checked: only OK (SUCCESS) counts as a success,
//! and a failure is counted under its code, never retried.
//!
//! A run is bounded by `--count` and/or `--duration` (20 s when neither is given); the first
//! `--warmup` seconds are excluded from every figure. The report gives msgs/s, MB/s (10^6 bytes of
//! body), latency percentiles from an HDR histogram, errors by code, and — given `--broker-pids` —
//! the CPU seconds the broker processes spent (utime + stime from `/proc/<pid>/stat`) per message
//! and their RSS. `--json` prints the report as one JSON object instead.
//!
//! Modules follow a run: [`plan`] (when it measures and stops, what workers share and count),
//! [`connect`] (gRPC setup through `raftmq-client`), [`remoting`] (the 4.x remoting setup and
//! calls), [`procfs`] (broker CPU, RSS and flush policy), [`progress`], [`producer`] and
//! [`consumer`] (the workers' loops, whatever the protocol), [`report`] (text or JSON).
//!
//! Exit status: 0 when the run completed with at least one success; 1 on a setup failure (no
//! broker, no leader, the topic refused) or when nothing succeeded; 2 on a usage error.

mod args;
mod connect;
mod consumer;
mod plan;
mod procfs;
mod producer;
mod progress;
mod remoting;
mod report;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::args::{ConsumerArgs, ProducerArgs};
use crate::consumer::consume;
use crate::producer::produce;

/// RaftMQ benchmark (RocketMQ's benchmark/producer.sh and consumer.sh).
#[derive(Debug, Parser)]
#[command(name = "mqbench", version)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Publish messages as fast as the in-flight window allows.
    Producer(ProducerArgs),
    /// Receive and acknowledge messages (SimpleConsumer style).
    Consumer(ConsumerArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let threads = match &args.mode {
        Mode::Producer(p) => p.common.client_threads,
        Mode::Consumer(c) => c.common.client_threads,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads as usize)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mqbench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        match args.mode {
            Mode::Producer(p) => produce(p).await,
            Mode::Consumer(c) => consume(c).await,
        }
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mqbench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Common;

    impl Common {
        pub(crate) fn try_parse_from_args<const N: usize>(args: [&str; N]) -> Common {
            #[derive(Debug, Parser)]
            struct Wrapper {
                #[command(flatten)]
                common: Common,
            }
            let argv = std::iter::once("mqbench").chain(args);
            Wrapper::try_parse_from(argv).expect("valid args").common
        }
    }
}
