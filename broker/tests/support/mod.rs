//! The tools' binaries (`mqadmin`, `mqbench`) for the broker's process tests.
//!
//! They live in the `raftmq-tools` package, and cargo sets `CARGO_BIN_EXE_<name>` only for the
//! binaries of the package under test. So the binary is built here, by the cargo that builds
//! this test, with the same profile and target directory as `mqbroker` (a no-op when it is up
//! to date, as after `cargo nextest run --workspace`), and found beside `mqbroker`.

pub mod inprocess;
pub mod process_group;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Where [`free_ports`] looks: below the kernel's ephemeral range (32768–60999), from which
/// outgoing connections and binds to port 0 take their ports, and clear of fast-try's 30911+.
const TEST_PORTS: std::ops::Range<u16> = 21_000..30_000;

/// `count` distinct ports that were free a moment ago on 127.0.0.1, for nodes that bind them
/// later. Ports from a bind to port 0 are ephemeral: another test's outgoing connection could
/// take one in between (a node of `store_cluster` then failed with EADDRINUSE). These come from
/// [`TEST_PORTS`], starting at a place that differs between test processes.
///
/// # Panics
/// When the range has no `count` free ports.
#[allow(clippy::unwrap_used, dead_code)]
pub fn free_ports(count: usize) -> Vec<u16> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().wrapping_mul(2_654_435_761);
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    let start = u16::try_from(seed % span).unwrap();
    // All listeners are held until every port is picked, so the ports are distinct.
    let held: Vec<std::net::TcpListener> = (0..TEST_PORTS.end - TEST_PORTS.start)
        .map(|i| TEST_PORTS.start + (start + i) % (TEST_PORTS.end - TEST_PORTS.start))
        .filter_map(|port| std::net::TcpListener::bind(("127.0.0.1", port)).ok())
        .take(count)
        .collect();
    assert_eq!(held.len(), count, "no {count} free ports in {TEST_PORTS:?}");
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// One port as [`free_ports`] picks them.
#[allow(dead_code)]
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// The path of the tools binary `name`, built once per test process.
///
/// # Panics
/// When the build fails: a test cannot run without its binary.
#[allow(clippy::expect_used, dead_code)]
pub fn tool(name: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().expect("no test panicked while building");
    built
        .get_or_insert_with(HashMap::new)
        .entry(name.to_string())
        .or_insert_with(|| build(name))
        .clone()
}

#[allow(clippy::expect_used, dead_code)]
fn build(name: &str) -> PathBuf {
    let broker = Path::new(env!("CARGO_BIN_EXE_mqbroker"));
    let profile_dir = broker
        .parent()
        .expect("mqbroker sits in a profile directory");
    let target_dir = profile_dir
        .parent()
        .expect("the profile directory sits in a target directory");
    let profile = profile_dir
        .file_name()
        .and_then(|p| p.to_str())
        .expect("a profile name");
    let mut build = Command::new(env!("CARGO"));
    build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "-p", "raftmq-tools", "--bin", name])
        .arg("--target-dir")
        .arg(target_dir);
    match profile {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        other => {
            build.args(["--profile", other]);
        }
    }
    let status = build.status().expect("cargo runs");
    assert!(
        status.success(),
        "cargo build -p raftmq-tools --bin {name}: {status}"
    );
    let path = profile_dir.join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// Runs the built `mqadmin` with `args` (without `$NAMESRV_ADDR`), off the async runtime.
///
/// # Panics
/// When the binary cannot be built or started.
#[allow(clippy::unwrap_used, clippy::expect_used, dead_code)]
pub async fn mqadmin(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(tool("mqadmin"))
            .args(&args)
            .env_remove("NAMESRV_ADDR")
            .output()
            .expect("mqadmin runs")
    })
    .await
    .expect("the mqadmin task is not cancelled")
}

/// A RocketMQ 5 client of the node listening on `port` of 127.0.0.1 (connected lazily).
///
/// # Panics
/// When the address does not parse (it always does).
#[allow(clippy::unwrap_used, dead_code)]
pub fn client(port: u16) -> raftmq_client::MessagingClient {
    let addr = format!("127.0.0.1:{port}");
    let channel = raftmq_client::endpoint(&addr).unwrap().connect_lazy();
    let identity = std::sync::Arc::new(raftmq_client::ClientIdentity::new(0).unwrap());
    raftmq_client::MessagingClient::new(addr, channel, identity)
}
