//! What crosses between nodes: the [`Envelope`] of one room [`Event`], and the
//! [`EnvelopeSink`] a bus hands each received envelope to.
//!
//! Both sides of the bus import this module and neither imports the other: a bus
//! moves envelopes into whatever sink the node registered when it built the bus
//! (its router), and the router reads envelopes without knowing which bus
//! carried them.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use vc_protocol::{LeaveReason, Member, RoomName};

use crate::bus::SeatLog;
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
    #[serde(default, skip_serializing_if = "Seqs::is_empty")]
    pub seqs: Seqs,
}

impl Envelope {
    /// The event's `seq` on `peer`'s stream, if the event is for that seat.
    pub fn seq_for(&self, peer: &str) -> Option<u64> {
        self.seqs.get(peer)
    }
}

/// Peer id → `seq`, a JSON object on the bus. Kept as a list: a relay numbers
/// one seat and a broadcast at most a room's, so a scan beats hashing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seqs(Vec<(PeerId, u64)>);

impl Seqs {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, peer: &str) -> Option<u64> {
        self.0
            .iter()
            .find(|(id, _)| id.as_str() == peer)
            .map(|(_, seq)| *seq)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PeerId, u64)> {
        self.0.iter().map(|(peer, seq)| (peer, *seq))
    }

    pub fn insert(&mut self, peer: PeerId, seq: u64) {
        match self.0.iter_mut().find(|(id, _)| *id == peer) {
            Some(entry) => entry.1 = seq,
            None => self.0.push((peer, seq)),
        }
    }
}

impl FromIterator<(PeerId, u64)> for Seqs {
    fn from_iter<I: IntoIterator<Item = (PeerId, u64)>>(iter: I) -> Self {
        let mut seqs = Seqs::default();
        for (peer, seq) in iter {
            seqs.insert(peer, seq);
        }
        seqs
    }
}

impl Serialize for Seqs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (peer, seq) in &self.0 {
            map.serialize_entry(peer.as_str(), seq)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Seqs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SeqsVisitor;
        impl<'de> Visitor<'de> for SeqsVisitor {
            type Value = Seqs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of peer id to seq")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Seqs, A::Error> {
                let mut seqs = Seqs(Vec::with_capacity(map.size_hint().unwrap_or(1)));
                while let Some((peer, seq)) = map.next_entry::<PeerId, u64>()? {
                    seqs.insert(peer, seq);
                }
                Ok(seqs)
            }
        }
        deserializer.deserialize_map(SeqsVisitor)
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
    /// Bytes of the frame the event carries, for the bounds of what keeps it.
    pub fn payload_len(&self) -> usize {
        match self {
            Event::Relay { frame, .. } | Event::Broadcast { frame, .. } => frame.len(),
            _ => 0,
        }
    }

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

    /// The seats attached here, each holding from now on what the bus brings
    /// it until [`EnvelopeSink::catch_up`]: a bus that lost its subscriptions
    /// calls it before subscribing again, then reads each seat's buffer.
    fn hold_attached(&self) -> Vec<AttachedSeat> {
        Vec::new()
    }

    /// Gives `seat` what `log` (its buffer, read after its room was subscribed
    /// again; `None` when it could not be read) holds past what the seat was
    /// sent, then what was held for it. False when the seat may have missed
    /// frames the buffer cannot give back.
    fn catch_up(&self, seat: &AttachedSeat, log: Option<&SeatLog>) -> bool {
        let _ = (seat, log);
        true
    }

    /// From now on, an attached seat whose frames from the bus skip a number
    /// holds what arrives and is sent on `gaps`, for the bus to read its buffer
    /// and hand it to [`EnvelopeSink::catch_up`]: pub/sub lost frames on the
    /// way (a subscription dropped and made again without an outage seen).
    fn report_gaps_to(&self, gaps: tokio::sync::mpsc::UnboundedSender<AttachedSeat>) {
        let _ = gaps;
    }

    /// Tells each attached seat of `room` the call state of every other member
    /// it knows of, as `members` (read from presence) has it: after Redis came
    /// back empty, a change broadcast before this node wrote its seats back
    /// was numbered for nobody here.
    fn tell_states(&self, room: &RoomName, members: &[Member]) {
        let _ = (room, members);
    }
}

/// An attached seat of this node, as [`EnvelopeSink::hold_attached`] found it,
/// with the connection that held it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedSeat {
    pub room: RoomName,
    pub peer: PeerId,
    pub conn: ConnId,
}
