//! RaftMQ's chaos harness: real `mqbroker` processes under kills, pauses, partitions, packet
//! loss, delay and power loss while clients work through the public gRPC API (or RocketMQ 4.x
//! remoting through a NameServer, `--protocol remoting`), then checkers
//! over the recorded history (Jepsen's model: a timeout is unknown, never lost nor applied).
//!
//! - [`host`]: the harness's test hosts — network namespaces on a private bridge, firewall
//!   chains, loop-mounted node disks for power cuts;
//! - [`proxy`]: a userspace TCP proxy on every peer link (delay, jitter; partitions when
//!   namespaces are unavailable);
//! - [`cluster`]: conf files, processes by PID, faults on nodes and links, leader lookup;
//! - [`nemesis`]: the fault catalogue with OpenChaos's names;
//! - [`client`], [`workload`]: RocketMQ 5 gRPC clients, the queue / ordered / consumer-restart
//!   workloads and the final drain;
//! - [`remoting_client`], [`remoting_workload`]: the same workloads as a RocketMQ 4.x client
//!   (NameServer route, SEND_MESSAGE_V2, PULL_MESSAGE, consumer offsets), `--protocol remoting`;
//! - [`history`], [`recorder`]: `history.jsonl`;
//! - [`checker`], [`report`]: total-queue, order, availability and coverage checkers;
//!   `results.json`, the console summary, SVG plots;
//! - [`run`]: one run from options to verdict.

pub mod checker;
pub mod client;
pub mod cluster;
pub mod history;
pub mod host;
pub mod nemesis;
pub mod proxy;
pub mod recorder;
pub mod remoting_client;
pub mod remoting_workload;
pub mod report;
pub mod run;
pub mod workload;
