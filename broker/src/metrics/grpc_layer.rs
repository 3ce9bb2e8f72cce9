//! `rocketmq_rpc_latency` for the gRPC services: a tower layer that times each call from the
//! request to the end of its response body (so a streamed receive counts until its last
//! message), labelled with the method and the gRPC status of the trailers.
//!
//! The RocketMQ status of a v2 call is inside its response message, so `response_code` is the
//! transport's status (`ok` for nearly every answer, error statuses included). Telemetry
//! sessions live as long as the client and are not timed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};

use super::rpc::{Rpc, RpcMetrics, RpcResult};

/// Methods that hold the request until messages come.
const LONG_POLLING: [&str; 2] = ["ReceiveMessage", "PullMessage"];
/// Methods not timed: streams that last a client's lifetime.
const UNTIMED: [&str; 1] = ["Telemetry"];

/// The layer; a pass-through without metrics.
#[derive(Clone, Debug, Default)]
pub struct RpcLatencyLayer {
    rpc: Option<RpcMetrics>,
}

impl RpcLatencyLayer {
    /// Times calls into `rpc`; `None` times nothing.
    pub fn new(rpc: Option<RpcMetrics>) -> RpcLatencyLayer {
        RpcLatencyLayer { rpc }
    }
}

impl<S> tower::Layer<S> for RpcLatencyLayer {
    type Service = RpcLatency<S>;

    fn layer(&self, inner: S) -> RpcLatency<S> {
        RpcLatency {
            inner,
            rpc: self.rpc.clone(),
        }
    }
}

/// The service the layer wraps around the server's routes.
#[derive(Clone, Debug)]
pub struct RpcLatency<S> {
    inner: S,
    rpc: Option<RpcMetrics>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ResBody> tower::Service<http::Request<B>> for RpcLatency<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<TimedBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let method = method_of(request.uri().path());
        let rpc = self
            .rpc
            .clone()
            .filter(|_| !UNTIMED.contains(&method.as_str()));
        let answered = self.inner.call(request);
        Box::pin(async move {
            let (parts, body) = answered.await?.into_parts();
            // An error answered at once comes "trailers-only": its status is in the headers.
            let status = parts.headers.get("grpc-status").map(status_name);
            let probe = rpc.map(|rpc| Probe {
                rpc,
                method,
                started,
                status,
            });
            Ok(http::Response::from_parts(
                parts,
                TimedBody { inner: body, probe },
            ))
        })
    }
}

/// `/apache.rocketmq.v2.MessagingService/SendMessage` → `SendMessage`.
fn method_of(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

/// A `grpc-status` value by its code's name in lower case (`ok`, `unavailable`).
fn status_name(v: &http::HeaderValue) -> String {
    format!("{:?}", tonic::Code::from_bytes(v.as_bytes())).to_ascii_lowercase()
}

/// What is recorded when the body ends.
#[derive(Debug)]
struct Probe {
    rpc: RpcMetrics,
    method: String,
    started: Instant,
    status: Option<String>,
}

impl Probe {
    fn finish(self, result: RpcResult) {
        let response = self.status.as_deref().unwrap_or("ok");
        self.rpc.observe(
            Rpc {
                protocol: "grpc",
                request: &self.method,
                response,
                long_polling: LONG_POLLING.contains(&self.method.as_str()),
                result,
            },
            self.started.elapsed(),
        );
    }
}

/// A response body that records its call when it ends, or when it is dropped unfinished
/// (the client went away: `cancelled`).
#[derive(Debug)]
pub struct TimedBody<B> {
    inner: B,
    probe: Option<Probe>,
}

impl<B> TimedBody<B> {
    fn finish(&mut self, result: RpcResult, trailers: Option<&http::HeaderMap>) {
        if let Some(mut probe) = self.probe.take() {
            if let Some(v) = trailers.and_then(|t| t.get("grpc-status")) {
                probe.status = Some(status_name(v));
            }
            probe.finish(result);
        }
    }
}

impl<B: Body + Unpin> Body for TimedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.finish(RpcResult::Success, Some(trailers));
                }
            }
            Poll::Ready(Some(Err(_))) => this.finish(RpcResult::ProcessRequestFailed, None),
            Poll::Ready(None) => this.finish(RpcResult::Success, None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for TimedBody<B> {
    fn drop(&mut self) {
        // A trailers-only answer may never be polled: its status came with the headers.
        let result = match self.probe.as_ref().and_then(|p| p.status.as_ref()) {
            Some(_) => RpcResult::Success,
            None => RpcResult::Cancelled,
        };
        self.finish(result, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_statuses_are_named_as_the_labels_show_them() {
        assert_eq!(
            method_of("/apache.rocketmq.v2.MessagingService/SendMessage"),
            "SendMessage"
        );
        assert_eq!(status_name(&http::HeaderValue::from_static("0")), "ok");
        assert_eq!(
            status_name(&http::HeaderValue::from_static("14")),
            "unavailable"
        );
    }
}
