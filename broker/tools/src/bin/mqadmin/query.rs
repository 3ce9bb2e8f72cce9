//! `queryMsgById`, `queryMsgByKey`, `queryMsgByUniqueKey`, `queryMsgByOffset` and
//! `resetOffsetByTime`, printed as RocketMQ's mqadmin prints them.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use chrono::{Local, NaiveDateTime, TimeZone};
use proto::raftmq::admin::v1 as pb;
use raftmq_client::{AdminClient, check_admin};

/// RocketMQ's `UtilAll.timeMillisToHumanString2`: `yyyy-MM-dd HH:mm:ss,SSS`, local time.
fn human_time(ms: u64) -> String {
    let Ok(ms) = i64::try_from(ms) else {
        return ms.to_string();
    };
    match Local.timestamp_millis_opt(ms).single() {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S,%3f").to_string(),
        None => ms.to_string(),
    }
}

/// `resetOffsetByTime -s`: `now`, milliseconds since the epoch, or RocketMQ's
/// `yyyy-MM-dd#HH:mm:ss:SSS` (local time).
pub(crate) fn parse_timestamp(s: &str, now_ms: u64) -> anyhow::Result<u64> {
    if s == "now" {
        return Ok(now_ms);
    }
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d#%H:%M:%S:%3f") else {
        bail!("-s {s:?}: expected now, milliseconds, or yyyy-MM-dd#HH:mm:ss:SSS");
    };
    let Some(local) = Local.from_local_datetime(&t).earliest() else {
        bail!("-s {s:?}: no such local time");
    };
    u64::try_from(local.timestamp_millis()).map_err(|_| anyhow::anyhow!("-s {s:?}: before 1970"))
}

async fn query(
    addrs: &[String],
    timeout: Duration,
    by: pb::query_message_request::By,
    max: u32,
) -> anyhow::Result<Vec<pb::FoundMessage>> {
    let mut client = AdminClient::first_reachable(addrs).await?;
    let response = client
        .query_message(pb::QueryMessageRequest { by: Some(by), max }, timeout)
        .await?;
    check_admin(response.status.as_ref(), "QueryMessage", client.addr())?;
    Ok(response.messages)
}

/// RocketMQ's `printMsg`: one `%-20s %s` line per field.
fn print_message(m: &pb::FoundMessage) {
    let line = |k: &str, v: &dyn std::fmt::Display| println!("{k:<20} {v}");
    line("OffsetID:", &m.offset_msg_id);
    line("Topic:", &m.topic);
    line("Tags:", &format!("[{}]", m.tag));
    line("Keys:", &format!("[{}]", m.keys.join(" ")));
    line(
        "Queue ID:",
        &m.queue_id.map_or("-".into(), |q| q.to_string()),
    );
    line(
        "Queue Offset:",
        &m.queue_offset.map_or("-".into(), |o| o.to_string()),
    );
    line("CommitLog Offset:", &m.commit_log_offset);
    line("Born Timestamp:", &human_time(m.born_timestamp_ms));
    line("Store Timestamp:", &human_time(m.store_timestamp_ms));
    line("Born Host:", &m.born_host);
    line("Store Host:", &m.store_host);
    let mut props: Vec<String> = m
        .properties
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    props.push(format!("UNIQ_KEY={}", m.msg_id));
    if !m.message_group.is_empty() {
        props.push(format!("__SHARDINGKEY={}", m.message_group));
    }
    if m.delivery_timestamp_ms > 0 {
        props.push(format!("TIMER_DELIVER_MS={}", m.delivery_timestamp_ms));
    }
    props.sort();
    line("Properties:", &format!("{{{}}}", props.join(", ")));
    line("Message Body:", &String::from_utf8_lossy(&m.body));
}

/// `queryMsgById -i ID[,ID…]`: the detail of each offset message id.
pub(crate) async fn by_id(
    addrs: &[String],
    timeout: Duration,
    ids: &[String],
) -> anyhow::Result<ExitCode> {
    for (i, id) in ids.iter().enumerate() {
        let found = query(
            addrs,
            timeout,
            pb::query_message_request::By::OffsetMsgId(id.clone()),
            1,
        )
        .await?;
        if i > 0 {
            println!();
        }
        for m in &found {
            print_message(m);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `queryMsgByKey -t TOPIC -k KEY`: RocketMQ's `#Message ID #QID #Offset` table.
pub(crate) async fn by_key(
    addrs: &[String],
    timeout: Duration,
    topic: &str,
    key: &str,
    max: u32,
) -> anyhow::Result<ExitCode> {
    let by = pb::query_message_request::By::Key(pb::KeyQuery {
        topic: topic.to_string(),
        key: key.to_string(),
    });
    let found = query(addrs, timeout, by, max).await?;
    println!("{:<50} {:>4} {:>40}", "#Message ID", "#QID", "#Offset");
    for m in &found {
        println!(
            "{:<50} {:>4} {:>40}",
            m.msg_id,
            m.queue_id.map_or("-".into(), |q| q.to_string()),
            m.queue_offset.map_or("-".into(), |o| o.to_string())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `queryMsgByUniqueKey -t TOPIC -i MSG_ID`: the detail of the message with that client id.
pub(crate) async fn by_unique_key(
    addrs: &[String],
    timeout: Duration,
    topic: &str,
    id: &str,
) -> anyhow::Result<ExitCode> {
    let by = pb::query_message_request::By::UniqueKey(pb::KeyQuery {
        topic: topic.to_string(),
        key: id.to_string(),
    });
    for m in &query(addrs, timeout, by, 32).await? {
        print_message(m);
    }
    Ok(ExitCode::SUCCESS)
}

/// `queryMsgByOffset -t TOPIC -i QUEUE -o OFFSET`: the detail of the message at that offset.
pub(crate) async fn by_offset(
    addrs: &[String],
    timeout: Duration,
    topic: &str,
    queue: u32,
    offset: u64,
) -> anyhow::Result<ExitCode> {
    let by = pb::query_message_request::By::QueueOffset(pb::QueueOffsetQuery {
        topic: topic.to_string(),
        queue_id: queue,
        offset,
    });
    for m in &query(addrs, timeout, by, 1).await? {
        print_message(m);
    }
    Ok(ExitCode::SUCCESS)
}

/// `resetOffsetByTime -g GROUP -t TOPIC -s TIME`: RocketMQ's header line and
/// `#brokerName #queueId #offset` table.
pub(crate) async fn reset_offset_by_time(
    addrs: &[String],
    timeout: Duration,
    group: &str,
    topic: &str,
    timestamp: &str,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
    )
    .unwrap_or(u64::MAX);
    let ms = parse_timestamp(timestamp, now_ms)?;
    let mut client = AdminClient::first_reachable(addrs).await?;
    let response = client
        .reset_offset_by_time(group, topic, ms, timeout)
        .await?;
    check_admin(response.status.as_ref(), "ResetOffsetByTime", client.addr())?;
    let broker = client.addr().to_string();
    println!(
        "rollback consumer offset by specified group[{group}], topic[{topic}], force[{force}], timestamp(string)[{timestamp}], timestamp(long)[{ms}]"
    );
    println!(
        "{:<40}  {:<40}  {:<40}",
        "#brokerName", "#queueId", "#offset"
    );
    for q in &response.queues {
        println!("{broker:<40}  {:<40}  {:<40}", q.queue_id, q.new_offset);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_times_take_rocketmqs_three_forms() {
        assert_eq!(parse_timestamp("now", 42).unwrap(), 42);
        assert_eq!(
            parse_timestamp("1700000000000", 0).unwrap(),
            1_700_000_000_000
        );
        let ms = parse_timestamp("2026-12-01#10:00:00:250", 0).unwrap();
        assert_eq!(ms % 1000, 250);
        assert_eq!(human_time(ms), "2026-12-01 10:00:00,250");
        let e = parse_timestamp("yesterday", 0).unwrap_err().to_string();
        assert!(e.contains("-s \"yesterday\""), "{e}");
    }
}
