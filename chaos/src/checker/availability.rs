//! Availability: how long each fault kept producers out, whether the queue was unavailable
//! without a fault, and whether it works again after the last heal.
//!
//! Per fault window (OpenChaos's RTO semantics, made precise):
//!
//! - An enqueue *touches* a window when it was in flight during it: invoked no later than the
//!   window's end and completed (or the history ended) no earlier than its start.
//! - Unavailability starts at the invocation of the first enqueue (by invocation time) that
//!   touches the window and completed `fail` or `info` (or never). If it was already in flight
//!   when the fault began, it starts at the fault's start instead: the fault cannot have
//!   caused unavailability before it existed.
//! - Recovery is the earliest completion of an `ok` enqueue invoked at or after that start. An
//!   `ok` invoked earlier only shows the queue worked before the outage. Recovery may come after
//!   the heal; `recovered_in_window` says whether it came before.
//!
//! Outside faults: a failed or unknown enqueue that touches no window extended by `grace_ms`
//! (the after-effects of a fault, such as a re-election after a restarted node rejoins,
//! legitimately outlast the heal) is unavailability the run did not cause on purpose. Such
//! enqueues are merged into outages (a failure before the previous outage recovered belongs to
//! it) and make the check invalid.
//!
//! Final liveness: every fault was healed, at least one enqueue invoked after the last heal
//! completed `ok`, and the drain completed `ok`. Invalid otherwise. A window that never
//! recovered is reported but is not invalid by itself: final liveness covers the end of the run.

use serde::Serialize;

use super::{FaultWindow, Validity, fault_windows, history_end_ns, pairs};
use crate::history::{F, Op, OpType, ns_to_ms};

/// The default `grace_ms`: unavailability this long after a heal still belongs to the fault.
pub const GRACE_MS_DEFAULT: u64 = 10_000;

/// The availability verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AvailabilityResult {
    /// False when final liveness fails or the queue was unavailable outside faults.
    pub valid: Validity,
    /// The grace period after each heal, in milliseconds.
    pub grace_ms: u64,
    /// One entry per fault window, in start order.
    pub windows: Vec<WindowReport>,
    /// Windows during which an enqueue failed or went unknown.
    pub unavailable_window_count: usize,
    /// Unavailable windows with no recovery at all before the history ended.
    pub unrecovered_window_count: usize,
    /// Nearest-rank median of `recovery_ms` over recovered windows.
    pub recovery_ms_p50: Option<f64>,
    /// Nearest-rank 99th percentile of `recovery_ms` over recovered windows.
    pub recovery_ms_p99: Option<f64>,
    /// Largest `recovery_ms` over recovered windows.
    pub recovery_ms_max: Option<f64>,
    /// Outages no fault (plus grace) explains; any makes the check invalid.
    pub unavailability_outside_faults: Vec<Outage>,
    /// Whether the queue works again after the last heal.
    pub final_liveness: FinalLiveness,
}

/// One fault window's availability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowReport {
    /// The fault's name.
    pub fault: String,
    /// The nodes it hit.
    pub nodes: Vec<String>,
    /// Start, milliseconds since the run started.
    pub start_ms: f64,
    /// Heal (or end of history if never healed), milliseconds since the run started.
    pub end_ms: f64,
    /// False when no `fault-end` matched the start.
    pub healed: bool,
    /// An enqueue touching the window failed or went unknown.
    pub unavailable: bool,
    /// When unavailability started, milliseconds since the run started.
    pub unavailable_start_ms: Option<f64>,
    /// From unavailability start to the first `ok` completion after it.
    pub recovery_ms: Option<f64>,
    /// The window ended with the queue available: never unavailable, or recovered by its end.
    pub recovered_in_window: bool,
}

/// Unavailability outside every fault window and its grace period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outage {
    /// Invocation of the first failed or unknown enqueue, milliseconds since the run started.
    pub start_ms: f64,
    /// From `start_ms` to the first `ok` completion of an enqueue invoked after it.
    pub recovery_ms: Option<f64>,
    /// Failed or unknown enqueues that belong to this outage.
    pub failed_enqueue_count: usize,
}

/// Liveness after the last heal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FinalLiveness {
    /// All conditions below hold.
    pub live: bool,
    /// The last heal, milliseconds since the run started; `None` without faults.
    pub last_fault_end_ms: Option<f64>,
    /// Faults never healed.
    pub unhealed_fault_count: usize,
    /// Enqueues invoked at or after the last heal that completed `ok`.
    pub ok_enqueue_after_heal_count: usize,
    /// A `drain` op completed `ok`.
    pub drain_completed: bool,
}

/// An enqueue's span: `complete_ns` is the end of the history when it never completed.
#[derive(Debug, Clone, Copy)]
struct Span {
    invoke_ns: u64,
    complete_ns: u64,
}

impl Span {
    fn touches(self, start_ns: u64, end_ns: u64) -> bool {
        self.invoke_ns <= end_ns && start_ns <= self.complete_ns
    }
}

/// `ok` enqueues by invocation time, with the earliest completion of every suffix, so the first
/// recovery after an instant is one binary search.
#[derive(Debug)]
struct Recoveries {
    invoke_ns: Vec<u64>,
    complete_ns_min_suffix: Vec<u64>,
}

impl Recoveries {
    fn new(mut oks: Vec<Span>) -> Self {
        oks.sort_by_key(|span| span.invoke_ns);
        let mut complete_ns_min_suffix = vec![u64::MAX; oks.len()];
        let mut earliest = u64::MAX;
        for (slot, span) in complete_ns_min_suffix.iter_mut().zip(&oks).rev() {
            earliest = earliest.min(span.complete_ns);
            *slot = earliest;
        }
        Recoveries {
            invoke_ns: oks.iter().map(|span| span.invoke_ns).collect(),
            complete_ns_min_suffix,
        }
    }

    /// The earliest completion of an `ok` enqueue invoked at or after `from_ns`.
    fn first_after(&self, from_ns: u64) -> Option<u64> {
        let first = self.invoke_ns.partition_point(|invoke| *invoke < from_ns);
        self.complete_ns_min_suffix.get(first).copied()
    }

    fn count_after(&self, from_ns: u64) -> usize {
        self.invoke_ns.len() - self.invoke_ns.partition_point(|invoke| *invoke < from_ns)
    }
}

/// Runs the availability check; see [`GRACE_MS_DEFAULT`] for `grace_ms`.
pub fn check(history: &[Op], grace_ms: u64) -> AvailabilityResult {
    let history_end = history_end_ns(history);
    let mut oks: Vec<Span> = Vec::new();
    let mut failures: Vec<Span> = Vec::new();
    for pair in pairs(history).iter().filter(|p| p.invoke.f == F::Enqueue) {
        let span = Span {
            invoke_ns: pair.invoke.time_ns,
            complete_ns: pair.completion.map_or(history_end, |op| op.time_ns),
        };
        match pair.outcome() {
            OpType::Ok => oks.push(span),
            OpType::Fail | OpType::Info | OpType::Invoke => failures.push(span),
        }
    }
    failures.sort_by_key(|span| span.invoke_ns);
    let recoveries = Recoveries::new(oks);
    let windows = fault_windows(history);

    let reports: Vec<WindowReport> = windows
        .iter()
        .map(|window| window_report(window, &failures, &recoveries))
        .collect();
    let mut recovery_ms: Vec<f64> = reports.iter().filter_map(|r| r.recovery_ms).collect();
    recovery_ms.sort_by(f64::total_cmp);
    let grace_ns = grace_ms.saturating_mul(1_000_000);
    let outside = outages(&windows, grace_ns, &failures, &recoveries);

    let last_fault_end_ns = windows.iter().map(|w| w.end_ns).max();
    let unhealed_fault_count = windows.iter().filter(|w| !w.healed).count();
    let ok_enqueue_after_heal_count = recoveries.count_after(last_fault_end_ns.unwrap_or(0));
    let drain_completed = history
        .iter()
        .any(|op| op.f == F::Drain && op.ty == OpType::Ok);
    let final_liveness = FinalLiveness {
        live: unhealed_fault_count == 0 && ok_enqueue_after_heal_count > 0 && drain_completed,
        last_fault_end_ms: last_fault_end_ns.map(ns_to_ms),
        unhealed_fault_count,
        ok_enqueue_after_heal_count,
        drain_completed,
    };

    AvailabilityResult {
        valid: Validity::from_bool(final_liveness.live && outside.is_empty()),
        grace_ms,
        unavailable_window_count: reports.iter().filter(|r| r.unavailable).count(),
        unrecovered_window_count: reports
            .iter()
            .filter(|r| r.unavailable && r.recovery_ms.is_none())
            .count(),
        recovery_ms_p50: percentile_nearest_rank(&recovery_ms, 50),
        recovery_ms_p99: percentile_nearest_rank(&recovery_ms, 99),
        recovery_ms_max: recovery_ms.last().copied(),
        windows: reports,
        unavailability_outside_faults: outside,
        final_liveness,
    }
}

fn window_report(window: &FaultWindow, failures: &[Span], recoveries: &Recoveries) -> WindowReport {
    let first_failure = failures
        .iter()
        .find(|span| span.touches(window.start_ns, window.end_ns));
    let unavailable_start_ns = first_failure.map(|span| span.invoke_ns.max(window.start_ns));
    let recovery_ns = unavailable_start_ns.and_then(|start| recoveries.first_after(start));
    let recovered_in_window = match (unavailable_start_ns, recovery_ns) {
        (None, _) => true,
        (Some(_), Some(recovery)) => recovery <= window.end_ns,
        (Some(_), None) => false,
    };
    WindowReport {
        fault: window.fault.clone(),
        nodes: window.nodes.clone(),
        start_ms: ns_to_ms(window.start_ns),
        end_ms: ns_to_ms(window.end_ns),
        healed: window.healed,
        unavailable: first_failure.is_some(),
        unavailable_start_ms: unavailable_start_ns.map(ns_to_ms),
        recovery_ms: unavailable_start_ns
            .zip(recovery_ns)
            .map(|(start, end)| ns_to_ms(end.saturating_sub(start))),
        recovered_in_window,
    }
}

/// Failed or unknown enqueues outside every window extended by `grace_ns`, merged into outages:
/// a failure invoked before the current outage recovered belongs to it.
fn outages(
    windows: &[FaultWindow],
    grace_ns: u64,
    failures: &[Span],
    recoveries: &Recoveries,
) -> Vec<Outage> {
    let unexplained = failures.iter().filter(|span| {
        !windows
            .iter()
            .any(|w| span.touches(w.start_ns, w.end_ns.saturating_add(grace_ns)))
    });
    let mut result: Vec<Outage> = Vec::new();
    // The open outage's recovery instant; `None` inside `Some` = never recovered.
    let mut open_until: Option<Option<u64>> = None;
    for span in unexplained {
        let continues = match open_until {
            Some(None) => true,
            Some(Some(recovery)) => span.invoke_ns < recovery,
            None => false,
        };
        if continues && let Some(outage) = result.last_mut() {
            outage.failed_enqueue_count += 1;
            continue;
        }
        let recovery_ns = recoveries.first_after(span.invoke_ns);
        open_until = Some(recovery_ns);
        result.push(Outage {
            start_ms: ns_to_ms(span.invoke_ns),
            recovery_ms: recovery_ns.map(|end| ns_to_ms(end - span.invoke_ns)),
            failed_enqueue_count: 1,
        });
    }
    result
}

/// The nearest-rank percentile of ascending `sorted`: the value at rank ⌈p·n/100⌉.
fn percentile_nearest_rank(sorted: &[f64], percent: usize) -> Option<f64> {
    debug_assert!((1..=100).contains(&percent));
    let rank = (percent * sorted.len()).div_ceil(100);
    sorted.get(rank.checked_sub(1)?).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::{HistoryBuilder, history};
    use OpType::{Fail, Info, Ok};

    /// A kill from 1 000 to 3 000 ms; c1's enqueue times out at 1 100 → 2 100, c2's fails at
    /// 1 200; the first `ok` invoked after 1 100 completes at 2 450: recovery 1 350 ms. Then a
    /// clean pause from 5 000 to 6 000 ms, an `ok` enqueue after the heal and the drain.
    fn kill_then_pause() -> HistoryBuilder {
        history()
            .enq("c0", 1, 0, 5, Ok)
            .fault("kill-leader", &["n0"], 1_000, 3_000)
            .enq("c0", 2, 1_050, 1_060, Ok)
            .enq("c1", 3, 1_100, 2_100, Info)
            .enq("c2", 4, 1_200, 1_250, Fail)
            .enq("c0", 5, 2_200, 2_450, Ok)
            .fault("pause", &["n1", "n2"], 5_000, 6_000)
            .enq("c0", 6, 5_500, 5_510, Ok)
            .enq("c0", 7, 6_500, 6_510, Ok)
            .drain(7_000, 8_000, Ok)
    }

    #[test]
    fn window_outage_and_recovery_time_are_exact() {
        let result = check(&kill_then_pause().build(), GRACE_MS_DEFAULT);
        assert_eq!(result.valid, Validity::True);
        let kill = &result.windows[0];
        assert_eq!(
            (kill.fault.as_str(), kill.nodes.as_slice()),
            ("kill-leader", &["n0".to_owned()][..])
        );
        assert_eq!((kill.start_ms, kill.end_ms), (1_000.0, 3_000.0));
        assert!(kill.unavailable && kill.healed && kill.recovered_in_window);
        assert_eq!(kill.unavailable_start_ms, Some(1_100.0));
        assert_eq!(kill.recovery_ms, Some(1_350.0));
        let pause = &result.windows[1];
        assert!(!pause.unavailable && pause.recovered_in_window);
        assert_eq!(pause.recovery_ms, None);
        assert_eq!(result.unavailable_window_count, 1);
        assert_eq!(result.recovery_ms_p50, Some(1_350.0));
        assert_eq!(result.recovery_ms_max, Some(1_350.0));
        assert!(result.unavailability_outside_faults.is_empty());
        assert!(result.final_liveness.live);
        assert_eq!(result.final_liveness.last_fault_end_ms, Some(6_000.0));
        assert_eq!(result.final_liveness.ok_enqueue_after_heal_count, 1);
    }

    #[test]
    fn an_enqueue_in_flight_at_the_fault_start_counts_from_the_start() {
        // Invoked at 900, before the kill at 1 000, timed out at 1 500; recovery at 1 800.
        let ops = history()
            .fault("kill-leader", &["n0"], 1_000, 3_000)
            .enq("c1", 1, 900, 1_500, Info)
            .enq("c0", 2, 950, 1_020, Ok)
            .enq("c0", 3, 1_600, 1_800, Ok)
            .enq("c0", 4, 4_000, 4_010, Ok)
            .drain(5_000, 6_000, Ok)
            .build();
        let result = check(&ops, GRACE_MS_DEFAULT);
        assert_eq!(result.windows[0].unavailable_start_ms, Some(1_000.0));
        assert_eq!(result.windows[0].recovery_ms, Some(800.0));
        assert!(result.unavailability_outside_faults.is_empty());
        assert_eq!(result.valid, Validity::True);
    }

    #[test]
    fn recovery_percentiles_and_late_recovery() {
        // Window 1 recovers in 1 350 ms; window 2 (8 000..8 500) recovers at 9 300, after its
        // heal: 1 200 ms, not in the window. Window 3 never recovers.
        let ops = kill_then_pause()
            .fault("partition-random-halves", &["n0"], 8_000, 8_500)
            .enq("c1", 8, 8_100, 8_200, Fail)
            .enq("c0", 9, 9_000, 9_300, Ok)
            .fault("kill-random", &["n2"], 10_000, 11_000)
            .enq("c1", 10, 10_500, 10_600, Fail)
            .build();
        let result = check(&ops, GRACE_MS_DEFAULT);
        let late = &result.windows[2];
        assert_eq!(late.recovery_ms, Some(1_200.0));
        assert!(!late.recovered_in_window);
        let never = &result.windows[3];
        assert!(never.unavailable && !never.recovered_in_window);
        assert_eq!(never.recovery_ms, None);
        assert_eq!(result.unavailable_window_count, 3);
        assert_eq!(result.unrecovered_window_count, 1);
        // Nearest rank over [1 200, 1 350]: p50 is rank 1, p99 rank 2.
        assert_eq!(result.recovery_ms_p50, Some(1_200.0));
        assert_eq!(result.recovery_ms_p99, Some(1_350.0));
        assert_eq!(result.recovery_ms_max, Some(1_350.0));
        // No ok enqueue was invoked after the last heal at 11 000 ms.
        assert!(!result.final_liveness.live);
        assert_eq!(result.valid, Validity::False);
    }

    #[test]
    fn unavailability_outside_faults_beyond_grace_is_invalid() {
        let ops = history()
            .enq("c0", 1, 0, 5, Ok)
            .fault("kill-leader", &["n0"], 1_000, 3_000)
            // 5 s after the heal: inside the 10 s grace, excused.
            .enq("c1", 2, 8_000, 8_100, Fail)
            .enq("c0", 3, 8_200, 8_300, Ok)
            // 17 s after the heal: an outage of its own; c2's failure joins it.
            .enq("c1", 4, 20_000, 20_050, Fail)
            .enq("c2", 5, 20_100, 21_000, Info)
            // Invoked before the outage began: shows nothing about recovery.
            .enq("c0", 6, 19_990, 20_020, Ok)
            .enq("c0", 7, 20_100, 20_300, Ok)
            .enq("c0", 8, 22_000, 22_010, Ok)
            .drain(23_000, 24_000, Ok)
            .build();
        let result = check(&ops, GRACE_MS_DEFAULT);
        assert_eq!(
            result.unavailability_outside_faults,
            [Outage {
                start_ms: 20_000.0,
                recovery_ms: Some(300.0),
                failed_enqueue_count: 2
            }]
        );
        assert!(result.final_liveness.live);
        assert_eq!(result.valid, Validity::False);

        // With a 20 s grace both failures belong to the kill.
        let result = check(&ops, 20_000);
        assert!(result.unavailability_outside_faults.is_empty());
        assert_eq!(result.valid, Validity::True);
    }

    #[test]
    fn final_liveness_cases() {
        struct Case {
            name: &'static str,
            history: Vec<Op>,
            live: bool,
            unhealed: usize,
            ok_after_heal: usize,
        }
        let base = || {
            history()
                .enq("c0", 1, 0, 5, Ok)
                .enq("c0", 2, 1_500, 1_600, Ok)
        };
        let cases = [
            Case {
                name: "ok after the heal and a drain",
                history: base()
                    .fault("pause", &["n0"], 1_000, 2_000)
                    .enq("c0", 3, 2_500, 2_600, Ok)
                    .drain(3_000, 4_000, Ok)
                    .build(),
                live: true,
                unhealed: 0,
                ok_after_heal: 1,
            },
            Case {
                name: "no ok enqueue after the heal",
                history: base()
                    .fault("pause", &["n0"], 1_000, 2_000)
                    .enq("c0", 3, 2_500, 2_600, Info)
                    .drain(3_000, 4_000, Ok)
                    .build(),
                live: false,
                unhealed: 0,
                ok_after_heal: 0,
            },
            Case {
                name: "the drain did not complete",
                history: base()
                    .fault("pause", &["n0"], 1_000, 2_000)
                    .enq("c0", 3, 2_500, 2_600, Ok)
                    .drain(3_000, 4_000, Fail)
                    .build(),
                live: false,
                unhealed: 0,
                ok_after_heal: 1,
            },
            Case {
                name: "a fault never healed",
                history: base()
                    .fault_start("pause", &["n0"], 1_000)
                    .enq("c0", 3, 2_500, 2_600, Ok)
                    .drain(3_000, 4_000, Ok)
                    .build(),
                live: false,
                unhealed: 1,
                ok_after_heal: 0,
            },
            Case {
                name: "no faults at all",
                history: base().drain(3_000, 4_000, Ok).build(),
                live: true,
                unhealed: 0,
                ok_after_heal: 2,
            },
        ];
        for case in cases {
            let result = check(&case.history, GRACE_MS_DEFAULT);
            let liveness = &result.final_liveness;
            let name = case.name;
            assert_eq!(liveness.live, case.live, "{name}: live");
            assert_eq!(
                liveness.unhealed_fault_count, case.unhealed,
                "{name}: unhealed"
            );
            assert_eq!(
                liveness.ok_enqueue_after_heal_count, case.ok_after_heal,
                "{name}: oks"
            );
            assert_eq!(
                result.valid,
                Validity::from_bool(case.live),
                "{name}: valid"
            );
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile_nearest_rank(&values, 50), Some(5.0));
        assert_eq!(percentile_nearest_rank(&values, 99), Some(10.0));
        assert_eq!(percentile_nearest_rank(&values[..1], 50), Some(1.0));
        assert_eq!(percentile_nearest_rank(&[], 50), None);
    }
}
