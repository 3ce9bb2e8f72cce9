//! RaftMQ's wire contracts, generated from the files in `proto/proto/` by tonic/prost.
//!
//! Architecture invariant: this crate contains generated code only.
#![allow(
    missing_docs,
    clippy::all,
    unreachable_pub,
    missing_debug_implementations
)]

/// raft-log's replication RPCs (`proto/raft_log.proto`).
pub mod raftlog {
    /// Version 1 of the replication protocol.
    pub mod v1 {
        tonic::include_proto!("raftlog.v1");
    }
}

/// The `apache.*` protobuf namespace.
pub mod apache {
    /// Apache RocketMQ.
    pub mod rocketmq {
        /// RocketMQ 5 gRPC protocol (`apache.rocketmq.v2.MessagingService`), the one
        /// the official 5.x SDKs speak (`proto/apache/rocketmq/v2/*.proto`).
        pub mod v2 {
            tonic::include_proto!("apache.rocketmq.v2");
        }
    }
}

/// RaftMQ's own services.
pub mod raftmq {
    /// The admin service.
    pub mod admin {
        /// `raftmq.admin.v1.Admin`, what `mqadmin` speaks (`proto/raftmq/admin/v1/admin.proto`).
        pub mod v1 {
            tonic::include_proto!("raftmq.admin.v1");
        }
    }
}
