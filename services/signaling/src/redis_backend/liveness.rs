//! Node liveness: each node refreshes a key with a TTL; every node sweeps the
//! seats of nodes whose key has expired (killed without a goodbye), so that the
//! survivors see `peer-left` with reason `node-lost` and Redis keeps no ghosts.

use std::sync::Arc;

use redis::AsyncCommands;
use tracing::{info, warn};

use super::connection::RedisConn;
use super::{chat_key, members_key, node_rooms_key, scripts, RedisBackend};
use crate::bus::{Bus, Envelope, Event};
use crate::clock::{unix_ms, unix_us};
use crate::config::RedisSettings;
use crate::lifecycle::Phase;

/// The set of every node that registered.
const NODES_KEY: &str = "vc:nodes";

pub(super) fn alive_key(node: &str) -> String {
    format!("vc:node:{node}:alive")
}

fn sweep_lock_key(node: &str) -> String {
    format!("vc:node:{node}:sweeping")
}

/// Refreshes this node's liveness key and registration.
pub(super) async fn heartbeat(
    node: &str,
    settings: &RedisSettings,
    commands: &mut RedisConn,
) -> redis::RedisResult<()> {
    let ttl_ms = u64::try_from(settings.node_ttl.as_millis()).unwrap_or(u64::MAX);
    // Two commands, not a pipeline: on a Redis Cluster the keys live on
    // different shards.
    redis::cmd("SET")
        .arg(alive_key(node))
        .arg(unix_ms())
        .arg("PX")
        .arg(ttl_ms)
        .query_async::<()>(commands)
        .await?;
    commands.sadd::<_, _, ()>(NODES_KEY, node).await
}

/// Starts the heartbeat-and-sweep task. First sweeps what a previous process
/// with this node's id left behind: a fresh process holds no seats.
pub fn spawn_liveness(backend: Arc<RedisBackend>, phase: tokio::sync::watch::Receiver<Phase>) {
    tokio::spawn(async move {
        let mut commands = backend.commands.clone();
        if let Err(e) = sweep_node(&backend, &mut commands, &backend.node_id).await {
            warn!(error = %e, "sweeping a previous run's seats failed");
        }
        let mut ticker = tokio::time::interval(backend.settings.heartbeat_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            // A stopping node has said goodbye; a heartbeat now would revive it.
            if *phase.borrow() == Phase::Stopping {
                return;
            }
            if let Err(e) = heartbeat(&backend.node_id, &backend.settings, &mut commands).await {
                warn!(error = %e, "heartbeat failed");
                continue;
            }
            if let Err(e) = sweep_dead_nodes(&backend, &mut commands).await {
                warn!(error = %e, "sweep failed");
            }
        }
    });
}

async fn sweep_dead_nodes(
    backend: &RedisBackend,
    commands: &mut RedisConn,
) -> redis::RedisResult<()> {
    let nodes: Vec<String> = commands.smembers(NODES_KEY).await?;
    for node in nodes.iter().filter(|n| **n != backend.node_id) {
        let alive: bool = commands.exists(alive_key(node)).await?;
        if alive {
            continue;
        }
        // One sweeper per dead node at a time; the lock expires by itself if the
        // sweeper dies too.
        let lock_ms =
            u64::try_from(backend.settings.heartbeat_interval.as_millis() * 3).unwrap_or(u64::MAX);
        let locked: Option<String> = redis::cmd("SET")
            .arg(sweep_lock_key(node))
            .arg(&backend.node_id)
            .arg("NX")
            .arg("PX")
            .arg(lock_ms)
            .query_async(commands)
            .await?;
        if locked.is_none() {
            continue;
        }
        sweep_node(backend, commands, node).await?;
        let _: i64 = commands.del(sweep_lock_key(node)).await?;
    }
    Ok(())
}

/// Frees the seats `node` held, announcing each departure to its room.
async fn sweep_node(
    backend: &RedisBackend,
    commands: &mut RedisConn,
    node: &str,
) -> redis::RedisResult<()> {
    let rooms: Vec<String> = commands.smembers(node_rooms_key(node)).await?;
    let mut waiting_total = 0usize;
    for room in &rooms {
        let reply: Vec<String> = scripts::SWEEP
            .key(members_key(room))
            .key(chat_key(room))
            .arg(node)
            .arg(unix_ms())
            .invoke_async(commands)
            .await?;
        let Some((waiting, removed)) = reply.split_first() else {
            continue;
        };
        let waiting: usize = waiting.parse().unwrap_or(0);
        waiting_total += waiting;
        if waiting == 0 {
            let _: i64 = commands.srem(node_rooms_key(node), room).await?;
        }
        for pair in removed.chunks_exact(2) {
            let reason =
                super::parse_reason(&pair[1]).unwrap_or(vc_protocol::LeaveReason::NodeLost);
            let envelope = Envelope {
                room: room.clone(),
                origin: backend.node_id.clone(),
                sent_at_us: unix_us(),
                traceparent: None,
                event: Event::PeerLeft {
                    peer: pair[0].clone(),
                    reason,
                },
            };
            if let Err(e) = backend.publish(&envelope).await {
                warn!(%room, error = %e, "announcing a swept seat failed");
            }
        }
        if !removed.is_empty() && node != backend.node_id {
            backend
                .metrics
                .peers_swept
                .inc_by(u64::try_from(removed.len() / 2).unwrap_or(u64::MAX));
        }
        if !removed.is_empty() {
            info!(%room, dead_node = %node, seats = removed.len() / 2, "swept seats of a lost node");
        }
    }
    if waiting_total == 0 && node != backend.node_id {
        commands.del::<_, ()>(node_rooms_key(node)).await?;
        commands.srem::<_, _, ()>(NODES_KEY, node).await?;
    }
    Ok(())
}
