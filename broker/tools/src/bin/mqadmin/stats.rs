//! `brokerStatus` and `statsAll`, in RocketMQ's output shape.
//!
//! Each node counts what it served (RocketMQ's brokers do the same), so `statsAll` asks every
//! node it is given and adds their figures up, as RocketMQ adds up a topic's brokers; a group's
//! backlog is replicated, so it is the largest any node reports (one that lags reports less).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use proto::raftmq::admin::v1 as pb;
use raftmq_client::{AdminClient, check_admin};

use crate::namesrv;

/// RocketMQ's `UtilAll.frontStringAtLeast`: at most `size` characters of `s`.
fn front(s: &str, size: usize) -> String {
    s.chars().take(size).collect()
}

/// `brokerStatus`: each node's runtime table, sorted by key; with several nodes every line
/// starts with the node's address, as RocketMQ's `-c` does.
pub(crate) async fn broker_status(nodes: &[String], timeout: Duration) -> anyhow::Result<ExitCode> {
    let prefixed = nodes.len() > 1;
    let mut failed = false;
    for addr in nodes {
        let Some(table) = namesrv::runtime_info(addr.clone(), timeout).await else {
            eprintln!("mqadmin: brokerStatus: {addr} did not answer GET_BROKER_RUNTIME_INFO");
            failed = true;
            continue;
        };
        for (k, v) in &table {
            if prefixed {
                println!("{addr:<24} {k:<32}: {v}");
            } else {
                println!("{k:<32}: {v}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// One topic's figures over every node asked.
#[derive(Debug, Default, PartialEq)]
struct Summed {
    in_tps: f64,
    in_24h: u64,
    /// Per group: out TPS, out 24 h, accumulation.
    groups: BTreeMap<String, (f64, u64, u64)>,
}

fn add(total: &mut BTreeMap<String, Summed>, answer: pb::StatsAllResponse) {
    for t in answer.topics {
        let s = total.entry(t.topic).or_default();
        s.in_tps += t.in_tps;
        s.in_24h += t.in_msg_24h;
        for g in t.groups {
            let e = s.groups.entry(g.group).or_default();
            e.0 += g.out_tps;
            e.1 += g.out_msg_24h;
            e.2 = e.2.max(g.accumulation);
        }
    }
}

/// The lines `statsAll` prints for the figures, RocketMQ's header first.
fn stats_lines(total: &BTreeMap<String, Summed>, active_only: bool) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<64}  {:<64} {:>12} {:>11} {:>11} {:>14} {:>14}",
        "#Topic",
        "#Consumer Group",
        "#Accumulation",
        "#InTPS",
        "#OutTPS",
        "#InMsg24Hour",
        "#OutMsg24Hour"
    )];
    for (topic, s) in total {
        if s.groups.is_empty() {
            if !active_only || s.in_24h > 0 {
                lines.push(format!(
                    "{:<64}  {:<64} {:>12} {:>11.2} {:>11} {:>14} {:>14}",
                    front(topic, 64),
                    "",
                    0,
                    s.in_tps,
                    "",
                    s.in_24h,
                    "NO_CONSUMER"
                ));
            }
            continue;
        }
        for (group, (out_tps, out_24h, accumulation)) in &s.groups {
            if !active_only || s.in_24h > 0 || *out_24h > 0 {
                lines.push(format!(
                    "{:<64}  {:<64} {:>12} {:>11.2} {:>11.2} {:>14} {:>14}",
                    front(topic, 64),
                    front(group, 64),
                    accumulation,
                    s.in_tps,
                    out_tps,
                    s.in_24h,
                    out_24h
                ));
            }
        }
    }
    lines
}

/// `statsAll [-a] [-t TOPIC]` over `groups` (each a Raft group's nodes).
pub(crate) async fn stats_all(
    groups: &[Vec<String>],
    timeout: Duration,
    topic: Option<&str>,
    active_only: bool,
) -> anyhow::Result<ExitCode> {
    let mut total = BTreeMap::new();
    let mut answered = 0;
    for addr in groups.iter().flatten() {
        let asked = async {
            let mut client = AdminClient::connect(addr).await?;
            let answer = client.stats_all(topic.unwrap_or_default(), timeout).await?;
            check_admin(answer.status.as_ref(), "StatsAll", client.addr())?;
            anyhow::Ok(answer)
        };
        match asked.await {
            Ok(answer) => {
                add(&mut total, answer);
                answered += 1;
            }
            Err(e) => eprintln!("mqadmin: statsAll: {addr}: {e:#} (its figures are missing)"),
        }
    }
    if answered == 0 {
        anyhow::bail!("no node answered StatsAll");
    }
    for line in stats_lines(&total, active_only) {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, tps: f64, day: u64, groups: Vec<pb::GroupStats>) -> pb::TopicStats {
        pb::TopicStats {
            topic: name.into(),
            in_tps: tps,
            in_msg_24h: day,
            groups,
        }
    }

    fn group(name: &str, tps: f64, day: u64, acc: u64) -> pb::GroupStats {
        pb::GroupStats {
            group: name.into(),
            out_tps: tps,
            out_msg_24h: day,
            accumulation: acc,
        }
    }

    #[test]
    fn nodes_add_up_and_rows_keep_rocketmqs_columns() {
        let mut total = BTreeMap::new();
        let node = |acc| pb::StatsAllResponse {
            status: None,
            topics: vec![
                topic("T", 1.5, 10, vec![group("G", 0.5, 4, acc)]),
                topic("Idle", 0.0, 0, vec![]),
            ],
        };
        add(&mut total, node(7));
        add(&mut total, node(6));
        let lines = stats_lines(&total, false);
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(lines[0].starts_with("#Topic"));
        assert_eq!(&lines[0][66..81], "#Consumer Group");
        let idle: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(idle, ["Idle", "0", "0.00", "0", "NO_CONSUMER"]);
        let t: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(t, ["T", "G", "7", "3.00", "1.00", "20", "8"]);
        assert_eq!(
            lines[2].find('G'),
            Some(66),
            "the group column starts where its header does"
        );
        let active = stats_lines(&total, true);
        assert_eq!(active.len(), 2, "-a leaves the idle topic out");
        assert_eq!(front(&"x".repeat(70), 64).len(), 64);
    }
}
