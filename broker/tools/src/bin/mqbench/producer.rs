//! The producer: one SendMessage per batch on every worker, each result counted.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proto::apache::rocketmq::v2;
use raftmq_client::{ClientIdentity, MessageSpec, MessagingClient, resource};

use crate::args::{Common, ProducerArgs, Protocol};
use crate::connect::{channels, create_topic, query_route, targets};
use crate::plan::{Failure, Plan, Shared, Tally, client_failure, micros, v2_failure};
use crate::procfs::{BrokerWatch, flush_policy};
use crate::progress::progress_bar;
use crate::report::{Setup, finish, measure, spawn_workers};
use crate::worker::{Sender, body};

/// Pause after a failed call so that a dead connection does not turn into a busy loop. The failed
/// call is counted; the next one is a new message, not a retry.
pub(crate) const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// What every send shares: the body, its digest, the topic, the message groups.
#[derive(Debug)]
pub(crate) struct SendTemplate {
    pub(crate) identity: Arc<ClientIdentity>,
    pub(crate) topic: v2::Resource,
    pub(crate) body: Bytes,
    pub(crate) digest: String,
    pub(crate) tag: Option<String>,
    pub(crate) message_groups: Vec<String>,
    pub(crate) timeout: Duration,
    /// Messages per request.
    pub(crate) batch: usize,
}

impl SendTemplate {
    /// The messages of one request.
    pub(crate) fn messages(&self) -> Vec<v2::Message> {
        (0..self.batch).map(|_| self.message()).collect()
    }

    pub(crate) fn message(&self) -> v2::Message {
        let (message_id, sequence) = self.identity.message_id();
        let message_group = (!self.message_groups.is_empty())
            .then(|| self.message_groups[sequence as usize % self.message_groups.len()].clone());
        let spec = MessageSpec {
            message_id,
            tag: self.tag.clone(),
            keys: Vec::new(),
            message_group,
            transactional: false,
            body_crc32: Some(self.digest.clone()),
            born_host: self.identity.host.clone(),
            delivery_ms: None,
        };
        raftmq_client::message(self.topic.clone(), self.body.clone(), spec)
    }
}

/// A gRPC sender: SendMessage on its channel; with `--retries`, a failed call is resent on the
/// next of `clients` (one per other address).
#[derive(Debug)]
pub(crate) struct GrpcSender {
    /// Its own channel's client first, then one per other address.
    clients: Vec<MessagingClient>,
    template: Arc<SendTemplate>,
    retries: u32,
    retried: u64,
}

impl GrpcSender {
    /// Sends `messages`, resending them (the same ids) on the next client after a failed call,
    /// at most `retries` times.
    async fn send_with_retries(
        &mut self,
        messages: Vec<v2::Message>,
    ) -> Result<v2::SendMessageResponse, raftmq_client::ClientError> {
        let timeout = self.template.timeout;
        let mut attempt = 0;
        loop {
            let i = attempt % self.clients.len();
            let client = &mut self.clients[i];
            let outcome = client.send(messages.clone(), timeout).await;
            if outcome.is_ok() || attempt == self.retries as usize {
                return outcome;
            }
            attempt += 1;
            self.retried += 1;
        }
    }
}

impl Sender for GrpcSender {
    fn batch(&self) -> u64 {
        self.template.batch as u64
    }

    fn body_len(&self) -> u64 {
        self.template.body.len() as u64
    }

    fn take_retried(&mut self) -> u64 {
        std::mem::take(&mut self.retried)
    }

    async fn send(&mut self) -> (Vec<Option<Failure>>, bool) {
        let batch = self.template.batch;
        let messages = self.template.messages();
        let outcome = if self.retries == 0 {
            self.clients[0].send(messages, self.template.timeout).await
        } else {
            self.send_with_retries(messages).await
        };
        // One outcome per message: its result entry's status (the top status when the broker
        // sent no entries), or the transport error for every message of the request.
        match &outcome {
            Ok(response) => (
                (0..batch)
                    .map(|i| {
                        let status = response
                            .entries
                            .get(i)
                            .and_then(|e| e.status.as_ref())
                            .or(response.status.as_ref());
                        v2_failure(status)
                    })
                    .collect(),
                false,
            ),
            Err(error) => (
                (0..batch).map(|_| Some(client_failure(error))).collect(),
                true,
            ),
        }
    }
}

pub(crate) async fn send_loop(
    mut sender: impl Sender,
    shared: Arc<Shared>,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    let body_len = sender.body_len();
    while let Some(measured) = shared.admit(sender.batch()) {
        let started = Instant::now();
        let (failures, transport_error) = sender.send().await;
        let done = Instant::now();
        let retried = sender.take_retried();
        if measured {
            tally.retried += retried;
        }
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

pub(crate) async fn produce(args: ProducerArgs) -> anyhow::Result<ExitCode> {
    let common = &args.common;
    if args.size as usize > 4 << 20 {
        eprintln!(
            "mqbench: -s {} exceeds the broker's default maxMessageSize (4 MiB); expect MESSAGE_BODY_TOO_LARGE",
            args.size
        );
    }
    let (flush, flush_source) = flush_policy(common.flush.as_deref(), &common.broker_pids);
    let watch = BrokerWatch::new(&common.broker_pids)?;
    let setup = |target| Setup {
        mode: "producer",
        protocol: common.protocol,
        target,
        topic: args.topic.clone(),
        group: None,
        message_size: Some(args.size),
        queues: Some(args.queues),
        connections: common.connections,
        inflight: args.inflight,
        batch: Some(args.batch),
        message_groups: args.message_groups,
        flush: flush.clone(),
        flush_source: flush_source.clone(),
    };
    match common.protocol {
        Protocol::Grpc => {
            let (senders, target) = grpc_senders(&args).await?;
            run(common, senders, watch, setup(target)).await
        }
        Protocol::Remoting => {
            if args.retries > 0 {
                anyhow::bail!(
                    "--retries {} is for --protocol grpc (a 4.x client retries through its \
                     NameServer route, which mqbench's remoting load does not model)",
                    args.retries
                );
            }
            let (senders, target) = crate::remoting::senders(&args).await?;
            run(common, senders, watch, setup(target)).await
        }
    }
}

/// `--inflight` senders on each of `--connections` gRPC channels, after creating the topic and
/// asking its route as an SDK does.
async fn grpc_senders(args: &ProducerArgs) -> anyhow::Result<(Vec<GrpcSender>, String)> {
    let common = &args.common;
    let (addrs, target) = targets(common).await?;
    create_topic(&addrs[0], &args.topic, args.queues).await?;
    let identity = Arc::new(ClientIdentity::new(0)?);
    let body = body(args.size as usize);
    let template = Arc::new(SendTemplate {
        digest: format!("{:08X}", crc32fast::hash(&body)),
        body,
        identity: Arc::clone(&identity),
        topic: resource(&args.topic),
        tag: args.tag.clone(),
        message_groups: (0..args.message_groups)
            .map(|g| format!("mqbench-{g}"))
            .collect(),
        timeout: Duration::from_secs(common.timeout),
        batch: args.batch as usize,
    });
    let mut clients = Vec::new();
    for (addr, channel) in channels(&addrs, common.connections).await? {
        let mut client = MessagingClient::new(addr.clone(), channel, Arc::clone(&identity));
        query_route(&mut client, &args.topic).await?;
        clients.push((addr, client));
    }
    // Per address, the first connection's client: where the others resend.
    let mut fallbacks: Vec<(String, MessagingClient)> = Vec::new();
    for (addr, client) in &clients {
        if !fallbacks.iter().any(|(a, _)| a == addr) {
            fallbacks.push((addr.clone(), client.clone()));
        }
    }
    let mut senders = Vec::new();
    for (addr, client) in &clients {
        let mut own = vec![client.clone()];
        own.extend(
            fallbacks
                .iter()
                .filter(|(a, _)| a != addr)
                .map(|(_, c)| c.clone()),
        );
        for _ in 0..args.inflight {
            senders.push(GrpcSender {
                clients: own.clone(),
                template: Arc::clone(&template),
                retries: args.retries,
                retried: 0,
            });
        }
    }
    Ok((senders, target))
}

/// Runs `senders` to the end of the plan and reports.
async fn run<S: Sender>(
    common: &Common,
    senders: Vec<S>,
    watch: BrokerWatch,
    setup: Setup,
) -> anyhow::Result<ExitCode> {
    let plan = Plan::new(common);
    let shared = Shared::new(plan, true);
    let bar = progress_bar(common, &plan);
    let workers = spawn_workers(senders, |sender| send_loop(sender, Arc::clone(&shared)));
    let measured = measure(&shared, watch, bar, workers, "msgs").await?;
    finish(common, setup, &plan, measured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_asked_size() {
        assert_eq!(body(1).len(), 1);
        assert_eq!(body(1024).len(), 1024);
        assert_eq!(body(128)[..6], *b"RaftMQ");
    }
}
