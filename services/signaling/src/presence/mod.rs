//! Presence: the cluster-wide truth of who sits in which room.
//!
//! The bus moves messages; presence decides membership. Capacity is enforced here,
//! atomically, so that two peers racing for the last seat on two nodes cannot both
//! get in. Every change is conditional on the connection id (`conn`) that holds the
//! seat, so that a stale socket on one node cannot remove a peer that has already
//! resumed on another.

#[cfg(test)]
pub mod fake;
pub mod memory;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use vc_protocol::{CallState, CallStateChange, DisplayName, LeaveReason, Member, RoomName};

use crate::vocabulary::{ConnId, NodeId, PeerId};

/// Why presence did not do what it was asked. `Full` and `NoSeat` are answers;
/// the others mean the outcome is unknown, and keep the store's own error as
/// their source, so that its kind (connection lost, timeout, script error)
/// survives to whoever logs it.
#[derive(Debug, Error)]
pub enum PresenceError {
    #[error("room is full ({capacity} of {capacity})")]
    Full { capacity: usize },
    #[error("no seat to resume")]
    NoSeat,
    #[error("presence store unavailable: {0}")]
    Unavailable(#[source] redis::RedisError),
    #[error("a seat record could not be encoded or decoded: {0}")]
    Record(#[source] serde_json::Error),
    /// A failure a test told a fake to return.
    #[cfg(test)]
    #[error("injected fault")]
    Injected,
}

/// One seat in a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub id: PeerId,
    pub name: DisplayName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The node holding the seat's socket.
    pub node: NodeId,
    /// The connection holding the seat; changes on resume.
    pub conn: ConnId,
    pub joined_at_ms: u64,
    /// The secret part of the resume token.
    pub resume_secret: String,
    /// When the join token's grant ends (unix ms): the seat cannot be resumed
    /// after it. None without auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_expires_ms: Option<u64>,
    /// While the socket is gone: when the seat expires, and the reason the room
    /// will be given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parked: Option<Parked>,
    /// The peer's state in the call (`call-state`), kept with the seat so that
    /// joiners and resumers see it and a resume keeps it. Flat in the record,
    /// each field only while true (`hand`, `muted`, `cameraOff`, `sharing`), as
    /// the scripts write it.
    #[serde(flatten)]
    pub state: CallState,
    /// The id of the seat's stream (16 hex digits), minted at the join and kept
    /// for the seat's life: a resume whose client names another stream cannot
    /// be told its replay is complete.
    #[serde(default)]
    pub stream: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parked {
    pub until_ms: u64,
    pub reason: LeaveReason,
}

/// What a resume asks presence for.
#[derive(Debug, Clone, Copy)]
pub struct ResumeClaim<'a> {
    pub room: &'a RoomName,
    pub peer: &'a PeerId,
    pub secret: &'a str,
    /// The connection that held the seat when the resume read it. The seat moves
    /// only from that connection: of two resumes that read the seat at the same
    /// time, the first to reach presence wins and the other finds it moved, so
    /// that only one socket ends up holding it.
    pub from_conn: &'a ConnId,
    pub node: &'a NodeId,
    pub conn: &'a ConnId,
    pub now_ms: u64,
}

impl MemberRecord {
    pub fn member(&self) -> Member {
        Member {
            id: self.id.to_string(),
            name: self.name.to_string(),
            user: self.user.clone(),
            state: self.state,
        }
    }
}

/// Where membership lives: in this process for one node, in Redis for a fleet.
#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// Takes a seat if the room has fewer than `capacity`, returning the other
    /// members, oldest first.
    async fn join(
        &self,
        room: &RoomName,
        record: &MemberRecord,
        capacity: usize,
    ) -> Result<Vec<MemberRecord>, PresenceError>;

    /// Frees the seat if `conn` still holds it. True when it did.
    async fn leave(
        &self,
        room: &RoomName,
        peer: &PeerId,
        conn: &ConnId,
    ) -> Result<bool, PresenceError>;

    /// Keeps the seat for a resume until `parked.until_ms`, if `conn` still holds it.
    async fn park(
        &self,
        room: &RoomName,
        peer: &PeerId,
        conn: &ConnId,
        parked: Parked,
    ) -> Result<bool, PresenceError>;

    /// Moves a seat to `claim.conn` on `claim.node`, if the secret matches, the
    /// seat has not expired, and `claim.from_conn` still holds it. Returns the seat
    /// and the other members.
    async fn resume(
        &self,
        claim: &ResumeClaim<'_>,
    ) -> Result<(MemberRecord, Vec<MemberRecord>), PresenceError>;

    /// Frees the seat if it is still parked by `conn`; returns the reason to give
    /// the room when it did.
    async fn expire(
        &self,
        room: &RoomName,
        peer: &PeerId,
        conn: &ConnId,
    ) -> Result<Option<LeaveReason>, PresenceError>;

    /// One seat as it is now: a single read, so that a resume naming a room or
    /// seat that does not exist costs one round trip.
    async fn seat(
        &self,
        room: &RoomName,
        peer: &PeerId,
    ) -> Result<Option<MemberRecord>, PresenceError>;

    /// The room's members, oldest first.
    async fn members(&self, room: &RoomName) -> Result<Vec<MemberRecord>, PresenceError>;

    /// How many seats the room has, parked ones included: one cheap read.
    async fn count(&self, room: &RoomName) -> Result<usize, PresenceError>;

    /// Sets the fields of the seat's call state that `change` names, in one
    /// atomic step, if `conn` still holds the seat. Returns the whole state that
    /// results, or None when `conn` does not hold the seat.
    async fn set_call_state(
        &self,
        room: &RoomName,
        peer: &PeerId,
        conn: &ConnId,
        change: CallStateChange,
    ) -> Result<Option<CallState>, PresenceError>;
}
