//! Transactions over remoting: END_TRANSACTION (37) from a 4.x producer, and
//! CHECK_TRANSACTION_STATE (39) to one, for the half messages of its producer group (sent by
//! the connection's session, `clients.rs`).

use raftmq_remoting::RemotingCommand;
use raftmq_remoting::code::{request as rq, response as rs};

use super::message_ext::{RecordPlace, put_message_ext};
use super::request::{Answer, RequestError};
use crate::service::{BrokerService, TransactionCheck, offset_msg_id};

/// RocketMQ's `MessageSysFlag` transaction types in END_TRANSACTION's `commitOrRollback`.
const TRANSACTION_NOT_TYPE: i32 = 0;
const TRANSACTION_COMMIT_TYPE: i32 = 8;
const TRANSACTION_ROLLBACK_TYPE: i32 = 12;

/// END_TRANSACTION: commits or rolls back the half message named by `transactionId` (the
/// message's unique key, which RaftMQ uses as its transaction id), else by `msgId`. An
/// unknown state (`commitOrRollback` 0: the producer does not know yet) changes nothing; the
/// half message is checked back later.
pub(super) async fn end_transaction(service: &BrokerService, r: &RemotingCommand) -> Answer {
    let state: i32 = r.parsed("commitOrRollback", "a transaction state")?;
    let id = r
        .field("transactionId")
        .filter(|t| !t.is_empty())
        .map_or_else(|| r.required("msgId"), Ok)?;
    let commit = match state {
        TRANSACTION_COMMIT_TYPE => true,
        TRANSACTION_ROLLBACK_TYPE => false,
        TRANSACTION_NOT_TYPE => return Ok(RemotingCommand::response_to(r, rs::SUCCESS)),
        other => {
            return Err(RequestError::Body {
                what: format!("commitOrRollback {other} is none of 0, 8 and 12"),
            });
        }
    };
    let from_check = r.field("fromTransactionCheck") == Some("true");
    tracing::debug!(transaction_id = %id, commit, from_check, "END_TRANSACTION");
    service.end_transaction(id, commit).await?;
    Ok(RemotingCommand::response_to(r, rs::SUCCESS))
}

/// The CHECK_TRANSACTION_STATE request for a half message: RocketMQ's header fields and the
/// message as a MessageExt record.
pub(super) fn check_request(service: &BrokerService, check: &TransactionCheck) -> RemotingCommand {
    let broker_addr = &service.config().broker_addr;
    let (index, pos) = crate::service::split_commit_log_offset(check.commit_log_offset);
    let at = RecordPlace {
        queue: 0,
        queue_offset: 0,
        index,
        pos,
        store_ms: check.store_ms,
        reconsume_times: 0,
    };
    let mut body = bytes::BytesMut::new();
    put_message_ext(&mut body, &check.message, at, broker_addr);
    let offset_id = offset_msg_id(broker_addr, check.commit_log_offset);
    let mut request = RemotingCommand::request(rq::CHECK_TRANSACTION_STATE, Default::default())
        .with_field("tranStateTableOffset", 0)
        .with_field("commitLogOffset", check.commit_log_offset)
        .with_field("msgId", &check.transaction_id)
        .with_field("transactionId", &check.transaction_id)
        .with_field("offsetMsgId", offset_id)
        .with_field("topic", &check.message.topic)
        .with_field("brokerName", &service.config().broker_name)
        .with_body(body.freeze());
    request.mark_oneway();
    request
}
