//! The backend's connections: one connection type for a standalone Redis and a
//! Redis Cluster, so that commands, scripts and subscriptions are written once;
//! and [`Connections`], the pair that the bus, presence, liveness and resync
//! share, with whether they are up.
//!
//! Two connection managers: `commands` (publish, scripts, heartbeats) and
//! `subscriber` (SUBSCRIBE/SSUBSCRIBE, with RESP3 pushes to a channel).
//!
//! A standalone connection manager reconnects by itself. A Cluster connection
//! of the redis crate can get stuck after every master restarted: once its map
//! of node connections is empty it retries a slot refresh over no connections
//! forever (`slot refresh failed: No connections found`), and every command
//! fails. [`Connections::reopen`] replaces such a pair with new connections,
//! which the supervisor calls when an outage outlasts [`REOPEN_AFTER`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::{Cmd, Pipeline, ProtocolVersion, PushInfo, RedisFuture, RedisResult, Value};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tracing::{info, warn};

use crate::config::RedisSettings;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a Redis command may take before it counts as failed; on a Cluster,
/// with every retry of the command included.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a Cluster connection may stay unusable before the supervisor
/// replaces it with a new one: longer than a Cluster takes to form again after
/// a restart, so a connection that repairs itself is left to do so.
pub const REOPEN_AFTER: Duration = Duration::from_secs(3);
/// Shortest and longest wait (ms) before a Cluster command is retried after
/// `CLUSTERDOWN` or `TRYAGAIN` (a restarted Cluster forming again). The redis
/// crate's own shortest is 1.28 s, which leaves no second try within
/// [`RESPONSE_TIMEOUT`].
const CLUSTER_RETRY_WAIT_MS: (u64, u64) = (50, 500);

/// The connection pair of one node, and whether the supervisor last found it up.
pub struct Connections {
    settings: RedisSettings,
    pair: ArcSwap<Pair>,
    /// Where a reopened subscriber sends what it receives.
    pushes: UnboundedSender<PushInfo>,
    connected: AtomicBool,
}

struct Pair {
    commands: RedisConn,
    subscriber: RedisConn,
}

impl Connections {
    /// Opens both; what the subscriber receives comes out of the returned channel.
    pub async fn open(
        settings: &RedisSettings,
    ) -> RedisResult<(Self, UnboundedReceiver<PushInfo>)> {
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let pair = open_pair(settings, &push_tx).await?;
        let connections = Self {
            settings: settings.clone(),
            pair: ArcSwap::from_pointee(pair),
            pushes: push_tx,
            connected: AtomicBool::new(true),
        };
        Ok((connections, push_rx))
    }

    /// The command connection (a cheap clone of a multiplexed handle).
    pub fn commands(&self) -> RedisConn {
        self.pair.load().commands.clone()
    }

    /// The subscriber connection.
    pub fn subscriber(&self) -> RedisConn {
        self.pair.load().subscriber.clone()
    }

    /// Whether the pair is on a Redis Cluster, whose connections may need
    /// [`Connections::reopen`].
    pub fn is_cluster(&self) -> bool {
        self.settings.cluster
    }

    /// Opens a new pair and puts it in place of the current one, which goes
    /// away with its last clone; on an error the current pair stays. The new
    /// subscriber has no subscriptions: call this only while the bus is marked
    /// disconnected, so that the resync subscribes every room again.
    pub async fn reopen(&self) -> RedisResult<()> {
        let pair = open_pair(&self.settings, &self.pushes).await?;
        self.pair.store(Arc::new(pair));
        info!("Redis connections reopened");
        Ok(())
    }

    /// Whether both connections answered the last ping and any outage since
    /// was resynced.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// Records the state the supervisor found; a change is logged once.
    pub fn set_connected(&self, up: bool) {
        if self.connected.swap(up, Ordering::SeqCst) != up {
            if up {
                info!("Redis bus connected");
            } else {
                warn!("Redis bus disconnected: not ready until it returns");
            }
        }
    }
}

#[derive(Clone)]
pub enum RedisConn {
    /// A standalone Redis (or a primary behind a proxy), reconnecting by itself.
    Single(ConnectionManager),
    /// A Redis Cluster: commands follow their key's slot to its shard.
    Cluster(ClusterConnection),
}

async fn open_pair(
    settings: &RedisSettings,
    pushes: &UnboundedSender<PushInfo>,
) -> RedisResult<Pair> {
    Ok(Pair {
        commands: open(settings, RESPONSE_TIMEOUT, None).await?,
        subscriber: open(settings, RESPONSE_TIMEOUT, Some(pushes.clone())).await?,
    })
}

/// Opens a RESP3 connection; pub/sub messages go to `pushes` when given.
async fn open(
    settings: &RedisSettings,
    response_timeout: Duration,
    pushes: Option<UnboundedSender<PushInfo>>,
) -> RedisResult<RedisConn> {
    let info = redis::IntoConnectionInfo::into_connection_info(settings.url.as_str())?;
    let resp3 = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    // Nagle's algorithm holds a small write back until the previous one is
    // acknowledged, and the peer delays its ACK: pipelined PUBLISHes then wait up
    // to 40 ms. Signaling is nothing but small writes.
    let tcp = TcpSettings::default().set_nodelay(true);
    let info = info.set_redis_settings(resp3).set_tcp_settings(tcp.clone());
    if settings.cluster {
        let mut builder = ClusterClientBuilder::new(vec![info])
            .tcp_settings(tcp)
            .use_protocol(ProtocolVersion::RESP3)
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(response_timeout)
            .min_retry_wait(CLUSTER_RETRY_WAIT_MS.0)
            .max_retry_wait(CLUSTER_RETRY_WAIT_MS.1);
        if let Some(pushes) = pushes {
            builder = builder.push_sender(pushes);
        }
        let client = builder.build()?;
        return Ok(RedisConn::Cluster(client.get_async_connection().await?));
    }
    let mut config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(response_timeout))
        .set_max_delay(settings.max_backoff);
    if let Some(pushes) = pushes {
        config = config.set_push_sender(pushes);
    }
    let client = redis::Client::open(info)?;
    Ok(RedisConn::Single(
        client.get_connection_manager_with_config(config).await?,
    ))
}

impl RedisConn {
    pub async fn subscribe(&mut self, channel: &str, sharded: bool) -> RedisResult<()> {
        match (self, sharded) {
            (RedisConn::Cluster(c), true) => c.ssubscribe(channel).await,
            (RedisConn::Cluster(c), false) => c.subscribe(channel).await,
            // A standalone Redis 7 answers SSUBSCRIBE like SUBSCRIBE.
            (RedisConn::Single(c), true) => {
                redis::cmd("SSUBSCRIBE")
                    .arg(channel)
                    .query_async::<()>(c)
                    .await
            }
            (RedisConn::Single(c), false) => c.subscribe(channel).await,
        }
    }

    pub async fn unsubscribe(&mut self, channel: &str, sharded: bool) -> RedisResult<()> {
        match (self, sharded) {
            (RedisConn::Cluster(c), true) => c.sunsubscribe(channel).await,
            (RedisConn::Cluster(c), false) => c.unsubscribe(channel).await,
            (RedisConn::Single(c), true) => {
                redis::cmd("SUNSUBSCRIBE")
                    .arg(channel)
                    .query_async::<()>(c)
                    .await
            }
            (RedisConn::Single(c), false) => c.unsubscribe(channel).await,
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}
