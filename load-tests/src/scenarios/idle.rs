//! `idle`: hold N joined sessions that do nothing but answer pings, and report the
//! node's resident memory growth per session when given the node's pid.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use tokio::sync::Semaphore;

use super::{join, short, Common, Ctx, Progress};
use crate::net::Client;
use crate::report::Output;

#[derive(Debug, Clone, clap::Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    /// Sessions to open and join.
    #[arg(long, default_value_t = 1000)]
    pub sessions: usize,
    /// Peers per room.
    #[arg(long, default_value_t = 2)]
    pub room_size: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// How long to hold the sessions once all have joined.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub hold: Duration,
    /// The node's pid, to report its resident memory before and after and the
    /// growth per session (meaningful with a single --url).
    #[arg(long)]
    pub node_pid: Option<u32>,
}

async fn hold_session(ctx: &Ctx, index: usize, room: &str) -> anyhow::Result<Client> {
    let started = Instant::now();
    let mut client = ctx.open(index, started).await.context("connect")?;
    join(ctx, &mut client, room, &format!("idle-{index}"), started).await?;
    Ok(client)
}

pub async fn run(args: IdleArgs, out: &Output) -> anyhow::Result<serde_json::Value> {
    let sessions = args.sessions;
    let room_size = args.room_size.max(1);
    let ctx = Ctx::new(&args.common, sessions, "join")?;
    let rss_before = args.node_pid.map(rss_kib).transpose()?;
    let started = Instant::now();
    let progress = Progress::start(
        sessions as u64,
        "joined",
        Arc::clone(&ctx.recorder),
        out.quiet,
        None,
    );
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let (joined_tx, mut joined_rx) = tokio::sync::mpsc::channel::<Result<Client, String>>(1024);
    for i in 0..sessions {
        let room = format!("idle-{}-{}", ctx.run_id, i / room_size);
        let (gate, joined_tx, ctx) = (Arc::clone(&gate), joined_tx.clone(), Arc::clone(&ctx));
        tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let session = hold_session(&ctx, i, &room).await;
            drop(permit);
            ctx.recorder.progress(1);
            joined_tx.send(session.map_err(|e| short(&e))).await.ok();
        });
    }
    drop(joined_tx);
    let mut held = Vec::with_capacity(sessions);
    let (mut ok, mut failed) = (0usize, 0usize);
    let mut first_error = None;
    while let Some(result) = joined_rx.recv().await {
        match result {
            Ok(client) => {
                ok += 1;
                held.push(client);
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let setup = started.elapsed();
    drop(progress);
    // Each socket's task keeps reading, so the node's pings are answered.
    tokio::time::sleep(args.hold).await;
    let rss_after = args.node_pid.map(rss_kib).transpose()?;
    for client in &held {
        client.close(1000);
    }
    // Give the close frames a moment to leave.
    tokio::time::sleep(Duration::from_millis(200 + sessions as u64 / 100)).await;
    drop(held);
    let mut report = ctx.base_report("idle");
    report["sessions_joined"] = json!(ok);
    report["sessions_failed"] = json!(failed);
    report["setup_seconds"] = json!(setup.as_secs_f64());
    report["hold_seconds"] = json!(args.hold.as_secs_f64());
    report["series_phase"] = json!("join");
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        report["node_rss_before_kib"] = json!(before);
        report["node_rss_after_kib"] = json!(after);
        if ok > 0 {
            report["node_rss_per_session_bytes"] = json!(per_session_bytes(before, after, ok));
        }
    }
    if let Some(e) = first_error {
        report["first_error"] = json!(e);
    }
    let report = crate::report::finish(&ctx.recorder, report, out)?;
    if failed > 0 {
        bail!("{failed} of {sessions} sessions failed");
    }
    Ok(report)
}

/// Resident growth per session, in bytes (0 when memory shrank).
pub fn per_session_bytes(before_kib: u64, after_kib: u64, sessions: usize) -> f64 {
    if sessions == 0 {
        return 0.0;
    }
    (after_kib.saturating_sub(before_kib) * 1024) as f64 / sessions as f64
}

/// Resident set size of a process, in KiB, from /proc.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    parse_vm_rss(&status).context("no VmRSS in /proc status")
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_per_session() {
        assert_eq!(per_session_bytes(100_000, 180_000, 10_000), 8192.0);
        assert_eq!(per_session_bytes(100, 90, 10), 0.0);
        assert_eq!(per_session_bytes(1, 2, 0), 0.0);
        assert_eq!(parse_vm_rss("Name:\tx\nVmRSS:\t  12345 kB\n"), Some(12345));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert!(rss_kib(std::process::id()).expect("own rss") > 0);
    }
}
