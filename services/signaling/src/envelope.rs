//! What crosses between nodes: the [`Envelope`] of one room [`Event`], and the
//! [`EnvelopeSink`] a bus hands each received envelope to.
//!
//! Both sides of the bus import this module and neither imports the other: a bus
//! moves envelopes into whatever sink the node registered when it built the bus
//! (its router), and the router reads envelopes without knowing which bus
//! carried them.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use vc_protocol::{LeaveReason, Member, RoomName};

use crate::vocabulary::{ConnId, NodeId, PeerId};

/// What travels on the bus: one event for one room, with the metadata every node
/// needs to route it, measure it and continue its trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub room: RoomName,
    /// Id of the publishing node.
    pub origin: NodeId,
    /// Wall-clock microseconds at publish, for the relay latency histogram.
    pub sent_at_us: u64,
    /// W3C `traceparent` of the publishing span, so that the receiving node's
    /// spans join the same trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    pub event: Event,
    /// Where the event stands on the stream of each seat it is for (see
    /// [`Event::recipients`]): assigned by the bus as it publishes, in the same
    /// step that keeps the event in each seat's replay buffer. Empty for an
    /// event for no seat (`SeatMoved`). Written last, so that the Redis script
    /// appends it to the envelope text the node encoded.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub seqs: HashMap<PeerId, u64>,
}

impl Envelope {
    /// The event's `seq` on `peer`'s stream, if the event is for that seat.
    pub fn seq_for(&self, peer: &str) -> Option<u64> {
        self.seqs.get(peer).copied()
    }
}

/// Which seats an event numbers on their streams, and so which seats' replay
/// buffers keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipients<'a> {
    /// A relay's target.
    One(&'a PeerId),
    /// Every member of the room but this one (the sender, the peer that came or
    /// went).
    AllBut(&'a str),
    /// Nobody: not a frame for any client.
    Nobody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Event {
    /// A message for one peer. `frame` is the finished JSON text for its socket,
    /// built once by the sender's node so that receivers only copy bytes.
    Relay {
        from: PeerId,
        to: PeerId,
        /// The relayed `type` (offer, answer, candidate, app-data), for metrics.
        message: String,
        frame: String,
    },
    PeerJoined {
        member: Member,
    },
    PeerLeft {
        peer: PeerId,
        reason: LeaveReason,
    },
    /// The peer's seat moved to connection `conn` (a resume): any other socket
    /// still holding the seat is stale and must be closed.
    SeatMoved {
        peer: PeerId,
        conn: ConnId,
    },
    /// A message for every member of the room but its sender. `frame` is the
    /// finished JSON text, as for a relay.
    Broadcast {
        from: PeerId,
        /// The delivered `type` (chat, peer-state, reaction), for metrics.
        message: String,
        frame: String,
        /// A chat message's id, so that a joiner that found the message in the
        /// room's history is not given it a second time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chat: Option<String>,
    },
}

impl Event {
    pub fn recipients(&self) -> Recipients<'_> {
        match self {
            Event::Relay { to, .. } => Recipients::One(to),
            Event::PeerJoined { member } => Recipients::AllBut(&member.id),
            Event::PeerLeft { peer, .. } => Recipients::AllBut(peer.as_str()),
            Event::Broadcast { from, .. } => Recipients::AllBut(from.as_str()),
            Event::SeatMoved { .. } => Recipients::Nobody,
        }
    }
}

/// Where a bus delivers the envelopes of the rooms this node subscribed to:
/// registered once, when the node builds its bus.
pub trait EnvelopeSink: Send + Sync + 'static {
    /// Takes one envelope from the bus. Borrowed: the in-process bus delivers
    /// what its publisher still owns, and a receiver copies only what it keeps.
    /// Must not call back into the bus.
    fn deliver(&self, envelope: &Envelope);
}
