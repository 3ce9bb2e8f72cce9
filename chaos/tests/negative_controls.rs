//! The negative controls: a broker that breaks a durability promise on purpose must make the
//! harness report lost messages (exit code 1). Without these a green chaos run proves nothing.
//!
//! They run the real `chaos` binary against real `mqbroker` processes (the workspace's debug
//! build: `cargo nextest run --workspace` builds it). Network namespaces are used when running
//! as root, the loopback proxy otherwise; the power-loss control needs root (loop devices).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

fn mqbroker() -> PathBuf {
    let chaos = PathBuf::from(env!("CARGO_BIN_EXE_chaos"));
    let broker = chaos.with_file_name("mqbroker");
    assert!(
        broker.is_file(),
        "{} is missing: build it with `cargo build -p broker --bins` (a workspace test run does)",
        broker.display()
    );
    broker
}

/// Runs `chaos run ARGS` in a fresh store; returns (exit code, results.json).
fn chaos_run(args: &[&str]) -> (i32, serde_json::Value) {
    let store = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .arg("run")
        .args(args)
        .arg("--broker")
        .arg(mqbroker())
        .arg("--store")
        .arg(store.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    let results = store.path().join("latest").join("results.json");
    let text = std::fs::read_to_string(&results).unwrap_or_else(|e| {
        panic!(
            "no {}: {e}; chaos exited {:?}",
            results.display(),
            out.status
        )
    });
    let code = out.status.code().unwrap_or(-1);
    if code == 1 {
        // The run failed as it should: its directory (logs, disk images) is not needed.
        drop(store);
    } else {
        // Keep it for the post-mortem.
        println!("run kept in {}", store.keep().display());
    }
    (code, serde_json::from_str(&text).unwrap())
}

fn lost(results: &serde_json::Value) -> u64 {
    results["checkers"]["queue"]["lost"]["count"]
        .as_u64()
        .unwrap()
}

#[test]
fn acking_before_replication_is_reported_as_loss() {
    // The leader is cut off with its clients still reaching it: every send it acks during the
    // partition is never committed.
    let (code, results) = chaos_run(&[
        "-t",
        "20",
        "-i",
        "8",
        "--recovery-time",
        "5",
        "--nemesis",
        "leader-partition",
        "--negative-control",
        "ack-before-replication",
    ]);
    assert_eq!(code, 1, "the harness did not fail the run");
    assert!(lost(&results) > 0, "no loss reported: {results:#}");
    assert_eq!(results["valid"], serde_json::Value::Bool(false));
}

#[test]
fn committing_rollbacks_is_reported_as_unexpected_deliveries() {
    // Every third value is rolled back; a broker that commits it instead delivers a value the
    // history never sent.
    let (code, results) = chaos_run(&[
        "-t",
        "15",
        "-i",
        "6",
        "--recovery-time",
        "5",
        "--nemesis",
        "leader-kill",
        "-w",
        "transactional",
        "--negative-control",
        "commit-rollbacks",
    ]);
    assert_eq!(code, 1, "the harness did not fail the run");
    let unexpected = results["checkers"]["queue"]["unexpected"]["count"]
        .as_u64()
        .unwrap();
    assert!(
        unexpected > 0,
        "no unexpected delivery reported: {results:#}"
    );
}

#[test]
fn skipping_fsync_is_reported_as_loss_after_a_power_cut() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the power-loss control needs root (loop-mounted node disks)"
    );
    // Every node loses power at once: whatever the brokers wrote without fsync is gone.
    let (code, results) = chaos_run(&[
        "-t",
        "20",
        "-i",
        "8",
        "--recovery-time",
        "5",
        "--nemesis",
        "all-power-loss",
        "--negative-control",
        "skip-fsync",
        "--dequeue-ratio",
        "0",
    ]);
    assert_eq!(code, 1, "the harness did not fail the run");
    assert!(lost(&results) > 0, "no loss reported: {results:#}");
}
