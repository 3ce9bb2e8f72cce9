//! The real `mqnamesrv` binary: `-p` prints the effective config, a good conf boots (the boot
//! line gives the address, a registration and a route round-trip over it, SIGTERM stops it
//! cleanly), and bad confs exit 1 naming the key, value and line. The child is killed by its
//! PID on drop, and every wait is bounded.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use raftmq_remoting::code::{request, response};
use raftmq_remoting::{ExtFields, RemotingClient, RemotingCommand};

const BIN: &str = env!("CARGO_BIN_EXE_mqnamesrv");
const TIMEOUT: Duration = Duration::from_secs(10);

/// A running child, killed (by PID, through `Child::kill`) if the test ends early.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Running {
    fn wait_bounded(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "mqnamesrv did not exit in {TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn write_conf(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writes conf");
    path
}

/// Runs `mqnamesrv args` to completion (bounded) and returns (status, stdout, stderr).
fn run_to_end(args: &[&str]) -> (ExitStatus, String, String) {
    let child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns mqnamesrv");
    let mut running = Running(child);
    let status = running.wait_bounded();
    let read = |pipe: Option<&mut dyn std::io::Read>| {
        let mut text = String::new();
        if let Some(p) = pipe {
            let _ = p.read_to_string(&mut text);
        }
        text
    };
    let stdout = read(
        running
            .0
            .stdout
            .as_mut()
            .map(|p| p as &mut dyn std::io::Read),
    );
    let stderr = read(
        running
            .0
            .stderr
            .as_mut()
            .map(|p| p as &mut dyn std::io::Read),
    );
    (status, stdout, stderr)
}

const GOOD_CONF: &str = "# a NameServer for tests\nlistenPort=0\nbindAddress=127.0.0.1\n\
                         scanNotActiveBrokerInterval=1000\nrocketmqHome=/opt/rocketmq\n\
                         kvConfigPath=/tmp/kvConfig.json\norderMessageEnable=false\n";

#[test]
fn print_config_item_shows_the_effective_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = write_conf(dir.path(), "namesrv.conf", GOOD_CONF);
    let conf = conf.to_str().expect("utf-8 path");
    let (status, stdout, stderr) = run_to_end(&["-c", conf, "-p"]);
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(
        stdout,
        "bindAddress=127.0.0.1\nlistenPort=0\nscanNotActiveBrokerInterval=1000\n"
    );
    let (status, stdout, _) = run_to_end(&["-p"]);
    assert!(status.success());
    assert!(
        stdout.contains("listenPort=9876\n") && stdout.contains("bindAddress=0.0.0.0\n"),
        "{stdout}"
    );
}

#[test]
fn bad_confs_exit_naming_key_value_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (text, wanted) in [
        (
            "listenPort=9876\n# typo below\nlistenPrt=1\n",
            &["listenPrt", "line 3"][..],
        ),
        (
            "\nlistenPort=abc\n",
            &["listenPort", "\"abc\"", "line 2"][..],
        ),
        (
            "clusterTest=maybe\n",
            &["clusterTest", "\"maybe\"", "line 1"][..],
        ),
    ] {
        let conf = write_conf(dir.path(), "bad.conf", text);
        let (status, _, stderr) = run_to_end(&["-c", conf.to_str().expect("utf-8 path")]);
        assert_eq!(status.code(), Some(1), "{text:?}: {stderr}");
        for w in wanted {
            assert!(stderr.contains(w), "{text:?}: {w} missing from {stderr}");
        }
        assert!(stderr.contains("bad.conf"), "the file is named: {stderr}");
    }
    let (status, _, stderr) = run_to_end(&["-c", "/nonexistent/namesrv.conf"]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("/nonexistent/namesrv.conf"), "{stderr}");
}

#[tokio::test]
async fn the_binary_boots_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = write_conf(dir.path(), "namesrv.conf", GOOD_CONF);
    let mut child = Command::new(BIN)
        .args(["-c", conf.to_str().expect("utf-8 path")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns mqnamesrv");
    let stdout = child.stdout.take().expect("stdout piped");
    let mut running = Running(child);

    // The boot line, read on a thread so that the wait is bounded.
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let boot = lines_rx.recv_timeout(TIMEOUT).expect("a boot line in time");
    assert!(
        boot.starts_with("The Name Server boot success. serializeType=JSON"),
        "{boot}"
    );
    let addr = boot.rsplit(' ').next().expect("an address").to_string();
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{boot}"
    );

    let client = RemotingClient::connect(&addr, TIMEOUT)
        .await
        .expect("connects");
    let register = RemotingCommand::request(request::REGISTER_BROKER, ExtFields::new())
        .with_field("clusterName", "DefaultCluster")
        .with_field("brokerName", "broker-a")
        .with_field("brokerAddr", "127.0.0.1:10911")
        .with_field("brokerId", 0)
        .with_field("haServerAddr", "127.0.0.1:10912")
        .with_body(
            r#"{"topicConfigSerializeWrapper":{"topicConfigTable":{"TopicTest":{"topicName":"TopicTest","readQueueNums":4,"writeQueueNums":4,"perm":6,"topicFilterType":"SINGLE_TAG","topicSysFlag":0,"order":false}},"dataVersion":{"timestamp":1700000000000,"counter":1}},"filterServerList":[]}"#,
        );
    client
        .invoke_ok(register, TIMEOUT)
        .await
        .expect("registered");
    let route = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC, ExtFields::new())
        .with_field("topic", "TopicTest");
    let answer = client.invoke(route, TIMEOUT).await.expect("answered");
    assert_eq!(answer.code, response::SUCCESS, "{}", answer.remark);
    let body = String::from_utf8_lossy(&answer.body);
    assert!(
        body.contains(r#""brokerAddrs":{"0":"127.0.0.1:10911"}"#),
        "{body}"
    );

    let pid = running.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("runs kill");
    assert!(killed.success());
    let status = running.wait_bounded();
    assert!(status.success(), "SIGTERM is a clean stop: {status}");
}
