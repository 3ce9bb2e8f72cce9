//! SIGTERM on three real `mqbroker` processes: the leader hands leadership to a follower
//! before it stops, so a producer on another node sees no failed send.
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
use raftmq_client::{MessageSpec, resource};
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
