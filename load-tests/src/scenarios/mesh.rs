//! `mesh`: rooms of k peers, each negotiating with every other (the peer with the
//! smaller id offers), started at a rate of rooms per second. Peer `j` of a room
//! sits on node `j`, so a room spans every given node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use futures_util::future::join_all;
use serde_json::json;
use vc_protocol::{ClientMessage, ServerMessage};

use super::calls::CallShape;
use super::open_loop::{drive, Counters, Plan};
use super::{
    candidate_stamp, fake_candidate, fake_sdp, join, leave_and_close, sdp_stamp, Common, Ctx,
    Timing,
};
use crate::net::Client;
use crate::report::Output;

#[derive(Debug, Clone, clap::Args)]
pub struct MeshArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub timing: Timing,
    /// Rooms started per second (open loop).
    #[arg(long, default_value_t = 2.0)]
    pub rate: f64,
    /// Peers per room (at most the node's `rooms.capacity`, 8 by default).
    #[arg(long, default_value_t = 4)]
    pub room_size: usize,
    #[command(flatten)]
    pub shape: CallShape,
    /// Rooms in progress at most; more are counted as `skipped`.
    #[arg(long, default_value_t = 1000)]
    pub max_in_flight: usize,
}

#[derive(Default)]
struct FromPeer {
    sdp: bool,
    candidates: usize,
}

fn send_sdp(ctx: &Ctx, me: &Client, to: &str, offer: bool, shape: &CallShape) {
    let sdp = fake_sdp(ctx.recorder.stamp(Instant::now()), shape.sdp_bytes);
    me.tx.send(&if offer {
        ClientMessage::Offer {
            id: None,
            to: to.to_owned(),
            sdp,
        }
    } else {
        ClientMessage::Answer {
            id: None,
            to: to.to_owned(),
            sdp,
        }
    });
    for k in 0..shape.candidates {
        me.tx.send(&ClientMessage::Candidate {
            id: None,
            to: to.to_owned(),
            candidate: fake_candidate(k, ctx.recorder.stamp(Instant::now())),
        });
    }
}

/// One peer: learn the room, offer to every peer with a larger id, answer the
/// others, until an SDP and every candidate came from each other peer.
async fn peer(
    ctx: &Ctx,
    me: &mut Client,
    my_id: &str,
    mut known: Vec<String>,
    k: usize,
    shape: &CallShape,
    scheduled: Instant,
) -> anyhow::Result<Instant> {
    let deadline = tokio::time::Instant::now() + ctx.timeout * 2;
    let mut from: HashMap<String, FromPeer> = HashMap::new();
    let mut offered = Vec::new();
    let complete = |from: &HashMap<String, FromPeer>| {
        from.len() == k - 1
            && from
                .values()
                .all(|f| f.sdp && f.candidates >= shape.candidates)
    };
    loop {
        for other in &known {
            if my_id < other.as_str() && !offered.contains(other) {
                send_sdp(ctx, me, other, true, shape);
                offered.push(other.clone());
            }
        }
        if complete(&from) {
            return Ok(Instant::now());
        }
        let (message, at) = tokio::time::timeout_at(
            deadline,
            me.expect(ctx.timeout * 2, "mesh negotiation", |m| match m {
                ServerMessage::PeerJoined { .. }
                | ServerMessage::Offer { .. }
                | ServerMessage::Answer { .. }
                | ServerMessage::Candidate { .. } => Some(m.clone()),
                _ => None,
            }),
        )
        .await
        .context("mesh negotiation timed out")??;
        match message {
            ServerMessage::PeerJoined { peer } => known.push(peer.id),
            ServerMessage::Offer { from: f, sdp } | ServerMessage::Answer { from: f, sdp } => {
                if let Some(stamp) = sdp_stamp(&sdp) {
                    ctx.recorder.latency(
                        "first-message",
                        scheduled,
                        at.saturating_duration_since(ctx.recorder.unstamp(stamp)),
                    );
                }
                let is_offer = f.as_str() < my_id;
                from.entry(f.clone()).or_default().sdp = true;
                if is_offer {
                    send_sdp(ctx, me, &f, false, shape);
                }
            }
            ServerMessage::Candidate { from: f, candidate } => {
                if let Some(stamp) = candidate_stamp(&candidate) {
                    ctx.recorder.latency(
                        "candidate",
                        scheduled,
                        at.saturating_duration_since(ctx.recorder.unstamp(stamp)),
                    );
                }
                from.entry(f).or_default().candidates += 1;
            }
            _ => {}
        }
    }
}

async fn room(
    ctx: &Ctx,
    i: usize,
    k: usize,
    shape: &CallShape,
    scheduled: Instant,
) -> anyhow::Result<()> {
    let name = format!("mesh-{}-{i}", ctx.run_id);
    let opened = join_all((0..k).map(|j| ctx.open(j, scheduled))).await;
    let mut clients = Vec::with_capacity(k);
    for c in opened {
        clients.push(c.context("connect")?);
    }
    let mut ids = Vec::with_capacity(k);
    let mut members = Vec::with_capacity(k);
    for (j, c) in clients.iter_mut().enumerate() {
        let joined = join(ctx, c, &name, &format!("peer-{j}"), scheduled).await?;
        ids.push(joined.peer);
        members.push(joined.members);
    }
    let negotiation = Instant::now();
    let results = join_all(
        clients
            .iter_mut()
            .zip(ids.iter().zip(members))
            .map(|(c, (id, known))| peer(ctx, c, id, known, k, shape, scheduled)),
    )
    .await;
    let mut done = negotiation;
    for r in results {
        done = done.max(r?);
    }
    ctx.recorder
        .latency("negotiation", scheduled, done - negotiation);
    ctx.recorder.latency(
        "room-setup",
        scheduled,
        done.saturating_duration_since(scheduled),
    );
    for c in clients.iter_mut() {
        leave_and_close(ctx, c, scheduled).await?;
    }
    Ok(())
}

pub async fn run(args: MeshArgs, out: &Output) -> anyhow::Result<serde_json::Value> {
    if !crate::rate::valid_rate(args.rate) || args.room_size < 2 {
        bail!("--rate must be positive and --room-size at least 2");
    }
    let ctx = Arc::new(Ctx::new(
        &args.common,
        args.max_in_flight * args.room_size,
        "room-setup",
    )?);
    let plan = Plan {
        rate: args.rate,
        timing: &args.timing,
        max_in_flight: args.max_in_flight,
        grace: args.common.timeout * 4,
        counters: Counters {
            started: "rooms_started",
            skipped: "rooms_skipped",
            ok: "rooms_ok",
            failed: "rooms_failed",
            warmup_ok: None,
            warmup_failed: "rooms_failed",
        },
    };
    let (shape, size) = (Arc::new(args.shape.clone()), args.room_size);
    let outcome = drive(&ctx, &plan, out.quiet, |ctx, n, due| {
        let shape = Arc::clone(&shape);
        async move { room(&ctx, n as usize, size, &shape, due).await }
    })
    .await;
    let mut report = outcome.report(&ctx, "mesh", &plan);
    report["series_phase"] = json!("room-setup");
    report["room_size"] = json!(args.room_size);
    crate::report::finish(&ctx.recorder, report, out)
}
