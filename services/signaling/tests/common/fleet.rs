//! Real processes for multi-node tests: a redis-server and signaling nodes, each
//! on a free loopback port, killed when dropped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// What the fleet runs on: one standalone `redis-server`, or a three-shard Redis
/// Cluster made with `redis-cli --cluster create`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    Standalone,
    Cluster,
}

pub struct RedisServer {
    pub backing: Backing,
    ports: Vec<u16>,
    dir: std::path::PathBuf,
    children: Vec<Child>,
    /// Whether the cluster has been created (so a restart must wait for it).
    formed: bool,
}

impl RedisServer {
    pub fn start(backing: Backing) -> RedisServer {
        let shards = match backing {
            Backing::Standalone => 1,
            Backing::Cluster => 3,
        };
        let dir =
            std::env::temp_dir().join(format!("vc-redis-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut redis = RedisServer {
            backing,
            ports: (0..shards).map(|_| free_port()).collect(),
            dir,
            children: Vec::new(),
            formed: false,
        };
        redis.restart();
        if backing == Backing::Cluster {
            let nodes: Vec<String> = redis
                .ports
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect();
            let created = Command::new("redis-cli")
                .args(["--cluster", "create"])
                .args(&nodes)
                .args(["--cluster-replicas", "0", "--cluster-yes"])
                .output()
                .expect("redis-cli runs (apt-get install redis-tools)");
            assert!(
                created.status.success(),
                "cluster create failed: {}",
                String::from_utf8_lossy(&created.stdout)
            );
            redis.wait_cluster_ok();
            redis.formed = true;
        }
        redis
    }

    /// A seed URL: the first shard.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.ports[0])
    }

    /// The node settings that point at this Redis.
    pub fn node_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("VC_REDIS__URL", self.url())];
        if self.backing == Backing::Cluster {
            env.push(("VC_REDIS__CLUSTER", "true".into()));
            env.push(("VC_REDIS__SHARDED", "true".into()));
        }
        env
    }

    /// Starts (again) on the same ports, with no data persisted: a restart loses
    /// every key, as a crashed cache would. A cluster keeps its topology (its
    /// nodes.conf) and so comes back as the same cluster.
    pub fn restart(&mut self) {
        for port in self.ports.clone() {
            let mut command = Command::new("redis-server");
            command
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&self.dir)
                .stdout(Stdio::null());
            if self.backing == Backing::Cluster {
                command
                    .args(["--cluster-enabled", "yes"])
                    .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                    .args(["--cluster-node-timeout", "2000"]);
            }
            // A restarted server can fail to bind while the old one's sockets (the
            // port, or a cluster's bus port 10000 above it) are still being torn
            // down: start it again until it listens.
            let mut child = command
                .spawn()
                .expect("redis-server runs (apt-get install redis-server)");
            wait_until("redis accepts connections", Duration::from_secs(20), || {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return true;
                }
                if matches!(child.try_wait(), Ok(Some(_))) {
                    std::thread::sleep(Duration::from_millis(250));
                    child = command
                        .spawn()
                        .expect("redis-server runs (apt-get install redis-server)");
                }
                false
            });
            self.children.push(child);
        }
        if self.formed {
            self.wait_cluster_ok();
        }
    }

    fn wait_cluster_ok(&self) {
        wait_until(
            &format!("cluster_state:ok on {:?}", self.ports),
            Duration::from_secs(20),
            || {
                self.ports.iter().all(|port| {
                    Command::new("redis-cli")
                        .args(["-p", &port.to_string(), "cluster", "info"])
                        .output()
                        .map(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
                        .unwrap_or(false)
                })
            },
        );
    }

    pub fn kill(&mut self) {
        for mut child in self.children.drain(..) {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// The fields of a hash, wherever its slot lives.
    pub async fn hkeys(&self, key: &str) -> Vec<String> {
        let mut cmd = redis::cmd("HKEYS");
        cmd.arg(key);
        self.query(cmd).await
    }

    /// Whether a key exists, wherever its slot lives.
    pub async fn exists(&self, key: &str) -> bool {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(key);
        self.query::<i64>(cmd).await == 1
    }

    /// The length of a list, wherever its slot lives.
    pub async fn llen(&self, key: &str) -> usize {
        let mut cmd = redis::cmd("LLEN");
        cmd.arg(key);
        self.query(cmd).await
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> T {
        match self.backing {
            Backing::Standalone => {
                let mut conn = redis::Client::open(self.url())
                    .expect("url")
                    .get_multiplexed_async_connection()
                    .await
                    .expect("test connects to redis");
                cmd.query_async(&mut conn).await.expect("redis answers")
            }
            Backing::Cluster => {
                let mut conn = redis::cluster::ClusterClient::new(vec![self.url()])
                    .expect("cluster client")
                    .get_async_connection()
                    .await
                    .expect("test connects to the cluster");
                cmd.query_async(&mut conn).await.expect("redis answers")
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

pub struct NodeProcess {
    pub id: String,
    pub port: u16,
    child: Option<Child>,
}

/// Quick timers so that faults show within seconds.
pub const FAST_TIMERS: [(&str, &str); 5] = [
    ("VC_REDIS__HEARTBEAT_INTERVAL", "300ms"),
    ("VC_REDIS__NODE_TTL", "1500ms"),
    ("VC_RESUME__WINDOW", "3s"),
    ("VC_DRAIN__TIMEOUT", "10s"),
    ("VC_SERVER__SHUTDOWN_TIMEOUT", "2s"),
];

impl NodeProcess {
    /// Starts a node on the fleet's Redis and waits until it is ready.
    pub fn start(id: &str, redis: &RedisServer, env: &[(&str, &str)]) -> NodeProcess {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_vc-signaling"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("VC_SERVER__HOST", "127.0.0.1")
            .env("VC_SERVER__PORT", port.to_string())
            .env("VC_SERVER__WORKERS", "1")
            .env("VC_NODE__ID", id)
            .env("VC_TELEMETRY__LOG_LEVEL", "warn")
            .stdout(Stdio::null());
        // Node logs only when asked: expected faults (a killed Redis) log warnings.
        if std::env::var_os("VC_TEST_NODE_LOGS").is_none() {
            command.stderr(Stdio::null());
        }
        for (key, value) in redis.node_env() {
            command.env(key, value);
        }
        for (key, value) in FAST_TIMERS.iter().chain(env) {
            command.env(key, value);
        }
        let child = command.spawn().expect("node binary runs");
        let node = NodeProcess {
            id: id.to_owned(),
            port,
            child: Some(child),
        };
        node.wait_ready(true, Duration::from_secs(15));
        node
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    /// GET /readyz: Some(true) ready, Some(false) not ready, None unreachable.
    pub fn ready(&self) -> Option<bool> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        Some(response.starts_with("HTTP/1.1 200"))
    }

    pub fn wait_ready(&self, ready: bool, limit: Duration) {
        wait_until(&format!("node {} ready={ready}", self.id), limit, || {
            self.ready() == Some(ready)
        });
    }

    /// SIGKILL: no goodbye, no drain.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// SIGTERM: the node drains.
    pub fn terminate(&self) {
        if let Some(child) = &self.child {
            let pid = child.id().to_string();
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .expect("kill runs");
        }
    }

    /// Waits for the process to exit by itself; returns how long it took.
    pub fn wait_exit(&mut self, limit: Duration) -> Duration {
        let start = Instant::now();
        let Some(child) = self.child.as_mut() else {
            return Duration::ZERO;
        };
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                assert!(status.success(), "node exited with {status}");
                self.child = None;
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "node did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `condition` until it holds, or fails the test naming `what`.
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
