//! `churn`: sessions that connect, join, leave and close, started at a rate.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use tokio::task::JoinSet;

use super::{join, leave_and_close, short, Common, Ctx, Progress, Timing};
use crate::rate::{Schedule, Ticker};
use crate::report::Output;
use crate::stats::{per_second, ratio};

#[derive(Debug, Clone, clap::Args)]
pub struct ChurnArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub timing: Timing,
    /// Connect-join-leave cycles started per second (open loop).
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Rooms the cycles are spread over (0: a room of its own for each).
    #[arg(long, default_value_t = 0)]
    pub rooms: usize,
    /// Cycles in progress at most; more are counted as `skipped`.
    #[arg(long, default_value_t = 5000)]
    pub max_in_flight: usize,
}

async fn cycle(ctx: &Ctx, i: usize, rooms: usize, scheduled: Instant) -> anyhow::Result<()> {
    let room = if rooms == 0 {
        format!("churn-{}-{i}", ctx.run_id)
    } else {
        format!("churn-{}-{}", ctx.run_id, i % rooms)
    };
    let mut client = ctx.open(i, scheduled).await.context("connect")?;
    join(ctx, &mut client, &room, "churner", scheduled).await?;
    leave_and_close(ctx, &mut client, scheduled).await?;
    ctx.recorder
        .latency("cycle", scheduled, scheduled.elapsed());
    Ok(())
}

pub async fn run(args: ChurnArgs, out: &Output) -> anyhow::Result<serde_json::Value> {
    if !crate::rate::valid_rate(args.rate) {
        bail!("--rate must be positive");
    }
    let ctx = Ctx::new(&args.common, args.max_in_flight, "cycle")?;
    let start = Instant::now() + Duration::from_millis(50);
    let window = start + args.timing.warmup;
    ctx.recorder.measure_from(window);
    let schedule = Schedule::new(start, args.rate, args.timing.cap());
    let progress = Progress::start(
        args.timing.cap().as_secs(),
        "s",
        Arc::clone(&ctx.recorder),
        out.quiet,
        Some(start),
    );
    let mut ticker = Ticker::new(schedule);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let failures: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let mut tasks = JoinSet::new();
    while let Some((k, due)) = ticker.tick().await {
        let measured = due >= window;
        if in_flight.load(Ordering::Relaxed) >= args.max_in_flight {
            if measured {
                ctx.recorder.count("cycles_skipped", 1);
            }
            continue;
        }
        if measured {
            ctx.recorder.count("cycles_started", 1);
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (ctx, in_flight, failures, rooms) = (
            Arc::clone(&ctx),
            Arc::clone(&in_flight),
            Arc::clone(&failures),
            args.rooms,
        );
        tasks.spawn(async move {
            let result = cycle(&ctx, k as usize, rooms, due).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            match result {
                Ok(()) if measured => ctx.recorder.count("cycles_ok", 1),
                Ok(()) => {}
                Err(e) => {
                    ctx.recorder.count("cycles_failed", 1);
                    *failures
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(short(&e))
                        .or_insert(0) += 1;
                }
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    tokio::time::timeout(args.common.timeout * 3, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .ok();
    tasks.abort_all();
    drop(progress);
    let r = &ctx.recorder;
    let ok = r.get("cycles_ok");
    let mut report = ctx.base_report("churn");
    report["series_phase"] = json!("cycle");
    report["target_rate_per_s"] = json!(args.rate);
    report["warmup_seconds"] = json!(args.timing.warmup.as_secs_f64());
    report["duration_seconds"] = json!(args.timing.duration.as_secs_f64());
    report["cycles_started"] = json!(r.get("cycles_started"));
    report["cycles_ok"] = json!(ok);
    report["cycles_failed"] = json!(r.get("cycles_failed"));
    report["cycles_skipped"] = json!(r.get("cycles_skipped"));
    report["achieved_rate_per_s"] = json!(per_second(ok, args.timing.duration));
    report["achieved_fraction"] = json!(ratio(per_second(ok, args.timing.duration), args.rate));
    report["failures"] = json!(*failures.lock().unwrap_or_else(|p| p.into_inner()));
    crate::report::finish(r, report, out)
}
