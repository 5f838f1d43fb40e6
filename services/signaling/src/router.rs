//! The router: this node's sockets by room, and the last hop of every message.
//!
//! The bus hands each envelope of a subscribed room to [`Router::deliver`], which
//! pushes the frame into the outbox of each local session it concerns. The router
//! also mirrors the membership of those rooms (from presence snapshots and the
//! join/leave events that follow them), so that relay targets are checked without
//! a round trip to presence.
//!
//! A seat is first *reserved* (pending), then *activated* once presence has given
//! it a seat and a snapshot of the room: events that arrive in between are held
//! and replayed after the `joined` reply. Each seat remembers which peers its
//! client has been told about (the snapshot, then every announcement), so that a
//! peer is announced exactly once, and its departure only if it was announced,
//! whichever way a join raced the events of other nodes. Room-wide messages
//! (chat, call state, reactions) reach every seat but the sender's, from peers
//! the seat knows, and a chat message the seat's client got in its history is
//! not given to it again.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::mpsc;

use vc_protocol::{BroadcastKind, Member, ReconnectReason, RelayKind, RoomName, ServerMessage};

use crate::bus::SeatLog;
use crate::envelope::{AttachedSeat, Envelope, EnvelopeSink, Event};
use crate::metrics::{relay_kind, Metrics};
use crate::outbox::{Eviction, Outbound, SessionHandle};
use crate::vocabulary::{ConnId, NodeId, PeerId};

/// How a held frame changes the room, for reconciling with a snapshot. Peers
/// are named as the client was told of them, by the ids of the `Member`s it got.
#[derive(Debug, Clone)]
enum Change {
    Joined(String),
    Left(String),
    /// A room-wide message from `from`; `chat` is a chat message's id.
    Broadcast {
        from: String,
        chat: Option<String>,
    },
    None,
}

/// What a seat's client has been told: the peers in the room, and the chat
/// messages its history carried that may still arrive as events.
#[derive(Debug, Default)]
struct Known {
    peers: HashSet<String>,
    chat: HashSet<String>,
}

impl Known {
    /// Whether a frame still tells its receiver something new, updating what it
    /// knows as it goes.
    fn tells(&mut self, change: &Change) -> bool {
        match change {
            // A peer the snapshot listed already: announcing it again would be a flap.
            Change::Joined(id) => self.peers.insert(id.clone()),
            // A peer the receiver never heard of: its departure means nothing to it.
            Change::Left(id) => self.peers.remove(id),
            // From a peer it does not know of, or a chat message it already has.
            Change::Broadcast { from, chat } => {
                let seen = chat.as_ref().is_some_and(|id| self.chat.remove(id));
                self.peers.contains(from) && !seen
            }
            Change::None => true,
        }
    }
}

/// Frames a seat holds while it catches up, at most: memory per socket stays
/// bounded however long a resync takes, since what is not held is in the
/// seat's buffer.
const CATCH_UP_HOLD: usize = 256;

/// A frame held for a pending seat: what it changes, the frame, its `seq`.
type Held = (Change, Outbound, u64);

#[derive(Debug)]
struct LocalSeat {
    conn: ConnId,
    handle: SessionHandle,
    /// `Some` while the seat is reserved but not yet active: frames held back,
    /// each with its `seq` on the seat's stream.
    held: Option<Vec<Held>>,
    /// The peers this seat's client knows are in the room, and the chat
    /// messages it got in its history.
    known: Known,
    /// While a resume of this seat is pending: the connection that held it until
    /// then. It keeps its place until presence confirms the resume, and gets it
    /// back (with what was held meanwhile) if the resume fails, so that a resume
    /// that fails changes nothing for the seat's owner.
    displaced: Option<Box<LocalSeat>>,
    /// `Some` while the node reads back what this attached seat may have missed
    /// while its room was not subscribed (after a Redis outage): frames the bus
    /// brings meanwhile wait here, so that the missed ones go out first.
    catching_up: Option<Vec<Held>>,
}

impl LocalSeat {
    /// Takes the seat's connection out of a displacement chain, wherever it is.
    fn unlink(&mut self, conn: &ConnId) -> bool {
        let Some(displaced) = self.displaced.as_mut() else {
            return false;
        };
        if displaced.conn == *conn {
            self.displaced = displaced.displaced.take();
            return true;
        }
        displaced.unlink(conn)
    }

    /// The pending reservation of `conn`: this seat or one it displaced, unless
    /// an active seat stands above it. A seat activated above a reservation was
    /// resumed after it, so that reservation has lost the seat.
    fn reservation(&mut self, conn: &ConnId) -> Option<&mut LocalSeat> {
        if self.conn == *conn {
            return self.held.is_some().then_some(self);
        }
        // Above it, only pending seats: an active one means it lost.
        self.held.as_ref()?;
        self.displaced.as_deref_mut()?.reservation(conn)
    }

    /// Gives up every connection this seat displaced: the resume is confirmed.
    /// Those with a seat of their own are evicted. Pending ones are resumes that
    /// lost: either they read the seat before this one moved it, and presence
    /// refuses them, or presence took them before this one read it, and
    /// [`LocalSeat::reservation`] no longer finds them when they activate.
    fn evict_displaced(&mut self) {
        let mut next = self.displaced.take();
        while let Some(mut seat) = next {
            if seat.held.is_none() {
                seat.handle.evict(Eviction::SeatMoved);
            }
            next = seat.displaced.take();
        }
    }

    /// The seat of connection `conn` in this displacement chain.
    fn of_conn(&mut self, conn: &ConnId) -> Option<&mut LocalSeat> {
        if self.conn == *conn {
            return Some(self);
        }
        self.displaced.as_deref_mut()?.of_conn(conn)
    }

    /// Evicts every active connection of this seat except `conn`, which presence
    /// says holds it now. Pending reservations are left to their own resume.
    fn evict_all_but(&self, conn: &ConnId) {
        let mut next = Some(self);
        while let Some(seat) = next {
            if seat.held.is_none() && seat.conn != *conn {
                seat.handle.evict(Eviction::SeatMoved);
            }
            next = seat.displaced.as_deref();
        }
    }
}

#[derive(Debug, Default)]
struct LocalRoom {
    /// Every member of the room, on any node, in join order.
    mirror: Vec<Member>,
    /// False until the first seat here is activated with a presence snapshot;
    /// envelopes that arrive before are kept in `backlog`.
    synced: bool,
    backlog: Vec<Envelope>,
    seats: HashMap<PeerId, LocalSeat>,
}

/// Counts for metrics and health output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterStats {
    pub rooms: usize,
    pub seats: usize,
}

pub struct Router {
    node_id: NodeId,
    metrics: Arc<Metrics>,
    rooms: Mutex<HashMap<RoomName, LocalRoom>>,
    /// Where a seat whose frames from the bus skip a number is reported, for
    /// its buffer to be read ([`EnvelopeSink::report_gaps_to`]); unset with
    /// the in-process bus, which loses nothing.
    gaps: OnceLock<mpsc::UnboundedSender<AttachedSeat>>,
}

/// What frames from the bus are checked against: their room, and where a
/// skipped number is reported (none for frames handed back after a failed
/// resume).
struct Live<'a> {
    room: &'a RoomName,
    gaps: Option<&'a mpsc::UnboundedSender<AttachedSeat>>,
}

impl Live<'_> {
    /// Whether `seq`, arriving live for an attached seat, skips numbers the
    /// seat was never sent. Every number given on a seat's stream reaches the
    /// seat's node in order unless pub/sub dropped it (a subscription lost and
    /// made again without the node seeing an outage), so a skip means a loss.
    /// Before the first frame (0 sent) nothing is known: a resume without
    /// `lastSeq` starts wherever the stream is.
    fn skips(&self, seat: &LocalSeat, seq: u64) -> bool {
        let sent = seat.handle.sent_seq();
        self.gaps.is_some() && sent > 0 && seq > sent + 1
    }

    /// Holds `frame` and everything after it in the seat, and asks for its
    /// buffer to be read.
    fn report(&self, seat: &mut LocalSeat, peer: &PeerId, frame: Held) {
        seat.catching_up = Some(vec![frame]);
        if let Some(gaps) = self.gaps {
            let _ = gaps.send(AttachedSeat {
                room: self.room.clone(),
                peer: peer.clone(),
                conn: seat.conn.clone(),
            });
        }
    }
}

impl Router {
    pub fn new(node_id: &NodeId, metrics: Arc<Metrics>) -> Self {
        Self {
            node_id: node_id.clone(),
            metrics,
            rooms: Mutex::new(HashMap::new()),
            gaps: OnceLock::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RoomName, LocalRoom>> {
        // Every critical section leaves the map consistent before it could panic,
        // so a poisoned lock is safe to keep using.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves a seat for `peer` on connection `conn`: frames for it are held
    /// until [`Router::activate`].
    pub fn reserve(&self, room: &RoomName, peer: &PeerId, conn: &ConnId, handle: SessionHandle) {
        let mut rooms = self.lock();
        let local = rooms.entry(room.clone()).or_default();
        // A resume on this node while the old socket still looks alive here: the
        // old one steps aside, and is evicted only once the resume is confirmed.
        let displaced = local
            .seats
            .remove(peer)
            .filter(|old| old.conn != *conn)
            .map(Box::new);
        local.seats.insert(
            peer.clone(),
            LocalSeat {
                conn: conn.clone(),
                handle,
                held: Some(Vec::new()),
                known: Known::default(),
                displaced,
                catching_up: None,
            },
        );
    }

    /// Activates the seat reserved for connection `conn`: queues `reply` (the
    /// `joined`/`resumed` frame), then the events of `replay` (what a resume
    /// read from the seat's buffer), then what was held for it, each frame once
    /// by its `seq` and minus what `others` (the presence snapshot) and `chat`
    /// (the ids of the history in the reply) already told. False when there is
    /// no such reservation any more, or a later resume of the seat was
    /// confirmed first.
    #[allow(
        clippy::too_many_arguments,
        reason = "one activation, every part of it"
    )]
    pub fn activate(
        &self,
        room: &RoomName,
        me: Member,
        conn: &ConnId,
        others: &[Member],
        chat: Vec<String>,
        reply: Outbound,
        replay: &[(u64, Envelope)],
    ) -> bool {
        let mut rooms = self.lock();
        let Some(local) = rooms.get_mut(room) else {
            return false;
        };
        let Some(seat) = local
            .seats
            .get_mut(me.id.as_str())
            .and_then(|top| top.reservation(conn))
        else {
            return false;
        };
        seat.evict_displaced();
        let held = seat.held.take().unwrap_or_default();
        seat.handle.send(reply);
        seat.known = Known {
            peers: others.iter().map(|m| m.id.clone()).collect(),
            chat: chat.into_iter().collect(),
        };
        for (seq, envelope) in replay {
            if let Some((change, out)) =
                frame_for(envelope, &me.id, envelope.origin != self.node_id)
            {
                deliver_numbered(seat, &change, out, *seq);
            }
        }
        for (change, out, seq) in held {
            deliver_numbered(seat, &change, out, seq);
        }
        if local.synced {
            if !local.mirror.iter().any(|m| m.id == me.id) {
                local.mirror.push(me);
            }
            return true;
        }
        local.mirror = others.to_vec();
        local.mirror.push(me);
        local.synced = true;
        let backlog = std::mem::take(&mut local.backlog);
        // The room's own view, for the mirror; each seat then filters for itself.
        let mut known = Known {
            peers: local.mirror.iter().map(|m| m.id.clone()).collect(),
            chat: HashSet::new(),
        };
        for envelope in backlog {
            let change = match &envelope.event {
                Event::PeerJoined { member } => Change::Joined(member.id.clone()),
                Event::PeerLeft { peer, .. } => Change::Left(peer.to_string()),
                // Every seat here was pending when it arrived. A move seen by a
                // pending resume comes from a resume that presence took first
                // (a later one would have to read, move and announce the seat
                // between this one's confirmation and its activation), so it is
                // not a reason to evict the seat presence has just confirmed.
                Event::SeatMoved { .. } => continue,
                Event::Relay { .. } | Event::Broadcast { .. } => Change::None,
            };
            if known.tells(&change) {
                let cross_node = envelope.origin != self.node_id;
                let live = Live {
                    room,
                    gaps: self.gaps.get(),
                };
                apply(local, &envelope, cross_node, &live);
            }
        }
        true
    }

    /// Removes the seat if `conn` still holds it; the room's mirror goes with its
    /// last local seat, since without a subscription it would go stale.
    pub fn remove(&self, room: &RoomName, peer: &PeerId, conn: &ConnId) {
        let mut rooms = self.lock();
        let Some(local) = rooms.get_mut(room) else {
            return;
        };
        match local.seats.get_mut(peer) {
            Some(seat) if seat.conn == *conn => {
                // A failed resume: the connection it displaced gets its seat back,
                // with the frames held for the resume.
                if let Some(LocalSeat {
                    displaced: Some(old),
                    held,
                    ..
                }) = local.seats.remove(peer)
                {
                    let mut seat = *old;
                    // Frames that were on their way to it all along.
                    let handed_back = Live { room, gaps: None };
                    for (change, out, seq) in held.unwrap_or_default() {
                        push(&mut seat, peer, change, out, Some(seq), &handed_back);
                    }
                    local.seats.insert(peer.clone(), seat);
                }
            }
            Some(seat) => {
                seat.unlink(conn);
            }
            None => {}
        }
        if local.seats.is_empty() {
            rooms.remove(room);
        }
    }

    /// Hands `frame` straight to `to`'s socket if `to` is attached here and
    /// neither pending nor catching up, without a number: how two seats of this
    /// node keep talking while the bus is away. False when it is not.
    pub fn hand_over(&self, room: &RoomName, to: &PeerId, frame: &str, kind: RelayKind) -> bool {
        let rooms = self.lock();
        let Some(seat) = rooms.get(room).and_then(|local| local.seats.get(to)) else {
            return false;
        };
        if seat.held.is_some() || seat.catching_up.is_some() {
            return false;
        }
        seat.handle.send(Outbound {
            text: frame.into(),
            kind: kind.as_str(),
            sent_at_us: crate::clock::unix_us(),
            cross_node: false,
        });
        true
    }

    /// Whether `peer` is a member of `room` as far as this node knows.
    pub fn is_member(&self, room: &RoomName, peer: &PeerId) -> bool {
        self.lock()
            .get(room)
            .is_some_and(|local| local.mirror.iter().any(|m| m.id == peer.as_str()))
    }

    /// Marks every attached seat as catching up (see [`Router::catch_up`]) and
    /// returns them. Called before the rooms are subscribed again, so that
    /// nothing the bus brings afterwards goes out before what was missed.
    pub fn hold_attached(&self) -> Vec<AttachedSeat> {
        let mut rooms = self.lock();
        let mut attached = Vec::new();
        for (room, local) in rooms.iter_mut() {
            for (peer, seat) in &mut local.seats {
                if seat.held.is_some() {
                    continue;
                }
                seat.catching_up.get_or_insert_with(Default::default);
                attached.push(AttachedSeat {
                    room: room.clone(),
                    peer: peer.clone(),
                    conn: seat.conn.clone(),
                });
            }
        }
        attached
    }

    /// Ends the catch-up of `seat`: queues, in order, what `log` (the seat's
    /// replay buffer, read after its room was subscribed again) holds past
    /// what the seat was sent, then what the bus brought meanwhile, each
    /// number once. Returns false when the buffer could not show that nothing
    /// is missing (it was not read, or no longer reaches back far enough): the
    /// client is then asked to reconnect, so that its resume hears that the
    /// replay is incomplete and it renegotiates its calls.
    pub fn catch_up(&self, seat: &AttachedSeat, log: Option<&SeatLog>) -> bool {
        let mut rooms = self.lock();
        let Some(local) = rooms.get_mut(&seat.room) else {
            return true;
        };
        let Some(local_seat) = local
            .seats
            .get_mut(&seat.peer)
            .and_then(|top| top.of_conn(&seat.conn))
        else {
            return true;
        };
        // Not holding any more: another catch-up of the seat came first, and
        // frames went out since, so this buffer may be older than what the
        // seat was sent. Whatever it has past that still goes out, once.
        let holding = local_seat.catching_up.take();
        let sent = local_seat.handle.sent_seq();
        let complete = holding.is_none() || log.is_some_and(|log| log.covers(sent));
        let held = holding.unwrap_or_default();
        for (seq, envelope) in log.map(|log| log.entries.as_slice()).unwrap_or_default() {
            if *seq <= sent {
                continue;
            }
            if let Some((change, out)) = frame_for(
                envelope,
                seat.peer.as_str(),
                envelope.origin != self.node_id,
            ) {
                deliver_numbered(local_seat, &change, out, *seq);
            }
        }
        for (change, out, seq) in held {
            deliver_numbered(local_seat, &change, out, seq);
        }
        if !complete {
            local_seat
                .handle
                .send(Outbound::message(&ServerMessage::Reconnect {
                    reason: ReconnectReason::Missed,
                }));
        }
        complete
    }

    /// Queues, unnumbered, a `peer-state` for every member of `members` whose
    /// call state is not the one this node's seats were last told (the
    /// mirror's), to each attached seat of `room` that knows of it
    /// ([`EnvelopeSink::tell_states`]).
    pub fn tell_states(&self, room: &RoomName, members: &[Member]) {
        let mut rooms = self.lock();
        let Some(local) = rooms.get_mut(room) else {
            return;
        };
        for member in members {
            let Some(mirrored) = local.mirror.iter_mut().find(|m| m.id == member.id) else {
                continue;
            };
            if mirrored.state == member.state {
                continue;
            }
            mirrored.state = member.state;
            let out = Outbound::message(&ServerMessage::PeerState {
                peer: member.id.clone(),
                state: member.state,
            });
            for (peer, seat) in &local.seats {
                let attached = seat.held.is_none() && seat.catching_up.is_none();
                if attached && peer.as_str() != member.id && seat.known.peers.contains(&member.id) {
                    seat.handle.send(out.clone());
                }
            }
        }
    }

    pub fn stats(&self) -> RouterStats {
        let rooms = self.lock();
        RouterStats {
            rooms: rooms.len(),
            seats: rooms.values().map(|r| r.seats.len()).sum(),
        }
    }
}

/// Where every envelope from the bus reaches the local sessions it concerns: the
/// sink each bus of this node delivers into.
impl EnvelopeSink for Router {
    /// Borrowed: the in-process bus delivers what its publisher still owns, and a
    /// relayed frame is copied once, into the receiver's outbox.
    fn deliver(&self, envelope: &Envelope) {
        self.metrics.bus_received.inc();
        let span = crate::telemetry::deliver_span(&self.node_id, envelope);
        let _entered = span.enter();
        let cross_node = envelope.origin != self.node_id;
        let mut rooms = self.lock();
        let Some(local) = rooms.get_mut(&envelope.room) else {
            return;
        };
        if !local.synced {
            local.backlog.push(envelope.clone());
            return;
        }
        let live = Live {
            room: &envelope.room,
            gaps: self.gaps.get(),
        };
        apply(local, envelope, cross_node, &live);
    }

    fn report_gaps_to(&self, gaps: mpsc::UnboundedSender<AttachedSeat>) {
        let _ = self.gaps.set(gaps);
    }

    fn hold_attached(&self) -> Vec<AttachedSeat> {
        Router::hold_attached(self)
    }

    fn catch_up(&self, seat: &AttachedSeat, log: Option<&SeatLog>) -> bool {
        Router::catch_up(self, seat, log)
    }

    fn tell_states(&self, room: &RoomName, members: &[Member]) {
        Router::tell_states(self, room, members);
    }
}

/// Applies one envelope to a synced room: updates the mirror and queues frames.
fn apply(local: &mut LocalRoom, envelope: &Envelope, cross_node: bool, live: &Live<'_>) {
    match &envelope.event {
        Event::Relay {
            to, frame, message, ..
        } => {
            if let Some(seat) = local.seats.get_mut(to) {
                let seq = envelope.seq_for(to.as_str());
                let active = seat.held.is_none() && seat.catching_up.is_none();
                if let (true, Some(seq)) = (active, seq.filter(|seq| !live.skips(seat, *seq))) {
                    // An active seat: a relay tells every client something, so
                    // the number alone decides, and the frame is copied once.
                    let kind = relay_kind(message);
                    seat.handle.send_numbered_frame(
                        seq,
                        frame,
                        kind,
                        envelope.sent_at_us,
                        cross_node,
                    );
                    return;
                }
                let out = Outbound {
                    text: frame.as_str().into(),
                    kind: relay_kind(message),
                    sent_at_us: envelope.sent_at_us,
                    cross_node,
                };
                push(seat, to, Change::None, out, seq, live);
            }
        }
        Event::PeerJoined { member } => {
            if !local.mirror.iter().any(|m| m.id == member.id) {
                local.mirror.push(member.clone());
            }
            let out = Outbound::message(&ServerMessage::PeerJoined {
                peer: member.clone(),
            });
            for (id, seat) in &mut local.seats {
                if id.as_str() != member.id {
                    let seq = envelope.seq_for(id.as_str());
                    let change = Change::Joined(member.id.clone());
                    push(seat, id, change, out.clone(), seq, live);
                }
            }
        }
        Event::PeerLeft { peer, reason } => {
            local.mirror.retain(|m| m.id != peer.as_str());
            let out = Outbound::message(&ServerMessage::PeerLeft {
                peer: peer.to_string(),
                reason: *reason,
            });
            for (id, seat) in &mut local.seats {
                if id != peer {
                    let seq = envelope.seq_for(id.as_str());
                    let change = Change::Left(peer.to_string());
                    push(seat, id, change, out.clone(), seq, live);
                }
            }
        }
        Event::SeatMoved { peer, conn } => {
            if let Some(seat) = local.seats.get(peer) {
                seat.evict_all_but(conn);
            }
        }
        Event::Broadcast {
            from,
            message,
            frame,
            chat,
        } => {
            if message == BroadcastKind::PeerState.as_str() {
                mirror_state(&mut local.mirror, frame);
            }
            let out = Outbound {
                text: frame.as_str().into(),
                kind: relay_kind(message),
                sent_at_us: 0,
                cross_node,
            };
            for (id, seat) in &mut local.seats {
                if id != from {
                    let change = Change::Broadcast {
                        from: from.to_string(),
                        chat: chat.clone(),
                    };
                    let seq = envelope.seq_for(id.as_str());
                    push(seat, id, change, out.clone(), seq, live);
                }
            }
        }
    }
}

/// Keeps the call state a `peer-state` frame tells in the room's mirror, so
/// that [`Router::tell_states`] knows what this node's seats were told.
fn mirror_state(mirror: &mut [Member], frame: &str) {
    if let Ok(ServerMessage::PeerState { peer, state }) = serde_json::from_str(frame) {
        if let Some(member) = mirror.iter_mut().find(|m| m.id == peer) {
            member.state = state;
        }
    }
}

/// Hands a frame of the room's stream to a seat: held while the seat is
/// pending, else queued once. A frame with no `seq` for the seat was published
/// before the seat had a stream (before its `JOIN`): its snapshot and history
/// already tell what it says, so it is dropped.
fn push(
    seat: &mut LocalSeat,
    peer: &PeerId,
    change: Change,
    out: Outbound,
    seq: Option<u64>,
    live: &Live<'_>,
) {
    let Some(seq) = seq else {
        return;
    };
    if let Some(held) = &mut seat.held {
        held.push((change, out, seq));
    } else if let Some(held) = &mut seat.catching_up {
        // Past the bound the frame is left to the buffer, where the publish
        // put it: the catch-up reads it from there, or reports the gap.
        if held.len() < CATCH_UP_HOLD {
            held.push((change, out, seq));
        }
    } else if live.skips(seat, seq) {
        live.report(seat, peer, (change, out, seq));
    } else {
        deliver_numbered(seat, &change, out, seq);
    }
}

/// Queues the frame numbered `seq` unless the seat was queued that number
/// already, or the frame tells its client nothing new. Either way the number is
/// used up: another copy of a frame left out (a replayed chat message that was
/// also in the history, then held while the resume ran) is left out too.
fn deliver_numbered(seat: &mut LocalSeat, change: &Change, out: Outbound, seq: u64) {
    if seq <= seat.handle.sent_seq() {
        return;
    }
    if seat.known.tells(change) {
        seat.handle.send_numbered(seq, out);
    } else {
        seat.handle.start_at(seq);
    }
}

/// The frame an envelope read back from a seat's buffer makes for that seat,
/// and what it changes: the same frame the live path queues.
fn frame_for(envelope: &Envelope, peer: &str, cross_node: bool) -> Option<(Change, Outbound)> {
    match &envelope.event {
        Event::Relay {
            to, frame, message, ..
        } if to.as_str() == peer => Some((
            Change::None,
            Outbound {
                text: frame.as_str().into(),
                kind: relay_kind(message),
                sent_at_us: envelope.sent_at_us,
                cross_node,
            },
        )),
        Event::PeerJoined { member } if member.id != peer => Some((
            Change::Joined(member.id.clone()),
            Outbound::message(&ServerMessage::PeerJoined {
                peer: member.clone(),
            }),
        )),
        Event::PeerLeft { peer: gone, reason } if gone.as_str() != peer => Some((
            Change::Left(gone.to_string()),
            Outbound::message(&ServerMessage::PeerLeft {
                peer: gone.to_string(),
                reason: *reason,
            }),
        )),
        Event::Broadcast {
            from,
            message,
            frame,
            chat,
        } if from.as_str() != peer => Some((
            Change::Broadcast {
                from: from.to_string(),
                chat: chat.clone(),
            },
            Outbound {
                text: frame.as_str().into(),
                kind: relay_kind(message),
                sent_at_us: 0,
                cross_node,
            },
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{outbox, Receiver};
    use std::sync::atomic::{AtomicU64, Ordering};
    use vc_protocol::LeaveReason;

    use crate::vocabulary::testing::{conn, node, peer, room};

    fn member(id: &str) -> Member {
        Member {
            id: id.into(),
            name: id.into(),
            user: None,
            state: vc_protocol::CallState::default(),
        }
    }

    /// An envelope as a bus publishes it: numbered on the stream of every seat
    /// these tests use (one count for all, which only has to go up).
    fn envelope(event: Event) -> Envelope {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let seq = NEXT.fetch_add(1, Ordering::Relaxed);
        Envelope {
            room: room("r"),
            origin: node("n"),
            sent_at_us: 0,
            traceparent: None,
            event,
            seqs: ["me", "a", "b", "c", "p1", "p2"]
                .into_iter()
                .map(|id| (peer(id), seq))
                .collect(),
        }
    }

    /// A session's handle, its outbox, and a second handle to read its switch.
    fn seat() -> (SessionHandle, Receiver, SessionHandle) {
        let (handle, rx) = outbox(8);
        (handle.clone(), rx, handle)
    }

    fn drain(rx: &mut Receiver) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        while let Some(out) = rx.try_recv() {
            kinds.push(out.kind);
        }
        kinds
    }

    fn reply() -> Outbound {
        Outbound::message(&ServerMessage::Left { id: None })
    }

    /// An offer from `b` to `me` numbered `seq` on `me`'s stream.
    fn offer_to_me(sdp: &str, seq: u64) -> Envelope {
        Envelope {
            room: room("r"),
            origin: node("other"),
            sent_at_us: 0,
            traceparent: None,
            event: Event::Relay {
                from: peer("b"),
                to: peer("me"),
                message: "offer".into(),
                frame: ServerMessage::Offer {
                    from: "b".into(),
                    sdp: sdp.into(),
                }
                .to_json(),
            },
            seqs: [(peer("me"), seq)].into_iter().collect(),
        }
    }

    /// A router with `me` attached (its `joined` reply drained) and sent offer 1.
    fn attached_after_one_offer() -> (Router, Receiver) {
        attached_with_outbox(8)
    }

    fn attached_with_outbox(capacity: usize) -> (Router, Receiver) {
        let router = Router::new(&node("n"), Arc::new(Metrics::new("n")));
        let (handle, mut rx) = outbox(capacity);
        router.reserve(&room("r"), &peer("me"), &conn("c1"), handle);
        assert!(router.activate(
            &room("r"),
            member("me"),
            &conn("c1"),
            &[member("b")],
            Vec::new(),
            reply(),
            &[],
        ));
        router.deliver(&offer_to_me("1", 1));
        assert_eq!(drain(&mut rx), ["left", "offer"]);
        (router, rx)
    }

    /// The frames queued since, as (seq, sdp or type).
    fn frames(rx: &mut Receiver) -> Vec<(Option<u64>, String)> {
        std::iter::from_fn(|| rx.try_recv())
            .map(|out| {
                let value: serde_json::Value = serde_json::from_str(&out.text).unwrap();
                let what = value["sdp"].as_str().unwrap_or(out.kind).to_owned();
                (value["seq"].as_u64(), what)
            })
            .collect()
    }

    #[test]
    fn a_seat_catching_up_gets_what_its_buffer_has_past_what_it_was_sent_then_what_was_held() {
        let (router, mut rx) = attached_after_one_offer();
        let attached = router.hold_attached();
        assert_eq!(attached.len(), 1);
        // Arrives on the new subscription while the buffer is being read: held.
        router.deliver(&offer_to_me("4", 4));
        assert!(frames(&mut rx).is_empty(), "held behind what was missed");
        let log = SeatLog {
            last: 4,
            entries: (1..=4)
                .map(|seq| (seq, offer_to_me(&seq.to_string(), seq)))
                .collect(),
        };
        assert!(router.catch_up(&attached[0], Some(&log)));
        let expected: Vec<(Option<u64>, String)> =
            (2..=4).map(|seq| (Some(seq), seq.to_string())).collect();
        assert_eq!(
            frames(&mut rx),
            expected,
            "the gap once, in order, then the rest"
        );
        // Delivered as usual again.
        router.deliver(&offer_to_me("5", 5));
        assert_eq!(frames(&mut rx), [(Some(5), "5".to_owned())]);
    }

    #[test]
    fn a_seat_catching_up_holds_a_bounded_number_of_frames_and_reads_the_rest_from_its_buffer() {
        let (router, mut rx) = attached_with_outbox(4 * CATCH_UP_HOLD);
        let attached = router.hold_attached();
        let last = 2 + CATCH_UP_HOLD as u64 * 2;
        for seq in 2..=last {
            router.deliver(&offer_to_me(&seq.to_string(), seq));
        }
        let held = router.lock()[&room("r")].seats[&peer("me")]
            .catching_up
            .as_ref()
            .map(Vec::len);
        assert_eq!(held, Some(CATCH_UP_HOLD));
        let log = SeatLog {
            last,
            entries: (1..=last)
                .map(|seq| (seq, offer_to_me(&seq.to_string(), seq)))
                .collect(),
        };
        assert!(router.catch_up(&attached[0], Some(&log)));
        let seqs: Vec<Option<u64>> = frames(&mut rx).into_iter().map(|(seq, _)| seq).collect();
        assert_eq!(
            seqs,
            (2..=last).map(Some).collect::<Vec<_>>(),
            "every one once, in order"
        );
    }

    #[test]
    fn a_live_frame_that_skips_numbers_holds_the_seat_until_its_buffer_fills_the_gap() {
        let (router, mut rx) = attached_after_one_offer();
        let (gaps, mut reported) = mpsc::unbounded_channel();
        router.report_gaps_to(gaps);
        // Offers 2 and 3 were lost on the way; 4 and 5 arrive.
        router.deliver(&offer_to_me("4", 4));
        router.deliver(&offer_to_me("5", 5));
        assert!(frames(&mut rx).is_empty(), "held behind the gap");
        let seat = reported.try_recv().expect("the gap is reported");
        assert_eq!((seat.room, seat.peer.as_str()), (room("r"), "me"));
        assert!(reported.try_recv().is_err(), "once per gap");
        let log = SeatLog {
            last: 5,
            entries: (1..=5)
                .map(|seq| (seq, offer_to_me(&seq.to_string(), seq)))
                .collect(),
        };
        let seat = AttachedSeat {
            room: room("r"),
            peer: peer("me"),
            conn: conn("c1"),
        };
        assert!(router.catch_up(&seat, Some(&log)));
        let expected: Vec<(Option<u64>, String)> =
            (2..=5).map(|seq| (Some(seq), seq.to_string())).collect();
        assert_eq!(frames(&mut rx), expected);
        // Numbers in a row again: delivered as they come.
        router.deliver(&offer_to_me("6", 6));
        assert_eq!(frames(&mut rx), [(Some(6), "6".to_owned())]);
        assert!(reported.try_recv().is_err());
    }

    #[test]
    fn a_seat_whose_buffer_cannot_show_the_gap_is_asked_to_reconnect() {
        let (router, mut rx) = attached_after_one_offer();
        let attached = router.hold_attached();
        // Offers 2 and 3 fell out of the buffer.
        let log = SeatLog {
            last: 5,
            entries: vec![(4, offer_to_me("4", 4)), (5, offer_to_me("5", 5))],
        };
        assert!(!router.catch_up(&attached[0], Some(&log)));
        assert_eq!(
            frames(&mut rx),
            [
                (Some(4), "4".to_owned()),
                (Some(5), "5".to_owned()),
                (None, "reconnect".to_owned())
            ]
        );
        // A buffer that could not be read at all says the same.
        let attached = router.hold_attached();
        assert!(!router.catch_up(&attached[0], None));
        assert_eq!(frames(&mut rx), [(None, "reconnect".to_owned())]);
    }

    #[test]
    fn a_relay_is_handed_over_only_to_a_seat_that_is_attached_and_not_catching_up() {
        let (router, mut rx) = attached_after_one_offer();
        let frame = ServerMessage::Offer {
            from: "b".into(),
            sdp: "direct".into(),
        }
        .to_json();
        assert!(router.hand_over(&room("r"), &peer("me"), &frame, RelayKind::Offer));
        assert_eq!(frames(&mut rx), [(None, "direct".to_owned())]);
        assert!(!router.hand_over(&room("r"), &peer("b"), &frame, RelayKind::Offer));
        let _attached = router.hold_attached();
        assert!(!router.hand_over(&room("r"), &peer("me"), &frame, RelayKind::Offer));
    }

    #[test]
    fn events_before_activation_follow_the_reply_without_duplicates() {
        let router = Router::new(&node("n"), Arc::new(Metrics::new("n")));
        let (handle, mut rx, _e) = seat();
        router.reserve(&room("r"), &peer("me"), &conn("c1"), handle);
        // Arrive while presence is still answering: b is in the snapshot too, c is not.
        router.deliver(&envelope(Event::PeerJoined {
            member: member("b"),
        }));
        router.deliver(&envelope(Event::PeerJoined {
            member: member("c"),
        }));
        router.deliver(&envelope(Event::PeerLeft {
            peer: peer("a"),
            reason: LeaveReason::Left,
        }));
        assert!(router.activate(
            &room("r"),
            member("me"),
            &conn("c1"),
            &[member("a"), member("b")],
            Vec::new(),
            reply(),
            &[],
        ));
        assert_eq!(drain(&mut rx), ["left", "peer-joined", "peer-left"]);
        assert!(router.is_member(&room("r"), &peer("b")));
        assert!(router.is_member(&room("r"), &peer("c")));
        assert!(!router.is_member(&room("r"), &peer("a")));
    }

    #[test]
    fn a_late_event_about_a_peer_from_the_snapshot_is_not_repeated() {
        let router = Router::new(&node("n"), Arc::new(Metrics::new("n")));
        let (handle, mut rx, _e) = seat();
        router.reserve(&room("r"), &peer("me"), &conn("c1"), handle);
        assert!(router.activate(
            &room("r"),
            member("me"),
            &conn("c1"),
            &[member("b")],
            Vec::new(),
            reply(),
            &[],
        ));
        // b's own node announces b only now, after my snapshot listed it.
        router.deliver(&envelope(Event::PeerJoined {
            member: member("b"),
        }));
        // x left before I joined: I never heard of it, so I hear nothing.
        router.deliver(&envelope(Event::PeerLeft {
            peer: peer("x"),
            reason: LeaveReason::Left,
        }));
        router.deliver(&envelope(Event::PeerLeft {
            peer: peer("b"),
            reason: LeaveReason::Left,
        }));
        assert_eq!(drain(&mut rx), ["left", "peer-left"]);
    }

    #[test]
    fn relays_reach_only_their_target_and_full_outbox_evicts() {
        let router = Router::new(&node("n"), Arc::new(Metrics::new("n")));
        let (h1, mut rx1, _e1) = seat();
        let (h2, mut rx2, e2) = seat();
        router.reserve(&room("r"), &peer("p1"), &conn("c1"), h1);
        assert!(router.activate(
            &room("r"),
            member("p1"),
            &conn("c1"),
            &[],
            Vec::new(),
            reply(),
            &[],
        ));
        router.reserve(&room("r"), &peer("p2"), &conn("c2"), h2);
        assert!(router.activate(
            &room("r"),
            member("p2"),
            &conn("c2"),
            &[member("p1")],
            Vec::new(),
            reply(),
            &[],
        ));
        drain(&mut rx1);
        drain(&mut rx2);
        for _ in 0..9 {
            router.deliver(&envelope(Event::Relay {
                from: peer("p1"),
                to: peer("p2"),
                message: "candidate".into(),
                frame: "{}".into(),
            }));
        }
        assert!(drain(&mut rx1).is_empty());
        assert_eq!(e2.eviction(), Some(Eviction::SlowConsumer));
        assert_eq!(drain(&mut rx2).len(), 8);
    }

    #[test]
    fn seat_moved_evicts_the_stale_connection_only() {
        let router = Router::new(&node("n"), Arc::new(Metrics::new("n")));
        let (h1, _rx1, e1) = seat();
        router.reserve(&room("r"), &peer("p1"), &conn("old"), h1);
        assert!(router.activate(
            &room("r"),
            member("p1"),
            &conn("old"),
            &[],
            Vec::new(),
            reply(),
            &[],
        ));
        router.deliver(&envelope(Event::SeatMoved {
            peer: peer("p1"),
            conn: conn("old"),
        }));
        assert_eq!(e1.eviction(), None);
        router.deliver(&envelope(Event::SeatMoved {
            peer: peer("p1"),
            conn: conn("new"),
        }));
        assert_eq!(e1.eviction(), Some(Eviction::SeatMoved));
    }

    #[test]
    fn a_failed_resume_gives_the_seat_back_with_what_was_held() {
        let router = Router::new(&node("n"), Arc::new(Metrics::new("n")));
        let (owner, mut owner_rx, owner_evicted) = seat();
        router.reserve(&room("r"), &peer("p1"), &conn("owner"), owner);
        assert!(router.activate(
            &room("r"),
            member("p1"),
            &conn("owner"),
            &[member("p2")],
            Vec::new(),
            reply(),
            &[],
        ));
        drain(&mut owner_rx);
        let (intruder, mut intruder_rx, _e) = seat();
        router.reserve(&room("r"), &peer("p1"), &conn("intruder"), intruder);
        let relay = || {
            envelope(Event::Relay {
                from: peer("p2"),
                to: peer("p1"),
                message: "offer".into(),
                frame: "{}".into(),
            })
        };
        router.deliver(&relay());
        assert_eq!(owner_evicted.eviction(), None);
        router.remove(&room("r"), &peer("p1"), &conn("intruder"));
        router.deliver(&relay());
        assert_eq!(drain(&mut owner_rx), ["offer", "offer"]);
        assert!(drain(&mut intruder_rx).is_empty());
        assert_eq!(owner_evicted.eviction(), None);
        assert_eq!(router.stats(), RouterStats { rooms: 1, seats: 1 });
    }

    #[test]
    fn a_confirmed_resume_evicts_the_old_connection() {
        let router = Router::new(&node("n"), Arc::new(Metrics::new("n")));
        let (old, _old_rx, old_evicted) = seat();
        router.reserve(&room("r"), &peer("p1"), &conn("old"), old);
        assert!(router.activate(
            &room("r"),
            member("p1"),
            &conn("old"),
            &[],
            Vec::new(),
            reply(),
            &[],
        ));
        let (new, mut new_rx, _e) = seat();
        router.reserve(&room("r"), &peer("p1"), &conn("new"), new);
        // The old socket ends while the resume is pending: it leaves no trace.
        router.remove(&room("r"), &peer("p1"), &conn("old"));
        assert!(router.activate(
            &room("r"),
            member("p1"),
            &conn("new"),
            &[],
            Vec::new(),
            reply(),
            &[],
        ));
        assert_eq!(old_evicted.eviction(), None);
        assert_eq!(drain(&mut new_rx), ["left"]);
        let (newer, _rx, _e) = seat();
        router.reserve(&room("r"), &peer("p1"), &conn("newer"), newer);
        assert!(router.activate(
            &room("r"),
            member("p1"),
            &conn("newer"),
            &[],
            Vec::new(),
            reply(),
            &[],
        ));
        router.remove(&room("r"), &peer("p1"), &conn("newer"));
        assert_eq!(router.stats(), RouterStats::default());
    }

    fn broadcast(from: &str, chat: Option<&str>) -> Envelope {
        envelope(Event::Broadcast {
            from: peer(from),
            message: "chat".into(),
            frame: "{}".into(),
            chat: chat.map(str::to_owned),
        })
    }

    #[test]
    fn broadcasts_reach_every_other_seat_once_and_skip_what_the_history_told() {
        let router = Router::new(&node("n"), Arc::new(Metrics::new("n")));
        let (h1, mut rx1, _e1) = seat();
        router.reserve(&room("r"), &peer("p1"), &conn("c1"), h1);
        assert!(router.activate(
            &room("r"),
            member("p1"),
            &conn("c1"),
            &[],
            Vec::new(),
            reply(),
            &[],
        ));
        drain(&mut rx1);
        let (h2, mut rx2, _e2) = seat();
        router.reserve(&room("r"), &peer("p2"), &conn("c2"), h2);
        router.deliver(&envelope(Event::PeerJoined {
            member: member("p2"),
        }));
        // While p2 is pending: a message its history will carry, one it will not,
        // and one from a peer nobody here knows.
        router.deliver(&broadcast("p1", Some("m1")));
        router.deliver(&broadcast("p1", Some("m2")));
        router.deliver(&broadcast("stranger", Some("m3")));
        assert!(router.activate(
            &room("r"),
            member("p2"),
            &conn("c2"),
            &[member("p1")],
            vec!["m1".into()],
            reply(),
            &[],
        ));
        assert_eq!(drain(&mut rx2), ["left", "chat"]);
        // The sender hears nothing of its own.
        assert_eq!(drain(&mut rx1), ["peer-joined"]);
        // Once active: every other seat hears each message, the sender does not.
        router.deliver(&broadcast("p2", Some("m4")));
        assert_eq!(drain(&mut rx2), Vec::<&str>::new());
        assert_eq!(drain(&mut rx1), ["chat"]);
        router.deliver(&broadcast("p1", None));
        assert_eq!(drain(&mut rx2), ["chat"]);
    }

    #[test]
    fn an_earlier_reservation_confirmed_under_a_later_one_is_activated_in_place() {
        let router = Router::new(&node("n"), Arc::new(Metrics::new("n")));
        let (x, mut x_rx, x_evicted) = seat();
        let (y, mut y_rx, y_evicted) = seat();
        router.reserve(&room("r"), &peer("p1"), &conn("x"), x);
        router.reserve(&room("r"), &peer("p1"), &conn("y"), y);
        // Presence moved the seat to x: y's resume is still on its way there.
        assert!(router.activate(
            &room("r"),
            member("p1"),
            &conn("x"),
            &[member("p2")],
            Vec::new(),
            reply(),
            &[],
        ));
        assert_eq!(drain(&mut x_rx), ["left"]);
        router.deliver(&envelope(Event::Relay {
            from: peer("p2"),
            to: peer("p1"),
            message: "offer".into(),
            frame: "{}".into(),
        }));
        // y's resume fails: x keeps the seat, with what arrived meanwhile.
        router.remove(&room("r"), &peer("p1"), &conn("y"));
        assert_eq!(drain(&mut x_rx), ["offer"]);
        assert!(drain(&mut y_rx).is_empty());
        assert_eq!(x_evicted.eviction(), None);
        assert_eq!(y_evicted.eviction(), None);
        assert_eq!(router.stats(), RouterStats { rooms: 1, seats: 1 });
    }

    #[test]
    fn a_reservation_under_a_confirmed_later_resume_is_not_activated() {
        let router = Router::new(&node("n"), Arc::new(Metrics::new("n")));
        let (x, mut x_rx, x_evicted) = seat();
        let (y, mut y_rx, _e) = seat();
        router.reserve(&room("r"), &peer("p1"), &conn("x"), x);
        router.reserve(&room("r"), &peer("p1"), &conn("y"), y);
        assert!(router.activate(
            &room("r"),
            member("p1"),
            &conn("y"),
            &[],
            Vec::new(),
            reply(),
            &[],
        ));
        // x is still waiting for presence, which will refuse it: not evicted.
        assert_eq!(x_evicted.eviction(), None);
        assert!(!router.activate(
            &room("r"),
            member("p1"),
            &conn("x"),
            &[],
            Vec::new(),
            reply(),
            &[],
        ));
        assert!(drain(&mut x_rx).is_empty());
        assert_eq!(drain(&mut y_rx), ["left"]);
        router.remove(&room("r"), &peer("p1"), &conn("x"));
        assert_eq!(router.stats(), RouterStats { rooms: 1, seats: 1 });
    }

    #[test]
    fn seat_moved_evicts_active_sockets_and_leaves_pending_resumes_alone() {
        let router = Router::new(&node("n"), Arc::new(Metrics::new("n")));
        let (owner, _owner_rx, owner_evicted) = seat();
        let (pending, _rx, pending_evicted) = seat();
        router.reserve(&room("r"), &peer("p1"), &conn("owner"), owner);
        assert!(router.activate(
            &room("r"),
            member("p1"),
            &conn("owner"),
            &[],
            Vec::new(),
            reply(),
            &[],
        ));
        router.reserve(&room("r"), &peer("p1"), &conn("pending"), pending);
        // Another node's resume won.
        router.deliver(&envelope(Event::SeatMoved {
            peer: peer("p1"),
            conn: conn("elsewhere"),
        }));
        assert_eq!(owner_evicted.eviction(), Some(Eviction::SeatMoved));
        assert_eq!(pending_evicted.eviction(), None);
    }

    #[test]
    fn last_seat_out_drops_the_room() {
        let router = Router::new(&node("n"), Arc::new(Metrics::new("n")));
        let (h1, _rx1, _e1) = seat();
        router.reserve(&room("r"), &peer("p1"), &conn("c1"), h1);
        router.remove(&room("r"), &peer("p1"), &conn("other-conn"));
        assert_eq!(router.stats(), RouterStats { rooms: 1, seats: 1 });
        router.remove(&room("r"), &peer("p1"), &conn("c1"));
        assert_eq!(router.stats(), RouterStats::default());
    }
}
