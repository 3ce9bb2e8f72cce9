//! Message trace: `traceTopicEnable` (the trace topic), `brokerTraceEnable` (the broker's own
//! records) and `mqadmin queryMsgTraceById`, against in-process broker nodes.
//!
//! Goals: with both keys on, a message sent, received and acked through `raftmq-client` gets a
//! Pub, a SubBefore and a SubAfter in the trace topic, and the built mqadmin prints its Pub row
//! (the producer's host) and a Sub row for the consumer group (the consumer's host); with
//! `brokerTraceEnable=false` the broker writes nothing, while a trace message a client sends
//! itself (RocketMQ 4.x's format) is shown, and a malformed one is skipped with a warning.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::inprocess::{Node, shutdown, start_group};

use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::service::MessageQuery;

use bytes::Bytes;
use proto::apache::rocketmq::v2;
use raftmq_client::{ClientIdentity, MessageSpec, MessagingClient, Receive, resource};
use raftmq_remoting::trace::{MessageType, TraceRecord, TransactionState, decode};

const RPC: Duration = Duration::from_secs(10);
const TRACE_TOPIC: &str = "RMQ_SYS_TRACE_TOPIC";
/// The born host the producer claims: what the Pub row must show.
const PRODUCER_HOST: &str = "192.0.2.7";

fn endpoints(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(|n| n.addr.to_string())
        .collect::<Vec<_>>()
        .join(";")
}

fn client(node: &Node) -> MessagingClient {
    let addr = node.addr.to_string();
    let channel = raftmq_client::endpoint(&addr).unwrap().connect_lazy();
    MessagingClient::new(addr, channel, Arc::new(ClientIdentity::new(0).unwrap()))
}

/// Waits until every node has the trace topic, with RocketMQ's one queue.
async fn wait_for_trace_topic(nodes: &[Node]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let queues: Vec<Option<u32>> = nodes
            .iter()
            .map(|n| {
                let state = n.broker.service().store().state();
                state.topics().get(TRACE_TOPIC).map(|t| t.queues)
            })
            .collect();
        if queues.iter().all(|q| *q == Some(1)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "trace topic not created: {queues:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends one message with `keys` from `born_host`; returns its message id.
async fn send(
    c: &mut MessagingClient,
    topic: &str,
    keys: Vec<String>,
    born_host: &str,
    body: Bytes,
) -> String {
    let (id, _) = c.identity().message_id();
    let spec = MessageSpec {
        message_id: id.clone(),
        tag: Some("TagA".into()),
        keys,
        born_host: born_host.into(),
        ..MessageSpec::default()
    };
    let r = c
        .send(
            vec![raftmq_client::message(resource(topic), body, spec)],
            RPC,
        )
        .await
        .unwrap();
    assert_eq!(r.status.unwrap().code, v2::Code::Ok as i32);
    id
}

/// Receives `topic` as `group` until one message comes, then acks it.
async fn receive_and_ack(c: &mut MessagingClient, group: &str, topic: &str) -> v2::Message {
    let receive = Receive {
        group: resource(group),
        topic: resource(topic),
        tag: "*".into(),
        batch: 16,
        invisible: Duration::from_secs(30),
        long_poll: Duration::from_secs(5),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let messages = loop {
        let got = c.receive(&receive, RPC).await.unwrap();
        if !got.messages.is_empty() {
            break got.messages;
        }
        assert!(
            Instant::now() < deadline,
            "nothing received: {:?}",
            got.status
        );
    };
    assert_eq!(messages.len(), 1);
    let acked = c
        .ack(&resource(group), &resource(topic), &messages, RPC)
        .await
        .unwrap();
    assert_eq!(acked.status.unwrap().code, v2::Code::Ok as i32);
    messages.into_iter().next().unwrap()
}

async fn query_trace(nodes: &[Node], msg_id: &str) -> Output {
    let args = ["queryMsgTraceById", "-n", &endpoints(nodes), "-i", msg_id];
    support::mqadmin(&args).await
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The rows of `kind` (`Pub`, `Sub`) as whitespace-split cells.
fn rows(out: &str, kind: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter(|l| l.starts_with(&format!("{kind} ")))
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

/// Asks mqadmin until its output has `pubs` Pub rows and `subs` Sub rows (trace is written
/// asynchronously, every 100 ms).
async fn wait_for_trace(nodes: &[Node], msg_id: &str, pubs: usize, subs: usize) -> Output {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = query_trace(nodes, msg_id).await;
        let text = stdout(&out);
        if out.status.success()
            && rows(&text, "Pub").len() == pubs
            && rows(&text, "Sub").len() == subs
        {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "trace of {msg_id} incomplete ({:?})\nstdout:\n{text}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every record in the trace topic, as node `node` stores it.
fn trace_records(node: &Node) -> Vec<TraceRecord> {
    let service = node.broker.service();
    let next = service
        .store()
        .state()
        .queue_bounds(TRACE_TOPIC)
        .map_or(0, |b| b[0].next);
    (0..next)
        .flat_map(|offset| {
            let query = MessageQuery::QueueOffset {
                topic: TRACE_TOPIC.into(),
                queue: 0,
                offset,
            };
            service.query_messages(&query, 1).unwrap()
        })
        .flat_map(|view| {
            let body = String::from_utf8(view.message.body.to_vec()).unwrap();
            decode(&body).map(Result::unwrap).collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_broker_traces_a_send_a_delivery_and_an_ack() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_group(
        dir.path(),
        3,
        "traceTopicEnable=true\nbrokerTraceEnable=true\n",
    )
    .await;
    wait_for_trace_topic(&nodes).await;
    // Produce and consume through a node other than the first, whatever its role.
    let mut c = client(&nodes[1]);
    let keys = vec!["OrderID188".to_string()];
    let id = send(
        &mut c,
        "TraceTopicA",
        keys,
        PRODUCER_HOST,
        Bytes::from_static(b"hello"),
    )
    .await;
    let delivered = receive_and_ack(&mut c, "TraceGroupA", "TraceTopicA").await;
    assert_eq!(delivered.system_properties.unwrap().message_id, id);

    let out = wait_for_trace(&nodes, &id, 1, 1).await;
    let text = stdout(&out);
    assert!(
        text.starts_with("#Type      #ProducerGroup       #ClientHost          #SendTime"),
        "{text}"
    );
    let pub_row = &rows(&text, "Pub")[0];
    // No producer group (a 5.x producer has none): Pub, host, date, time, cost, status.
    assert_eq!(pub_row.len(), 6, "{text}");
    assert_eq!(
        (pub_row[1].as_str(), pub_row[5].as_str()),
        (PRODUCER_HOST, "success")
    );
    assert!(text.contains("#Type      #ConsumerGroup       #ClientHost          #ConsumerTime"));
    let sub_row = &rows(&text, "Sub")[0];
    assert_eq!(sub_row[..3], ["Sub", "TraceGroupA", "127.0.0.1"], "{text}");
    assert_eq!(sub_row[6], "success", "{text}");

    // What is stored: RocketMQ's records with the message's fields, on every replica.
    let served_by = nodes[1].addr.to_string();
    for node in &nodes {
        let records = trace_records(node);
        let of_id: Vec<&TraceRecord> = records.iter().filter(|r| r.msg_id() == id).collect();
        assert_eq!(of_id.len(), 3, "{records:#?}");
        let TraceRecord::Pub(p) = of_id[0] else {
            panic!("{records:#?}")
        };
        assert_eq!(
            (p.topic.as_str(), p.tags.as_str(), p.keys.as_str()),
            ("TraceTopicA", "TagA", "OrderID188")
        );
        assert_eq!(
            (p.store_host.as_str(), p.body_length),
            (served_by.as_str(), 5)
        );
        assert_eq!(p.msg_type, MessageType::NormalMsg);
        assert_eq!(p.client_host.as_deref(), Some(PRODUCER_HOST));
        assert_eq!(p.offset_msg_id.as_ref().map(String::len), Some(32));
        let (TraceRecord::SubBefore(b), TraceRecord::SubAfter(a)) = (of_id[1], of_id[2]) else {
            panic!("{records:#?}")
        };
        assert_eq!((b.group.as_str(), b.retry_times), ("TraceGroupA", 0));
        assert_eq!(
            (a.group.as_str(), &a.request_id),
            ("TraceGroupA", &b.request_id)
        );
        assert!(a.success && a.timestamp_ms.is_some());
        // Trace messages are never traced themselves.
        assert!(records.iter().all(|r| match r {
            TraceRecord::Pub(p) => p.topic != TRACE_TOPIC,
            _ => true,
        }));
    }
    end_transaction_is_traced(&nodes[1]).await;
    assert_eq!(nodes[1].broker.service().trace_records_dropped(), 0);
    shutdown(nodes).await;
}

/// A committed transaction: the half message's Pub (Trans_Msg_Half) and its EndTransaction.
async fn end_transaction_is_traced(node: &Node) {
    let mut c = client(node);
    let (id, _) = c.identity().message_id();
    let spec = MessageSpec {
        message_id: id.clone(),
        transactional: true,
        born_host: PRODUCER_HOST.into(),
        ..MessageSpec::default()
    };
    let half = raftmq_client::message(resource("TraceTopicTx"), Bytes::from_static(b"tx"), spec);
    let sent = c.send(vec![half], RPC).await.unwrap();
    let transaction_id = sent.entries[0].transaction_id.clone();
    let ended = c
        .end_transaction("TraceTopicTx", &id, &transaction_id, true, RPC)
        .await
        .unwrap();
    assert_eq!(ended.status.unwrap().code, v2::Code::Ok as i32);
    let deadline = Instant::now() + Duration::from_secs(15);
    let records = loop {
        let records: Vec<TraceRecord> = trace_records(node)
            .into_iter()
            .filter(|r| r.msg_id() == id)
            .collect();
        if records.len() == 2 {
            break records;
        }
        assert!(Instant::now() < deadline, "{records:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (TraceRecord::Pub(p), TraceRecord::EndTransaction(e)) = (&records[0], &records[1]) else {
        panic!("{records:#?}")
    };
    assert_eq!(p.msg_type, MessageType::TransMsgHalf);
    assert_eq!(
        (e.topic.as_str(), e.transaction_id.as_str()),
        ("TraceTopicTx", transaction_id.as_str())
    );
    assert_eq!(e.transaction_state, TransactionState::CommitMessage);
}

/// A trace body as a RocketMQ 4.9 client's AsyncTraceDispatcher sends it
/// (TraceDataEncoder): its producer's Pub and a consumer's SubAfter of `id`.
fn client_trace_body(id: &str) -> String {
    let ts = 1_700_000_000_000_i64;
    format!(
        "Pub\u{1}{ts}\u{1}DefaultRegion\u{1}ProducerGroupA\u{1}TopicTest\u{1}{id}\u{1}TagA\u{1}\
         \u{1}127.0.0.1:10911\u{1}5\u{1}4\u{1}0\u{1}7F00000100002A9F0000000000000000\u{1}true\u{2}\
         SubAfter\u{1}0A00000712D518B4AAC27D5B0F110001\u{1}{id}\u{1}12\u{1}true\u{1}\u{1}0\u{1}\
         {ts}\u{1}ConsumerGroupA\u{2}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_broker_trace_only_what_clients_send_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_group(dir.path(), 1, "traceTopicEnable=true\n").await;
    wait_for_trace_topic(&nodes).await;
    let mut c = client(&nodes[0]);
    let id = send(
        &mut c,
        "TraceTopicB",
        vec![],
        PRODUCER_HOST,
        Bytes::from_static(b"b"),
    )
    .await;
    receive_and_ack(&mut c, "TraceGroupB", "TraceTopicB").await;
    // Several flush intervals: the broker writes nothing.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(trace_records(&nodes[0]).is_empty());
    let out = query_trace(&nodes, &id).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains(&format!("no trace of message {id} in {TRACE_TOPIC}")),
        "{err}"
    );

    // The client's own trace: a plain send to the trace topic keyed by the message id, and a
    // malformed one.
    let body = Bytes::from(client_trace_body(&id));
    send(&mut c, TRACE_TOPIC, vec![id.clone()], "198.51.100.4", body).await;
    let broken = Bytes::from(format!("Pub\u{1}soon\u{1}{id}\u{2}"));
    send(
        &mut c,
        TRACE_TOPIC,
        vec![id.clone()],
        "198.51.100.4",
        broken,
    )
    .await;
    let out = wait_for_trace(&nodes, &id, 1, 1).await;
    let text = stdout(&out);
    let pub_row = &rows(&text, "Pub")[0];
    assert_eq!(
        (
            pub_row[1].as_str(),
            pub_row[2].as_str(),
            pub_row[5].as_str()
        ),
        ("ProducerGroupA", "198.51.100.4", "4ms"),
        "{text}"
    );
    let sub_row = &rows(&text, "Sub")[0];
    assert_eq!(
        sub_row[..3],
        ["Sub", "ConsumerGroupA", "198.51.100.4"],
        "{text}"
    );
    assert_eq!(sub_row[5..], ["12ms", "success"], "{text}");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("skipped a trace record"), "{err}");
    shutdown(nodes).await;
}
