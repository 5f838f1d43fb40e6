//! The bus: how room events and targeted messages reach the node that holds the
//! receiving socket.
//!
//! Sessions never talk to each other directly; they publish [`Envelope`]s to a
//! room and the bus hands every envelope published to a room to each node that
//! subscribed to it, the publishing node included, by giving it to the
//! [`EnvelopeSink`] that node registered when it built its bus: its router,
//! which delivers it to the local sockets. No bus knows the router. Two
//! implementations sit under one trait: [`memory::MemoryBus`] for a single node
//! and [`crate::redis_backend::bus::RedisBus`] for a fleet.
//!
//! [`EnvelopeSink`]: crate::envelope::EnvelopeSink
//!
//! What every implementation promises:
//! - **Ordering per sender:** envelopes published by one caller, one after the
//!   other (each `publish` awaited before the next), reach every subscriber in that
//!   order. Sessions publish sequentially, so a peer's offer is never overtaken by
//!   its own candidates.
//! - **Numbered and kept with the publish:** `publish` numbers the event on the
//!   stream of each seat it is for ([`Event::recipients`]: the target of a
//!   relay, every member but the sender otherwise) and keeps it in each of those
//!   seats' bounded replay buffers in the same step, so that an event is in a
//!   seat's buffer exactly when it was published with its number. Numbers on a
//!   seat's stream only go up.
//! - **At most once on the wire, exactly once across a resume:** pub/sub
//!   delivers an envelope once or not at all; what a seat's node missed (the
//!   seat was parked, the socket dropped) is read back with [`Bus::replay`].
//!   `publish` returning `Ok` means the bus took it, not that a socket received
//!   it; `Err` means it was certainly not delivered, and the session tells its
//!   client.
//!
//! [`Event::recipients`]: crate::envelope::Event::recipients
//! - **Scope:** a node receives only the envelopes of rooms it subscribed to.
//! - **Kept with the publish:** a chat message published with
//!   [`Bus::publish_kept`] is in the room's history exactly when it was
//!   published, so that a joiner who reads the history after subscribing misses
//!   none and can tell those it will also receive (by their ids).
//! - **Per room:** subscribing and unsubscribing one room never waits for
//!   another room's round trip ([`room_locks::RoomLocks`]).

#[cfg(test)]
pub mod fake;
pub mod memory;
pub mod room_locks;

use async_trait::async_trait;
use thiserror::Error;

use vc_protocol::RoomName;

use crate::envelope::Envelope;
use crate::vocabulary::PeerId;

/// A seat's replay buffer as the bus has it: the last number given on the
/// seat's stream, and the kept events, oldest first, each with its number.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeatLog {
    pub last: u64,
    pub entries: Vec<(u64, Envelope)>,
}

impl SeatLog {
    /// Whether the buffer holds every number after `after`, up to `last`.
    pub fn covers(&self, after: u64) -> bool {
        if after > self.last {
            return false;
        }
        if after == self.last {
            return true;
        }
        self.entries
            .first()
            .is_some_and(|(oldest, _)| *oldest <= after + 1)
    }
}

/// Why the bus did not take an envelope or a subscription. The backend's own
/// error is kept as the source, so that its kind (connection lost, timeout,
/// script error) survives to whoever logs it.
#[derive(Debug, Error)]
pub enum BusError {
    #[error("the bus is not connected")]
    Disconnected,
    #[error("bus command failed: {0}")]
    Redis(#[source] redis::RedisError),
    #[error("envelope could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    /// The relay's target has no seat on the bus (it left, or Redis came back
    /// empty and its node has not written its seats back yet): nothing was
    /// published.
    #[error("the relay's target has no seat on the bus")]
    NoSeat,
    #[error(transparent)]
    QueueFull(#[from] crate::outage_queue::QueueFull),
    /// A failure a test told a fake to return.
    #[cfg(test)]
    #[error("injected fault")]
    Injected,
}

/// Publishes envelopes and subscribes this node to rooms.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Starts delivery of the room's envelopes to this node. Counted: every call
    /// needs one [`Bus::unsubscribe`]. When it returns, envelopes published
    /// afterwards are delivered.
    async fn subscribe(&self, room: &RoomName) -> Result<(), BusError>;
    /// Gives back one subscription of the room; the last one stops delivery.
    async fn unsubscribe(&self, room: &RoomName) -> Result<(), BusError>;
    /// Numbers the event on its seats' streams, keeps it in their replay
    /// buffers, and hands the numbered envelope to every node subscribed to its
    /// room, this one included.
    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError>;
    /// The seat's replay buffer: its stream's last number and the events kept.
    async fn replay(&self, room: &RoomName, peer: &PeerId) -> Result<SeatLog, BusError>;
    /// Drops the seat's kept events numbered `upto` or lower: its client has
    /// acknowledged them.
    async fn trim(&self, room: &RoomName, peer: &PeerId, upto: u64) -> Result<(), BusError>;
    /// Publishes the envelope of a chat message and keeps `entry` (the message's
    /// JSON) in the room's bounded history, as one step: with Redis one script
    /// does both, so that no message is kept without being published or the
    /// other way round.
    async fn publish_kept(&self, envelope: &Envelope, entry: &str) -> Result<(), BusError>;
    /// The room's kept chat entries, oldest first, at most `chat.history` of
    /// them. The caller leaves out those older than `chat.history_max_age`.
    async fn history(&self, room: &RoomName) -> Result<Vec<String>, BusError>;
    /// Whether the bus can currently deliver (readiness).
    fn is_connected(&self) -> bool;
}
