//! One signaling node process on a loopback port: started with exactly the
//! settings it is given, checked for readiness, killed, drained or restarted.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::child::{self, Owned};
use crate::probe::{accepts, free_port, ready, wait_until};
use crate::{FleetError, Logs};

const NODE_HINT: &str = " (cargo build -p vc-signaling)";

/// When a started node counts as up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Readiness {
    /// `GET /readyz` answers 200 (over plain HTTP).
    #[default]
    Ready,
    /// Its port accepts connections: for a node that speaks TLS, whose
    /// readiness the caller checks over HTTPS.
    Listening,
}

/// Everything needed to start (and restart) one node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// `node.id`, also the name of its log file.
    pub id: String,
    /// The `vc-signaling` binary.
    pub bin: PathBuf,
    /// Its port; a free one when `None`.
    pub port: Option<u16>,
    /// Arguments (`serve --lan`).
    pub args: Vec<String>,
    /// `VC_*` settings, applied after the launcher's own (host, port, id,
    /// Redis), so they can override them.
    pub env: Vec<(String, String)>,
    pub readiness: Readiness,
    /// How long it may take to become ready.
    pub ready_limit: Duration,
    pub logs: Logs,
}

impl NodeSpec {
    pub fn new(id: impl Into<String>, bin: impl Into<PathBuf>) -> NodeSpec {
        NodeSpec {
            id: id.into(),
            bin: bin.into(),
            port: None,
            args: Vec::new(),
            env: Vec::new(),
            readiness: Readiness::Ready,
            ready_limit: Duration::from_secs(30),
            logs: Logs::from_env(),
        }
    }

    /// Adds a setting (`VC_RESUME__WINDOW`, `3s`).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> NodeSpec {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// A running (or stopped) node, SIGKILLed when dropped.
#[derive(Debug)]
pub struct Node {
    pub id: String,
    pub port: u16,
    spec: NodeSpec,
    process: Option<Owned>,
}

impl Node {
    /// Starts a node as `spec` says and waits until it is up.
    pub fn start(spec: NodeSpec) -> Result<Node, FleetError> {
        let port = match spec.port {
            Some(port) => port,
            None => free_port()?,
        };
        let mut node = Node {
            id: spec.id.clone(),
            port,
            spec,
            process: None,
        };
        node.launch()?;
        Ok(node)
    }

    fn launch(&mut self) -> Result<(), FleetError> {
        let mut command = Command::new(&self.spec.bin);
        command.args(&self.spec.args);
        // The node reads every VC_* variable as a setting and refuses unknown
        // ones: only the settings given here reach it, whatever the
        // launcher's own environment holds.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("VC_") {
                command.env_remove(key);
            }
        }
        command
            .env("VC_SERVER__HOST", "127.0.0.1")
            .env("VC_SERVER__PORT", self.port.to_string())
            .env("VC_NODE__ID", &self.id)
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)));
        let (stdout, stderr) = self.spec.logs.streams(&self.id)?;
        command.stdout(stdout).stderr(stderr);
        let mut process = Owned::spawn(&mut command, NODE_HINT)?;
        let what = format!("node {} to be up on {}", self.id, self.port);
        let readiness = self.spec.readiness;
        let port = self.port;
        wait_until(&what, self.spec.ready_limit, || {
            if let Some(status) = process.exit_status() {
                return Err(child::exited(&format!("node {}", self.id), status));
            }
            Ok(match readiness {
                Readiness::Ready => ready("127.0.0.1", port) == Some(true),
                Readiness::Listening => accepts("127.0.0.1", port),
            })
        })?;
        self.process = Some(process);
        Ok(())
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Owned::pid)
    }

    /// The settings it was started with.
    pub fn spec(&self) -> &NodeSpec {
        &self.spec
    }

    /// GET /readyz: `Some(true)` ready, `Some(false)` not ready, `None` unreachable.
    pub fn ready(&self) -> Option<bool> {
        ready("127.0.0.1", self.port)
    }

    /// Waits until readiness is `wanted`.
    pub fn wait_ready(&self, wanted: bool, limit: Duration) -> Result<(), FleetError> {
        wait_until(&format!("node {} ready={wanted}", self.id), limit, || {
            Ok(self.ready() == Some(wanted))
        })
    }

    /// SIGKILL: no goodbye, no drain. Returns how it ended, if it was running.
    pub fn kill(&mut self) -> Option<String> {
        self.process
            .take()
            .and_then(|mut process| process.kill())
            .map(child::describe)
    }

    /// SIGTERM: the node drains and exits by itself.
    pub fn terminate(&self) {
        if let Some(process) = &self.process {
            process.signal(libc::SIGTERM);
        }
    }

    /// How it ended, once it has exited (reaped; the node is then stopped).
    pub fn exited(&mut self) -> Option<String> {
        let status = self.process.as_mut()?.exit_status()?;
        self.process = None;
        Some(child::describe(status))
    }

    /// Waits for the process to exit by itself, which must be a clean exit;
    /// returns how long it took.
    pub fn wait_exit(&mut self, limit: Duration) -> Result<Duration, FleetError> {
        let start = Instant::now();
        let Some(process) = self.process.as_mut() else {
            return Ok(Duration::ZERO);
        };
        let Some(status) = process.wait_for(limit) else {
            return Err(FleetError::Timeout {
                what: format!("node {} to exit", self.id),
                limit,
            });
        };
        self.process = None;
        if status.success() {
            Ok(start.elapsed())
        } else {
            Err(child::exited(&format!("node {}", self.id), status))
        }
    }

    /// Starts it again (killing it first if it still runs) on the same port
    /// with the same settings, and waits until it is up.
    pub fn restart(&mut self) -> Result<(), FleetError> {
        self.kill();
        self.launch()
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) -> Option<String> {
        self.process
            .take()
            .and_then(|mut process| process.stop(grace))
            .map(child::describe)
    }
}
