//! The harness as a RocketMQ 4.x client over the remoting protocol: the topic route from the
//! NameServer (GET_ROUTEINFO_BY_TOPIC 105), SEND_MESSAGE_V2 (310) to the route's master,
//! PULL_MESSAGE (11) per queue with long polling, QUERY_CONSUMER_OFFSET (14) and
//! UPDATE_CONSUMER_OFFSET (15).
//!
//! Every call ends in an [`Outcome`] with the gRPC client's meaning: `Fail` only when the
//! broker's answer proves nothing was written ([`send_refused`] says which codes do, after
//! reading the broker's mapping), `Unknown` for a timeout, a broken connection or any other
//! code.

use std::collections::HashMap;
use std::time::Duration;

use raftmq_remoting::code::{request as rq, response as rs};
use raftmq_remoting::ext_fields as fields;
use raftmq_remoting::message;
use raftmq_remoting::route::{MASTER_ID, TopicRouteData};
use raftmq_remoting::{RemotingClient, RemotingCommand, RemotingError};

use crate::client::Outcome;

/// How long a connect may take; short, so that a partitioned or dead node fails fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A NameServer call's deadline.
const NAMESRV_TIMEOUT: Duration = Duration::from_secs(3);
/// RocketMQ's default topic whose route a producer uses before its topic exists.
pub const DEFAULT_TOPIC: &str = "TBW102";
/// Records in one pull answer at most (what the 4.x clients ask for).
pub const PULL_BATCH: u32 = 32;

/// Whether a send answered with `code` and `remark` was certainly not written. Read from
/// `broker/src/remoting/mod.rs` (`service_code`) and the store:
///
/// - MESSAGE_ILLEGAL (13): the message checks and the entry-size check, before any proposal;
/// - TOPIC_NOT_EXIST (17): the topic lookup before the proposal, or a refusal when the entry
///   applied (deterministic on every replica: the message never enters a queue);
/// - SYSTEM_BUSY (2): too many proposals in flight, refused before this one was made;
/// - SERVICE_NOT_AVAILABLE (14) is definite only for "not the leader" (openraft's
///   ForwardToLeader, or no leader known: nothing appended) and for the disk guard. It also
///   carries `Shutdown`, which the log reports when a proposal's responder is dropped after
///   the entry was handed to Raft: that one may commit, so any other remark is unknown.
///
/// FLUSH_SLAVE_TIMEOUT (12, the store's "outcome unknown"), SYSTEM_ERROR (1) and all else
/// are unknown.
pub fn send_refused(code: i32, remark: &str) -> bool {
    match code {
        rs::MESSAGE_ILLEGAL | rs::TOPIC_NOT_EXIST | rs::SYSTEM_BUSY => true,
        rs::SERVICE_NOT_AVAILABLE => {
            remark.contains("not the leader") || remark.contains("diskMaxUsedSpaceRatio")
        }
        _ => false,
    }
}

/// A transport failure's outcome: definite only when the connection was never made.
fn transport_outcome<T>(e: &RemotingError, connected: bool) -> Outcome<T> {
    if connected {
        Outcome::Unknown(format!("remoting: {e}"))
    } else {
        Outcome::Fail(format!("not sent: {e}"))
    }
}

/// One topic's route as a client uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The master's address (`brokerAddrs[0]`), when the NameServer lists one.
    pub master: Option<String>,
    /// Every node's address, by broker id.
    pub addrs: Vec<String>,
    /// Write queues (RaftMQ's queues are read-write).
    pub queues: u32,
}

impl Route {
    /// The route of the first broker group in `data` (RaftMQ runs one group per cluster).
    pub fn from_data(data: &TopicRouteData) -> Option<Route> {
        let broker = data.broker_datas.first()?;
        let queues = data
            .queue_datas
            .iter()
            .find(|q| q.broker_name == broker.broker_name)?
            .write_queue_nums;
        Some(Route {
            master: broker.broker_addrs.get(&MASTER_ID).cloned(),
            addrs: broker.broker_addrs.values().cloned().collect(),
            queues,
        })
    }

    /// The address of the `attempt`-th try: the master first, then the other nodes in turn
    /// (any RaftMQ node accepts writes; a 4.x client with one broker name has nowhere else).
    pub fn target(&self, attempt: usize) -> Option<&str> {
        let mut order: Vec<&str> = self.master.iter().map(String::as_str).collect();
        order.extend(
            self.addrs
                .iter()
                .map(String::as_str)
                .filter(|a| Some(*a) != self.master.as_deref()),
        );
        if order.is_empty() {
            return None;
        }
        Some(order[attempt % order.len()])
    }
}

/// What one pull answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The response code (SUCCESS, PULL_NOT_FOUND, PULL_RETRY_IMMEDIATELY, PULL_OFFSET_MOVED).
    pub code: i32,
    /// Where the next pull starts.
    pub next_offset: u64,
    /// The harness values of the records, in queue order.
    pub values: Vec<u64>,
}

/// Connections to the NameServer and the brokers, made lazily and dropped on failure.
#[derive(Debug)]
pub struct Remoting {
    namesrv: String,
    connections: HashMap<String, RemotingClient>,
}

impl Remoting {
    /// A client of the NameServer at `namesrv`.
    pub fn new(namesrv: String) -> Remoting {
        Remoting {
            namesrv,
            connections: HashMap::new(),
        }
    }

    /// Sends `request` to `addr`; the second value tells whether a connection was there, so
    /// that a failure before it is definite.
    async fn call(
        &mut self,
        addr: &str,
        request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, (RemotingError, bool)> {
        if self.connections.get(addr).is_none_or(|c| !c.is_open()) {
            self.connections.remove(addr);
            let c = RemotingClient::connect(addr, CONNECT_TIMEOUT)
                .await
                .map_err(|e| (e, false))?;
            self.connections.insert(addr.to_string(), c);
        }
        let Some(c) = self.connections.get(addr) else {
            return Err((
                RemotingError::Closed {
                    addr: addr.to_string(),
                },
                false,
            ));
        };
        match c.invoke(request, timeout).await {
            Ok(r) => Ok(r),
            Err(e) => {
                let sent = !matches!(e, RemotingError::NotSent { .. });
                // A timed-out or broken connection is not reused: the next call reconnects,
                // as the 4.x clients close a channel after a timeout.
                self.connections.remove(addr);
                Err((e, sent))
            }
        }
    }

    /// The route of `topic` from the NameServer (105).
    ///
    /// # Errors
    /// The NameServer is unreachable or does not know the topic (TOPIC_NOT_EXIST).
    pub async fn route(&mut self, topic: &str) -> anyhow::Result<Route> {
        let request =
            RemotingCommand::request(rq::GET_ROUTEINFO_BY_TOPIC, fields(&[("topic", topic)]));
        let namesrv = self.namesrv.clone();
        let r = self
            .call(&namesrv, request, NAMESRV_TIMEOUT)
            .await
            .map_err(|(e, _)| anyhow::anyhow!("namesrv {namesrv}: {e}"))?;
        if r.code != rs::SUCCESS {
            anyhow::bail!("route of {topic}: code {} {}", r.code, r.remark);
        }
        let data: TopicRouteData = serde_json::from_slice(&r.body)
            .map_err(|e| anyhow::anyhow!("route of {topic} does not parse: {e}"))?;
        Route::from_data(&data).ok_or_else(|| anyhow::anyhow!("route of {topic} has no broker"))
    }

    /// SEND_MESSAGE_V2 of one message with body `value` (decimal) to `queue` at `addr`.
    pub async fn send(
        &mut self,
        addr: &str,
        topic: &str,
        queue: u32,
        value: u64,
        timeout: Duration,
    ) -> Outcome<()> {
        let properties = format!("UNIQ_KEY\u{1}CHAOS{value:027}\u{2}WAIT\u{1}true\u{2}");
        let queue = queue.to_string();
        let born = chrono::Utc::now().timestamp_millis().to_string();
        let request = RemotingCommand::request(
            rq::SEND_MESSAGE_V2,
            fields(&[
                ("a", "chaos-producer"),
                ("b", topic),
                ("c", DEFAULT_TOPIC),
                ("d", "8"),
                ("e", &queue),
                ("f", "0"),
                ("g", &born),
                ("h", "0"),
                ("i", &properties),
                ("j", "0"),
                ("k", "false"),
            ]),
        )
        .with_body(value.to_string().into_bytes());
        match self.call(addr, request, timeout).await {
            Err((e, connected)) => transport_outcome(&e, connected),
            Ok(r) if r.code == rs::SUCCESS => Outcome::Ok(()),
            Ok(r) if send_refused(r.code, &r.remark) => {
                Outcome::Fail(format!("code {}: {}", r.code, r.remark))
            }
            Ok(r) => Outcome::Unknown(format!("code {}: {}", r.code, r.remark)),
        }
    }

    /// One PULL_MESSAGE of `queue` from `offset`, held up to `suspend` (long polling).
    pub async fn pull(
        &mut self,
        addr: &str,
        topic: &str,
        group: &str,
        queue: u32,
        offset: u64,
        suspend: Duration,
    ) -> Outcome<Pulled> {
        let queue = queue.to_string();
        let offset = offset.to_string();
        let suspend_ms = suspend.as_millis().to_string();
        let max = PULL_BATCH.to_string();
        // sysFlag 6: suspend + subscription; the offset is committed by its own request.
        let request = RemotingCommand::request(
            rq::PULL_MESSAGE,
            fields(&[
                ("consumerGroup", group),
                ("topic", topic),
                ("queueId", &queue),
                ("queueOffset", &offset),
                ("maxMsgNums", &max),
                ("sysFlag", "6"),
                ("commitOffset", "0"),
                ("suspendTimeoutMillis", &suspend_ms),
                ("subscription", "*"),
                ("subVersion", "0"),
            ]),
        );
        let timeout = suspend + Duration::from_secs(5);
        let r = match self.call(addr, request, timeout).await {
            Err((e, _)) => return Outcome::Unknown(format!("pull: {e}")),
            Ok(r) => r,
        };
        let next_offset = r.field("nextBeginOffset").and_then(|s| s.parse().ok());
        match (r.code, next_offset) {
            (rs::SUCCESS, Some(next_offset)) => match decode_values(&r.body) {
                Ok(values) => Outcome::Ok(Pulled {
                    code: r.code,
                    next_offset,
                    values,
                }),
                Err(e) => Outcome::Unknown(format!("pull body: {e}")),
            },
            (
                rs::PULL_NOT_FOUND | rs::PULL_RETRY_IMMEDIATELY | rs::PULL_OFFSET_MOVED,
                Some(next_offset),
            ) => Outcome::Ok(Pulled {
                code: r.code,
                next_offset,
                values: Vec::new(),
            }),
            (code, _) => Outcome::Unknown(format!("pull: code {code}: {}", r.remark)),
        }
    }

    /// The group's committed offset of `queue` (14); QUERY_NOT_FOUND is offset 0 (the
    /// harness's consumers start from the first offset).
    pub async fn query_offset(
        &mut self,
        addr: &str,
        topic: &str,
        group: &str,
        queue: u32,
    ) -> Outcome<u64> {
        let queue = queue.to_string();
        let request = RemotingCommand::request(
            rq::QUERY_CONSUMER_OFFSET,
            fields(&[
                ("consumerGroup", group),
                ("topic", topic),
                ("queueId", &queue),
            ]),
        );
        match self.call(addr, request, Duration::from_secs(5)).await {
            Err((e, _)) => Outcome::Unknown(format!("query offset: {e}")),
            Ok(r) if r.code == rs::QUERY_NOT_FOUND => Outcome::Ok(0),
            Ok(r) if r.code == rs::SUCCESS => {
                match r.field("offset").and_then(|o| o.parse().ok()) {
                    Some(o) => Outcome::Ok(o),
                    None => Outcome::Unknown("query offset: no offset field".into()),
                }
            }
            Ok(r) => Outcome::Unknown(format!("query offset: code {}: {}", r.code, r.remark)),
        }
    }

    /// Commits the group's offset of `queue` (15) and waits for the answer.
    pub async fn commit_offset(
        &mut self,
        addr: &str,
        topic: &str,
        group: &str,
        queue: u32,
        offset: u64,
    ) -> Outcome<()> {
        let queue = queue.to_string();
        let offset = offset.to_string();
        let request = RemotingCommand::request(
            rq::UPDATE_CONSUMER_OFFSET,
            fields(&[
                ("consumerGroup", group),
                ("topic", topic),
                ("queueId", &queue),
                ("commitOffset", &offset),
            ]),
        );
        match self.call(addr, request, Duration::from_secs(8)).await {
            Err((e, _)) => Outcome::Unknown(format!("commit: {e}")),
            Ok(r) if r.code == rs::SUCCESS => Outcome::Ok(()),
            Ok(r) => Outcome::Unknown(format!("commit: code {}: {}", r.code, r.remark)),
        }
    }

    /// Creates `topic` with `queues` queues on the master of the default topic's route (what
    /// `mqadmin updateTopic` does), then waits until the NameServer routes it.
    ///
    /// # Errors
    /// No route, a refused create, or no route for the topic within `timeout`.
    pub async fn create_topic(
        &mut self,
        topic: &str,
        queues: u32,
        timeout: Duration,
    ) -> anyhow::Result<Route> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last_error = String::new();
        // Bounded: one try per half second until the deadline.
        while tokio::time::Instant::now() < deadline {
            match self.try_create_topic(topic, queues).await {
                Ok(route) if route.queues == queues && route.master.is_some() => return Ok(route),
                Ok(route) => last_error = format!("route so far: {route:?}"),
                Err(e) => last_error = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        anyhow::bail!("topic {topic} not routed within {timeout:?}: {last_error}")
    }

    async fn try_create_topic(&mut self, topic: &str, queues: u32) -> anyhow::Result<Route> {
        if let Ok(route) = self.route(topic).await {
            return Ok(route);
        }
        let default = self.route(DEFAULT_TOPIC).await?;
        let addr = default
            .master
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no master in the route of {DEFAULT_TOPIC}"))?;
        let n = queues.to_string();
        let request = RemotingCommand::request(
            rq::UPDATE_AND_CREATE_TOPIC,
            fields(&[
                ("topic", topic),
                ("readQueueNums", &n),
                ("writeQueueNums", &n),
                ("perm", "6"),
            ]),
        );
        let r = self
            .call(&addr, request, Duration::from_secs(8))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("create topic at {addr}: {e}"))?;
        if r.code != rs::SUCCESS {
            anyhow::bail!("create topic at {addr}: code {} {}", r.code, r.remark);
        }
        self.route(topic).await
    }
}

/// The bodies of the MessageExt records of a pull answer, parsed as harness values (a body
/// that is not a decimal number is skipped with a warning).
///
/// # Errors
/// A record that does not frame.
pub fn decode_values(body: &[u8]) -> anyhow::Result<Vec<u64>> {
    let records = message::decode_records(bytes::Bytes::copy_from_slice(body))?;
    Ok(records
        .iter()
        .filter_map(|r| {
            let value = std::str::from_utf8(&r.body)
                .ok()
                .and_then(|s| s.parse::<u64>().ok());
            if value.is_none() {
                tracing::warn!("a message not written by the harness: {:?}", r.body);
            }
            value
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use raftmq_remoting::route::{BrokerData, QueueData};
    use std::collections::BTreeMap;

    fn record(out: &mut Vec<u8>, body: &[u8]) {
        let total =
            4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 8 + 4 + body.len() + 1 + 1 + 2;
        out.put_i32(i32::try_from(total).unwrap());
        out.put_i32(-626_843_481); // MESSAGE_MAGIC_CODE
        out.put_i32(0);
        out.put_i32(3);
        out.put_i32(0);
        out.put_i64(7);
        out.put_i64(1234);
        out.put_i32(0);
        out.put_i64(1);
        out.put_slice(&[127, 0, 0, 1]);
        out.put_u32(9);
        out.put_i64(2);
        out.put_slice(&[127, 0, 0, 1]);
        out.put_u32(8081);
        out.put_i32(0);
        out.put_i64(0);
        out.put_i32(i32::try_from(body.len()).unwrap());
        out.put_slice(body);
        out.put_u8(1);
        out.put_u8(b'T');
        out.put_i16(0);
    }

    /// A server that accepts one connection and closes it at once.
    async fn closing_server() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            drop(stream);
        });
        addr
    }

    #[tokio::test]
    async fn a_request_on_a_connection_the_peer_closed_fails_at_once_unsent() {
        let addr = closing_server().await;
        let c = RemotingClient::connect(&addr, CONNECT_TIMEOUT)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!c.is_open());
        let started = std::time::Instant::now();
        let request =
            RemotingCommand::request(rq::SEND_MESSAGE_V2, raftmq_remoting::ExtFields::new());
        let e = c.invoke(request, Duration::from_secs(5)).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1), "{e}");
        assert!(matches!(e, RemotingError::NotSent { .. }), "{e}");
    }

    #[test]
    fn pull_records_decode_to_their_values_in_order() {
        let mut body = Vec::new();
        record(&mut body, b"41");
        record(&mut body, b"not a value");
        record(&mut body, b"42");
        assert_eq!(decode_values(&body).unwrap(), vec![41, 42]);
        assert!(decode_values(&body[..body.len() - 1]).is_err());
        assert_eq!(decode_values(&[]).unwrap(), Vec::<u64>::new());
    }

    #[test]
    fn only_refusals_before_any_proposal_are_definite() {
        assert!(send_refused(rs::MESSAGE_ILLEGAL, "body too large"));
        assert!(send_refused(rs::SYSTEM_BUSY, "busy"));
        assert!(send_refused(
            rs::SERVICE_NOT_AVAILABLE,
            "not the leader of group g; leader is n1"
        ));
        // A proposal whose responder was dropped may still commit.
        assert!(!send_refused(
            rs::SERVICE_NOT_AVAILABLE,
            "raft-log node is shut down"
        ));
        assert!(!send_refused(rs::FLUSH_SLAVE_TIMEOUT, "outcome unknown"));
        assert!(!send_refused(rs::SYSTEM_ERROR, "missing result"));
        assert!(!send_refused(rs::SUCCESS, ""));
    }

    #[test]
    fn a_route_tries_the_master_first_then_the_others() {
        let data = TopicRouteData {
            queue_datas: vec![QueueData {
                broker_name: "g".into(),
                read_queue_nums: 8,
                write_queue_nums: 8,
                perm: 6,
                topic_sys_flag: 0,
            }],
            broker_datas: vec![BrokerData {
                cluster: "c".into(),
                broker_name: "g".into(),
                broker_addrs: BTreeMap::from([
                    (0, "b:1".to_string()),
                    (1, "a:1".to_string()),
                    (3, "c:1".to_string()),
                ]),
            }],
            ..TopicRouteData::default()
        };
        let route = Route::from_data(&data).unwrap();
        assert_eq!(route.queues, 8);
        let order: Vec<&str> = (0..4).filter_map(|i| route.target(i)).collect();
        assert_eq!(order, ["b:1", "a:1", "c:1", "b:1"]);
    }
}
