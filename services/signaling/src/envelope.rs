//! What crosses between nodes: the [`Envelope`] of one room [`Event`], and the
//! [`EnvelopeSink`] a bus hands each received envelope to.
//!
//! Both sides of the bus import this module and neither imports the other: a bus
//! moves envelopes into whatever sink the node registered when it built the bus
//! (its router), and the router reads envelopes without knowing which bus
//! carried them.

use serde::{Deserialize, Serialize};
use vc_protocol::{LeaveReason, Member};

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

/// Where a bus delivers the envelopes of the rooms this node subscribed to:
/// registered once, when the node builds its bus.
pub trait EnvelopeSink: Send + Sync + 'static {
    /// Takes one envelope from the bus. Borrowed: the in-process bus delivers
    /// what its publisher still owns, and a receiver copies only what it keeps.
    /// Must not call back into the bus.
    fn deliver(&self, envelope: &Envelope);
}
