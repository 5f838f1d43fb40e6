//! Real processes for multi-node tests come from the vc-fleet crate; this
//! adds the test defaults (quick timers, one worker) and what tests ask a
//! Redis about.

use vc_fleet::NodeSpec;
pub use vc_fleet::{Backing, Node, Redis};

/// Quick timers so that faults show within seconds.
pub const FAST_TIMERS: [(&str, &str); 5] = [
    ("VC_REDIS__HEARTBEAT_INTERVAL", "300ms"),
    ("VC_REDIS__NODE_TTL", "1500ms"),
    ("VC_RESUME__WINDOW", "3s"),
    ("VC_DRAIN__TIMEOUT", "10s"),
    ("VC_SERVER__SHUTDOWN_TIMEOUT", "2s"),
];

/// A Redis of the given kind, on free ports.
pub fn redis(backing: Backing) -> Redis {
    Redis::start(backing).expect("redis starts (apt-get install redis-server redis-tools)")
}

/// A node on `redis`, ready, with the test timers and then `env` on top.
pub fn node(id: &str, redis: &Redis, env: &[(&str, &str)]) -> Node {
    let mut spec = NodeSpec::new(id, env!("CARGO_BIN_EXE_vc-signaling"))
        .set("VC_SERVER__WORKERS", "1")
        .set("VC_TELEMETRY__LOG_LEVEL", "warn");
    spec.ready_limit = std::time::Duration::from_secs(15);
    spec.env.extend(redis.node_env());
    for (key, value) in FAST_TIMERS.iter().chain(env) {
        spec = spec.set(*key, *value);
    }
    Node::start(spec).expect("node starts")
}

/// A Redis and `count` nodes on it, named node-0, node-1, …
pub fn fleet(backing: Backing, count: usize, env: &[(&str, &str)]) -> (Redis, Vec<Node>) {
    let redis = redis(backing);
    let nodes = (0..count)
        .map(|i| node(&format!("node-{i}"), &redis, env))
        .collect();
    (redis, nodes)
}

/// Key lookups wherever a key's slot lives.
#[allow(
    async_fn_in_trait,
    reason = "used by these tests only, never as dyn or across threads"
)]
pub trait Keys {
    async fn hkeys(&self, key: &str) -> Vec<String>;
    async fn exists(&self, key: &str) -> bool;
    async fn llen(&self, key: &str) -> usize;
    async fn hget(&self, key: &str, field: &str) -> Option<String>;
}

impl Keys for Redis {
    /// The fields of a hash.
    async fn hkeys(&self, key: &str) -> Vec<String> {
        let mut cmd = redis::cmd("HKEYS");
        cmd.arg(key);
        query(self, cmd).await
    }

    async fn exists(&self, key: &str) -> bool {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(key);
        query::<i64>(self, cmd).await == 1
    }

    async fn llen(&self, key: &str) -> usize {
        let mut cmd = redis::cmd("LLEN");
        cmd.arg(key);
        query(self, cmd).await
    }

    /// One field of a hash, if it is there.
    async fn hget(&self, key: &str, field: &str) -> Option<String> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(key).arg(field);
        query(self, cmd).await
    }
}

async fn query<T: redis::FromRedisValue>(server: &Redis, cmd: redis::Cmd) -> T {
    match server.backing() {
        Backing::Standalone => {
            let mut conn = redis::Client::open(server.url())
                .expect("url")
                .get_multiplexed_async_connection()
                .await
                .expect("test connects to redis");
            cmd.query_async(&mut conn).await.expect("redis answers")
        }
        Backing::Cluster => {
            let mut conn = redis::cluster::ClusterClient::new(vec![server.url()])
                .expect("cluster client")
                .get_async_connection()
                .await
                .expect("test connects to the cluster");
            cmd.query_async(&mut conn).await.expect("redis answers")
        }
    }
}
