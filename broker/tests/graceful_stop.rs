//! SIGTERM on three real `mqbroker` processes: the leader hands leadership to a follower
//! before it stops, so a producer on another node sees no failed send. And a stop does not
//! wait on a client's open Telemetry stream or held long poll.
//!
//! Goal: a rolling restart's step (stop the leader gracefully) costs clients only a pause.
//! Method: a producer sends through a follower without pause; the leader gets SIGTERM; every
//! send must succeed, the stopped node must exit 0 and say whom it handed to, that node must
//! lead; the longest gap between acknowledged sends is printed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proto::apache::rocketmq::v2;
use raftmq_client::{MessageSpec, Receive, consumer_settings, resource};
use support::process_group::Group;

const RPC: Duration = Duration::from_secs(10);
/// At most this many sends, however long the stop takes.
const SENDS_MAX: usize = 20_000;

#[derive(Debug, Default)]
struct Outcome {
    ok: usize,
    failed: Vec<String>,
    longest_gap: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_the_leader_hands_off_and_no_send_fails() {
    let mut g = Group::start();
    let leader = g.leader(Duration::from_secs(20));
    let follower = (leader + 1) % 3;
    let stop = Arc::new(AtomicBool::new(false));
    let mut producer = support::client(g.listen[follower]);
    let stopping = Arc::clone(&stop);
    let sender = tokio::spawn(async move {
        let mut out = Outcome::default();
        let mut last_ack = Instant::now();
        for i in 0..SENDS_MAX {
            if stopping.load(Ordering::Relaxed) {
                break;
            }
            let spec = MessageSpec {
                message_id: format!("g{i}"),
                ..MessageSpec::default()
            };
            let m = raftmq_client::message(resource("StopTopic"), Bytes::from_static(b"x"), spec);
            match producer.send(vec![m], RPC).await {
                Ok(r)
                    if r.status
                        .as_ref()
                        .is_some_and(|s| s.code == v2::Code::Ok as i32) =>
                {
                    out.ok += 1;
                    out.longest_gap = out.longest_gap.max(last_ack.elapsed());
                    last_ack = Instant::now();
                }
                Ok(r) => out.failed.push(format!("send {i}: {:?}", r.status)),
                Err(e) => out.failed.push(format!("send {i}: {e}")),
            }
        }
        out
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped_at = Instant::now();
    let status = tokio::task::block_in_place(|| g.terminate(leader, Duration::from_secs(20)));
    let stop_took = stopped_at.elapsed();
    assert!(status.success(), "the leader exited {status:?}");
    let log = std::fs::read_to_string(g.log(leader)).unwrap();
    let handed = log
        .lines()
        .find(|l| l.contains("handed leadership to"))
        .unwrap_or_else(|| panic!("no hand-off logged:\n{log}"))
        .to_string();
    let new_leader = tokio::task::block_in_place(|| g.leader(Duration::from_secs(10)));
    assert_ne!(new_leader, leader);
    assert!(handed.contains(&format!("n{new_leader}")), "{handed}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let out = sender.await.unwrap();
    println!(
        "graceful stop of leader n{leader}: exit after {stop_took:?}, {} sends acknowledged, \
         longest gap between acknowledgements {:?}; {handed}",
        out.ok, out.longest_gap
    );
    assert!(out.failed.is_empty(), "failed sends: {:?}", out.failed);
    assert!(out.ok > 10, "the producer hardly sent: {out:?}");
}

/// An SDK keeps its Telemetry stream open for its whole life and long-polls receives for up to
/// 20 s; a stopping node must end both instead of waiting for the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_ends_open_telemetry_streams_and_long_polls() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = support::inprocess::start_group(dir.path(), 1, "").await;
    let node = nodes.remove(0);
    let mut client = support::client(node.addr.port());
    let settings = consumer_settings(v2::ClientType::SimpleConsumer, "StopG", &[("StopT", "*")]);
    let mut telemetry = client.telemetry(settings, RPC).await.unwrap();
    assert!(telemetry.settings().is_some(), "the session is open");
    // Create the topic, then hold a receive on its empty queues.
    let spec = MessageSpec {
        message_id: "stop-0".into(),
        ..MessageSpec::default()
    };
    let m = raftmq_client::message(resource("StopT"), Bytes::from_static(b"x"), spec);
    client.send(vec![m], RPC).await.unwrap();
    let mut poller = client.clone();
    let receive = Receive {
        group: resource("StopG"),
        topic: resource("StopT"),
        tag: "*".into(),
        batch: 32,
        invisible: Duration::from_secs(60),
        long_poll: Duration::from_secs(20),
    };
    let first = poller.receive(&receive, RPC).await.unwrap();
    assert_eq!(first.messages.len(), 1);
    let held = tokio::spawn(async move {
        let started = Instant::now();
        let r = poller.receive(&receive, Duration::from_secs(30)).await;
        (r.map(|g| g.messages.len()), started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopping = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), node.broker.shutdown())
        .await
        .expect("the stop waited on the client's Telemetry stream or long poll")
        .unwrap();
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(5), "the stop took {took:?}");
    let (received, held_for) = held.await.unwrap();
    assert!(
        held_for < Duration::from_secs(10),
        "the long poll was held {held_for:?}"
    );
    assert!(
        received.is_ok_and(|n| n == 0),
        "an empty answer, not an error"
    );
    let ended = tokio::time::timeout(Duration::from_secs(2), telemetry.next_command())
        .await
        .expect("the Telemetry stream ended with the stop");
    assert!(
        !matches!(ended, Ok(Some(_))),
        "no command after the stop: {ended:?}"
    );
}
