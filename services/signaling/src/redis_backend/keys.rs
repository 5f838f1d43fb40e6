//! Every Redis key and channel name the backend uses, in one place.
//!
//! Room keys carry the room in a hash tag (`vc:{room}:…`), so that on a Redis
//! Cluster a room's channel, members hash and chat list live on the same shard:
//! a script touching two of them stays on one shard, and with sharded pub/sub a
//! node receives only the rooms it subscribed to. Node keys are not tagged:
//! they are read one command at a time.

use vc_protocol::RoomName;

use crate::vocabulary::{NodeId, PeerId};

/// The set of every node that registered.
pub const NODES: &str = "vc:nodes";

/// The room's seats: a hash of peer id → seat record (JSON).
pub fn members(room: &RoomName) -> String {
    format!("vc:{{{room}}}:members")
}

/// The room's chat history: a list capped at `chat.history` entries, expiring
/// `chat.history_max_age` after its last message, deleted with the room's last seat.
pub fn chat(room: &RoomName) -> String {
    format!("vc:{{{room}}}:chat")
}

/// The last number given on each seat's stream: a hash of peer id → seq, with
/// `<peer>:bytes` → the bytes its replay buffer holds. Deleted with the room's
/// last seat; a seat's fields go with the seat.
pub fn seqs(room: &RoomName) -> String {
    format!("vc:{{{room}}}:seq")
}

/// What every seat's replay buffer key starts with; the peer id follows.
pub fn log_prefix(room: &RoomName) -> String {
    format!("vc:{{{room}}}:log:")
}

/// The seat's replay buffer: a list of `"<seq> <envelope JSON>"`, capped at
/// `replay.buffer_messages` entries and `replay.buffer_bytes`, expiring
/// `resume.window` after its last entry.
pub fn log(room: &RoomName, peer: &PeerId) -> String {
    format!("vc:{{{room}}}:log:{peer}")
}

/// The room's pub/sub channel.
pub fn channel(room: &RoomName) -> String {
    format!("vc:{{{room}}}:bus")
}

/// The room of a channel name made by [`channel`].
pub fn room_of(channel: &str) -> Option<&str> {
    channel.strip_prefix("vc:{")?.strip_suffix("}:bus")
}

/// The rooms where `node` holds or held seats, for the sweep of a dead node.
pub fn node_rooms(node: &NodeId) -> String {
    format!("vc:node:{node}:rooms")
}

/// `node`'s liveness key, refreshed with a TTL while it runs.
pub fn alive(node: &NodeId) -> String {
    format!("vc:node:{node}:alive")
}

/// Held by whichever node is sweeping the dead `node`.
pub fn sweep_lock(node: &NodeId) -> String {
    format!("vc:node:{node}:sweeping")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocabulary::testing::{node, room};

    #[test]
    fn room_keys_carry_their_room_in_a_hash_tag() {
        assert_eq!(channel(&room("standup")), "vc:{standup}:bus");
        assert_eq!(members(&room("standup")), "vc:{standup}:members");
        assert_eq!(chat(&room("standup")), "vc:{standup}:chat");
        assert_eq!(seqs(&room("standup")), "vc:{standup}:seq");
        let seat = crate::vocabulary::testing::peer("0a1b");
        assert_eq!(log(&room("standup"), &seat), "vc:{standup}:log:0a1b");
        assert!(log(&room("standup"), &seat).starts_with(&log_prefix(&room("standup"))));
        assert_eq!(room_of(&channel(&room("a-b_c"))), Some("a-b_c"));
        assert_eq!(room_of("other"), None);
    }

    #[test]
    fn node_keys_name_their_node() {
        assert_eq!(node_rooms(&node("n1")), "vc:node:n1:rooms");
        assert_eq!(alive(&node("n1")), "vc:node:n1:alive");
        assert_eq!(sweep_lock(&node("n1")), "vc:node:n1:sweeping");
    }
}
