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

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let mut redis = RedisServer {
            port: free_port(),
            child: None,
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port, with nothing persisted: a restart loses
    /// every key, as a crashed cache would.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (apt-get install redis-server)");
        self.child = Some(child);
        wait_until("redis accepts connections", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("test connects to redis")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
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
    pub fn start(id: &str, redis_url: &str, env: &[(&str, &str)]) -> NodeProcess {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_vc-signaling"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("VC_SERVER__HOST", "127.0.0.1")
            .env("VC_SERVER__PORT", port.to_string())
            .env("VC_SERVER__WORKERS", "1")
            .env("VC_NODE__ID", id)
            .env("VC_REDIS__URL", redis_url)
            .env("VC_TELEMETRY__LOG_LEVEL", "warn")
            .stdout(Stdio::null());
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
