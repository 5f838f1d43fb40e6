//! Each wire name is declared once, by serde's `rename_all` and strum's
//! `serialize_all` on the same enum; these tests prove the two agree for every
//! variant, so that the derived lists (`ErrorCode::ALL`, `CLIENT_MESSAGE_TYPES`,
//! `SERVER_MESSAGE_TYPES`, the relay and broadcast kinds) and `type_name()` name
//! exactly what goes over the socket.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation should stop the test with its message"
)]

use std::collections::BTreeSet;
use std::fmt::{Debug, Display};
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use strum::{VariantArray, VariantNames};
use vc_protocol::{
    BroadcastKind, CallState, CandidateType, ChatEntry, ClientMessage, ErrorCode, IceOutcome,
    IceServer, LeaveReason, Member, ReconnectReason, RelayKind, Replay, RequestId, SeatSnapshot,
    ServerMessage, CLIENT_MESSAGE_TYPES, SERVER_MESSAGE_TYPES,
};

/// Every variant of a field-less enum: serde writes the derived name, reads it
/// back, and the derived parser, `Display` and the name list agree with it.
fn serde_and_strum_agree<T>()
where
    T: VariantArray + VariantNames + Serialize + DeserializeOwned + FromStr + Display,
    T: Copy + PartialEq + Debug + Into<&'static str>,
    <T as FromStr>::Err: Debug,
{
    let variants = <T as VariantArray>::VARIANTS;
    assert_eq!(variants.len(), <T as VariantNames>::VARIANTS.len());
    for (&variant, &listed) in variants.iter().zip(<T as VariantNames>::VARIANTS) {
        let name: &'static str = variant.into();
        assert_eq!(name, listed, "{variant:?}: name list order");
        assert_eq!(serde_json::to_value(variant).unwrap(), Value::from(name));
        assert_eq!(
            serde_json::from_value::<T>(Value::from(name)).unwrap(),
            variant
        );
        assert_eq!(name.parse::<T>().unwrap(), variant);
        assert_eq!(variant.to_string(), name);
    }
    let distinct: BTreeSet<_> = <T as VariantNames>::VARIANTS.iter().collect();
    assert_eq!(distinct.len(), variants.len(), "two variants share a name");
}

#[test]
fn field_less_enums_have_one_name_each() {
    serde_and_strum_agree::<ErrorCode>();
    serde_and_strum_agree::<LeaveReason>();
    serde_and_strum_agree::<ReconnectReason>();
    serde_and_strum_agree::<Replay>();
    serde_and_strum_agree::<IceOutcome>();
    serde_and_strum_agree::<CandidateType>();
    serde_and_strum_agree::<RelayKind>();
    serde_and_strum_agree::<BroadcastKind>();
}

#[test]
fn error_code_helpers_use_the_derived_names() {
    assert_eq!(ErrorCode::ALL, <ErrorCode as VariantArray>::VARIANTS);
    for &code in ErrorCode::ALL {
        assert_eq!(code.as_str(), <&str>::from(code));
    }
    assert_eq!(
        ErrorCode::BinaryNotSupported.as_str(),
        "binary-not-supported"
    );
    assert_eq!(LeaveReason::TimedOut.as_str(), "timed-out");
}

/// One message of every node `type`, in declaration order.
fn one_server_message_of_each_type() -> Vec<ServerMessage> {
    let seat = SeatSnapshot {
        room: "r".into(),
        peer: "p1".into(),
        name: "Ann".into(),
        members: vec![Member {
            id: "p0".into(),
            name: "Bob".into(),
            user: Some("bob".into()),
            state: CallState {
                hand: true,
                muted: true,
                ..CallState::default()
            },
        }],
        ice_servers: vec![IceServer {
            urls: vec!["stun:a:3478".into()],
            username: None,
            credential: None,
        }],
        resume_token: "r.p1.s".into(),
        resume_window_ms: 10_000,
        stream: Some("0123456789abcdef".into()),
        chat: vec![ChatEntry {
            message_id: "m1".into(),
            from: "p0".into(),
            name: "Bob".into(),
            text: "hi".into(),
            at: 1,
        }],
    };
    vec![
        ServerMessage::Welcome {
            protocol: 1,
            revision: 4,
            node: "n".into(),
            max_frame_bytes: 65536,
            max_chat_bytes: Some(2000),
        },
        ServerMessage::Joined {
            id: Some(RequestId::Number(1)),
            seat: seat.clone(),
        },
        ServerMessage::Resumed {
            id: Some(RequestId::Text("r".into())),
            seat,
            replay: Some(Replay::Complete),
        },
        ServerMessage::PeerJoined {
            peer: Member {
                id: "p2".into(),
                name: "Cy".into(),
                user: None,
                state: CallState::default(),
            },
        },
        ServerMessage::PeerLeft {
            peer: "p2".into(),
            reason: LeaveReason::NodeLost,
        },
        ServerMessage::Offer {
            from: "p0".into(),
            sdp: "v=0".into(),
        },
        ServerMessage::Answer {
            from: "p0".into(),
            sdp: "v=0".into(),
        },
        ServerMessage::Candidate {
            from: "p0".into(),
            candidate: Value::Null,
        },
        ServerMessage::AppData {
            from: "p0".into(),
            data: json!({"muted": true}),
        },
        ServerMessage::Chat {
            message_id: "m2".into(),
            from: "p0".into(),
            name: "Bob".into(),
            text: "hello".into(),
            at: 2,
        },
        ServerMessage::PeerState {
            peer: "p0".into(),
            state: CallState {
                camera_off: true,
                ..CallState::default()
            },
        },
        ServerMessage::Reaction {
            from: "p0".into(),
            emoji: "👍".into(),
        },
        ServerMessage::Left { id: None },
        ServerMessage::Pong {
            id: Some(RequestId::Number(7)),
        },
        ServerMessage::Reconnect {
            reason: ReconnectReason::Draining,
        },
        ServerMessage::error(ErrorCode::RoomFull, "full", None),
    ]
}

#[test]
fn every_server_message_is_written_and_read_under_its_derived_name() {
    let messages = one_server_message_of_each_type();
    let names: Vec<&str> = messages.iter().map(ServerMessage::type_name).collect();
    assert_eq!(
        names, SERVER_MESSAGE_TYPES,
        "one message of each type, in order"
    );
    for message in messages {
        let text = message.to_json();
        let written: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(written["type"], message.type_name(), "{text}");
        let read: ServerMessage = serde_json::from_str(&text).unwrap();
        assert_eq!(read, message, "{text}");
    }
}

/// A relayed message keeps its `type` from sender to receiver, and a broadcast
/// is one the node sends; both name their kind as the wire does.
#[test]
fn relay_and_broadcast_kinds_are_message_types() {
    for &kind in <RelayKind as VariantArray>::VARIANTS {
        assert!(CLIENT_MESSAGE_TYPES.contains(&kind.as_str()), "{kind}");
        assert!(SERVER_MESSAGE_TYPES.contains(&kind.as_str()), "{kind}");
    }
    for &kind in <BroadcastKind as VariantArray>::VARIANTS {
        assert!(SERVER_MESSAGE_TYPES.contains(&kind.as_str()), "{kind}");
    }
    assert_eq!(
        <RelayKind as VariantNames>::VARIANTS,
        ["offer", "answer", "candidate", "app-data"]
    );
    assert_eq!(
        <BroadcastKind as VariantNames>::VARIANTS,
        ["chat", "peer-state", "reaction"]
    );
}

/// The relayed client messages are exactly those with a `to`: a relay kind
/// added without its message (or the other way round) is caught here.
#[test]
fn relay_kinds_are_the_client_messages_with_a_target() {
    let frames = [
        json!({"type": "join", "room": "r", "name": "n"}),
        json!({"type": "resume", "token": "t"}),
        json!({"type": "offer", "to": "p", "sdp": "v=0"}),
        json!({"type": "answer", "to": "p", "sdp": "v=0"}),
        json!({"type": "candidate", "to": "p", "candidate": null}),
        json!({"type": "app-data", "to": "p", "data": 1}),
        json!({"type": "leave"}),
        json!({"type": "report", "report": {}}),
        json!({"type": "ping"}),
        json!({"type": "chat", "text": "hi"}),
        json!({"type": "call-state", "hand": true}),
        json!({"type": "reaction", "emoji": "👍"}),
    ];
    let mut targeted = Vec::new();
    for frame in &frames {
        let message: ClientMessage = serde_json::from_value(frame.clone()).unwrap();
        let written = serde_json::to_value(&message).unwrap();
        if written.get("to").is_some() {
            targeted.push(message.type_name());
        }
    }
    let seen: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(
        seen, CLIENT_MESSAGE_TYPES,
        "one frame of each type, in order"
    );
    assert_eq!(targeted, <RelayKind as VariantNames>::VARIANTS);
}
