//! `calls`: rooms of two doing a full negotiation (join, offer, answer, trickled
//! candidates each way, leave) started at a target rate of call set-ups per second.
//! Peer A sits on node `i`, peer B on node `i + 1`, so with two URLs every call
//! crosses the bus.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use vc_protocol::{ClientMessage, ServerMessage};

use super::open_loop::{drive, Counters, Plan};
use super::{
    candidate_stamp, fake_candidate, fake_sdp, join, leave_and_close, sdp_stamp, wait_peer_joined,
    Common, Ctx, Timing,
};
use crate::net::Client;
use crate::report::Output;

#[derive(Debug, Clone, clap::Args)]
pub struct CallsArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub timing: Timing,
    /// Call set-ups started per second (open loop).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    #[command(flatten)]
    pub shape: CallShape,
    /// Calls in progress at most; a call due while this many are running is
    /// counted as `skipped` (the node is overloaded), not delayed.
    #[arg(long, default_value_t = 5000)]
    pub max_in_flight: usize,
}

/// The messages of one negotiation.
#[derive(Debug, Clone, clap::Args)]
pub struct CallShape {
    /// ICE candidates trickled each way.
    #[arg(long, default_value_t = 10)]
    pub candidates: usize,
    /// Size of each SDP offer and answer, in bytes.
    #[arg(long, default_value_t = 2000)]
    pub sdp_bytes: usize,
}

/// Extras the `mixed` scenario adds to a call.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallExtras {
    /// Send final `report`s (outcome and candidate type picked from this number).
    pub reports: Option<usize>,
    /// `app-data` messages each way after the negotiation.
    pub app_data: usize,
}

pub const OUTCOMES: [&str; 2] = ["connected", "failed"];
pub const CANDIDATE_TYPES: [&str; 4] = ["host", "srflx", "prflx", "relay"];

/// One side's part of the negotiation, run concurrently with the other's.
async fn side(
    ctx: &Ctx,
    me: &mut Client,
    other: &str,
    offerer: bool,
    shape: &CallShape,
    started: Instant,
) -> anyhow::Result<Instant> {
    let send_sdp = |me: &Client, kind: &str| {
        let stamp = ctx.recorder.stamp(Instant::now());
        let sdp = fake_sdp(stamp, shape.sdp_bytes);
        let message = if kind == "offer" {
            ClientMessage::Offer {
                id: None,
                to: other.to_owned(),
                sdp,
            }
        } else {
            ClientMessage::Answer {
                id: None,
                to: other.to_owned(),
                sdp,
            }
        };
        me.tx.send(&message);
        for k in 0..shape.candidates {
            let stamp = ctx.recorder.stamp(Instant::now());
            me.tx.send(&ClientMessage::Candidate {
                id: None,
                to: other.to_owned(),
                candidate: fake_candidate(k, stamp),
            });
        }
    };
    if offerer {
        send_sdp(me, "offer");
    }
    let mut got_sdp = false;
    let mut got_candidates = 0;
    let deadline = tokio::time::Instant::now() + ctx.timeout;
    while !(got_sdp && got_candidates >= shape.candidates) {
        let (message, at) = tokio::time::timeout_at(
            deadline,
            me.expect(ctx.timeout, "negotiation", |m| match m {
                ServerMessage::Offer { .. }
                | ServerMessage::Answer { .. }
                | ServerMessage::Candidate { .. } => Some(m.clone()),
                _ => None,
            }),
        )
        .await
        .context("negotiation timed out")??;
        match message {
            ServerMessage::Offer { from, sdp } | ServerMessage::Answer { from, sdp }
                if from == other =>
            {
                got_sdp = true;
                if let Some(stamp) = sdp_stamp(&sdp) {
                    let sent = ctx.recorder.unstamp(stamp);
                    ctx.recorder.latency(
                        "first-message",
                        started,
                        at.saturating_duration_since(sent),
                    );
                }
                if !offerer {
                    send_sdp(me, "answer");
                }
            }
            ServerMessage::Candidate { from, candidate } if from == other => {
                got_candidates += 1;
                if let Some(stamp) = candidate_stamp(&candidate) {
                    let sent = ctx.recorder.unstamp(stamp);
                    ctx.recorder
                        .latency("candidate", started, at.saturating_duration_since(sent));
                }
            }
            other => bail!("unexpected {} during negotiation", other.type_name()),
        }
    }
    Ok(Instant::now())
}

/// A final report as a browser would send it when a call ends.
pub fn final_report(pick: usize, ice_ms: f64) -> String {
    json!({
        "type": "report",
        "report": {
            "final": true,
            "iceConnectedMs": ice_ms.clamp(0.0, 3_600_000.0),
            "outcome": OUTCOMES[pick % OUTCOMES.len()],
            "candidateType": CANDIDATE_TYPES[(pick / OUTCOMES.len()) % CANDIDATE_TYPES.len()],
            "rttMs": 0.2 + (pick % 7) as f64 * 0.3,
        }
    })
    .to_string()
}

/// Runs call `i`, due at `scheduled`: connect both, join, negotiate, leave.
pub async fn run_call(
    ctx: &Ctx,
    i: usize,
    scheduled: Instant,
    shape: &CallShape,
    extras: CallExtras,
) -> anyhow::Result<()> {
    let room = format!("call-{}-{i}", ctx.run_id);
    let (a, b) = tokio::join!(ctx.open(i, scheduled), ctx.open(i + 1, scheduled));
    let (mut a, mut b) = (a.context("connect a")?, b.context("connect b")?);
    let ja = join(ctx, &mut a, &room, "caller", scheduled)
        .await
        .context("join a")?;
    let announce = Instant::now();
    let jb = join(ctx, &mut b, &room, "callee", scheduled)
        .await
        .context("join b")?;
    if jb.members != [ja.peer.clone()] {
        bail!(
            "callee saw members {:?}, expected [{}]",
            jb.members,
            ja.peer
        );
    }
    let (seen, at) = wait_peer_joined(ctx, &mut a).await?;
    if seen != jb.peer {
        bail!("caller saw {seen} join, expected {}", jb.peer);
    }
    ctx.recorder.latency(
        "peer-joined",
        scheduled,
        at.saturating_duration_since(announce),
    );
    let negotiation = Instant::now();
    let (done_a, done_b) = tokio::join!(
        side(ctx, &mut a, &jb.peer, true, shape, scheduled),
        side(ctx, &mut b, &ja.peer, false, shape, scheduled),
    );
    let done = done_a.context("caller")?.max(done_b.context("callee")?);
    ctx.recorder
        .latency("negotiation", scheduled, done - negotiation);
    ctx.recorder.latency(
        "call-setup",
        scheduled,
        done.saturating_duration_since(scheduled),
    );
    for n in 0..extras.app_data {
        let stamp = ctx.recorder.stamp(Instant::now());
        for (from, to) in [(&a, &jb.peer), (&b, &ja.peer)] {
            from.tx.send(&ClientMessage::AppData {
                id: None,
                to: to.clone(),
                data: json!({"audio": n % 2 == 0, "video": true, "t": stamp}),
            });
        }
    }
    for _ in 0..extras.app_data {
        for client in [&mut a, &mut b] {
            client
                .expect(ctx.timeout, "app-data", |m| {
                    matches!(m, ServerMessage::AppData { .. }).then_some(())
                })
                .await?;
        }
    }
    if let Some(pick) = extras.reports {
        let ice_ms = (done - negotiation).as_secs_f64() * 1000.0;
        a.tx.send_json(&final_report(pick, ice_ms));
        b.tx.send_json(&final_report(pick + 1, ice_ms));
    }
    let (la, lb) = tokio::join!(
        leave_and_close(ctx, &mut a, scheduled),
        leave_and_close(ctx, &mut b, scheduled)
    );
    la.context("leave a")?;
    lb.context("leave b")?;
    Ok(())
}

pub async fn run(args: CallsArgs, out: &Output) -> anyhow::Result<serde_json::Value> {
    if !crate::rate::valid_rate(args.rate) {
        bail!("--rate must be positive");
    }
    let expected = (args.rate * args.timing.cap().as_secs_f64()) as usize;
    let ctx = Arc::new(Ctx::new(
        &args.common,
        (expected * 2).min(args.max_in_flight * 2),
        "call-setup",
    )?);
    let plan = Plan {
        rate: args.rate,
        timing: &args.timing,
        max_in_flight: args.max_in_flight,
        grace: args.common.timeout * 3 + Duration::from_secs(2),
        counters: Counters {
            started: "calls_started",
            skipped: "calls_skipped",
            ok: "calls_ok",
            failed: "calls_failed",
            warmup_ok: Some("warmup_calls_ok"),
            warmup_failed: "warmup_calls_failed",
        },
    };
    let shape = Arc::new(args.shape.clone());
    let outcome = drive(&ctx, &plan, out.quiet, |ctx, k, due| {
        let shape = Arc::clone(&shape);
        async move { run_call(&ctx, k as usize, due, &shape, CallExtras::default()).await }
    })
    .await;
    let mut report = outcome.report(&ctx, "calls", &plan);
    report["series_phase"] = json!("call-setup");
    report["calls_scheduled_total"] = json!(outcome.scheduled);
    report["candidates_each_way"] = json!(args.shape.candidates);
    crate::report::finish(&ctx.recorder, report, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_cover_every_outcome_and_candidate_type() {
        let mut seen = std::collections::HashSet::new();
        for pick in 0..OUTCOMES.len() * CANDIDATE_TYPES.len() {
            let v: serde_json::Value =
                serde_json::from_str(&final_report(pick, 12.0)).expect("json");
            let msg: ClientMessage =
                serde_json::from_value(v.clone()).expect("a valid client message");
            assert!(matches!(msg, ClientMessage::Report { .. }));
            seen.insert((
                v["report"]["outcome"].as_str().expect("outcome").to_owned(),
                v["report"]["candidateType"]
                    .as_str()
                    .expect("type")
                    .to_owned(),
            ));
        }
        assert_eq!(seen.len(), 8);
    }
}
