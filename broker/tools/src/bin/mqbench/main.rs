//! `mqbench`: a load generator for a RaftMQ group, with the habits of RocketMQ's
//! `benchmark/producer.sh` and `consumer.sh`.
//!
//! It speaks the RocketMQ 5 gRPC API as the SDKs do (client id headers, QueryRoute, one
//! `SendMessage` per message; `ReceiveMessage` long polls and `AckMessage` as a SimpleConsumer),
//! over `--connections` HTTP/2 channels with `--inflight` concurrent requests on each. Every
//! response's status is checked: only OK counts as a success, and a failure is counted under its
//! code, never retried.
//!
//! A run is bounded by `--count` and/or `--duration` (20 s when neither is given); the first
//! `--warmup` seconds are excluded from every figure. The report gives msgs/s, MB/s (10^6 bytes of
//! body), latency percentiles from an HDR histogram, errors by code, and — given `--broker-pids` —
//! the CPU seconds the broker processes spent (utime + stime from `/proc/<pid>/stat`) per message
//! and their RSS. `--json` prints the report as one JSON object instead.
//!
//! Exit status: 0 when the run completed with at least one success; 1 on a setup failure (no
//! broker, no leader, the topic refused) or when nothing succeeded; 2 on a usage error.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use proto::apache::rocketmq::v2;
use proto::raftmq::admin::v1 as pb;
use raftmq_client::{
    AdminClient, ClientError, ClientIdentity, MessageSpec, MessagingClient, Receive, cluster_views,
    resource,
};
use serde::Serialize;
use tokio::sync::watch;
use tonic::transport::Channel;
/// Deadline of the setup calls (ClusterList, UpdateTopic, QueryRoute).
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed call so that a dead connection does not turn into a busy loop. The failed
/// call is counted; the next one is a new message, not a retry.
const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// Pause of a consumer after a refused receive or ack (a wrong topic or group would otherwise
/// spin).
const CONSUMER_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// The broker ends a long poll this long before the request's gRPC deadline (`grpc.rs`).
const BROKER_DEADLINE_MARGIN: Duration = Duration::from_millis(500);
/// Progress bar and RSS sampling period.
const TICK: Duration = Duration::from_millis(250);
/// Duration of a run when neither `--count` nor `--duration` is given.
const DEFAULT_DURATION_S: u64 = 20;
/// Histogram range in microseconds: 1 µs to 1 hour, 3 significant digits.
const HISTOGRAM_US_MAX: u64 = 3_600_000_000;
const HISTOGRAM_SIGFIG: u8 = 3;
/// Error codes kept with one sample message each; more codes are still counted.
const ERROR_SAMPLE_CODES_MAX: usize = 32;

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

/// Which of the `-n` addresses the connections go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Target {
    /// The Raft leader only (found with ClusterList): no follower forwarding in the path.
    Leader,
    /// Connections spread round-robin over every address: followers forward to the leader.
    All,
}

#[derive(Debug, clap::Args)]
struct Common {
    /// Broker addresses HOST:PORT, `;`-separated (RocketMQ's nameserver flag; here any broker's
    /// listenPort). Defaults to $NAMESRV_ADDR.
    #[arg(short = 'n', long = "namesrvAddr", value_name = "HOST:PORT[;…]")]
    namesrv_addr: Option<String>,

    /// Which addresses to load.
    #[arg(long, value_enum, default_value_t = Target::Leader)]
    target: Target,

    /// gRPC channels (HTTP/2 connections).
    #[arg(
        long,
        default_value_t = 4,
        value_parser = clap::value_parser!(u32).range(1..=1024)
    )]
    connections: u32,

    /// Stop after this many measured messages (sent, or received and acked).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,

    /// Stop after this many measured seconds (default 20 when --count is not given).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    duration: Option<u64>,

    /// Seconds of load before measuring starts; excluded from every figure.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    warmup: u64,

    /// Deadline of one request, in seconds.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    timeout: u64,

    /// Worker threads of the client's async runtime.
    #[arg(
        long = "client-threads",
        default_value_t = 2,
        value_parser = clap::value_parser!(u32).range(1..=256)
    )]
    client_threads: u32,

    /// Broker process ids (`pid,pid,pid`): their CPU time (utime + stime) and RSS are reported.
    #[arg(long = "broker-pids", value_delimiter = ',', value_name = "PID,…")]
    broker_pids: Vec<u32>,

    /// The flush policy to print in the report. Without it, mqbench asks the first
    /// `--broker-pids` process's binary for its effective config (`mqbroker -c FILE -p`).
    #[arg(long, value_name = "LABEL")]
    flush: Option<String>,

    /// Print the report as one JSON object (and no progress bar).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct ProducerArgs {
    #[command(flatten)]
    common: Common,

    /// Message body size in bytes.
    #[arg(
        short = 's',
        long = "size",
        default_value_t = 1024,
        value_parser = clap::value_parser!(u32).range(1..=(64 << 20))
    )]
    size: u32,

    /// Topic; created (or its queue count set) with the admin UpdateTopic before the run.
    #[arg(short = 't', long = "topic", default_value = "BenchmarkTest")]
    topic: String,

    /// Queue count of the topic.
    #[arg(
        short = 'q',
        long = "queues",
        default_value_t = 8,
        value_parser = clap::value_parser!(u32).range(1..=1024)
    )]
    queues: u32,

    /// Concurrent sends in flight on each connection.
    #[arg(
        long,
        default_value_t = 64,
        value_parser = clap::value_parser!(u32).range(1..=4096)
    )]
    inflight: u32,

    /// Messages per SendMessage request. The protocol allows several (each gets its own result
    /// entry); the SDKs send one, so 1 is what an application sees.
    #[arg(
        long,
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..=1024)
    )]
    batch: u32,

    /// Send FIFO messages spread round-robin over this many message groups (0: normal messages).
    #[arg(long = "message-groups", default_value_t = 0)]
    message_groups: u32,

    /// Message tag.
    #[arg(long)]
    tag: Option<String>,
}

#[derive(Debug, clap::Args)]
struct ConsumerArgs {
    #[command(flatten)]
    common: Common,

    /// Topic.
    #[arg(short = 't', long = "topic", default_value = "BenchmarkTest")]
    topic: String,

    /// Consumer group.
    #[arg(short = 'g', long = "group", default_value = "BenchmarkConsumer")]
    group: String,

    /// Receive loops on each connection (each: receive a batch, ack it, repeat).
    #[arg(
        long,
        default_value_t = 4,
        value_parser = clap::value_parser!(u32).range(1..=1024)
    )]
    inflight: u32,

    /// Messages one ReceiveMessage asks for (the SDKs' default is 32; the broker caps at 1024).
    #[arg(
        short = 'b',
        long = "batch",
        default_value_t = 32,
        value_parser = clap::value_parser!(u32).range(1..=1024)
    )]
    batch: u32,

    /// Long-polling timeout of one receive, in seconds (the broker clamps it to 5..=20).
    #[arg(
        long = "long-poll",
        value_name = "SECS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u64).range(1..=20)
    )]
    long_poll: u64,

    /// Invisible duration of received messages, in seconds (10 s to 12 h).
    #[arg(
        long = "invisible",
        value_name = "SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(10..=43_200)
    )]
    invisible: u64,

    /// Tag filter (`a||b`; `*` for all).
    #[arg(long, default_value = "*")]
    tag: String,
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

// ---- the run's shape ---------------------------------------------------------------------------

/// When the run measures and when it stops.
#[derive(Debug, Clone, Copy)]
struct Plan {
    started: Instant,
    /// Warmup ends here; operations started before it are not measured.
    measure_from: Instant,
    /// No operation starts after this (`None`: only `count` bounds the run).
    stop_at: Option<Instant>,
    count: Option<u64>,
    warmup: Duration,
    duration: Option<Duration>,
}

impl Plan {
    fn new(common: &Common) -> Plan {
        let duration = match (common.duration, common.count) {
            (Some(d), _) => Some(Duration::from_secs(d)),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(DEFAULT_DURATION_S)),
        };
        let warmup = Duration::from_secs(common.warmup);
        let started = Instant::now();
        let measure_from = started + warmup;
        Plan {
            started,
            measure_from,
            stop_at: duration.map(|d| measure_from + d),
            count: common.count,
            warmup,
            duration,
        }
    }
}

/// State every worker shares: the stop signal and the counters the progress bar shows.
#[derive(Debug)]
struct Shared {
    plan: Plan,
    stop: watch::Sender<bool>,
    stopped: AtomicBool,
    /// Measured operations started (the `--count` tickets), when one operation is one message
    /// (producer). A consumer's receive brings a batch, so its count is checked on acks instead.
    tickets: Option<AtomicU64>,
    /// Measured successes and failures so far.
    ok: AtomicU64,
    failed: AtomicU64,
    /// Successes including warmup, for the progress rate.
    ok_all: AtomicU64,
}

impl Shared {
    fn new(plan: Plan, ticketed: bool) -> Arc<Shared> {
        let (stop, _) = watch::channel(false);
        Arc::new(Shared {
            plan,
            stop,
            stopped: AtomicBool::new(false),
            tickets: ticketed.then(|| AtomicU64::new(0)),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            ok_all: AtomicU64::new(0),
        })
    }

    fn signal_stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.stop.send_replace(true);
    }

    /// Whether an operation on `n` messages may start now, and whether it is measured.
    fn admit(&self, n: u64) -> Option<bool> {
        if self.stopped.load(Ordering::Acquire) {
            return None;
        }
        let now = Instant::now();
        if self.plan.stop_at.is_some_and(|s| now >= s) {
            self.signal_stop();
            return None;
        }
        if now < self.plan.measure_from {
            return Some(false);
        }
        if let (Some(count), Some(tickets)) = (self.plan.count, &self.tickets)
            && tickets.fetch_add(n, Ordering::Relaxed) >= count
        {
            return None;
        }
        Some(true)
    }
}

/// What one worker measured.
#[derive(Debug)]
struct Tally {
    latency_us: Histogram<u64>,
    /// Consumer only: acknowledge latency and born-to-received latency.
    ack_latency_us: Histogram<u64>,
    e2e_us: Histogram<u64>,
    ok: u64,
    bytes: u64,
    errors: BTreeMap<String, u64>,
    samples: BTreeMap<String, String>,
    /// Consumer only: long polls that came back empty.
    empty_polls: u64,
    /// When the last measured success completed.
    last_ok: Option<Instant>,
    /// When the last measured operation (success or failure) completed.
    last_done: Option<Instant>,
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, HISTOGRAM_US_MAX, HISTOGRAM_SIGFIG)
        .map_err(|e| anyhow!("cannot create a latency histogram: {e}"))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Tally {
    fn new() -> anyhow::Result<Tally> {
        Ok(Tally {
            latency_us: histogram()?,
            ack_latency_us: histogram()?,
            e2e_us: histogram()?,
            ok: 0,
            bytes: 0,
            errors: BTreeMap::new(),
            samples: BTreeMap::new(),
            empty_polls: 0,
            last_ok: None,
            last_done: None,
        })
    }

    fn error(&mut self, code: String, message: String) {
        if self.samples.len() < ERROR_SAMPLE_CODES_MAX && !self.samples.contains_key(&code) {
            self.samples.insert(code.clone(), message);
        }
        *self.errors.entry(code).or_insert(0) += 1;
    }

    fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        self.latency_us
            .add(&other.latency_us)
            .map_err(|e| anyhow!("merging latency histograms: {e:?}"))?;
        self.ack_latency_us
            .add(&other.ack_latency_us)
            .map_err(|e| anyhow!("merging ack latency histograms: {e:?}"))?;
        self.e2e_us
            .add(&other.e2e_us)
            .map_err(|e| anyhow!("merging end-to-end histograms: {e:?}"))?;
        self.ok += other.ok;
        self.bytes += other.bytes;
        self.empty_polls += other.empty_polls;
        for (code, n) in other.errors {
            *self.errors.entry(code).or_insert(0) += n;
        }
        for (code, message) in other.samples {
            if self.samples.len() < ERROR_SAMPLE_CODES_MAX {
                self.samples.entry(code).or_insert(message);
            }
        }
        self.last_ok = self.last_ok.max(other.last_ok);
        self.last_done = self.last_done.max(other.last_done);
        Ok(())
    }
}

/// A call's failure, as counted: the v2 code name (`MASTER_PERSISTENCE_TIMEOUT`), or
/// `GRPC_<code>` when the call itself failed (transport, deadline), with the message.
#[derive(Debug)]
struct Failure {
    code: String,
    message: String,
}

fn v2_failure(status: Option<&v2::Status>) -> Option<Failure> {
    let Some(status) = status else {
        return Some(Failure {
            code: "NO_STATUS".to_string(),
            message: "the response carries no status".to_string(),
        });
    };
    if status.code == v2::Code::Ok as i32 {
        return None;
    }
    let code = v2::Code::try_from(status.code).map_or_else(
        |_| format!("CODE_{}", status.code),
        |c| c.as_str_name().to_string(),
    );
    Some(Failure {
        code,
        message: status.message.clone(),
    })
}

fn grpc_failure(status: &tonic::Status) -> Failure {
    Failure {
        code: format!("GRPC_{:?}", status.code()),
        message: status.message().to_string(),
    }
}

/// A failed call as counted: its gRPC status, or (never from a call) the client's reason.
fn client_failure(error: &ClientError) -> Failure {
    match error.grpc_status() {
        Some(status) => grpc_failure(status),
        None => Failure {
            code: "CLIENT".to_string(),
            message: error.to_string(),
        },
    }
}

// ---- connections -------------------------------------------------------------------------------

/// A setup call's error, naming the topic as mqbench's setup errors do.
fn setup_error(error: ClientError, topic: &str) -> anyhow::Error {
    match error {
        ClientError::Rpc { call, addr, source } => {
            anyhow::Error::new(source).context(format!("{call} {topic} at {addr}"))
        }
        other => other.into(),
    }
}

/// The `-n` address whose node says it leads (the highest term if two do), with its id.
async fn find_leader(addrs: &[String]) -> anyhow::Result<(String, String)> {
    let views = cluster_views(addrs, SETUP_TIMEOUT).await;
    addrs
        .iter()
        .zip(views)
        .filter_map(|(addr, view)| {
            let view = view?;
            let me = view.nodes.iter().find(|n| n.is_self)?;
            (me.role == pb::Role::Leader as i32)
                .then(|| (me.term.unwrap_or(0), me.id.clone(), addr.clone()))
        })
        .max_by_key(|(term, _, _)| *term)
        .map(|(_, id, addr)| (addr, id))
        .ok_or_else(|| {
            anyhow!(
                "no node among -n {} says it leads (is the group up? `mqadmin clusterList`)",
                addrs.join(";")
            )
        })
}

/// The addresses the connections go to, and a description for the report.
async fn targets(common: &Common) -> anyhow::Result<(Vec<String>, String)> {
    let addrs = raftmq_client::access_point(common.namesrv_addr.as_deref())?;
    match common.target {
        Target::Leader => {
            let (addr, id) = find_leader(&addrs).await?;
            let described = format!("{addr} (leader {id})");
            Ok((vec![addr], described))
        }
        Target::All => {
            let described = format!("{} (all, round-robin)", addrs.join(";"));
            Ok((addrs, described))
        }
    }
}

/// `--connections` channels, round-robin over `addrs`.
async fn channels(addrs: &[String], connections: u32) -> anyhow::Result<Vec<(String, Channel)>> {
    let mut out = Vec::new();
    for i in 0..connections as usize {
        let addr = &addrs[i % addrs.len()];
        out.push((addr.clone(), raftmq_client::connect(addr).await?));
    }
    Ok(out)
}

/// Creates `topic` with `queues` queues (or sets its queue count) through the admin service.
async fn create_topic(addr: &str, topic: &str, queues: u32) -> anyhow::Result<()> {
    let response = AdminClient::connect(addr)
        .await?
        .update_topic(topic, queues, SETUP_TIMEOUT)
        .await
        .map_err(|e| setup_error(e, topic))?;
    let status = response
        .status
        .ok_or_else(|| anyhow!("UpdateTopic {topic} at {addr}: the response has no status"))?;
    if status.code != pb::Code::Ok as i32 {
        let name = pb::Code::try_from(status.code).map_or("UNKNOWN_CODE", |c| c.as_str_name());
        bail!(
            "UpdateTopic {topic} refused by {addr}: {name}: {}",
            status.message
        );
    }
    Ok(())
}

/// QueryRoute as an SDK does before its first send or receive; fails unless the topic has a
/// route.
async fn query_route(client: &mut MessagingClient, topic: &str) -> anyhow::Result<usize> {
    let response = client
        .query_route(topic, SETUP_TIMEOUT)
        .await
        .map_err(|e| setup_error(e, topic))?;
    if let Some(f) = v2_failure(response.status.as_ref()) {
        bail!(
            "QueryRoute {topic} refused by {}: {}: {}",
            client.addr(),
            f.code,
            f.message
        );
    }
    Ok(response.message_queues.len())
}

// ---- /proc -------------------------------------------------------------------------------------

/// utime + stime of a process, all threads, in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let ticks = stat_cpu_ticks(&stat).ok_or_else(|| anyhow!("{path}: unexpected format"))?;
    #[allow(clippy::cast_precision_loss)] // tick counts stay far below 2^52
    Ok(ticks as f64 / clock_ticks() as f64)
}

fn clock_ticks() -> u64 {
    rustix::param::clock_ticks_per_second().max(1)
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted from its closing parenthesis.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ')': field 3 (state) is index 0, so utime (14) is index 11 and stime (15) index 12.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `kB` lines of `/proc/<pid>/status` (`VmRSS`, `RssAnon`, `VmHWM`), in KiB; `None` each when
/// the process is gone.
fn status_kib<const N: usize>(pid: u32, keys: [&str; N]) -> [Option<u64>; N] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok();
    keys.map(|key| status.as_deref().and_then(|s| status_field_kib(s, key)))
}

fn status_field_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// The broker processes being watched: CPU at the start of measuring, RSS peaks while loaded.
/// VmRSS counts the mapped pages of the commitlog segments (RssFile, page cache the kernel can
/// drop); RssAnon is the process's own memory.
#[derive(Debug)]
struct BrokerWatch {
    pids: Vec<u32>,
    cpu_start: Vec<Option<f64>>,
    rss_max_kib: Vec<AtomicU64>,
    rss_anon_max_kib: Vec<AtomicU64>,
}

impl BrokerWatch {
    fn new(pids: &[u32]) -> anyhow::Result<BrokerWatch> {
        for &pid in pids {
            cpu_seconds(pid).with_context(|| format!("--broker-pids: process {pid}"))?;
        }
        Ok(BrokerWatch {
            pids: pids.to_vec(),
            cpu_start: vec![None; pids.len()],
            rss_max_kib: pids.iter().map(|_| AtomicU64::new(0)).collect(),
            rss_anon_max_kib: pids.iter().map(|_| AtomicU64::new(0)).collect(),
        })
    }

    fn mark_start(&mut self) {
        self.cpu_start = self.pids.iter().map(|&p| cpu_seconds(p).ok()).collect();
    }

    fn sample_rss(&self) {
        for (i, pid) in self.pids.iter().enumerate() {
            let [rss, anon] = status_kib(*pid, ["VmRSS", "RssAnon"]);
            if let Some(rss) = rss {
                self.rss_max_kib[i].fetch_max(rss, Ordering::Relaxed);
            }
            if let Some(anon) = anon {
                self.rss_anon_max_kib[i].fetch_max(anon, Ordering::Relaxed);
            }
        }
    }
}

/// The flush policy and where it came from: `--flush`, else the first broker process's own
/// effective config (its binary run with its `-c` file and `-p`), else unknown.
fn flush_policy(flag: Option<&str>, pids: &[u32]) -> (String, String) {
    if let Some(label) = flag {
        return (label.to_string(), "--flush".to_string());
    }
    let Some(&pid) = pids.first() else {
        return (
            "unknown".to_string(),
            "pass --flush LABEL or --broker-pids".to_string(),
        );
    };
    match broker_flush_policy(pid) {
        Ok((policy, source)) => (policy, source),
        Err(e) => ("unknown".to_string(), format!("{e:#}")),
    }
}

fn broker_flush_policy(pid: u32) -> anyhow::Result<(String, String)> {
    let cmdline_path = format!("/proc/{pid}/cmdline");
    let cmdline =
        std::fs::read(&cmdline_path).with_context(|| format!("cannot read {cmdline_path}"))?;
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let conf = config_arg(&argv).map(|c| {
        let path = std::path::PathBuf::from(&c);
        if path.is_absolute() {
            path
        } else {
            std::fs::read_link(format!("/proc/{pid}/cwd"))
                .map_or(path.clone(), |cwd| cwd.join(path))
        }
    });
    let exe = format!("/proc/{pid}/exe");
    let mut command = std::process::Command::new(&exe);
    if let Some(conf) = &conf {
        command.arg("-c").arg(conf);
    }
    let output = command
        .arg("-p")
        .stderr(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run {exe} -p (the binary of pid {pid})"))?;
    if !output.status.success() {
        bail!("`mqbroker -p` of pid {pid} failed ({})", output.status);
    }
    let printed = String::from_utf8_lossy(&output.stdout);
    let value = |key: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
    };
    let policy = value("flushDiskType")
        .ok_or_else(|| anyhow!("`mqbroker -p` of pid {pid} prints no flushDiskType"))?;
    let policy = match value("flushIntervalCommitLog") {
        Some(ms) if policy == "ASYNC_FLUSH" => format!("{policy} (flushIntervalCommitLog={ms} ms)"),
        _ => policy,
    };
    let conf = conf.map_or_else(|| "defaults".to_string(), |c| c.display().to_string());
    Ok((policy, format!("`mqbroker -c {conf} -p` of pid {pid}")))
}

/// The value of mqbroker's `-c`/`--config` in `argv`.
fn config_arg(argv: &[String]) -> Option<String> {
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        if a == "-c" || a == "--config" {
            return args.next().cloned();
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(v.to_string());
        }
        if let Some(v) = a.strip_prefix("-c")
            && !v.is_empty()
            && !a.starts_with("--")
        {
            return Some(v.to_string());
        }
    }
    None
}

// ---- progress ----------------------------------------------------------------------------------

/// Draws the progress bar and samples broker RSS until the run stops.
fn spawn_ticker(
    shared: Arc<Shared>,
    watch: Arc<BrokerWatch>,
    bar: ProgressBar,
    unit: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut stop = shared.stop.subscribe();
        let mut last = (Instant::now(), shared.ok_all.load(Ordering::Relaxed));
        let mut rate = 0.0;
        loop {
            let timer = tokio::time::sleep(TICK);
            tokio::select! {
                _ = timer => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let now = Instant::now();
            if now >= shared.plan.measure_from {
                watch.sample_rss();
            }
            let ok_all = shared.ok_all.load(Ordering::Relaxed);
            let dt = now.duration_since(last.0).as_secs_f64();
            if dt >= 1.0 {
                #[allow(clippy::cast_precision_loss)]
                let delta = (ok_all - last.1) as f64;
                rate = delta / dt;
                last = (now, ok_all);
            }
            let phase = if now < shared.plan.measure_from {
                "warmup "
            } else {
                ""
            };
            let (ok, failed) = (
                shared.ok.load(Ordering::Relaxed),
                shared.failed.load(Ordering::Relaxed),
            );
            bar.set_message(format!(
                "{phase}{rate:>9.0} {unit}/s  ok {ok}  errors {failed}"
            ));
            match shared.plan.count {
                Some(_) if shared.plan.duration.is_none() => bar.set_position(ok + failed),
                _ => bar.set_position(
                    u64::try_from(now.duration_since(shared.plan.started).as_millis())
                        .unwrap_or(u64::MAX),
                ),
            }
        }
        bar.finish_and_clear();
    })
}

fn progress_bar(common: &Common, plan: &Plan) -> ProgressBar {
    let (len, template) = match (plan.count, plan.duration) {
        (Some(count), None) => (
            count,
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
        ),
        _ => (
            u64::try_from((plan.warmup + plan.duration.unwrap_or_default()).as_millis())
                .unwrap_or(u64::MAX),
            "{spinner} [{elapsed_precise}] {bar:30} {msg}",
        ),
    };
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    if !common.json && std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
    }
    bar
}

/// Stops the run when `--duration` is over, even if every worker is waiting on a slow call.
fn spawn_deadline(shared: Arc<Shared>) {
    if let Some(stop_at) = shared.plan.stop_at {
        tokio::spawn(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(stop_at)).await;
            shared.signal_stop();
        });
    }
}

// ---- producer ----------------------------------------------------------------------------------

/// What every send shares: the body, its digest, the topic, the message groups.
#[derive(Debug)]
struct SendTemplate {
    identity: Arc<ClientIdentity>,
    topic: v2::Resource,
    body: Bytes,
    digest: String,
    tag: Option<String>,
    message_groups: Vec<String>,
    timeout: Duration,
    /// Messages per request.
    batch: usize,
}

impl SendTemplate {
    /// The messages of one request.
    fn messages(&self) -> Vec<v2::Message> {
        (0..self.batch).map(|_| self.message()).collect()
    }

    fn message(&self) -> v2::Message {
        let (message_id, sequence) = self.identity.message_id();
        let message_group = (!self.message_groups.is_empty())
            .then(|| self.message_groups[sequence as usize % self.message_groups.len()].clone());
        let spec = MessageSpec {
            message_id,
            tag: self.tag.clone(),
            keys: Vec::new(),
            message_group,
            body_crc32: Some(self.digest.clone()),
            born_host: self.identity.host.clone(),
        };
        raftmq_client::message(self.topic.clone(), self.body.clone(), spec)
    }
}

/// A body of `size` bytes: printable, not all one byte (so nothing on the path can shortcut it).
fn body(size: usize) -> Bytes {
    let pattern = b"RaftMQ-mqbench-0123456789abcdefghijklmnopqrstuvwxyz.";
    Bytes::from(
        pattern
            .iter()
            .copied()
            .cycle()
            .take(size)
            .collect::<Vec<u8>>(),
    )
}

async fn send_loop(
    mut client: MessagingClient,
    template: Arc<SendTemplate>,
    shared: Arc<Shared>,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    let body_len = template.body.len() as u64;
    while let Some(measured) = shared.admit(template.batch as u64) {
        let messages = template.messages();
        let started = Instant::now();
        let outcome = client.send(messages, template.timeout).await;
        let done = Instant::now();
        // One outcome per message: its result entry's status (the top status when the broker
        // sent no entries), or the transport error for every message of the request.
        let failures: Vec<Option<Failure>> = match &outcome {
            Ok(response) => (0..template.batch)
                .map(|i| {
                    let status = response
                        .entries
                        .get(i)
                        .and_then(|e| e.status.as_ref())
                        .or(response.status.as_ref());
                    v2_failure(status)
                })
                .collect(),
            Err(error) => (0..template.batch)
                .map(|_| Some(client_failure(error)))
                .collect(),
        };
        let transport_error = outcome.is_err();
        for failure in failures {
            match failure {
                None => {
                    shared.ok_all.fetch_add(1, Ordering::Relaxed);
                    if measured {
                        shared.ok.fetch_add(1, Ordering::Relaxed);
                        tally.ok += 1;
                        tally.bytes += body_len;
                        // Each message's latency is its request's round trip.
                        tally.latency_us.saturating_record(micros(done - started));
                        tally.last_ok = Some(done);
                    }
                }
                Some(f) => {
                    if measured {
                        shared.failed.fetch_add(1, Ordering::Relaxed);
                        tally.error(f.code, f.message);
                    }
                }
            }
        }
        if measured {
            tally.last_done = Some(done);
        }
        if transport_error {
            tokio::time::sleep(ERROR_PAUSE).await;
        }
    }
    Ok(tally)
}

async fn produce(args: ProducerArgs) -> anyhow::Result<ExitCode> {
    let common = &args.common;
    if args.size as usize > 4 << 20 {
        eprintln!(
            "mqbench: -s {} exceeds the broker's default maxMessageSize (4 MiB); expect MESSAGE_BODY_TOO_LARGE",
            args.size
        );
    }
    let (flush, flush_source) = flush_policy(common.flush.as_deref(), &common.broker_pids);
    let watch = BrokerWatch::new(&common.broker_pids)?;
    let (addrs, target) = targets(common).await?;
    create_topic(&addrs[0], &args.topic, args.queues).await?;
    let identity = Arc::new(ClientIdentity::new(0)?);
    let mut clients = Vec::new();
    for (addr, channel) in channels(&addrs, common.connections).await? {
        let mut client = MessagingClient::new(addr, channel, Arc::clone(&identity));
        query_route(&mut client, &args.topic).await?;
        clients.push(client);
    }
    let body = body(args.size as usize);
    let template = Arc::new(SendTemplate {
        digest: format!("{:08X}", crc32fast::hash(&body)),
        body,
        identity,
        topic: resource(&args.topic),
        tag: args.tag.clone(),
        message_groups: (0..args.message_groups)
            .map(|g| format!("mqbench-{g}"))
            .collect(),
        timeout: Duration::from_secs(common.timeout),
        batch: args.batch as usize,
    });

    let plan = Plan::new(common);
    let shared = Shared::new(plan, true);
    let bar = progress_bar(common, &plan);
    let mut workers = Vec::new();
    for client in &clients {
        for _ in 0..args.inflight {
            workers.push(tokio::spawn(send_loop(
                client.clone(),
                Arc::clone(&template),
                Arc::clone(&shared),
            )));
        }
    }
    let measured = measure(&shared, watch, bar, workers, "msgs").await?;

    let setup = Setup {
        mode: "producer",
        target,
        topic: args.topic.clone(),
        group: None,
        message_size: Some(args.size),
        queues: Some(args.queues),
        connections: common.connections,
        inflight: args.inflight,
        batch: Some(args.batch),
        message_groups: args.message_groups,
        flush,
        flush_source,
    };
    finish(common, setup, &plan, measured)
}

// ---- consumer ----------------------------------------------------------------------------------

#[derive(Debug)]
struct ReceiveTemplate {
    receive: Receive,
    /// The deadline of each ack.
    timeout: Duration,
}

/// One receive: the messages, or a failure.
async fn receive_once(
    client: &mut MessagingClient,
    t: &ReceiveTemplate,
) -> Result<Vec<v2::Message>, Failure> {
    // The gRPC deadline bounds the long poll: the broker answers shortly before it.
    let deadline = t.receive.long_poll + BROKER_DEADLINE_MARGIN;
    let received = client
        .receive(&t.receive, deadline)
        .await
        .map_err(|e| client_failure(&e))?;
    if received.is_not_found() {
        return Ok(Vec::new());
    }
    match v2_failure(received.status.as_ref()) {
        Some(f) => Err(f),
        None => Ok(received.messages),
    }
}

/// Acks `messages`; per message: acknowledged, or the failure.
async fn ack_batch(
    client: &mut MessagingClient,
    t: &ReceiveTemplate,
    messages: &[v2::Message],
) -> Result<Vec<Option<Failure>>, Failure> {
    let response = client
        .ack(&t.receive.group, &t.receive.topic, messages, t.timeout)
        .await
        .map_err(|e| client_failure(&e))?;
    if response.entries.len() != messages.len() {
        // Without one entry per message, only the top status says anything.
        return Err(v2_failure(response.status.as_ref()).unwrap_or(Failure {
            code: "ACK_ENTRIES_MISSING".to_string(),
            message: format!(
                "{} ack entries for {} messages",
                response.entries.len(),
                messages.len()
            ),
        }));
    }
    Ok(response
        .entries
        .iter()
        .map(|e| v2_failure(e.status.as_ref()))
        .collect())
}

/// Milliseconds from a message's born timestamp to now (the broker keeps millisecond precision).
fn e2e_us(m: &v2::Message) -> Option<u64> {
    let born = m.system_properties.as_ref()?.born_timestamp.as_ref()?;
    let born_us =
        u64::try_from(born.seconds).ok()? * 1_000_000 + u64::try_from(born.nanos).ok()? / 1000;
    let now_us = u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_micros(),
    )
    .ok()?;
    Some(now_us.saturating_sub(born_us))
}

async fn receive_loop(
    mut client: MessagingClient,
    template: Arc<ReceiveTemplate>,
    shared: Arc<Shared>,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    let mut stop = shared.stop.subscribe();
    while let Some(measured) = shared.admit(1) {
        let started = Instant::now();
        let received = tokio::select! {
            r = receive_once(&mut client, &template) => r,
            // Abandon a long poll at the end of the run; what it would have received stays
            // invisible for --invisible seconds.
            _ = stop.wait_for(|s| *s) => break,
        };
        let received_at = Instant::now();
        let messages = match received {
            Ok(m) if m.is_empty() => {
                tally.empty_polls += 1;
                continue;
            }
            Ok(m) => m,
            Err(f) => {
                if measured {
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                    tally.error(format!("receive:{}", f.code), f.message);
                    tally.last_done = Some(received_at);
                }
                tokio::time::sleep(CONSUMER_ERROR_PAUSE).await;
                continue;
            }
        };
        if measured {
            tally
                .latency_us
                .saturating_record(micros(received_at - started));
            for m in &messages {
                if let Some(us) = e2e_us(m) {
                    tally.e2e_us.saturating_record(us);
                }
            }
        }
        let ack_started = Instant::now();
        let acked = ack_batch(&mut client, &template, &messages).await;
        let done = Instant::now();
        let results = match acked {
            Ok(r) => r,
            Err(f) => {
                if measured {
                    let n = messages.len() as u64;
                    shared.failed.fetch_add(n, Ordering::Relaxed);
                    *tally.errors.entry(format!("ack:{}", f.code)).or_insert(0) += n - 1;
                    tally.error(format!("ack:{}", f.code), f.message);
                    tally.last_done = Some(done);
                }
                tokio::time::sleep(CONSUMER_ERROR_PAUSE).await;
                continue;
            }
        };
        let mut ok = 0u64;
        for (m, failure) in messages.iter().zip(results) {
            match failure {
                None => {
                    ok += 1;
                    if measured {
                        tally.bytes += m.body.len() as u64;
                    }
                }
                Some(f) if measured => {
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                    tally.error(format!("ack:{}", f.code), f.message);
                }
                Some(_) => {}
            }
        }
        shared.ok_all.fetch_add(ok, Ordering::Relaxed);
        if measured {
            tally
                .ack_latency_us
                .saturating_record(micros(done - ack_started));
            tally.ok += ok;
            tally.last_done = Some(done);
            if ok > 0 {
                tally.last_ok = Some(done);
            }
            let total = shared.ok.fetch_add(ok, Ordering::Relaxed) + ok;
            if shared.plan.count.is_some_and(|c| total >= c) {
                shared.signal_stop();
            }
        }
    }
    Ok(tally)
}

async fn consume(args: ConsumerArgs) -> anyhow::Result<ExitCode> {
    let common = &args.common;
    let (flush, flush_source) = flush_policy(common.flush.as_deref(), &common.broker_pids);
    let watch = BrokerWatch::new(&common.broker_pids)?;
    let (addrs, target) = targets(common).await?;
    let identity = Arc::new(ClientIdentity::new(0)?);
    let mut clients = Vec::new();
    for (addr, channel) in channels(&addrs, common.connections).await? {
        let mut client = MessagingClient::new(addr, channel, Arc::clone(&identity));
        query_route(&mut client, &args.topic).await?;
        clients.push(client);
    }
    let template = Arc::new(ReceiveTemplate {
        receive: Receive {
            group: resource(&args.group),
            topic: resource(&args.topic),
            tag: args.tag.clone(),
            batch: i32::try_from(args.batch).unwrap_or(i32::MAX),
            invisible: Duration::from_secs(args.invisible),
            long_poll: Duration::from_secs(args.long_poll),
        },
        timeout: Duration::from_secs(common.timeout),
    });

    let plan = Plan::new(common);
    let shared = Shared::new(plan, false);
    let bar = progress_bar(common, &plan);
    let mut workers = Vec::new();
    for client in &clients {
        for _ in 0..args.inflight {
            workers.push(tokio::spawn(receive_loop(
                client.clone(),
                Arc::clone(&template),
                Arc::clone(&shared),
            )));
        }
    }
    let measured = measure(&shared, watch, bar, workers, "msgs").await?;

    let setup = Setup {
        mode: "consumer",
        target,
        topic: args.topic.clone(),
        group: Some(args.group.clone()),
        message_size: None,
        queues: None,
        connections: common.connections,
        inflight: args.inflight,
        batch: Some(args.batch),
        message_groups: 0,
        flush,
        flush_source,
    };
    finish(common, setup, &plan, measured)
}

// ---- measuring and reporting -------------------------------------------------------------------

/// What a run measured, before it is turned into a report.
#[derive(Debug)]
struct Measured {
    tally: Tally,
    /// CPU seconds per broker pid over the measured window (`None`: the process went away).
    broker_cpu_s: Vec<Option<f64>>,
    client_cpu_s: Option<f64>,
    /// End of the measured window.
    ended: Instant,
    watch: Arc<BrokerWatch>,
}

/// Runs the workers to the end: CPU is read when warmup ends and again when the last worker is
/// done; the window ends at the last measured success (so an idle tail is not counted).
async fn measure(
    shared: &Arc<Shared>,
    mut watch: BrokerWatch,
    bar: ProgressBar,
    workers: Vec<tokio::task::JoinHandle<anyhow::Result<Tally>>>,
    unit: &'static str,
) -> anyhow::Result<Measured> {
    spawn_deadline(Arc::clone(shared));
    tokio::time::sleep_until(tokio::time::Instant::from_std(shared.plan.measure_from)).await;
    watch.mark_start();
    let client_start = cpu_seconds(std::process::id()).ok();
    let watch = Arc::new(watch);
    let ticker = spawn_ticker(Arc::clone(shared), Arc::clone(&watch), bar, unit);
    let mut tally = Tally::new()?;
    let mut first_error = None;
    for worker in workers {
        match worker.await {
            Ok(Ok(t)) => tally.merge(t)?,
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(anyhow!("a worker task failed: {e}"));
            }
        }
    }
    let ended = Instant::now();
    shared.signal_stop();
    watch.sample_rss();
    let broker_cpu_s = watch
        .pids
        .iter()
        .zip(&watch.cpu_start)
        .map(|(&pid, start)| Some(cpu_seconds(pid).ok()? - (*start)?))
        .collect();
    let client_cpu_s = client_start.and_then(|s| Some(cpu_seconds(std::process::id()).ok()? - s));
    let _ = ticker.await;
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(Measured {
        ended: tally.last_ok.unwrap_or(ended),
        tally,
        broker_cpu_s,
        client_cpu_s,
        watch,
    })
}

/// The run's configuration as the report shows it.
#[derive(Debug, Serialize)]
struct Setup {
    mode: &'static str,
    target: String,
    topic: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queues: Option<u32>,
    connections: u32,
    inflight: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch: Option<u32>,
    message_groups: u32,
    flush: String,
    flush_source: String,
}

#[derive(Debug, Serialize)]
struct Latency {
    count: u64,
    mean_ms: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        #[allow(clippy::cast_precision_loss)]
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Latency {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        })
    }
}

#[derive(Debug, Serialize)]
struct BrokerProcess {
    pid: u32,
    /// `None` when the process went away during the run.
    cpu_s: Option<f64>,
    /// VmRSS at the end and its peak while measuring (sampled every 250 ms).
    rss_end_kib: Option<u64>,
    rss_max_kib: Option<u64>,
    /// RssAnon (VmRSS less mapped files and shared memory) at the end and its peak.
    rss_anon_end_kib: Option<u64>,
    rss_anon_max_kib: Option<u64>,
    /// The kernel's VmRSS high-water mark over the process's life (VmHWM).
    rss_hwm_kib: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Report {
    #[serde(flatten)]
    setup: Setup,
    warmup_s: f64,
    elapsed_s: f64,
    ok: u64,
    errors: u64,
    errors_by_code: BTreeMap<String, u64>,
    error_samples: BTreeMap<String, String>,
    msgs_per_s: f64,
    mb_per_s: f64,
    /// Producer: SendMessage round trip. Consumer: ReceiveMessage round trip (non-empty ones).
    latency: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ack_latency: Option<Latency>,
    /// Consumer: born timestamp to received, per message (millisecond resolution).
    #[serde(skip_serializing_if = "Option::is_none")]
    e2e_latency: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    empty_polls: Option<u64>,
    broker_pids: Vec<BrokerProcess>,
    /// All --broker-pids together, over the measured window.
    broker_cpu_s: Option<f64>,
    broker_cpu_us_per_msg: Option<f64>,
    client_cpu_s: Option<f64>,
    client_cpu_us_per_msg: Option<f64>,
}

fn finish(
    common: &Common,
    setup: Setup,
    plan: &Plan,
    measured: Measured,
) -> anyhow::Result<ExitCode> {
    let consumer = setup.mode == "consumer";
    let report = build_report(setup, plan, measured, consumer);
    if common.json {
        println!(
            "{}",
            serde_json::to_string(&report).context("cannot encode the report as JSON")?
        );
    } else {
        print_report(&report);
    }
    Ok(if report.ok > 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("mqbench: no operation succeeded");
        ExitCode::FAILURE
    })
}

#[allow(clippy::cast_precision_loss)]
fn build_report(setup: Setup, plan: &Plan, measured: Measured, consumer: bool) -> Report {
    let Measured {
        tally,
        broker_cpu_s,
        client_cpu_s,
        ended,
        watch,
    } = measured;
    let elapsed_s = ended
        .saturating_duration_since(plan.measure_from)
        .as_secs_f64();
    let per_s = |v: f64| if elapsed_s > 0.0 { v / elapsed_s } else { 0.0 };
    let per_msg_us = |cpu: f64| (tally.ok > 0).then(|| cpu * 1e6 / tally.ok as f64);
    let peak = |v: &AtomicU64| Some(v.load(Ordering::Relaxed)).filter(|v| *v > 0);
    let broker_pids: Vec<BrokerProcess> = watch
        .pids
        .iter()
        .enumerate()
        .map(|(i, &pid)| {
            let [rss, anon, hwm] = status_kib(pid, ["VmRSS", "RssAnon", "VmHWM"]);
            BrokerProcess {
                pid,
                cpu_s: broker_cpu_s.get(i).copied().flatten(),
                rss_end_kib: rss,
                rss_max_kib: peak(&watch.rss_max_kib[i]),
                rss_anon_end_kib: anon,
                rss_anon_max_kib: peak(&watch.rss_anon_max_kib[i]),
                rss_hwm_kib: hwm,
            }
        })
        .collect();
    let broker_cpu = (!broker_cpu_s.is_empty() && broker_cpu_s.iter().all(Option::is_some))
        .then(|| broker_cpu_s.iter().flatten().sum::<f64>());
    Report {
        warmup_s: plan.warmup.as_secs_f64(),
        elapsed_s,
        ok: tally.ok,
        errors: tally.errors.values().sum(),
        msgs_per_s: per_s(tally.ok as f64),
        mb_per_s: per_s(tally.bytes as f64) / 1e6,
        latency: Latency::of(&tally.latency_us),
        ack_latency: consumer
            .then(|| Latency::of(&tally.ack_latency_us))
            .flatten(),
        e2e_latency: consumer.then(|| Latency::of(&tally.e2e_us)).flatten(),
        empty_polls: consumer.then_some(tally.empty_polls),
        errors_by_code: tally.errors,
        error_samples: tally.samples,
        broker_pids,
        broker_cpu_us_per_msg: broker_cpu.and_then(per_msg_us),
        broker_cpu_s: broker_cpu,
        client_cpu_us_per_msg: client_cpu_s.and_then(per_msg_us),
        client_cpu_s,
        setup,
    }
}

fn latency_line(what: &str, l: Option<&Latency>) {
    match l {
        Some(l) => println!(
            "{what:<12} p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}  (ms, {} samples)",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms, l.count
        ),
        None => println!("{what:<12} -"),
    }
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "-".to_string(), |k| format!("{:.1}", k as f64 / 1024.0))
}

#[allow(clippy::cast_precision_loss)]
fn print_report(r: &Report) {
    let s = &r.setup;
    let what = match (s.mode, s.message_size) {
        ("producer", Some(size)) => format!(
            "{size} B messages to {} ({} queues), {} per request{}",
            s.topic,
            s.queues.unwrap_or(0),
            s.batch.unwrap_or(1),
            if s.message_groups > 0 {
                format!(", FIFO over {} message groups", s.message_groups)
            } else {
                String::new()
            }
        ),
        _ => format!(
            "{} as {}, batch {}",
            s.topic,
            s.group.as_deref().unwrap_or("-"),
            s.batch.unwrap_or(0)
        ),
    };
    println!(
        "mqbench {}: {what}; {} connection(s) × {} in flight to {}",
        s.mode, s.connections, s.inflight, s.target
    );
    println!("flush        {} (from {})", s.flush, s.flush_source);
    println!(
        "measured     {:.2} s after {:.0} s warmup",
        r.elapsed_s, r.warmup_s
    );
    println!(
        "throughput   {:.0} msgs/s  {:.2} MB/s  (ok {}, errors {})",
        r.msgs_per_s, r.mb_per_s, r.ok, r.errors
    );
    let primary = if s.mode == "producer" {
        "send"
    } else {
        "receive"
    };
    latency_line(primary, r.latency.as_ref());
    if s.mode == "consumer" {
        latency_line("ack", r.ack_latency.as_ref());
        latency_line("born→recv", r.e2e_latency.as_ref());
        println!("empty polls  {}", r.empty_polls.unwrap_or(0));
    }
    for (code, n) in &r.errors_by_code {
        let sample = r.error_samples.get(code).map_or("", String::as_str);
        println!("error        {code} × {n}: {sample}");
    }
    if !r.broker_pids.is_empty() {
        match (r.broker_cpu_s, r.broker_cpu_us_per_msg) {
            (Some(cpu), Some(per)) => println!(
                "broker CPU   {cpu:.2} s over {} process(es) = {per:.1} µs/msg ({:.0} % of one core)",
                r.broker_pids.len(),
                if r.elapsed_s > 0.0 {
                    cpu / r.elapsed_s * 100.0
                } else {
                    0.0
                }
            ),
            _ => println!("broker CPU   - (a process went away during the run)"),
        }
        for p in &r.broker_pids {
            println!(
                "broker {:<6} cpu {} s  RSS end {} MiB (anon {})  max {} MiB (anon {})  hwm {} MiB",
                p.pid,
                p.cpu_s
                    .map_or_else(|| "-".to_string(), |c| format!("{c:.2}")),
                mib(p.rss_end_kib),
                mib(p.rss_anon_end_kib),
                mib(p.rss_max_kib),
                mib(p.rss_anon_max_kib),
                mib(p.rss_hwm_kib)
            );
        }
    }
    if let (Some(cpu), Some(per)) = (r.client_cpu_s, r.client_cpu_us_per_msg) {
        println!("client CPU   {cpu:.2} s = {per:.1} µs/msg");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_ticks_counts_from_the_last_parenthesis() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 \
                    250 75 0 0 20 0 9 0 100 1000 200";
        assert_eq!(stat_cpu_ticks(stat), Some(325));
        assert_eq!(stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = "Name:\tmqbroker\nVmHWM:\t  65536 kB\nVmRSS:\t  40960 kB\n";
        assert_eq!(status_field_kib(status, "VmRSS"), Some(40960));
        assert_eq!(status_field_kib(status, "VmHWM"), Some(65536));
        assert_eq!(status_field_kib(status, "VmSwap"), None);
    }

    #[test]
    fn config_arg_takes_every_spelling_of_c() {
        let argv = |a: &[&str]| a.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
        assert_eq!(
            config_arg(&argv(&["mqbroker", "-c", "a.conf"])).as_deref(),
            Some("a.conf")
        );
        assert_eq!(
            config_arg(&argv(&["mqbroker", "--config=b.conf"])).as_deref(),
            Some("b.conf")
        );
        assert_eq!(
            config_arg(&argv(&["mqbroker", "-cc.conf"])).as_deref(),
            Some("c.conf")
        );
        assert_eq!(config_arg(&argv(&["mqbroker", "-p"])), None);
    }

    #[test]
    fn only_ok_is_a_success() {
        let ok = v2::Status {
            code: v2::Code::Ok as i32,
            message: "OK".into(),
        };
        assert!(v2_failure(Some(&ok)).is_none());
        let busy = v2::Status {
            code: v2::Code::TooManyRequests as i32,
            message: "busy".into(),
        };
        let f = v2_failure(Some(&busy)).expect("a failure");
        assert_eq!(f.code, "TOO_MANY_REQUESTS");
        assert_eq!(
            v2_failure(None).expect("missing status fails").code,
            "NO_STATUS"
        );
        let odd = v2::Status {
            code: 99_999,
            message: String::new(),
        };
        assert_eq!(v2_failure(Some(&odd)).expect("fails").code, "CODE_99999");
    }

    #[test]
    fn a_count_bounds_measured_operations_only() {
        let common = Common::try_parse_from_args(["--count", "3", "--warmup", "0"]);
        let plan = Plan::new(&common);
        assert!(plan.stop_at.is_none());
        let shared = Shared::new(plan, true);
        let admitted: Vec<Option<bool>> = (0..5).map(|_| shared.admit(1)).collect();
        assert_eq!(admitted, [Some(true), Some(true), Some(true), None, None]);
    }

    #[test]
    fn without_count_or_duration_a_run_lasts_twenty_seconds() {
        let common = Common::try_parse_from_args([]);
        let plan = Plan::new(&common);
        assert_eq!(plan.duration, Some(Duration::from_secs(DEFAULT_DURATION_S)));
    }

    impl Common {
        fn try_parse_from_args<const N: usize>(args: [&str; N]) -> Common {
            #[derive(Debug, Parser)]
            struct Wrapper {
                #[command(flatten)]
                common: Common,
            }
            let argv = std::iter::once("mqbench").chain(args);
            Wrapper::try_parse_from(argv).expect("valid args").common
        }
    }

    #[test]
    fn bodies_have_the_asked_size() {
        assert_eq!(body(1).len(), 1);
        assert_eq!(body(1024).len(), 1024);
        assert_eq!(body(128)[..6], *b"RaftMQ");
    }
}
