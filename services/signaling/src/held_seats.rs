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
use std::sync::Mutex;

use crate::presence::{MemberRecord, Parked};

/// (room, peer) → the seat's record.
type Seats = HashMap<(String, String), MemberRecord>;

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

    /// Presence gave this node the seat (a join or a resume), as `record` says.
    pub fn hold(&self, room: &str, record: MemberRecord) {
        self.lock()
            .insert((room.to_owned(), record.id.clone()), record);
    }

    /// The seat is parked, if `conn` still holds it here.
    pub fn park(&self, room: &str, peer: &str, conn: &str, parked: Parked) {
        if let Some(record) = find(&mut self.lock(), room, peer, conn) {
            record.parked = Some(parked);
        }
    }

    /// The seat's hand is raised or lowered, if `conn` still holds it here.
    pub fn set_hand(&self, room: &str, peer: &str, conn: &str, hand: bool) {
        if let Some(record) = find(&mut self.lock(), room, peer, conn) {
            record.hand = hand;
        }
    }

    /// This node no longer holds the seat through `conn`: freed, expired, or
    /// resumed by another connection. A later connection's seat stays.
    pub fn let_go(&self, room: &str, peer: &str, conn: &str) {
        let mut seats = self.lock();
        let key = (room.to_owned(), peer.to_owned());
        if seats.get(&key).is_some_and(|r| r.conn == conn) {
            seats.remove(&key);
        }
    }

    /// Every seat held, with its room.
    pub fn all(&self) -> Vec<(String, MemberRecord)> {
        self.lock()
            .iter()
            .map(|((room, _), record)| (room.clone(), record.clone()))
            .collect()
    }
}

/// The seat, if `conn` holds it.
fn find<'a>(
    seats: &'a mut Seats,
    room: &str,
    peer: &str,
    conn: &str,
) -> Option<&'a mut MemberRecord> {
    seats
        .get_mut(&(room.to_owned(), peer.to_owned()))
        .filter(|r| r.conn == conn)
}

#[cfg(test)]
mod tests {
    use vc_protocol::LeaveReason;

    use super::*;

    fn record(peer: &str, conn: &str) -> MemberRecord {
        MemberRecord {
            id: peer.into(),
            name: peer.into(),
            user: None,
            node: "n1".into(),
            conn: conn.into(),
            joined_at_ms: 1,
            resume_secret: "s".into(),
            grant_expires_ms: None,
            parked: None,
            hand: false,
        }
    }

    #[test]
    fn only_the_connection_holding_a_seat_changes_or_frees_it() {
        let held = HeldSeats::new();
        held.hold("r", record("a", "c1"));
        held.hold("r", record("b", "c2"));
        // A resume on this node: c3 holds a's seat now.
        held.hold("r", record("a", "c3"));
        let parked = Parked {
            until_ms: 9,
            reason: LeaveReason::Disconnected,
        };
        held.park("r", "a", "c1", parked);
        held.set_hand("r", "a", "c1", true);
        held.let_go("r", "a", "c1");
        let mut all = held.all();
        all.sort_by(|x, y| x.1.id.cmp(&y.1.id));
        assert_eq!(
            all,
            [
                ("r".into(), record("a", "c3")),
                ("r".into(), record("b", "c2"))
            ]
        );

        held.set_hand("r", "a", "c3", true);
        held.park("r", "a", "c3", parked);
        let a = held.all().into_iter().find(|(_, r)| r.id == "a");
        assert_eq!(
            a.map(|(_, r)| (r.hand, r.parked)),
            Some((true, Some(parked)))
        );
        held.let_go("r", "a", "c3");
        held.let_go("r", "b", "c2");
        assert!(held.all().is_empty());
    }
}
