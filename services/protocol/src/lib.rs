//! The Video Caller signaling protocol, version [`PROTOCOL_VERSION`].
//!
//! Every frame is one JSON object with a `type` field. `docs/protocol.md` is the
//! human-readable contract; this crate is its single machine-readable source, used
//! by the node, by the integration tests and by the load generator so that the three
//! can never disagree on a field name.

#[macro_use]
mod wire_enum;

mod call_state;
mod chat;
mod client;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod kinds;
mod names;
mod server;

pub use call_state::{every_field, CallState, CallStateChange};
pub use chat::{is_reaction, validate_chat_text, ChatEntry, ChatTextError, REACTIONS};
pub use client::{
    parse_client_frame, parse_client_message, ClientFrame, ClientMessage, ParseError,
    CLIENT_MESSAGE_TYPES,
};
pub use error::ErrorCode;
pub use kinds::{BroadcastKind, RelayKind};
pub use names::{
    check_token, check_visible_text, DisplayName, NameError, RoomName, MAX_NAME_CHARS,
    MAX_ROOM_CHARS,
};
pub use server::{
    CallReport, CandidateType, IceOutcome, IceServer, LeaveReason, Member, ReconnectReason, Replay,
    RequestId, SeatSnapshot, ServerMessage, SERVER_MESSAGE_TYPES,
};

/// The protocol version this crate speaks. Sent in `welcome`; a `join` or `resume` may
/// name the version it expects and is refused with `unsupported-protocol` otherwise.
pub const PROTOCOL_VERSION: u32 = 1;

/// The additions to version 1 this crate knows, sent in `welcome.revision`:
/// 1 added `ping` and `pong`, 2 the room-wide messages (`chat`, `call-state`,
/// `reaction`, `peer-state`), the members' `hand`, and the chat history in
/// `joined` and `resumed`; 3 the whole [`CallState`] (`muted`, `cameraOff`,
/// `sharing` beside `hand`) in `call-state`, `peer-state` and the members, and
/// sequenced delivery (`seq` on every frame from the room, `stream`, `ack`,
/// `lastSeq` and `replay`); 4 signaling through a Redis outage: relays between
/// two seats of one node handed over without `seq`, messages for other nodes
/// kept and a late `unavailable` for one that could not be, and `reconnect`
/// with reason `missed`.
pub const PROTOCOL_REVISION: u32 = 4;
