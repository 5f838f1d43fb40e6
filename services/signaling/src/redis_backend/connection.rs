//! The backend's connections: one connection type for a standalone Redis and a
//! Redis Cluster, so that commands, scripts and subscriptions are written once;
//! and [`Connections`], the pair that the bus, presence, liveness and resync
//! share, with whether they are up.
//!
//! Two connection managers: `commands` (publish, scripts, heartbeats) and
//! `subscriber` (SUBSCRIBE/SSUBSCRIBE, with RESP3 pushes to a channel).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::{Cmd, Pipeline, ProtocolVersion, PushInfo, RedisFuture, RedisResult, Value};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tracing::{info, warn};

use crate::config::RedisSettings;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a Redis command may take before it counts as failed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The connection pair of one node, and whether the supervisor last found it up.
pub struct Connections {
    commands: RedisConn,
    subscriber: RedisConn,
    connected: AtomicBool,
}

impl Connections {
    /// Opens both; what the subscriber receives comes out of the returned channel.
    pub async fn open(
        settings: &RedisSettings,
    ) -> RedisResult<(Self, UnboundedReceiver<PushInfo>)> {
        let commands = open(settings, RESPONSE_TIMEOUT, None).await?;
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let subscriber = open(settings, RESPONSE_TIMEOUT, Some(push_tx)).await?;
        let connections = Self {
            commands,
            subscriber,
            connected: AtomicBool::new(true),
        };
        Ok((connections, push_rx))
    }

    /// The command connection (a cheap clone of a multiplexed handle).
    pub fn commands(&self) -> RedisConn {
        self.commands.clone()
    }

    /// The subscriber connection.
    pub fn subscriber(&self) -> RedisConn {
        self.subscriber.clone()
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
            .response_timeout(response_timeout);
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
