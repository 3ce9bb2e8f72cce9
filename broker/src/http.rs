//! The broker's HTTP listener, on `metricsPromExporterHost:metricsPromExporterPort` when
//! `metricsExporterType=PROM`:
//!
//! - `GET /metrics`: Prometheus text ([`crate::metrics`]);
//! - `GET /health/live`: 200 while the process serves;
//! - `GET /health/ready`: 200 when a leader is known and was heard from lately (the leader: a
//!   quorum acknowledged it; a follower: it accepted an append, within three election timeouts
//!   and at least 1 s), and this node has applied what it knows committed, within
//!   [`READY_APPLY_LAG_MAX`] entries; 503 otherwise. Both answer JSON with the node's role,
//!   leader and indexes;
//! - `GET /` (and `/dashboard`): the built-in dashboard and its JSON API under `/api/`
//!   ([`dashboard`]).

mod ctx;
pub mod dashboard;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use raft_log::Role;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::metrics::BrokerMetrics;
use crate::service::BrokerService;
use ctx::Ctx;

/// How far this node's applied index may trail its commit index and still be ready: a
/// follower catching up after a restart is not ready until it is within this.
pub const READY_APPLY_LAG_MAX: u64 = 1000;
/// Prometheus' text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The running listener.
#[derive(Debug)]
pub struct HttpServer {
    local_addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Binds `addr` and serves.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn start(
        addr: SocketAddr,
        metrics: BrokerMetrics,
        service: BrokerService,
    ) -> std::io::Result<HttpServer> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let app = Router::new()
            .route("/metrics", get(metrics_text))
            .route("/health/live", get(live))
            .route("/health/ready", get(ready))
            .route("/", get(dashboard::page))
            .route("/dashboard", get(dashboard::page))
            .route("/api/cluster", get(dashboard::cluster))
            .route(
                "/api/topics",
                get(dashboard::topics).post(dashboard::update_topic),
            )
            .route("/api/groups", get(dashboard::groups))
            .route("/api/groups/reset", post(dashboard::reset_offset))
            .route("/api/messages", get(dashboard::messages))
            .with_state(Ctx { metrics, service });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "HTTP listener ended");
            }
        });
        tracing::info!(
            listen = %local_addr,
            "HTTP listener serving /metrics, /health/live, /health/ready and the dashboard on /"
        );
        Ok(HttpServer {
            local_addr,
            stop,
            task,
        })
    }

    /// The bound address (the chosen port when the configured one was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets requests in progress finish.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

#[tracing::instrument(level = "debug", skip_all)]
async fn metrics_text(State(ctx): State<Ctx>) -> Response {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        ctx.metrics.render(),
    )
        .into_response()
}

async fn live(State(ctx): State<Ctx>) -> Response {
    let m = ctx.service.store().node().metrics();
    let body = serde_json::json!({ "status": "UP", "node": m.id });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// Whether this node can serve: a leader is known and was heard from within `contact_max_ms`,
/// and this node applied what it knows committed.
fn readiness(m: &raft_log::Metrics, contact_max_ms: u64) -> Result<(), String> {
    if m.role == Role::Shutdown {
        return Err("the node is shutting down".into());
    }
    let Some(leader) = &m.leader else {
        return Err("no leader is known".into());
    };
    match m.leader_contact_ms {
        None => return Err(format!("no leader heard from yet (last known: {leader})")),
        Some(ms) if ms > contact_max_ms => {
            return Err(format!(
                "no leader heard from for {ms} ms (last known: {leader}; ready within \
                 {contact_max_ms} ms)"
            ));
        }
        Some(_) => {}
    }
    let (commit, applied) = (m.commit_index.unwrap_or(0), m.applied_index.unwrap_or(0));
    let behind = commit.saturating_sub(applied);
    if behind > READY_APPLY_LAG_MAX {
        return Err(format!(
            "applied index {applied} is {behind} entries behind the commit index {commit} \
             (ready within {READY_APPLY_LAG_MAX})"
        ));
    }
    Ok(())
}

/// How long without word from a leader a node stays ready: three election timeouts, at least 1 s.
fn contact_max_ms(config: &raft_log::Config) -> u64 {
    (3 * config.election_timeout_max_ms).max(1000)
}

async fn ready(State(ctx): State<Ctx>) -> Response {
    let node = ctx.service.store().node();
    let m = node.metrics();
    let verdict = readiness(&m, contact_max_ms(node.config()));
    let mut body = serde_json::json!({
        "status": if verdict.is_ok() { "UP" } else { "DOWN" },
        "node": m.id,
        "role": format!("{:?}", m.role).to_uppercase(),
        "leader": m.leader,
        "term": m.term,
        "commit_index": m.commit_index,
        "applied_index": m.applied_index,
        "leader_contact_ms": m.leader_contact_ms,
    });
    let code = match verdict {
        Ok(()) => StatusCode::OK,
        Err(reason) => {
            body["reason"] = reason.into();
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    (code, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(role: Role, leader: Option<&str>, commit: u64, applied: u64) -> raft_log::Metrics {
        heard(role, leader, commit, applied, Some(20))
    }

    fn heard(
        role: Role,
        leader: Option<&str>,
        commit: u64,
        applied: u64,
        contact: Option<u64>,
    ) -> raft_log::Metrics {
        raft_log::Metrics {
            id: "n1".into(),
            role,
            term: 3,
            leader: leader.map(str::to_string),
            last_index: Some(commit),
            commit_index: Some(commit),
            applied_index: Some(applied),
            purged_index: None,
            peers: vec![],
            leader_contact_ms: contact,
        }
    }

    #[test]
    fn ready_needs_a_leader_and_an_applied_index_near_the_commit_index() {
        assert_eq!(
            readiness(&at(Role::Follower, Some("n0"), 5000, 4990), 900),
            Ok(())
        );
        let no_leader = readiness(&at(Role::Candidate, None, 10, 10), 900);
        assert!(no_leader.is_err_and(|e| e.contains("no leader")));
        let behind = readiness(&at(Role::Follower, Some("n0"), 5000, 3000), 900);
        assert!(behind.is_err_and(|e| e.contains("2000 entries behind")));
        assert!(readiness(&at(Role::Shutdown, Some("n0"), 1, 1), 900).is_err());
        // Cut off: it still names its old leader (pre-vote keeps it a follower), but is silent.
        let silent = readiness(&heard(Role::Follower, Some("n0"), 9, 9, Some(5_000)), 900);
        assert!(silent.is_err_and(|e| e.contains("for 5000 ms")));
        let never = readiness(&heard(Role::Follower, Some("n0"), 9, 9, None), 900);
        assert!(never.is_err_and(|e| e.contains("no leader heard from yet")));
    }
}
