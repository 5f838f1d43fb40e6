//! `vc-load`: the command line. Every scenario stops by itself (a bounded number
//! of sessions, a bounded duration) and targets only the loopback URLs it is given.

use clap::{Parser, Subcommand};
use vc_load::report::Output;
use vc_load::scenarios::{calls, churn, idle, mesh, mixed, relay};

#[derive(Parser)]
#[command(version, about = "Load generator for Video Caller signaling nodes")]
struct Cli {
    #[command(flatten)]
    output: Output,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Hold joined sessions that do nothing but answer pings (memory, connection limits).
    Idle(idle::IdleArgs),
    /// Rooms of two doing a full negotiation, at a rate of call set-ups per second.
    Calls(calls::CallsArgs),
    /// Rooms of k peers, each negotiating with every other, at a rate of rooms per second.
    Mesh(mesh::MeshArgs),
    /// Connect, join, leave and close, at a rate.
    Churn(churn::ChurnArgs),
    /// Steady targeted messages at a rate between the peers of many rooms.
    Relay(relay::RelayArgs),
    /// Calls, relays, invalid frames, a rate-limit burst, reports and a resume on
    /// another URL: makes every metric of the node move.
    Mixed(mixed::MixedArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let out = cli.output;
    runtime.block_on(async move {
        match cli.scenario {
            Scenario::Idle(a) => idle::run(a, &out).await,
            Scenario::Calls(a) => check(calls::run(a, &out).await?, &["calls_failed"]),
            Scenario::Mesh(a) => check(mesh::run(a, &out).await?, &["rooms_failed"]),
            Scenario::Churn(a) => check(churn::run(a, &out).await?, &["cycles_failed"]),
            Scenario::Relay(a) => relay::run(a, &out).await,
            Scenario::Mixed(a) => mixed::run(a, &out).await,
        }
        .map(|_| ())
    })?;
    // Sockets still closing are not waited for.
    std::process::exit(0);
}

/// A run whose operations failed exits non-zero after printing its report.
fn check(report: serde_json::Value, failure_fields: &[&str]) -> anyhow::Result<serde_json::Value> {
    for field in failure_fields {
        let n = report[*field].as_u64().unwrap_or(0);
        if n > 0 {
            anyhow::bail!("{n} {field}: see \"failures\" in the report");
        }
    }
    Ok(report)
}
