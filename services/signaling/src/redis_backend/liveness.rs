//! Node liveness: each node refreshes a key with a TTL; every node sweeps the
//! seats of nodes whose key has expired (killed without a goodbye), so that the
//! survivors see `peer-left` with reason `node-lost` and Redis keeps no ghosts.

use std::sync::Arc;

use redis::AsyncCommands;
use tracing::{info, warn};
use vc_protocol::RoomName;

use super::connection::{Connections, RedisConn};
use super::presence::parse_reason;
use super::{keys, scripts};
use crate::clock::unix_ms;
use crate::config::RedisSettings;
use crate::lifecycle::Phase;
use crate::metrics::Metrics;
use crate::publisher::Publisher;
use crate::vocabulary::{NodeId, PeerId};

/// Refreshes this node's liveness key and registration.
pub(super) async fn heartbeat(
    node: &NodeId,
    settings: &RedisSettings,
    commands: &mut RedisConn,
) -> redis::RedisResult<()> {
    let ttl_ms = u64::try_from(settings.node_ttl.as_millis()).unwrap_or(u64::MAX);
    // Two commands, not a pipeline: on a Redis Cluster the keys live on
    // different shards.
    redis::cmd("SET")
        .arg(keys::alive(node))
        .arg(unix_ms())
        .arg("PX")
        .arg(ttl_ms)
        .query_async::<()>(commands)
        .await?;
    commands.sadd::<_, _, ()>(keys::NODES, node.as_str()).await
}

/// What the heartbeat-and-sweep task works with.
pub(super) struct Liveness {
    pub node_id: NodeId,
    pub settings: RedisSettings,
    pub connections: Arc<Connections>,
    /// Announces the seats a sweep frees.
    pub publisher: Arc<Publisher>,
    pub metrics: Arc<Metrics>,
}

impl Liveness {
    /// Starts the heartbeat-and-sweep task. First sweeps what a previous process
    /// with this node's id left behind: a fresh process holds no seats.
    pub fn spawn(self, phase: tokio::sync::watch::Receiver<Phase>) {
        tokio::spawn(async move {
            if let Err(e) = self
                .sweep_node(&mut self.connections.commands(), &self.node_id)
                .await
            {
                warn!(error = %e, "sweeping a previous run's seats failed");
            }
            let mut ticker = tokio::time::interval(self.settings.heartbeat_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                // A stopping node has said goodbye; a heartbeat now would revive it.
                if *phase.borrow() == Phase::Stopping {
                    return;
                }
                // Taken anew each time and never kept: the supervisor may have
                // reopened the connections, and a stuck Cluster connection ends
                // only with its last handle.
                let mut commands = self.connections.commands();
                if let Err(e) = heartbeat(&self.node_id, &self.settings, &mut commands).await {
                    warn!(error = %e, "heartbeat failed");
                    continue;
                }
                if let Err(e) = self.sweep_dead_nodes(&mut commands).await {
                    warn!(error = %e, "sweep failed");
                }
            }
        });
    }

    async fn sweep_dead_nodes(&self, commands: &mut RedisConn) -> redis::RedisResult<()> {
        let nodes: Vec<String> = commands.smembers(keys::NODES).await?;
        // An entry that is not a node id was not written by a node: not ours
        // to sweep.
        let nodes = nodes.iter().filter_map(|n| NodeId::parse(n).ok());
        for node in nodes.filter(|n| *n != self.node_id) {
            let node = &node;
            let alive: bool = commands.exists(keys::alive(node)).await?;
            if alive {
                continue;
            }
            // One sweeper per dead node at a time; the lock expires by itself if
            // the sweeper dies too.
            let lock_ms =
                u64::try_from(self.settings.heartbeat_interval.as_millis() * 3).unwrap_or(u64::MAX);
            let locked: Option<String> = redis::cmd("SET")
                .arg(keys::sweep_lock(node))
                .arg(self.node_id.as_str())
                .arg("NX")
                .arg("PX")
                .arg(lock_ms)
                .query_async(commands)
                .await?;
            if locked.is_none() {
                continue;
            }
            self.sweep_node(commands, node).await?;
            let _: i64 = commands.del(keys::sweep_lock(node)).await?;
        }
        Ok(())
    }

    /// Frees the seats `node` held, announcing each departure to its room.
    async fn sweep_node(&self, commands: &mut RedisConn, node: &NodeId) -> redis::RedisResult<()> {
        let rooms: Vec<String> = commands.smembers(keys::node_rooms(node)).await?;
        let mut waiting_total = 0usize;
        // Only a room name can have keys of a room.
        for room in rooms.iter().filter_map(|r| RoomName::parse(r).ok()) {
            let room = &room;
            let reply: Vec<String> = scripts::SWEEP
                .key(keys::members(room))
                .key(keys::chat(room))
                .key(keys::seqs(room))
                .arg(node.as_str())
                .arg(unix_ms())
                .arg(keys::log_prefix(room))
                .invoke_async(commands)
                .await?;
            let Some((waiting, removed)) = reply.split_first() else {
                continue;
            };
            let waiting: usize = waiting.parse().unwrap_or(0);
            waiting_total += waiting;
            if waiting == 0 {
                let _: i64 = commands.srem(keys::node_rooms(node), room.as_str()).await?;
            }
            for pair in removed.chunks_exact(2) {
                // Seats are keyed by the peer ids nodes minted.
                let Ok(peer) = PeerId::parse(&pair[0]) else {
                    continue;
                };
                let reason = parse_reason(&pair[1]).unwrap_or(vc_protocol::LeaveReason::NodeLost);
                self.publisher.announce_departure(room, &peer, reason).await;
            }
            if !removed.is_empty() && *node != self.node_id {
                self.metrics
                    .peers_swept
                    .inc_by(u64::try_from(removed.len() / 2).unwrap_or(u64::MAX));
            }
            if !removed.is_empty() {
                info!(%room, dead_node = %node, seats = removed.len() / 2, "swept seats of a lost node");
            }
        }
        if waiting_total == 0 && *node != self.node_id {
            commands.del::<_, ()>(keys::node_rooms(node)).await?;
            commands
                .srem::<_, _, ()>(keys::NODES, node.as_str())
                .await?;
        }
        Ok(())
    }
}
