//! The consumer: long polls and acks as a SimpleConsumer, each result counted.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proto::apache::rocketmq::v2;
use raftmq_client::{ClientIdentity, MessagingClient, Receive, resource};

use crate::args::{Common, ConsumerArgs, Protocol};
use crate::connect::{channels, query_route, targets};
use crate::plan::{Failure, Plan, Shared, Tally, client_failure, micros, v2_failure};
use crate::procfs::{BrokerWatch, flush_policy};
use crate::progress::progress_bar;
use crate::report::{Setup, finish, measure, spawn_workers};
use crate::worker::{BROKER_DEADLINE_MARGIN, Receiver};

/// Pause of a consumer after a refused receive or ack (a wrong topic or group would otherwise
/// spin).
pub(crate) const CONSUMER_ERROR_PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub(crate) struct ReceiveTemplate {
    pub(crate) receive: Receive,
    /// The deadline of each ack.
    pub(crate) timeout: Duration,
}

/// One receive: the messages, or a failure.
pub(crate) async fn receive_once(
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
pub(crate) async fn ack_batch(
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
pub(crate) fn e2e_us(m: &v2::Message) -> Option<u64> {
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

/// A gRPC receiver: ReceiveMessage and AckMessage on one channel, as a SimpleConsumer.
#[derive(Debug)]
pub(crate) struct GrpcReceiver {
    client: MessagingClient,
    template: Arc<ReceiveTemplate>,
}

impl Receiver for GrpcReceiver {
    type Message = v2::Message;

    async fn receive(&mut self) -> Result<Vec<v2::Message>, Failure> {
        receive_once(&mut self.client, &self.template).await
    }

    async fn ack(&mut self, messages: &[v2::Message]) -> Result<Vec<Option<Failure>>, Failure> {
        ack_batch(&mut self.client, &self.template, messages).await
    }

    fn body_len(message: &v2::Message) -> u64 {
        message.body.len() as u64
    }

    fn e2e_us(message: &v2::Message) -> Option<u64> {
        e2e_us(message)
    }
}

pub(crate) async fn receive_loop<R: Receiver>(
    mut receiver: R,
    shared: Arc<Shared>,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    let mut stop = shared.stop.subscribe();
    while let Some(measured) = shared.admit(1) {
        let started = Instant::now();
        let received = tokio::select! {
            r = receiver.receive() => r,
            // Abandon a long poll at the end of the run; what it would have received stays
            // invisible for --invisible seconds (gRPC) or unpulled (remoting).
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
                if let Some(us) = R::e2e_us(m) {
                    tally.e2e_us.saturating_record(us);
                }
            }
        }
        let ack_started = Instant::now();
        let acked = receiver.ack(&messages).await;
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
                        tally.bytes += R::body_len(m);
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

pub(crate) async fn consume(args: ConsumerArgs) -> anyhow::Result<ExitCode> {
    let common = &args.common;
    let (flush, flush_source) = flush_policy(common.flush.as_deref(), &common.broker_pids);
    let watch = BrokerWatch::new(&common.broker_pids)?;
    let setup = |target| Setup {
        mode: "consumer",
        protocol: common.protocol,
        target,
        topic: args.topic.clone(),
        group: Some(args.group.clone()),
        message_size: None,
        queues: None,
        connections: common.connections,
        inflight: args.inflight,
        batch: Some(args.batch),
        message_groups: 0,
        flush: flush.clone(),
        flush_source: flush_source.clone(),
    };
    match common.protocol {
        Protocol::Grpc => {
            let (receivers, target) = grpc_receivers(&args).await?;
            run(common, receivers, watch, setup(target)).await
        }
        Protocol::Remoting => {
            let (receivers, target) = crate::remoting::receivers(&args).await?;
            run(common, receivers, watch, setup(target)).await
        }
    }
}

/// `--inflight` receivers on each of `--connections` gRPC channels, after asking the topic's
/// route as an SDK does.
async fn grpc_receivers(args: &ConsumerArgs) -> anyhow::Result<(Vec<GrpcReceiver>, String)> {
    let common = &args.common;
    let (addrs, target) = targets(common).await?;
    let identity = Arc::new(ClientIdentity::new(0)?);
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
    let mut receivers = Vec::new();
    for (addr, channel) in channels(&addrs, common.connections).await? {
        let mut client = MessagingClient::new(addr, channel, Arc::clone(&identity));
        query_route(&mut client, &args.topic).await?;
        for _ in 0..args.inflight {
            receivers.push(GrpcReceiver {
                client: client.clone(),
                template: Arc::clone(&template),
            });
        }
    }
    Ok((receivers, target))
}

/// Runs `receivers` to the end of the plan and reports.
async fn run<R: Receiver>(
    common: &Common,
    receivers: Vec<R>,
    watch: BrokerWatch,
    setup: Setup,
) -> anyhow::Result<ExitCode> {
    let plan = Plan::new(common);
    let shared = Shared::new(plan, false);
    let bar = progress_bar(common, &plan);
    let workers = spawn_workers(receivers, |r| receive_loop(r, Arc::clone(&shared)));
    let measured = measure(&shared, watch, bar, workers, "msgs").await?;
    finish(common, setup, &plan, measured)
}
