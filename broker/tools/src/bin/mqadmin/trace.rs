//! `queryMsgTraceById`: a message's trace, printed as RocketMQ's
//! `QueryMsgTraceByIdSubCommand` prints it.
//!
//! The trace topic's messages carrying the message id as a key (QueryMessage by key, on each
//! broker group of the topic) hold RocketMQ-format records ([`raftmq_remoting::trace`]), written
//! by clients with message trace on or by the broker (`brokerTraceEnable`). As RocketMQ's
//! `TraceView`, only records of that message id count, a row's ClientHost is the host that sent
//! the trace message, and only Pub and SubAfter are printed: one table per Pub, then one per
//! consumer group with a row per SubAfter. Unlike RocketMQ, trace messages are taken in store
//! order and groups in order of appearance (RocketMQ's come in hash order), a SubAfter without
//! a time (the 7-field layout) shows its trace message's store time (RocketMQ shows the time
//! of the query), and an unreadable record is skipped with a warning (RocketMQ's decoder throws).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use chrono::{Local, TimeZone};
use proto::raftmq::admin::v1 as pb;
use raftmq_client::{AdminClient, check_admin};
use raftmq_remoting::trace::{TraceRecord, TraceType, decode};

/// What `queryMsgTraceById` asks.
#[derive(Debug)]
pub(crate) struct TraceQuery {
    /// `-i`: the message id.
    pub msg_id: String,
    /// `-t`: the trace topic.
    pub topic: String,
    /// `-c`: trace messages per broker group at most.
    pub max: u32,
    /// `-b`: only trace messages stored at or after (ms since the epoch).
    pub begin_ms: u64,
    /// `-e`: only trace messages stored at or before.
    pub end_ms: u64,
}

/// One printable record (RocketMQ's `TraceView`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct TraceView {
    kind: TraceType,
    group: String,
    client_host: String,
    timestamp_ms: i64,
    cost_time_ms: i32,
    success: bool,
}

/// Prints the trace of `q.msg_id` found on the broker `groups` (each a list of its nodes).
///
/// # Errors
/// No trace message at all (RocketMQ's "query message by key finished, but no message."), a
/// node that refuses or cannot be reached.
pub(crate) async fn query_msg_trace_by_id(
    groups: &[Vec<String>],
    timeout: Duration,
    q: &TraceQuery,
) -> anyhow::Result<ExitCode> {
    let mut found = Vec::new();
    for nodes in groups {
        found.extend(trace_messages(nodes, timeout, q).await?);
    }
    found.retain(|m| (q.begin_ms..=q.end_ms).contains(&m.store_timestamp_ms));
    if found.is_empty() {
        bail!(
            "no trace of message {} in {}: query message by key finished, but no message.",
            q.msg_id,
            q.topic
        );
    }
    found.sort_by_key(|m| m.store_timestamp_ms);
    print!("{}", render(&views_of(&q.msg_id, &found)));
    Ok(ExitCode::SUCCESS)
}

/// The trace topic's messages keyed by the message id on one group; none when the group has
/// none (or no trace topic).
async fn trace_messages(
    nodes: &[String],
    timeout: Duration,
    q: &TraceQuery,
) -> anyhow::Result<Vec<pb::FoundMessage>> {
    let mut client = AdminClient::first_reachable(nodes).await?;
    let by = pb::query_message_request::By::Key(pb::KeyQuery {
        topic: q.topic.clone(),
        key: q.msg_id.clone(),
    });
    let request = pb::QueryMessageRequest {
        by: Some(by),
        max: q.max,
    };
    let response = client.query_message(request, timeout).await?;
    if response.status.as_ref().map(|s| s.code) == Some(pb::Code::NotFound as i32) {
        return Ok(Vec::new());
    }
    check_admin(response.status.as_ref(), "QueryMessage", client.addr())?;
    Ok(response.messages)
}

/// The views of `msg_id`'s Pub and SubAfter records in `messages`, in order; unreadable
/// records are skipped with a warning.
fn views_of(msg_id: &str, messages: &[pb::FoundMessage]) -> Vec<TraceView> {
    let mut views = Vec::new();
    for m in messages {
        for record in decode(&String::from_utf8_lossy(&m.body)) {
            match record {
                Ok(r) if r.msg_id() == msg_id => views.extend(view_of(&r, m)),
                Ok(_) => {}
                Err(e) => eprintln!(
                    "mqadmin: skipped a trace record of {} (offset id {}): {e}",
                    m.topic, m.offset_msg_id
                ),
            }
        }
    }
    views
}

/// A record as a row; `None` for the kinds RocketMQ does not print.
fn view_of(record: &TraceRecord, message: &pb::FoundMessage) -> Option<TraceView> {
    let store_ms = i64::try_from(message.store_timestamp_ms).unwrap_or(i64::MAX);
    let (group, timestamp_ms, cost_time_ms, success) = match record {
        TraceRecord::Pub(p) => (&p.group, p.timestamp_ms, p.cost_time_ms, p.success),
        TraceRecord::SubAfter(a) => (
            &a.group,
            a.timestamp_ms.unwrap_or(store_ms),
            a.cost_time_ms,
            a.success,
        ),
        _ => return None,
    };
    Some(TraceView {
        kind: record.trace_type(),
        group: group.clone(),
        client_host: host_of(&message.born_host),
        timestamp_ms,
        cost_time_ms,
        success,
    })
}

/// The host part of a born host (`MessageExt.getBornHostString`: the address without port).
fn host_of(born_host: &str) -> String {
    born_host
        .parse::<SocketAddr>()
        .map_or_else(|_| born_host.to_string(), |a| a.ip().to_string())
}

/// `DateFormatUtils.format(ms, "yyyy-MM-dd HH:mm:ss")`, local time.
fn time_of(ms: i64) -> String {
    match Local.timestamp_millis_opt(ms).single() {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => ms.to_string(),
    }
}

/// RocketMQ's `%-10s %-20s %-20s %-20s %-10s %-10s%n`.
fn line(cells: [&str; 6]) -> String {
    let [a, b, c, d, e, f] = cells;
    format!("{a:<10} {b:<20} {c:<20} {d:<20} {e:<10} {f:<10}\n")
}

fn row(kind: &str, v: &TraceView) -> String {
    let status = if v.success { "success" } else { "failed" };
    line([
        kind,
        &v.group,
        &v.client_host,
        &time_of(v.timestamp_ms),
        &format!("{}ms", v.cost_time_ms),
        status,
    ])
}

const PUB_HEADER: [&str; 6] = [
    "#Type",
    "#ProducerGroup",
    "#ClientHost",
    "#SendTime",
    "#CostTimes",
    "#Status",
];
const SUB_HEADER: [&str; 6] = [
    "#Type",
    "#ConsumerGroup",
    "#ClientHost",
    "#ConsumerTime",
    "#CostTimes",
    "#Status",
];

/// RocketMQ's `printMessageTrace`: a table per Pub, then a table per consumer group.
fn render(views: &[TraceView]) -> String {
    let mut out = String::new();
    let mut groups: Vec<(&str, Vec<&TraceView>)> = Vec::new();
    for v in views {
        match v.kind {
            TraceType::Pub => {
                out.push_str(&line(PUB_HEADER));
                out.push_str(&row("Pub", v));
                out.push('\n');
            }
            TraceType::SubAfter => match groups.iter_mut().find(|(g, _)| *g == v.group) {
                Some((_, rows)) => rows.push(v),
                None => groups.push((&v.group, vec![v])),
            },
            _ => {}
        }
    }
    for (_, rows) in groups {
        out.push_str(&line(SUB_HEADER));
        for v in rows {
            out.push_str(&row("Sub", v));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(body: &str, born_host: &str, store_ms: u64) -> pb::FoundMessage {
        pb::FoundMessage {
            topic: "RMQ_SYS_TRACE_TOPIC".into(),
            body: body.as_bytes().to_vec().into(),
            born_host: born_host.into(),
            store_timestamp_ms: store_ms,
            ..pb::FoundMessage::default()
        }
    }

    #[test]
    fn the_tables_are_rocketmqs() {
        let ts = 1_700_000_000_000;
        let body = format!(
            "Pub\u{1}{ts}\u{1}DefaultRegion\u{1}PG\u{1}T\u{1}M1\u{1}tag\u{1}k\u{1}10.0.0.1:10911\
             \u{1}5\u{1}3\u{1}0\u{1}OFF\u{1}true\u{2}\
             SubBefore\u{1}{ts}\u{1}DefaultRegion\u{1}CG\u{1}R\u{1}M1\u{1}0\u{1}k\u{2}\
             SubAfter\u{1}R\u{1}M2\u{1}9\u{1}true\u{1}k\u{1}0\u{1}{ts}\u{1}CG\u{2}\
             SubAfter\u{1}R\u{1}M1\u{1}12\u{1}false\u{1}k\u{1}0\u{1}{ts}\u{1}CG\u{2}\
             SubAfter\u{1}R\u{1}M1\u{1}7\u{1}true\u{1}k\u{1}0\u{1}"
        );
        let views = views_of("M1", &[found(&body, "10.0.0.9:53211", 5)]);
        let time = time_of(ts);
        let expected = format!(
            "#Type      #ProducerGroup       #ClientHost          #SendTime            #CostTimes #Status   \n\
             Pub        PG                   10.0.0.9             {time:<20} 3ms        success   \n\
             \n\
             #Type      #ConsumerGroup       #ClientHost          #ConsumerTime        #CostTimes #Status   \n\
             Sub        CG                   10.0.0.9             {time:<20} 12ms       failed    \n\
             \n\
             #Type      #ConsumerGroup       #ClientHost          #ConsumerTime        #CostTimes #Status   \n\
             Sub                             10.0.0.9             {:<20} 7ms        success   \n\
             \n",
            time_of(5)
        );
        assert_eq!(render(&views), expected);
    }

    #[test]
    fn hosts_lose_their_port_and_a_message_without_records_prints_nothing() {
        assert_eq!(host_of("127.0.0.1:4000"), "127.0.0.1");
        assert_eq!(host_of("[::1]:4000"), "::1");
        assert_eq!(host_of("client-7"), "client-7");
        let views = views_of("M1", &[found("not a trace body", "h", 1)]);
        assert!(views.is_empty());
        assert_eq!(render(&views), "");
    }
}
