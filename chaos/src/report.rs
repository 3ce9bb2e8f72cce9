//! What a run leaves behind: `results.json` ([`Results`]), the exit code, the console block
//! ([`console_summary`]) and the SVG plots ([`latency_svg`], [`throughput_svg`]).
//!
//! `results.json` carries `valid` as `true`, `false` or `"unknown"`, mapped to exit codes 0, 1
//! and 2 so scripts and CI can tell "the system is broken" from "the run proved nothing".

mod svg;

pub use svg::{POINTS_MAX, latency_svg, throughput_svg};

use std::collections::BTreeMap;

use serde::Serialize;

use crate::checker::availability::{self, AvailabilityResult, GRACE_MS_DEFAULT};
use crate::checker::coverage::{self, CoverageResult};
use crate::checker::order::{self, OrderResult};
use crate::checker::queue::{self, QueueResult};
use crate::checker::{OpCounts, Validity, ValueSet, count_ops, history_end_ns};
use crate::history::{Op, ns_to_ms};

/// How many example values a console line lists.
const CONSOLE_EXAMPLES_MAX: usize = 10;

/// The contents of `results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// The run's verdict: the merge of every checker's.
    pub valid: Validity,
    /// The seed every random choice of the run derives from.
    pub seed: u64,
    /// The run's configuration, as the harness chooses to record it.
    pub config: serde_json::Value,
    /// One section per checker.
    pub checkers: Checkers,
    /// Op counts.
    pub stats: Stats,
    /// The command that repeats this run.
    pub reproduce: String,
}

/// Every checker's result.
#[derive(Debug, Clone, Serialize)]
pub struct Checkers {
    /// Total-queue.
    pub queue: QueueResult,
    /// Per-group order; `null` when the workload had no message groups.
    pub order: Option<OrderResult>,
    /// Recovery times, unavailability outside faults, final liveness.
    pub availability: AvailabilityResult,
    /// Requested faults that ran.
    pub coverage: CoverageResult,
}

/// What the checkers need beyond the history.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The faults the run was asked to inject, by name.
    pub requested_faults: Vec<String>,
    /// Run the per-group order checker (ordered-queue workload).
    pub check_order: bool,
    /// Grace period after each heal for the availability checker.
    pub grace_ms: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            requested_faults: Vec::new(),
            check_order: false,
            grace_ms: GRACE_MS_DEFAULT,
        }
    }
}

impl Checkers {
    /// Runs every checker over `history`.
    pub fn run(history: &[Op], options: &CheckOptions) -> Checkers {
        Checkers {
            queue: queue::check(history),
            order: options.check_order.then(|| order::check(history)),
            availability: availability::check(history, options.grace_ms),
            coverage: coverage::check(history, &options.requested_faults),
        }
    }
}

/// Op counts of the whole history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Lines in the history.
    pub op_count: usize,
    /// Time of the last op, milliseconds since the run started.
    pub duration_ms: f64,
    /// Ops by `f` and type.
    pub ops: BTreeMap<String, OpCounts>,
}

impl Stats {
    /// Counts the ops of `history`.
    pub fn from_history(history: &[Op]) -> Stats {
        Stats {
            op_count: history.len(),
            duration_ms: ns_to_ms(history_end_ns(history)),
            ops: count_ops(history),
        }
    }
}

impl Results {
    /// Assembles the results; `valid` is the [`overall`] verdict of `checkers`.
    pub fn new(
        seed: u64,
        config: serde_json::Value,
        checkers: Checkers,
        stats: Stats,
        reproduce: String,
    ) -> Results {
        let mut results = Results {
            valid: Validity::Unknown,
            seed,
            config,
            checkers,
            stats,
            reproduce,
        };
        results.valid = overall(&results);
        results
    }

    /// Runs every checker over `history` and assembles the results.
    pub fn from_history(
        history: &[Op],
        options: &CheckOptions,
        seed: u64,
        config: serde_json::Value,
        reproduce: String,
    ) -> Results {
        let checkers = Checkers::run(history, options);
        Results::new(
            seed,
            config,
            checkers,
            Stats::from_history(history),
            reproduce,
        )
    }
}

/// The merge of every checker's verdict (not of `results.valid`).
pub fn overall(results: &Results) -> Validity {
    let checkers = &results.checkers;
    Validity::merge_all([
        checkers.queue.valid,
        checkers.order.as_ref().map_or(Validity::True, |o| o.valid),
        checkers.availability.valid,
        checkers.coverage.valid,
    ])
}

/// The process exit code for a verdict: 0 valid, 1 invalid, 2 unknown.
pub fn exit_code(valid: Validity) -> i32 {
    match valid {
        Validity::True => 0,
        Validity::False => 1,
        Validity::Unknown => 2,
    }
}

/// The OpenChaos-style "CHAOS TEST RESULT" block, ending with the reproduce line.
pub fn console_summary(results: &Results) -> String {
    let rule = "=".repeat(72);
    let queue = &results.checkers.queue;
    let availability = &results.checkers.availability;
    let mut lines = vec![
        rule.clone(),
        "CHAOS TEST RESULT".to_owned(),
        rule.clone(),
        field("valid", results.valid.as_str()),
        field(
            "enqueue",
            &format!(
                "invoked {}, ok {}, fail {}, unknown {}",
                queue.enqueue_invoke_count,
                queue.enqueue_ok_count,
                queue.enqueue_fail_count,
                queue.enqueue_info_count
            ),
        ),
        field(
            "dequeued",
            &format!(
                "{} deliveries of {} distinct values",
                queue.dequeue_value_count, queue.dequeue_distinct_count
            ),
        ),
        field("lost", &lost_line(queue)),
        field(
            "duplicated",
            &format!(
                "{} values, {} extra deliveries (allowed: at-least-once)",
                queue.duplicated.count, queue.duplicated.extra_delivery_count
            ),
        ),
        field(
            "acked-then-redelivered",
            &format!(
                "{} (a bug: delivered again to a receive begun after its ack was answered)",
                value_set_line(&queue.acked_then_redelivered)
            ),
        ),
        field("unexpected", &value_set_line(&queue.unexpected)),
        field("recovered", &value_set_line(&queue.recovered)),
        field(
            "failed-but-delivered",
            &value_set_line(&queue.failed_but_delivered),
        ),
        field("order", &order_line(results.checkers.order.as_ref())),
        "recovery time:".to_owned(),
    ];
    lines.extend(recovery_table(availability));
    lines.push(field(
        "recovery p50 / p99 / max",
        &percentiles_line(availability),
    ));
    lines.push(field(
        "unavailability outside faults",
        &outside_line(availability),
    ));
    lines.push(field("final liveness", &liveness_line(availability)));
    lines.push(field(
        "coverage",
        &coverage_line(&results.checkers.coverage),
    ));
    lines.push(rule);
    lines.push(format!(
        "reproduce with --seed {}: {}",
        results.seed, results.reproduce
    ));
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

fn field(name: &str, value: &str) -> String {
    format!("{:<32}{value}", format!("{name}:"))
}

fn value_set_line(set: &ValueSet) -> String {
    if set.is_empty() {
        return "0".to_owned();
    }
    let shown: Vec<String> = set
        .values
        .iter()
        .take(CONSOLE_EXAMPLES_MAX)
        .map(u64::to_string)
        .collect();
    let more = if set.count > shown.len() { ", ..." } else { "" };
    format!("{} [{}{more}]", set.count, shown.join(", "))
}

fn lost_line(queue: &QueueResult) -> String {
    let line = value_set_line(&queue.lost);
    if queue.drain_completed {
        line
    } else {
        format!("{line} (not judged: the drain did not complete)")
    }
}

fn order_line(order: Option<&OrderResult>) -> String {
    let Some(order) = order else {
        return "not checked".to_owned();
    };
    let mut line = format!(
        "{} ({} groups, {} values)",
        order.valid.as_str(),
        order.group_count,
        order.value_count
    );
    if let Some(first) = order.violations.first() {
        line.push_str(&format!(
            "; {} groups out of order, first: group {} value {}",
            order.violation_count, first.group, first.value
        ));
    }
    line
}

fn recovery_table(availability: &AvailabilityResult) -> Vec<String> {
    if availability.windows.is_empty() {
        return vec!["  (no fault windows)".to_owned()];
    }
    let mut rows = vec![format!(
        "  {:<28} {:<14} {:>9} {:>12}  {}",
        "fault", "nodes", "start s", "recovery ms", "recovered"
    )];
    for window in &availability.windows {
        let recovery = window
            .recovery_ms
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}"));
        let recovered = match (window.unavailable, window.recovery_ms) {
            (false, _) => "always available",
            (true, Some(_)) if window.recovered_in_window => "yes",
            (true, Some(_)) => "after the heal",
            (true, None) => "never",
        };
        rows.push(format!(
            "  {:<28} {:<14} {:>9.1} {:>12}  {recovered}",
            window.fault,
            window.nodes.join(","),
            window.start_ms / 1000.0,
            recovery
        ));
    }
    rows
}

fn percentiles_line(availability: &AvailabilityResult) -> String {
    let show = |ms: Option<f64>| ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}"));
    format!(
        "{} / {} / {} ms over {} unavailable windows ({} never recovered)",
        show(availability.recovery_ms_p50),
        show(availability.recovery_ms_p99),
        show(availability.recovery_ms_max),
        availability.unavailable_window_count,
        availability.unrecovered_window_count
    )
}

fn outside_line(availability: &AvailabilityResult) -> String {
    let outages = &availability.unavailability_outside_faults;
    let Some(first) = outages.first() else {
        return format!("none (grace {} ms after each heal)", availability.grace_ms);
    };
    let recovery = first.recovery_ms.map_or_else(
        || "never recovered".to_owned(),
        |ms| format!("recovered in {ms:.1} ms"),
    );
    format!(
        "{} outages, first at {:.1} s ({} failed enqueues, {recovery})",
        outages.len(),
        first.start_ms / 1000.0,
        first.failed_enqueue_count
    )
}

fn liveness_line(availability: &AvailabilityResult) -> String {
    let liveness = &availability.final_liveness;
    let heal = liveness.last_fault_end_ms.map_or_else(
        || "the start".to_owned(),
        |ms| format!("{:.1} s", ms / 1000.0),
    );
    let drain = if liveness.drain_completed {
        "completed"
    } else {
        "did not complete"
    };
    let mut line = format!(
        "{} ({} ok enqueues after the last heal at {heal}, drain {drain}",
        liveness.live, liveness.ok_enqueue_after_heal_count
    );
    if liveness.unhealed_fault_count > 0 {
        line.push_str(&format!(
            ", {} faults never healed",
            liveness.unhealed_fault_count
        ));
    }
    line.push(')');
    line
}

fn coverage_line(coverage: &CoverageResult) -> String {
    let ran: Vec<&str> = coverage
        .faults
        .iter()
        .filter(|f| f.ran)
        .map(|f| f.fault.as_str())
        .collect();
    let mut line = format!("{} (ran: {}", coverage.valid.as_str(), ran.join(", "));
    if !coverage.missing.is_empty() {
        line.push_str(&format!("; missing: {}", coverage.missing.join(", ")));
    }
    if coverage.enqueue_ok_count < coverage.enqueue_ok_min {
        line.push_str(&format!(
            "; only {} ok enqueues, {} needed",
            coverage.enqueue_ok_count, coverage.enqueue_ok_min
        ));
    }
    line.push(')');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::{HistoryBuilder, history};
    use crate::history::OpType::{Fail, Info, Ok};

    /// Twelve ok enqueues, a kill with an outage and a recovery, one lost value (12), a
    /// duplicate (3) and a drain.
    fn run() -> HistoryBuilder {
        let mut builder = history();
        for value in 1..=12 {
            let t = 100 * value;
            builder = builder.enq("c0", value, t, t + 10, Ok);
        }
        builder
            .fault("kill-leader", &["n0"], 200, 400)
            .enq("c1", 100, 210, 1_160, Info)
            .enq("c2", 101, 220, 230, Fail)
            .deq("c3", &[1, 2, 3, 3, 4, 5, 6], 700, 710)
            .deq("c3", &[7, 8, 9, 10, 11, 100], 1_300, 1_310)
            .drain(1_400, 1_500, Ok)
    }

    fn results(ops: &[Op], requested: &[&str]) -> Results {
        let options = CheckOptions {
            requested_faults: requested.iter().map(|f| (*f).to_owned()).collect(),
            check_order: false,
            grace_ms: GRACE_MS_DEFAULT,
        };
        let config = serde_json::json!({ "nodes": 3 });
        Results::from_history(ops, &options, 42, config, "chaos run --seed 42".to_owned())
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(Validity::True), 0);
        assert_eq!(exit_code(Validity::False), 1);
        assert_eq!(exit_code(Validity::Unknown), 2);
    }

    #[test]
    fn overall_merges_every_checker() {
        let ops = run().build();
        let lost = results(&ops, &["kill-leader"]);
        assert_eq!(lost.checkers.queue.valid, Validity::False);
        assert_eq!(lost.checkers.coverage.valid, Validity::True);
        assert_eq!(lost.valid, Validity::False);
        assert_eq!(overall(&lost), Validity::False);

        let complete = run().deq("c3", &[12], 1_420, 1_430).build();
        assert_eq!(results(&complete, &["kill-leader"]).valid, Validity::True);

        // A requested fault that never ran: the run proves less than asked, and says so.
        let missing = results(&complete, &["kill-leader", "pause"]);
        assert_eq!(missing.valid, Validity::False);
        assert_eq!(exit_code(missing.valid), 1);

        // Too few acknowledged enqueues to mean anything: unknown, though nothing is wrong.
        let short = history()
            .enq("c0", 1, 0, 5, Ok)
            .deq("c1", &[1], 10, 15)
            .drain(20, 30, Ok)
            .build();
        let unknown = results(&short, &[]);
        assert_eq!(unknown.checkers.queue.valid, Validity::True);
        assert_eq!(unknown.checkers.coverage.valid, Validity::Unknown);
        assert_eq!(unknown.valid, Validity::Unknown);
        assert_eq!(exit_code(unknown.valid), 2);
    }

    #[test]
    fn results_json_shape() {
        let json = serde_json::to_value(results(&run().build(), &["kill-leader"])).unwrap();
        assert_eq!(json["valid"], serde_json::json!(false));
        assert_eq!(json["seed"], serde_json::json!(42));
        assert_eq!(json["config"]["nodes"], serde_json::json!(3));
        assert_eq!(json["checkers"]["order"], serde_json::Value::Null);
        assert_eq!(
            json["checkers"]["queue"]["lost"]["values"],
            serde_json::json!([12])
        );
        assert_eq!(
            json["stats"]["ops"]["enqueue"]["invoke"],
            serde_json::json!(14)
        );
        assert_eq!(
            json["checkers"]["queue"]["acked_then_redelivered"],
            serde_json::json!({ "count": 0, "values": [] })
        );
        assert_eq!(json["stats"]["duration_ms"], serde_json::json!(1_500.0));
        assert_eq!(json["reproduce"], serde_json::json!("chaos run --seed 42"));
    }

    #[test]
    fn an_acked_value_delivered_again_fails_the_run_and_is_named() {
        // The complete run, then 5 (acked at 710 ms) delivered again after the drain began.
        let ops = run()
            .deq("c3", &[12], 1_420, 1_430)
            .deq("c4", &[5], 1_440, 1_450)
            .build();
        let results = results(&ops, &["kill-leader"]);
        assert_eq!(results.checkers.queue.valid, Validity::False);
        assert_eq!(results.valid, Validity::False);
        let json = serde_json::to_value(&results).unwrap();
        assert_eq!(
            json["checkers"]["queue"]["acked_then_redelivered"],
            serde_json::json!({ "count": 1, "values": [5] })
        );
        let summary = console_summary(&results);
        let line = field(
            "acked-then-redelivered",
            "1 [5] (a bug: delivered again to a receive begun after its ack was answered)",
        );
        assert!(summary.contains(&line), "missing {line:?} in\n{summary}");
    }

    #[test]
    fn console_summary_lists_the_key_numbers() {
        let summary = console_summary(&results(&run().build(), &["kill-leader"]));
        let expected = [
            "CHAOS TEST RESULT".to_owned(),
            field("valid", "false"),
            field("enqueue", "invoked 14, ok 12, fail 1, unknown 1"),
            field("dequeued", "13 deliveries of 12 distinct values"),
            field("lost", "1 [12]"),
            field(
                "duplicated",
                "1 values, 1 extra deliveries (allowed: at-least-once)",
            ),
            field(
                "acked-then-redelivered",
                "0 (a bug: delivered again to a receive begun after its ack was answered)",
            ),
            field("unexpected", "0"),
            field("recovered", "1 [100]"),
            field("failed-but-delivered", "0"),
            field("order", "not checked"),
            // The outage starts at 210 ms; the first ok invoked after it completes at 310 ms.
            "  kill-leader                  n0                   0.2        100.0  yes".to_owned(),
            field(
                "recovery p50 / p99 / max",
                "100.0 / 100.0 / 100.0 ms over 1 unavailable windows (0 never recovered)",
            ),
            field(
                "unavailability outside faults",
                "none (grace 10000 ms after each heal)",
            ),
            field(
                "final liveness",
                "true (9 ok enqueues after the last heal at 0.4 s, drain completed)",
            ),
            field("coverage", "true (ran: kill-leader)"),
        ];
        for line in &expected {
            assert!(
                summary.contains(line.as_str()),
                "missing {line:?} in\n{summary}"
            );
        }
        assert!(summary.starts_with(&"=".repeat(72)));
        assert!(summary.ends_with("reproduce with --seed 42: chaos run --seed 42\n"));
    }
}
