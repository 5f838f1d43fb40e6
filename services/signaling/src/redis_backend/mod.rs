//! The Redis backend that turns single nodes into a fleet: the bus (pub/sub, one
//! channel per room) and presence (one hash per room), on one pair of connections.
//!
//! Channels and keys carry the room in a hash tag (`vc:{room}:…`), so that with
//! sharded pub/sub on a Redis Cluster a room's channel and its members hash live
//! on the same shard, and a node receives only the rooms it subscribed to: there
//! is no channel that every node reads.
//!
//! Two connection managers: `commands` (publish, scripts, heartbeats) and
//! `subscriber` (SUBSCRIBE/SSUBSCRIBE, RESP3 pushes). A supervisor task pings both;
//! when Redis comes back after an outage it resubscribes every room that still has
//! local members and writes this node's seats back, then reports ready again.

mod connection;
mod liveness;
mod scripts;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redis::{AsyncCommands, PushKind};
use tokio::sync::mpsc;
use tracing::{info, warn};
use vc_protocol::LeaveReason;

use crate::bus::{Bus, BusError, Envelope, Event};
use crate::config::{ChatSettings, RedisSettings};
use crate::lifecycle::{Lifecycle, Phase};
use crate::metrics::Metrics;
use crate::presence::{MemberRecord, Parked, Presence, PresenceError, ResumeClaim};
use crate::router::Router;
use connection::RedisConn;

use liveness::spawn_liveness;

/// How often the supervisor checks both connections.
const PING_INTERVAL: Duration = Duration::from_millis(500);
/// Longest a Redis command may take before it counts as failed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    #[error("redis.url: {0}")]
    Url(redis::RedisError),
    #[error("connecting to Redis: {0}")]
    Connect(redis::RedisError),
}

fn members_key(room: &str) -> String {
    format!("vc:{{{room}}}:members")
}

/// The room's chat history: a list capped at `chat.history` entries, expiring
/// `chat.history_max_age` after its last message, deleted with the room's last seat.
fn chat_key(room: &str) -> String {
    format!("vc:{{{room}}}:chat")
}

fn channel(room: &str) -> String {
    format!("vc:{{{room}}}:bus")
}

/// The room of a channel name made by [`channel`].
fn room_of(channel: &str) -> Option<&str> {
    channel.strip_prefix("vc:{")?.strip_suffix("}:bus")
}

fn node_rooms_key(node: &str) -> String {
    format!("vc:node:{node}:rooms")
}

pub struct RedisBackend {
    node_id: String,
    settings: RedisSettings,
    chat: ChatSettings,
    commands: RedisConn,
    subscriber: RedisConn,
    connected: AtomicBool,
    /// Rooms this node is subscribed to, with how many local seats want each.
    subscriptions: tokio::sync::Mutex<HashMap<String, usize>>,
    /// Seats this node holds (attached or parked), to write back after an outage
    /// that lost Redis's data.
    mine: Mutex<HashMap<(String, String), MemberRecord>>,
    metrics: Arc<Metrics>,
}

impl RedisBackend {
    /// Connects both managers and starts the tasks that deliver pushes to the
    /// router and supervise the connections. Fails if Redis cannot be reached at
    /// start: a node that never had a bus should not report ready.
    pub async fn connect(
        node_id: &str,
        settings: &RedisSettings,
        chat: &ChatSettings,
        router: Arc<Router>,
        lifecycle: &Lifecycle,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, RedisSetupError> {
        let phase = lifecycle.subscribe();
        if let Err(e) = redis::IntoConnectionInfo::into_connection_info(settings.url.as_str()) {
            return Err(RedisSetupError::Url(e));
        }
        let commands = connection::open(settings, RESPONSE_TIMEOUT, None)
            .await
            .map_err(RedisSetupError::Connect)?;
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let subscriber = connection::open(settings, RESPONSE_TIMEOUT, Some(push_tx))
            .await
            .map_err(RedisSetupError::Connect)?;
        let backend = Arc::new(Self {
            node_id: node_id.to_owned(),
            settings: settings.clone(),
            chat: chat.clone(),
            commands,
            subscriber,
            connected: AtomicBool::new(true),
            subscriptions: tokio::sync::Mutex::new(HashMap::new()),
            mine: Mutex::new(HashMap::new()),
            metrics,
        });
        tokio::spawn(Arc::clone(&backend).deliver_pushes(push_rx, router));
        tokio::spawn(Arc::clone(&backend).supervise(phase.clone()));
        spawn_liveness(Arc::clone(&backend), phase);
        info!(url = %redacted_url(&settings.url), sharded = settings.sharded, "connected to Redis");
        Ok(backend)
    }

    fn set_connected(&self, up: bool) {
        if self.connected.swap(up, Ordering::SeqCst) != up {
            if up {
                info!("Redis bus connected");
            } else {
                warn!("Redis bus disconnected: not ready until it returns");
            }
        }
    }

    /// Task: hands every pub/sub message to the router.
    async fn deliver_pushes(
        self: Arc<Self>,
        mut pushes: mpsc::UnboundedReceiver<redis::PushInfo>,
        router: Arc<Router>,
    ) {
        while let Some(push) = pushes.recv().await {
            match push.kind {
                PushKind::Message | PushKind::SMessage => {
                    let Some(envelope) = decode_push(&push.data) else {
                        warn!("undecodable bus message dropped");
                        continue;
                    };
                    if let Event::SeatMoved { peer, conn } = &envelope.event {
                        self.forget_if_moved(&envelope.room, peer, conn);
                    }
                    router.deliver(&envelope);
                }
                PushKind::Disconnection => self.set_connected(false),
                _ => {}
            }
        }
    }

    /// Task: pings both connections; after an outage, resubscribes and writes
    /// this node's seats back before reporting connected.
    async fn supervise(self: Arc<Self>, mut phase: tokio::sync::watch::Receiver<Phase>) {
        let mut ticker = tokio::time::interval(PING_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while crate::lifecycle::next_tick(&mut ticker, &mut phase).await {
            let healthy = self.ping().await;
            if !healthy {
                self.set_connected(false);
            } else if !self.connected.load(Ordering::SeqCst) {
                match self.resync().await {
                    Ok(rooms) => {
                        self.metrics
                            .bus_resubscriptions
                            .inc_by(u64::try_from(rooms).unwrap_or(u64::MAX));
                        info!(rooms, "resubscribed after a Redis outage");
                        self.set_connected(true);
                    }
                    Err(e) => warn!(error = %e, "resync after outage failed; retrying"),
                }
            }
        }
    }

    async fn ping(&self) -> bool {
        let mut commands = self.commands.clone();
        let mut subscriber = self.subscriber.clone();
        let a: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut commands).await;
        let b: redis::RedisResult<redis::Value> =
            redis::cmd("PING").query_async(&mut subscriber).await;
        a.is_ok() && b.is_ok()
    }

    /// Resubscribes every room with local seats and writes this node's seats back.
    async fn resync(&self) -> redis::RedisResult<usize> {
        let rooms: Vec<String> = self.subscriptions.lock().await.keys().cloned().collect();
        let mut subscriber = self.subscriber.clone();
        for room in &rooms {
            self.subscribe_command(&mut subscriber, room).await?;
        }
        let seats: Vec<(String, MemberRecord)> = self
            .lock_mine()
            .iter()
            .map(|((room, _), record)| (room.clone(), record.clone()))
            .collect();
        let mut commands = self.commands.clone();
        for (room, record) in &seats {
            let json = encode_record(record)?;
            let outcome: i64 = scripts::REASSERT
                .key(members_key(room))
                .arg(&record.id)
                .arg(json)
                .invoke_async(&mut commands)
                .await?;
            if outcome == 2 && record.parked.is_none() {
                // Others may have been told this peer left (a sweep during a
                // partition): announce it again. Nodes drop the announcement
                // for clients that never stopped knowing it.
                let envelope = Envelope {
                    room: room.clone(),
                    origin: self.node_id.clone(),
                    sent_at_us: crate::clock::unix_us(),
                    traceparent: None,
                    event: Event::PeerJoined {
                        member: record.member(),
                    },
                };
                self.publish_now(&envelope).await.map_err(|e| {
                    redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "re-announcing a seat",
                        e.to_string(),
                    ))
                })?;
            }
            let _: i64 = commands.sadd(node_rooms_key(&self.node_id), room).await?;
        }
        liveness::heartbeat(&self.node_id, &self.settings, &mut commands).await?;
        info!(seats = seats.len(), "presence re-asserted");
        Ok(rooms.len())
    }

    async fn subscribe_command(
        &self,
        subscriber: &mut RedisConn,
        room: &str,
    ) -> redis::RedisResult<()> {
        subscriber
            .subscribe(&channel(room), self.settings.sharded)
            .await
    }

    fn lock_mine(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), MemberRecord>> {
        // Edits are single inserts and removes; a poisoned map is still whole.
        self.mine.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, room: &str, record: MemberRecord) {
        self.lock_mine()
            .insert((room.to_owned(), record.id.clone()), record);
    }

    fn forget(&self, room: &str, peer: &str, conn: &str) {
        let mut mine = self.lock_mine();
        let key = (room.to_owned(), peer.to_owned());
        if mine.get(&key).is_some_and(|r| r.conn == conn) {
            mine.remove(&key);
        }
    }

    fn forget_if_moved(&self, room: &str, peer: &str, new_conn: &str) {
        let mut mine = self.lock_mine();
        let key = (room.to_owned(), peer.to_owned());
        if mine.get(&key).is_some_and(|r| r.conn != new_conn) {
            mine.remove(&key);
        }
    }

    /// Says goodbye on a graceful exit: the liveness key goes at once, so the
    /// other nodes sweep this node's remaining seats after their resume windows
    /// instead of waiting for the key to expire.
    pub async fn deregister(&self) {
        let mut commands = self.commands.clone();
        let key = liveness::alive_key(&self.node_id);
        if let Err(e) = commands.del::<_, i64>(key).await {
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

fn decode_push(data: &[redis::Value]) -> Option<Envelope> {
    let payload = match data.get(1)? {
        redis::Value::BulkString(bytes) => bytes.as_slice(),
        _ => return None,
    };
    let envelope: Envelope = serde_json::from_slice(payload).ok()?;
    // A message on a channel that does not match its room would be misrouted.
    if let Some(redis::Value::BulkString(name)) = data.first() {
        let name = std::str::from_utf8(name).ok()?;
        if room_of(name)? != envelope.room {
            return None;
        }
    }
    Some(envelope)
}

fn encode_record(record: &MemberRecord) -> redis::RedisResult<String> {
    serde_json::to_string(record).map_err(|e| {
        redis::RedisError::from((redis::ErrorKind::Client, "encoding a seat", e.to_string()))
    })
}

fn decode_records(raw: &[String]) -> Vec<MemberRecord> {
    let mut records: Vec<MemberRecord> = raw
        .iter()
        .filter_map(|r| serde_json::from_str(r).ok())
        .collect();
    records.sort_by(|a, b| a.joined_at_ms.cmp(&b.joined_at_ms).then(a.id.cmp(&b.id)));
    records
}

fn unavailable(e: redis::RedisError) -> PresenceError {
    PresenceError::Unavailable(e.to_string())
}

#[async_trait]
impl Bus for RedisBackend {
    async fn subscribe(&self, room: &str) -> Result<(), BusError> {
        let mut subscriptions = self.subscriptions.lock().await;
        let count = subscriptions.entry(room.to_owned()).or_insert(0);
        if *count == 0 {
            let mut subscriber = self.subscriber.clone();
            if let Err(e) = self.subscribe_command(&mut subscriber, room).await {
                subscriptions.remove(room);
                return Err(BusError::Command(e.to_string()));
            }
        }
        *subscriptions.entry(room.to_owned()).or_insert(0) += 1;
        Ok(())
    }

    async fn unsubscribe(&self, room: &str) -> Result<(), BusError> {
        let mut subscriptions = self.subscriptions.lock().await;
        let Some(count) = subscriptions.get_mut(room) else {
            return Ok(());
        };
        *count -= 1;
        if *count > 0 {
            return Ok(());
        }
        subscriptions.remove(room);
        let mut subscriber = self.subscriber.clone();
        let result = subscriber
            .unsubscribe(&channel(room), self.settings.sharded)
            .await;
        // After an outage the room is simply not resubscribed.
        result.map_err(|e| BusError::Command(e.to_string()))
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError> {
        if !self.connected.load(Ordering::SeqCst) {
            return Err(BusError::Disconnected);
        }
        self.publish_now(envelope).await
    }

    async fn publish_kept(&self, envelope: &Envelope, entry: &str) -> Result<(), BusError> {
        if !self.connected.load(Ordering::SeqCst) {
            return Err(BusError::Disconnected);
        }
        if self.chat.history == 0 {
            return self.publish_now(envelope).await;
        }
        let payload = serde_json::to_vec(envelope)?;
        let lifetime_ms = u64::try_from(self.chat.history_max_age.as_millis()).unwrap_or(u64::MAX);
        let mut commands = self.commands.clone();
        scripts::KEEP_AND_PUBLISH
            .key(chat_key(&envelope.room))
            .arg(entry)
            .arg(self.chat.history)
            .arg(lifetime_ms)
            .arg(self.publish_command())
            .arg(channel(&envelope.room))
            .arg(payload)
            .invoke_async::<i64>(&mut commands)
            .await
            .map(|_| ())
            .map_err(|e| BusError::Command(e.to_string()))
    }

    async fn history(&self, room: &str) -> Result<Vec<String>, BusError> {
        if self.chat.history == 0 {
            return Ok(Vec::new());
        }
        let mut commands = self.commands.clone();
        commands
            .lrange(chat_key(room), 0, -1)
            .await
            .map_err(|e| BusError::Command(e.to_string()))
    }

    fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }
}

impl RedisBackend {
    fn publish_command(&self) -> &'static str {
        if self.settings.sharded {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// Publishes whatever the supervisor thinks of the connection: for the
    /// resync, which runs before the node reports connected again.
    async fn publish_now(&self, envelope: &Envelope) -> Result<(), BusError> {
        let payload = serde_json::to_vec(envelope)?;
        let mut commands = self.commands.clone();
        redis::cmd(self.publish_command())
            .arg(channel(&envelope.room))
            .arg(payload)
            .query_async::<i64>(&mut commands)
            .await
            .map(|_| ())
            .map_err(|e| BusError::Command(e.to_string()))
    }
}

#[async_trait]
impl Presence for RedisBackend {
    async fn join(
        &self,
        room: &str,
        record: &MemberRecord,
        capacity: usize,
    ) -> Result<Vec<MemberRecord>, PresenceError> {
        let mut commands = self.commands.clone();
        let json = encode_record(record).map_err(unavailable)?;
        let reply: Vec<String> = scripts::JOIN
            .key(members_key(room))
            .arg(&record.id)
            .arg(json)
            .arg(capacity)
            .invoke_async(&mut commands)
            .await
            .map_err(unavailable)?;
        match reply.split_first() {
            Some((status, others)) if status == "ok" => {
                self.remember(room, record.clone());
                let _: i64 = commands
                    .sadd(node_rooms_key(&self.node_id), room)
                    .await
                    .map_err(unavailable)?;
                Ok(decode_records(others))
            }
            _ => Err(PresenceError::Full { capacity }),
        }
    }

    async fn leave(&self, room: &str, peer: &str, conn: &str) -> Result<bool, PresenceError> {
        self.forget(room, peer, conn);
        let mut commands = self.commands.clone();
        let freed: i64 = scripts::LEAVE
            .key(members_key(room))
            .key(chat_key(room))
            .arg(peer)
            .arg(conn)
            .invoke_async(&mut commands)
            .await
            .map_err(unavailable)?;
        Ok(freed == 1)
    }

    async fn park(
        &self,
        room: &str,
        peer: &str,
        conn: &str,
        parked: Parked,
    ) -> Result<bool, PresenceError> {
        {
            let mut mine = self.lock_mine();
            if let Some(record) = mine
                .get_mut(&(room.to_owned(), peer.to_owned()))
                .filter(|r| r.conn == conn)
            {
                record.parked = Some(parked);
            }
        }
        let mut commands = self.commands.clone();
        let parked = serde_json::to_string(&parked)
            .map_err(|e| PresenceError::Unavailable(e.to_string()))?;
        let done: i64 = scripts::PARK
            .key(members_key(room))
            .arg(peer)
            .arg(conn)
            .arg(parked)
            .invoke_async(&mut commands)
            .await
            .map_err(unavailable)?;
        Ok(done == 1)
    }

    async fn resume(
        &self,
        claim: &ResumeClaim<'_>,
    ) -> Result<(MemberRecord, Vec<MemberRecord>), PresenceError> {
        let room = claim.room;
        let mut commands = self.commands.clone();
        let reply: Vec<String> = scripts::RESUME
            .key(members_key(room))
            .arg(claim.peer)
            .arg(claim.secret)
            .arg(claim.node)
            .arg(claim.conn)
            .arg(claim.now_ms)
            .arg(claim.from_conn)
            .invoke_async(&mut commands)
            .await
            .map_err(unavailable)?;
        let (status, rest) = reply.split_first().ok_or(PresenceError::NoSeat)?;
        let (seat, all) = rest.split_first().ok_or(PresenceError::NoSeat)?;
        if status != "ok" {
            return Err(PresenceError::NoSeat);
        }
        let seat: MemberRecord =
            serde_json::from_str(seat).map_err(|e| PresenceError::Unavailable(e.to_string()))?;
        let others = decode_records(all)
            .into_iter()
            .filter(|m| m.id != seat.id)
            .collect();
        self.remember(room, seat.clone());
        let _: i64 = commands
            .sadd(node_rooms_key(&self.node_id), room)
            .await
            .map_err(unavailable)?;
        Ok((seat, others))
    }

    async fn expire(
        &self,
        room: &str,
        peer: &str,
        conn: &str,
    ) -> Result<Option<LeaveReason>, PresenceError> {
        self.forget(room, peer, conn);
        let mut commands = self.commands.clone();
        let reason: Option<String> = scripts::EXPIRE
            .key(members_key(room))
            .key(chat_key(room))
            .arg(peer)
            .arg(conn)
            .invoke_async(&mut commands)
            .await
            .map_err(unavailable)?;
        Ok(reason.and_then(|r| parse_reason(&r)))
    }

    async fn seat(&self, room: &str, peer: &str) -> Result<Option<MemberRecord>, PresenceError> {
        let mut commands = self.commands.clone();
        let raw: Option<String> = commands
            .hget(members_key(room), peer)
            .await
            .map_err(unavailable)?;
        Ok(raw.and_then(|raw| serde_json::from_str(&raw).ok()))
    }

    async fn members(&self, room: &str) -> Result<Vec<MemberRecord>, PresenceError> {
        let mut commands = self.commands.clone();
        let raw: Vec<String> = commands
            .hvals(members_key(room))
            .await
            .map_err(unavailable)?;
        Ok(decode_records(&raw))
    }

    async fn count(&self, room: &str) -> Result<usize, PresenceError> {
        let mut commands = self.commands.clone();
        commands.hlen(members_key(room)).await.map_err(unavailable)
    }

    async fn set_hand(
        &self,
        room: &str,
        peer: &str,
        conn: &str,
        hand: bool,
    ) -> Result<bool, PresenceError> {
        if let Some(record) = self
            .lock_mine()
            .get_mut(&(room.to_owned(), peer.to_owned()))
            .filter(|r| r.conn == conn)
        {
            record.hand = hand;
        }
        let mut commands = self.commands.clone();
        let done: i64 = scripts::SET_HAND
            .key(members_key(room))
            .arg(peer)
            .arg(conn)
            .arg(if hand { "1" } else { "0" })
            .invoke_async(&mut commands)
            .await
            .map_err(unavailable)?;
        Ok(done == 1)
    }
}

fn parse_reason(reason: &str) -> Option<LeaveReason> {
    serde_json::from_value(serde_json::Value::String(reason.to_owned())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_carry_their_room_in_a_hash_tag() {
        assert_eq!(channel("standup"), "vc:{standup}:bus");
        assert_eq!(members_key("standup"), "vc:{standup}:members");
        assert_eq!(chat_key("standup"), "vc:{standup}:chat");
        assert_eq!(room_of(&channel("a-b_c")), Some("a-b_c"));
        assert_eq!(room_of("other"), None);
    }

    #[test]
    fn reasons_parse_from_their_wire_names() {
        assert_eq!(parse_reason("node-lost"), Some(LeaveReason::NodeLost));
        assert_eq!(parse_reason("timed-out"), Some(LeaveReason::TimedOut));
        assert_eq!(parse_reason("bogus"), None);
    }

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(
            redacted_url("redis://:pw@h:6379/0"),
            "redis://<redacted>@h:6379/0"
        );
        assert_eq!(redacted_url("redis://h:6379"), "redis://h:6379");
    }
}
