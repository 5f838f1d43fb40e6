//! The connection supervisor: pings both connections every [`PING_INTERVAL`]; a
//! failed ping marks the bus disconnected (as does a disconnection push on the
//! subscriber, see [`super::bus::deliver_pushes`]), and the first good ping after
//! an outage hands over to the [`Resync`], which reports connected again once
//! the node is whole.
//!
//! On a Redis Cluster, an outage that outlasts [`REOPEN_AFTER`] (pings or the
//! resync still failing) makes the supervisor open a new connection pair in
//! place of the old one, and again every [`REOPEN_AFTER`] while it lasts: the
//! redis crate's Cluster connection can be stuck for good after every master
//! restarted (see `connection.rs`), while a new one finds the Cluster at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use super::connection::{Connections, REOPEN_AFTER};
use super::resync::Resync;
use crate::lifecycle::Phase;

/// How often the supervisor checks both connections.
const PING_INTERVAL: Duration = Duration::from_millis(500);

pub(super) struct Supervisor {
    pub connections: Arc<Connections>,
    pub resync: Resync,
}

impl Supervisor {
    /// Starts the supervising task; it ends when the node stops.
    pub fn spawn(self, phase: tokio::sync::watch::Receiver<Phase>) {
        tokio::spawn(self.run(phase));
    }

    async fn run(self, mut phase: tokio::sync::watch::Receiver<Phase>) {
        let mut ticker = tokio::time::interval(PING_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Since when the connections have been unusable (or last reopened).
        let mut failing_since: Option<Instant> = None;
        while crate::lifecycle::next_tick(&mut ticker, &mut phase).await {
            if !self.ping().await {
                self.connections.set_connected(false);
            } else if !self.connections.is_connected() {
                if let Err(e) = self.resync.run().await {
                    warn!(error = %e, "resync after outage failed; retrying");
                }
            }
            if self.connections.is_connected() {
                failing_since = None;
                continue;
            }
            let since = *failing_since.get_or_insert_with(Instant::now);
            if self.connections.is_cluster() && since.elapsed() >= REOPEN_AFTER {
                failing_since = Some(Instant::now());
                if let Err(e) = self.connections.reopen().await {
                    warn!(error = %e, "reopening the Redis Cluster connections failed; retrying");
                }
            }
        }
    }

    async fn ping(&self) -> bool {
        let mut commands = self.connections.commands();
        let mut subscriber = self.connections.subscriber();
        let a: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut commands).await;
        let b: redis::RedisResult<redis::Value> =
            redis::cmd("PING").query_async(&mut subscriber).await;
        a.is_ok() && b.is_ok()
    }
}
