//! Setup through `raftmq-client`: the target addresses, the leader, the channels, the topic and
//! its route.

use std::time::Duration;

use anyhow::{anyhow, bail};
use proto::raftmq::admin::v1 as pb;
use raftmq_client::{AdminClient, ClientError, MessagingClient, cluster_views};
use tonic::transport::Channel;

use crate::args::{Common, Target};
use crate::plan::v2_failure;

/// Deadline of the setup calls (ClusterList, UpdateTopic, QueryRoute).
pub(crate) const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A setup call's error, naming the topic as mqbench's setup errors do.
pub(crate) fn setup_error(error: ClientError, topic: &str) -> anyhow::Error {
    match error {
        ClientError::Rpc { call, addr, source } => {
            anyhow::Error::new(source).context(format!("{call} {topic} at {addr}"))
        }
        other => other.into(),
    }
}

/// The `-n` address whose node says it leads (the highest term if two do), with its id.
pub(crate) async fn find_leader(addrs: &[String]) -> anyhow::Result<(String, String)> {
    let views = cluster_views(addrs, SETUP_TIMEOUT).await;
    addrs
        .iter()
        .zip(views)
        .filter_map(|(addr, view)| {
            let view = view?;
            let me = view.nodes.iter().find(|n| n.is_self)?;
            (me.role == pb::Role::Leader as i32)
                .then(|| (me.term.unwrap_or(0), me.id.clone(), addr.clone()))
        })
        .max_by_key(|(term, _, _)| *term)
        .map(|(_, id, addr)| (addr, id))
        .ok_or_else(|| {
            anyhow!(
                "no node among -n {} says it leads (is the group up? `mqadmin clusterList`)",
                addrs.join(";")
            )
        })
}

/// The addresses the connections go to, and a description for the report.
pub(crate) async fn targets(common: &Common) -> anyhow::Result<(Vec<String>, String)> {
    let addrs = raftmq_client::access_point(common.namesrv_addr.as_deref())?;
    match common.target {
        Target::Leader => {
            let (addr, id) = find_leader(&addrs).await?;
            let described = format!("{addr} (leader {id})");
            Ok((vec![addr], described))
        }
        Target::All => {
            let described = format!("{} (all, round-robin)", addrs.join(";"));
            Ok((addrs, described))
        }
    }
}

/// `--connections` channels, round-robin over `addrs`.
pub(crate) async fn channels(
    addrs: &[String],
    connections: u32,
) -> anyhow::Result<Vec<(String, Channel)>> {
    let mut out = Vec::new();
    for i in 0..connections as usize {
        let addr = &addrs[i % addrs.len()];
        out.push((addr.clone(), raftmq_client::connect(addr).await?));
    }
    Ok(out)
}

/// Creates `topic` with `queues` queues (or sets its queue count) through the admin service.
pub(crate) async fn create_topic(addr: &str, topic: &str, queues: u32) -> anyhow::Result<()> {
    let response = AdminClient::connect(addr)
        .await?
        .update_topic(topic, queues, SETUP_TIMEOUT)
        .await
        .map_err(|e| setup_error(e, topic))?;
    let status = response
        .status
        .ok_or_else(|| anyhow!("UpdateTopic {topic} at {addr}: the response has no status"))?;
    if status.code != pb::Code::Ok as i32 {
        let name = pb::Code::try_from(status.code).map_or("UNKNOWN_CODE", |c| c.as_str_name());
        bail!(
            "UpdateTopic {topic} refused by {addr}: {name}: {}",
            status.message
        );
    }
    Ok(())
}

/// QueryRoute as an SDK does before its first send or receive; fails unless the topic has a
/// route.
pub(crate) async fn query_route(
    client: &mut MessagingClient,
    topic: &str,
) -> anyhow::Result<usize> {
    let response = client
        .query_route(topic, SETUP_TIMEOUT)
        .await
        .map_err(|e| setup_error(e, topic))?;
    if let Some(f) = v2_failure(response.status.as_ref()) {
        bail!(
            "QueryRoute {topic} refused by {}: {}: {}",
            client.addr(),
            f.code,
            f.message
        );
    }
    Ok(response.message_queues.len())
}
