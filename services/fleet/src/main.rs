//! `vc-fleet`: starts a fleet described by flags, prints its addresses as one
//! JSON line on stdout, then takes commands on stdin (one a line, each
//! answered with a JSON line) until stdin closes or SIGTERM/SIGINT
//! arrives, and stops everything it started. docs/testing.md, "One fleet
//! launcher", has the flags, the JSON and the commands.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use serde_json::{json, Value};
use vc_fleet::control::{parse_setting, Control};
use vc_fleet::{
    Backing, Fleet, FleetError, Logs, NodeDescription, NodeSpec, Readiness, RedisChoice,
};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RedisMode {
    Standalone,
    Cluster,
    None,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Ready {
    /// GET /readyz answers 200.
    Http,
    /// The port accepts connections (a node that speaks TLS).
    Tcp,
}

/// Starts Redis and signaling nodes on loopback and prints where they are.
#[derive(Debug, Parser)]
#[command(name = "vc-fleet", version)]
struct Args {
    /// How many nodes, named <id-prefix>1 … <id-prefix>N.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// The nodes' ids instead (comma-separated); sets their number.
    #[arg(long, value_delimiter = ',')]
    ids: Vec<String>,
    #[arg(long, default_value = "node-")]
    id_prefix: String,
    /// The fleet's own Redis, or none (each node on its in-process bus).
    #[arg(long, value_enum, default_value = "standalone")]
    redis: RedisMode,
    /// Use this running Redis instead of starting one.
    #[arg(long, conflicts_with_all = ["redis", "redis_port"])]
    redis_url: Option<String>,
    /// The (first) Redis port instead of a free one.
    #[arg(long)]
    redis_port: Option<u16>,
    /// The nodes' ports instead of free ones (comma-separated, one per node).
    #[arg(long, value_delimiter = ',')]
    node_ports: Vec<u16>,
    /// A setting for every node: VC_RESUME__WINDOW=3s or resume.window=3s.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// The vc-signaling binary; by default the one beside this binary.
    #[arg(long, env = "FLEET_NODE_BIN")]
    node_bin: Option<PathBuf>,
    /// When a node counts as started.
    #[arg(long, value_enum, default_value = "http")]
    ready: Ready,
    /// Seconds a node may take to be ready.
    #[arg(long, default_value_t = 30)]
    ready_timeout: u64,
    /// One log file per process here; without it output is discarded
    /// (FLEET_NODE_LOGS=1: to this process's stderr).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Ignore stdin; run until a signal (for a fleet left running in the background).
    #[arg(long)]
    until_signal: bool,
    /// Seconds between SIGTERM and SIGKILL for each node when the fleet stops.
    #[arg(long, default_value_t = 0)]
    grace: u64,
    /// Arguments for every node (`-- serve --lan`).
    #[arg(last = true)]
    node_args: Vec<String>,
}

enum Event {
    Line(String),
    Eof,
    Signal,
}

fn main() {
    if let Err(error) = run() {
        emit(&json!({"error": format!("{error:#}")}));
        eprintln!("vc-fleet: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let (events, inbox) = mpsc::channel();
    watch_signals(events.clone())?;
    let mut fleet = start(&args)?;
    emit(&serde_json::to_value(fleet.describe())?);
    if !args.until_signal {
        read_stdin(events);
    }
    loop {
        match inbox.recv_timeout(Duration::from_millis(100)) {
            Ok(Event::Line(line)) if line.trim().is_empty() => {}
            Ok(Event::Line(line)) => {
                let answer = match Control::parse(&line).and_then(|c| obey(&mut fleet, c)) {
                    Ok(mut answer) => {
                        answer["ok"] = json!(true);
                        answer
                    }
                    Err(error) => json!({"ok": false, "error": error.to_string()}),
                };
                let mut answer = answer;
                answer["command"] = json!(line.trim());
                report_exits(&mut fleet);
                emit(&answer);
            }
            Ok(Event::Eof) | Ok(Event::Signal) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => report_exits(&mut fleet),
        }
    }
    fleet.stop(Duration::from_secs(args.grace));
    Ok(())
}

fn start(args: &Args) -> anyhow::Result<Fleet> {
    let logs = match &args.log_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            Logs::Dir(dir.clone())
        }
        None => Logs::from_env(),
    };
    let bin = match &args.node_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()
            .context("where vc-fleet is")?
            .with_file_name("vc-signaling"),
    };
    let ids: Vec<String> = if args.ids.is_empty() {
        (1..=args.nodes)
            .map(|i| format!("{}{i}", args.id_prefix))
            .collect()
    } else {
        args.ids.clone()
    };
    if !args.node_ports.is_empty() && args.node_ports.len() != ids.len() {
        anyhow::bail!(
            "--node-ports has {} ports for {} nodes",
            args.node_ports.len(),
            ids.len()
        );
    }
    let settings = args
        .settings
        .iter()
        .map(|s| parse_setting(s))
        .collect::<Result<Vec<_>, _>>()?;
    let specs = ids
        .iter()
        .enumerate()
        .map(|(i, id)| NodeSpec {
            port: args.node_ports.get(i).copied(),
            args: args.node_args.clone(),
            env: settings.clone(),
            readiness: match args.ready {
                Ready::Http => Readiness::Ready,
                Ready::Tcp => Readiness::Listening,
            },
            ready_limit: Duration::from_secs(args.ready_timeout),
            logs: logs.clone(),
            ..NodeSpec::new(id.clone(), bin.clone())
        })
        .collect();
    let redis = match (&args.redis_url, args.redis) {
        (Some(url), _) => RedisChoice::External(url.clone()),
        (None, RedisMode::None) => RedisChoice::None,
        (None, RedisMode::Standalone) => RedisChoice::Own {
            backing: Backing::Standalone,
            port: args.redis_port,
        },
        (None, RedisMode::Cluster) => RedisChoice::Own {
            backing: Backing::Cluster,
            port: args.redis_port,
        },
    };
    Ok(Fleet::start(redis, specs, logs)?)
}

fn obey(fleet: &mut Fleet, control: Control) -> Result<Value, FleetError> {
    Ok(match control {
        Control::KillNode(id) => json!({"status": fleet.node_mut(&id)?.kill()}),
        Control::TermNode(id) => {
            fleet.node(&id)?.terminate();
            json!({})
        }
        Control::RestartNode(id) => {
            let node = fleet.node_mut(&id)?;
            if let Some(status) = node.kill() {
                emit(&json!({"event": "exited", "node": id, "status": status}));
            }
            node.restart()?;
            json!({"node": NodeDescription::of(node)})
        }
        Control::KillRedis => {
            fleet.redis_mut()?.kill();
            json!({})
        }
        Control::RestartRedis(data) => {
            fleet.restart_redis(data)?;
            json!({"redis": fleet.describe().redis})
        }
        Control::Describe => {
            serde_json::to_value(fleet.describe()).map_err(|e| FleetError::Usage(e.to_string()))?
        }
    })
}

/// One `{"event":"exited"}` line per node that has ended since the last look.
fn report_exits(fleet: &mut Fleet) {
    for node in &mut fleet.nodes {
        if let Some(status) = node.exited() {
            emit(&json!({"event": "exited", "node": node.id, "status": status}));
        }
    }
}

/// One JSON line on stdout; a reader that went away is not an error here
/// (stdin closing stops the fleet).
fn emit(value: &Value) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}").ok();
    out.flush().ok();
}

fn read_stdin(events: mpsc::Sender<Event>) {
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if events.send(Event::Line(line)).is_err() {
                return;
            }
        }
        events.send(Event::Eof).ok();
    });
}

fn watch_signals(events: mpsc::Sender<Event>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("signal runtime")?;
    // Installed here, before any child starts, so that no signal is missed.
    // SIGHUP keeps its default (the launcher ends, and the kernel takes its
    // children along), so `nohup` still works.
    let (mut term, mut int) = runtime.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;
    std::thread::spawn(move || {
        runtime.block_on(async {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        });
        events.send(Event::Signal).ok();
    });
    Ok(())
}
