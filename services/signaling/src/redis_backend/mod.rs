//! The Redis backend that turns single nodes into a fleet, assembled from parts
//! with one job each over one shared pair of connections (`connection.rs`):
//! [`bus::RedisBus`] (pub/sub, one channel per room), [`presence::RedisPresence`]
//! (one hash per room, changed by the Lua scripts of `scripts.rs`), the
//! connection supervisor and the resync after an outage, the liveness heartbeat
//! and sweep, and the key names (`keys.rs`).
//!
//! Built in two steps, because the room core is built over the bus and presence
//! while the backend's own tasks announce through the room core's publisher:
//! [`RedisBackend::connect`] opens the connections and starts delivering to the
//! node's sink; [`RedisBackend::start`] starts the supervisor and the liveness
//! task once the node has its [`Publisher`] and [`HeldSeats`].

pub mod bus;
mod connection;
mod keys;
mod liveness;
pub mod presence;
mod resync;
mod scripts;
mod supervisor;

use std::sync::Arc;

use redis::AsyncCommands;
use tracing::{info, warn};

use crate::config::Settings;
use crate::envelope::EnvelopeSink;
use crate::held_seats::HeldSeats;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::publisher::Publisher;
use crate::vocabulary::NodeId;
use bus::RedisBus;
use connection::Connections;
use liveness::Liveness;
use presence::RedisPresence;
use resync::Resync;
use supervisor::Supervisor;

#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    #[error("redis.url: {0}")]
    Url(#[source] redis::RedisError),
    #[error("connecting to Redis: {0}")]
    Connect(#[source] redis::RedisError),
}

pub struct RedisBackend {
    node_id: NodeId,
    settings: crate::config::RedisSettings,
    connections: Arc<Connections>,
    bus: Arc<RedisBus>,
    presence: Arc<RedisPresence>,
    sink: Arc<dyn EnvelopeSink>,
    metrics: Arc<Metrics>,
}

impl RedisBackend {
    /// Connects both managers and starts handing pub/sub messages to `sink`.
    /// Fails if Redis cannot be reached at start: a node that never had a bus
    /// should not report ready.
    pub async fn connect(
        node_id: &NodeId,
        all: &Settings,
        sink: Arc<dyn EnvelopeSink>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, RedisSetupError> {
        let settings = &all.redis;
        if let Err(e) = redis::IntoConnectionInfo::into_connection_info(settings.url.as_str()) {
            return Err(RedisSetupError::Url(e));
        }
        let (connections, pushes) = Connections::open(settings)
            .await
            .map_err(RedisSetupError::Connect)?;
        let connections = Arc::new(connections);
        tokio::spawn(bus::deliver_pushes(
            pushes,
            Arc::clone(&sink),
            Arc::clone(&connections),
        ));
        let (gaps, skipped) = tokio::sync::mpsc::unbounded_channel();
        sink.report_gaps_to(gaps);
        info!(url = %redacted_url(&settings.url), sharded = settings.sharded, "connected to Redis");
        let bus = Arc::new(RedisBus::new(
            Arc::clone(&connections),
            settings,
            &all.chat,
            &all.replay,
            all.resume.window,
        ));
        tokio::spawn(resync::mend_gaps(
            skipped,
            Arc::clone(&bus),
            Arc::clone(&sink),
            Arc::clone(&metrics),
        ));
        Ok(Self {
            node_id: node_id.clone(),
            settings: settings.clone(),
            bus,
            presence: Arc::new(RedisPresence::new(node_id, Arc::clone(&connections))),
            connections,
            sink,
            metrics,
        })
    }

    pub fn bus(&self) -> Arc<RedisBus> {
        Arc::clone(&self.bus)
    }

    pub fn presence(&self) -> Arc<RedisPresence> {
        Arc::clone(&self.presence)
    }

    /// Starts the supervisor (pings, and the resync after an outage, which
    /// writes `held` back) and the liveness task (heartbeat and sweeps), both
    /// announcing through `publisher`; they end when the node stops.
    pub fn start(&self, publisher: Arc<Publisher>, held: Arc<HeldSeats>, lifecycle: &Lifecycle) {
        let resync = Resync {
            node_id: self.node_id.clone(),
            settings: self.settings.clone(),
            connections: Arc::clone(&self.connections),
            bus: Arc::clone(&self.bus),
            sink: Arc::clone(&self.sink),
            presence: Arc::clone(&self.presence),
            held,
            publisher: Arc::clone(&publisher),
            metrics: Arc::clone(&self.metrics),
        };
        Supervisor {
            connections: Arc::clone(&self.connections),
            resync,
        }
        .spawn(lifecycle.subscribe());
        Liveness {
            node_id: self.node_id.clone(),
            settings: self.settings.clone(),
            connections: Arc::clone(&self.connections),
            publisher,
            metrics: Arc::clone(&self.metrics),
        }
        .spawn(lifecycle.subscribe());
    }

    /// Says goodbye on a graceful exit: the liveness key goes at once, so the
    /// other nodes sweep this node's remaining seats after their resume windows
    /// instead of waiting for the key to expire.
    pub async fn deregister(&self) {
        let mut commands = self.connections.commands();
        if let Err(e) = commands.del::<_, i64>(keys::alive(&self.node_id)).await {
            warn!(error = %e, "could not deregister from Redis");
        }
    }
}

fn redacted_url(url: &str) -> String {
    match url
        .split_once("://")
        .and_then(|(s, rest)| rest.rsplit_once('@').map(|(_, h)| (s, h)))
    {
        Some((scheme, host)) => format!("{scheme}://<redacted>@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(
            redacted_url("redis://:pw@h:6379/0"),
            "redis://<redacted>@h:6379/0"
        );
        assert_eq!(redacted_url("redis://h:6379"), "redis://h:6379");
    }
}
