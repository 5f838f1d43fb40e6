//! `churn`: sessions that connect, join, leave and close, started at a rate.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use serde_json::json;

use super::open_loop::{drive, Counters, Plan};
use super::{join, leave_and_close, Common, Ctx, Timing};
use crate::report::Output;

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
    let ctx = Arc::new(Ctx::new(&args.common, args.max_in_flight, "cycle")?);
    let plan = Plan {
        rate: args.rate,
        timing: &args.timing,
        max_in_flight: args.max_in_flight,
        grace: args.common.timeout * 3,
        counters: Counters {
            started: "cycles_started",
            skipped: "cycles_skipped",
            ok: "cycles_ok",
            failed: "cycles_failed",
            warmup_ok: None,
            warmup_failed: "cycles_failed",
        },
    };
    let rooms = args.rooms;
    let outcome = drive(&ctx, &plan, out.quiet, |ctx, k, due| async move {
        cycle(&ctx, k as usize, rooms, due).await
    })
    .await;
    let mut report = outcome.report(&ctx, "churn", &plan);
    report["series_phase"] = json!("cycle");
    crate::report::finish(&ctx.recorder, report, out)
}
