//! A redis-server of the fleet's own: one standalone server, or a three-shard
//! Redis Cluster made with `redis-cli --cluster create`, on free loopback
//! ports, with its files in a temporary directory removed on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;

use crate::child::Owned;
use crate::probe::{accepts, free_port, wait_until};
use crate::{FleetError, Logs};

const REDIS_HINT: &str = " (apt-get install redis-server redis-tools)";
const STARTUP_LIMIT: Duration = Duration::from_secs(20);

/// What the fleet's Redis is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backing {
    /// One `redis-server`, plain pub/sub.
    Standalone,
    /// Three `redis-server`s in one Redis Cluster, no replicas; nodes use
    /// sharded pub/sub.
    Cluster,
}

/// What a restarted Redis holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    /// Nothing: every key is lost, as after a crash of a cache without
    /// persistence.
    Empty,
    /// What it held: the server saves on the way down and loads on the way up.
    Kept,
}

/// The fleet's Redis; every server is SIGKILLed when this is dropped.
#[derive(Debug)]
pub struct Redis {
    backing: Backing,
    ports: Vec<u16>,
    dir: PathBuf,
    logs: Logs,
    servers: Vec<Owned>,
}

impl Redis {
    /// Starts on free ports with logs as [`Logs::from_env`] says.
    pub fn start(backing: Backing) -> Result<Redis, FleetError> {
        Redis::start_with(backing, None, Logs::from_env())
    }

    /// Starts on `port` (the first shard's, the others on free ports) or on
    /// free ports, logging as `logs` says; waits until a cluster is formed.
    pub fn start_with(
        backing: Backing,
        port: Option<u16>,
        logs: Logs,
    ) -> Result<Redis, FleetError> {
        let shards = match backing {
            Backing::Standalone => 1,
            Backing::Cluster => 3,
        };
        let mut ports = Vec::with_capacity(shards);
        for i in 0..shards {
            ports.push(match port {
                Some(port) if i == 0 => port,
                _ => free_port()?,
            });
        }
        let dir = std::env::temp_dir().join(format!(
            "vc-fleet-redis-{}-{}",
            std::process::id(),
            ports[0]
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| FleetError::io(format!("creating {}", dir.display()), e))?;
        let mut redis = Redis {
            backing,
            ports,
            dir,
            logs,
            servers: Vec::new(),
        };
        redis.launch()?;
        if backing == Backing::Cluster {
            redis.create_cluster()?;
        }
        Ok(redis)
    }

    pub fn backing(&self) -> Backing {
        self.backing
    }

    /// Every shard's port; the first is the seed.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The running servers' pids (none while killed).
    pub fn pids(&self) -> Vec<u32> {
        self.servers.iter().map(Owned::pid).collect()
    }

    /// A seed URL: the first shard.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.ports[0])
    }

    /// The node settings that point a node at this Redis.
    pub fn node_env(&self) -> Vec<(String, String)> {
        let mut env = vec![("VC_REDIS__URL".to_owned(), self.url())];
        if self.backing == Backing::Cluster {
            env.push(("VC_REDIS__CLUSTER".to_owned(), "true".to_owned()));
            env.push(("VC_REDIS__SHARDED".to_owned(), "true".to_owned()));
        }
        env
    }

    /// SIGKILL every server: nothing is saved.
    pub fn kill(&mut self) {
        for mut server in self.servers.drain(..) {
            server.kill();
        }
    }

    /// Stops (if running) and starts again on the same ports, empty or with
    /// its keys. A cluster keeps its topology (its nodes.conf) either way and
    /// so comes back as the same cluster.
    pub fn restart(&mut self, data: Data) -> Result<(), FleetError> {
        match data {
            Data::Empty => {
                self.kill();
                for port in &self.ports {
                    std::fs::remove_file(self.dir.join(dump_file(*port))).ok();
                }
            }
            Data::Kept => self.shutdown_saving()?,
        }
        self.launch()?;
        if self.backing == Backing::Cluster {
            self.wait_cluster_ok()?;
        }
        Ok(())
    }

    /// Whether every server is running.
    pub fn running(&mut self) -> bool {
        !self.servers.is_empty() && self.servers.iter_mut().all(|s| s.exit_status().is_none())
    }

    fn shutdown_saving(&mut self) -> Result<(), FleetError> {
        for (port, mut server) in self.ports.clone().into_iter().zip(self.servers.drain(..)) {
            // SHUTDOWN SAVE writes the dump even with `--save ""`.
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
                stream.write_all(b"SHUTDOWN SAVE\r\n").ok();
                let mut ignored = Vec::new();
                stream.read_to_end(&mut ignored).ok();
            }
            if server.wait_for(STARTUP_LIMIT).is_none() {
                server.kill();
                return Err(FleetError::Timeout {
                    what: format!("redis on {port} to save and stop"),
                    limit: STARTUP_LIMIT,
                });
            }
        }
        Ok(())
    }

    fn command(&self, port: u16) -> Result<Command, FleetError> {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dbfilename", &dump_file(port)])
            .arg("--dir")
            .arg(&self.dir);
        if self.backing == Backing::Cluster {
            command
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--cluster-node-timeout", "2000"]);
        }
        let (stdout, stderr) = match &self.logs {
            Logs::Inherit | Logs::Discard => (Stdio::null(), Stdio::inherit()),
            dir @ Logs::Dir(_) => dir.streams(&format!("redis-{port}"))?,
        };
        command.stdout(stdout).stderr(stderr);
        Ok(command)
    }

    fn launch(&mut self) -> Result<(), FleetError> {
        for port in self.ports.clone() {
            let mut server = Owned::spawn(&mut self.command(port)?, REDIS_HINT)?;
            // A restarted server can fail to bind while the old one's sockets
            // (the port, or a cluster's bus port 10000 above it) are still
            // being torn down: start it again until it listens.
            wait_until(&format!("redis on {port}"), STARTUP_LIMIT, || {
                if accepts("127.0.0.1", port) {
                    return Ok(true);
                }
                if server.exit_status().is_some() {
                    std::thread::sleep(Duration::from_millis(250));
                    server = Owned::spawn(&mut self.command(port)?, REDIS_HINT)?;
                }
                Ok(false)
            })?;
            self.servers.push(server);
        }
        Ok(())
    }

    fn create_cluster(&self) -> Result<(), FleetError> {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .map_err(|source| FleetError::Spawn {
                program: "redis-cli".into(),
                hint: REDIS_HINT,
                source,
            })?;
        if !created.status.success() {
            return Err(FleetError::ClusterCreate(
                String::from_utf8_lossy(&created.stdout).into_owned(),
            ));
        }
        self.wait_cluster_ok()
    }

    fn wait_cluster_ok(&self) -> Result<(), FleetError> {
        wait_until(
            &format!("cluster_state:ok on {:?}", self.ports),
            STARTUP_LIMIT,
            || Ok(self.ports.iter().all(|port| cluster_ok(*port))),
        )
    }

    /// Where the servers keep their files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn dump_file(port: u16) -> String {
    format!("dump-{port}.rdb")
}

fn cluster_ok(port: u16) -> bool {
    Command::new("redis-cli")
        .args(["-p", &port.to_string(), "cluster", "info"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
        .unwrap_or(false)
}
