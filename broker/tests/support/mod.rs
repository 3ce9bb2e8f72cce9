//! The tools' binaries (`mqadmin`, `mqbench`) for the broker's process tests.
//!
//! They live in the `raftmq-tools` package, and cargo sets `CARGO_BIN_EXE_<name>` only for the
//! binaries of the package under test. So the binary is built here, by the cargo that builds
//! this test, with the same profile and target directory as `mqbroker` (a no-op when it is up
//! to date, as after `cargo nextest run --workspace`), and found beside `mqbroker`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// A port that was free a moment ago on 127.0.0.1.
///
/// # Panics
/// When no port can be bound at all.
#[allow(clippy::unwrap_used, dead_code)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
