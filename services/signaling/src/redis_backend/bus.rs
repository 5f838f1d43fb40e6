//! `RedisBus`: the bus of a fleet, on Redis pub/sub, one channel per room
//! (`SUBSCRIBE`/`PUBLISH`, or `SSUBSCRIBE`/`SPUBLISH` with `redis.sharded`).
//!
//! Subscriptions are counted per room and each room is (un)subscribed under its
//! own lock, held across the round trip, so that a slow `SUBSCRIBE` delays only
//! its own room. What the subscriber connection receives is decoded by
//! `deliver_pushes` and handed to the node's [`EnvelopeSink`].

use std::sync::Arc;

use async_trait::async_trait;
use redis::{AsyncCommands, PushKind};
use tokio::sync::mpsc;
use tracing::warn;
use vc_protocol::RoomName;

use super::connection::Connections;
use super::{keys, scripts};
use crate::bus::room_locks::RoomLocks;
use crate::bus::{Bus, BusError, SeatLog};
use crate::config::{ChatSettings, RedisSettings, ReplaySettings};
use crate::envelope::{Envelope, EnvelopeSink, Recipients};
use crate::vocabulary::PeerId;

pub struct RedisBus {
    connections: Arc<Connections>,
    sharded: bool,
    chat: ChatSettings,
    replay: ReplaySettings,
    /// How long a seat's replay buffer lives past its last entry, in ms.
    buffer_lifetime_ms: u64,
    /// Each room's count of local subscriptions, under the room's own lock.
    subscriptions: RoomLocks<usize>,
}

impl RedisBus {
    pub(super) fn new(
        connections: Arc<Connections>,
        settings: &RedisSettings,
        chat: &ChatSettings,
        replay: &ReplaySettings,
        window: std::time::Duration,
    ) -> Self {
        Self {
            connections,
            sharded: settings.sharded,
            chat: chat.clone(),
            replay: replay.clone(),
            // At least a second: PEXPIRE 0 would delete the entry just kept.
            buffer_lifetime_ms: u64::try_from(window.as_millis())
                .unwrap_or(u64::MAX)
                .max(1000),
            subscriptions: RoomLocks::new(),
        }
    }

    /// Subscribes again every room that has local subscriptions: a connection
    /// that came back has none. Returns how many rooms it subscribed.
    pub(super) async fn resubscribe(&self) -> redis::RedisResult<usize> {
        let mut subscriber = self.connections.subscriber();
        let mut rooms = 0;
        for room in self.subscriptions.rooms() {
            let count = self.subscriptions.lock(&room).await;
            if *count > 0 {
                subscriber
                    .subscribe(&keys::channel(&room), self.sharded)
                    .await?;
                rooms += 1;
            }
        }
        Ok(rooms)
    }

    fn publish_command(&self) -> &'static str {
        if self.sharded {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    fn check_connected(&self) -> Result<(), BusError> {
        if self.connections.is_connected() {
            Ok(())
        } else {
            Err(BusError::Disconnected)
        }
    }

    /// Publishes the envelope, numbered for its seats and kept in their
    /// buffers by the `PUBLISH` script, with `kept` in the room's chat history.
    /// An event for no seat and no history is a plain PUBLISH.
    async fn publish_connected(
        &self,
        envelope: &Envelope,
        kept: Option<&str>,
    ) -> Result<(), BusError> {
        let payload = serde_json::to_vec(envelope)?;
        let room = &envelope.room;
        let mut commands = self.connections.commands();
        let (mode, peer) = match envelope.event.recipients() {
            Recipients::One(to) => ("one", to.as_str()),
            Recipients::AllBut(sender) => ("all", sender),
            Recipients::Nobody if kept.is_none() => {
                return redis::cmd(self.publish_command())
                    .arg(keys::channel(room))
                    .arg(payload)
                    .query_async::<i64>(&mut commands)
                    .await
                    .map(|_| ())
                    .map_err(BusError::Redis);
            }
            Recipients::Nobody => ("none", ""),
        };
        let chat_lifetime_ms =
            u64::try_from(self.chat.history_max_age.as_millis()).unwrap_or(u64::MAX);
        scripts::PUBLISH
            .key(keys::members(room))
            .key(keys::seqs(room))
            .key(keys::chat(room))
            .arg(mode)
            .arg(peer)
            .arg(payload)
            .arg(self.publish_command())
            .arg(keys::channel(room))
            .arg(keys::log_prefix(room))
            .arg(self.replay.buffer_messages)
            .arg(self.replay.buffer_bytes)
            .arg(self.buffer_lifetime_ms)
            .arg(kept.unwrap_or(""))
            .arg(self.chat.history.max(1))
            .arg(chat_lifetime_ms)
            .invoke_async::<i64>(&mut commands)
            .await
            .map_err(unsent_is_disconnected)
            .and_then(|receivers| {
                if receivers < 0 {
                    Err(BusError::NoSeat)
                } else {
                    Ok(())
                }
            })
    }
}

#[async_trait]
impl Bus for RedisBus {
    async fn subscribe(&self, room: &RoomName) -> Result<(), BusError> {
        let mut count = self.subscriptions.lock(room).await;
        if *count == 0 {
            self.connections
                .subscriber()
                .subscribe(&keys::channel(room), self.sharded)
                .await
                .map_err(BusError::Redis)?;
        }
        *count += 1;
        Ok(())
    }

    async fn unsubscribe(&self, room: &RoomName) -> Result<(), BusError> {
        let mut count = self.subscriptions.lock(room).await;
        if *count == 0 {
            return Ok(());
        }
        *count -= 1;
        if *count > 0 {
            return Ok(());
        }
        // After an outage the room is simply not resubscribed.
        self.connections
            .subscriber()
            .unsubscribe(&keys::channel(room), self.sharded)
            .await
            .map_err(BusError::Redis)
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError> {
        self.check_connected()?;
        self.publish_connected(envelope, None).await
    }

    async fn publish_kept(&self, envelope: &Envelope, entry: &str) -> Result<(), BusError> {
        self.check_connected()?;
        let kept = (self.chat.history > 0).then_some(entry);
        self.publish_connected(envelope, kept).await
    }

    async fn replay(&self, room: &RoomName, peer: &PeerId) -> Result<SeatLog, BusError> {
        let mut commands = self.connections.commands();
        let reply: Vec<String> = scripts::READ_LOG
            .key(keys::seqs(room))
            .key(keys::log(room, peer))
            .arg(peer.as_str())
            .invoke_async(&mut commands)
            .await
            .map_err(BusError::Redis)?;
        Ok(decode_log(&reply))
    }

    async fn trim(&self, room: &RoomName, peer: &PeerId, upto: u64) -> Result<(), BusError> {
        let mut commands = self.connections.commands();
        scripts::TRIM_LOG
            .key(keys::seqs(room))
            .key(keys::log(room, peer))
            .arg(peer.as_str())
            .arg(upto)
            .invoke_async::<i64>(&mut commands)
            .await
            .map(|_| ())
            .map_err(BusError::Redis)
    }

    async fn history(&self, room: &RoomName) -> Result<Vec<String>, BusError> {
        if self.chat.history == 0 {
            return Ok(Vec::new());
        }
        let mut commands = self.connections.commands();
        commands
            .lrange(keys::chat(room), 0, -1)
            .await
            .map_err(BusError::Redis)
    }

    fn is_connected(&self) -> bool {
        self.connections.is_connected()
    }
}

/// A command that never left the node (a Cluster connection with no node to
/// send it to, a refused connection) is [`BusError::Disconnected`]: certainly
/// not run, so its message can wait in the outage queue rather than be
/// refused. Any other failure may have run.
fn unsent_is_disconnected(e: redis::RedisError) -> BusError {
    if e.kind() == redis::ErrorKind::ClusterConnectionNotFound || e.is_connection_refusal() {
        BusError::Disconnected
    } else {
        BusError::Redis(e)
    }
}

/// Task: hands every pub/sub message the subscriber connection receives to the
/// sink, and reports a lost subscriber connection at once.
pub(super) async fn deliver_pushes(
    mut pushes: mpsc::UnboundedReceiver<redis::PushInfo>,
    sink: Arc<dyn EnvelopeSink>,
    connections: Arc<Connections>,
) {
    while let Some(push) = pushes.recv().await {
        match push.kind {
            PushKind::Message | PushKind::SMessage => match decode_push(&push.data) {
                Some(envelope) => sink.deliver(&envelope),
                None => warn!("undecodable bus message dropped"),
            },
            PushKind::Disconnection => connections.set_connected(false),
            _ => {}
        }
    }
}

/// `READ_LOG`'s reply: the last seq, then `"<seq> <envelope>"` entries. An entry
/// that does not read back is left out, which the replay's coverage check then
/// reports as a gap.
fn decode_log(reply: &[String]) -> SeatLog {
    let Some((last, entries)) = reply.split_first() else {
        return SeatLog::default();
    };
    SeatLog {
        last: last.parse().unwrap_or(0),
        entries: entries
            .iter()
            .filter_map(|entry| {
                let (seq, envelope) = entry.split_once(' ')?;
                Some((seq.parse().ok()?, serde_json::from_str(envelope).ok()?))
            })
            .collect(),
    }
}

fn decode_push(data: &[redis::Value]) -> Option<Envelope> {
    let payload = match data.get(1)? {
        redis::Value::BulkString(bytes) => bytes.as_slice(),
        _ => return None,
    };
    let envelope: Envelope = serde_json::from_slice(payload).ok()?;
    // A message on a channel that does not match its room would be misrouted.
    if let Some(redis::Value::BulkString(name)) = data.first() {
        let name = std::str::from_utf8(name).ok()?;
        if envelope.room != keys::room_of(name)? {
            return None;
        }
    }
    Some(envelope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Event;
    use crate::vocabulary::testing::{conn, node, peer, room};

    fn push(channel: &str, envelope: &Envelope) -> Vec<redis::Value> {
        vec![
            redis::Value::BulkString(channel.as_bytes().to_vec()),
            redis::Value::BulkString(serde_json::to_vec(envelope).unwrap_or_default()),
        ]
    }

    #[test]
    fn a_push_decodes_only_on_its_own_room_s_channel() {
        let envelope = Envelope {
            room: room("standup"),
            origin: node("n1"),
            sent_at_us: 1,
            traceparent: None,
            event: Event::SeatMoved {
                peer: peer("0a1b"),
                conn: conn("c0ffee"),
            },
            seqs: Default::default(),
        };
        let decoded = decode_push(&push(&keys::channel(&room("standup")), &envelope));
        assert_eq!(decoded, Some(envelope.clone()));
        assert_eq!(
            decode_push(&push(&keys::channel(&room("other")), &envelope)),
            None
        );
        assert_eq!(decode_push(&[redis::Value::Nil]), None);
    }
}
