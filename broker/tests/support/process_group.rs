//! Three real `mqbroker` processes on ports from [`super::free_ports`], for tests that kill
//! them (SIGKILL) and start them again. Broker logs are kept in the group's temp dir and
//! printed when the test fails.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The group: its data, its client ports and the running processes.
pub struct Group {
    dir: tempfile::TempDir,
    /// Each node's client port.
    pub listen: Vec<u16>,
    children: Vec<Option<Child>>,
}

impl Group {
    pub fn start() -> Group {
        let ports = super::free_ports(6);
        let (listen, raft) = (ports[..3].to_vec(), ports[3..].to_vec());
        let dir = tempfile::tempdir().unwrap();
        let peers = raft
            .iter()
            .enumerate()
            .map(|(i, p)| format!("n{i}-127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(";");
        for (i, port) in listen.iter().enumerate() {
            let conf = format!(
                "brokerClusterName=RaftCluster\nbrokerName=RaftNode00\nlistenPort={}\nstorePathRootDir={}\n\
                 enableDLegerCommitLog=true\ndLegerGroup=RaftNode00\ndLegerPeers={peers}\ndLegerSelfId=n{i}\n\
                 flushDiskType=SYNC_FLUSH\nmappedFileSizeCommitLog=67108864\nmappedFileSizeForEntryIndex=1048576\n\
                 diskMaxUsedSpaceRatio=95\n",
                port,
                dir.path().join(format!("node0{i}")).display()
            );
            std::fs::write(dir.path().join(format!("n{i}.conf")), conf).unwrap();
        }
        let mut g = Group {
            dir,
            listen,
            children: vec![None, None, None],
        };
        for i in 0..3 {
            g.spawn(i);
        }
        g
    }

    pub fn spawn(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(i))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mqbroker"))
            .arg("-c")
            .arg(self.dir.path().join(format!("n{i}.conf")))
            .env("RUST_LOG", "info,openraft=warn")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.children[i] = Some(child);
    }

    pub fn log(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{i}.log"))
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }

    /// SIGTERM (a graceful stop), then waits up to `wait` for the exit; the exit status.
    pub fn terminate(&mut self, i: usize, wait: Duration) -> std::process::ExitStatus {
        let mut c = self.children[i].take().expect("node runs");
        let sent = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM {}", c.id());
        let deadline = Instant::now() + wait;
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("node {i} did not exit within {wait:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn endpoints(&self) -> String {
        self.listen
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(";")
    }

    pub fn mqadmin(&self, args: &[&str]) -> std::process::Output {
        Command::new(super::tool("mqadmin"))
            .args(args)
            .output()
            .unwrap()
    }

    /// The leader's slot, as mqadmin sees it (waits up to `wait`).
    pub fn leader(&self, wait: Duration) -> usize {
        let deadline = Instant::now() + wait;
        loop {
            let out = self.mqadmin(&["clusterList", "-n", &self.endpoints(), "--leader-id"]);
            let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && id.starts_with('n') {
                return id[1..].parse().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "no leader: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn commit_indexes(&self) -> String {
        String::from_utf8_lossy(
            &self
                .mqadmin(&["clusterList", "-n", &self.endpoints()])
                .stdout,
        )
        .to_string()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            for i in 0..3 {
                let text = std::fs::read_to_string(self.log(i)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!(
                    "---- broker n{i} log (last 40 lines, newest first) ----\n{}",
                    tail.join("\n")
                );
            }
        }
    }
}
