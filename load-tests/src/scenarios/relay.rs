//! `relay`: steady targeted messages at a total rate between the two peers of
//! many rooms (one peer on node `i`, the other on node `i + 1`): throughput and
//! delivery latency. Each message carries the time it was *due*, so a sender
//! that falls behind shows up as latency, not as a lower rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;
use vc_protocol::ServerMessage;

use super::{
    candidate_stamp, join, leave_and_close, short, wait_peer_joined, Common, Ctx, Progress, Timing,
};
use crate::net::{Client, Tx};
use crate::rate::{Schedule, Ticker};
use crate::report::Output;
use crate::stats::{per_second, ratio};

#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub timing: Timing,
    /// Rooms of two; both peers send, so there are twice as many senders.
    #[arg(long, default_value_t = 50)]
    pub pairs: usize,
    /// Messages per second, all senders together (open loop).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Approximate size of each message's JSON text, in bytes.
    #[arg(long, default_value_t = 200)]
    pub payload_bytes: usize,
    /// How long to wait for messages in flight after the last one is due.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
    /// Rooms being set up at once.
    #[arg(long, default_value_t = 100)]
    pub concurrency: usize,
}

/// A candidate frame with a `t` stamp, padded to about `bytes`.
pub fn relay_frame(to: &str, stamp: u64, seq: u64, bytes: usize) -> String {
    let head = format!(
        r#"{{"type":"candidate","to":"{to}","candidate":{{"candidate":"candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host","sdpMid":"0","sdpMLineIndex":0,"t":{stamp},"s":{seq},"p":""#
    );
    let pad = bytes.saturating_sub(head.len() + 3);
    format!("{head}{}\"}}}}", "x".repeat(pad))
}

struct Pair {
    a: Client,
    b: Client,
    a_id: String,
    b_id: String,
}

async fn set_up(ctx: &Ctx, i: usize) -> anyhow::Result<Pair> {
    let t = Instant::now();
    let room = format!("relay-{}-{i}", ctx.run_id);
    let mut a = ctx.open(i, t).await.context("connect a")?;
    let mut b = ctx.open(i + 1, t).await.context("connect b")?;
    let ja = join(ctx, &mut a, &room, "sender-a", t).await?;
    let jb = join(ctx, &mut b, &room, "sender-b", t).await?;
    wait_peer_joined(ctx, &mut a).await?;
    Ok(Pair {
        a,
        b,
        a_id: ja.peer,
        b_id: jb.peer,
    })
}

/// Sends on `schedule` until it ends, counting the messages due in the window.
async fn send_loop(
    ctx: Arc<Ctx>,
    tx: Tx,
    to: String,
    schedule: Schedule,
    bytes: usize,
    window: Instant,
) {
    let mut ticker = Ticker::new(schedule);
    let (mut sent, mut all, mut lag_max) = (0u64, 0u64, Duration::ZERO);
    while let Some((k, due)) = ticker.tick().await {
        let stamp = ctx.recorder.stamp(due);
        if !tx.send_json(&relay_frame(&to, stamp, k, bytes)) {
            break;
        }
        all += 1;
        // Judged on the stamp, as the receiver will judge it.
        if ctx.recorder.unstamp(stamp) >= window {
            sent += 1;
            lag_max = lag_max.max(due.elapsed());
        }
    }
    ctx.recorder.count("sent", sent);
    ctx.recorder.count("sent_including_warmup", all);
    ctx.recorder
        .latency_always("send-lag", lag_max.max(Duration::from_micros(1)));
}

/// Reads relayed messages until told to stop, then leaves and closes.
async fn receive_loop(ctx: Arc<Ctx>, mut client: Client, mut stop: watch::Receiver<bool>) {
    let (mut received, mut late) = (0u64, 0u64);
    let window = ctx.recorder.window_start();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            incoming = client.rx.recv() => match incoming {
                Some(crate::net::Incoming::Message(ServerMessage::Candidate { candidate, .. }, at)) => {
                    if let Some(stamp) = candidate_stamp(&candidate) {
                        let due = ctx.recorder.unstamp(stamp);
                        if due >= window {
                            received += 1;
                            ctx.recorder.latency("relay", due, at.saturating_duration_since(due));
                        } else {
                            late += 1;
                        }
                        ctx.recorder.progress(1);
                    }
                }
                Some(crate::net::Incoming::Message(_, _)) => {}
                Some(crate::net::Incoming::Closed(code)) => {
                    let code = code.map(|c| c.to_string()).unwrap_or_else(|| "none".into());
                    ctx.recorder.error(&format!("socket-closed-{code}"));
                    break;
                }
                None => break,
            }
        }
    }
    ctx.recorder.count("received", received);
    ctx.recorder.count("warmup_received", late);
    leave_and_close(&ctx, &mut client, Instant::now())
        .await
        .ok();
}

pub async fn run(args: RelayArgs, out: &Output) -> anyhow::Result<serde_json::Value> {
    if !crate::rate::valid_rate(args.rate) || args.pairs == 0 {
        bail!("--rate and --pairs must be positive");
    }
    let ctx = Ctx::new(&args.common, args.pairs * 2, "relay")?;
    // Set up every room first (not measured against the window).
    let setup = Instant::now();
    let mut tasks = JoinSet::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
    for i in 0..args.pairs {
        let (ctx, gate) = (Arc::clone(&ctx), Arc::clone(&gate));
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            (i, set_up(&ctx, i).await)
        });
    }
    let mut pairs = Vec::with_capacity(args.pairs);
    let mut setup_failed = 0;
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((_, Ok(pair))) => pairs.push(pair),
            Ok((_, Err(e))) => {
                setup_failed += 1;
                first_error.get_or_insert(short(&e));
            }
            Err(e) => {
                setup_failed += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let setup_seconds = setup.elapsed().as_secs_f64();
    if pairs.is_empty() {
        bail!(
            "no room could be set up: {}",
            first_error.unwrap_or_default()
        );
    }
    // Then the steady part: every peer sends to the other on its own schedule.
    let start = Instant::now() + Duration::from_millis(100);
    let window = start + args.timing.warmup;
    ctx.recorder.measure_from(window);
    let length = args.timing.cap();
    let senders = pairs.len() * 2;
    let progress = Progress::start(
        length.as_secs(),
        "s",
        Arc::clone(&ctx.recorder),
        out.quiet,
        Some(start),
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut senders_set = JoinSet::new();
    let mut receivers = JoinSet::new();
    for (n, pair) in pairs.into_iter().enumerate() {
        for (j, (tx, to)) in [
            (pair.a.tx.clone(), pair.b_id.clone()),
            (pair.b.tx.clone(), pair.a_id.clone()),
        ]
        .into_iter()
        .enumerate()
        {
            let schedule = Schedule::split(start, args.rate, senders, n * 2 + j, length);
            senders_set.spawn(send_loop(
                Arc::clone(&ctx),
                tx,
                to,
                schedule,
                args.payload_bytes,
                window,
            ));
        }
        receivers.spawn(receive_loop(Arc::clone(&ctx), pair.a, stop_rx.clone()));
        receivers.spawn(receive_loop(Arc::clone(&ctx), pair.b, stop_rx.clone()));
    }
    while senders_set.join_next().await.is_some() {}
    let sent = ctx.recorder.get("sent");
    // Wait for the stragglers, but no longer than the drain time.
    let everything = ctx.recorder.get("sent_including_warmup");
    let drain_until = Instant::now() + args.drain;
    while Instant::now() < drain_until && ctx.recorder.live().0 < everything {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_tx.send(true).ok();
    tokio::time::timeout(args.common.timeout + Duration::from_secs(2), async {
        while receivers.join_next().await.is_some() {}
    })
    .await
    .ok();
    drop(progress);
    let r = &ctx.recorder;
    let received = r.get("received");
    let mut report = ctx.base_report("relay");
    report["series_phase"] = json!("relay");
    report["pairs"] = json!(args.pairs);
    report["pairs_failed"] = json!(setup_failed);
    report["setup_seconds"] = json!(setup_seconds);
    report["target_rate_per_s"] = json!(args.rate);
    report["warmup_seconds"] = json!(args.timing.warmup.as_secs_f64());
    report["duration_seconds"] = json!(args.timing.duration.as_secs_f64());
    report["payload_bytes"] = json!(args.payload_bytes);
    report["sent"] = json!(sent);
    report["received"] = json!(received);
    report["lost"] = json!(sent.saturating_sub(received));
    report["delivered_fraction"] = json!(ratio(received as f64, sent as f64));
    report["throughput_per_s"] = json!(per_second(received, args.timing.duration));
    report["achieved_fraction"] =
        json!(ratio(per_second(received, args.timing.duration), args.rate));
    if let Some(e) = first_error {
        report["first_error"] = json!(e);
    }
    crate::report::finish(r, report, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_frames_are_valid_candidates_of_about_the_asked_size() {
        let text = relay_frame("abcdef0123456789", 777, 5, 200);
        assert!((195..=205).contains(&text.len()), "{}", text.len());
        let msg = vc_protocol::parse_client_message(&text).expect("valid");
        match msg {
            vc_protocol::ClientMessage::Candidate { to, candidate, .. } => {
                assert_eq!(to, "abcdef0123456789");
                assert_eq!(candidate_stamp(&candidate), Some(777));
                assert_eq!(candidate["s"], 5);
            }
            other => panic!("not a candidate: {other:?}"),
        }
        // Smaller than the bare frame: no padding, still valid.
        assert!(vc_protocol::parse_client_message(&relay_frame("p", 1, 1, 10)).is_ok());
    }
}
