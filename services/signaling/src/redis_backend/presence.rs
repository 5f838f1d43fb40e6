//! `RedisPresence`: presence of a fleet, one hash per room (`vc:{room}:members`),
//! every change one Lua script (`scripts.rs`) so that it is atomic.
//!
//! A seat this node takes (a join or a resume) also puts the room in the node's
//! rooms set, which is what a sweep reads if the node dies.

use std::sync::Arc;

use async_trait::async_trait;
use redis::AsyncCommands;
use vc_protocol::{CallState, CallStateChange, LeaveReason, RoomName};

use super::connection::Connections;
use super::{keys, scripts};
use crate::presence::{MemberRecord, Parked, Presence, PresenceError, ResumeClaim};
use crate::vocabulary::{ConnId, NodeId, PeerId};

pub struct RedisPresence {
    node_id: NodeId,
    connections: Arc<Connections>,
}

impl RedisPresence {
    pub(super) fn new(node_id: &NodeId, connections: Arc<Connections>) -> Self {
        Self {
            node_id: node_id.clone(),
            connections,
        }
    }

    /// Notes that this node holds seats in `room`, for a sweep if it dies.
    async fn register_room(&self, room: &RoomName) -> Result<(), PresenceError> {
        let mut commands = self.connections.commands();
        commands
            .sadd::<_, _, i64>(keys::node_rooms(&self.node_id), room.as_str())
            .await
            .map(|_| ())
            .map_err(PresenceError::Unavailable)
    }
}

pub(super) fn encode_record(record: &MemberRecord) -> Result<String, serde_json::Error> {
    serde_json::to_string(record)
}

fn decode_records(raw: &[String]) -> Vec<MemberRecord> {
    let mut records: Vec<MemberRecord> = raw
        .iter()
        .filter_map(|r| serde_json::from_str(r).ok())
        .collect();
    records.sort_by(|a, b| a.joined_at_ms.cmp(&b.joined_at_ms).then(a.id.cmp(&b.id)));
    records
}

/// A reason as the scripts store it: its wire name.
pub(super) fn parse_reason(reason: &str) -> Option<LeaveReason> {
    serde_json::from_value(serde_json::Value::String(reason.to_owned())).ok()
}

#[async_trait]
impl Presence for RedisPresence {
    async fn join(
        &self,
        room: &RoomName,
        record: &MemberRecord,
        capacity: usize,
    ) -> Result<Vec<MemberRecord>, PresenceError> {
        let mut commands = self.connections.commands();
        let json = encode_record(record).map_err(PresenceError::Record)?;
        let reply: Vec<String> = scripts::JOIN
            .key(keys::members(room))
            .arg(record.id.as_str())
            .arg(json)
            .arg(capacity)
            .invoke_async(&mut commands)
            .await
            .map_err(PresenceError::Unavailable)?;
        match reply.split_first() {
            Some((status, others)) if status == "ok" => {
                self.register_room(room).await?;
                Ok(decode_records(others))
            }
            _ => Err(PresenceError::Full { capacity }),
        }
    }

    async fn leave(
        &self,
        room: &RoomName,
        peer: &PeerId,
        conn: &ConnId,
    ) -> Result<bool, PresenceError> {
        let mut commands = self.connections.commands();
        let freed: i64 = scripts::LEAVE
            .key(keys::members(room))
            .key(keys::chat(room))
            .key(keys::seqs(room))
            .key(keys::log(room, peer))
            .arg(peer.as_str())
            .arg(conn.as_str())
            .invoke_async(&mut commands)
            .await
            .map_err(PresenceError::Unavailable)?;
        Ok(freed == 1)
    }

    async fn park(
        &self,
        room: &RoomName,
        peer: &PeerId,
        conn: &ConnId,
        parked: Parked,
    ) -> Result<bool, PresenceError> {
        let mut commands = self.connections.commands();
        let parked = serde_json::to_string(&parked).map_err(PresenceError::Record)?;
        let done: i64 = scripts::PARK
            .key(keys::members(room))
            .arg(peer.as_str())
            .arg(conn.as_str())
            .arg(parked)
            .invoke_async(&mut commands)
            .await
            .map_err(PresenceError::Unavailable)?;
        Ok(done == 1)
    }

    async fn resume(
        &self,
        claim: &ResumeClaim<'_>,
    ) -> Result<(MemberRecord, Vec<MemberRecord>), PresenceError> {
        let room = claim.room;
        let mut commands = self.connections.commands();
        let reply: Vec<String> = scripts::RESUME
            .key(keys::members(room))
            .arg(claim.peer.as_str())
            .arg(claim.secret)
            .arg(claim.node.as_str())
            .arg(claim.conn.as_str())
            .arg(claim.now_ms)
            .arg(claim.from_conn.as_str())
            .invoke_async(&mut commands)
            .await
            .map_err(PresenceError::Unavailable)?;
        let (status, rest) = reply.split_first().ok_or(PresenceError::NoSeat)?;
        let (seat, all) = rest.split_first().ok_or(PresenceError::NoSeat)?;
        if status != "ok" {
            return Err(PresenceError::NoSeat);
        }
        let seat: MemberRecord = serde_json::from_str(seat).map_err(PresenceError::Record)?;
        let others = decode_records(all)
            .into_iter()
            .filter(|m| m.id != seat.id)
            .collect();
        self.register_room(room).await?;
        Ok((seat, others))
    }

    async fn expire(
        &self,
        room: &RoomName,
        peer: &PeerId,
        conn: &ConnId,
    ) -> Result<Option<LeaveReason>, PresenceError> {
        let mut commands = self.connections.commands();
        let reason: Option<String> = scripts::EXPIRE
            .key(keys::members(room))
            .key(keys::chat(room))
            .key(keys::seqs(room))
            .key(keys::log(room, peer))
            .arg(peer.as_str())
            .arg(conn.as_str())
            .invoke_async(&mut commands)
            .await
            .map_err(PresenceError::Unavailable)?;
        Ok(reason.and_then(|r| parse_reason(&r)))
    }

    async fn seat(
        &self,
        room: &RoomName,
        peer: &PeerId,
    ) -> Result<Option<MemberRecord>, PresenceError> {
        let mut commands = self.connections.commands();
        let raw: Option<String> = commands
            .hget(keys::members(room), peer.as_str())
            .await
            .map_err(PresenceError::Unavailable)?;
        Ok(raw.and_then(|raw| serde_json::from_str(&raw).ok()))
    }

    async fn members(&self, room: &RoomName) -> Result<Vec<MemberRecord>, PresenceError> {
        let mut commands = self.connections.commands();
        let raw: Vec<String> = commands
            .hvals(keys::members(room))
            .await
            .map_err(PresenceError::Unavailable)?;
        Ok(decode_records(&raw))
    }

    async fn count(&self, room: &RoomName) -> Result<usize, PresenceError> {
        let mut commands = self.connections.commands();
        commands
            .hlen(keys::members(room))
            .await
            .map_err(PresenceError::Unavailable)
    }

    async fn set_call_state(
        &self,
        room: &RoomName,
        peer: &PeerId,
        conn: &ConnId,
        change: CallStateChange,
    ) -> Result<Option<CallState>, PresenceError> {
        let change = serde_json::to_string(&change).map_err(PresenceError::Record)?;
        let mut commands = self.connections.commands();
        let seat: Option<String> = scripts::SET_CALL_STATE
            .key(keys::members(room))
            .arg(peer.as_str())
            .arg(conn.as_str())
            .arg(change)
            .invoke_async(&mut commands)
            .await
            .map_err(PresenceError::Unavailable)?;
        seat.map(|seat| {
            serde_json::from_str::<MemberRecord>(&seat)
                .map(|record| record.state)
                .map_err(PresenceError::Record)
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_parse_from_their_wire_names() {
        assert_eq!(parse_reason("node-lost"), Some(LeaveReason::NodeLost));
        assert_eq!(parse_reason("timed-out"), Some(LeaveReason::TimedOut));
        assert_eq!(parse_reason("bogus"), None);
    }
}
