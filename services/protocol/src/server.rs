//! Messages a node sends, and the value types both directions share.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use strum::{IntoStaticStr, VariantNames};

use crate::{CallState, ChatEntry, ErrorCode};

/// The id a client attached to a request, echoed back unchanged in the reply or
/// error so that the client can match them. A string or a non-negative integer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    Number(u64),
    Text(String),
}

/// A peer as the others see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Assigned by the node at join; unique in the cluster, kept across a resume.
    pub id: String,
    pub name: String,
    /// The identity granted by the join token (`sub`), when auth is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The peer's state in the call (`call-state`): each field only while true.
    #[serde(flatten)]
    pub state: CallState,
}

/// One entry of `RTCConfiguration.iceServers`, ready to hand to the browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

wire_enum! {
    /// Why a peer left its room.
    pub enum LeaveReason {
        /// It sent `leave`.
        Left,
        /// Its socket closed and it did not resume within the resume window.
        Disconnected,
        /// It stopped answering pings and did not resume within the resume window.
        TimedOut,
        /// The node it was connected to disappeared without saying goodbye.
        NodeLost,
    }
}

wire_enum! {
    /// Whether a resume with `lastSeq` gets every frame the client missed.
    pub enum Replay {
        /// Every frame after `lastSeq` follows `resumed`, in order, once.
        Complete,
        /// The node cannot prove the client has everything: renegotiate the peer
        /// connections and send the call state again.
        Incomplete,
    }
}

wire_enum! {
    /// Why the node asks a client to connect again.
    pub enum ReconnectReason {
        /// The node is shutting down; another node will take the session.
        Draining,
        /// Frames of the seat's stream were lost on the bus (its node was cut
        /// off from Redis) and the seat's buffer cannot give them all back: the
        /// resume that follows says `replay: "incomplete"`, and the client
        /// renegotiates its calls.
        Missed,
    }
}

wire_enum! {
    /// How a client's ICE negotiation with one peer ended.
    pub enum IceOutcome {
        Connected,
        Failed,
    }
}

wire_enum! {
    /// The type of the local candidate of the selected candidate pair.
    pub enum CandidateType {
        Host,
        Srflx,
        Prflx,
        Relay,
    }
}

/// A compact summary of one peer connection's quality, sent by the client
/// periodically and when the call with that peer ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallReport {
    /// True for the report sent when the call with that peer ended.
    #[serde(default, rename = "final")]
    pub is_final: bool,
    /// Milliseconds from the start of negotiation to ICE `connected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ice_connected_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<IceOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_type: Option<CandidateType>,
    /// Current round-trip time of the selected candidate pair, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
}

impl CallReport {
    /// Longest duration a report may carry: anything above is a broken client.
    pub const MAX_MS: f64 = 3_600_000.0;

    /// Checks that the numbers are plausible before they reach a histogram.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("iceConnectedMs", self.ice_connected_ms),
            ("rttMs", self.rtt_ms),
        ] {
            if let Some(v) = value {
                if !v.is_finite() || !(0.0..=Self::MAX_MS).contains(&v) {
                    return Err(format!(
                        "\"{name}\" must be between 0 and {} milliseconds",
                        Self::MAX_MS
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What `joined` and `resumed` both tell: the seat the client holds and the room
/// as it is now. Written flat into either message, so its fields sit beside
/// `type` and `id` on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeatSnapshot {
    pub room: String,
    /// Your own peer id, kept across a resume.
    pub peer: String,
    /// Your display name as the others see it.
    pub name: String,
    /// The other members, in the order they joined.
    pub members: Vec<Member>,
    pub ice_servers: Vec<IceServer>,
    /// Present this in `resume` after a dropped socket to keep your seat.
    pub resume_token: String,
    /// How long the seat is kept after the socket drops.
    pub resume_window_ms: u64,
    /// The id of the seat's stream (16 hex digits), fixed for the seat's life:
    /// the `seq` of every frame from the room counts on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// The room's chat as it is now, oldest first (bounded by count and age);
    /// after a resume, messages sent while the socket was gone are among them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chat: Vec<ChatEntry>,
}

/// Every `type` a node may send in this protocol version, in declaration order:
/// the names of [`ServerMessage`]'s variants.
pub const SERVER_MESSAGE_TYPES: &[&str] = <ServerMessage as VariantNames>::VARIANTS;

/// A message from the node. Field names are camelCase on the wire; the `type`
/// is the variant's name in kebab-case, for serde and strum alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, IntoStaticStr, VariantNames)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
#[strum(serialize_all = "kebab-case")]
pub enum ServerMessage {
    /// First frame on every socket: the protocol version and the node's id.
    Welcome {
        protocol: u32,
        /// Which additions to the version the node knows (see `docs/protocol.md`);
        /// 0 from nodes older than the field.
        #[serde(default)]
        revision: u32,
        node: String,
        /// Largest text frame the node accepts, in bytes.
        max_frame_bytes: usize,
        /// Longest chat text the node accepts, in bytes of UTF-8.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_chat_bytes: Option<usize>,
    },
    /// Reply to `join`: who you are, who is there, and how to reach them.
    Joined {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        #[serde(flatten)]
        seat: SeatSnapshot,
    },
    /// Reply to `resume`: the same seat, a fresh view of the room.
    Resumed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        #[serde(flatten)]
        seat: SeatSnapshot,
        /// With `lastSeq` in the resume: whether every frame after it follows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replay: Option<Replay>,
    },
    /// Another peer entered your room.
    PeerJoined { peer: Member },
    /// Another peer left your room.
    PeerLeft { peer: String, reason: LeaveReason },
    /// Relayed from peer `from`.
    Offer { from: String, sdp: String },
    /// Relayed from peer `from`.
    Answer { from: String, sdp: String },
    /// Relayed from peer `from`.
    Candidate { from: String, candidate: Value },
    /// Relayed from peer `from`.
    AppData { from: String, data: Value },
    /// A chat message from another member, stamped by the node.
    Chat {
        message_id: String,
        from: String,
        name: String,
        text: String,
        at: u64,
    },
    /// Another member's state in the call changed: its whole state, every
    /// field written.
    PeerState {
        peer: String,
        #[serde(flatten, with = "crate::every_field")]
        state: CallState,
    },
    /// A passing reaction from another member.
    Reaction { from: String, emoji: String },
    /// Reply to `leave`.
    Left {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
    /// Reply to `ping`, carrying its `id`.
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
    /// The node is going away: open a new socket and `resume`.
    Reconnect { reason: ReconnectReason },
    /// Something the client sent was refused; the session goes on.
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
}

impl ServerMessage {
    /// Serializes the message for the socket. Serialization of these types cannot
    /// fail (no maps with non-string keys, no failing `Serialize` impls), so a
    /// failure is a programming error worth a loud, contained message rather than a
    /// dropped frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(
                r#"{{"type":"error","code":"unavailable","message":"serialization failed: {e}"}}"#
            )
        })
    }

    /// The wire `type` of this message.
    pub fn type_name(&self) -> &'static str {
        self.into()
    }

    /// The `chat` frame of a history entry.
    pub fn chat(entry: &ChatEntry) -> Self {
        ServerMessage::Chat {
            message_id: entry.message_id.clone(),
            from: entry.from.clone(),
            name: entry.name.clone(),
            text: entry.text.clone(),
            at: entry.at,
        }
    }

    pub fn error(code: ErrorCode, message: impl Into<String>, id: Option<RequestId>) -> Self {
        ServerMessage::Error {
            code,
            message: message.into(),
            id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_camel_case_fields() {
        let msg = ServerMessage::Joined {
            id: Some(RequestId::Number(1)),
            seat: SeatSnapshot {
                room: "r".into(),
                peer: "p1".into(),
                name: "Ann".into(),
                members: vec![Member {
                    id: "p0".into(),
                    name: "Bob".into(),
                    user: None,
                    state: CallState {
                        hand: true,
                        ..CallState::default()
                    },
                }],
                ice_servers: vec![IceServer {
                    urls: vec!["stun:127.0.0.1:3478".into()],
                    username: None,
                    credential: None,
                }],
                resume_token: "t".into(),
                resume_window_ms: 10_000,
                stream: Some("00ff00ff00ff00ff".into()),
                chat: Vec::new(),
            },
        };
        let json = msg.to_json();
        assert!(json.starts_with(r#"{"type":"joined""#), "{json}");
        assert!(json.contains(r#""iceServers""#), "{json}");
        assert!(json.contains(r#""resumeWindowMs":10000"#), "{json}");
        assert!(json.contains(r#""hand":true"#), "{json}");
        assert!(json.contains(r#""stream":"00ff00ff00ff00ff""#), "{json}");
        assert!(
            !json.contains(r#""chat""#),
            "an empty history is left out: {json}"
        );
        let back: ServerMessage = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, msg);
    }

    /// `joined` and `resumed` as a node sends them: every field, in the order
    /// clients have always seen. Read and written again, the text must come out
    /// byte for byte, whatever shape the Rust types take.
    #[test]
    fn joined_and_resumed_keep_their_bytes() {
        let joined = concat!(
            r#"{"type":"joined","id":1,"room":"daily-standup","peer":"p1","name":"Ann","#,
            r#""members":[{"id":"p0","name":"Bob","user":"bob","hand":true}],"#,
            r#""iceServers":[{"urls":["stun:a:3478"]},"#,
            r#"{"urls":["turn:a:3478"],"username":"1600:p1","credential":"c="}],"#,
            r#""resumeToken":"daily-standup.p1.s","resumeWindowMs":10000,"#,
            r#""chat":[{"messageId":"m1","from":"p0","name":"Bob","text":"hi","at":1764000000000}]}"#
        );
        let resumed = concat!(
            r#"{"type":"resumed","id":"r-2","room":"daily-standup","peer":"p1","name":"Ann","#,
            r#""members":[],"iceServers":[],"resumeToken":"daily-standup.p1.s","resumeWindowMs":0,"#,
            r#""stream":"0123456789abcdef","replay":"incomplete"}"#
        );
        for (text, kind) in [(joined, "joined"), (resumed, "resumed")] {
            let message: ServerMessage = serde_json::from_str(text).expect(kind);
            assert_eq!(message.type_name(), kind);
            assert_eq!(message.to_json(), text);
        }
    }

    /// `peer-state` tells the whole state, false fields included; a member
    /// only the true ones.
    #[test]
    fn peer_state_writes_every_field_and_members_only_true_ones() {
        let state = CallState {
            muted: true,
            ..CallState::default()
        };
        let text = ServerMessage::PeerState {
            peer: "p0".into(),
            state,
        }
        .to_json();
        assert_eq!(
            text,
            r#"{"type":"peer-state","peer":"p0","hand":false,"muted":true,"cameraOff":false,"sharing":false}"#
        );
        let back: ServerMessage = serde_json::from_str(&text).expect("parses");
        assert_eq!(
            back,
            ServerMessage::PeerState {
                peer: "p0".into(),
                state
            }
        );
        let member = Member {
            id: "p0".into(),
            name: "Bob".into(),
            user: None,
            state,
        };
        assert_eq!(
            serde_json::to_string(&member).expect("serializes"),
            r#"{"id":"p0","name":"Bob","muted":true}"#
        );
    }

    #[test]
    fn reports_reject_implausible_numbers() {
        let mut report = CallReport {
            is_final: true,
            ice_connected_ms: Some(120.0),
            outcome: Some(IceOutcome::Connected),
            candidate_type: Some(CandidateType::Host),
            rtt_ms: Some(0.4),
        };
        assert_eq!(report.validate(), Ok(()));
        report.rtt_ms = Some(-1.0);
        assert!(report.validate().is_err());
        report.rtt_ms = Some(f64::NAN);
        assert!(report.validate().is_err());
    }
}
