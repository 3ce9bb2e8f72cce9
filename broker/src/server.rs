//! [`Broker`]: one broker node wired together from a [`BrokerConfig`] — the message store on
//! raft-log, the [`BrokerService`], and the gRPC server with the RocketMQ MessagingService and
//! the Admin service on `listenPort`. `mqbroker` adds only arguments, logging and signals.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use proto::apache::rocketmq::v2::messaging_service_server::MessagingServiceServer;
use proto::raftmq::admin::v1::admin_server::AdminServer;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::admin::Admin;
use crate::config::BrokerConfig;
use crate::grpc::Messaging;
use crate::http::HttpServer;
use crate::metrics::grpc_layer::RpcLatencyLayer;
use crate::metrics::{BrokerMetrics, MetricsError};
use crate::remoting::Remoting;
use crate::remoting::register::{RegisterConfig, Registrar};
use crate::service::{BrokerService, ServiceConfig};
use crate::state::StateConfig;
use crate::store::{MessageStore, StoreError};

/// How long the client listener waits for `listenPort` while something else holds it: the
/// same patience as the replication port, since a port held for a moment is no reason to fail.
const BIND_PATIENCE: Duration = Duration::from_secs(5);
/// RocketMQ's `registerNameServerPeriod`: how often a broker registers at its NameServers.
const REGISTER_PERIOD: Duration = Duration::from_secs(30);
/// The largest gRPC message either way (a send of many large bodies).
const GRPC_MESSAGE_BYTES_MAX: usize = 64 << 20;

/// Why a broker could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The message store (raft-log) did not start.
    #[error("cannot start the raft-log store")]
    Store {
        /// Why.
        #[source]
        source: StoreError,
    },
    /// `listenPort` could not be bound.
    #[error("cannot listen on {addr} (listenPort)")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The Prometheus metrics could not be set up.
    #[error("cannot set up the metrics")]
    Metrics {
        /// Why.
        #[source]
        source: MetricsError,
    },
    /// The HTTP listener (`metricsPromExporterHost:metricsPromExporterPort`) could not bind.
    #[error("cannot listen on {addr} (metricsPromExporterPort)")]
    HttpListen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server failed while serving.
    #[error("gRPC server failed")]
    Serve {
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// The gRPC server task panicked or was cancelled.
    #[error("gRPC server task ended abnormally")]
    ServerTask {
        /// Why.
        #[source]
        source: tokio::task::JoinError,
    },
    /// raft-log did not shut down cleanly.
    #[error("raft-log shutdown")]
    Shutdown {
        /// Why.
        #[source]
        source: raft_log::Error,
    },
}

/// A running broker node.
#[derive(Debug)]
pub struct Broker {
    service: BrokerService,
    local_addr: SocketAddr,
    stop: oneshot::Sender<()>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    registrar: Option<Registrar>,
    remoting: Remoting,
    transaction_checks: JoinHandle<()>,
    trace: Option<JoinHandle<()>>,
    http: Option<HttpServer>,
}

/// Where this node registers at the NameServers, from broker.conf.
fn register_config(config: &BrokerConfig, namesrv_addrs: Vec<String>) -> RegisterConfig {
    RegisterConfig {
        namesrv_addrs,
        cluster_name: config.broker_cluster_name.clone(),
        broker_name: config.broker_name.clone(),
        broker_addr: config.client_addr(),
        ha_addr: config.raft_log.self_addr().to_string(),
        node_number: config.raft_log.node_id(),
        period: REGISTER_PERIOD,
    }
}

impl Broker {
    /// Starts the store, binds `listenPort` and serves both gRPC services on it.
    ///
    /// # Errors
    /// [`BrokerError::Store`] or [`BrokerError::Listen`].
    #[tracing::instrument(skip_all, fields(broker = %config.broker_name, self_id = %config.raft_log.self_id))]
    pub async fn start(config: BrokerConfig) -> Result<Broker, BrokerError> {
        let store = MessageStore::start(
            config.raft_log.clone(),
            StateConfig::from_broker_config(&config),
            &config.store_path_root_dir,
        )
        .await
        .map_err(|source| BrokerError::Store { source })?;
        let addr = config.bind_addr();
        let listener = raft_log::net::bind_retrying(&addr.to_string(), BIND_PATIENCE)
            .await
            .map_err(|source| BrokerError::Listen { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| BrokerError::Listen { addr, source })?;
        if config.unsafe_ack_before_replication {
            tracing::warn!(
                "unsafeAckBeforeReplication=true: sends are acknowledged before replication and \
                 can be lost (a negative control for fault-injection tests only)"
            );
        }
        if config.unsafe_commit_rollbacks {
            tracing::warn!(
                "unsafeCommitRollbacks=true: a transaction rollback commits instead (a negative \
                 control for fault-injection tests only)"
            );
        }
        let service = BrokerService::new(store, ServiceConfig::from_broker_config(&config));
        let (metrics, http) = start_http(&config, &service).await?;
        let rpc = metrics.as_ref().map(BrokerMetrics::rpc);
        let admin = AdminServer::new(Admin::new(service.clone()));
        let messaging = MessagingServiceServer::new(Messaging::new(service.clone()))
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
        let (stop, stopped) = oneshot::channel::<()>();
        let remoting = Remoting::new(service.clone(), rpc.clone());
        let incoming = crate::listener::incoming_with_remoting(listener, remoting.clone());
        let namesrv_addrs = config.namesrv_addrs();
        let registrar = (!namesrv_addrs.is_empty())
            .then(|| Registrar::start(service.clone(), register_config(&config, namesrv_addrs)));
        let transaction_checks = service.spawn_transaction_checks();
        let trace = service.spawn_trace();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .layer(RpcLatencyLayer::new(rpc))
                .add_service(messaging)
                .add_service(admin)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        tracing::info!(
            listen = %local_addr,
            raft = %config.raft_log.self_addr(),
            namesrv = config.namesrv_addr.as_deref().unwrap_or("none"),
            "mqbroker serving apache.rocketmq.v2.MessagingService, raftmq.admin.v1.Admin and \
             RocketMQ remoting"
        );
        Ok(Broker {
            service,
            local_addr,
            stop,
            server,
            registrar,
            remoting,
            transaction_checks,
            trace,
            http,
        })
    }

    /// The address of the HTTP listener (metrics, health), when `metricsExporterType=PROM`.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(HttpServer::local_addr)
    }

    /// The address the gRPC server listens on (the bound port when `listenPort` is 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The broker's operations.
    pub fn service(&self) -> &BrokerService {
        &self.service
    }

    /// Serves until `signal` resolves (or the server ends on its own), then stops gracefully
    /// ([`Broker::stop_gracefully`]).
    ///
    /// # Errors
    /// The server failed, or raft-log did not shut down cleanly.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<(), BrokerError> {
        let ended = tokio::select! {
            () = signal => None,
            ended = &mut self.server => Some(ended),
        };
        match ended {
            None => self.stop_gracefully().await,
            Some(ended) => {
                server_result(ended)?;
                self.stop_store().await
            }
        }
    }

    /// What SIGTERM does: a leader first hands leadership to its most caught-up live follower
    /// and waits until that one leads (at most two election timeouts and 4 s), so clients
    /// find a leader while this node drains; then [`Broker::shutdown`]. A follower just
    /// drains.
    ///
    /// # Errors
    /// As [`Broker::shutdown`].
    pub async fn stop_gracefully(self) -> Result<(), BrokerError> {
        let started = std::time::Instant::now();
        if let Some(to) = self.service.hand_off_leadership().await {
            tracing::info!(
                to = %to,
                took_ms = started.elapsed().as_millis(),
                "handed leadership to {to} before stopping"
            );
        }
        self.shutdown().await
    }

    /// Stops serving (letting requests in progress finish), then stops the store.
    ///
    /// # Errors
    /// As [`Broker::run_until`].
    pub async fn shutdown(self) -> Result<(), BrokerError> {
        let Broker {
            service,
            stop,
            server,
            registrar,
            remoting,
            transaction_checks,
            trace,
            http,
            ..
        } = self;
        transaction_checks.abort();
        if let Some(t) = &trace {
            t.abort();
        }
        if let Some(r) = registrar {
            r.stop().await;
        }
        service.stop_serving();
        remoting.stop();
        let _ = stop.send(());
        server_result(server.await)?;
        if let Some(h) = http {
            h.stop().await;
        }
        tracing::info!("shutting down");
        shutdown_store(&service).await
    }

    async fn stop_store(self) -> Result<(), BrokerError> {
        self.transaction_checks.abort();
        if let Some(t) = &self.trace {
            t.abort();
        }
        if let Some(r) = self.registrar {
            r.stop().await;
        }
        self.remoting.stop();
        if let Some(h) = self.http {
            h.stop().await;
        }
        shutdown_store(&self.service).await
    }
}

/// The metrics registry and the HTTP listener, when `metricsExporterType=PROM`.
async fn start_http(
    config: &BrokerConfig,
    service: &BrokerService,
) -> Result<(Option<BrokerMetrics>, Option<HttpServer>), BrokerError> {
    let Some(addr) = config.http_addr() else {
        return Ok((None, None));
    };
    let metrics =
        BrokerMetrics::new(config, service).map_err(|source| BrokerError::Metrics { source })?;
    let http = HttpServer::start(addr, metrics.clone(), service.clone())
        .await
        .map_err(|source| BrokerError::HttpListen { addr, source })?;
    Ok((Some(metrics), Some(http)))
}

async fn shutdown_store(service: &BrokerService) -> Result<(), BrokerError> {
    service
        .store()
        .node()
        .shutdown()
        .await
        .map_err(|source| BrokerError::Shutdown { source })
}

fn server_result(
    ended: Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>,
) -> Result<(), BrokerError> {
    ended
        .map_err(|source| BrokerError::ServerTask { source })?
        .map_err(|source| BrokerError::Serve { source })
}
