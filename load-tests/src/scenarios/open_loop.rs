//! The open-loop driver the rate scenarios share: jobs start on a fixed schedule
//! whatever the replies do, so latency under load is honest; a job that would
//! exceed the in-flight cap is skipped and counted, never delayed.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::task::JoinSet;

use super::{short, Ctx, Progress, Timing};
use crate::rate::{Schedule, Ticker};
use crate::stats::{per_second, ratio};

/// The recorder counters a scenario keeps, named for its unit (calls, rooms…).
/// The warm-up names may equal the measured ones to count both together.
pub struct Counters {
    pub started: &'static str,
    pub skipped: &'static str,
    pub ok: &'static str,
    pub failed: &'static str,
    pub warmup_ok: Option<&'static str>,
    pub warmup_failed: &'static str,
}

pub struct Plan<'a> {
    pub rate: f64,
    pub timing: &'a Timing,
    pub max_in_flight: usize,
    /// How long to wait for jobs still running when the schedule ends.
    pub grace: Duration,
    pub counters: Counters,
}

pub struct Outcome {
    pub scheduled: u64,
    pub lag_max: Duration,
    pub failures: BTreeMap<String, u64>,
}

/// Runs `job(ctx, k, due)` for the k-th scheduled slot until the schedule ends.
pub async fn drive<F, Fut>(ctx: &Arc<Ctx>, plan: &Plan<'_>, quiet: bool, job: F) -> Outcome
where
    F: Fn(Arc<Ctx>, u64, Instant) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let names = &plan.counters;
    let start = Instant::now() + Duration::from_millis(50);
    let window = start + plan.timing.warmup;
    ctx.recorder.measure_from(window);
    let schedule = Schedule::new(start, plan.rate, plan.timing.cap());
    let scheduled = schedule.total();
    let progress = Progress::start(
        plan.timing.cap().as_secs(),
        "s",
        Arc::clone(&ctx.recorder),
        quiet,
        Some(start),
    );
    let mut ticker = Ticker::new(schedule);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let failures: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let mut tasks = JoinSet::new();
    let mut lag_max = Duration::ZERO;
    while let Some((k, due)) = ticker.tick().await {
        lag_max = lag_max.max(due.elapsed());
        let measured = due >= window;
        if in_flight.load(Ordering::Relaxed) >= plan.max_in_flight {
            if measured {
                ctx.recorder.count(names.skipped, 1);
            }
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        if measured {
            ctx.recorder.count(names.started, 1);
        }
        let (ok, warmup_ok, failed) = if measured {
            (Some(names.ok), None, names.failed)
        } else {
            (None, names.warmup_ok, names.warmup_failed)
        };
        let work = job(Arc::clone(ctx), k, due);
        let (ctx, in_flight, failures) = (
            Arc::clone(ctx),
            Arc::clone(&in_flight),
            Arc::clone(&failures),
        );
        tasks.spawn(async move {
            let result = work.await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            match result {
                Ok(()) => {
                    if let Some(name) = ok.or(warmup_ok) {
                        ctx.recorder.count(name, 1);
                    }
                }
                Err(e) => {
                    ctx.recorder.count(failed, 1);
                    *failures
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(short(&e))
                        .or_insert(0) += 1;
                }
            }
            ctx.recorder.progress(1);
        });
        // Reap finished jobs as we go so that the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    tokio::time::timeout(plan.grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .ok();
    tasks.abort_all();
    drop(progress);
    let failures = failures.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Outcome {
        scheduled,
        lag_max,
        failures,
    }
}

impl Outcome {
    /// The report fields every rate scenario shares.
    pub fn report(&self, ctx: &Ctx, scenario: &str, plan: &Plan<'_>) -> Value {
        let (r, names) = (&ctx.recorder, &plan.counters);
        let ok = r.get(names.ok);
        let mut failed = r.get(names.failed);
        if names.warmup_failed != names.failed {
            failed += r.get(names.warmup_failed);
        }
        let achieved = per_second(ok, plan.timing.duration);
        let mut report = ctx.base_report(scenario);
        report["target_rate_per_s"] = json!(plan.rate);
        report["warmup_seconds"] = json!(plan.timing.warmup.as_secs_f64());
        report["duration_seconds"] = json!(plan.timing.duration.as_secs_f64());
        report[names.started] = json!(r.get(names.started));
        report[names.ok] = json!(ok);
        report[names.failed] = json!(failed);
        report[names.skipped] = json!(r.get(names.skipped));
        report["achieved_rate_per_s"] = json!(achieved);
        report["achieved_fraction"] = json!(ratio(achieved, plan.rate));
        report["generator_max_lag_ms"] = json!(self.lag_max.as_secs_f64() * 1000.0);
        report["failures"] = json!(self.failures);
        report
    }
}
