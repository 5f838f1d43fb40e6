//! The scenarios, and what they share: the targets, opening and joining sessions,
//! fake SDP and candidates that carry a send timestamp, and the progress bar.

pub mod calls;
pub mod churn;
pub mod idle;
pub mod mesh;
pub mod mixed;
pub mod open_loop;
pub mod relay;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use vc_protocol::{ClientMessage, RequestId, ServerMessage, PROTOCOL_VERSION};

use crate::net::{self, Client, Mode, Sources, Target};
use crate::stats::Recorder;

/// Options every scenario takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Node (or load balancer) WebSocket URLs, loopback only. The peers of one
    /// room are spread over them in turn, so that room traffic crosses the bus.
    #[arg(long = "url", default_value = "ws://127.0.0.1:8080/ws")]
    pub urls: Vec<String>,
    /// The target's wire protocol: the node's JSON frames, or the Socket.IO baseline.
    #[arg(long, value_enum, default_value = "plain")]
    pub mode: Mode,
    /// Source addresses in 127.0.0.0/8 to spread client sockets over (0: one per
    /// 20k connections, at least 4).
    #[arg(long, default_value_t = 0)]
    pub source_ips: usize,
    /// Longest wait for any one reply before the operation counts as failed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Options of the scenarios that run at a rate for a while.
#[derive(Debug, Clone, clap::Args)]
pub struct Timing {
    /// Run at the target rate this long before measuring.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Measure this long after the warm-up.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
}

impl Timing {
    /// Longest a run may take: a safety bound on top of the schedule.
    pub fn cap(&self) -> Duration {
        (self.warmup + self.duration).min(Duration::from_secs(24 * 3600))
    }
}

/// What the scenarios share during a run.
pub struct Ctx {
    pub targets: Vec<Target>,
    pub mode: Mode,
    pub sources: Sources,
    pub recorder: Arc<Recorder>,
    pub timeout: Duration,
    /// Unique per run, so that rooms of an earlier run never collide.
    pub run_id: String,
}

impl Ctx {
    /// Parses the targets, raises the fd limit for `connections` sockets.
    pub fn new(
        common: &Common,
        connections: usize,
        series_phase: &'static str,
    ) -> anyhow::Result<Arc<Ctx>> {
        let targets = net::parse_targets(&common.urls)?;
        let wanted = connections as u64 * 2 + 1024;
        let limit = net::raise_fd_limit(wanted)?;
        if limit < connections as u64 + 64 {
            bail!("only {limit} file descriptors available for {connections} connections");
        }
        let sources = if common.source_ips > 0 {
            Sources::new(common.source_ips)
        } else {
            Sources::for_connections(connections, 4)
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Ok(Arc::new(Ctx {
            targets,
            mode: common.mode,
            sources,
            recorder: Arc::new(Recorder::new(series_phase)),
            timeout: common.timeout,
            run_id: format!("{:x}", (nanos as u64) ^ ((std::process::id() as u64) << 40)),
        }))
    }

    /// Opens a socket to node `node` (modulo the number of targets) and waits for
    /// its welcome; records the `connect` phase for events started at `started`.
    pub async fn open(&self, node: usize, started: Instant) -> anyhow::Result<Client> {
        let target = &self.targets[node % self.targets.len()];
        let t = Instant::now();
        let client = net::connect(
            target,
            self.sources.next(),
            self.mode,
            Arc::clone(&self.recorder),
            self.timeout,
        )
        .await?;
        self.recorder.latency("connect", started, t.elapsed());
        Ok(client)
    }

    pub fn base_report(&self, scenario: &str) -> Value {
        json!({
            "scenario": scenario,
            "mode": self.mode,
            "urls": self.targets.iter().map(|t| t.url.clone()).collect::<Vec<_>>(),
            "source_ips": self.sources.len(),
        })
    }
}

/// The reply to a join: who we are and who was there.
#[derive(Debug, Clone)]
pub struct Joined {
    pub peer: String,
    pub members: Vec<String>,
    pub resume_token: String,
}

/// Sends `join` and waits for `joined`; records the `join` phase.
pub async fn join(
    ctx: &Ctx,
    client: &mut Client,
    room: &str,
    name: &str,
    started: Instant,
) -> anyhow::Result<Joined> {
    let t = Instant::now();
    client.tx.send(&ClientMessage::Join {
        id: Some(RequestId::Number(1)),
        room: room.to_owned(),
        name: name.to_owned(),
        token: None,
        protocol: Some(PROTOCOL_VERSION),
    });
    let (joined, _) = client
        .expect(ctx.timeout, "joined", |m| match m {
            ServerMessage::Joined { seat, .. } => Some(Joined {
                peer: seat.peer.clone(),
                members: seat.members.iter().map(|m| m.id.clone()).collect(),
                resume_token: seat.resume_token.clone(),
            }),
            _ => None,
        })
        .await?;
    ctx.recorder.latency("join", started, t.elapsed());
    Ok(joined)
}

/// Sends `leave`, waits for `left`, then closes with 1000; records `leave`.
pub async fn leave_and_close(
    ctx: &Ctx,
    client: &mut Client,
    started: Instant,
) -> anyhow::Result<()> {
    let t = Instant::now();
    client.tx.send(&ClientMessage::Leave {
        id: Some(RequestId::Number(2)),
    });
    let result = client
        .expect(ctx.timeout, "left", |m| {
            matches!(m, ServerMessage::Left { .. }).then_some(())
        })
        .await;
    if result.is_ok() {
        ctx.recorder.latency("leave", started, t.elapsed());
    }
    client.close(1000);
    result.map(|_| ())
}

/// Waits until `client` hears `peer-joined` for someone; returns their id.
pub async fn wait_peer_joined(ctx: &Ctx, client: &mut Client) -> anyhow::Result<(String, Instant)> {
    client
        .expect(ctx.timeout, "peer-joined", |m| match m {
            ServerMessage::PeerJoined { peer } => Some(peer.id.clone()),
            _ => None,
        })
        .await
}

/// A fake SDP of about `bytes` bytes whose origin line carries `stamp` (µs on the
/// run's clock), so that the receiver can measure how long it took to cross.
pub fn fake_sdp(stamp: u64, bytes: usize) -> String {
    let mut sdp =
        format!("v=0\r\no=- {stamp} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n");
    let mut line = 0;
    while sdp.len() + 2 < bytes {
        sdp.push_str(&format!("a=x-pad:{line} {}\r\n", "f".repeat(60)));
        line += 1;
    }
    sdp
}

/// The stamp of a [`fake_sdp`].
pub fn sdp_stamp(sdp: &str) -> Option<u64> {
    let rest = &sdp[sdp.find("o=- ")? + 4..];
    rest.split_whitespace().next()?.parse().ok()
}

/// A trickled candidate (an `RTCIceCandidateInit`) carrying a stamp in `t`.
pub fn fake_candidate(k: usize, stamp: u64) -> Value {
    json!({
        "candidate": format!("candidate:{k} 1 udp 2122260223 127.0.0.1 {} typ host generation 0 ufrag x7Yz network-id 1", 50000 + k),
        "sdpMid": "0",
        "sdpMLineIndex": 0,
        "t": stamp,
    })
}

/// The stamp of a [`fake_candidate`].
pub fn candidate_stamp(candidate: &Value) -> Option<u64> {
    candidate.get("t")?.as_u64()
}

/// A progress bar on stderr (drawn only on a terminal) fed by the recorder.
pub struct Progress {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// `len` units; `by_time` moves the bar with the clock (seconds since the
    /// instant), else with the recorder's progress count.
    pub fn start(
        len: u64,
        unit: &str,
        recorder: Arc<Recorder>,
        quiet: bool,
        by_time: Option<Instant>,
    ) -> Self {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(len)
        };
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} {{msg}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let shown = bar.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let (done, frames, errors) = recorder.live();
                let pos = match by_time {
                    Some(t0) => t0.elapsed().as_secs(),
                    None => done,
                };
                shown.set_position(pos.min(shown.length().unwrap_or(u64::MAX)));
                shown.set_message(format!("frames in {frames}, errors {errors}"));
            }
        });
        Self { bar, task }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}

/// Shortens an error for the report.
pub fn short(e: &anyhow::Error) -> String {
    let s = format!("{e:#}");
    s.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdp_and_candidates_carry_their_stamp() {
        let sdp = fake_sdp(123_456_789, 2000);
        assert_eq!(sdp_stamp(&sdp), Some(123_456_789));
        assert!(sdp.len() >= 1900 && sdp.len() <= 2100, "{}", sdp.len());
        assert_eq!(sdp_stamp("v=0\r\n"), None);
        let c = fake_candidate(3, 42);
        assert_eq!(candidate_stamp(&c), Some(42));
        assert!(c["candidate"]
            .as_str()
            .expect("string")
            .starts_with("candidate:3 "));
    }
}
