//! Messages a client sends, and their parsing into clear, classified errors.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use strum::{IntoStaticStr, VariantNames};

use crate::server::{CallReport, RequestId};
use crate::{CallStateChange, ErrorCode};

/// Every `type` a client may send in this protocol version, in declaration
/// order: the names of [`ClientMessage`]'s variants.
pub const CLIENT_MESSAGE_TYPES: &[&str] = <ClientMessage as VariantNames>::VARIANTS;

/// A message from a client. Field names are camelCase on the wire; the `type`
/// is the variant's name in kebab-case, for serde and strum alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, IntoStaticStr, VariantNames)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
#[strum(serialize_all = "kebab-case")]
pub enum ClientMessage {
    /// Enter a room; answered by `joined` or an `error`.
    Join {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protocol: Option<u32>,
    },
    /// Take back a seat kept after the previous socket dropped; answered by `resumed`.
    Resume {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        token: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protocol: Option<u32>,
        /// The highest `seq` the client processed on the seat's stream: the node
        /// replays every frame after it and says in `resumed.replay` whether it
        /// could.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_seq: Option<u64>,
        /// The stream id `joined` gave, so that the node can tell a stream it
        /// numbered from another one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream: Option<String>,
    },
    /// An SDP offer for one peer of the room.
    Offer {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        to: String,
        sdp: String,
    },
    /// An SDP answer for one peer of the room.
    Answer {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        to: String,
        sdp: String,
    },
    /// A trickled ICE candidate (an `RTCIceCandidateInit`, or `null` for the end of
    /// candidates) for one peer of the room.
    Candidate {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        to: String,
        candidate: Value,
    },
    /// Any JSON value for one peer of the room; the node does not look inside.
    AppData {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        to: String,
        data: Value,
    },
    /// Leave the room; answered by `left`. The socket stays open for another join.
    Leave {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
    /// A summary of the client's call quality, turned into metrics by the node.
    Report {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        report: CallReport,
    },
    /// Is the socket still alive? Answered by `pong` with the same `id`, before or
    /// after `join`. Browsers cannot see WebSocket ping frames, so this is how a
    /// page checks its own socket.
    Ping {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
    /// A chat message for every other member of the room, kept in the room's
    /// history for those who join later.
    Chat {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        text: String,
    },
    /// A change to the sender's own state in the call (any of `hand`, `muted`,
    /// `cameraOff`, `sharing`; the others keep their value), kept with its seat
    /// and told to every other member. One that names no field is invalid.
    CallState {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        #[serde(flatten)]
        change: CallStateChange,
    },
    /// A passing reaction (one of [`crate::REACTIONS`]) for every other member;
    /// not kept.
    Reaction {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        emoji: String,
    },
}

impl ClientMessage {
    /// The request id the client attached, echoed in the reply or error.
    pub fn request_id(&self) -> Option<&RequestId> {
        match self {
            ClientMessage::Join { id, .. }
            | ClientMessage::Resume { id, .. }
            | ClientMessage::Offer { id, .. }
            | ClientMessage::Answer { id, .. }
            | ClientMessage::Candidate { id, .. }
            | ClientMessage::AppData { id, .. }
            | ClientMessage::Leave { id }
            | ClientMessage::Report { id, .. }
            | ClientMessage::Ping { id }
            | ClientMessage::Chat { id, .. }
            | ClientMessage::CallState { id, .. }
            | ClientMessage::Reaction { id, .. } => id.as_ref(),
        }
    }

    /// The wire `type` of this message.
    pub fn type_name(&self) -> &'static str {
        self.into()
    }
}

/// A parsed frame: the message, and the acknowledgement any message may carry
/// beside its own fields (`"ack": N`, the highest `seq` the client processed).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientFrame {
    pub message: ClientMessage,
    pub ack: Option<u64>,
}

/// Why a text frame is not a valid client message. Carries the request id when it
/// could be read, so that even a malformed request's error can be matched to it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub code: ErrorCode,
    pub message: String,
    pub id: Option<RequestId>,
}

/// Just enough of a frame to classify it before the full parse: syntax errors,
/// a missing or unknown `type`, and the request id for the error reply.
#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "type")]
    kind: Option<Value>,
    #[serde(default)]
    id: Option<Value>,
    /// Read beside the message: every type may carry it.
    #[serde(default)]
    ack: Option<Value>,
}

/// Parses one text frame. Unknown fields are ignored so that newer clients can talk
/// to older nodes; unknown types are not.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ParseError> {
    parse_client_frame(text).map(|frame| frame.message)
}

/// Parses one text frame with its piggybacked `ack`. An `ack` that is not a
/// non-negative integer is ignored, as an unknown field would be: it tells the
/// node nothing, and the message itself is still good.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, ParseError> {
    // serde would read a struct from a JSON array too; the protocol wants objects.
    if !text.trim_start().starts_with('{') {
        let valid = serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
        return Err(ParseError {
            code: if valid {
                ErrorCode::InvalidMessage
            } else {
                ErrorCode::BadJson
            },
            message: if valid {
                "a message must be a JSON object with a string \"type\"".to_owned()
            } else {
                "not valid JSON".to_owned()
            },
            id: None,
        });
    }
    let probe: Probe = serde_json::from_str(text).map_err(|e| ParseError {
        code: if e.is_data() {
            ErrorCode::InvalidMessage
        } else {
            ErrorCode::BadJson
        },
        message: if e.is_data() {
            "a message must be a JSON object with a string \"type\"".to_owned()
        } else {
            format!("not valid JSON: {e}")
        },
        id: None,
    })?;
    let id = probe
        .id
        .and_then(|v| serde_json::from_value::<RequestId>(v).ok());
    let kind = match probe.kind {
        Some(Value::String(kind)) => kind,
        Some(_) => return Err(invalid(id, "\"type\" must be a string".to_owned())),
        None => return Err(invalid(id, "missing field \"type\"".to_owned())),
    };
    if !CLIENT_MESSAGE_TYPES.contains(&kind.as_str()) {
        let shown: String = kind.chars().take(32).collect();
        return Err(ParseError {
            code: ErrorCode::UnknownType,
            message: format!("unknown message type \"{shown}\""),
            id,
        });
    }
    let ack = probe.ack.and_then(|v| v.as_u64());
    let message: ClientMessage = serde_json::from_str(text)
        .map_err(|e| invalid(id.clone(), format!("invalid \"{kind}\": {e}")))?;
    if let ClientMessage::CallState { change, .. } = &message {
        if change.is_empty() {
            return Err(invalid(
                id,
                "\"call-state\" must carry at least one of \"hand\", \"muted\", \"cameraOff\", \"sharing\""
                    .to_owned(),
            ));
        }
    }
    Ok(ClientFrame { message, ack })
}

fn invalid(id: Option<RequestId>, message: String) -> ParseError {
    ParseError {
        code: ErrorCode::InvalidMessage,
        message,
        id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> ErrorCode {
        parse_client_message(text).expect_err("must fail").code
    }

    /// One frame of every type, in declaration order: serde's name of each
    /// variant and the derived one are the same, read and written.
    #[test]
    fn parses_every_type() {
        let frames = [
            r#"{"type":"join","id":1,"room":"r","name":"n","token":"t","protocol":1}"#,
            r#"{"type":"resume","token":"t"}"#,
            r#"{"type":"offer","to":"p","sdp":"v=0"}"#,
            r#"{"type":"answer","to":"p","sdp":"v=0"}"#,
            r#"{"type":"candidate","to":"p","candidate":null}"#,
            r#"{"type":"app-data","to":"p","data":{"muted":true}}"#,
            r#"{"type":"leave","id":"x"}"#,
            r#"{"type":"report","report":{"final":true}}"#,
            r#"{"type":"ping","id":7}"#,
            r#"{"type":"chat","id":8,"text":"hello"}"#,
            r#"{"type":"call-state","hand":true}"#,
            r#"{"type":"reaction","emoji":"👍"}"#,
        ];
        assert_eq!(frames.len(), CLIENT_MESSAGE_TYPES.len(), "one frame a type");
        for (frame, kind) in frames.iter().zip(CLIENT_MESSAGE_TYPES) {
            let msg = parse_client_message(frame).expect(frame);
            // serde read the variant from `type`; the derived name must be it.
            assert_eq!(msg.type_name(), *kind);
            let written = serde_json::to_value(&msg).expect("serializes");
            assert_eq!(written["type"], *kind, "serde writes the derived name");
        }
    }

    #[test]
    fn classifies_errors() {
        assert_eq!(code("{nope"), ErrorCode::BadJson);
        assert_eq!(code("[1,2]"), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"["join", 1]"#), ErrorCode::InvalidMessage);
        assert_eq!(code("garbage"), ErrorCode::BadJson);
        assert_eq!(code(""), ErrorCode::BadJson);
        assert_eq!(code(r#"{"id":3}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"type":7}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(
            code(r#"{"type":"join","room":"r"}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code(r#"{"type":"offer","to":"p","sdp":42}"#),
            ErrorCode::InvalidMessage
        );
    }

    #[test]
    fn keeps_request_id_of_invalid_messages() {
        let err = parse_client_message(r#"{"type":"join","id":"req-9"}"#).expect_err("invalid");
        assert_eq!(err.id, Some(RequestId::Text("req-9".into())));
        assert!(err.message.contains("room"), "{}", err.message);
    }

    /// The node relays `data` and `candidate` by re-serializing what it parsed, so a
    /// number must come out as the same double it went in as. serde_json's default
    /// float parser can be off by one unit in the last place; found by fuzzing.
    #[test]
    fn numbers_survive_the_relay_exactly() {
        let frame = r#"{"type":"app-data","to":"p","data":[1.1844674407370957e+20,0.1,5e-324]}"#;
        let msg = parse_client_message(frame).expect("parses");
        let again = parse_client_message(&serde_json::to_string(&msg).expect("serializes"))
            .expect("parses again");
        assert_eq!(again, msg);
        let ClientMessage::AppData { data, .. } = msg else {
            panic!("not app-data");
        };
        assert_eq!(data[0].as_f64(), Some(1.1844674407370957e20));
    }

    #[test]
    fn ping_carries_an_optional_id_of_either_kind() {
        assert_eq!(
            parse_client_message(r#"{"type":"ping"}"#).expect("parses"),
            ClientMessage::Ping { id: None }
        );
        let ping = parse_client_message(r#"{"type":"ping","id":"n-3"}"#).expect("parses");
        assert_eq!(ping.request_id(), Some(&RequestId::Text("n-3".into())));
        let ping =
            parse_client_message(r#"{"type":"ping","id":18446744073709551615}"#).expect("parses");
        assert_eq!(ping.request_id(), Some(&RequestId::Number(u64::MAX)));
        // A negative or fractional id is not a request id.
        assert_eq!(
            code(r#"{"type":"ping","id":-1}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code(r#"{"type":"ping","id":{"a":1}}"#),
            ErrorCode::InvalidMessage
        );
    }

    #[test]
    fn any_message_may_carry_an_ack() {
        let frame = parse_client_frame(r#"{"type":"ping","id":1,"ack":17}"#).expect("parses");
        assert_eq!(frame.ack, Some(17));
        assert_eq!(frame.message.type_name(), "ping");
        let frame = parse_client_frame(r#"{"type":"leave","ack":"x"}"#).expect("parses");
        assert_eq!(frame.ack, None, "an ack that is not a count is ignored");
        let frame = parse_client_frame(r#"{"type":"leave","ack":-3}"#).expect("parses");
        assert_eq!(frame.ack, None);
        let resume =
            r#"{"type":"resume","token":"t","lastSeq":9,"stream":"00ff00ff00ff00ff","ack":9}"#;
        let frame = parse_client_frame(resume).expect("parses");
        assert_eq!(
            frame.message,
            ClientMessage::Resume {
                id: None,
                token: "t".into(),
                protocol: None,
                last_seq: Some(9),
                stream: Some("00ff00ff00ff00ff".into()),
            }
        );
    }

    #[test]
    fn call_state_carries_any_of_its_fields_and_at_least_one() {
        let msg = parse_client_message(r#"{"type":"call-state","id":4,"cameraOff":true}"#)
            .expect("parses");
        assert_eq!(
            msg,
            ClientMessage::CallState {
                id: Some(RequestId::Number(4)),
                change: CallStateChange {
                    camera_off: Some(true),
                    ..CallStateChange::default()
                },
            }
        );
        let empty = parse_client_message(r#"{"type":"call-state","id":5,"raised":true}"#)
            .expect_err("names no field");
        assert_eq!(empty.code, ErrorCode::InvalidMessage);
        assert_eq!(empty.id, Some(RequestId::Number(5)));
        assert_eq!(
            code(r#"{"type":"call-state","muted":"yes"}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code(r#"{"type":"call-state","sharing":null}"#),
            ErrorCode::InvalidMessage
        );
    }

    #[test]
    fn ignores_unknown_fields() {
        let msg = parse_client_message(r#"{"type":"leave","future":true}"#).expect("parses");
        assert_eq!(msg, ClientMessage::Leave { id: None });
    }
}
