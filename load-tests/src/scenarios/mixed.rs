//! `mixed`: a bit of everything, so that every metric of the node moves: calls
//! across nodes with app-data and final reports (every outcome, every candidate
//! type), invalid frames (bad JSON, unknown type, relays before join, to unknown
//! peers, a binary frame, an implausible report), a burst over the rate limit on
//! a throwaway session, and a dropped socket resumed on another URL. The errors it
//! provokes are expected and do not fail the run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;
use tokio::task::JoinSet;
use vc_protocol::{ClientMessage, ErrorCode, RequestId, ServerMessage, PROTOCOL_VERSION};

use super::calls::{run_call, CallExtras, CallShape, CANDIDATE_TYPES, OUTCOMES};
use super::{join, leave_and_close, short, wait_peer_joined, Common, Ctx, Progress};
use crate::net::{Client, Command};
use crate::rate::{Schedule, Ticker};
use crate::report::Output;

#[derive(Debug, Clone, clap::Args)]
pub struct MixedArgs {
    #[command(flatten)]
    pub common: Common,
    /// How long to run.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Calls started per second.
    #[arg(long, default_value_t = 4.0)]
    pub rate: f64,
    /// How often the error, rate-limit and resume exercises repeat (at least once).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub period: Duration,
    /// Messages in the burst meant to exceed the node's rate limit
    /// (`limits.message_burst`, 200 by default).
    #[arg(long, default_value_t = 400)]
    pub burst: usize,
}

/// Waits for an error with `code`, skipping other messages.
async fn expect_error(ctx: &Ctx, client: &mut Client, code: ErrorCode) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + ctx.timeout;
    loop {
        match tokio::time::timeout_at(deadline, client.rx.recv()).await {
            Ok(Some(crate::net::Incoming::Message(ServerMessage::Error { code: c, .. }, _)))
                if c == code =>
            {
                return Ok(())
            }
            Ok(Some(crate::net::Incoming::Message(..))) => continue,
            Ok(Some(crate::net::Incoming::Closed(c))) => {
                bail!("closed ({c:?}) before error {code}")
            }
            Ok(None) => bail!("socket ended before error {code}"),
            Err(_) => bail!("no error {code} within {:?}", ctx.timeout),
        }
    }
}

/// Invalid frames of every kind a client can get wrong, each answered by its code.
async fn invalid_frames(ctx: &Ctx, node: usize) -> anyhow::Result<u64> {
    let t = Instant::now();
    let mut c = ctx.open(node, t).await?;
    let cases: [(&str, ErrorCode); 5] = [
        ("{nope", ErrorCode::BadJson),
        (r#"{"type":"dance"}"#, ErrorCode::UnknownType),
        (
            r#"{"type":"offer","to":"0000000000000000","sdp":"v=0"}"#,
            ErrorCode::NotJoined,
        ),
        (
            r#"{"type":"join","room":"no spaces allowed","name":"x"}"#,
            ErrorCode::InvalidRoom,
        ),
        (
            r#"{"type":"report","report":{"rttMs":-5}}"#,
            ErrorCode::InvalidMessage,
        ),
    ];
    for (frame, code) in cases {
        c.tx.raw(Command::Text(frame.to_owned()));
        expect_error(ctx, &mut c, code).await?;
    }
    c.tx.raw(Command::Binary(vec![1, 2, 3]));
    expect_error(ctx, &mut c, ErrorCode::BinaryNotSupported).await?;
    join(
        ctx,
        &mut c,
        &format!("mixed-bad-{}-{node}", ctx.run_id),
        "tester",
        t,
    )
    .await?;
    c.tx.send(&ClientMessage::AppData {
        id: None,
        to: "ffffffffffffffff".into(),
        data: json!(null),
    });
    expect_error(ctx, &mut c, ErrorCode::UnknownPeer).await?;
    leave_and_close(ctx, &mut c, t).await?;
    Ok(7)
}

/// Sends `burst` messages at once on a throwaway session; at least one must be
/// refused with `rate-limited`. The node may close the socket for abuse after.
async fn rate_limit_burst(ctx: &Ctx, node: usize, burst: usize) -> anyhow::Result<u64> {
    let mut c = ctx.open(node, Instant::now()).await?;
    let report = r#"{"type":"report","report":{"final":false,"rttMs":1.5}}"#;
    for _ in 0..burst {
        c.tx.send_json(report);
    }
    let mut limited = 0u64;
    let deadline = tokio::time::Instant::now() + ctx.timeout.min(Duration::from_secs(5));
    while let Ok(Some(incoming)) = tokio::time::timeout_at(deadline, c.rx.recv()).await {
        match incoming {
            crate::net::Incoming::Message(
                ServerMessage::Error {
                    code: ErrorCode::RateLimited,
                    ..
                },
                _,
            ) => {
                limited += 1;
            }
            crate::net::Incoming::Message(..) => {}
            crate::net::Incoming::Closed(_) => break,
        }
    }
    c.tx.raw(Command::Abort);
    if limited == 0 {
        bail!("{burst} messages at once were not rate-limited: is limits.message_burst above {burst}?");
    }
    Ok(limited)
}

/// Joins a room on node `node` with a partner on `node + 1`, drops the first
/// socket without a close frame, resumes the seat on another URL, and checks that
/// the partner's messages reach the resumed socket.
async fn drop_and_resume(ctx: &Ctx, node: usize, n: usize) -> anyhow::Result<()> {
    let t = Instant::now();
    let room = format!("mixed-resume-{}-{n}", ctx.run_id);
    let mut a = ctx.open(node, t).await?;
    let mut b = ctx.open(node + 1, t).await?;
    let ja = join(ctx, &mut a, &room, "roamer", t).await?;
    let jb = join(ctx, &mut b, &room, "anchor", t).await?;
    wait_peer_joined(ctx, &mut a).await?;
    a.tx.raw(Command::Abort);
    drop(a);
    // Another URL when there is one.
    let resumed_at = Instant::now();
    let mut a2 = ctx.open(node + 1, t).await?;
    a2.tx.send(&ClientMessage::Resume {
        id: Some(RequestId::Number(9)),
        token: ja.resume_token.clone(),
        protocol: Some(PROTOCOL_VERSION),
        last_seq: None,
        stream: None,
    });
    let (peer, _) = a2
        .expect(ctx.timeout, "resumed", |m| match m {
            ServerMessage::Resumed { seat, .. } => Some(seat.peer.clone()),
            _ => None,
        })
        .await?;
    if peer != ja.peer {
        bail!("resumed as {peer}, expected {}", ja.peer);
    }
    ctx.recorder.latency("resume", t, resumed_at.elapsed());
    b.tx.send(&ClientMessage::AppData {
        id: None,
        to: ja.peer.clone(),
        data: json!({"after": "resume"}),
    });
    a2.expect(ctx.timeout, "app-data after resume", |m| match m {
        ServerMessage::AppData { from, .. } if *from == jb.peer => Some(()),
        _ => None,
    })
    .await?;
    leave_and_close(ctx, &mut a2, t).await?;
    leave_and_close(ctx, &mut b, t).await?;
    Ok(())
}

pub async fn run(args: MixedArgs, out: &Output) -> anyhow::Result<serde_json::Value> {
    if !crate::rate::valid_rate(args.rate) {
        bail!("--rate must be positive");
    }
    let expected_calls = (args.rate * args.duration.as_secs_f64()).ceil() as usize;
    let ctx = Ctx::new(
        &args.common,
        expected_calls * 2 + args.burst + 64,
        "call-setup",
    )?;
    let start = Instant::now();
    let progress = Progress::start(
        args.duration.as_secs(),
        "s",
        Arc::clone(&ctx.recorder),
        out.quiet,
        Some(start),
    );
    let shape = CallShape {
        candidates: 4,
        sdp_bytes: 1200,
    };
    let mut tasks: JoinSet<(&'static str, Result<u64, String>)> = JoinSet::new();
    // The exercises, every `period`, at least once.
    let rounds = (args.duration.as_secs_f64() / args.period.as_secs_f64().max(0.1))
        .floor()
        .max(1.0) as usize;
    for round in 0..rounds {
        let at = start + args.period * round as u32;
        let node = round;
        for which in ["invalid-frames", "rate-limit", "resume"] {
            let (ctx, burst) = (Arc::clone(&ctx), args.burst);
            tasks.spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                let result = match which {
                    "invalid-frames" => invalid_frames(&ctx, node).await,
                    "rate-limit" => rate_limit_burst(&ctx, node, burst).await,
                    _ => drop_and_resume(&ctx, node, round).await.map(|()| 1),
                };
                (which, result.map_err(|e| short(&e)))
            });
        }
    }
    // Calls at a steady rate, each with app-data and final reports.
    let mut ticker = Ticker::new(Schedule::new(start, args.rate, args.duration));
    let mut call = 0usize;
    while let Some((k, due)) = ticker.tick().await {
        let (ctx, shape) = (Arc::clone(&ctx), shape.clone());
        let pick = call * 2;
        call += 1;
        tasks.spawn(async move {
            let extras = CallExtras {
                reports: Some(pick),
                app_data: 3,
            };
            let result = run_call(&ctx, k as usize, due, &shape, extras).await;
            ("call", result.map(|()| 1).map_err(|e| short(&e)))
        });
    }
    // Make sure every outcome and candidate type was reported at least once.
    let all = OUTCOMES.len() * CANDIDATE_TYPES.len();
    for pick in (call * 2..)
        .step_by(2)
        .take(all.div_ceil(2).saturating_sub(call))
    {
        let ctx = Arc::clone(&ctx);
        let shape = shape.clone();
        tasks.spawn(async move {
            let extras = CallExtras {
                reports: Some(pick),
                app_data: 1,
            };
            let result = run_call(&ctx, 1_000_000 + pick, Instant::now(), &shape, extras).await;
            ("call", result.map(|()| 1).map_err(|e| short(&e)))
        });
    }
    let mut ok: BTreeMap<&str, u64> = BTreeMap::new();
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    let mut rate_limited = 0;
    let grace = ctx.timeout * 3 + Duration::from_secs(2);
    let _ = tokio::time::timeout(grace, async {
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok((which, Ok(n))) => {
                    *ok.entry(which).or_insert(0) += 1;
                    if which == "rate-limit" {
                        rate_limited += n;
                    }
                }
                Ok((which, Err(e))) => {
                    failed.entry(which.to_owned()).or_insert(e);
                }
                Err(e) => {
                    failed.entry("task".to_owned()).or_insert(e.to_string());
                }
            }
        }
    })
    .await;
    tasks.abort_all();
    drop(progress);
    let mut report = ctx.base_report("mixed");
    report["series_phase"] = json!("call-setup");
    report["duration_seconds"] = json!(args.duration.as_secs_f64());
    report["succeeded"] = json!(ok);
    report["failed"] = json!(failed);
    report["rate_limited_replies"] = json!(rate_limited);
    let report = crate::report::finish(&ctx.recorder, report, out)?;
    if !failed.is_empty() {
        bail!(
            "mixed: {} kinds of exercise failed: {failed:?}",
            failed.len()
        );
    }
    let unexpected: Vec<String> = ctx
        .recorder
        .errors()
        .keys()
        .filter(|code| !EXPECTED.contains(&code.as_str()))
        .cloned()
        .collect();
    if !unexpected.is_empty() {
        bail!("mixed: unexpected errors {unexpected:?}");
    }
    Ok(report)
}

/// The error codes the exercises provoke on purpose.
const EXPECTED: [&str; 8] = [
    "bad-json",
    "unknown-type",
    "not-joined",
    "invalid-room",
    "invalid-message",
    "binary-not-supported",
    "unknown-peer",
    "rate-limited",
];
