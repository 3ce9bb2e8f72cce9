//! Hand-written SVG plots: latency points and throughput over time, with fault windows shaded.
//!
//! No plotting crate: the plots are a few hundred lines of text, and an SVG opens in any
//! browser. Each fault window is one `<rect class="fault-window">` with a `<text
//! class="fault-label">`, so tests and tools can find them. Output size is bounded: at most
//! [`POINTS_MAX`] latency points (every k-th point past that, said in the title) and at most
//! [`BUCKETS_MAX`] throughput buckets (wider buckets past that).

use std::fmt::Write as _;

use crate::checker::{FaultWindow, fault_windows, history_end_ns, pairs};
use crate::history::{F, Op, OpType, ns_to_ms};

/// Latency points drawn at most; beyond this every k-th point is drawn.
pub const POINTS_MAX: usize = 50_000;

/// Throughput buckets drawn at most; beyond this buckets widen past one second.
const BUCKETS_MAX: u64 = 100_000;

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 480.0;
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_RIGHT: f64 = 20.0;
const MARGIN_TOP: f64 = 50.0;
const MARGIN_BOTTOM: f64 = 50.0;

/// Latency axis bounds: log10 of 0.1 ms and 10 000 ms, as OpenChaos plots.
const LATENCY_LOG_MIN: f64 = -1.0;
const LATENCY_LOG_MAX: f64 = 4.0;

const GREEN: &str = "#2ca02c";
const RED: &str = "#d62728";
const BLUE: &str = "#1f77b4";

/// The drawing area and the time axis shared by both plots.
#[derive(Debug)]
struct Frame {
    seconds_max: f64,
}

impl Frame {
    fn new(history: &[Op]) -> Frame {
        // At least one second, so an empty or instant history still has an axis.
        Frame {
            seconds_max: (ns_to_ms(history_end_ns(history)) / 1000.0).max(1.0),
        }
    }

    fn plot_width() -> f64 {
        WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    }

    fn plot_height() -> f64 {
        HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    }

    fn x(&self, seconds: f64) -> f64 {
        MARGIN_LEFT + Frame::plot_width() * (seconds / self.seconds_max).clamp(0.0, 1.0)
    }

    /// `fraction` 0 is the bottom of the plot, 1 the top.
    fn y(fraction: f64) -> f64 {
        MARGIN_TOP + Frame::plot_height() * (1.0 - fraction.clamp(0.0, 1.0))
    }

    fn open(svg: &mut String, title: &str) {
        let _ = write!(
            svg,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
             viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"11\">\n\
             <rect class=\"background\" width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"white\"/>\n\
             <text class=\"title\" x=\"{:.1}\" y=\"24\" text-anchor=\"middle\" \
             font-size=\"15\">{}</text>\n",
            WIDTH / 2.0,
            escape(title)
        );
    }

    fn fault_windows(&self, svg: &mut String, windows: &[FaultWindow]) {
        let top = Frame::y(1.0);
        let height = Frame::plot_height();
        for window in windows {
            let left = self.x(ns_to_ms(window.start_ns) / 1000.0);
            let right = self.x(ns_to_ms(window.end_ns) / 1000.0);
            let _ = writeln!(
                svg,
                "<rect class=\"fault-window\" x=\"{left:.1}\" y=\"{top:.1}\" \
                 width=\"{:.1}\" height=\"{height:.1}\" fill=\"#888888\" \
                 fill-opacity=\"0.2\"/>\n\
                 <text class=\"fault-label\" x=\"{:.1}\" y=\"{:.1}\" fill=\"#555555\">{}</text>",
                (right - left).max(1.0),
                left + 2.0,
                top + 12.0,
                escape(&window.fault)
            );
        }
    }

    /// The time axis with ticks, the y axis line, and both axis titles.
    fn axes(&self, svg: &mut String, y_title: &str) {
        let bottom = Frame::y(0.0);
        let _ = writeln!(
            svg,
            "<g class=\"axes\" stroke=\"black\">\
             <line x1=\"{MARGIN_LEFT}\" y1=\"{bottom:.1}\" x2=\"{:.1}\" y2=\"{bottom:.1}\"/>\
             <line x1=\"{MARGIN_LEFT}\" y1=\"{MARGIN_TOP}\" x2=\"{MARGIN_LEFT}\" \
             y2=\"{bottom:.1}\"/></g>",
            WIDTH - MARGIN_RIGHT
        );
        let step = nice_step(self.seconds_max / 10.0);
        for seconds in ticks(self.seconds_max, step) {
            let x = self.x(seconds);
            let _ = writeln!(
                svg,
                "<line x1=\"{x:.1}\" y1=\"{bottom:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" \
                 stroke=\"black\"/><text x=\"{x:.1}\" y=\"{:.1}\" \
                 text-anchor=\"middle\">{}</text>",
                bottom + 4.0,
                bottom + 16.0,
                tick_label(seconds)
            );
        }
        let _ = writeln!(
            svg,
            "<text class=\"x-title\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">\
             time since start (s)</text>\n\
             <text class=\"y-title\" transform=\"translate(16 {:.1}) rotate(-90)\" \
             text-anchor=\"middle\">{}</text>",
            MARGIN_LEFT + Frame::plot_width() / 2.0,
            HEIGHT - 12.0,
            MARGIN_TOP + Frame::plot_height() / 2.0,
            escape(y_title)
        );
    }

    /// A horizontal grid line with its label at `fraction` of the height.
    fn y_tick(svg: &mut String, fraction: f64, label: &str) {
        let y = Frame::y(fraction);
        let _ = writeln!(
            svg,
            "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#dddddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>",
            MARGIN_LEFT - 4.0,
            WIDTH - MARGIN_RIGHT,
            MARGIN_LEFT - 6.0,
            y + 4.0
        );
    }

    /// A legend in the top right corner: one row per (swatch markup, label).
    fn legend(svg: &mut String, rows: &[(String, &str)]) {
        let x = WIDTH - MARGIN_RIGHT - 150.0;
        svg.push_str("<g class=\"legend\">\n");
        for (row, (swatch, label)) in (0u32..).zip(rows) {
            let y = MARGIN_TOP + 14.0 + 14.0 * f64::from(row);
            let _ = writeln!(
                svg,
                "<g transform=\"translate({x:.1} {y:.1})\">{swatch}\
                 <text x=\"12\" y=\"4\">{}</text></g>",
                escape(label)
            );
        }
        svg.push_str("</g>\n");
    }
}

/// One latency point: invocation time and latency, outcome and kind.
#[derive(Debug, Clone, Copy)]
struct Point {
    seconds: f64,
    latency_ms: f64,
    outcome: OpType,
    f: F,
}

/// The latency plot: one point per completed enqueue (circle) and dequeue (square) at its
/// invocation time, latency in ms on a log scale from 0.1 to 10 000 (clamped); ok green, fail
/// red, info blue; fault windows shaded.
pub fn latency_svg(history: &[Op]) -> String {
    let points: Vec<Point> = pairs(history)
        .iter()
        .filter(|p| matches!(p.invoke.f, F::Enqueue | F::Dequeue))
        .filter_map(|p| {
            Some(Point {
                seconds: ns_to_ms(p.invoke.time_ns) / 1000.0,
                latency_ms: ns_to_ms(p.latency_ns()?),
                outcome: p.outcome(),
                f: p.invoke.f,
            })
        })
        .collect();
    let stride = if points.len() > POINTS_MAX {
        points.len().div_ceil(POINTS_MAX)
    } else {
        1
    };
    let mut title = "Enqueue and dequeue latency".to_owned();
    if stride > 1 {
        title.push_str(&format!(
            " (1 in {stride} of {} points shown)",
            points.len()
        ));
    }

    let frame = Frame::new(history);
    let mut svg = String::new();
    Frame::open(&mut svg, &title);
    frame.fault_windows(&mut svg, &fault_windows(history));
    for exponent in -1..=4 {
        let log = f64::from(exponent);
        let fraction = (log - LATENCY_LOG_MIN) / (LATENCY_LOG_MAX - LATENCY_LOG_MIN);
        Frame::y_tick(&mut svg, fraction, &tick_label(10f64.powf(log)));
    }
    frame.axes(&mut svg, "latency (ms, log scale)");
    for f in [F::Enqueue, F::Dequeue] {
        for (outcome, color) in [
            (OpType::Ok, GREEN),
            (OpType::Fail, RED),
            (OpType::Info, BLUE),
        ] {
            let _ = writeln!(
                svg,
                "<g class=\"{} {}\" fill=\"{color}\">",
                f.name(),
                outcome_name(outcome)
            );
            let drawn = points
                .iter()
                .step_by(stride)
                .filter(|p| p.f == f && p.outcome == outcome);
            for point in drawn {
                let log = point.latency_ms.max(f64::MIN_POSITIVE).log10();
                let fraction = (log - LATENCY_LOG_MIN) / (LATENCY_LOG_MAX - LATENCY_LOG_MIN);
                marker(&mut svg, f, frame.x(point.seconds), Frame::y(fraction));
            }
            svg.push_str("</g>\n");
        }
    }
    let mut legend: Vec<(String, &str)> = Vec::new();
    for (f, labels) in [
        (
            F::Enqueue,
            ["enqueue ok", "enqueue fail", "enqueue unknown"],
        ),
        (
            F::Dequeue,
            ["dequeue ok", "dequeue fail", "dequeue unknown"],
        ),
    ] {
        for (color, label) in [GREEN, RED, BLUE].into_iter().zip(labels) {
            let mut swatch = format!("<g fill=\"{color}\">");
            marker(&mut swatch, f, 0.0, 0.0);
            swatch.push_str("</g>");
            legend.push((swatch, label));
        }
    }
    Frame::legend(&mut svg, &legend);
    svg.push_str("</svg>\n");
    svg
}

/// Circles for enqueues, squares for dequeues; both about 4 px across.
fn marker(svg: &mut String, f: F, x: f64, y: f64) {
    if f == F::Dequeue {
        let _ = writeln!(svg, "<path d=\"M{:.1} {:.1}h4v4h-4z\"/>", x - 2.0, y - 2.0);
    } else {
        let _ = writeln!(svg, "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2\"/>");
    }
}

fn outcome_name(outcome: OpType) -> &'static str {
    match outcome {
        OpType::Invoke => "invoke",
        OpType::Ok => "ok",
        OpType::Fail => "fail",
        OpType::Info => "info",
    }
}

/// The throughput plot: acknowledged enqueues per second and dequeued messages per second,
/// counted by completion time in one-second buckets, as two polylines; fault windows shaded.
pub fn throughput_svg(history: &[Op]) -> String {
    let end_ns = history_end_ns(history);
    // One second, or wider when the run is long enough to need more than BUCKETS_MAX buckets.
    let bucket_ns = 1_000_000_000 * end_ns.div_ceil(1_000_000_000 * BUCKETS_MAX).max(1);
    let bucket_count = end_ns / bucket_ns + 1;
    let mut enqueued = vec![0usize; usize::try_from(bucket_count).unwrap_or(0)];
    let mut dequeued = enqueued.clone();
    for op in history.iter().filter(|op| op.ty == OpType::Ok) {
        let bucket = usize::try_from(op.time_ns / bucket_ns).ok();
        match op.f {
            F::Enqueue => {
                if let Some(count) = bucket.and_then(|b| enqueued.get_mut(b)) {
                    *count += 1;
                }
            }
            F::Dequeue => {
                if let Some(count) = bucket.and_then(|b| dequeued.get_mut(b)) {
                    *count += op.values.len();
                }
            }
            _ => {}
        }
    }
    let bucket_seconds = ns_to_ms(bucket_ns) / 1000.0;
    let peak = enqueued.iter().chain(&dequeued).copied().max().unwrap_or(0);
    // Counts are far below 2^53, so the conversion is exact.
    let rate_max = (peak as f64 / bucket_seconds).max(1.0);
    let step = nice_step(rate_max / 5.0);
    let axis_max = (rate_max / step).ceil() * step;

    let frame = Frame::new(history);
    let mut svg = String::new();
    let title = if bucket_ns > 1_000_000_000 {
        format!("Throughput ({bucket_seconds} s buckets)")
    } else {
        "Throughput (1 s buckets)".to_owned()
    };
    Frame::open(&mut svg, &title);
    frame.fault_windows(&mut svg, &fault_windows(history));
    for rate in ticks(axis_max, step) {
        Frame::y_tick(&mut svg, rate / axis_max, &tick_label(rate));
    }
    frame.axes(&mut svg, "per second");
    for (class, color, counts) in [
        ("enqueue-ok", GREEN, &enqueued),
        ("dequeued", BLUE, &dequeued),
    ] {
        let mut points = String::new();
        for (bucket, count) in (0u32..).zip(counts.iter()) {
            let x = frame.x(f64::from(bucket) * bucket_seconds);
            let y = Frame::y(*count as f64 / bucket_seconds / axis_max);
            let _ = write!(points, "{x:.1},{y:.1} ");
        }
        let _ = writeln!(
            svg,
            "<polyline class=\"{class}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" \
             points=\"{}\"/>",
            points.trim_end()
        );
    }
    let swatch = |color: &str| {
        format!("<line x1=\"0\" y1=\"0\" x2=\"8\" y2=\"0\" stroke=\"{color}\" stroke-width=\"2\"/>")
    };
    Frame::legend(
        &mut svg,
        &[
            (swatch(GREEN), "enqueues ok / s"),
            (swatch(BLUE), "messages dequeued / s"),
        ],
    );
    svg.push_str("</svg>\n");
    svg
}

/// A step of 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw.is_nan() || raw <= 0.0 || raw.is_infinite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// 0, step, 2·step, … up to `max` (with a little slack for rounding), at most 1 000 ticks.
fn ticks(max: f64, step: f64) -> Vec<f64> {
    (0u32..1_000)
        .map(|i| f64::from(i) * step)
        .take_while(|value| *value <= max * (1.0 + 1e-9))
        .collect()
}

/// Integers without a fraction, others with as few decimals as needed (0.1, 2.5).
fn tick_label(value: f64) -> String {
    if (value - value.round()).abs() < 1e-9 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Escapes text for SVG content and attribute values.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::history;
    use crate::history::OpType::{Fail, Info, Ok};

    fn sample() -> Vec<Op> {
        history()
            .enq("c0", 1, 0, 5, Ok)
            .fault("kill-leader", &["n0"], 1_000, 3_000)
            .enq("c1", 2, 1_100, 2_100, Info)
            .enq("c2", 3, 1_200, 1_250, Fail)
            .enq("c0", 4, 2_200, 2_450, Ok)
            .fault("partition-<a&b>", &["n1"], 4_000, 5_000)
            .deq("c3", &[1, 4], 5_500, 5_510)
            .drain(6_000, 7_000, Ok)
            .build()
    }

    fn assert_well_formed(svg: &str) {
        assert!(svg.starts_with("<svg "), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<svg").count(), 1);
        assert_eq!(svg.matches("<g").count(), svg.matches("</g>").count());
    }

    #[test]
    fn latency_plot_has_points_windows_and_legend() {
        let svg = latency_svg(&sample());
        assert_well_formed(&svg);
        assert_eq!(svg.matches("<rect class=\"fault-window\"").count(), 2);
        assert!(svg.contains(">kill-leader</text>"));
        assert!(svg.contains(">partition-&lt;a&amp;b&gt;</text>"));
        // Four completed enqueues as circles, one dequeue as a path, plus the legend's six.
        assert_eq!(svg.matches("<circle").count(), 4 + 3);
        assert_eq!(svg.matches("<path").count(), 1 + 3);
        assert!(svg.contains("<g class=\"enqueue fail\" fill=\"#d62728\">\n<circle"));
        assert!(svg.contains(">Enqueue and dequeue latency</text>"));
        assert!(svg.contains(">10000</text>") && svg.contains(">0.1</text>"));
    }

    #[test]
    fn latency_plot_subsamples_past_the_point_limit() {
        let mut builder = history();
        for value in 0..60_000u64 {
            builder = builder.enq(&format!("c{}", value % 8), value, value, value + 1, Ok);
        }
        let svg = latency_svg(&builder.build());
        assert_well_formed(&svg);
        assert!(svg.contains("(1 in 2 of 60000 points shown)"));
        assert_eq!(svg.matches("<circle").count(), 30_000 + 3);
    }

    #[test]
    fn throughput_plot_has_two_lines_and_windows() {
        let svg = throughput_svg(&sample());
        assert_well_formed(&svg);
        assert_eq!(svg.matches("<rect class=\"fault-window\"").count(), 2);
        assert_eq!(svg.matches("<polyline").count(), 2);
        // 7 s of history: buckets 0..=7, so eight points per line.
        let line = svg
            .lines()
            .find(|l| l.starts_with("<polyline class=\"dequeued\""))
            .unwrap();
        assert_eq!(line.matches(',').count(), 8);
    }

    #[test]
    fn empty_history_still_draws() {
        for svg in [latency_svg(&[]), throughput_svg(&[])] {
            assert_well_formed(&svg);
            assert!(!svg.contains("fault-window"));
            assert!(!svg.contains("NaN"));
        }
    }

    #[test]
    fn nice_steps_and_labels() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(31.0), 50.0);
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!(ticks(10.0, 2.0), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(tick_label(0.1), "0.1");
        assert_eq!(tick_label(10_000.0), "10000");
        assert_eq!(tick_label(2.5), "2.5");
    }
}
