//! The message store on three in-process raft-log nodes over loopback gRPC.
//!
//! Goal: any node serves every write, results are identical on every replica, and a receipt
//! handle issued before a leader change is still valid after it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use broker::command::{MessageType, Receive, StoredMessage};
use broker::state::StateConfig;
use broker::store::MessageStore;
use bytes::Bytes;
use raft_log::{Config, Role};

mod support;

/// Three ports nothing listens on right now.
fn free_ports() -> Vec<u16> {
    support::free_ports(3)
}

async fn start_group(dir: &std::path::Path) -> Vec<Option<MessageStore>> {
    let ports = free_ports();
    start_group_on(dir, &ports).await
}

async fn start_group_on(dir: &std::path::Path, ports: &[u16]) -> Vec<Option<MessageStore>> {
    let mut stores = Vec::new();
    for i in 0..3 {
        stores.push(Some(start_node(dir, ports, i).await));
    }
    stores
}

async fn start_node(dir: &std::path::Path, ports: &[u16], i: usize) -> MessageStore {
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("n{i}-127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(";");
    let mut c = Config::new("g", &peers, format!("n{i}"), dir).unwrap();
    c.store.data_segment_bytes = 1 << 20;
    c.store.index_segment_bytes = 64 << 10;
    c.store.entry_body_bytes_max = 64 << 10;
    let state = StateConfig {
        auto_create_topic_enable: true,
        default_topic_queue_nums: 4,
    };
    let broker_dir = dir.join(format!("broker-n{i}"));
    MessageStore::start(c, state, &broker_dir).await.unwrap()
}

async fn leader(stores: &[Option<MessageStore>]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(i) = stores.iter().position(|s| {
            s.as_ref()
                .is_some_and(|s| s.node().role().borrow().role == Role::Leader)
        }) {
            return i;
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn message(i: u32) -> StoredMessage {
    StoredMessage {
        topic: "t".into(),
        message_id: format!("m{i}"),
        message_type: MessageType::Normal,
        tag: None,
        keys: vec![],
        message_group: None,
        delivery_ms: 0,
        born_ms: 1,
        born_host: "test".into(),
        properties: vec![],
        body: Bytes::from(format!("body-{i}")),
        queue: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_serves_writes_and_handles_survive_a_leader_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut stores = start_group(dir.path()).await;
    let l = leader(&stores).await;
    let f1 = (l + 1) % 3;
    let f2 = (l + 2) % 3;

    // Send through a follower.
    let sent = stores[f1]
        .as_ref()
        .unwrap()
        .send(1, (0..20).map(message).collect())
        .await
        .unwrap();
    assert!(sent.iter().all(Result::is_ok));

    // Receive through the other follower; bodies come back from its own log.
    let receive = |now_ms| Receive {
        now_ms,
        group: "cg".into(),
        topic: "t".into(),
        tags: vec![],
        batch: 32,
        invisible_ms: 60_000,
        max_attempts: 16,
    };
    let got = stores[f2]
        .as_ref()
        .unwrap()
        .receive(receive(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), 20);
    // Only a proposer keeps an entry's result, and only until it takes it: once every replica
    // has applied both entries, no node holds a result nobody will read.
    for s in stores.iter().flatten() {
        s.wait_processed_for_tests(s.node().metrics().commit_index.unwrap())
            .await;
        assert_eq!(s.results_held(), 0, "{}", s.node().config().self_id);
    }
    let mut bodies: Vec<String> = got
        .iter()
        .map(|d| {
            String::from_utf8(
                stores[f2]
                    .as_ref()
                    .unwrap()
                    .read_message(&d.unit)
                    .unwrap()
                    .0
                    .body
                    .to_vec(),
            )
            .unwrap()
        })
        .collect();
    bodies.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("body-{i}")).collect();
    want.sort();
    assert_eq!(bodies, want);

    // Every replica reaches the same state.
    let index = stores[f2].as_ref().unwrap().state().last_index();
    for s in stores.iter().flatten() {
        let mut rx = s.applied();
        tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|p| *p >= index))
            .await
            .unwrap()
            .unwrap();
    }
    let progress: Vec<_> = stores
        .iter()
        .flatten()
        .map(|s| s.state().group_progress("cg", "t"))
        .collect();
    assert!(
        progress.windows(2).all(|w| w[0] == w[1]),
        "replicas disagree: {progress:?}"
    );

    // Stop the leader; the handles stay valid on the new one.
    let old = stores[l].take().unwrap();
    old.node().shutdown().await.unwrap();
    drop(old);
    let survivors: Vec<Option<MessageStore>> = stores.clone();
    let _ = leader(&survivors).await;
    let handles: Vec<String> = got.iter().map(|d| d.handle.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let acked = loop {
        match stores[f1]
            .as_ref()
            .unwrap()
            .ack("cg", "t", handles.clone())
            .await
        {
            Ok(r) => break r,
            Err(e) => {
                assert!(Instant::now() < deadline, "ack never went through: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert!(acked.iter().all(Result::is_ok), "{acked:?}");
    for s in stores.iter().flatten() {
        s.node().shutdown().await.unwrap();
    }
}

async fn until_ok<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                assert!(Instant::now() < deadline, "{what} never went through: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Restart goes on from the checkpoint: consumer progress, in-flight handles, the queue files
/// and the message index survive, junk after the last unit (half a unit, as a torn write leaves
/// it) is ignored, and every message still reads back whole on every node. That a torn tail is
/// cut and rebuilt from the log is `store::checkpoint`'s unit tests' subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_group_goes_on_from_its_checkpoint_and_ignores_junk_past_the_queue_tail() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports();
    let stores = start_group_on(dir.path(), &ports).await;
    let l = leader(&stores).await;
    let s = stores[l].as_ref().unwrap();
    s.send(1, (0..40).map(message).collect()).await.unwrap();
    let receive = |now_ms| Receive {
        now_ms,
        group: "cg".into(),
        topic: "t".into(),
        tags: vec![],
        batch: 10,
        invisible_ms: 600_000,
        max_attempts: 16,
    };
    let first = s.receive(receive(10)).await.unwrap().unwrap();
    assert_eq!(first.len(), 10);
    let acked: Vec<String> = first[..5].iter().map(|d| d.handle.clone()).collect();
    assert!(
        s.ack("cg", "t", acked)
            .await
            .unwrap()
            .iter()
            .all(Result::is_ok)
    );
    let index = s.state().last_index();
    for s in stores.iter().flatten() {
        s.wait_processed_for_tests(index).await;
    }
    // Past a checkpoint interval on every node.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let progress = s.state().group_progress("cg", "t");
    for s in stores.iter().flatten() {
        s.node().shutdown().await.unwrap();
    }
    drop(stores);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Junk after the last unit of every node's first queue file: half a unit.
    for i in 0..3 {
        let file = dir
            .path()
            .join(format!("broker-n{i}/consumequeue/t/0/00000000000000000000"));
        let mut bytes = std::fs::read(&file).unwrap();
        bytes.extend_from_slice(&[0xAB; 17]);
        std::fs::write(&file, bytes).unwrap();
    }

    let stores = start_group_on(dir.path(), &ports).await;
    for s in stores.iter().flatten() {
        assert!(
            s.state().last_index() >= index,
            "started from the checkpoint, not from an empty state"
        );
        assert_eq!(s.state().group_progress("cg", "t"), progress);
    }
    // The message index lost what was only in memory; start-up indexed it again.
    for s in stores.iter().flatten() {
        let found = s
            .find_by_key(broker::message_index::KeyKind::UniqueKey, "t", "m33", 4)
            .unwrap();
        assert_eq!(found.len(), 1, "m33 by its unique key after the restart");
        assert_eq!(found[0].message.body, Bytes::from("body-33"));
    }
    let l = leader(&stores).await;
    let s = stores[l].as_ref().unwrap();
    // The five unacked handles are still valid on the restarted group.
    let open: Vec<String> = first[5..].iter().map(|d| d.handle.clone()).collect();
    let r = until_ok("ack", || s.ack("cg", "t", open.clone())).await;
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    // The rest arrive once each, whole, read from every node's own log.
    let mut bodies = Vec::new();
    for round in 0..10 {
        let got = until_ok("receive", || s.receive(receive(20 + round)))
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        for d in &got {
            let applied = s.state().last_index();
            for other in stores.iter().flatten() {
                other.wait_processed_for_tests(applied).await;
                let (m, _) = other.read_message(&d.unit).unwrap();
                assert_eq!(m.body, Bytes::from(format!("body-{}", &m.message_id[1..])));
            }
            bodies.push(d.offset);
        }
    }
    assert_eq!(bodies.len(), 30, "the 30 never delivered, each once");
    for s in stores.iter().flatten() {
        s.node().shutdown().await.unwrap();
    }
}

/// Retention with messages in flight: after the log is purged past a send, the leader trims
/// every replica's queues past it; its in-flight messages are gone, later ones still come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_trims_the_queues_on_every_replica_with_messages_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let stores = start_group(dir.path()).await;
    let l = leader(&stores).await;
    let s = stores[l].as_ref().unwrap();
    s.update_topic("t", 1).await.unwrap().unwrap();
    s.send(1, (0..10).map(message).collect()).await.unwrap();
    let receive = |now_ms, batch| Receive {
        now_ms,
        group: "cg".into(),
        topic: "t".into(),
        tags: vec![],
        batch,
        invisible_ms: 600_000,
        max_attempts: 16,
    };
    let early = s.receive(receive(10, 3)).await.unwrap().unwrap();
    assert_eq!(early.len(), 3);
    let purge_to = s.state().last_index();
    s.send(2, (10..15).map(message).collect()).await.unwrap();
    let last = s.state().last_index();
    for s in stores.iter().flatten() {
        s.wait_processed_for_tests(last).await;
        s.node().purge_upto(purge_to).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while stores
        .iter()
        .flatten()
        .any(|s| s.state().trimmed_upto() < purge_to)
    {
        assert!(Instant::now() < deadline, "the queues were not trimmed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for s in stores.iter().flatten() {
        let b = s.state().queue_bounds("t").unwrap()[0];
        assert_eq!(
            (b.min, b.next),
            (10, 15),
            "min offset moved past the purged send"
        );
        assert_eq!(s.state().group_progress("cg", "t"), Some(vec![(10, 10, 0)]));
    }
    let stale = s
        .ack("cg", "t", vec![early[0].handle.clone()])
        .await
        .unwrap();
    assert!(
        stale[0].is_err(),
        "a purged in-flight message cannot be acked"
    );
    let got = s.receive(receive(20, 32)).await.unwrap().unwrap();
    let mut ids: Vec<String> = got
        .iter()
        .map(|d| s.read_message(&d.unit).unwrap().0.message_id)
        .collect();
    ids.sort();
    let mut want: Vec<String> = (10..15).map(|i| format!("m{i}")).collect();
    want.sort();
    assert_eq!(ids, want);
    for s in stores.iter().flatten() {
        s.node().shutdown().await.unwrap();
    }
}

/// Acks of concurrent requests share log entries (group commit), and each is answered with
/// its own result once committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_acks_share_log_entries_and_each_gets_its_own_answer() {
    let dir = tempfile::tempdir().unwrap();
    let stores = start_group(dir.path()).await;
    let l = leader(&stores).await;
    let s = stores[l].as_ref().unwrap().clone();
    s.send(1, (0..200).map(message).collect()).await.unwrap();
    let mut handles = Vec::new();
    while handles.len() < 200 {
        let got = s
            .receive(Receive {
                now_ms: 10,
                group: "cg".into(),
                topic: "t".into(),
                tags: vec![],
                batch: 32,
                invisible_ms: 600_000,
                max_attempts: 16,
            })
            .await
            .unwrap()
            .unwrap();
        assert!(!got.is_empty());
        handles.extend(got.into_iter().map(|d| d.handle));
    }
    let before = s.node().metrics().commit_index.unwrap();
    let mut tasks = Vec::new();
    for h in handles.iter().cloned() {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { s.ack("cg", "t", vec![h]).await }));
    }
    // One handle acked twice in the same burst: exactly one of the two may succeed.
    let again = {
        let s = s.clone();
        let h = handles[7].clone();
        tokio::spawn(async move { s.ack("cg", "t", vec![h]).await })
    };
    let mut ok = 0;
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        ok += usize::from(r[0].is_ok());
    }
    let r = again.await.unwrap().unwrap();
    ok += usize::from(r[0].is_ok());
    assert_eq!(ok, 200, "every handle acked exactly once");
    let entries = s.node().metrics().commit_index.unwrap() - before;
    assert!(
        entries < 100,
        "201 acks took {entries} log entries: they were not group-committed"
    );
    assert_eq!(
        s.state()
            .group_progress("cg", "t")
            .unwrap()
            .iter()
            .map(|p| p.0)
            .sum::<u64>(),
        200
    );
    for s in stores.iter().flatten() {
        s.node().shutdown().await.unwrap();
    }
}

/// A follower that was down while the leader purged its log installs a snapshot, and then has
/// every message the leader still has. Retention snapshots at a kept checkpoint at or below its
/// purge point, so every entry after the snapshot is still in the leader's log. (Snapshotting at
/// the applied index instead left the follower without the entries between purge point and
/// snapshot: their messages could not be read there.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_installing_a_snapshot_mid_queue_reads_every_message_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports();
    let mut stores = start_group_on(dir.path(), &ports).await;
    let l = leader(&stores).await;
    let f = (l + 1) % 3;
    let other = (l + 2) % 3;
    let s = stores[l].clone().unwrap();
    s.update_topic("t", 1).await.unwrap().unwrap();
    let down = stores[f].take().unwrap();
    down.node().shutdown().await.unwrap();
    drop(down);

    s.send(1, (0..10).map(message).collect()).await.unwrap();
    let purge_point = s.state().last_index();
    for i in [l, other] {
        let st = stores[i].as_ref().unwrap();
        st.wait_processed_for_tests(purge_point).await;
        assert_eq!(st.checkpoint_now_for_tests().await.unwrap(), purge_point);
    }
    s.send(2, (10..20).map(message).collect()).await.unwrap();
    let last = s.state().last_index();
    for i in [l, other] {
        let st = stores[i].as_ref().unwrap();
        st.wait_processed_for_tests(last).await;
        let purged = st.node().purge_upto(purge_point).await.unwrap();
        assert_eq!(
            purged,
            Some(purge_point),
            "purged up to the kept checkpoint"
        );
    }

    let back = start_node(dir.path(), &ports, f).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while back.state().trimmed_upto() < purge_point || back.state().last_index() < last {
        assert!(Instant::now() < deadline, "the follower did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bounds = back.state().queue_bounds("t").unwrap()[0];
    assert_eq!(bounds, s.state().queue_bounds("t").unwrap()[0]);
    assert_eq!((bounds.min, bounds.next), (10, 20));
    for offset in bounds.min..bounds.next {
        let found = back
            .find_at_offset("t", 0, offset)
            .unwrap()
            .unwrap_or_else(|| panic!("offset {offset} not on the follower"));
        assert_eq!(found.message.message_id, format!("m{offset}"));
    }
    back.node().shutdown().await.unwrap();
    for s in stores.iter().flatten() {
        s.node().shutdown().await.unwrap();
    }
}
