//! Conversions between raft-log's wire messages (`proto::raftlog::v1`) and openraft's types.
//!
//! This module owns the mapping of every replication message onto the wire and back. Both sides
//! of the mapping are foreign types, so the orphan rule forbids `From` impls: the conversions
//! are plain functions named `*_to_pb` and `*_from_pb`.
//!
//! Encoding cannot fail except for JSON (memberships); decoding checks every required field and
//! enum and fails with [`Status::invalid_argument`] naming the offending field, so a peer running
//! an incompatible version is refused instead of misread.

use bytes::Bytes;
use openraft::EntryPayload;
use openraft::entry::RaftEntry as _;
use proto::raftlog::v1 as pb;
use proto::raftlog::v1::append_entries_response::Kind;
use tonic::Status;

use super::types::{
    Entry, EntryData, LogId, Membership, SnapshotMeta, StoredMembership, TypeConfig, Vote, log_id,
};

pub(crate) type VoteRequest = openraft::raft::VoteRequest<TypeConfig>;
pub(crate) type VoteResponse = openraft::raft::VoteResponse<TypeConfig>;
pub(crate) type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
pub(crate) type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<TypeConfig>;
pub(crate) type StreamAppendResult = openraft::raft::StreamAppendResult<TypeConfig>;
pub(crate) type StreamAppendError = openraft::raft::StreamAppendError<TypeConfig>;
pub(crate) type TransferLeaderRequest = openraft::raft::TransferLeaderRequest<TypeConfig>;
pub(crate) type TransferLeaderResponse = openraft::raft::TransferLeaderResponse<TypeConfig>;
pub(crate) type TransferLeaderError = openraft::raft::TransferLeaderError<TypeConfig>;
pub(crate) type SnapshotResponse = openraft::raft::SnapshotResponse<TypeConfig>;

fn missing(field: &str) -> Status {
    Status::invalid_argument(format!("missing required field {field}"))
}

fn invalid(field: &str, reason: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("invalid {field}: {reason}"))
}

fn required<T>(value: Option<T>, field: &str) -> Result<T, Status> {
    value.ok_or_else(|| missing(field))
}

// ---- LogId, Vote -----------------------------------------------------------------------------

pub(crate) fn log_id_to_pb(id: &LogId) -> pb::LogId {
    pb::LogId {
        term: id.leader_id.term,
        index: id.index,
    }
}

pub(crate) fn log_id_from_pb(id: &pb::LogId) -> LogId {
    log_id(id.term, id.index)
}

fn opt_log_id_to_pb(id: Option<&LogId>) -> Option<pb::LogId> {
    id.map(log_id_to_pb)
}

fn opt_log_id_from_pb(id: Option<&pb::LogId>) -> Option<LogId> {
    id.map(log_id_from_pb)
}

pub(crate) fn vote_to_pb(vote: &Vote) -> pb::Vote {
    pb::Vote {
        term: vote.leader_id.term,
        node_id: vote.leader_id.voted_for,
        committed: vote.committed,
    }
}

/// Decodes a required vote; `field` names it in the error (`VoteRequest.vote`).
pub(crate) fn vote_from_pb(vote: Option<pb::Vote>, field: &str) -> Result<Vote, Status> {
    let v = required(vote, field)?;
    Ok(if v.committed {
        Vote::new_committed(v.term, v.node_id)
    } else {
        Vote::new(v.term, v.node_id)
    })
}

// ---- Entry -----------------------------------------------------------------------------------

/// Encodes an entry. A normal entry's body moves into the message as the same `Bytes` (no copy).
pub(crate) fn entry_to_pb(entry: Entry) -> Result<pb::Entry, Status> {
    let (term, index) = (entry.log_id.leader_id.term, entry.log_id.index);
    let (kind, data) = match entry.payload {
        EntryPayload::Normal(EntryData(data)) => (pb::EntryKind::Normal, data),
        EntryPayload::Blank => (pb::EntryKind::Blank, Bytes::new()),
        EntryPayload::Membership(m) => {
            let json = serde_json::to_vec(&m).map_err(|e| {
                Status::internal(format!("encoding membership of entry {term}-{index}: {e}"))
            })?;
            (pb::EntryKind::Membership, Bytes::from(json))
        }
    };
    Ok(pb::Entry {
        term,
        index,
        kind: kind.into(),
        data,
    })
}

/// Decodes an entry. A normal entry keeps the received `Bytes` (no copy).
pub(crate) fn entry_from_pb(entry: pb::Entry) -> Result<Entry, Status> {
    let id = log_id(entry.term, entry.index);
    let kind =
        pb::EntryKind::try_from(entry.kind).map_err(|_| invalid("Entry.kind", entry.kind))?;
    match kind {
        pb::EntryKind::Normal => Ok(Entry::new_normal(id, EntryData(entry.data))),
        pb::EntryKind::Blank => Ok(Entry::new_blank(id)),
        pb::EntryKind::Membership => {
            let m: Membership = serde_json::from_slice(&entry.data)
                .map_err(|e| invalid("Entry.data (membership JSON)", e))?;
            Ok(Entry::new_membership(id, m))
        }
        pb::EntryKind::Unspecified => Err(invalid("Entry.kind", "ENTRY_KIND_UNSPECIFIED")),
    }
}

// ---- Vote / PreVote --------------------------------------------------------------------------

pub(crate) fn vote_request_to_pb(group: &str, req: &VoteRequest) -> pb::VoteRequest {
    pb::VoteRequest {
        group: group.to_string(),
        vote: Some(vote_to_pb(&req.vote)),
        last_log_id: opt_log_id_to_pb(req.last_log_id.as_ref()),
        leadership_transfer: req.leadership_transfer,
    }
}

pub(crate) fn vote_request_from_pb(req: pb::VoteRequest) -> Result<VoteRequest, Status> {
    let mut out = VoteRequest::new(
        vote_from_pb(req.vote, "VoteRequest.vote")?,
        opt_log_id_from_pb(req.last_log_id.as_ref()),
    );
    out.leadership_transfer = req.leadership_transfer;
    Ok(out)
}

pub(crate) fn vote_response_to_pb(resp: &VoteResponse) -> pb::VoteResponse {
    pb::VoteResponse {
        vote: Some(vote_to_pb(&resp.vote)),
        vote_granted: resp.vote_granted,
        last_log_id: opt_log_id_to_pb(resp.last_log_id.as_ref()),
    }
}

pub(crate) fn vote_response_from_pb(resp: pb::VoteResponse) -> Result<VoteResponse, Status> {
    Ok(VoteResponse::new(
        vote_from_pb(resp.vote, "VoteResponse.vote")?,
        opt_log_id_from_pb(resp.last_log_id.as_ref()),
        resp.vote_granted,
    ))
}

// ---- AppendEntries ---------------------------------------------------------------------------

/// Encodes a request; takes it by value so entry bodies move instead of being cloned.
pub(crate) fn append_request_to_pb(
    group: &str,
    req: AppendEntriesRequest,
) -> Result<pb::AppendEntriesRequest, Status> {
    Ok(pb::AppendEntriesRequest {
        group: group.to_string(),
        vote: Some(vote_to_pb(&req.vote)),
        prev_log_id: opt_log_id_to_pb(req.prev_log_id.as_ref()),
        entries: req
            .entries
            .into_iter()
            .map(entry_to_pb)
            .collect::<Result<_, _>>()?,
        leader_commit: opt_log_id_to_pb(req.leader_commit.as_ref()),
    })
}

pub(crate) fn append_request_from_pb(
    req: pb::AppendEntriesRequest,
) -> Result<AppendEntriesRequest, Status> {
    let entries = req
        .entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            // Name the position so a bad entry in a batch of thousands can be found.
            entry_from_pb(e).map_err(|s| {
                Status::new(
                    s.code(),
                    format!("AppendEntriesRequest.entries[{i}]: {}", s.message()),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AppendEntriesRequest {
        vote: vote_from_pb(req.vote, "AppendEntriesRequest.vote")?,
        prev_log_id: opt_log_id_from_pb(req.prev_log_id.as_ref()),
        entries,
        leader_commit: opt_log_id_from_pb(req.leader_commit.as_ref()),
    })
}

pub(crate) fn append_response_to_pb(resp: &AppendEntriesResponse) -> pb::AppendEntriesResponse {
    let (kind, last_log_id, vote) = match resp {
        AppendEntriesResponse::Success => (Kind::Success, None, None),
        AppendEntriesResponse::PartialSuccess(last) => {
            (Kind::PartialSuccess, opt_log_id_to_pb(last.as_ref()), None)
        }
        AppendEntriesResponse::Conflict => (Kind::Conflict, None, None),
        AppendEntriesResponse::HigherVote(v) => (Kind::HigherVote, None, Some(vote_to_pb(v))),
    };
    pb::AppendEntriesResponse {
        kind: kind.into(),
        last_log_id,
        vote,
    }
}

fn response_kind(resp: &pb::AppendEntriesResponse) -> Result<Kind, Status> {
    match Kind::try_from(resp.kind) {
        Ok(Kind::Unspecified) => Err(invalid("AppendEntriesResponse.kind", "KIND_UNSPECIFIED")),
        Ok(kind) => Ok(kind),
        Err(_) => Err(invalid("AppendEntriesResponse.kind", resp.kind)),
    }
}

pub(crate) fn append_response_from_pb(
    resp: pb::AppendEntriesResponse,
) -> Result<AppendEntriesResponse, Status> {
    Ok(match response_kind(&resp)? {
        Kind::Success => AppendEntriesResponse::Success,
        Kind::PartialSuccess => {
            AppendEntriesResponse::PartialSuccess(opt_log_id_from_pb(resp.last_log_id.as_ref()))
        }
        Kind::Conflict => AppendEntriesResponse::Conflict,
        // `response_kind` refused it; the arm keeps the match exhaustive.
        Kind::HigherVote | Kind::Unspecified => AppendEntriesResponse::HigherVote(vote_from_pb(
            resp.vote,
            "AppendEntriesResponse.vote",
        )?),
    })
}

/// Encodes one result of a pipelined stream. A conflict carries the conflicting log id in
/// `last_log_id`, as the proto documents for streams.
pub(crate) fn stream_result_to_pb(res: &StreamAppendResult) -> pb::AppendEntriesResponse {
    let (kind, last_log_id, vote) = match res {
        Ok(last) => (Kind::Success, opt_log_id_to_pb(last.as_ref()), None),
        Err(StreamAppendError::Conflict(id)) => (Kind::Conflict, Some(log_id_to_pb(id)), None),
        Err(StreamAppendError::HigherVote(v)) => (Kind::HigherVote, None, Some(vote_to_pb(v))),
    };
    pb::AppendEntriesResponse {
        kind: kind.into(),
        last_log_id,
        vote,
    }
}

pub(crate) fn stream_result_from_pb(
    resp: pb::AppendEntriesResponse,
) -> Result<StreamAppendResult, Status> {
    Ok(match response_kind(&resp)? {
        // A stream never reports a partial success, but its meaning (accepted up to
        // `last_log_id`) is the same as a success's, so it is accepted.
        Kind::Success | Kind::PartialSuccess => Ok(opt_log_id_from_pb(resp.last_log_id.as_ref())),
        Kind::Conflict => Err(StreamAppendError::Conflict(log_id_from_pb(&required(
            resp.last_log_id,
            "AppendEntriesResponse.last_log_id",
        )?))),
        Kind::HigherVote | Kind::Unspecified => Err(StreamAppendError::HigherVote(vote_from_pb(
            resp.vote,
            "AppendEntriesResponse.vote",
        )?)),
    })
}

// ---- TransferLeader --------------------------------------------------------------------------

pub(crate) fn transfer_leader_request_to_pb(
    group: &str,
    req: &TransferLeaderRequest,
) -> pb::TransferLeaderRequest {
    pb::TransferLeaderRequest {
        group: group.to_string(),
        from_leader: Some(vote_to_pb(req.from_leader())),
        to_node_id: *req.to_node_id(),
        last_log_id: opt_log_id_to_pb(req.last_log_id()),
    }
}

pub(crate) fn transfer_leader_request_from_pb(
    req: pb::TransferLeaderRequest,
) -> Result<TransferLeaderRequest, Status> {
    Ok(TransferLeaderRequest::new(
        vote_from_pb(req.from_leader, "TransferLeaderRequest.from_leader")?,
        req.to_node_id,
        opt_log_id_from_pb(req.last_log_id.as_ref()),
    ))
}

/// Encodes the outcome. A refusal travels as the JSON of openraft's `TransferLeaderError`, which
/// stays readable in logs and decodes back to the same value on the leader.
pub(crate) fn transfer_leader_response_to_pb(
    resp: &TransferLeaderResponse,
) -> Result<pb::TransferLeaderResponse, Status> {
    let error = match resp {
        Ok(()) => String::new(),
        Err(e) => serde_json::to_string(e)
            .map_err(|e| Status::internal(format!("encoding TransferLeaderResponse.error: {e}")))?,
    };
    Ok(pb::TransferLeaderResponse { error })
}

pub(crate) fn transfer_leader_response_from_pb(
    resp: pb::TransferLeaderResponse,
) -> Result<TransferLeaderResponse, Status> {
    if resp.error.is_empty() {
        return Ok(Ok(()));
    }
    let e: TransferLeaderError = serde_json::from_str(&resp.error)
        .map_err(|e| invalid("TransferLeaderResponse.error (JSON)", e))?;
    Ok(Err(e))
}

// ---- Snapshot --------------------------------------------------------------------------------

/// Encodes snapshot metadata with the size of the data that follows it.
///
/// openraft 0.10 removed the snapshot id; `snapshot_id` is filled with `term-index` of the last
/// log id for diagnostics only and is ignored when decoding.
pub(crate) fn snapshot_meta_to_pb(
    meta: &SnapshotMeta,
    total_bytes: u64,
) -> Result<pb::SnapshotMeta, Status> {
    let membership = serde_json::to_vec(&meta.last_membership)
        .map_err(|e| Status::internal(format!("encoding SnapshotMeta.last_membership: {e}")))?;
    Ok(pb::SnapshotMeta {
        last_log_id: opt_log_id_to_pb(meta.last_log_id.as_ref()),
        last_membership: Bytes::from(membership),
        snapshot_id: meta
            .last_log_id
            .map(|l| format!("{}-{}", l.leader_id.term, l.index))
            .unwrap_or_default(),
        total_bytes,
    })
}

/// Decodes snapshot metadata; returns it with the announced data size.
pub(crate) fn snapshot_meta_from_pb(meta: pb::SnapshotMeta) -> Result<(SnapshotMeta, u64), Status> {
    let last_membership: StoredMembership = serde_json::from_slice(&meta.last_membership)
        .map_err(|e| invalid("SnapshotMeta.last_membership (JSON)", e))?;
    Ok((
        SnapshotMeta {
            last_log_id: opt_log_id_from_pb(meta.last_log_id.as_ref()),
            last_membership,
        },
        meta.total_bytes,
    ))
}

pub(crate) fn snapshot_response_to_pb(resp: &SnapshotResponse) -> pb::SnapshotResponse {
    pb::SnapshotResponse {
        vote: Some(vote_to_pb(&resp.vote)),
    }
}

pub(crate) fn snapshot_response_from_pb(
    resp: pb::SnapshotResponse,
) -> Result<SnapshotResponse, Status> {
    Ok(SnapshotResponse::new(vote_from_pb(
        resp.vote,
        "SnapshotResponse.vote",
    )?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::{BTreeMap, BTreeSet};

    use openraft::BasicNode;
    use tonic::Code;

    use super::*;

    fn membership() -> Membership {
        let nodes: BTreeMap<u64, BasicNode> = (0..3)
            .map(|i| (i, BasicNode::new(format!("127.0.0.1:{}", 40911 + i))))
            .collect();
        Membership::new(vec![BTreeSet::from([0, 1, 2])], nodes).unwrap()
    }

    fn entries() -> Vec<Entry> {
        vec![
            Entry::new_blank(log_id(3, 10)),
            Entry::new_normal(log_id(3, 11), EntryData(Bytes::from_static(b"hello"))),
            Entry::new_membership(log_id(3, 12), membership()),
            Entry::new_normal(log_id(3, 13), EntryData(Bytes::new())),
        ]
    }

    fn invalid_argument_naming(s: Status, field: &str) {
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        assert!(
            s.message().contains(field),
            "{field} not named in {:?}",
            s.message()
        );
    }

    #[test]
    fn log_id_and_vote_round_trip() {
        for id in [log_id(0, 0), log_id(7, 42), log_id(u64::MAX, u64::MAX)] {
            assert_eq!(log_id_from_pb(&log_id_to_pb(&id)), id);
        }
        for v in [Vote::new(5, 2), Vote::new_committed(5, 2), Vote::new(0, 0)] {
            assert_eq!(vote_from_pb(Some(vote_to_pb(&v)), "v").unwrap(), v);
        }
        invalid_argument_naming(
            vote_from_pb(None, "VoteRequest.vote").unwrap_err(),
            "VoteRequest.vote",
        );
    }

    #[test]
    fn entries_round_trip_and_normal_bodies_are_not_copied() {
        for e in entries() {
            assert_eq!(entry_from_pb(entry_to_pb(e.clone()).unwrap()).unwrap(), e);
        }
        let body = Bytes::from(vec![7u8; 4096]);
        let pb = entry_to_pb(Entry::new_normal(log_id(1, 1), EntryData(body.clone()))).unwrap();
        assert_eq!(pb.data.as_ptr(), body.as_ptr(), "encoding copied the body");
        let ptr = pb.data.as_ptr();
        match entry_from_pb(pb).unwrap().payload {
            EntryPayload::Normal(EntryData(d)) => {
                assert_eq!(d.as_ptr(), ptr, "decoding copied the body")
            }
            other => panic!("not normal: {other:?}"),
        }
    }

    #[test]
    fn bad_entries_are_refused_naming_the_field() {
        let mut e = entry_to_pb(Entry::new_blank(log_id(1, 1))).unwrap();
        e.kind = 99;
        invalid_argument_naming(entry_from_pb(e.clone()).unwrap_err(), "Entry.kind");
        e.kind = pb::EntryKind::Unspecified.into();
        invalid_argument_naming(entry_from_pb(e.clone()).unwrap_err(), "Entry.kind");
        e.kind = pb::EntryKind::Membership.into();
        e.data = Bytes::from_static(b"{not json");
        invalid_argument_naming(entry_from_pb(e.clone()).unwrap_err(), "Entry.data");

        let req = pb::AppendEntriesRequest {
            group: "g".into(),
            vote: Some(vote_to_pb(&Vote::new_committed(1, 0))),
            entries: vec![entry_to_pb(Entry::new_blank(log_id(1, 1))).unwrap(), e],
            ..Default::default()
        };
        invalid_argument_naming(append_request_from_pb(req).unwrap_err(), "entries[1]");
    }

    #[test]
    fn vote_messages_round_trip() {
        let mut req = VoteRequest::new(Vote::new(4, 1), Some(log_id(3, 9)));
        req.leadership_transfer = true;
        let pb = vote_request_to_pb("g1", &req);
        assert_eq!(pb.group, "g1");
        assert_eq!(vote_request_from_pb(pb).unwrap(), req);
        let req = VoteRequest::new(Vote::new(1, 0), None);
        assert_eq!(
            vote_request_from_pb(vote_request_to_pb("g", &req)).unwrap(),
            req
        );
        invalid_argument_naming(
            vote_request_from_pb(pb::VoteRequest::default()).unwrap_err(),
            "VoteRequest.vote",
        );

        for resp in [
            VoteResponse::new(Vote::new(4, 1), Some(log_id(3, 9)), true),
            VoteResponse::new(Vote::new_committed(5, 2), None, false),
        ] {
            assert_eq!(
                vote_response_from_pb(vote_response_to_pb(&resp)).unwrap(),
                resp
            );
        }
        invalid_argument_naming(
            vote_response_from_pb(pb::VoteResponse::default()).unwrap_err(),
            "VoteResponse.vote",
        );
    }

    #[test]
    fn append_entries_request_round_trips() {
        for (prev, ents, commit) in [
            (Some(log_id(3, 9)), entries(), Some(log_id(3, 8))),
            (None, vec![], None),
            (Some(log_id(1, 1)), vec![], None),
        ] {
            let req = AppendEntriesRequest {
                vote: Vote::new_committed(3, 1),
                prev_log_id: prev,
                entries: ents,
                leader_commit: commit,
            };
            let pb = append_request_to_pb("g", req.clone()).unwrap();
            assert_eq!(pb.group, "g");
            let back = append_request_from_pb(pb).unwrap();
            assert_eq!(
                (
                    back.vote,
                    back.prev_log_id,
                    back.entries,
                    back.leader_commit
                ),
                (req.vote, req.prev_log_id, req.entries, req.leader_commit)
            );
        }
        invalid_argument_naming(
            append_request_from_pb(pb::AppendEntriesRequest::default()).unwrap_err(),
            "AppendEntriesRequest.vote",
        );
    }

    #[test]
    fn append_entries_responses_round_trip() {
        for resp in [
            AppendEntriesResponse::Success,
            AppendEntriesResponse::PartialSuccess(Some(log_id(2, 5))),
            AppendEntriesResponse::PartialSuccess(None),
            AppendEntriesResponse::Conflict,
            AppendEntriesResponse::HigherVote(Vote::new(9, 2)),
        ] {
            assert_eq!(
                append_response_from_pb(append_response_to_pb(&resp)).unwrap(),
                resp
            );
        }
        let bad = pb::AppendEntriesResponse {
            kind: 42,
            ..Default::default()
        };
        invalid_argument_naming(
            append_response_from_pb(bad).unwrap_err(),
            "AppendEntriesResponse.kind",
        );
        invalid_argument_naming(
            append_response_from_pb(pb::AppendEntriesResponse::default()).unwrap_err(),
            "AppendEntriesResponse.kind",
        );
        let no_vote = pb::AppendEntriesResponse {
            kind: Kind::HigherVote.into(),
            ..Default::default()
        };
        invalid_argument_naming(
            append_response_from_pb(no_vote).unwrap_err(),
            "AppendEntriesResponse.vote",
        );
    }

    #[test]
    fn stream_results_round_trip() {
        for res in [
            Ok(Some(log_id(2, 5))),
            Ok(None),
            Err(StreamAppendError::Conflict(log_id(2, 3))),
            Err(StreamAppendError::HigherVote(Vote::new_committed(9, 2))),
        ] {
            assert_eq!(
                stream_result_from_pb(stream_result_to_pb(&res)).unwrap(),
                res
            );
        }
        let conflict = stream_result_to_pb(&Err(StreamAppendError::Conflict(log_id(2, 3))));
        assert_eq!(conflict.kind, i32::from(Kind::Conflict));
        let no_id = pb::AppendEntriesResponse {
            kind: Kind::Conflict.into(),
            ..Default::default()
        };
        invalid_argument_naming(
            stream_result_from_pb(no_id).unwrap_err(),
            "AppendEntriesResponse.last_log_id",
        );
    }

    #[test]
    fn transfer_leader_round_trips() {
        for req in [
            TransferLeaderRequest::new(Vote::new_committed(4, 0), 2, Some(log_id(4, 100))),
            TransferLeaderRequest::new(Vote::new_committed(1, 1), 0, None),
        ] {
            let pb = transfer_leader_request_to_pb("g", &req);
            assert_eq!(pb.group, "g");
            assert_eq!(transfer_leader_request_from_pb(pb).unwrap(), req);
        }
        invalid_argument_naming(
            transfer_leader_request_from_pb(pb::TransferLeaderRequest::default()).unwrap_err(),
            "TransferLeaderRequest.from_leader",
        );

        for resp in [
            Ok(()),
            Err(TransferLeaderError::VoteChanged {
                expected: Vote::new_committed(4, 0),
                actual: Vote::new(5, 1),
            }),
            Err(TransferLeaderError::LogNotFlushed {
                expected: Some(log_id(4, 100)),
                actual: None,
            }),
        ] {
            let pb = transfer_leader_response_to_pb(&resp).unwrap();
            assert_eq!(pb.error.is_empty(), resp.is_ok());
            assert_eq!(transfer_leader_response_from_pb(pb).unwrap(), resp);
        }
        let garbage = pb::TransferLeaderResponse { error: "no".into() };
        invalid_argument_naming(
            transfer_leader_response_from_pb(garbage).unwrap_err(),
            "TransferLeaderResponse.error",
        );
    }

    #[test]
    fn snapshot_meta_and_response_round_trip() {
        for meta in [
            SnapshotMeta {
                last_log_id: Some(log_id(3, 77)),
                last_membership: StoredMembership::new(Some(log_id(2, 1)), membership()),
            },
            SnapshotMeta::default(),
        ] {
            let pb = snapshot_meta_to_pb(&meta, 12345).unwrap();
            assert_eq!(pb.total_bytes, 12345);
            assert_eq!(snapshot_meta_from_pb(pb).unwrap(), (meta, 12345));
        }
        let bad = pb::SnapshotMeta {
            last_membership: Bytes::from_static(b"[]"),
            ..Default::default()
        };
        invalid_argument_naming(
            snapshot_meta_from_pb(bad).unwrap_err(),
            "SnapshotMeta.last_membership",
        );

        let resp = SnapshotResponse::new(Vote::new_committed(3, 1));
        let back = snapshot_response_from_pb(snapshot_response_to_pb(&resp)).unwrap();
        assert_eq!(back.vote, resp.vote);
        invalid_argument_naming(
            snapshot_response_from_pb(pb::SnapshotResponse::default()).unwrap_err(),
            "SnapshotResponse.vote",
        );
    }
}
