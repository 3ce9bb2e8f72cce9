//! Measuring a run to its end and reporting it as text or as one JSON object.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context as _, anyhow};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use serde::Serialize;

use crate::args::{Common, Protocol};
use crate::plan::{Plan, Shared, Tally};
use crate::procfs::{BrokerWatch, cpu_seconds, status_kib};
use crate::progress::{spawn_deadline, spawn_ticker};

/// What a run measured, before it is turned into a report.
#[derive(Debug)]
pub(crate) struct Measured {
    pub(crate) tally: Tally,
    /// CPU seconds per broker pid over the measured window (`None`: the process went away).
    pub(crate) broker_cpu_s: Vec<Option<f64>>,
    pub(crate) client_cpu_s: Option<f64>,
    /// End of the measured window.
    pub(crate) ended: Instant,
    pub(crate) watch: Arc<BrokerWatch>,
}

/// Spawns one task per worker state (`worker` turns it into the task's future).
pub(crate) fn spawn_workers<W, Fut>(
    states: Vec<W>,
    worker: impl Fn(W) -> Fut,
) -> Vec<tokio::task::JoinHandle<anyhow::Result<Tally>>>
where
    Fut: std::future::Future<Output = anyhow::Result<Tally>> + Send + 'static,
{
    states
        .into_iter()
        .map(|state| tokio::spawn(worker(state)))
        .collect()
}

/// Runs the workers to the end: CPU is read when warmup ends and again when the last worker is
/// done; the window ends at the last measured success (so an idle tail is not counted).
pub(crate) async fn measure(
    shared: &Arc<Shared>,
    mut watch: BrokerWatch,
    bar: ProgressBar,
    workers: Vec<tokio::task::JoinHandle<anyhow::Result<Tally>>>,
    unit: &'static str,
) -> anyhow::Result<Measured> {
    spawn_deadline(Arc::clone(shared));
    tokio::time::sleep_until(tokio::time::Instant::from_std(shared.plan.measure_from)).await;
    watch.mark_start();
    let client_start = cpu_seconds(std::process::id()).ok();
    let watch = Arc::new(watch);
    let ticker = spawn_ticker(Arc::clone(shared), Arc::clone(&watch), bar, unit);
    let mut tally = Tally::new()?;
    let mut first_error = None;
    for worker in workers {
        match worker.await {
            Ok(Ok(t)) => tally.merge(t)?,
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(anyhow!("a worker task failed: {e}"));
            }
        }
    }
    let ended = Instant::now();
    shared.signal_stop();
    watch.sample_rss();
    let broker_cpu_s = watch
        .pids
        .iter()
        .zip(&watch.cpu_start)
        .map(|(&pid, start)| Some(cpu_seconds(pid).ok()? - (*start)?))
        .collect();
    let client_cpu_s = client_start.and_then(|s| Some(cpu_seconds(std::process::id()).ok()? - s));
    let _ = ticker.await;
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(Measured {
        ended: tally.last_ok.unwrap_or(ended),
        tally,
        broker_cpu_s,
        client_cpu_s,
        watch,
    })
}

/// The run's configuration as the report shows it.
#[derive(Debug, Serialize)]
pub(crate) struct Setup {
    pub(crate) mode: &'static str,
    pub(crate) protocol: Protocol,
    pub(crate) target: String,
    pub(crate) topic: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) message_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) queues: Option<u32>,
    pub(crate) connections: u32,
    pub(crate) inflight: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) batch: Option<u32>,
    pub(crate) message_groups: u32,
    pub(crate) flush: String,
    pub(crate) flush_source: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Latency {
    pub(crate) count: u64,
    pub(crate) mean_ms: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p90_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
    pub(crate) max_ms: f64,
}

impl Latency {
    pub(crate) fn of(h: &Histogram<u64>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        #[allow(clippy::cast_precision_loss)]
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Latency {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        })
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct BrokerProcess {
    pub(crate) pid: u32,
    /// `None` when the process went away during the run.
    pub(crate) cpu_s: Option<f64>,
    /// VmRSS at the end and its peak while measuring (sampled every 250 ms).
    pub(crate) rss_end_kib: Option<u64>,
    pub(crate) rss_max_kib: Option<u64>,
    /// RssAnon (VmRSS less mapped files and shared memory) at the end and its peak.
    pub(crate) rss_anon_end_kib: Option<u64>,
    pub(crate) rss_anon_max_kib: Option<u64>,
    /// The kernel's VmRSS high-water mark over the process's life (VmHWM).
    pub(crate) rss_hwm_kib: Option<u64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Report {
    #[serde(flatten)]
    pub(crate) setup: Setup,
    pub(crate) warmup_s: f64,
    pub(crate) elapsed_s: f64,
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    pub(crate) errors_by_code: BTreeMap<String, u64>,
    pub(crate) error_samples: BTreeMap<String, String>,
    pub(crate) msgs_per_s: f64,
    pub(crate) mb_per_s: f64,
    /// Producer: SendMessage round trip. Consumer: ReceiveMessage round trip (non-empty ones).
    pub(crate) latency: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ack_latency: Option<Latency>,
    /// Consumer: born timestamp to received, per message (millisecond resolution).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) e2e_latency: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) empty_polls: Option<u64>,
    /// Producer with `--retries`: requests resent on another address after a failed call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) retried: Option<u64>,
    pub(crate) broker_pids: Vec<BrokerProcess>,
    /// All --broker-pids together, over the measured window.
    pub(crate) broker_cpu_s: Option<f64>,
    pub(crate) broker_cpu_us_per_msg: Option<f64>,
    pub(crate) client_cpu_s: Option<f64>,
    pub(crate) client_cpu_us_per_msg: Option<f64>,
}

pub(crate) fn finish(
    common: &Common,
    setup: Setup,
    plan: &Plan,
    measured: Measured,
) -> anyhow::Result<ExitCode> {
    let consumer = setup.mode == "consumer";
    let report = build_report(setup, plan, measured, consumer);
    if common.json {
        println!(
            "{}",
            serde_json::to_string(&report).context("cannot encode the report as JSON")?
        );
    } else {
        print_report(&report);
    }
    Ok(if report.ok > 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("mqbench: no operation succeeded");
        ExitCode::FAILURE
    })
}

#[allow(clippy::cast_precision_loss)]
pub(crate) fn build_report(
    setup: Setup,
    plan: &Plan,
    measured: Measured,
    consumer: bool,
) -> Report {
    let Measured {
        tally,
        broker_cpu_s,
        client_cpu_s,
        ended,
        watch,
    } = measured;
    let elapsed_s = ended
        .saturating_duration_since(plan.measure_from)
        .as_secs_f64();
    let per_s = |v: f64| if elapsed_s > 0.0 { v / elapsed_s } else { 0.0 };
    let per_msg_us = |cpu: f64| (tally.ok > 0).then(|| cpu * 1e6 / tally.ok as f64);
    let peak = |v: &AtomicU64| Some(v.load(Ordering::Relaxed)).filter(|v| *v > 0);
    let broker_pids: Vec<BrokerProcess> = watch
        .pids
        .iter()
        .enumerate()
        .map(|(i, &pid)| {
            let [rss, anon, hwm] = status_kib(pid, ["VmRSS", "RssAnon", "VmHWM"]);
            BrokerProcess {
                pid,
                cpu_s: broker_cpu_s.get(i).copied().flatten(),
                rss_end_kib: rss,
                rss_max_kib: peak(&watch.rss_max_kib[i]),
                rss_anon_end_kib: anon,
                rss_anon_max_kib: peak(&watch.rss_anon_max_kib[i]),
                rss_hwm_kib: hwm,
            }
        })
        .collect();
    let broker_cpu = (!broker_cpu_s.is_empty() && broker_cpu_s.iter().all(Option::is_some))
        .then(|| broker_cpu_s.iter().flatten().sum::<f64>());
    Report {
        warmup_s: plan.warmup.as_secs_f64(),
        elapsed_s,
        ok: tally.ok,
        errors: tally.errors.values().sum(),
        msgs_per_s: per_s(tally.ok as f64),
        mb_per_s: per_s(tally.bytes as f64) / 1e6,
        latency: Latency::of(&tally.latency_us),
        ack_latency: consumer
            .then(|| Latency::of(&tally.ack_latency_us))
            .flatten(),
        e2e_latency: consumer.then(|| Latency::of(&tally.e2e_us)).flatten(),
        empty_polls: consumer.then_some(tally.empty_polls),
        retried: (tally.retried > 0).then_some(tally.retried),
        errors_by_code: tally.errors,
        error_samples: tally.samples,
        broker_pids,
        broker_cpu_us_per_msg: broker_cpu.and_then(per_msg_us),
        broker_cpu_s: broker_cpu,
        client_cpu_us_per_msg: client_cpu_s.and_then(per_msg_us),
        client_cpu_s,
        setup,
    }
}

pub(crate) fn latency_line(what: &str, l: Option<&Latency>) {
    match l {
        Some(l) => println!(
            "{what:<12} p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}  (ms, {} samples)",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms, l.count
        ),
        None => println!("{what:<12} -"),
    }
}

pub(crate) fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "-".to_string(), |k| format!("{:.1}", k as f64 / 1024.0))
}

#[allow(clippy::cast_precision_loss)]
pub(crate) fn print_report(r: &Report) {
    let s = &r.setup;
    let what = match (s.mode, s.message_size) {
        ("producer", Some(size)) => format!(
            "{size} B messages to {} ({} queues), {} per request{}",
            s.topic,
            s.queues.unwrap_or(0),
            s.batch.unwrap_or(1),
            if s.message_groups > 0 {
                format!(", FIFO over {} message groups", s.message_groups)
            } else {
                String::new()
            }
        ),
        _ => format!(
            "{} as {}, batch {}",
            s.topic,
            s.group.as_deref().unwrap_or("-"),
            s.batch.unwrap_or(0)
        ),
    };
    println!(
        "mqbench {} ({}): {what}; {} connection(s) × {} in flight to {}",
        s.mode,
        s.protocol.name(),
        s.connections,
        s.inflight,
        s.target
    );
    println!("flush        {} (from {})", s.flush, s.flush_source);
    println!(
        "measured     {:.2} s after {:.0} s warmup",
        r.elapsed_s, r.warmup_s
    );
    println!(
        "throughput   {:.0} msgs/s  {:.2} MB/s  (ok {}, errors {})",
        r.msgs_per_s, r.mb_per_s, r.ok, r.errors
    );
    let primary = if s.mode == "producer" {
        "send"
    } else {
        "receive"
    };
    latency_line(primary, r.latency.as_ref());
    if s.mode == "consumer" {
        latency_line("ack", r.ack_latency.as_ref());
        latency_line("born→recv", r.e2e_latency.as_ref());
        println!("empty polls  {}", r.empty_polls.unwrap_or(0));
    }
    if let Some(n) = r.retried {
        println!("retried      {n} requests resent on another address after a failed call");
    }
    for (code, n) in &r.errors_by_code {
        let sample = r.error_samples.get(code).map_or("", String::as_str);
        println!("error        {code} × {n}: {sample}");
    }
    if !r.broker_pids.is_empty() {
        match (r.broker_cpu_s, r.broker_cpu_us_per_msg) {
            (Some(cpu), Some(per)) => println!(
                "broker CPU   {cpu:.2} s over {} process(es) = {per:.1} µs/msg ({:.0} % of one core)",
                r.broker_pids.len(),
                if r.elapsed_s > 0.0 {
                    cpu / r.elapsed_s * 100.0
                } else {
                    0.0
                }
            ),
            _ => println!("broker CPU   - (a process went away during the run)"),
        }
        for p in &r.broker_pids {
            println!(
                "broker {:<6} cpu {} s  RSS end {} MiB (anon {})  max {} MiB (anon {})  hwm {} MiB",
                p.pid,
                p.cpu_s
                    .map_or_else(|| "-".to_string(), |c| format!("{c:.2}")),
                mib(p.rss_end_kib),
                mib(p.rss_anon_end_kib),
                mib(p.rss_max_kib),
                mib(p.rss_anon_max_kib),
                mib(p.rss_hwm_kib)
            );
        }
    }
    if let (Some(cpu), Some(per)) = (r.client_cpu_s, r.client_cpu_us_per_msg) {
        println!("client CPU   {cpu:.2} s = {per:.1} µs/msg");
    }
}
