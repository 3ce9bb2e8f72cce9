//! Try raft-log: a three-node group from `conf/dledger/broker-n{0,1,2}.conf`, in one process.
//!
//! It elects a leader, appends 10,000 entries of 1 KiB, stops the leader and times the
//! failover, restarts it and shows it catching up, then prints each node's state.
//!
//! `cargo run --release -p raft-log --example three_nodes [STORE_ROOT]`
//! (the store root defaults to a fresh temporary directory; the peers use ports 40911–40913).

// Test and tool code: unwrapping is how a failure reports itself here, and the numeric
// casts are on small, known-range values.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use raft_log::config::{Property, parse_properties};
use raft_log::{Config, RaftLogNode, Role};

fn load(i: usize, root: &std::path::Path) -> anyhow::Result<Config> {
    let path = format!(
        "{}/../conf/dledger/broker-n{i}.conf",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let mut props = parse_properties(&text)?;
    props.push(Property::new(
        "storePathRootDir",
        root.join(format!("node0{i}")).display().to_string(),
    ));
    let (config, _broker_keys) = Config::from_properties(&props).with_context(|| path.clone())?;
    Ok(config)
}

async fn leader(nodes: &[Option<RaftLogNode>]) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for (i, n) in nodes.iter().enumerate() {
            if let Some(n) = n
                && n.role().borrow().role == Role::Leader
            {
                return Ok(i);
            }
        }
        if Instant::now() > deadline {
            bail!("no leader after 10 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = std::env::args()
        .nth(1)
        .map_or_else(|| tmp.path().to_path_buf(), Into::into);
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(Some(RaftLogNode::start(load(i, &root)?).await?));
    }
    let l = leader(&nodes).await?;
    println!("leader elected: n{l}  (store root {})", root.display());

    let node = nodes[l].clone().context("leader")?;
    let t0 = Instant::now();
    let mut writers = Vec::new();
    for _ in 0..64 {
        let node = node.clone();
        writers.push(tokio::spawn(async move {
            for _ in 0..(10_000 / 64 / 16 + 1) {
                node.append_batch(vec![Bytes::from(vec![7u8; 1024]); 16])
                    .await?;
            }
            Ok::<_, raft_log::Error>(())
        }));
    }
    for w in writers {
        w.await??;
    }
    let n = node.metrics().commit_index.unwrap_or(0);
    println!(
        "committed {n} entries of 1 KiB on a majority in {:?}",
        t0.elapsed()
    );

    println!("stopping the leader n{l} ...");
    let t0 = Instant::now();
    if let Some(old) = nodes[l].take() {
        old.shutdown().await?;
    }
    let l2 = loop {
        let l2 = leader(&nodes).await?;
        if let Some(n) = &nodes[l2]
            && n.append(Bytes::from_static(b"after failover"))
                .await
                .is_ok()
        {
            break l2;
        }
    };
    println!(
        "n{l2} took over and accepted an append {:?} after the leader stopped",
        t0.elapsed()
    );

    nodes[l] = Some(RaftLogNode::start(load(l, &root)?).await?);
    let target = nodes[l2]
        .as_ref()
        .and_then(|n| n.metrics().commit_index)
        .unwrap_or(0);
    let t0 = Instant::now();
    while nodes[l]
        .as_ref()
        .and_then(|n| n.metrics().applied_index)
        .unwrap_or(0)
        < target
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "n{l} restarted and caught up to index {target} in {:?}\n",
        t0.elapsed()
    );

    println!(
        "{:<4} {:<9} {:>5} {:>8} {:>8} {:>8}",
        "id", "role", "term", "last", "commit", "applied"
    );
    for n in nodes.iter().flatten() {
        let m = n.metrics();
        let show = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
        println!(
            "{:<4} {:<9} {:>5} {:>8} {:>8} {:>8}",
            m.id,
            format!("{:?}", m.role),
            m.term,
            show(m.last_index),
            show(m.commit_index),
            show(m.applied_index)
        );
    }
    for n in nodes.iter().flatten() {
        n.shutdown().await?;
    }
    Ok(())
}
