//! Prometheus metrics of one broker node (`metricsExporterType=PROM`), served as text on
//! `/metrics` by [`crate::http`].
//!
//! Names are RocketMQ 5's where it has one (`BrokerMetricsConstant`, `RemotingMetricsConstant`,
//! `DefaultStoreMetricsConstant`), with its constant labels `cluster`, `node_type="broker"` and
//! `node_id` (the broker name), plus `self_id` (the Raft node: `n0`), since every node of a
//! RaftMQ group serves.
//!
//! - **Traffic and state** are read from the service at each scrape ([`MetricsView`]), so
//!   the send and receive paths count once, in [`crate::service::Stats`]:
//!   `rocketmq_messages_in_total`, `rocketmq_throughput_in_total` (by topic and message type),
//!   `rocketmq_messages_out_total`, `rocketmq_throughput_out_total` (by topic and consumer
//!   group), `rocketmq_consumer_lag_messages`, `rocketmq_consumer_inflight_messages`,
//!   `rocketmq_consumer_ready_messages`, `rocketmq_producer_connections`,
//!   `rocketmq_consumer_connections`, `rocketmq_topic_number`,
//!   `rocketmq_consumer_group_number`, `rocketmq_half_messages`, `rocketmq_storage_size`.
//! - **RPC latency** is recorded per request: `rocketmq_rpc_latency` (milliseconds, RocketMQ's
//!   buckets) by `protocol_type` (`remoting` or `grpc`), `request_code` (the remoting code's
//!   name lowercased, as RocketMQ prints it, or the gRPC method), `response_code` (the
//!   remoting code's name, or the gRPC status), `is_long_polling` and `result`.
//! - **Raft** comes from raft-log's own collector: `raft_log_*` (term, role, indexes, peer
//!   progress, append and fsync latency, snapshots, purges, leader changes).

pub mod grpc_layer;
pub mod rpc;

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::config::BrokerConfig;
use crate::service::{BrokerService, MetricsView};
use crate::state::{DLQ_PREFIX, RETRY_PREFIX};
pub use rpc::{Rpc, RpcMetrics, RpcResult};

/// Why the metrics could not be set up (a metric name clash: a bug, reported at start).
#[derive(Debug, thiserror::Error)]
#[error("cannot register the broker's Prometheus metrics")]
pub struct MetricsError {
    #[source]
    source: prometheus::Error,
}

impl From<prometheus::Error> for MetricsError {
    fn from(source: prometheus::Error) -> MetricsError {
        MetricsError { source }
    }
}

/// One node's registry; cheap to clone.
#[derive(Clone, Debug)]
pub struct BrokerMetrics {
    registry: Registry,
    rpc: RpcMetrics,
}

impl BrokerMetrics {
    /// The registry of the node `service` serves, labelled from `config`.
    ///
    /// # Errors
    /// A metric registered twice (a bug).
    pub fn new(
        config: &BrokerConfig,
        service: &BrokerService,
    ) -> Result<BrokerMetrics, MetricsError> {
        let labels = HashMap::from([
            ("cluster".to_string(), config.broker_cluster_name.clone()),
            ("node_type".to_string(), "broker".to_string()),
            ("node_id".to_string(), config.broker_name.clone()),
            ("self_id".to_string(), config.raft_log.self_id.clone()),
        ]);
        let registry = Registry::new_custom(None, Some(labels))?;
        registry.register(Box::new(service.store().node().prometheus_collector()))?;
        registry.register(Box::new(ServiceCollector::new(service.clone())?))?;
        let rpc = RpcMetrics::new()?;
        registry.register(Box::new(rpc.collector()))?;
        Ok(BrokerMetrics { registry, rpc })
    }

    /// The recorder of RPC latency, for the gRPC layer and the remoting front end.
    pub fn rpc(&self) -> RpcMetrics {
        self.rpc.clone()
    }

    /// Everything, in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out)
        {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

fn counter_vec(
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    IntCounterVec::new(Opts::new(name, help), labels)
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec, prometheus::Error> {
    IntGaugeVec::new(Opts::new(name, help), labels)
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The families filled from one [`MetricsView`] per scrape.
#[derive(Debug)]
struct ServiceFamilies {
    messages_in: IntCounterVec,
    throughput_in: IntCounterVec,
    messages_out: IntCounterVec,
    throughput_out: IntCounterVec,
    lag: IntGaugeVec,
    inflight: IntGaugeVec,
    ready: IntGaugeVec,
    producers: IntGaugeVec,
    consumers: IntGaugeVec,
    topics: IntGauge,
    groups: IntGauge,
    half_messages: IntGauge,
    storage_size: IntGauge,
}

impl ServiceFamilies {
    fn new() -> Result<ServiceFamilies, prometheus::Error> {
        let in_labels = &["topic", "message_type", "is_system"];
        let out_labels = &["topic", "consumer_group", "is_retry", "is_system"];
        let group_labels = &["topic", "consumer_group", "is_retry", "is_system"];
        Ok(ServiceFamilies {
            messages_in: counter_vec(
                "rocketmq_messages_in_total",
                "Messages this node stored for producers",
                in_labels,
            )?,
            throughput_in: counter_vec(
                "rocketmq_throughput_in_total",
                "Body bytes this node stored for producers",
                in_labels,
            )?,
            messages_out: counter_vec(
                "rocketmq_messages_out_total",
                "Messages this node handed to consumers",
                out_labels,
            )?,
            throughput_out: counter_vec(
                "rocketmq_throughput_out_total",
                "Body bytes this node handed to consumers",
                out_labels,
            )?,
            lag: gauge_vec(
                "rocketmq_consumer_lag_messages",
                "Messages the group has not acknowledged (replicated: every node agrees)",
                group_labels,
            )?,
            inflight: gauge_vec(
                "rocketmq_consumer_inflight_messages",
                "Messages delivered to the group and not yet acknowledged",
                group_labels,
            )?,
            ready: gauge_vec(
                "rocketmq_consumer_ready_messages",
                "Messages waiting to be delivered to the group",
                group_labels,
            )?,
            producers: gauge_vec(
                "rocketmq_producer_connections",
                "Live producers of each producer group on this node",
                &["producer_group"],
            )?,
            consumers: gauge_vec(
                "rocketmq_consumer_connections",
                "Live consumers of each consumer group on this node",
                &["consumer_group"],
            )?,
            topics: IntGauge::new("rocketmq_topic_number", "Topics")?,
            groups: IntGauge::new("rocketmq_consumer_group_number", "Subscription groups")?,
            half_messages: IntGauge::new(
                "rocketmq_half_messages",
                "Half messages of open transactions",
            )?,
            storage_size: IntGauge::new(
                "rocketmq_storage_size",
                "Bytes of the commit log's segment files on this node",
            )?,
        })
    }

    fn fill(&self, v: &MetricsView) {
        for vec in [
            &self.messages_in,
            &self.throughput_in,
            &self.messages_out,
            &self.throughput_out,
        ] {
            vec.reset();
        }
        for vec in [
            &self.lag,
            &self.inflight,
            &self.ready,
            &self.producers,
            &self.consumers,
        ] {
            vec.reset();
        }
        for (topic, kind, t) in &v.traffic.inbound {
            let labels = [topic.as_str(), kind, bool_str(is_system_topic(topic))];
            self.messages_in
                .with_label_values(&labels)
                .inc_by(t.messages);
            self.throughput_in
                .with_label_values(&labels)
                .inc_by(t.bytes);
        }
        for (topic, group, t) in &v.traffic.outbound {
            let labels = group_labels(topic, group);
            self.messages_out
                .with_label_values(&labels)
                .inc_by(t.messages);
            self.throughput_out
                .with_label_values(&labels)
                .inc_by(t.bytes);
        }
        for b in &v.backlogs {
            let labels = group_labels(&b.topic, &b.group);
            self.lag.with_label_values(&labels).set(int(b.lag));
            self.inflight
                .with_label_values(&labels)
                .set(int(b.inflight));
            self.ready
                .with_label_values(&labels)
                .set(int(b.lag.saturating_sub(b.inflight)));
        }
        for (group, n) in &v.producers {
            self.producers
                .with_label_values(&[group.as_str()])
                .set(int(*n));
        }
        for (group, n) in &v.consumers {
            self.consumers
                .with_label_values(&[group.as_str()])
                .set(int(*n));
        }
        self.topics.set(int(v.topics as u64));
        self.groups.set(int(v.subscription_groups as u64));
        self.half_messages.set(int(v.half_messages));
        self.storage_size.set(int(v.storage_bytes));
    }

    fn collectors(&self) -> [&dyn Collector; 13] {
        [
            &self.messages_in,
            &self.throughput_in,
            &self.messages_out,
            &self.throughput_out,
            &self.lag,
            &self.inflight,
            &self.ready,
            &self.producers,
            &self.consumers,
            &self.topics,
            &self.groups,
            &self.half_messages,
            &self.storage_size,
        ]
    }
}

fn bool_str(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// RocketMQ's system topics: its own (`RMQ_SYS_…`, `SCHEDULE_TOPIC_XXXX`, `TBW102`, the
/// trace topic) and the per-group retry and dead-letter topics count as system too.
fn is_system_topic(topic: &str) -> bool {
    topic.starts_with("RMQ_SYS_")
        || topic.starts_with("rmq_sys_")
        || topic == "SCHEDULE_TOPIC_XXXX"
        || topic == "TBW102"
        || topic.starts_with(RETRY_PREFIX)
        || topic.starts_with(DLQ_PREFIX)
}

fn group_labels<'a>(topic: &'a str, group: &'a str) -> [&'a str; 4] {
    [
        topic,
        group,
        bool_str(topic.starts_with(RETRY_PREFIX)),
        bool_str(is_system_topic(topic)),
    ]
}

/// The service's figures as one collector.
struct ServiceCollector {
    service: BrokerService,
    /// Held while a scrape fills and reads the families, so two scrapes do not mix.
    families: Mutex<ServiceFamilies>,
    descs: Vec<Desc>,
}

impl std::fmt::Debug for ServiceCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceCollector").finish_non_exhaustive()
    }
}

impl ServiceCollector {
    fn new(service: BrokerService) -> Result<ServiceCollector, prometheus::Error> {
        let families = ServiceFamilies::new()?;
        let descs = families
            .collectors()
            .into_iter()
            .flat_map(|c| c.desc().into_iter().cloned())
            .collect();
        Ok(ServiceCollector {
            service,
            families: Mutex::new(families),
            descs,
        })
    }
}

impl Collector for ServiceCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let view = self.service.metrics_view();
        let families = self
            .families
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        families.fill(&view);
        families
            .collectors()
            .into_iter()
            .flat_map(|c| c.collect())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_and_retry_topics_are_labelled_as_rocketmq_labels_them() {
        assert!(is_system_topic("RMQ_SYS_TRACE_TOPIC") && is_system_topic("TBW102"));
        assert!(!is_system_topic("orders"));
        assert_eq!(
            group_labels("%RETRY%g", "g"),
            ["%RETRY%g", "g", "true", "true"]
        );
        assert_eq!(
            group_labels("orders", "g"),
            ["orders", "g", "false", "false"]
        );
    }
}
