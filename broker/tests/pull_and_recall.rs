//! The 5.x pull consumer's calls (PullMessage, UpdateOffset, GetOffset, QueryOffset) and
//! RecallMessage, against three real `mqbroker` processes whose leader is SIGKILLed.
//!
//! Goals: a pull consumer reads every message of a queue by offset, in order, and one that
//! starts on another node after the leader's crash resumes exactly at the offset committed
//! before it; a delay message recalled before it is due is never delivered, by receive or by
//! pull, on any node, also after a leader crash, while one not recalled is.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use proto::apache::rocketmq::v2;
use raftmq_client::{MessageSpec, MessagingClient, Pull, Pulled, Receive, resource};
use support::client;
use support::process_group::Group;

const RPC: Duration = Duration::from_secs(10);
const QUEUES: i32 = 2;

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn code(status: Option<&v2::Status>) -> v2::Code {
    v2::Code::try_from(status.expect("a status").code).unwrap()
}

fn create_topic(g: &Group, topic: &str) {
    let out = g.mqadmin(&[
        "updateTopic",
        "-n",
        &g.endpoints(),
        "-t",
        topic,
        "-w",
        &QUEUES.to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends one message and returns its send result entry (asserting it was stored).
async fn send(
    c: &mut MessagingClient,
    topic: &str,
    id: &str,
    delivery_ms: Option<u64>,
) -> v2::SendResultEntry {
    let spec = MessageSpec {
        message_id: id.to_string(),
        delivery_ms,
        ..MessageSpec::default()
    };
    let m = raftmq_client::message(resource(topic), Bytes::from(id.to_string()), spec);
    let r = c.send(vec![m], RPC).await.unwrap();
    assert_eq!(
        code(r.status.as_ref()),
        v2::Code::Ok,
        "send {id}: {:?}",
        r.status
    );
    r.entries.into_iter().next().unwrap()
}

fn pull_of(group: &str, topic: &str, queue: i32, offset: i64, long_poll: Duration) -> Pull {
    Pull {
        group: group.to_string(),
        topic: topic.to_string(),
        queue,
        offset,
        batch: 16,
        tag: "*".to_string(),
        long_poll,
    }
}

fn ids(pulled: &Pulled) -> Vec<(i64, String)> {
    pulled
        .messages
        .iter()
        .map(|m| {
            let sys = m.system_properties.as_ref().unwrap();
            (sys.queue_offset.unwrap(), sys.message_id.clone())
        })
        .collect()
}

/// Pulls queue `queue` from `from` up to (not including) `to`, committing after each batch;
/// returns (offset, message id) in the order pulled.
async fn pull_range(
    c: &mut MessagingClient,
    group: &str,
    topic: &str,
    queue: i32,
    from: i64,
    to: i64,
) -> Vec<(i64, String)> {
    let mut got = Vec::new();
    let mut at = from;
    let deadline = Instant::now() + Duration::from_secs(30);
    while at < to {
        assert!(
            Instant::now() < deadline,
            "queue {queue}: stuck at {at} of {to}"
        );
        let mut pull = pull_of(group, topic, queue, at, Duration::ZERO);
        pull.batch = i32::try_from(to - at).unwrap().min(16);
        let pulled = c.pull(&pull, RPC).await.unwrap();
        assert_eq!(
            code(pulled.status.as_ref()),
            v2::Code::Ok,
            "{:?}",
            pulled.status
        );
        let next = pulled.next_offset.expect("a next offset");
        assert!(next > at, "next offset {next} does not move past {at}");
        got.extend(ids(&pulled));
        let r = c
            .update_offset(group, topic, queue, next, RPC)
            .await
            .unwrap();
        assert_eq!(code(r.status.as_ref()), v2::Code::Ok, "{:?}", r.status);
        at = next;
    }
    got
}

async fn query_offset(
    c: &mut MessagingClient,
    topic: &str,
    queue: i32,
    policy: v2::QueryOffsetPolicy,
) -> i64 {
    let r = c
        .query_offset(topic, queue, policy, None, RPC)
        .await
        .unwrap();
    assert_eq!(code(r.status.as_ref()), v2::Code::Ok, "{:?}", r.status);
    r.offset
}

/// The group's committed offset in `queue`, retried while the group elects a leader.
async fn committed(c: &mut MessagingClient, group: &str, topic: &str, queue: i32) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c.get_offset(group, topic, queue, RPC).await {
            Ok(r) if code(r.status.as_ref()) == v2::Code::Ok => return r.offset,
            other => assert!(Instant::now() < deadline, "GetOffset: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_consumer_resumes_from_its_committed_offset_on_another_node_after_a_leader_kill() {
    const TOTAL: usize = 120;
    let (topic, group) = ("PullTopic", "PullGroup");
    let mut g = Group::start();
    let leader = g.leader(Duration::from_secs(20));
    let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);
    create_topic(&g, topic);
    let mut producer = client(g.listen[a]);
    let mut sent = BTreeMap::new();
    for i in 0..TOTAL {
        let id = format!("m{i:03}");
        let e = send(&mut producer, topic, &id, None).await;
        sent.insert(id, e.offset);
    }

    // Node a reads the first half of each queue by offset and commits as it goes.
    let mut first = client(g.listen[a]);
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    let mut seen: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for q in 0..QUEUES {
        assert_eq!(
            query_offset(&mut first, topic, q, v2::QueryOffsetPolicy::Beginning).await,
            0
        );
        ends.insert(
            q,
            query_offset(&mut first, topic, q, v2::QueryOffsetPolicy::End).await,
        );
        // Before its first commit in the topic the group has no offset (after it, every
        // queue of the topic has one, 0 where it never committed).
        let none = first.get_offset(group, topic, q, RPC).await.unwrap();
        assert_eq!(
            code(none.status.as_ref()),
            v2::Code::OffsetNotFound,
            "{none:?}"
        );
    }
    for q in 0..QUEUES {
        let half = ends[&q] / 2;
        seen.insert(q, pull_range(&mut first, group, topic, q, 0, half).await);
    }
    assert_eq!(
        ends.values().sum::<i64>(),
        TOTAL as i64,
        "END offsets count every message"
    );

    // A pull at the end waits for its long poll, then says where to ask again.
    let started = Instant::now();
    let tail = pull_of(group, topic, 0, ends[&0], Duration::from_millis(800));
    let empty = first.pull(&tail, RPC).await.unwrap();
    assert_eq!(
        code(empty.status.as_ref()),
        v2::Code::MessageNotFound,
        "{:?}",
        empty.status
    );
    assert_eq!(empty.next_offset, Some(ends[&0]));
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "no long poll: {:?}",
        started.elapsed()
    );
    let bad = first
        .pull(&pull_of(group, topic, 0, -1, Duration::ZERO), RPC)
        .await
        .unwrap();
    assert_eq!(
        code(bad.status.as_ref()),
        v2::Code::BadRequest,
        "{:?}",
        bad.status
    );

    g.kill(leader);
    // A consumer on another node starts where the group committed and reads the rest.
    let mut second = client(g.listen[b]);
    for q in 0..QUEUES {
        let resume = committed(&mut second, group, topic, q).await;
        assert_eq!(
            resume,
            ends[&q] / 2,
            "queue {q} resumes at its committed offset"
        );
        let rest = pull_range(&mut second, group, topic, q, resume, ends[&q]).await;
        seen.get_mut(&q).unwrap().extend(rest);
    }
    for (q, got) in &seen {
        let offsets: Vec<i64> = got.iter().map(|(o, _)| *o).collect();
        let want: Vec<i64> = (0..ends[q]).collect();
        assert_eq!(offsets, want, "queue {q}: every offset once, in order");
    }
    let mut pulled: Vec<String> = seen.values().flatten().map(|(_, id)| id.clone()).collect();
    pulled.sort();
    assert_eq!(
        pulled,
        sent.keys().cloned().collect::<Vec<_>>(),
        "every message pulled once"
    );

    // The killed node, back, reports the same committed offsets.
    g.spawn(leader);
    let mut back = client(g.listen[leader]);
    for q in 0..QUEUES {
        assert_eq!(committed(&mut back, group, topic, q).await, ends[&q]);
    }
}

/// Every message id a simple consumer of `group` receives on `port` until `until`, acked.
async fn receive_until(port: u16, group: &str, topic: &str, until: Instant) -> Vec<String> {
    let mut c = client(port);
    let receive = Receive {
        group: resource(group),
        topic: resource(topic),
        tag: "*".into(),
        batch: 16,
        invisible: Duration::from_secs(30),
        long_poll: Duration::from_secs(5),
    };
    let mut got = Vec::new();
    while Instant::now() < until {
        let Ok(r) = c.receive(&receive, Duration::from_secs(3)).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if !r.messages.is_empty() {
            let _ = c
                .ack(&receive.group, &receive.topic, &r.messages, RPC)
                .await;
        }
        got.extend(
            r.messages
                .iter()
                .map(|m| m.system_properties.as_ref().unwrap().message_id.clone()),
        );
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_message_recalled_before_its_time_is_never_delivered() {
    let (topic, group) = ("RecallTopic", "RecallGroup");
    let mut g = Group::start();
    let leader = g.leader(Duration::from_secs(20));
    let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);
    create_topic(&g, topic);
    let mut producer = client(g.listen[a]);
    let due = now_ms() + 3_000;
    let recalled = send(&mut producer, topic, "recalled", Some(due)).await;
    let kept = send(&mut producer, topic, "kept", Some(due)).await;
    let plain = send(&mut producer, topic, "plain", None).await;
    assert!(
        !recalled.recall_handle.is_empty(),
        "a delay message's send returns a recall handle"
    );
    assert!(
        plain.recall_handle.is_empty(),
        "a normal message's does not"
    );

    let r = producer
        .recall(topic, &recalled.recall_handle, RPC)
        .await
        .unwrap();
    assert_eq!(code(r.status.as_ref()), v2::Code::Ok, "{:?}", r.status);
    assert_eq!(r.message_id, "recalled");
    let again = producer
        .recall(topic, &recalled.recall_handle, RPC)
        .await
        .unwrap();
    assert_eq!(code(again.status.as_ref()), v2::Code::NotFound, "{again:?}");
    let junk = producer.recall(topic, "not-a-handle", RPC).await.unwrap();
    assert_eq!(code(junk.status.as_ref()), v2::Code::BadRequest, "{junk:?}");

    // The leader dies after the recall: the new one must not deliver it either.
    g.kill(leader);
    let until = Instant::now() + Duration::from_millis(due.saturating_sub(now_ms()) + 4_000);
    let mut got = receive_until(g.listen[b], group, topic, until).await;
    got.sort();
    assert_eq!(
        got,
        vec!["kept".to_string(), "plain".to_string()],
        "received"
    );

    // Past its time the kept one cannot be recalled; a pull of every queue skips the recalled.
    let late = producer
        .recall(topic, &kept.recall_handle, RPC)
        .await
        .unwrap();
    assert_eq!(code(late.status.as_ref()), v2::Code::BadRequest, "{late:?}");
    let mut puller = client(g.listen[a]);
    let mut pulled = Vec::new();
    for q in 0..QUEUES {
        let p = puller
            .pull(&pull_of("RecallPuller", topic, q, 0, Duration::ZERO), RPC)
            .await
            .unwrap();
        assert!(
            matches!(
                code(p.status.as_ref()),
                v2::Code::Ok | v2::Code::MessageNotFound
            ),
            "{:?}",
            p.status
        );
        pulled.extend(ids(&p).into_iter().map(|(_, id)| id));
    }
    pulled.sort();
    assert_eq!(
        pulled,
        vec!["kept".to_string(), "plain".to_string()],
        "pulled"
    );
}
