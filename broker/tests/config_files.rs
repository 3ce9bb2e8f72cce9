//! The broker.conf files shipped in `conf/dledger/` and the `mqbroker` binary that reads them.
//!
//! Goal: the fast-try files load cleanly, and `mqbroker` turns a config into the right output
//! and exit code. Method: load the real files through the library, then run the built binary
//! (`CARGO_BIN_EXE_mqbroker`) on them and on a broken copy.

use std::path::PathBuf;
use std::process::{Command, Output};

use broker::config::BrokerConfig;

fn fast_try_conf(node: usize) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../conf/dledger/broker-n{node}.conf"))
}

fn mqbroker(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mqbroker"))
        .args(args)
        // Pin the log level so a RUST_LOG in the caller's environment cannot hide warnings.
        .env("RUST_LOG", "info")
        .output()
        .expect("run mqbroker")
}

#[test]
fn fast_try_files_load_without_errors_or_warnings() {
    for node in 0..3 {
        let path = fast_try_conf(node);
        let (config, warnings) = BrokerConfig::from_file(&path).unwrap();
        assert!(warnings.is_empty(), "{}: {warnings:?}", path.display());
        assert_eq!(config.broker_cluster_name, "RaftCluster");
        assert_eq!(config.broker_name, "RaftNode00");
        assert_eq!(config.listen_port, [30911, 30921, 30931][node]);
        assert_eq!(config.namesrv_addr.as_deref(), Some("127.0.0.1:9876"));
        assert_eq!(config.send_message_thread_pool_nums, 16);
        assert!(config.enable_dleger_commit_log);
        let raft = &config.raft_log;
        assert_eq!(raft.group, "RaftNode00");
        assert_eq!(raft.self_id, format!("n{node}"));
        assert_eq!(raft.peers.len(), 3);
        let root = PathBuf::from(format!("/tmp/rmqstore/node0{node}"));
        assert_eq!(config.store_path_root_dir, root);
        assert_eq!(config.store_path_commit_log, root.join("commitlog"));
        assert_eq!(raft.store.dir, root.join(format!("dledger-n{node}")));
        let http = format!("0.0.0.0:{}", 5557 + node);
        assert_eq!(
            config.http_addr(),
            Some(http.parse().unwrap()),
            "metrics port"
        );
    }
}

#[test]
fn print_config_item_prints_the_effective_config_and_exits_0() {
    let conf = fast_try_conf(0);
    let out = mqbroker(&["-c", conf.to_str().unwrap(), "-p"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for line in [
        "brokerName=RaftNode00",
        "listenPort=30911",
        "dLegerSelfId=n0",
        "dLegerPeers=n0-127.0.0.1:40911;n1-127.0.0.1:40912;n2-127.0.0.1:40913",
        "enableDLegerCommitLog=true",
        "flushDiskType=ASYNC_FLUSH",
        "maxMessageSize=4194304",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "{line} missing:\n{stdout}"
        );
    }
    // The long flag is RocketMQ's spelling too.
    let long = mqbroker(&["--config", conf.to_str().unwrap(), "--printConfigItem"]);
    assert_eq!(long.stdout, out.stdout);
}

#[test]
fn a_taken_listen_port_exits_1_naming_listen_port() {
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("single.conf");
    let conf = format!(
        "brokerName=b\nlistenPort={port}\nstorePathRootDir={}\n",
        dir.path().join("store").display()
    );
    std::fs::write(&path, conf).unwrap();
    let out = mqbroker(&["-c", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("listenPort") && stderr.contains(&port.to_string()),
        "{stderr}"
    );
}

#[test]
fn a_bad_file_exits_1_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.conf");
    std::fs::write(&path, "brokerName=b\nlistenPort=notaport\n").unwrap();
    let out = mqbroker(&["-c", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("listenPort"), "{stderr}");
    assert!(stderr.contains("(line 2)"), "{stderr}");
    assert!(stderr.contains("bad.conf"), "{stderr}");
}

#[test]
fn unused_keys_are_logged_as_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("extra.conf");
    std::fs::write(&path, "brokerRole=SYNC_MASTER\nnoSuchKey=1\n").unwrap();
    let out = mqbroker(&["-c", path.to_str().unwrap(), "-p"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("brokerRole") && stderr.contains("ignored"),
        "{stderr}"
    );
    assert!(
        stderr.contains("noSuchKey") && stderr.contains("unknown key"),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_exits_1_naming_it() {
    let out = mqbroker(&["-c", "/nonexistent/broker.conf"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/nonexistent/broker.conf"), "{stderr}");
}
