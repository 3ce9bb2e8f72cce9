//! mqbench's command line: the options every mode shares ([`Common`]) and each mode's own.

use clap::ValueEnum;
use serde::Serialize;

/// Which of the `-n` addresses the connections go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Target {
    /// The Raft leader only (found with ClusterList): no follower forwarding in the path.
    Leader,
    /// Connections spread round-robin over every address: followers forward to the leader.
    All,
}

/// What the load speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Protocol {
    /// RocketMQ 5 gRPC (SendMessage, ReceiveMessage + AckMessage).
    Grpc,
    /// RocketMQ 4.x remoting (SEND_MESSAGE_V2, PULL_MESSAGE + UPDATE_CONSUMER_OFFSET).
    Remoting,
}

impl Protocol {
    /// The `--protocol` value.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Remoting => "remoting",
        }
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct Common {
    /// Broker addresses HOST:PORT, `;`-separated (any broker's listenPort); with
    /// `--protocol remoting` also NameServer addresses. Defaults to $NAMESRV_ADDR.
    #[arg(short = 'n', long = "namesrvAddr", value_name = "HOST:PORT[;…]")]
    pub(crate) namesrv_addr: Option<String>,

    /// The protocol of the load.
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    pub(crate) protocol: Protocol,

    /// Which broker addresses to load (with a NameServer: each group's master, broker id 0).
    #[arg(long, value_enum, default_value_t = Target::Leader)]
    pub(crate) target: Target,

    /// Connections: gRPC channels, or remoting connections per broker group.
    #[arg(
        long,
        default_value_t = 4,
        value_parser = clap::value_parser!(u32).range(1..=1024)
    )]
    pub(crate) connections: u32,

    /// Stop after this many measured messages (sent, or received and acked).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,

    /// Stop after this many measured seconds (default 20 when --count is not given).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) duration: Option<u64>,

    /// Seconds of load before measuring starts; excluded from every figure.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub(crate) warmup: u64,

    /// Deadline of one request, in seconds.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub(crate) timeout: u64,

    /// Worker threads of the client's async runtime.
    #[arg(
        long = "client-threads",
        default_value_t = 2,
        value_parser = clap::value_parser!(u32).range(1..=256)
    )]
    pub(crate) client_threads: u32,

    /// Broker process ids (`pid,pid,pid`): their CPU time (utime + stime) and RSS are reported.
    #[arg(long = "broker-pids", value_delimiter = ',', value_name = "PID,…")]
    pub(crate) broker_pids: Vec<u32>,

    /// The flush policy to print in the report. Without it, mqbench asks the first
    /// `--broker-pids` process's binary for its effective config (`mqbroker -c FILE -p`).
    #[arg(long, value_name = "LABEL")]
    pub(crate) flush: Option<String>,

    /// Print the report as one JSON object (and no progress bar).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ProducerArgs {
    #[command(flatten)]
    pub(crate) common: Common,

    /// Message body size in bytes.
    #[arg(
        short = 's',
        long = "size",
        default_value_t = 1024,
        value_parser = clap::value_parser!(u32).range(1..=(64 << 20))
    )]
    pub(crate) size: u32,

    /// Topic; created (or its queue count set) with the admin UpdateTopic before the run.
    #[arg(short = 't', long = "topic", default_value = "BenchmarkTest")]
    pub(crate) topic: String,

    /// Queue count of the topic.
    #[arg(
        short = 'q',
        long = "queues",
        default_value_t = 8,
        value_parser = clap::value_parser!(u32).range(1..=1024)
    )]
    pub(crate) queues: u32,

    /// Concurrent sends in flight on each connection.
    #[arg(
        long,
        default_value_t = 64,
        value_parser = clap::value_parser!(u32).range(1..=4096)
    )]
    pub(crate) inflight: u32,

    /// gRPC: resend a request whose call failed (transport error, deadline) up to this many
    /// times, each time on the next `-n` address, with the same message ids — what an SDK given
    /// the group's addresses does (its maxAttempts is this + 1). 0: a failed call is a failure.
    #[arg(
        long,
        default_value_t = 0,
        value_parser = clap::value_parser!(u32).range(0..=16)
    )]
    pub(crate) retries: u32,

    /// Messages per SendMessage request. The protocol allows several (each gets its own result
    /// entry); the SDKs send one, so 1 is what an application sees.
    #[arg(
        long,
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..=1024)
    )]
    pub(crate) batch: u32,

    /// Send FIFO messages spread round-robin over this many message groups (0: normal messages).
    #[arg(long = "message-groups", default_value_t = 0)]
    pub(crate) message_groups: u32,

    /// Message tag.
    #[arg(long)]
    pub(crate) tag: Option<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ConsumerArgs {
    #[command(flatten)]
    pub(crate) common: Common,

    /// Topic.
    #[arg(short = 't', long = "topic", default_value = "BenchmarkTest")]
    pub(crate) topic: String,

    /// Consumer group.
    #[arg(short = 'g', long = "group", default_value = "BenchmarkConsumer")]
    pub(crate) group: String,

    /// Receive loops on each connection (each: receive a batch, ack it, repeat).
    #[arg(
        long,
        default_value_t = 4,
        value_parser = clap::value_parser!(u32).range(1..=1024)
    )]
    pub(crate) inflight: u32,

    /// Messages one ReceiveMessage asks for (the SDKs' default is 32; the broker caps at 1024).
    #[arg(
        short = 'b',
        long = "batch",
        default_value_t = 32,
        value_parser = clap::value_parser!(u32).range(1..=1024)
    )]
    pub(crate) batch: u32,

    /// Long-polling timeout of one receive, in seconds (the broker clamps it to 5..=20).
    #[arg(
        long = "long-poll",
        value_name = "SECS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u64).range(1..=20)
    )]
    pub(crate) long_poll: u64,

    /// Invisible duration of received messages, in seconds (10 s to 12 h).
    #[arg(
        long = "invisible",
        value_name = "SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(10..=43_200)
    )]
    pub(crate) invisible: u64,

    /// Tag filter (`a||b`; `*` for all).
    #[arg(long, default_value = "*")]
    pub(crate) tag: String,
}
