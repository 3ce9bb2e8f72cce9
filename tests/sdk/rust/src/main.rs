//! The official RocketMQ 5 Rust SDK (crates.io `rocketmq` 5.0.0) against a running RaftMQ group.
//!
//! Usage:
//!   raftmq-rust-sdk-smoke smoke ACCESS_URL
//!   raftmq-rust-sdk-smoke failover ACCESS_URL --seconds S --ready-file F --killed-file K
//!   raftmq-rust-sdk-smoke transaction ACCESS_URL --check-interval S [--ready-file F --killed-file K]
//!
//! ACCESS_URL is what an application gives `ClientOption::set_access_url`: `host:port`, or the
//! group's nodes joined by commas (`127.0.0.1:30911,127.0.0.1:30921,127.0.0.1:30931`).
//!
//! `smoke` sends a normal, three FIFO (one message group) and a delay (+3 s) message, receives
//! them with a SimpleConsumer, acks all but one, and checks that the unacked one comes back with
//! delivery_attempt 2. (This SDK has no change-invisible-duration call.)
//!
//! `failover` sends and receives concurrently for S seconds; it touches F once 20 sends were
//! acknowledged, and the test harness then SIGKILLs the leader and touches K. Afterwards it
//! drains. It fails unless every acknowledged send was received, and unless sends and receives
//! succeeded again after K appeared. Failed sends are unknown outcomes: they may or may not
//! arrive, and neither is an error (this SDK never retries a send).
//!
//! `transaction` runs a transactional producer (`Producer::new_transaction_producer`, with a
//! TransactionChecker) and a SimpleConsumer: four half messages (`send_transaction_message`); a
//! receive before any commit gets none of them; the producer commits one (delivered exactly
//! once) and rolls one back (never delivered); the two left open are checked back by the broker
//! and the checker's answers hold (one delivered exactly once, one never). After all that it
//! keeps receiving for three check intervals (S, the brokers' transactionCheckInterval in
//! seconds): nothing rolled back may arrive and nothing arrive twice; the broker must not ask
//! about a transaction after the producer ended it (but for a check round already under way)
//! and, without a kill, must ask once about each one left open. With --ready-file/--killed-file
//! it touches F after the half messages and that first receive, waits for K (the harness
//! SIGKILLs the leader in between) and then ends the transactions; the check rounds must go on
//! under the new leader. This SDK's `Transaction::commit`/`rollback` take the transaction by
//! value, so a failed end cannot be retried: its outcome is unknown and the broker's check-back
//! settles it (the checker answers for those two as well).
//!
//! One line per check on stdout; the SDK's own log goes to stderr. Exit 0 on PASS.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rocketmq::conf::{ClientOption, ProducerOption, SimpleConsumerOption};
use rocketmq::model::common::{FilterExpression, FilterType};
use rocketmq::model::message::{MessageBuilder, MessageView};
use rocketmq::model::transaction::{Transaction, TransactionChecker, TransactionResolution};
use rocketmq::{Producer, SimpleConsumer};

const INVISIBLE: Duration = Duration::from_secs(15);
const REDELIVERY_INVISIBLE: Duration = Duration::from_secs(10);

fn log(line: impl AsRef<str>) {
    println!("[rust-sdk] {}", line.as_ref());
}

type Result<T> = std::result::Result<T, String>;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let outcome = match args.get(1).map(String::as_str) {
        Some("smoke") if args.len() == 3 => smoke(&args[2]).await,
        Some("failover") if args.len() == 9 => match failover_args(&args[3..]) {
            Ok((seconds, ready, killed)) => failover(&args[2], seconds, &ready, &killed).await,
            Err(e) => Err(e),
        },
        Some("transaction") if args.len() == 5 || args.len() == 9 => {
            match transaction_args(&args[3..]) {
                Ok(tx_args) => transaction(&args[2], tx_args).await,
                Err(e) => Err(e),
            }
        }
        _ => Err(
            "usage: smoke URL | failover URL --seconds S --ready-file F --killed-file K | \
                  transaction URL --check-interval S [--ready-file F --killed-file K]"
                .into(),
        ),
    };
    match outcome {
        Ok(()) => {
            log("PASS");
            ExitCode::SUCCESS
        }
        Err(e) => {
            log(format!("FAIL: {e}"));
            ExitCode::FAILURE
        }
    }
}

fn failover_args(rest: &[String]) -> Result<(u64, PathBuf, PathBuf)> {
    let (mut seconds, mut ready, mut killed) = (None, None, None);
    for pair in rest.chunks(2) {
        match pair[0].as_str() {
            "--seconds" => seconds = pair[1].parse().ok(),
            "--ready-file" => ready = Some(PathBuf::from(&pair[1])),
            "--killed-file" => killed = Some(PathBuf::from(&pair[1])),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    match (seconds, ready, killed) {
        (Some(s), Some(r), Some(k)) => Ok((s, r, k)),
        _ => Err("failover needs --seconds, --ready-file and --killed-file".into()),
    }
}

/// A `transaction` run's arguments: the brokers' check interval, and the harness's two files
/// when the leader is killed between the half messages and their end.
struct TxArgs {
    check_interval: Duration,
    kill: Option<(PathBuf, PathBuf)>,
}

fn transaction_args(rest: &[String]) -> Result<TxArgs> {
    let (mut interval, mut ready, mut killed) = (None, None, None);
    for pair in rest.chunks(2) {
        match pair[0].as_str() {
            "--check-interval" => interval = pair[1].parse().ok().map(Duration::from_secs),
            "--ready-file" => ready = Some(PathBuf::from(&pair[1])),
            "--killed-file" => killed = Some(PathBuf::from(&pair[1])),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let kill = match (ready, killed) {
        (Some(r), Some(k)) => Some((r, k)),
        (None, None) => None,
        _ => return Err("--ready-file and --killed-file go together".into()),
    };
    match interval {
        Some(check_interval) => Ok(TxArgs {
            check_interval,
            kill,
        }),
        None => Err("transaction needs --check-interval".into()),
    }
}

fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:08x}",
        (nanos as u64 ^ u64::from(std::process::id())) & 0xffff_ffff
    )
}

fn client_option(url: &str) -> ClientOption {
    let mut option = ClientOption::default();
    option.set_access_url(url);
    option.set_enable_tls(false);
    option.set_long_polling_timeout(Duration::from_secs(5));
    option
}

async fn producer(url: &str, topic: &str) -> Result<Producer> {
    let mut option = ProducerOption::default();
    option.set_topics(vec![topic]);
    let mut producer = Producer::new(option, client_option(url)).map_err(|e| e.to_string())?;
    producer
        .start()
        .await
        .map_err(|e| format!("producer start: {e}"))?;
    Ok(producer)
}

async fn transaction_producer(
    url: &str,
    topic: &str,
    checker: Box<TransactionChecker>,
) -> Result<Producer> {
    let mut option = ProducerOption::default();
    option.set_topics(vec![topic]);
    let mut producer = Producer::new_transaction_producer(option, client_option(url), checker)
        .map_err(|e| e.to_string())?;
    producer
        .start()
        .await
        .map_err(|e| format!("producer start: {e}"))?;
    Ok(producer)
}

async fn consumer(url: &str, topic: &str, group: &str) -> Result<SimpleConsumer> {
    let mut option = SimpleConsumerOption::default();
    option.set_topics(vec![topic]);
    option.set_consumer_group(group);
    let mut consumer =
        SimpleConsumer::new(option, client_option(url)).map_err(|e| e.to_string())?;
    consumer
        .start()
        .await
        .map_err(|e| format!("consumer start: {e}"))?;
    Ok(consumer)
}

async fn receive(
    consumer: &SimpleConsumer,
    topic: &str,
    invisible: Duration,
) -> Result<Vec<MessageView>> {
    consumer
        .receive_with(
            topic,
            &FilterExpression::new(FilterType::Tag, "*"),
            32,
            invisible,
        )
        .await
        .map_err(|e| format!("receive: {e}"))
}

async fn smoke(url: &str) -> Result<()> {
    let run = run_id();
    let (topic, group) = (format!("SdkTopic_rs_{run}"), format!("SdkGroup_rs_{run}"));
    let producer = producer(url, &topic).await?;
    let mut sent = HashSet::new();
    let send = |builder: MessageBuilder| async {
        let message = builder
            .set_tag("smoke")
            .build()
            .map_err(|e| e.to_string())?;
        producer
            .send(message)
            .await
            .map(|r| r.message_id().to_string())
            .map_err(|e| e.to_string())
    };
    let normal = send(
        MessageBuilder::builder()
            .set_topic(&topic)
            .set_body(b"normal".to_vec()),
    )
    .await?;
    sent.insert(normal.clone());
    log(format!("sent normal {normal}"));
    for i in 0..3 {
        let body = format!("fifo-{i}").into_bytes();
        sent.insert(
            send(MessageBuilder::fifo_message_builder(
                &topic, body, "order-1",
            ))
            .await?,
        );
    }
    log("sent 3 FIFO messages in group order-1");
    let delay_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3;
    let delay_at = i64::try_from(delay_at).unwrap_or(i64::MAX);
    let delayed = send(MessageBuilder::delay_message_builder(
        &topic,
        b"delay".to_vec(),
        delay_at,
    ))
    .await?;
    sent.insert(delayed.clone());
    log(format!("sent delay message {delayed} (+3 s)"));
    producer
        .shutdown()
        .await
        .map_err(|e| format!("producer shutdown: {e}"))?;

    let consumer = consumer(url, &topic, &group).await?;
    let (mut seen, mut fifo, mut probe) = (HashSet::new(), Vec::new(), None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < sent.len() && Instant::now() < deadline {
        for m in receive(&consumer, &topic, REDELIVERY_INVISIBLE).await? {
            let body = String::from_utf8_lossy(m.body()).to_string();
            if let Some(i) = body.strip_prefix("fifo-") {
                fifo.push(i.parse::<u32>().map_err(|e| e.to_string())?);
            }
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if body == "delay" && i64::try_from(now).unwrap_or(0) < delay_at - 1 {
                return Err(format!(
                    "delay message arrived early (at {now}, due {delay_at})"
                ));
            }
            seen.insert(m.message_id().to_string());
            if body == "normal" && probe.is_none() {
                // Keep this one unacked: it must come back with delivery_attempt 2.
                probe = Some(m.message_id().to_string());
                continue;
            }
            consumer.ack(&m).await.map_err(|e| format!("ack: {e}"))?;
        }
    }
    if seen != sent {
        return Err(format!(
            "received {} of {} messages",
            seen.len(),
            sent.len()
        ));
    }
    if fifo != [0, 1, 2] {
        return Err(format!("FIFO order broken: {fifo:?}"));
    }
    log(format!(
        "received all {} messages; FIFO order {fifo:?}",
        sent.len()
    ));
    let probe = probe.ok_or("the normal message never came")?;
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut again = None;
    while again.is_none() && Instant::now() < deadline {
        for m in receive(&consumer, &topic, INVISIBLE).await? {
            if m.message_id() == probe {
                again = Some(m);
            } else {
                consumer.ack(&m).await.map_err(|e| format!("ack: {e}"))?;
            }
        }
    }
    let again = again.ok_or("the unacked message was not redelivered")?;
    if again.delivery_attempt() != 2 {
        return Err(format!(
            "redelivery has delivery_attempt {}, want 2",
            again.delivery_attempt()
        ));
    }
    consumer
        .ack(&again)
        .await
        .map_err(|e| format!("ack: {e}"))?;
    log("unacked message redelivered with delivery_attempt 2, then acked");
    consumer
        .shutdown()
        .await
        .map_err(|e| format!("consumer shutdown: {e}"))
}

/// What the two halves of a failover run saw.
#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    failed: u64,
    ok_after_kill: u64,
}

async fn failover(url: &str, seconds: u64, ready: &Path, killed: &Path) -> Result<()> {
    let run = run_id();
    let (topic, group) = (
        format!("SdkFail_rs_{run}"),
        format!("SdkFailGroup_rs_{run}"),
    );
    let producer = producer(url, &topic).await?;
    let consumer = consumer(url, &topic, &group).await?;
    let end = Instant::now() + Duration::from_secs(seconds);
    let acked = std::cell::RefCell::new(HashSet::new());
    let received = std::cell::RefCell::new(HashSet::new());
    let produce = async {
        let mut t = Tally::default();
        for i in 0..100_000u64 {
            if Instant::now() >= end {
                break;
            }
            let body = format!("m-{i}").into_bytes();
            let message = MessageBuilder::builder()
                .set_topic(&topic)
                .set_body(body)
                .build();
            let message = message.map_err(|e| e.to_string())?;
            match producer.send(message).await {
                Ok(r) => {
                    acked.borrow_mut().insert(r.message_id().to_string());
                    t.ok += 1;
                    t.ok_after_kill += u64::from(killed.exists());
                    if t.ok == 20 {
                        std::fs::write(ready, b"ready").map_err(|e| e.to_string())?;
                    }
                }
                Err(_) => {
                    t.failed += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok::<Tally, String>(t)
    };
    let consume = async {
        let mut t = Tally::default();
        while Instant::now() < end {
            match receive(&consumer, &topic, INVISIBLE).await {
                Ok(messages) => {
                    t.ok += 1;
                    t.ok_after_kill += u64::from(killed.exists() && !messages.is_empty());
                    for m in messages {
                        received.borrow_mut().insert(m.message_id().to_string());
                        if consumer.ack(&m).await.is_err() {
                            t.failed += 1; // it comes again after its invisible time
                        }
                    }
                }
                Err(_) => {
                    t.failed += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Ok::<Tally, String>(t)
    };
    let (sends, receives) = tokio::join!(produce, consume);
    let (sends, receives) = (sends?, receives?);
    log(format!("sends: {sends:?}; receives: {receives:?}"));
    let drain_end = Instant::now() + Duration::from_secs(45);
    while !acked.borrow().is_subset(&received.borrow()) && Instant::now() < drain_end {
        if let Ok(messages) = receive(&consumer, &topic, INVISIBLE).await {
            for m in messages {
                received.borrow_mut().insert(m.message_id().to_string());
                let _ = consumer.ack(&m).await;
            }
        }
    }
    let missing = acked.borrow().difference(&received.borrow()).count();
    log(format!(
        "acked sends {}, received {}, missing {missing}",
        acked.borrow().len(),
        received.borrow().len()
    ));
    if !killed.exists() {
        return Err("the harness never killed the leader".into());
    }
    if missing > 0 {
        return Err(format!("{missing} acknowledged sends were never received"));
    }
    if sends.ok_after_kill < 10 || receives.ok_after_kill == 0 {
        return Err(format!(
            "the client did not recover after the kill ({} sends, {} receives with messages)",
            sends.ok_after_kill, receives.ok_after_kill
        ));
    }
    let _ = producer.shutdown().await;
    let _ = consumer.shutdown().await;
    Ok(())
}

/// Every time the broker asked the checker: the body, and when (shared with the SDK's task).
type Asked = Arc<Mutex<Vec<(String, Instant)>>>;

/// A check round in flight when a transaction ended may still ask about it this long after.
const CHECK_GRACE: Duration = Duration::from_secs(2);

fn asks(asked: &Asked) -> Vec<(String, Instant)> {
    asked.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

fn was_asked(asked: &Asked, body: &str) -> bool {
    asks(asked).iter().any(|(b, _)| b == body)
}

/// What a `transaction` run's consumer saw, and the rules each delivery must keep.
struct Deliveries {
    asked: Asked,
    never: HashSet<String>,
    /// Ended by this producer: may arrive from its attempt to commit on.
    ended_by_us: HashSet<String>,
    seen: HashSet<String>,
    /// Acks that failed (tolerated only after a leader kill): such a message comes again after
    /// its invisible time.
    ack_failed: HashSet<String>,
    killed: bool,
}

impl Deliveries {
    async fn take(&mut self, consumer: &SimpleConsumer, messages: Vec<MessageView>) -> Result<()> {
        for m in messages {
            let body = String::from_utf8_lossy(m.body()).to_string();
            if self.never.contains(&body) {
                return Err(format!("delivered a rolled-back message: {body}"));
            }
            if !was_asked(&self.asked, &body) && !self.ended_by_us.contains(&body) {
                return Err(format!("delivered before it was committed: {body}"));
            }
            if !self.seen.insert(body.clone()) && !self.ack_failed.remove(&body) {
                return Err(format!("delivered twice: {body}"));
            }
            if let Err(e) = consumer.ack(&m).await {
                if !self.killed {
                    return Err(format!("ack of {body}: {e}"));
                }
                log(format!("ack of {body} failed: {e}"));
                self.ack_failed.insert(body);
            }
        }
        Ok(())
    }
}

/// Commits or rolls back, once: this SDK's Transaction is consumed by the call. True if this call
/// ended it. A check-back the checker answered may have ended it first; after a leader kill a
/// failed end is an unknown outcome, which the broker's check-back settles. Without a kill any
/// other failure fails.
async fn end_transaction(
    tx: impl Transaction,
    commit: bool,
    asked: &Asked,
    body: &str,
    killed: bool,
) -> Result<bool> {
    let what = if commit { "commit" } else { "rollback" };
    let ended = if commit {
        tx.commit().await
    } else {
        tx.rollback().await
    };
    match ended {
        Ok(()) => Ok(true),
        Err(e) if e.to_string().contains("no open transaction") && was_asked(asked, body) => {
            log(format!("{what}: a check-back ended it first"));
            Ok(false)
        }
        Err(e) if killed => {
            log(format!(
                "{what} failed, its outcome unknown; the check-back settles it: {e}"
            ));
            Ok(false)
        }
        Err(e) => Err(format!("{what}: {e}")),
    }
}

async fn transaction(url: &str, args: TxArgs) -> Result<()> {
    let run = run_id();
    let (topic, group) = (format!("TxTopic_rs_{run}"), format!("TxGroup_rs_{run}"));
    let body = |kind: &str| format!("{kind}-{run}");
    // The local transactions' outcomes: what the checker answers when the broker asks (also
    // about the two the producer ends itself, should a check-back come first).
    let committed: HashSet<String> = [body("commit"), body("orphan-commit")].into();
    let asked: Asked = Arc::default();
    let checker = {
        let (asked, committed) = (Arc::clone(&asked), committed.clone());
        move |_transaction_id: String, message: MessageView| {
            let body = String::from_utf8_lossy(message.body()).to_string();
            log(format!("checker asked about {body:?}"));
            let answer = if committed.contains(&body) {
                TransactionResolution::COMMIT
            } else {
                TransactionResolution::ROLLBACK
            };
            asked
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((body, Instant::now()));
            answer
        }
    };
    let producer = transaction_producer(url, &topic, Box::new(checker)).await?;
    let consumer = consumer(url, &topic, &group).await?;
    let mut txs = HashMap::new();
    for kind in ["commit", "rollback", "orphan-commit", "orphan-rollback"] {
        let message = MessageBuilder::transaction_message_builder(&topic, body(kind).into_bytes())
            .set_keys(vec![kind])
            .build()
            .map_err(|e| e.to_string())?;
        let tx = producer
            .send_transaction_message(message)
            .await
            .map_err(|e| format!("half message {kind}: {e}"))?;
        if tx.transaction_id().is_empty() {
            return Err(format!(
                "half message {kind}: no transaction id in the send receipt"
            ));
        }
        txs.insert(kind, tx);
    }
    log("4 half messages sent (transaction ids from the receipts)");
    let mut deliveries = Deliveries {
        asked: Arc::clone(&asked),
        never: [body("rollback"), body("orphan-rollback")].into(),
        ended_by_us: HashSet::new(),
        seen: HashSet::new(),
        ack_failed: HashSet::new(),
        killed: args.kill.is_some(),
    };

    // Before the producer ends anything, only what a check-back committed may arrive.
    let messages = receive(&consumer, &topic, INVISIBLE).await?;
    deliveries.take(&consumer, messages).await?;
    log(format!(
        "before the commit only check-back commits arrived: {:?}",
        deliveries.seen
    ));
    let killed = deliveries.killed;
    if let Some((ready, killed)) = &args.kill {
        std::fs::write(ready, b"ready").map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !killed.exists() {
            if Instant::now() > deadline {
                return Err("the harness never killed the leader".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        log("the leader was killed; ending the transactions on the new one");
    }
    // Ended by this producer's own call: never to be asked about later.
    let mut ended_at = Vec::new();
    deliveries.ended_by_us.insert(body("commit"));
    for (kind, commit) in [("commit", true), ("rollback", false)] {
        let tx = txs.remove(kind).ok_or("lost a transaction")?;
        if end_transaction(tx, commit, &asked, &body(kind), killed).await? {
            ended_at.push((body(kind), Instant::now()));
        }
    }
    log("committed one, rolled back one");

    let orphans = [body("orphan-commit"), body("orphan-rollback")];
    let settled = |d: &Deliveries| {
        committed.is_subset(&d.seen) && orphans.iter().all(|b| was_asked(&asked, b))
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while !settled(&deliveries) && Instant::now() < deadline {
        // Receive errors are tolerated only while the group recovers from the kill.
        match receive(&consumer, &topic, INVISIBLE).await {
            Ok(messages) => deliveries.take(&consumer, messages).await?,
            Err(e) if killed => {
                log(e);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
    if !settled(&deliveries) {
        let asked: Vec<String> = asks(&asked).into_iter().map(|(b, _)| b).collect();
        return Err(format!(
            "not settled in 90 s: delivered {:?}, checker asked {asked:?}",
            deliveries.seen
        ));
    }
    log(format!(
        "committed and checked-back-committed delivered: {:?}",
        deliveries.seen
    ));
    let asks_before = asks(&asked).len();
    let window = args.check_interval * 3;
    let window_end = Instant::now() + window;
    while Instant::now() < window_end {
        let messages = receive(&consumer, &topic, INVISIBLE).await?;
        deliveries.take(&consumer, messages).await?;
    }
    let asked = asks(&asked);
    for (ended, at) in &ended_at {
        if let Some((_, late)) = asked
            .iter()
            .find(|(b, when)| b == ended && *when > *at + CHECK_GRACE)
        {
            return Err(format!(
                "the broker asked about {ended} {:?} after the producer ended it",
                late.duration_since(*at)
            ));
        }
    }
    if !killed {
        // An answer that reached the broker ends the transaction: it is asked once. (After a
        // kill an answer may be lost with its node, and the broker rightly asks again.)
        for orphan in &orphans {
            let n = asked.iter().filter(|(b, _)| b == orphan).count();
            if n != 1 {
                return Err(format!(
                    "the checker was asked {n} times about {orphan}; its first answer should have ended it"
                ));
            }
        }
    }
    log(format!(
        "over {} s more (three check intervals): nothing rolled back or twice delivered; \
         checker asked {} time(s) in all, {} of them in that time",
        window.as_secs(),
        asked.len(),
        asked.len() - asks_before
    ));
    let _ = producer.shutdown().await;
    let _ = consumer.shutdown().await;
    Ok(())
}
