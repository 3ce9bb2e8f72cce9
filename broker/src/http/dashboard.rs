//! The built-in dashboard: one page (`dashboard.html`, embedded; plain JavaScript and SVG, no
//! build step) and the JSON API it reads, all answered from this node's own state:
//!
//! - `GET /api/cluster`: the group as this node sees it (nodes, roles, term, indexes, lag) and
//!   its put/get rates;
//! - `GET /api/topics`, `POST /api/topics` (`{"topic", "queues"}`): topics with their queues'
//!   offsets; create or update one (through the log, from any node);
//! - `GET /api/groups`: each consumer group's backlog per topic and queue;
//!   `POST /api/groups/reset` (`{"group", "topic", "timestamp_ms"}`): move its offsets to the
//!   first message stored at or after a time;
//! - `GET /api/messages?topic=T&key=K`, `?topic=T&id=UNIQ_KEY` or `?id=OFFSET_MSG_ID`: messages
//!   with their properties and body.
//!
//! A request the service refuses gets 400 (bad input), 404 (nothing there) or 503 (no leader,
//! disk full) with `{"error": "…"}` naming the field.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ctx::Ctx;
use crate::service::{MessageQuery, MessageView, ServiceError};

/// The page.
const PAGE: &str = include_str!("dashboard.html");
/// Messages a lookup shows at most.
const LOOKUP_MAX: usize = 32;

pub(super) async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// A refused request: the status for its kind and the service's words.
fn refused(e: &ServiceError) -> Response {
    let status = match e {
        ServiceError::TopicNotFound { .. }
        | ServiceError::GroupNotFound { .. }
        | ServiceError::MessageNotFound { .. }
        | ServiceError::SubscriptionGroupNotFound { .. } => StatusCode::NOT_FOUND,
        ServiceError::NotLeader { .. } | ServiceError::DiskFull { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ServiceError::Store { .. } | ServiceError::ResultMissing => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::BAD_REQUEST,
    };
    (status, Json(json!({ "error": e.to_string() }))).into_response()
}

fn bad_request(why: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": why }))).into_response()
}

pub(super) async fn cluster(State(ctx): State<Ctx>) -> Json<Value> {
    let service = &ctx.service;
    let view = service.cluster();
    let info = service.runtime_info();
    let rate = |key: &str| -> f64 {
        // RocketMQ's "10s 60s 600s" rates: the first.
        info.get(key)
            .and_then(|v| v.split(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let nodes: Vec<Value> = view
        .nodes
        .iter()
        .map(|n| {
            json!({
                "id": n.id,
                "raft_addr": n.raft_addr,
                "listen_addr": n.listen_addr,
                "is_self": n.is_self,
                "is_leader": n.id == view.leader_id,
                "role": n.role.map(|r| format!("{r:?}").to_uppercase()),
                "term": n.term,
                "last_index": n.last_index,
                "commit_index": n.commit_index,
                "applied_index": n.applied_index,
                "match_index": n.match_index,
                "lag": n.lag,
            })
        })
        .collect();
    let config = service.config();
    Json(json!({
        "cluster": config.cluster_name,
        "broker_name": config.broker_name,
        "group": view.group,
        "self_id": view.self_id,
        "leader_id": view.leader_id,
        "nodes": nodes,
        "put_tps": rate("putTps"),
        "get_tps": rate("getTransferredTps"),
        "put_total": info.get("msgPutTotalTodayNow"),
        "get_total": info.get("msgGetTotalTodayNow"),
    }))
}

pub(super) async fn topics(State(ctx): State<Ctx>) -> Response {
    let service = &ctx.service;
    let mut rows = Vec::new();
    for (name, queues) in service.topics() {
        let bounds = match service.queue_bounds(&name) {
            Ok(b) => b,
            Err(e) => return refused(&e),
        };
        let messages: u64 = bounds.iter().map(|b| b.next.saturating_sub(b.min)).sum();
        let queue_rows: Vec<Value> = bounds
            .iter()
            .enumerate()
            .map(|(q, b)| json!({ "queue": q, "min_offset": b.min, "max_offset": b.next }))
            .collect();
        rows.push(json!({
            "topic": name,
            "queues": queues,
            "messages": messages,
            "queue_offsets": queue_rows,
        }));
    }
    Json(json!({ "topics": rows })).into_response()
}

/// `POST /api/topics`.
#[derive(Debug, Deserialize)]
pub(super) struct TopicForm {
    topic: String,
    queues: u32,
}

/// A body that is not the JSON a form sends: axum's words (they name the field), as our error.
fn bad_body(r: &JsonRejection) -> Response {
    bad_request(format!("bad request body: {}", r.body_text()))
}

pub(super) async fn update_topic(
    State(ctx): State<Ctx>,
    form: Result<Json<TopicForm>, JsonRejection>,
) -> Response {
    let form = match form {
        Ok(Json(form)) => form,
        Err(r) => return bad_body(&r),
    };
    let topic = form.topic.trim();
    match ctx.service.update_topic(topic, form.queues).await {
        Ok(()) => Json(json!({ "topic": topic, "queues": form.queues })).into_response(),
        Err(e) => refused(&e),
    }
}

pub(super) async fn groups(State(ctx): State<Ctx>) -> Response {
    let service = &ctx.service;
    let (_, online) = service.clients().group_counts();
    let mut rows = Vec::new();
    for b in &service.backlogs() {
        let queues = match service.consumer_progress(&b.group, &b.topic) {
            Ok(q) => q,
            Err(e) => return refused(&e),
        };
        let queue_rows: Vec<Value> = queues
            .iter()
            .map(|q| {
                json!({
                    "queue": q.queue_id,
                    "broker_offset": q.broker_offset,
                    "consumer_offset": q.acked_offset,
                    "inflight": q.inflight,
                    "lag": q.lag,
                })
            })
            .collect();
        rows.push(json!({
            "group": b.group,
            "topic": b.topic,
            "lag": b.lag,
            "inflight": b.inflight,
            "online": online.get(&b.group).copied().unwrap_or(0),
            "queues": queue_rows,
        }));
    }
    Json(json!({ "groups": rows })).into_response()
}

/// `POST /api/groups/reset`.
#[derive(Debug, Deserialize)]
pub(super) struct ResetForm {
    group: String,
    topic: String,
    timestamp_ms: u64,
}

pub(super) async fn reset_offset(
    State(ctx): State<Ctx>,
    form: Result<Json<ResetForm>, JsonRejection>,
) -> Response {
    let form = match form {
        Ok(Json(form)) => form,
        Err(r) => return bad_body(&r),
    };
    match ctx
        .service
        .reset_offset_by_time(&form.group, &form.topic, form.timestamp_ms)
        .await
    {
        Ok(moved) => {
            let rows: Vec<Value> = moved
                .iter()
                .map(|(q, before, after)| json!({ "queue": q, "before": before, "after": after }))
                .collect();
            Json(json!({ "group": form.group, "topic": form.topic, "queues": rows }))
                .into_response()
        }
        Err(e) => refused(&e),
    }
}

/// `GET /api/messages`.
#[derive(Debug, Deserialize)]
pub(super) struct Lookup {
    topic: Option<String>,
    key: Option<String>,
    id: Option<String>,
}

fn query_of(l: &Lookup) -> Result<MessageQuery, String> {
    let topic = l.topic.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let key = l.key.as_deref().map(str::trim).filter(|k| !k.is_empty());
    let id = l.id.as_deref().map(str::trim).filter(|i| !i.is_empty());
    match (topic, key, id) {
        (Some(t), Some(k), _) => Ok(MessageQuery::Key {
            topic: t.to_string(),
            key: k.to_string(),
        }),
        (Some(t), None, Some(i)) => Ok(MessageQuery::UniqueKey {
            topic: t.to_string(),
            id: i.to_string(),
        }),
        (None, _, Some(i)) => Ok(MessageQuery::OffsetMsgId(i.to_string())),
        (None, Some(_), None) => Err("a key lookup needs the topic (topic=…&key=…)".into()),
        (_, None, None) => Err("give key (with topic) or id (a message id)".into()),
    }
}

fn message_json(v: &MessageView) -> Value {
    let m = &v.message;
    let properties: serde_json::Map<String, Value> = m
        .properties
        .chunks(2)
        .filter_map(|kv| match kv {
            [k, v] => Some((k.clone(), Value::String(v.clone()))),
            _ => None,
        })
        .collect();
    json!({
        "topic": m.topic,
        "message_id": m.message_id,
        "offset_msg_id": v.offset_msg_id,
        "tag": m.tag,
        "keys": m.keys,
        "message_group": m.message_group,
        "queue": v.queue_offset.map(|(q, _)| q),
        "queue_offset": v.queue_offset.map(|(_, o)| o),
        "store_ms": v.store_ms,
        "born_ms": m.born_ms,
        "born_host": m.born_host,
        "store_host": v.store_host,
        "properties": properties,
        "body": String::from_utf8_lossy(&m.body),
        "body_bytes": m.body.len(),
    })
}

pub(super) async fn messages(State(ctx): State<Ctx>, Query(lookup): Query<Lookup>) -> Response {
    let query = match query_of(&lookup) {
        Ok(q) => q,
        Err(why) => return bad_request(why),
    };
    match ctx.service.query_messages(&query, LOOKUP_MAX) {
        Ok(found) => {
            let rows: Vec<Value> = found.iter().map(message_json).collect();
            Json(json!({ "messages": rows })).into_response()
        }
        Err(e) => refused(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(topic: Option<&str>, key: Option<&str>, id: Option<&str>) -> Lookup {
        Lookup {
            topic: topic.map(str::to_string),
            key: key.map(str::to_string),
            id: id.map(str::to_string),
        }
    }

    #[test]
    fn a_lookup_is_by_key_unique_key_or_offset_id_and_says_what_is_missing() {
        assert!(matches!(
            query_of(&lookup(Some("T"), Some("k"), None)),
            Ok(MessageQuery::Key { .. })
        ));
        assert!(matches!(
            query_of(&lookup(Some("T"), None, Some("u"))),
            Ok(MessageQuery::UniqueKey { .. })
        ));
        assert!(matches!(
            query_of(&lookup(None, None, Some("7F00"))),
            Ok(MessageQuery::OffsetMsgId(_))
        ));
        assert!(query_of(&lookup(None, Some("k"), None)).is_err_and(|e| e.contains("topic")));
        assert!(query_of(&lookup(Some(" "), None, Some(""))).is_err());
    }
}
