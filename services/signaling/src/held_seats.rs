//! `HeldSeats`: every seat this node holds in presence, attached or parked, as the
//! node last wrote it. The one record of "seats on this node".
//!
//! [`Rooms`](crate::rooms::Rooms) keeps it, next to each presence call that
//! takes, changes or frees one of this node's seats; nothing else writes it, and
//! no bus event edits it (a seat resumed elsewhere leaves when its evicted
//! session lets go of it). After an outage that may have lost Redis's data, the
//! Redis resync writes these seats back. The router keeps the sockets, not the
//! seats: a parked seat has no socket, but it is still this node's to free.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use vc_protocol::{CallStateChange, RoomName};

use crate::presence::{MemberRecord, Parked};
use crate::vocabulary::{ConnId, PeerId};

/// (room, peer) → the seat's record, and the highest `seq` its session was sent.
type Seats = HashMap<(RoomName, PeerId), (MemberRecord, Arc<AtomicU64>)>;

#[derive(Debug, Default)]
pub struct HeldSeats {
    seats: Mutex<Seats>,
}

impl HeldSeats {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seats> {
        // Edits are single inserts, removes and field writes: a poisoned map is
        // still whole.
        self.seats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Presence gave this node the seat (a join or a resume), as `record` says;
    /// `sent` counts what its session is sent ([`SessionHandle::sent_counter`]).
    ///
    /// [`SessionHandle::sent_counter`]: crate::outbox::SessionHandle::sent_counter
    pub fn hold(&self, room: &RoomName, record: MemberRecord, sent: Arc<AtomicU64>) {
        self.lock()
            .insert((room.clone(), record.id.clone()), (record, sent));
    }

    /// The seat is parked, if `conn` still holds it here.
    pub fn park(&self, room: &RoomName, peer: &PeerId, conn: &ConnId, parked: Parked) {
        if let Some(record) = find(&mut self.lock(), room, peer, conn) {
            record.parked = Some(parked);
        }
    }

    /// The seat's call state changes, if `conn` still holds it here.
    pub fn set_call_state(
        &self,
        room: &RoomName,
        peer: &PeerId,
        conn: &ConnId,
        change: CallStateChange,
    ) {
        if let Some(record) = find(&mut self.lock(), room, peer, conn) {
            record.state = record.state.with(change);
        }
    }

    /// This node no longer holds the seat through `conn`: freed, expired, or
    /// resumed by another connection. A later connection's seat stays.
    pub fn let_go(&self, room: &RoomName, peer: &PeerId, conn: &ConnId) {
        let mut seats = self.lock();
        let key = (room.clone(), peer.clone());
        if seats.get(&key).is_some_and(|(r, _)| r.conn == *conn) {
            seats.remove(&key);
        }
    }

    /// Every seat held, with its room and the highest `seq` its session was sent.
    pub fn all(&self) -> Vec<(RoomName, MemberRecord, u64)> {
        self.lock()
            .iter()
            .map(|((room, _), (record, sent))| {
                (room.clone(), record.clone(), sent.load(Ordering::Relaxed))
            })
            .collect()
    }
}

/// The seat, if `conn` holds it.
fn find<'a>(
    seats: &'a mut Seats,
    room: &RoomName,
    peer: &PeerId,
    conn: &ConnId,
) -> Option<&'a mut MemberRecord> {
    seats
        .get_mut(&(room.clone(), peer.clone()))
        .map(|(r, _)| r)
        .filter(|r| r.conn == *conn)
}

#[cfg(test)]
mod tests {
    use vc_protocol::{CallState, DisplayName, LeaveReason};

    use super::*;
    use crate::vocabulary::testing::{conn, node, peer, room};

    fn record(id: &str, via: &str) -> MemberRecord {
        MemberRecord {
            id: peer(id),
            name: DisplayName::parse(id).expect("a name"),
            user: None,
            node: node("n1"),
            conn: conn(via),
            joined_at_ms: 1,
            resume_secret: "s".into(),
            grant_expires_ms: None,
            parked: None,
            state: CallState::default(),
            stream: String::new(),
        }
    }

    #[test]
    fn only_the_connection_holding_a_seat_changes_or_frees_it() {
        let held = HeldSeats::new();
        let sent = Arc::new(AtomicU64::new(0));
        held.hold(&room("r"), record("a", "c1"), Arc::clone(&sent));
        held.hold(&room("r"), record("b", "c2"), Arc::clone(&sent));
        // A resume on this node: c3 holds a's seat now.
        held.hold(&room("r"), record("a", "c3"), Arc::clone(&sent));
        sent.store(7, Ordering::Relaxed);
        let parked = Parked {
            until_ms: 9,
            reason: LeaveReason::Disconnected,
        };
        held.park(&room("r"), &peer("a"), &conn("c1"), parked);
        let raise = CallStateChange {
            hand: Some(true),
            ..CallStateChange::default()
        };
        held.set_call_state(&room("r"), &peer("a"), &conn("c1"), raise);
        held.let_go(&room("r"), &peer("a"), &conn("c1"));
        let mut all = held.all();
        all.sort_by(|x, y| x.1.id.cmp(&y.1.id));
        assert_eq!(
            all,
            [
                (room("r"), record("a", "c3"), 7),
                (room("r"), record("b", "c2"), 7)
            ]
        );

        held.set_call_state(&room("r"), &peer("a"), &conn("c3"), raise);
        let mute = CallStateChange {
            muted: Some(true),
            ..CallStateChange::default()
        };
        held.set_call_state(&room("r"), &peer("a"), &conn("c3"), mute);
        held.park(&room("r"), &peer("a"), &conn("c3"), parked);
        let a = held.all().into_iter().find(|(_, r, _)| r.id == "a");
        let raised_and_muted = CallState {
            hand: true,
            muted: true,
            ..CallState::default()
        };
        assert_eq!(
            a.map(|(_, r, _)| (r.state, r.parked)),
            Some((raised_and_muted, Some(parked)))
        );
        held.let_go(&room("r"), &peer("a"), &conn("c3"));
        held.let_go(&room("r"), &peer("b"), &conn("c2"));
        assert!(held.all().is_empty());
    }
}
