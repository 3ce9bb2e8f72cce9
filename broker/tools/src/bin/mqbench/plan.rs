//! The run's shape: when it measures and stops ([`Plan`]), what every worker shares
//! ([`Shared`]), what one worker measured ([`Tally`]), and how a failure is counted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use hdrhistogram::Histogram;
use proto::apache::rocketmq::v2;
use raftmq_client::ClientError;
use tokio::sync::watch;

use crate::args::Common;

/// Duration of a run when neither `--count` nor `--duration` is given.
pub(crate) const DEFAULT_DURATION_S: u64 = 20;
/// Histogram range in microseconds: 1 µs to 1 hour, 3 significant digits.
pub(crate) const HISTOGRAM_US_MAX: u64 = 3_600_000_000;
pub(crate) const HISTOGRAM_SIGFIG: u8 = 3;
/// Error codes kept with one sample message each; more codes are still counted.
pub(crate) const ERROR_SAMPLE_CODES_MAX: usize = 32;

/// When the run measures and when it stops.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) started: Instant,
    /// Warmup ends here; operations started before it are not measured.
    pub(crate) measure_from: Instant,
    /// No operation starts after this (`None`: only `count` bounds the run).
    pub(crate) stop_at: Option<Instant>,
    pub(crate) count: Option<u64>,
    pub(crate) warmup: Duration,
    pub(crate) duration: Option<Duration>,
}

impl Plan {
    pub(crate) fn new(common: &Common) -> Plan {
        let duration = match (common.duration, common.count) {
            (Some(d), _) => Some(Duration::from_secs(d)),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(DEFAULT_DURATION_S)),
        };
        let warmup = Duration::from_secs(common.warmup);
        let started = Instant::now();
        let measure_from = started + warmup;
        Plan {
            started,
            measure_from,
            stop_at: duration.map(|d| measure_from + d),
            count: common.count,
            warmup,
            duration,
        }
    }
}

/// State every worker shares: the stop signal and the counters the progress bar shows.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) plan: Plan,
    pub(crate) stop: watch::Sender<bool>,
    pub(crate) stopped: AtomicBool,
    /// Measured operations started (the `--count` tickets), when one operation is one message
    /// (producer). A consumer's receive brings a batch, so its count is checked on acks instead.
    pub(crate) tickets: Option<AtomicU64>,
    /// Measured successes and failures so far.
    pub(crate) ok: AtomicU64,
    pub(crate) failed: AtomicU64,
    /// Successes including warmup, for the progress rate.
    pub(crate) ok_all: AtomicU64,
}

impl Shared {
    pub(crate) fn new(plan: Plan, ticketed: bool) -> Arc<Shared> {
        let (stop, _) = watch::channel(false);
        Arc::new(Shared {
            plan,
            stop,
            stopped: AtomicBool::new(false),
            tickets: ticketed.then(|| AtomicU64::new(0)),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            ok_all: AtomicU64::new(0),
        })
    }

    pub(crate) fn signal_stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.stop.send_replace(true);
    }

    /// Whether an operation on `n` messages may start now, and whether it is measured.
    pub(crate) fn admit(&self, n: u64) -> Option<bool> {
        if self.stopped.load(Ordering::Acquire) {
            return None;
        }
        let now = Instant::now();
        if self.plan.stop_at.is_some_and(|s| now >= s) {
            self.signal_stop();
            return None;
        }
        if now < self.plan.measure_from {
            return Some(false);
        }
        if let (Some(count), Some(tickets)) = (self.plan.count, &self.tickets)
            && tickets.fetch_add(n, Ordering::Relaxed) >= count
        {
            return None;
        }
        Some(true)
    }
}

/// What one worker measured.
#[derive(Debug)]
pub(crate) struct Tally {
    pub(crate) latency_us: Histogram<u64>,
    /// Consumer only: acknowledge latency and born-to-received latency.
    pub(crate) ack_latency_us: Histogram<u64>,
    pub(crate) e2e_us: Histogram<u64>,
    pub(crate) ok: u64,
    pub(crate) bytes: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) samples: BTreeMap<String, String>,
    /// Consumer only: long polls that came back empty.
    pub(crate) empty_polls: u64,
    /// Producer: requests resent on another address after a failed call (`--retries`).
    pub(crate) retried: u64,
    /// When the last measured success completed.
    pub(crate) last_ok: Option<Instant>,
    /// When the last measured operation (success or failure) completed.
    pub(crate) last_done: Option<Instant>,
}

pub(crate) fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, HISTOGRAM_US_MAX, HISTOGRAM_SIGFIG)
        .map_err(|e| anyhow!("cannot create a latency histogram: {e}"))
}

pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Tally {
    pub(crate) fn new() -> anyhow::Result<Tally> {
        Ok(Tally {
            latency_us: histogram()?,
            ack_latency_us: histogram()?,
            e2e_us: histogram()?,
            ok: 0,
            bytes: 0,
            errors: BTreeMap::new(),
            samples: BTreeMap::new(),
            empty_polls: 0,
            retried: 0,
            last_ok: None,
            last_done: None,
        })
    }

    pub(crate) fn error(&mut self, code: String, message: String) {
        if self.samples.len() < ERROR_SAMPLE_CODES_MAX && !self.samples.contains_key(&code) {
            self.samples.insert(code.clone(), message);
        }
        *self.errors.entry(code).or_insert(0) += 1;
    }

    pub(crate) fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        self.latency_us
            .add(&other.latency_us)
            .map_err(|e| anyhow!("merging latency histograms: {e:?}"))?;
        self.ack_latency_us
            .add(&other.ack_latency_us)
            .map_err(|e| anyhow!("merging ack latency histograms: {e:?}"))?;
        self.e2e_us
            .add(&other.e2e_us)
            .map_err(|e| anyhow!("merging end-to-end histograms: {e:?}"))?;
        self.ok += other.ok;
        self.bytes += other.bytes;
        self.empty_polls += other.empty_polls;
        self.retried += other.retried;
        for (code, n) in other.errors {
            *self.errors.entry(code).or_insert(0) += n;
        }
        for (code, message) in other.samples {
            if self.samples.len() < ERROR_SAMPLE_CODES_MAX {
                self.samples.entry(code).or_insert(message);
            }
        }
        self.last_ok = self.last_ok.max(other.last_ok);
        self.last_done = self.last_done.max(other.last_done);
        Ok(())
    }
}

/// A call's failure, as counted: the v2 code name (`MASTER_PERSISTENCE_TIMEOUT`), or
/// `GRPC_<code>` when the call itself failed (transport, deadline), with the message.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: String,
    pub(crate) message: String,
}

pub(crate) fn v2_failure(status: Option<&v2::Status>) -> Option<Failure> {
    let Some(status) = status else {
        return Some(Failure {
            code: "NO_STATUS".to_string(),
            message: "the response carries no status".to_string(),
        });
    };
    if status.code == v2::Code::Ok as i32 {
        return None;
    }
    let code = v2::Code::try_from(status.code).map_or_else(
        |_| format!("CODE_{}", status.code),
        |c| c.as_str_name().to_string(),
    );
    Some(Failure {
        code,
        message: status.message.clone(),
    })
}

pub(crate) fn grpc_failure(status: &tonic::Status) -> Failure {
    Failure {
        code: format!("GRPC_{:?}", status.code()),
        message: status.message().to_string(),
    }
}

/// A failed call as counted: its gRPC status, or (never from a call) the client's reason.
pub(crate) fn client_failure(error: &ClientError) -> Failure {
    match error.grpc_status() {
        Some(status) => grpc_failure(status),
        None => Failure {
            code: "CLIENT".to_string(),
            message: error.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Common;

    #[test]
    fn only_ok_is_a_success() {
        let ok = v2::Status {
            code: v2::Code::Ok as i32,
            message: "OK".into(),
        };
        assert!(v2_failure(Some(&ok)).is_none());
        let busy = v2::Status {
            code: v2::Code::TooManyRequests as i32,
            message: "busy".into(),
        };
        let f = v2_failure(Some(&busy)).expect("a failure");
        assert_eq!(f.code, "TOO_MANY_REQUESTS");
        assert_eq!(
            v2_failure(None).expect("missing status fails").code,
            "NO_STATUS"
        );
        let odd = v2::Status {
            code: 99_999,
            message: String::new(),
        };
        assert_eq!(v2_failure(Some(&odd)).expect("fails").code, "CODE_99999");
    }

    #[test]
    fn a_count_bounds_measured_operations_only() {
        let common = Common::try_parse_from_args(["--count", "3", "--warmup", "0"]);
        let plan = Plan::new(&common);
        assert!(plan.stop_at.is_none());
        let shared = Shared::new(plan, true);
        let admitted: Vec<Option<bool>> = (0..5).map(|_| shared.admit(1)).collect();
        assert_eq!(admitted, [Some(true), Some(true), Some(true), None, None]);
    }

    #[test]
    fn without_count_or_duration_a_run_lasts_twenty_seconds() {
        let common = Common::try_parse_from_args([]);
        let plan = Plan::new(&common);
        assert_eq!(plan.duration, Some(Duration::from_secs(DEFAULT_DURATION_S)));
    }
}
