//! One chaos run: cluster up, clients on, faults on a schedule, heal, drain, check, report.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use serde::Serialize;

use crate::checker::Validity;
use crate::cluster::{Cluster, ClusterSpec, NetMode};
use crate::history::F;
use crate::host;
use crate::nemesis::{self, Fault, MIXED};
use crate::recorder::Recorder;
use crate::remoting_workload;
use crate::report::{self, CheckOptions, Results};
use crate::workload::{self, ClientSpec, Kind, Role, Shared};

/// A negative control: a broker setting that breaks a promise on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Control {
    /// `unsafeSkipFsync=true`: nothing is fsynced (caught by power loss).
    SkipFsync,
    /// `unsafeAckBeforeReplication=true`: sends are acked before they are proposed.
    AckBeforeReplication,
    /// `unsafeCommitRollbacks=true`: a rolled-back half message is committed instead (caught
    /// by `-w transactional` as unexpected deliveries).
    CommitRollbacks,
}

/// The client protocol of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// RocketMQ 5 gRPC (`raftmq-client`): SendMessage, ReceiveMessage, AckMessage.
    #[default]
    Grpc,
    /// RocketMQ 4.x remoting through a NameServer: SEND_MESSAGE_V2, PULL_MESSAGE and
    /// consumer offsets ([`crate::remoting_workload`]).
    Remoting,
}

/// Everything a run is configured by (recorded in results.json).
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    /// Seconds of faults and load (`-t`).
    pub time_limit: u64,
    /// Clients (`-c`).
    pub concurrency: usize,
    /// Total enqueues per second (`-r`).
    pub rate: f64,
    /// Seconds normal, then seconds faulted (`-i`).
    pub interval: u64,
    /// Seconds of load after the last heal before the drain (`--recovery-time`).
    pub recovery_time: u64,
    /// The seed of every random choice.
    pub seed: u64,
    /// 3 or 5.
    pub nodes: usize,
    /// Fault names, taken in turn; `mixed` draws from a mix.
    pub nemesis: Vec<String>,
    /// `--fault-nodes` for fixed-* faults (`n0;n1`).
    pub fault_nodes: Vec<usize>,
    /// The workload.
    pub workload: Kind,
    /// Share of the clients that consume (the rest produce); 0 leaves reading to the drain.
    pub dequeue_ratio: f64,
    /// `flushDiskType`.
    pub flush: String,
    /// Negative control, if any.
    pub control: Option<Control>,
    /// The workload's client protocol.
    pub protocol: Protocol,
    /// The `mqnamesrv` binary (remoting protocol).
    #[serde(skip)]
    pub namesrv_bin: PathBuf,
    /// Network layout; `None` = netns when possible.
    #[serde(skip)]
    pub net: Option<NetMode>,
    /// The `mqbroker` binary.
    #[serde(skip)]
    pub broker_bin: PathBuf,
    /// Where runs are stored (`<store>/<timestamp>/`).
    #[serde(skip)]
    pub store: PathBuf,
    /// Keep disk images even when the run is valid.
    #[serde(skip)]
    pub keep: bool,
    /// First port in loopback mode.
    #[serde(skip)]
    pub base_port: u16,
    /// The command line, for the reproduce line.
    #[serde(skip)]
    pub argv: Vec<String>,
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The verdict.
    pub valid: Validity,
    /// The run's directory.
    pub dir: PathBuf,
}

/// Performs one run and writes its directory. The verdict maps to the exit code.
///
/// # Errors
/// Setup failures (no broker binary, a fault that cannot run with these options); a run that
/// started always ends in a verdict.
pub async fn run(options: Options) -> anyhow::Result<Outcome> {
    let faults: Vec<(String, Option<Fault>)> = options
        .nemesis
        .iter()
        .map(|n| {
            if n == "mixed" || n == "noop" {
                Ok((n.clone(), None))
            } else {
                Fault::parse(n).map(|f| (n.clone(), Some(f)))
            }
        })
        .collect::<anyhow::Result<_>>()?;
    let mixed = options.nemesis.iter().any(|n| n == "mixed");
    if !(3..=9).contains(&options.nodes) {
        bail!("--nodes {}: use 3 or 5", options.nodes);
    }
    for (name, f) in &faults {
        if let Some(f) = f
            && f.min_nodes() > options.nodes
        {
            bail!("{name} needs --nodes {}", f.min_nodes());
        }
    }
    if options.protocol == Protocol::Remoting && options.workload == Kind::Ordered {
        bail!("-w ordered needs message groups: use --protocol grpc");
    }
    if options.protocol == Protocol::Remoting && options.workload == Kind::Transactional {
        bail!("-w transactional runs over gRPC only: use --protocol grpc");
    }
    if !options.broker_bin.is_file() {
        bail!(
            "no mqbroker at {} (build it: cargo build --release -p broker --bins)",
            options.broker_bin.display()
        );
    }
    let net = match options.net {
        Some(n) => n,
        None => match host::netns_unavailable() {
            None => NetMode::Netns,
            Some(why) => {
                tracing::warn!(
                    "network namespaces unavailable ({why}): falling back to 127.0.0.1 and the proxy"
                );
                NetMode::Loopback
            }
        },
    };
    if net == NetMode::Netns
        && let Some(why) = host::netns_unavailable()
    {
        bail!("--net netns: {why}");
    }
    let needs_disks = mixed
        || faults
            .iter()
            .any(|(_, f)| f.is_some_and(Fault::needs_disks));
    if needs_disks && let Some(why) = host::loop_unavailable() {
        bail!("power-loss faults need loop-mounted disks: {why}");
    }

    // One run at a time on a host: runs share the namespace names, the bridge and its subnet.
    let _lock = host::lock_host()?;
    let stamp = chrono::Local::now().format("%Y%m%dT%H%M%S").to_string();
    let dir = options.store.join(&stamp);
    std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
    let latest = options.store.join("latest");
    let _ = std::fs::remove_file(&latest);
    let _ = std::os::unix::fs::symlink(&stamp, &latest);
    println!("chaos: run directory {}", dir.display());

    let mut extra_conf = Vec::new();
    match options.control {
        Some(Control::SkipFsync) => extra_conf.push("unsafeSkipFsync=true".to_string()),
        Some(Control::AckBeforeReplication) => {
            extra_conf.push("unsafeAckBeforeReplication=true".to_string());
        }
        Some(Control::CommitRollbacks) => extra_conf.push("unsafeCommitRollbacks=true".to_string()),
        None => {}
    }
    let spec = ClusterSpec {
        nodes: options.nodes,
        broker_bin: options.broker_bin.clone(),
        dir: dir.clone(),
        net,
        disks: needs_disks,
        flush: options.flush.clone(),
        extra_conf,
        base_port: options.base_port,
        namesrv_bin: (options.protocol == Protocol::Remoting).then(|| options.namesrv_bin.clone()),
    };
    let mut cluster = Cluster::start(spec).await?;
    let result = tokio::select! {
        result = drive(&options, &faults, mixed, &mut cluster, &dir) => result,
        signal = terminated() => Err(anyhow::anyhow!(
            "stopped by {signal}: nodes shut down, run directory kept"
        )),
    };
    let valid = match &result {
        Ok(v) => *v,
        Err(_) => Validity::Unknown,
    };
    let keep = options.keep || valid != Validity::True;
    cluster.shutdown(keep);
    let valid = result?;
    Ok(Outcome { valid, dir })
}

/// Resolves when the harness is asked to stop (SIGTERM, SIGINT or SIGHUP, as `timeout`, Ctrl-C
/// or a closed terminal send), so that it shuts its nodes down instead of leaving them running.
async fn terminated() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = hup.recv() => "SIGHUP",
    }
}

async fn drive(
    options: &Options,
    faults: &[(String, Option<Fault>)],
    mixed: bool,
    cluster: &mut Cluster,
    dir: &Path,
) -> anyhow::Result<Validity> {
    let n = cluster.nodes.len();
    let Some(_) = wait_leader(cluster, Duration::from_secs(30)).await else {
        bail!(
            "no leader within 30 s of starting the group; see {}/nodes/*/broker.log",
            dir.display()
        );
    };
    if cluster.spec().disks {
        // Everything so far (the group's membership, the first elections) reaches the node
        // disks, as it would on a group that ran a while: power cuts test the workload's
        // writes, not whether a brand-new group survives losing its founding entries.
        host::run("sync", &[])?;
    }
    let recorder = Arc::new(Recorder::create(&dir.join("history.jsonl"))?);
    let shared = Shared::new(Arc::clone(&recorder));
    let mut rng = StdRng::seed_from_u64(options.seed);
    let nodes: Vec<(String, std::net::SocketAddr)> = cluster
        .nodes
        .iter()
        .map(|node| (node.id.clone(), node.client_addr))
        .collect();
    // Consumers are the dequeue-ratio share of the clients; producers and consumers are each
    // spread over the nodes (each keeps its node, as an SDK client keeps its access point).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let consumers = ((options.concurrency as f64 * options.dequeue_ratio.clamp(0.0, 1.0)).round()
        as usize)
        .min(options.concurrency.saturating_sub(1));
    let producers = options.concurrency - consumers;
    let period = Duration::from_secs_f64(producers as f64 / options.rate.max(0.01));
    let remoting = match options.protocol {
        Protocol::Grpc => None,
        Protocol::Remoting => Some(remoting_setup(cluster).await?),
    };
    let mut clients = Vec::new();
    for c in 0..options.concurrency {
        let (role, k) = if c < producers {
            (Role::Producer, c)
        } else {
            (Role::Consumer, c - producers)
        };
        let shared = Arc::clone(&shared);
        if let Some(setup) = &remoting {
            // 4.x clients find their broker through the NameServer, not an access point.
            clients.push(tokio::spawn(remoting_workload::client(
                shared,
                setup.clone(),
                c,
                options.workload,
                role,
                (k, consumers),
                period,
            )));
            continue;
        }
        let spec = ClientSpec {
            index: c,
            kind: options.workload,
            role,
            node: nodes[k % n].clone(),
            period,
        };
        clients.push(tokio::spawn(workload::client(shared, spec)));
    }

    // The schedule: interval normal, interval faulted, until the time limit.
    let start = tokio::time::Instant::now();
    let limit = Duration::from_secs(options.time_limit);
    let interval = Duration::from_secs(options.interval.max(1));
    let windows = limit.as_secs() / (interval.as_secs() * 2).max(1);
    for turn in 0..windows {
        let turn = usize::try_from(turn).unwrap_or(usize::MAX);
        tokio::time::sleep(interval).await;
        let (name, fault) = if mixed {
            let name = MIXED.choose(&mut rng).copied().unwrap_or("leader-kill");
            (name.to_string(), Fault::parse(name)?)
        } else {
            let (name, f) = &faults[turn % faults.len()];
            match f {
                Some(f) => (name.clone(), *f),
                None => {
                    tokio::time::sleep(interval).await;
                    continue;
                }
            }
        };
        match nemesis::plan(cluster, &name, fault, &options.fault_nodes, &mut rng).await {
            Ok(active) => {
                let at = start.elapsed().as_secs_f64();
                recorder.fault(F::FaultStart, &name, node_ids(&active.nodes), None);
                let applied = if active.is_rolling_restart() {
                    nemesis::roll(cluster, &active).await
                } else {
                    nemesis::apply(cluster, &active)
                };
                match &applied {
                    Ok(()) => println!("chaos: {at:>6.1}s  fault  {active}"),
                    Err(e) => println!("chaos: {at:>6.1}s  fault  {active} FAILED: {e:#}"),
                }
                if applied.is_ok() {
                    tokio::time::sleep(interval).await;
                }
                let healed = nemesis::heal(cluster, &active);
                println!(
                    "chaos: {:>6.1}s  heal   {}",
                    start.elapsed().as_secs_f64(),
                    active.name
                );
                // A fault-end with an error does not count as a fault that ran (coverage).
                let error = applied
                    .as_ref()
                    .err()
                    .map(|e| format!("inject: {e:#}"))
                    .or_else(|| healed.as_ref().err().map(|e| format!("heal: {e:#}")));
                recorder.fault(F::FaultEnd, &name, node_ids(&active.nodes), error);
                healed?;
                if applied.is_err() {
                    tokio::time::sleep(interval).await;
                }
            }
            Err(e) => {
                // Not injected (e.g. no leader to aim at): coverage will tell.
                println!(
                    "chaos: {:>6.1}s  fault  {name} not injected: {e:#}",
                    start.elapsed().as_secs_f64()
                );
                tokio::time::sleep(interval).await;
            }
        }
    }
    // Whatever remains of the time limit runs fault-free, then the recovery time.
    let rest = limit.saturating_sub(start.elapsed());
    tokio::time::sleep(rest + Duration::from_secs(options.recovery_time)).await;
    shared
        .stop_producing
        .store(true, std::sync::atomic::Ordering::Relaxed);
    println!(
        "chaos: {:>6.1}s  producers stopped; draining",
        start.elapsed().as_secs_f64()
    );
    let drained = match &remoting {
        None => {
            let drained = workload::drain(
                &shared,
                &nodes,
                workload::INVISIBLE + Duration::from_secs(5),
                Duration::from_secs(120),
            )
            .await;
            shared
                .stop
                .store(true, std::sync::atomic::Ordering::Relaxed);
            for c in clients {
                let _ = tokio::time::timeout(Duration::from_secs(20), c).await;
            }
            drained
        }
        Some(setup) => {
            // Pull consumers stop with the producers; the drain starts from the offsets they
            // committed, as a consumer taking over their queues would.
            for c in clients {
                let _ = tokio::time::timeout(Duration::from_secs(30), c).await;
            }
            let drained = remoting_workload::drain(
                &shared,
                setup,
                Duration::from_secs(5),
                Duration::from_secs(120),
            )
            .await;
            shared
                .stop
                .store(true, std::sync::atomic::Ordering::Relaxed);
            drained
        }
    };
    println!(
        "chaos: {:>6.1}s  drain {}",
        start.elapsed().as_secs_f64(),
        if drained { "complete" } else { "incomplete" }
    );
    let history = recorder.finish()?;

    let requested: Vec<String> = if mixed {
        Vec::new()
    } else {
        faults
            .iter()
            .filter(|(_, f)| f.is_some())
            .map(|(n, _)| n.clone())
            .collect()
    };
    let check = CheckOptions {
        requested_faults: requested,
        check_order: options.workload == Kind::Ordered,
        ..CheckOptions::default()
    };
    let reproduce = reproduce_line(options);
    let mut config = serde_json::to_value(options)?;
    if let Some(obj) = config.as_object_mut() {
        obj.insert(
            "net".into(),
            serde_json::Value::from(cluster.spec().net.as_str()),
        );
    }
    let results = Results::from_history(&history, &check, options.seed, config, reproduce);
    let panics = node_panics(cluster);
    let mut json = serde_json::to_value(&results)?;
    let mut valid = results.valid;
    if let Some(obj) = json.as_object_mut() {
        obj.insert("node_panics".into(), serde_json::to_value(&panics)?);
        if !panics.is_empty() {
            // A panicking node is a bug even when the history is clean.
            valid = Validity::False;
            obj.insert("valid".into(), serde_json::to_value(valid)?);
        }
    }
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    std::fs::write(dir.join("latency.svg"), report::latency_svg(&history))?;
    std::fs::write(dir.join("throughput.svg"), report::throughput_svg(&history))?;
    println!("{}", report::console_summary(&results));
    for p in &panics {
        println!("node panic: {p}");
    }
    println!(
        "valid: {}   ({})",
        valid.as_str(),
        dir.join("results.json").display()
    );
    Ok(valid)
}

/// The NameServer's address and the nodes' names, after the workload's topic is routed.
async fn remoting_setup(cluster: &Cluster) -> anyhow::Result<remoting_workload::Setup> {
    let namesrv = cluster
        .namesrv_addr
        .clone()
        .context("--protocol remoting without a NameServer")?;
    let node_ids = cluster
        .nodes
        .iter()
        .map(|node| (node.client_addr.to_string(), node.id.clone()))
        .collect();
    let setup = remoting_workload::Setup {
        namesrv,
        node_ids: Arc::new(node_ids),
    };
    let route = remoting_workload::prepare(&setup, Duration::from_secs(60)).await?;
    println!(
        "chaos: topic {} routed by the NameServer {}: master {:?}, {} queues",
        workload::TOPIC,
        setup.namesrv,
        route.master,
        route.queues
    );
    Ok(setup)
}

async fn wait_leader(cluster: &Cluster, timeout: Duration) -> Option<usize> {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if let Some(l) = cluster.leader(Duration::from_secs(1)).await {
            return Some(l);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

fn node_ids(nodes: &[usize]) -> Vec<String> {
    nodes.iter().map(|i| format!("n{i}")).collect()
}

/// Lines of node logs that report a panic.
fn node_panics(cluster: &Cluster) -> Vec<String> {
    let mut out = Vec::new();
    for node in &cluster.nodes {
        if let Ok(text) = std::fs::read_to_string(node.log_path()) {
            for line in text.lines().filter(|l| l.contains("panicked at")) {
                out.push(format!("{}: {}", node.id, line.trim()));
            }
        }
    }
    out
}

fn reproduce_line(options: &Options) -> String {
    let mut args: Vec<String> = Vec::new();
    let mut skip = false;
    for a in options.argv.iter().skip(1) {
        if skip {
            skip = false;
            continue;
        }
        if a == "--seed" {
            skip = true;
            continue;
        }
        if a.starts_with("--seed=") {
            continue;
        }
        args.push(a.clone());
    }
    format!("chaos {} --seed {}", args.join(" "), options.seed)
}
