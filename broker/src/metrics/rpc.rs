//! `rocketmq_rpc_latency`: what the gRPC layer and the remoting front end record per request
//! (a leaf of `metrics/`).

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec};

/// RocketMQ's RPC latency buckets (`RemotingMetricsManager`), in milliseconds.
const RPC_BUCKETS_MS: &[f64] = &[1.0, 3.0, 5.0, 7.0, 10.0, 100.0, 1000.0, 2000.0, 3000.0];

/// `rocketmq_rpc_latency`; cheap to clone.
#[derive(Clone, Debug)]
pub struct RpcMetrics {
    latency: HistogramVec,
}

/// How an RPC ended, as RocketMQ's `result` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RpcResult {
    /// Answered.
    Success,
    /// A one-way request: nothing answered.
    Oneway,
    /// The client went away before the answer.
    Cancelled,
    /// The request failed inside the server.
    ProcessRequestFailed,
}

impl RpcResult {
    fn as_str(self) -> &'static str {
        match self {
            RpcResult::Success => "success",
            RpcResult::Oneway => "oneway",
            RpcResult::Cancelled => "cancelled",
            RpcResult::ProcessRequestFailed => "process_request_failed",
        }
    }
}

/// One finished RPC.
#[derive(Clone, Copy, Debug)]
pub struct Rpc<'a> {
    /// `remoting` or `grpc`.
    pub protocol: &'static str,
    /// The request code's name or the gRPC method.
    pub request: &'a str,
    /// The response code's name or the gRPC status.
    pub response: &'a str,
    /// A held pull or receive.
    pub long_polling: bool,
    /// How it ended.
    pub result: RpcResult,
}

impl RpcMetrics {
    pub(super) fn new() -> Result<RpcMetrics, prometheus::Error> {
        let opts = HistogramOpts::new(
            "rocketmq_rpc_latency",
            "RPC latency in milliseconds, from the request read to the answer written",
        )
        .buckets(RPC_BUCKETS_MS.to_vec());
        let latency = HistogramVec::new(
            opts,
            &[
                "protocol_type",
                "request_code",
                "response_code",
                "is_long_polling",
                "result",
            ],
        )?;
        Ok(RpcMetrics { latency })
    }

    /// The histogram, for the registry.
    pub(super) fn collector(&self) -> HistogramVec {
        self.latency.clone()
    }

    /// Records one RPC that took `elapsed`.
    pub fn observe(&self, rpc: Rpc<'_>, elapsed: Duration) {
        let long_polling = if rpc.long_polling { "true" } else { "false" };
        self.latency
            .with_label_values(&[
                rpc.protocol,
                rpc.request,
                rpc.response,
                long_polling,
                rpc.result.as_str(),
            ])
            .observe(elapsed.as_secs_f64() * 1000.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::core::Collector;

    #[test]
    fn rpc_latency_uses_rocketmq_buckets_in_milliseconds() {
        let rpc = RpcMetrics::new().expect("metrics");
        rpc.observe(
            Rpc {
                protocol: "remoting",
                request: "send_message",
                response: "success",
                long_polling: false,
                result: RpcResult::Success,
            },
            Duration::from_micros(2_500),
        );
        let mut out = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&rpc.latency.collect(), &mut out)
            .expect("encode");
        let bucket = |le: &str| {
            format!(
                "rocketmq_rpc_latency_bucket{{is_long_polling=\"false\",protocol_type=\"remoting\",\
                 request_code=\"send_message\",response_code=\"success\",result=\"success\",le=\"{le}\"}}"
            )
        };
        assert!(out.contains(&format!("{} 0", bucket("1"))), "{out}");
        assert!(out.contains(&format!("{} 1", bucket("3"))), "{out}");
        assert!(out.contains("rocketmq_rpc_latency_sum{"), "{out}");
    }
}
