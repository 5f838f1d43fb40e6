//! Presence of a single node, in a map behind a mutex.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use subtle::ConstantTimeEq;
use vc_protocol::{CallState, CallStateChange, LeaveReason, RoomName};

use super::{MemberRecord, Parked, Presence, PresenceError, ResumeClaim};
use crate::bus::memory::{MemoryHistory, MemoryStreams};
use crate::vocabulary::{ConnId, PeerId};

#[derive(Default)]
pub struct MemoryPresence {
    rooms: Mutex<HashMap<RoomName, Vec<MemberRecord>>>,
    /// The in-process bus's chat history, dropped with a room's last seat.
    history: Arc<MemoryHistory>,
    /// The seats' streams, opened and closed with the seats.
    streams: Arc<MemoryStreams>,
}

impl MemoryPresence {
    pub fn new() -> Self {
        Self::default()
    }

    /// Presence whose rooms take their chat history with them when they empty,
    /// and whose seats open and close their streams.
    pub fn with(history: Arc<MemoryHistory>, streams: Arc<MemoryStreams>) -> Self {
        Self {
            rooms: Mutex::default(),
            history,
            streams,
        }
    }

    /// The seats' streams this presence opens and closes.
    pub fn streams(&self) -> &Arc<MemoryStreams> {
        &self.streams
    }

    fn with_rooms<T>(&self, f: impl FnOnce(&mut HashMap<RoomName, Vec<MemberRecord>>) -> T) -> T {
        // A panic while holding the lock cannot leave a room half-edited (every
        // edit is a single push/remove), so a poisoned lock is still consistent.
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut rooms)
    }
}

#[async_trait]
impl Presence for MemoryPresence {
    async fn join(
        &self,
        room: &RoomName,
        record: &MemberRecord,
        capacity: usize,
    ) -> Result<Vec<MemberRecord>, PresenceError> {
        self.with_rooms(|rooms| {
            let members = rooms.entry(room.clone()).or_default();
            if members.len() >= capacity {
                return Err(PresenceError::Full { capacity });
            }
            let others = members.clone();
            members.push(record.clone());
            self.streams.open(room, &record.id);
            Ok(others)
        })
    }

    async fn leave(
        &self,
        room: &RoomName,
        peer: &PeerId,
        conn: &ConnId,
    ) -> Result<bool, PresenceError> {
        Ok(self
            .with_rooms(|rooms| remove_if(rooms, room, self, |m| m.id == *peer && m.conn == *conn)))
    }

    async fn park(
        &self,
        room: &RoomName,
        peer: &PeerId,
        conn: &ConnId,
        parked: Parked,
    ) -> Result<bool, PresenceError> {
        Ok(self.with_rooms(|rooms| {
            match rooms
                .get_mut(room)
                .and_then(|ms| ms.iter_mut().find(|m| m.id == *peer && m.conn == *conn))
            {
                Some(member) => {
                    member.parked = Some(parked);
                    true
                }
                None => false,
            }
        }))
    }

    async fn resume(
        &self,
        claim: &ResumeClaim<'_>,
    ) -> Result<(MemberRecord, Vec<MemberRecord>), PresenceError> {
        self.with_rooms(|rooms| {
            let members = rooms.get_mut(claim.room).ok_or(PresenceError::NoSeat)?;
            let member = members
                .iter_mut()
                .find(|m| m.id == *claim.peer)
                .ok_or(PresenceError::NoSeat)?;
            let secret_ok: bool = member
                .resume_secret
                .as_bytes()
                .ct_eq(claim.secret.as_bytes())
                .into();
            let expired = member.parked.is_some_and(|p| p.until_ms <= claim.now_ms)
                || member
                    .grant_expires_ms
                    .is_some_and(|until| until <= claim.now_ms);
            if !secret_ok || expired || member.conn != *claim.from_conn {
                return Err(PresenceError::NoSeat);
            }
            member.node = claim.node.clone();
            member.conn = claim.conn.clone();
            member.parked = None;
            let seat = member.clone();
            let others = members
                .iter()
                .filter(|m| m.id != *claim.peer)
                .cloned()
                .collect();
            Ok((seat, others))
        })
    }

    async fn expire(
        &self,
        room: &RoomName,
        peer: &PeerId,
        conn: &ConnId,
    ) -> Result<Option<LeaveReason>, PresenceError> {
        Ok(self.with_rooms(|rooms| {
            let reason = rooms
                .get(room)?
                .iter()
                .find(|m| m.id == *peer && m.conn == *conn)?
                .parked?
                .reason;
            remove_if(rooms, room, self, |m| m.id == *peer && m.conn == *conn).then_some(reason)
        }))
    }

    async fn seat(
        &self,
        room: &RoomName,
        peer: &PeerId,
    ) -> Result<Option<MemberRecord>, PresenceError> {
        Ok(self.with_rooms(|rooms| {
            rooms
                .get(room)
                .and_then(|ms| ms.iter().find(|m| m.id == *peer).cloned())
        }))
    }

    async fn members(&self, room: &RoomName) -> Result<Vec<MemberRecord>, PresenceError> {
        Ok(self.with_rooms(|rooms| rooms.get(room).cloned().unwrap_or_default()))
    }

    async fn count(&self, room: &RoomName) -> Result<usize, PresenceError> {
        Ok(self.with_rooms(|rooms| rooms.get(room).map_or(0, Vec::len)))
    }

    async fn set_call_state(
        &self,
        room: &RoomName,
        peer: &PeerId,
        conn: &ConnId,
        change: CallStateChange,
    ) -> Result<Option<CallState>, PresenceError> {
        Ok(self.with_rooms(|rooms| {
            let member = rooms
                .get_mut(room)
                .and_then(|ms| ms.iter_mut().find(|m| m.id == *peer && m.conn == *conn))?;
            member.state = member.state.with(change);
            Some(member.state)
        }))
    }
}

/// Removes the first matching member and its stream; drops the room, and its
/// chat history, when it empties.
fn remove_if(
    rooms: &mut HashMap<RoomName, Vec<MemberRecord>>,
    room: &RoomName,
    presence: &MemoryPresence,
    matches: impl Fn(&MemberRecord) -> bool,
) -> bool {
    let Some(members) = rooms.get_mut(room) else {
        return false;
    };
    let Some(index) = members.iter().position(matches) else {
        return false;
    };
    let gone = members.remove(index);
    presence.streams.close(room, &gone.id);
    if members.is_empty() {
        rooms.remove(room);
        presence.history.forget(room);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use vc_protocol::DisplayName;

    use crate::vocabulary::testing::{conn, node, peer, room};
    use crate::vocabulary::NodeId;

    /// A's resume of its seat in room r, onto node n2.
    struct Claim {
        room: RoomName,
        peer: PeerId,
        from_conn: ConnId,
        node: NodeId,
        conn: ConnId,
    }

    impl Claim {
        fn new(from_conn: &str, to_conn: &str) -> Self {
            Self {
                room: room("r"),
                peer: peer("a"),
                from_conn: conn(from_conn),
                node: node("n2"),
                conn: conn(to_conn),
            }
        }

        fn with<'a>(&'a self, secret: &'a str, now_ms: u64) -> ResumeClaim<'a> {
            ResumeClaim {
                room: &self.room,
                peer: &self.peer,
                secret,
                from_conn: &self.from_conn,
                node: &self.node,
                conn: &self.conn,
                now_ms,
            }
        }
    }

    fn record(id: &str, via: &str) -> MemberRecord {
        MemberRecord {
            id: peer(id),
            name: DisplayName::parse(&id.to_uppercase()).expect("a name"),
            user: None,
            node: node("n1"),
            conn: conn(via),
            joined_at_ms: 0,
            resume_secret: format!("secret-{id}"),
            grant_expires_ms: None,
            parked: None,
            state: CallState::default(),
            stream: String::new(),
        }
    }

    #[tokio::test]
    async fn capacity_and_order() {
        let p = MemoryPresence::new();
        assert!(p
            .join(&room("r"), &record("a", "c1"), 2)
            .await
            .expect("a")
            .is_empty());
        let others = p.join(&room("r"), &record("b", "c2"), 2).await.expect("b");
        assert_eq!(
            others.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        assert!(matches!(
            p.join(&room("r"), &record("c", "c3"), 2).await,
            Err(PresenceError::Full { capacity: 2 })
        ));
        assert!(p
            .leave(&room("r"), &peer("a"), &conn("c1"))
            .await
            .expect("leave"));
        assert!(p.join(&room("r"), &record("c", "c3"), 2).await.is_ok());
    }

    #[tokio::test]
    async fn stale_connection_cannot_touch_a_resumed_seat() {
        let p = MemoryPresence::new();
        p.join(&room("r"), &record("a", "c1"), 8)
            .await
            .expect("join");
        let parked = Parked {
            until_ms: 10_000,
            reason: LeaveReason::Disconnected,
        };
        assert!(p
            .park(&room("r"), &peer("a"), &conn("c1"), parked)
            .await
            .expect("park"));
        assert!(matches!(
            p.resume(&Claim::new("c1", "c2").with("wrong", 5_000)).await,
            Err(PresenceError::NoSeat)
        ));
        let (seat, _) = p
            .resume(&Claim::new("c1", "c2").with("secret-a", 5_000))
            .await
            .expect("resumes");
        assert_eq!((seat.node.as_str(), seat.conn.as_str()), ("n2", "c2"));
        // The old connection's timer fires: the seat is no longer its to expire.
        assert_eq!(
            p.expire(&room("r"), &peer("a"), &conn("c1")).await.ok(),
            Some(None)
        );
        assert!(!p
            .leave(&room("r"), &peer("a"), &conn("c1"))
            .await
            .expect("leave"));
        assert_eq!(p.members(&room("r")).await.expect("members").len(), 1);
    }

    #[tokio::test]
    async fn expired_seat_cannot_be_resumed_and_is_removed() {
        let p = MemoryPresence::new();
        p.join(&room("r"), &record("a", "c1"), 8)
            .await
            .expect("join");
        let parked = Parked {
            until_ms: 1_000,
            reason: LeaveReason::TimedOut,
        };
        p.park(&room("r"), &peer("a"), &conn("c1"), parked)
            .await
            .expect("park");
        assert!(matches!(
            p.resume(&Claim::new("c1", "c2").with("secret-a", 1_000))
                .await,
            Err(PresenceError::NoSeat)
        ));
        assert_eq!(
            p.expire(&room("r"), &peer("a"), &conn("c1")).await.ok(),
            Some(Some(LeaveReason::TimedOut))
        );
        assert!(p.members(&room("r")).await.expect("members").is_empty());
    }

    #[tokio::test]
    async fn of_two_resumes_that_read_the_same_seat_only_the_first_moves_it() {
        let p = MemoryPresence::new();
        p.join(&room("r"), &record("a", "c1"), 8)
            .await
            .expect("join");
        let (seat, _) = p
            .resume(&Claim::new("c1", "c2").with("secret-a", 5_000))
            .await
            .expect("the first resume moves the seat");
        assert_eq!(seat.conn, "c2");
        // The second read the seat while c1 held it: it has moved since.
        assert!(matches!(
            p.resume(&Claim::new("c1", "c3").with("secret-a", 5_000))
                .await,
            Err(PresenceError::NoSeat)
        ));
        let seat = p
            .seat(&room("r"), &peer("a"))
            .await
            .expect("seat")
            .expect("kept");
        assert_eq!(seat.conn, "c2");
        // A resume that read it as c2's may take it.
        assert!(p
            .resume(&Claim::new("c2", "c3").with("secret-a", 5_000))
            .await
            .is_ok());
    }
}
