//! The progress bar, the RSS sampler and the `--duration` deadline.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::Common;
use crate::plan::{Plan, Shared};
use crate::procfs::BrokerWatch;

/// Progress bar and RSS sampling period.
pub(crate) const TICK: Duration = Duration::from_millis(250);

/// Draws the progress bar and samples broker RSS until the run stops.
pub(crate) fn spawn_ticker(
    shared: Arc<Shared>,
    watch: Arc<BrokerWatch>,
    bar: ProgressBar,
    unit: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut stop = shared.stop.subscribe();
        let mut last = (Instant::now(), shared.ok_all.load(Ordering::Relaxed));
        let mut rate = 0.0;
        loop {
            let timer = tokio::time::sleep(TICK);
            tokio::select! {
                _ = timer => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let now = Instant::now();
            if now >= shared.plan.measure_from {
                watch.sample_rss();
            }
            let ok_all = shared.ok_all.load(Ordering::Relaxed);
            let dt = now.duration_since(last.0).as_secs_f64();
            if dt >= 1.0 {
                #[allow(clippy::cast_precision_loss)]
                let delta = (ok_all - last.1) as f64;
                rate = delta / dt;
                last = (now, ok_all);
            }
            let phase = if now < shared.plan.measure_from {
                "warmup "
            } else {
                ""
            };
            let (ok, failed) = (
                shared.ok.load(Ordering::Relaxed),
                shared.failed.load(Ordering::Relaxed),
            );
            bar.set_message(format!(
                "{phase}{rate:>9.0} {unit}/s  ok {ok}  errors {failed}"
            ));
            match shared.plan.count {
                Some(_) if shared.plan.duration.is_none() => bar.set_position(ok + failed),
                _ => bar.set_position(
                    u64::try_from(now.duration_since(shared.plan.started).as_millis())
                        .unwrap_or(u64::MAX),
                ),
            }
        }
        bar.finish_and_clear();
    })
}

pub(crate) fn progress_bar(common: &Common, plan: &Plan) -> ProgressBar {
    let (len, template) = match (plan.count, plan.duration) {
        (Some(count), None) => (
            count,
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
        ),
        _ => (
            u64::try_from((plan.warmup + plan.duration.unwrap_or_default()).as_millis())
                .unwrap_or(u64::MAX),
            "{spinner} [{elapsed_precise}] {bar:30} {msg}",
        ),
    };
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    if !common.json && std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
    }
    bar
}

/// Stops the run when `--duration` is over, even if every worker is waiting on a slow call.
pub(crate) fn spawn_deadline(shared: Arc<Shared>) {
    if let Some(stop_at) = shared.plan.stop_at {
        tokio::spawn(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(stop_at)).await;
            shared.signal_stop();
        });
    }
}
