//! The bus: how room events and targeted messages reach the node that holds the
//! receiving socket.
//!
//! Sessions never talk to each other directly; they publish [`Envelope`]s to a
//! room and the bus hands every envelope published to a room to each node that
//! subscribed to it, the publishing node included. The [`Router`] of each node then
//! delivers it to its local sockets. Two implementations sit under one trait:
//! [`memory::MemoryBus`] for a single node and [`crate::redis_backend::RedisBackend`] for a fleet.
//!
//! What every implementation promises:
//! - **Ordering per sender:** envelopes published by one caller, one after the
//!   other (each `publish` awaited before the next), reach every subscriber in that
//!   order. Sessions publish sequentially, so a peer's offer is never overtaken by
//!   its own candidates.
//! - **At most once:** an envelope is delivered once or not at all. `publish`
//!   returning `Ok` means the bus took it, not that a socket received it; `Err`
//!   means it was certainly not delivered, and the session tells its client.
//! - **Scope:** a node receives only the envelopes of rooms it subscribed to.
//! - **Kept with the publish:** a chat message published with
//!   [`Bus::publish_kept`] is in the room's history exactly when it was
//!   published, so that a joiner who reads the history after subscribing misses
//!   none and can tell those it will also receive (by their ids).
//!
//! [`Router`]: crate::router::Router

#[cfg(test)]
pub mod fake;
pub mod memory;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use vc_protocol::{LeaveReason, Member};

use async_trait::async_trait;

#[derive(Debug, Error)]
pub enum BusError {
    #[error("the bus is not connected")]
    Disconnected,
    #[error("bus command failed: {0}")]
    Command(String),
    #[error("envelope could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

/// What travels on the bus: one event for one room, with the metadata every node
/// needs to route it, measure it and continue its trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub room: String,
    /// Id of the publishing node.
    pub origin: String,
    /// Wall-clock microseconds at publish, for the relay latency histogram.
    pub sent_at_us: u64,
    /// W3C `traceparent` of the publishing span, so that the receiving node's
    /// spans join the same trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Event {
    /// A message for one peer. `frame` is the finished JSON text for its socket,
    /// built once by the sender's node so that receivers only copy bytes.
    Relay {
        from: String,
        to: String,
        /// The relayed `type` (offer, answer, candidate, app-data), for metrics.
        message: String,
        frame: String,
    },
    PeerJoined {
        member: Member,
    },
    PeerLeft {
        peer: String,
        reason: LeaveReason,
    },
    /// The peer's seat moved to connection `conn` (a resume): any other socket
    /// still holding the seat is stale and must be closed.
    SeatMoved {
        peer: String,
        conn: String,
    },
    /// A message for every member of the room but its sender. `frame` is the
    /// finished JSON text, as for a relay.
    Broadcast {
        from: String,
        /// The delivered `type` (chat, peer-state, reaction), for metrics.
        message: String,
        frame: String,
        /// A chat message's id, so that a joiner that found the message in the
        /// room's history is not given it a second time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chat: Option<String>,
    },
}

/// Publishes envelopes and subscribes this node to rooms.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Starts delivery of the room's envelopes to this node. Counted: every call
    /// needs one [`Bus::unsubscribe`]. When it returns, envelopes published
    /// afterwards are delivered.
    async fn subscribe(&self, room: &str) -> Result<(), BusError>;
    /// Gives back one subscription of the room; the last one stops delivery.
    async fn unsubscribe(&self, room: &str) -> Result<(), BusError>;
    /// Hands the envelope to every node subscribed to its room, this one included.
    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError>;
    /// Publishes the envelope of a chat message and keeps `entry` (the message's
    /// JSON) in the room's bounded history, as one step: with Redis one script
    /// does both, so that no message is kept without being published or the
    /// other way round.
    async fn publish_kept(&self, envelope: &Envelope, entry: &str) -> Result<(), BusError>;
    /// The room's kept chat entries, oldest first, at most `chat.history` of
    /// them. The caller leaves out those older than `chat.history_max_age`.
    async fn history(&self, room: &str) -> Result<Vec<String>, BusError>;
    /// Whether the bus can currently deliver (readiness).
    fn is_connected(&self) -> bool;
}
