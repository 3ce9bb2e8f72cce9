//! openraft's storage conformance suite against the mmap store and the state machine.
//!
//! Each of the suite's cases gets a fresh store in its own temporary directory (the directory
//! guard is the suite's `G`, dropped when the case ends).

use std::sync::Arc;

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};

use super::log_store::RaftLogStore;
use super::state_machine::StateMachine;
use super::types::TypeConfig;
use crate::config::StoreConfig;
use crate::snapshot::EmptySnapshot;
use crate::store::LogStore;

struct Builder;

impl StoreBuilder<TypeConfig, RaftLogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, RaftLogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = StoreConfig::new(dir.path().join("log"));
        config.data_segment_bytes = 1 << 20;
        config.index_segment_bytes = 4096;
        config.entry_body_bytes_max = 64 << 10;
        let store = LogStore::open(config).expect("open store");
        let (sm, _) = StateMachine::open(
            &dir.path().join("snapshot"),
            Arc::new(EmptySnapshot),
            store.clone(),
        )
        .expect("open sm");
        Ok((dir, RaftLogStore { store }, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes() {
    Suite::test_all(Builder)
        .await
        .expect("openraft storage suite");
}
