//! Cluster control: generated broker.conf files, `mqbroker` processes tracked by PID, restarts,
//! pauses, power cuts, partitions, loss and delay on the peer links, leader lookup through
//! the admin API, and the NameServer the 4.x remoting workload routes through.

use std::fs::OpenOptions;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use proto::raftmq::admin::v1 as pb;
use raftmq_client::AdminClient;
use rustix::process::{Pid, Signal, kill_process};

use crate::host::{self, Disk};
use crate::proxy::{DirectionFault, LinkSpec, Proxy};

/// Where the nodes live and how links are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMode {
    /// One network namespace per node; partitions and loss by iptables in the namespaces.
    Netns,
    /// Every node on 127.0.0.1; partitions by the proxy (loss is not available).
    Loopback,
}

impl NetMode {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            NetMode::Netns => "netns",
            NetMode::Loopback => "loopback-proxy",
        }
    }
}

/// What the cluster is built from.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// 3 or 5.
    pub nodes: usize,
    /// The `mqbroker` binary.
    pub broker_bin: PathBuf,
    /// The run's output directory; node dirs go under `nodes/`.
    pub dir: PathBuf,
    /// Network layout.
    pub net: NetMode,
    /// Put each node's data on a loop-mounted file system (needed for power loss).
    pub disks: bool,
    /// `flushDiskType`.
    pub flush: String,
    /// Extra `key=value` lines for every broker.conf (negative controls, timeouts).
    pub extra_conf: Vec<String>,
    /// First port in loopback mode (client ports `base+i`, raft `base+20+i`, proxy `base+100..`,
    /// NameServer `base+90`).
    pub base_port: u16,
    /// The `mqnamesrv` binary: when set, a NameServer runs beside the group (in the root
    /// namespace, on the harness's bridge address, out of reach of every fault) and every
    /// broker.conf names it in `namesrvAddr`.
    pub namesrv_bin: Option<PathBuf>,
}

const CLIENT_PORT: u16 = 8081;
const RAFT_PORT: u16 = 9000;
const PROXY_PORT: u16 = 9100;
const NAMESRV_PORT: u16 = 9876;

/// One broker node.
#[derive(Debug)]
pub struct Node {
    /// `n0`, `n1`, …
    pub id: String,
    /// Where clients reach it.
    pub client_addr: SocketAddr,
    conf: PathBuf,
    log: PathBuf,
    disk: Option<Disk>,
    child: Option<Child>,
    paused: bool,
}

/// A node's process does not outlive the harness: when the cluster is dropped without a
/// shutdown (a panic, an error on the way), its brokers are resumed, killed and reaped through
/// their own child handles.
impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A stopped process takes SIGKILL too; resuming first lets it go at once.
            if self.paused
                && let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw)
            {
                let _ = kill_process(pid, Signal::CONT);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Node {
    /// The PID of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether a process is running (possibly paused).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The broker log (stdout and stderr of every start, appended).
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

/// The running group.
#[derive(Debug)]
pub struct Cluster {
    spec: ClusterSpec,
    /// The nodes, by index.
    pub nodes: Vec<Node>,
    proxy: Proxy,
    /// The NameServer's `ip:port`, when one runs.
    pub namesrv_addr: Option<String>,
    namesrv: Option<Namesrv>,
}

/// The NameServer process; killed (by its PID) and reaped when dropped, so that a setup step
/// failing after its start does not leave it running.
#[derive(Debug)]
struct Namesrv(Child);

impl Drop for Namesrv {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Cluster {
    /// Sets up hosts, disks, proxy and conf files, and starts every node.
    ///
    /// # Errors
    /// Any setup step, named.
    pub async fn start(spec: ClusterSpec) -> anyhow::Result<Cluster> {
        let n = spec.nodes;
        if spec.net == NetMode::Netns {
            host::setup_network(n).context("setting up network namespaces")?;
        }
        let client_addr = |i: usize| match spec.net {
            NetMode::Netns => SocketAddr::new(IpAddr::V4(host::node_ip(i)), CLIENT_PORT),
            NetMode::Loopback => SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                spec.base_port + port_offset(i),
            ),
        };
        let raft_addr = |i: usize| match spec.net {
            NetMode::Netns => SocketAddr::new(IpAddr::V4(host::node_ip(i)), RAFT_PORT),
            NetMode::Loopback => SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                spec.base_port + 20 + port_offset(i),
            ),
        };
        // Link i→j: where i dials j.
        let link_addr = |i: usize, j: usize| match spec.net {
            NetMode::Netns => {
                SocketAddr::new(IpAddr::V4(host::view_ip(j)), PROXY_PORT + port_offset(i))
            }
            NetMode::Loopback => SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                spec.base_port + 100 + port_offset(i * 10 + j),
            ),
        };
        let mut links = Vec::new();
        for i in 0..n {
            for j in (0..n).filter(|&j| j != i) {
                links.push(LinkSpec {
                    from: i,
                    to: j,
                    listen: link_addr(i, j),
                    upstream: raft_addr(j),
                    source: (spec.net == NetMode::Netns)
                        .then(|| SocketAddr::new(IpAddr::V4(host::view_ip(i)), 0)),
                });
            }
        }
        let proxy = Proxy::start(&links).await?;
        let namesrv_addr = spec.namesrv_bin.as_ref().map(|_| match spec.net {
            NetMode::Netns => SocketAddr::new(IpAddr::V4(host::harness_ip()), NAMESRV_PORT),
            NetMode::Loopback => {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), spec.base_port + 90)
            }
        });
        let namesrv = match (&spec.namesrv_bin, namesrv_addr) {
            (Some(bin), Some(addr)) => Some(start_namesrv(bin, addr, &spec.dir).await?),
            _ => None,
        };
        let mut nodes = Vec::new();
        for i in 0..n {
            let id = format!("n{i}");
            let dir = spec.dir.join("nodes").join(&id);
            std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
            let data = dir.join("data");
            let disk = if spec.disks {
                Some(Disk::create(&dir.join("disk.img"), &data, 2048)?)
            } else {
                std::fs::create_dir_all(&data)?;
                None
            };
            let peers: Vec<String> = (0..n)
                .map(|j| {
                    let addr = if j == i {
                        raft_addr(j)
                    } else {
                        link_addr(i, j)
                    };
                    format!("n{j}-{addr}")
                })
                .collect();
            let mut conf = vec![
                "brokerClusterName=RaftMQChaos".to_string(),
                "brokerName=RaftMQChaos".to_string(),
                format!("listenPort={}", client_addr(i).port()),
                format!("brokerIP1={}", client_addr(i).ip()),
                format!("storePathRootDir={}", data.display()),
                "enableDLegerCommitLog=true".to_string(),
                "dLegerGroup=RaftMQChaos".to_string(),
                format!("dLegerPeers={}", peers.join(";")),
                format!("dLegerSelfId={id}"),
                format!("flushDiskType={}", spec.flush),
                // Small segments: preallocation stays cheap on the 2 GiB node disks.
                format!("mappedFileSizeForEntryData={}", 64u64 << 20),
                format!("mappedFileSizeForEntryIndex={}", 32u64 << 20),
                // Stores on the host's disk share it with builds: above the default 75 % the
                // brokers would refuse every send, and the run would judge the host, not the
                // faults.
                "diskMaxUsedSpaceRatio=95".to_string(),
            ];
            if let Some(addr) = namesrv_addr {
                conf.push(format!("namesrvAddr={addr}"));
            }
            conf.extend(spec.extra_conf.iter().cloned());
            let conf_path = dir.join("broker.conf");
            std::fs::write(&conf_path, conf.join("\n") + "\n")
                .with_context(|| format!("write {}", conf_path.display()))?;
            nodes.push(Node {
                id,
                client_addr: client_addr(i),
                conf: conf_path,
                log: dir.join("broker.log"),
                disk,
                child: None,
                paused: false,
            });
        }
        let mut cluster = Cluster {
            spec,
            nodes,
            proxy,
            namesrv_addr: namesrv_addr.map(|a| a.to_string()),
            namesrv,
        };
        for i in 0..n {
            cluster.start_node(i)?;
        }
        Ok(cluster)
    }

    /// The spec the cluster was built from.
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// Starts node `i` (no-op when it runs).
    ///
    /// # Errors
    /// A process that cannot be spawned.
    pub fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        let net = self.spec.net;
        let bin = self.spec.broker_bin.clone();
        let node = &mut self.nodes[i];
        if node.child.is_some() {
            return Ok(());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .with_context(|| format!("open {}", node.log.display()))?;
        let err = log.try_clone()?;
        let mut cmd = match net {
            NetMode::Netns => {
                // `ip netns exec` execs the broker: the child's PID is the broker's.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &host::netns(i)]).arg(&bin);
                c
            }
            NetMode::Loopback => Command::new(&bin),
        };
        cmd.arg("-c")
            .arg(&node.conf)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err));
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {} for {}", bin.display(), node.id))?;
        tracing::info!(node = %node.id, pid = child.id(), "started");
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    /// SIGKILLs node `i` and reaps it (resuming it first if paused is not needed: SIGKILL
    /// ends a stopped process too).
    pub fn kill_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            tracing::info!(node = %node.id, "killed");
        }
        node.paused = false;
    }

    /// A graceful stop of node `i`: SIGTERM, then waits up to `grace` for it to exit (a leader
    /// hands off first); SIGKILL if it has not. Returns how long it took and whether it exited
    /// on its own.
    ///
    /// # Errors
    /// A failed signal.
    pub async fn terminate_node(
        &mut self,
        i: usize,
        grace: Duration,
    ) -> anyhow::Result<(Duration, bool)> {
        let started = std::time::Instant::now();
        if self.nodes[i].paused {
            self.resume_node(i)?;
        }
        self.signal(i, Signal::TERM)?;
        let node = &mut self.nodes[i];
        let Some(mut child) = node.child.take() else {
            return Ok((started.elapsed(), true));
        };
        loop {
            if child.try_wait()?.is_some() {
                tracing::info!(node = %node.id, "stopped gracefully");
                return Ok((started.elapsed(), true));
            }
            if started.elapsed() >= grace {
                let _ = child.kill();
                let _ = child.wait();
                tracing::warn!(node = %node.id, "did not stop within {grace:?} of SIGTERM: killed");
                return Ok((started.elapsed(), false));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGSTOPs node `i`.
    ///
    /// # Errors
    /// A failed signal.
    pub fn pause_node(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal(i, Signal::STOP)?;
        self.nodes[i].paused = true;
        Ok(())
    }

    /// SIGCONTs node `i`.
    ///
    /// # Errors
    /// A failed signal.
    pub fn resume_node(&mut self, i: usize) -> anyhow::Result<()> {
        if self.nodes[i].paused {
            self.signal(i, Signal::CONT)?;
            self.nodes[i].paused = false;
        }
        Ok(())
    }

    fn signal(&self, i: usize, signal: Signal) -> anyhow::Result<()> {
        let Some(pid) = self.nodes[i]
            .pid()
            .and_then(|p| i32::try_from(p).ok())
            .and_then(Pid::from_raw)
        else {
            return Ok(());
        };
        kill_process(pid, signal)
            .with_context(|| format!("signal {signal:?} to {}", self.nodes[i].id))
    }

    /// Power loss of node `i`: SIGKILL, then everything not yet on its disk is discarded.
    /// The node stays down until [`Cluster::start_node`].
    ///
    /// # Errors
    /// No disk (the run was not started with power loss enabled), or a failed remount.
    pub fn power_cut(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill_node(i);
        let node = &mut self.nodes[i];
        let Some(disk) = node.disk.as_mut() else {
            bail!(
                "{} has no loop-mounted disk: power loss needs root",
                node.id
            );
        };
        disk.power_cut()
            .with_context(|| format!("power cut of {}", node.id))
    }

    /// Node `to` stops receiving from node `from` (probability `p` per packet; 1.0 = cut).
    ///
    /// # Errors
    /// A failed firewall rule; loss below 1.0 in loopback mode.
    pub fn drop_packets(&self, from: usize, to: usize, p: f64) -> anyhow::Result<()> {
        match self.spec.net {
            NetMode::Netns => host::drop_from(to, from, p),
            NetMode::Loopback if p >= 1.0 => {
                self.proxy.set(
                    from,
                    to,
                    DirectionFault {
                        cut: true,
                        ..Default::default()
                    },
                );
                Ok(())
            }
            NetMode::Loopback => bail!("packet loss needs network namespaces (run as root)"),
        }
    }

    /// Delays bytes from `from` to `to` by `delay` plus up to `jitter`.
    pub fn delay(&self, from: usize, to: usize, delay: Duration, jitter: Duration) {
        self.proxy.set(
            from,
            to,
            DirectionFault {
                cut: false,
                delay,
                jitter,
            },
        );
    }

    /// Removes every network fault.
    ///
    /// # Errors
    /// A failed firewall flush.
    pub fn heal_network(&self) -> anyhow::Result<()> {
        self.proxy.heal();
        if self.spec.net == NetMode::Netns {
            for i in 0..self.nodes.len() {
                host::flush_rules(i)?;
            }
        }
        Ok(())
    }

    /// Whether node `i` runs and answers ClusterList within a second.
    pub async fn node_serves(&self, i: usize) -> bool {
        let node = &self.nodes[i];
        node.is_running()
            && !node.paused
            && cluster_list(node.client_addr, Duration::from_secs(1))
                .await
                .is_ok()
    }

    /// The leader as the nodes report it: the claimed leader with the highest term, or the
    /// leader a majority of answering nodes names. `None` when none is known in `timeout`.
    pub async fn leader(&self, timeout: Duration) -> Option<usize> {
        let mut asks = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.is_running() || node.paused {
                continue;
            }
            let addr = node.client_addr;
            asks.push(async move { (i, cluster_list(addr, timeout).await) });
        }
        let answers = futures::future::join_all(asks).await;
        let mut best: Option<(u64, usize)> = None;
        for (i, answer) in answers {
            let Ok(r) = answer else { continue };
            let me = r.nodes.iter().find(|n| n.is_self);
            if let Some(me) = me
                && me.role == pb::Role::Leader as i32
            {
                let term = me.term.unwrap_or(0);
                if best.is_none_or(|(t, _)| term > t) {
                    best = Some((term, i));
                }
            }
        }
        best.map(|(_, i)| i)
    }

    /// Kills every node and the NameServer, removes namespaces and disks (keeps disk images
    /// when `keep`).
    pub fn shutdown(mut self, keep: bool) {
        for i in 0..self.nodes.len() {
            let _ = self.resume_node(i);
            self.kill_node(i);
        }
        drop(self.namesrv.take());
        for node in &mut self.nodes {
            if let Some(disk) = node.disk.take()
                && let Err(e) = disk.remove(keep)
            {
                tracing::warn!("{}: {e:#}", node.id);
            }
        }
        if self.spec.net == NetMode::Netns {
            host::cleanup_network(self.nodes.len());
        }
    }
}

/// Starts `mqnamesrv` on `addr` with its conf and log in `dir`; the child is tracked by PID.
/// Waits until it accepts connections: a broker whose first registration fails registers
/// again only after `registerNameServerPeriod` (30 s).
async fn start_namesrv(bin: &Path, addr: SocketAddr, dir: &Path) -> anyhow::Result<Namesrv> {
    if !bin.is_file() {
        bail!(
            "no mqnamesrv at {} (build it: cargo build --release -p raftmq-namesrv --bins)",
            bin.display()
        );
    }
    let ns_dir = dir.join("namesrv");
    std::fs::create_dir_all(&ns_dir).with_context(|| format!("mkdir {}", ns_dir.display()))?;
    let conf = ns_dir.join("namesrv.conf");
    let text = format!("listenPort={}\nbindAddress={}\n", addr.port(), addr.ip());
    std::fs::write(&conf, text).with_context(|| format!("write {}", conf.display()))?;
    let log_path = ns_dir.join("namesrv.log");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("open {}", log_path.display()))?;
    let err = log.try_clone()?;
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .current_dir(&ns_dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err))
        .spawn()
        .with_context(|| format!("spawn {}", bin.display()))?;
    tracing::info!(pid = child.id(), %addr, "namesrv started");
    let namesrv = Namesrv(child);
    // Bounded: 50 tries, 100 ms apart.
    for _ in 0..50 {
        let connect = tokio::net::TcpStream::connect(addr);
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), connect).await {
            return Ok(namesrv);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "mqnamesrv did not listen on {addr} within 5 s; see {}",
        log_path.display()
    )
}

fn port_offset(i: usize) -> u16 {
    u16::try_from(i).unwrap_or(0)
}

async fn cluster_list(
    addr: SocketAddr,
    timeout: Duration,
) -> anyhow::Result<pb::ClusterListResponse> {
    let addr = addr.to_string();
    let mut client = tokio::time::timeout(timeout, AdminClient::connect(&addr))
        .await
        .context("connect timed out")??;
    Ok(client.cluster_list(timeout).await?)
}
