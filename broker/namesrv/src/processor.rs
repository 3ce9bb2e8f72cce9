//! Requests to responses (RocketMQ's `DefaultRequestProcessor`): parses each request's header
//! and body, applies it to the [`State`] and builds the answer in the request's header type.
//! No IO: the connection task in `server.rs` reads, calls [`process`] and writes.
//!
//! A refused request is answered, never dropped: a bad header field or body is SYSTEM_ERROR
//! naming the field (as RocketMQ answers a header it cannot decode), an unknown code is
//! REQUEST_CODE_NOT_SUPPORTED.

use std::time::{Duration, Instant};

use raftmq_remoting::code::{request, response};
use raftmq_remoting::route::{KvTable, RegisterBrokerBody};
use raftmq_remoting::{FieldError, RemotingCommand};
use serde::Serialize;

use crate::kv::KvConfig;
use crate::registry::{ConnectionId, HEARTBEAT_TIMEOUT_DEFAULT, Registration, Registry};

/// Everything the NameServer holds.
#[derive(Debug, Default)]
pub struct State {
    /// Registered brokers.
    pub registry: Registry,
    /// KV config.
    pub kv: KvConfig,
}

/// A refusal: the response code and remark.
#[derive(Debug)]
struct Refusal {
    code: i32,
    remark: String,
}

impl Refusal {
    fn new(code: i32, remark: impl Into<String>) -> Refusal {
        Refusal {
            code,
            remark: remark.into(),
        }
    }
}

impl From<FieldError> for Refusal {
    fn from(e: FieldError) -> Refusal {
        Refusal::new(response::SYSTEM_ERROR, e.to_string())
    }
}

type Answer = Result<RemotingCommand, Refusal>;

/// Answers `request`, which arrived over `connection`, at `now`. The caller drops the answer
/// of a oneway request.
pub fn process(
    state: &mut State,
    request: &RemotingCommand,
    connection: ConnectionId,
    now: Instant,
) -> RemotingCommand {
    let answer = match request.code {
        request::REGISTER_BROKER => register_broker(&mut state.registry, request, connection, now),
        request::UNREGISTER_BROKER => unregister_broker(&mut state.registry, request),
        request::GET_ROUTEINFO_BY_TOPIC => route_by_topic(&state.registry, request),
        request::GET_BROKER_CLUSTER_INFO => json_answer(request, &state.registry.cluster_info()),
        request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => {
            json_answer(request, &state.registry.all_topics())
        }
        request::GET_TOPICS_BY_CLUSTER => topics_by_cluster(&state.registry, request),
        request::PUT_KV_CONFIG => put_kv(&mut state.kv, request),
        request::GET_KV_CONFIG => get_kv(&state.kv, request),
        request::DELETE_KV_CONFIG => delete_kv(&mut state.kv, request),
        request::GET_KVLIST_BY_NAMESPACE => kv_list(&state.kv, request),
        other => Err(Refusal::new(
            response::REQUEST_CODE_NOT_SUPPORTED,
            format!("request type {other} not supported"),
        )),
    };
    answer.unwrap_or_else(|refusal| {
        tracing::debug!(code = refusal.code, remark = %refusal.remark, "request refused");
        RemotingCommand::response_to(request, refusal.code).with_remark(refusal.remark)
    })
}

fn success(request: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(request, response::SUCCESS)
}

fn json_answer(request: &RemotingCommand, body: &impl Serialize) -> Answer {
    let json = serde_json::to_vec(body).map_err(|e| {
        Refusal::new(
            response::SYSTEM_ERROR,
            format!("cannot encode the answer: {e}"),
        )
    })?;
    Ok(success(request).with_body(json))
}

/// A required field that must not be empty either.
fn non_empty<'a>(request: &'a RemotingCommand, field: &str) -> Result<&'a str, FieldError> {
    let value = request.required(field)?;
    if value.is_empty() {
        return Err(FieldError::Invalid {
            field: field.to_string(),
            value: String::new(),
            expected: "non-empty",
        });
    }
    Ok(value)
}

fn register_broker(
    registry: &mut Registry,
    request: &RemotingCommand,
    connection: ConnectionId,
    now: Instant,
) -> Answer {
    let compressed = match request.field("compressed") {
        None | Some("") => false,
        Some(v) => raft_log::config::parse_bool(v).map_err(|_| FieldError::Invalid {
            field: "compressed".to_string(),
            value: v.to_string(),
            expected: "true or false",
        })?,
    };
    if compressed {
        // RocketMQ's compressed body is its own deflated binary layout; brokers send JSON
        // unless `compressedRegister` is set.
        return Err(Refusal::new(
            response::SYSTEM_ERROR,
            "compressed registration bodies are not supported: set compressedRegister=false",
        ));
    }
    let topics = if request.body.is_empty() {
        None
    } else {
        let body: RegisterBrokerBody = serde_json::from_slice(&request.body).map_err(|e| {
            Refusal::new(
                response::SYSTEM_ERROR,
                format!("malformed RegisterBrokerBody: {e}"),
            )
        })?;
        Some(body.topic_config_serialize_wrapper)
    };
    let heartbeat_timeout = request
        .parsed_opt::<u64>("heartbeatTimeoutMillis", "milliseconds")?
        .map_or(HEARTBEAT_TIMEOUT_DEFAULT, Duration::from_millis);
    let registration = Registration {
        cluster: non_empty(request, "clusterName")?.to_string(),
        broker_name: non_empty(request, "brokerName")?.to_string(),
        broker_addr: non_empty(request, "brokerAddr")?.to_string(),
        broker_id: request.parsed("brokerId", "a broker id")?,
        ha_server_addr: request
            .field("haServerAddr")
            .unwrap_or_default()
            .to_string(),
        heartbeat_timeout,
        topics,
        connection,
        term: request.parsed_opt("raftTerm", "a Raft term")?,
    };
    let registered = registry
        .register(registration, now)
        .map_err(|e| Refusal::new(response::SYSTEM_BUSY, e.to_string()))?;
    Ok(success(request)
        .with_field("haServerAddr", registered.ha_server_addr)
        .with_field("masterAddr", registered.master_addr))
}

fn unregister_broker(registry: &mut Registry, request: &RemotingCommand) -> Answer {
    let _cluster = request.required("clusterName")?;
    let broker_name = request.required("brokerName")?;
    let broker_addr = request.required("brokerAddr")?;
    let broker_id: u64 = request.parsed("brokerId", "a broker id")?;
    registry.unregister(broker_name, broker_addr, broker_id);
    Ok(success(request))
}

fn route_by_topic(registry: &Registry, request: &RemotingCommand) -> Answer {
    let topic = request.required("topic")?;
    match registry.route(topic) {
        Some(route) => json_answer(request, &route),
        None => Err(Refusal::new(
            response::TOPIC_NOT_EXIST,
            format!("No topic route info in name server for the topic: {topic}"),
        )),
    }
}

fn topics_by_cluster(registry: &Registry, request: &RemotingCommand) -> Answer {
    let cluster = request.required("cluster")?;
    json_answer(request, &registry.topics_of_cluster(cluster))
}

fn put_kv(kv: &mut KvConfig, request: &RemotingCommand) -> Answer {
    let namespace = non_empty(request, "namespace")?;
    let key = non_empty(request, "key")?;
    let value = request.required("value")?;
    kv.put(namespace, key, value)
        .map_err(|e| Refusal::new(response::SYSTEM_BUSY, e.to_string()))?;
    Ok(success(request))
}

fn get_kv(kv: &KvConfig, request: &RemotingCommand) -> Answer {
    let namespace = request.required("namespace")?;
    let key = request.required("key")?;
    match kv.get(namespace, key) {
        Some(value) => Ok(success(request).with_field("value", value)),
        None => Err(Refusal::new(
            response::QUERY_NOT_FOUND,
            format!("No config item, Namespace: {namespace} Key: {key}"),
        )),
    }
}

fn delete_kv(kv: &mut KvConfig, request: &RemotingCommand) -> Answer {
    let namespace = request.required("namespace")?;
    let key = request.required("key")?;
    kv.delete(namespace, key);
    Ok(success(request))
}

fn kv_list(kv: &KvConfig, request: &RemotingCommand) -> Answer {
    let namespace = request.required("namespace")?;
    match kv.namespace(namespace) {
        Some(table) => json_answer(
            request,
            &KvTable {
                table: table.clone(),
            },
        ),
        None => Err(Refusal::new(
            response::QUERY_NOT_FOUND,
            format!("No config item, Namespace: {namespace}"),
        )),
    }
}
