//! `consumerConnection` and `producerConnection`: a group's clients. Each node knows only the
//! clients connected to it, so every node is asked at once and the answers are merged, then
//! printed in the layout of RocketMQ's `ConsumerConnectionSubCommand` and
//! `ProducerConnectionSubCommand`, with RocketMQ's errors when no node has the group's clients.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use proto::raftmq::admin::v1 as pb;
use raftmq_client::{AdminClient, check_admin};

/// RocketMQ's mqadmin error for a consumer group without clients (`MQClientException` with
/// CONSUMER_NOT_ONLINE).
const CONSUMER_NOT_ONLINE: &str = "CODE: 206  DESC: Not found the consumer group connection";
/// RocketMQ's mqadmin error for a producer group without clients.
const PRODUCER_NOT_ONLINE: &str = "Not found the producer group connection";

/// A consumer group over every node that answered.
#[derive(Debug, Default, PartialEq)]
struct Consumers {
    connections: Vec<pb::ClientConnection>,
    subscriptions: BTreeMap<String, String>,
    /// ConsumeType, MessageModel, ConsumeFromWhere, from the first node with clients.
    mode: Option<[String; 3]>,
}

impl Consumers {
    fn add(&mut self, r: pb::ConsumerConnectionResponse) {
        self.mode
            .get_or_insert([r.consume_type, r.message_model, r.consume_from_where]);
        for (topic, expression) in r.subscriptions {
            self.subscriptions.entry(topic).or_insert(expression);
        }
        self.connections.extend(r.connections);
        sort(&mut self.connections);
    }
}

fn sort(connections: &mut Vec<pb::ClientConnection>) {
    connections.sort_by(|a, b| (&a.client_id, &a.client_addr).cmp(&(&b.client_id, &b.client_addr)));
    connections.dedup();
}

/// RocketMQ's consumerConnection output.
fn consumer_lines(c: &Consumers) -> Vec<String> {
    let row = |id: &str, addr: &str, language: &str, version: &str| {
        format!("{id:<36} {addr:<22} {language:<10} {version}")
    };
    let mut lines = vec![row("#ClientId", "#ClientAddr", "#Language", "#Version")];
    for conn in &c.connections {
        lines.push(row(
            &conn.client_id,
            &conn.client_addr,
            &conn.language,
            &conn.version,
        ));
    }
    lines.push(String::new());
    lines.push("Below is subscription:".into());
    lines.push(format!("{:<20} {}", "#Topic", "#SubExpression"));
    for (topic, expression) in &c.subscriptions {
        lines.push(format!("{topic:<20} {expression}"));
    }
    lines.push(String::new());
    let [consume_type, model, from] = c.mode.clone().unwrap_or_default();
    lines.push(format!("ConsumeType: {consume_type}"));
    lines.push(format!("MessageModel: {model}"));
    lines.push(format!("ConsumeFromWhere: {from}"));
    lines
}

/// RocketMQ's producerConnection output: a numbered row per client.
fn producer_lines(connections: &[pb::ClientConnection]) -> Vec<String> {
    connections
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "{:04}  {:<32} {:<22} {:<8} {}",
                i + 1,
                c.client_id,
                c.client_addr,
                c.language,
                c.version
            )
        })
        .collect()
}

/// A node's answer: `None` when it has no client of the group (CODE_NOT_FOUND).
fn found<R>(
    response: R,
    status: Option<&pb::Status>,
    call: &'static str,
    addr: &str,
) -> anyhow::Result<Option<R>> {
    if status.is_some_and(|s| s.code == pb::Code::NotFound as i32) {
        return Ok(None);
    }
    check_admin(status, call, addr)?;
    Ok(Some(response))
}

async fn ask_consumers(
    addr: String,
    group: String,
    timeout: Duration,
) -> anyhow::Result<Option<pb::ConsumerConnectionResponse>> {
    let mut client = AdminClient::connect(&addr).await?;
    let r = client.consumer_connection(&group, timeout).await?;
    let status = r.status.clone();
    found(r, status.as_ref(), "ConsumerConnection", &addr)
}

async fn ask_producers(
    addr: String,
    group: String,
    topic: String,
    timeout: Duration,
) -> anyhow::Result<Option<pb::ProducerConnectionResponse>> {
    let mut client = AdminClient::connect(&addr).await?;
    let r = client.producer_connection(&group, &topic, timeout).await?;
    let status = r.status.clone();
    found(r, status.as_ref(), "ProducerConnection", &addr)
}

/// Every node's answer, asked at once; a node that fails is reported on stderr and left out.
/// Errs when none answered.
async fn ask_all<R, F>(nodes: &[String], call: &str, ask: F) -> anyhow::Result<Vec<R>>
where
    R: Send + 'static,
    F: Fn(String) -> tokio::task::JoinHandle<anyhow::Result<Option<R>>>,
{
    let asks: Vec<_> = nodes.iter().cloned().map(ask).collect();
    let (mut answered, mut found) = (0, Vec::new());
    for (addr, ask) in nodes.iter().zip(asks) {
        match ask.await {
            Ok(Ok(answer)) => {
                answered += 1;
                found.extend(answer);
            }
            Ok(Err(e)) => eprintln!("mqadmin: {e:#}"),
            Err(e) => eprintln!("mqadmin: {call} at {addr}: {e}"),
        }
    }
    if answered == 0 {
        bail!("no broker answered {call} at -n {}", nodes.join(";"));
    }
    Ok(found)
}

/// `consumerConnection -g GROUP`: the group's clients on every node, merged.
pub(crate) async fn consumer_connection(
    nodes: &[String],
    timeout: Duration,
    group: &str,
) -> anyhow::Result<ExitCode> {
    let group = group.trim().to_string();
    let answers = ask_all(nodes, "ConsumerConnection", |addr| {
        tokio::spawn(ask_consumers(addr, group.clone(), timeout))
    })
    .await?;
    let mut consumers = Consumers::default();
    for answer in answers {
        consumers.add(answer);
    }
    if consumers.connections.is_empty() {
        bail!(CONSUMER_NOT_ONLINE);
    }
    for line in consumer_lines(&consumers) {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `producerConnection -g GROUP -t TOPIC`: the group's clients on every node, merged.
pub(crate) async fn producer_connection(
    nodes: &[String],
    timeout: Duration,
    group: &str,
    topic: &str,
) -> anyhow::Result<ExitCode> {
    let (group, topic) = (group.trim().to_string(), topic.trim().to_string());
    let answers = ask_all(nodes, "ProducerConnection", |addr| {
        tokio::spawn(ask_producers(addr, group.clone(), topic.clone(), timeout))
    })
    .await?;
    let mut connections: Vec<pb::ClientConnection> =
        answers.into_iter().flat_map(|a| a.connections).collect();
    sort(&mut connections);
    if connections.is_empty() {
        bail!(PRODUCER_NOT_ONLINE);
    }
    for line in producer_lines(&connections) {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(id: &str, addr: &str) -> pb::ClientConnection {
        pb::ClientConnection {
            client_id: id.into(),
            client_addr: addr.into(),
            language: "JAVA".into(),
            version: "V4_9_4".into(),
            protocol: "4.x".into(),
        }
    }

    fn answer(id: &str, topic: &str, consume_type: &str) -> pb::ConsumerConnectionResponse {
        pb::ConsumerConnectionResponse {
            status: None,
            connections: vec![conn(id, "127.0.0.1:5000")],
            subscriptions: [(topic.to_string(), "*".to_string())].into(),
            consume_type: consume_type.into(),
            message_model: "CLUSTERING".into(),
            consume_from_where: "CONSUME_FROM_LAST_OFFSET".into(),
        }
    }

    #[test]
    fn answers_of_several_nodes_merge() {
        let mut c = Consumers::default();
        c.add(answer("b", "T2", "CONSUME_ACTIVELY"));
        c.add(answer("a", "T1", "CONSUME_PASSIVELY"));
        c.add(answer("a", "T1", "CONSUME_PASSIVELY"));
        let ids: Vec<&str> = c.connections.iter().map(|c| c.client_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"], "sorted, an identical row once");
        assert_eq!(c.subscriptions.len(), 2);
        assert_eq!(
            c.mode.as_ref().unwrap()[0],
            "CONSUME_ACTIVELY",
            "the first node's"
        );
    }

    #[test]
    fn consumer_output_has_rocketmqs_layout() {
        let mut c = Consumers::default();
        c.add(answer("host@1@0@ABC", "TopicA", "CONSUME_ACTIVELY"));
        let expected = [
            "#ClientId                            #ClientAddr            #Language  #Version",
            "host@1@0@ABC                         127.0.0.1:5000         JAVA       V4_9_4",
            "",
            "Below is subscription:",
            "#Topic               #SubExpression",
            "TopicA               *",
            "",
            "ConsumeType: CONSUME_ACTIVELY",
            "MessageModel: CLUSTERING",
            "ConsumeFromWhere: CONSUME_FROM_LAST_OFFSET",
        ];
        assert_eq!(consumer_lines(&c), expected);
    }

    #[test]
    fn producer_output_numbers_the_clients() {
        let lines = producer_lines(&[conn("p1", "127.0.0.1:1"), conn("p2", "127.0.0.1:2")]);
        assert_eq!(
            lines,
            [
                "0001  p1                               127.0.0.1:1            JAVA     V4_9_4",
                "0002  p2                               127.0.0.1:2            JAVA     V4_9_4",
            ]
        );
    }

    #[test]
    fn not_found_is_no_answer_and_other_codes_fail() {
        let status = |code: pb::Code| pb::Status {
            code: code as i32,
            message: "m".into(),
        };
        let nf = status(pb::Code::NotFound);
        assert!(found((), Some(&nf), "C", "a:1").unwrap().is_none());
        let ok = status(pb::Code::Ok);
        assert!(found((), Some(&ok), "C", "a:1").unwrap().is_some());
        let bad = status(pb::Code::InvalidArgument);
        assert!(found((), Some(&bad), "C", "a:1").is_err());
    }
}
