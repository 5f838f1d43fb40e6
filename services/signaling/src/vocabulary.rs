//! The node's own ids, typed: [`PeerId`] (a seat), [`ConnId`] (one socket's hold
//! on a seat) and [`NodeId`] (a node of the fleet). With
//! [`RoomName`](vc_protocol::RoomName) and [`DisplayName`](vc_protocol::DisplayName)
//! from the protocol crate, they are the values every room operation takes, so
//! that a peer id cannot be passed where a connection id belongs.
//!
//! Each is made in one of two ways: minted by this node (random, valid by
//! construction), or parsed where it comes in (a resume token, a relay's `to`,
//! the configuration, a record read back from the bus or Redis). On the bus and
//! in Redis each is its plain string, checked again when it is read back. Inside
//! they share their text (`Arc<str>`), since the same ids are copied into every
//! envelope, seat and map key.

use std::sync::Arc;

use serde::Deserialize;
use thiserror::Error;
use vc_protocol::{check_token, NameError};

use crate::ids::random_hex;

/// Longest peer or connection id, in hex digits. Minted ones have 16.
pub const MAX_HEX_ID: usize = 64;

/// Random bytes in a minted peer or connection id.
const MINTED_ID_BYTES: usize = 8;

/// Random bytes after the host name in a generated node id.
const NODE_SUFFIX_BYTES: usize = 3;

/// Longest host name prefix of a generated node id, leaving room for the suffix.
const MAX_HOST_CHARS: usize = 40;

/// Why a text is not an id.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    #[error("must be 1 to {MAX_HEX_ID} hexadecimal digits")]
    NotHex,
    #[error("{0}")]
    NotToken(#[from] NameError),
}

/// 1 to [`MAX_HEX_ID`] hexadecimal digits: what this node mints, and so the only
/// peer or connection ids it can have given out.
fn check_hex(text: &str) -> Result<(), IdError> {
    let hex =
        !text.is_empty() && text.len() <= MAX_HEX_ID && text.bytes().all(|b| b.is_ascii_hexdigit());
    hex.then_some(()).ok_or(IdError::NotHex)
}

/// A node id follows the rule of room names: safe in a Redis key and a log line.
fn check_node(text: &str) -> Result<(), IdError> {
    Ok(check_token(text)?)
}

/// One id type: a checked string that shares its text, is its plain string on
/// the wire, and is read back only if it passes `$check` again.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn parse(text: &str) -> Result<Self, IdError> {
                $check(text)?;
                Ok(Self(Arc::from(text)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;

            fn try_from(text: String) -> Result<Self, IdError> {
                $check(&text)?;
                Ok(Self(Arc::from(text)))
            }
        }

        vc_protocol::text_impls!($name);
    };
}

id_type!(
    /// A seat's id, the `peer` of the protocol: minted at the join, kept across
    /// resumes.
    PeerId,
    check_hex
);

id_type!(
    /// One socket's hold on a seat: minted per session, so that a change of
    /// presence is made only by the connection that holds the seat.
    ConnId,
    check_hex
);

id_type!(
    /// A node of the fleet: `node.id`, or the host name and a random suffix.
    NodeId,
    check_node
);

impl PeerId {
    pub fn mint() -> Self {
        Self(Arc::from(random_hex(MINTED_ID_BYTES)))
    }
}

impl ConnId {
    pub fn mint() -> Self {
        Self(Arc::from(random_hex(MINTED_ID_BYTES)))
    }
}

impl NodeId {
    /// The host name (its characters a node id may have, at most 40 of them,
    /// `node` when none are left) and a random suffix: unique per process,
    /// recognisable in logs (a pod's host name is its name).
    pub fn for_host(host: &str) -> Self {
        let host: String = host
            .trim()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(MAX_HOST_CHARS)
            .collect();
        let host = if host.is_empty() { "node" } else { &host };
        Self(Arc::from(format!(
            "{host}-{}",
            random_hex(NODE_SUFFIX_BYTES)
        )))
    }
}

/// Typed values from any text, for unit tests that name their peers and
/// connections for the part they play ("owner", "intruder"), not as a node
/// would mint them.
#[cfg(test)]
pub mod testing {
    use std::sync::Arc;

    use vc_protocol::RoomName;

    use super::{ConnId, NodeId, PeerId};

    pub fn room(name: &str) -> RoomName {
        RoomName::parse(name).expect("test rooms have valid names")
    }

    pub fn peer(name: &str) -> PeerId {
        PeerId(Arc::from(name))
    }

    pub fn conn(name: &str) -> ConnId {
        ConnId(Arc::from(name))
    }

    pub fn node(name: &str) -> NodeId {
        NodeId(Arc::from(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_and_connection_ids_are_hex() {
        assert_eq!(
            PeerId::parse("0a1B").map(|p| p.to_string()),
            Ok("0a1B".into())
        );
        assert_eq!(PeerId::parse(""), Err(IdError::NotHex));
        assert_eq!(PeerId::parse("zz"), Err(IdError::NotHex));
        assert_eq!(PeerId::parse("0a.1b"), Err(IdError::NotHex));
        assert!(PeerId::parse(&"f".repeat(MAX_HEX_ID)).is_ok());
        assert_eq!(
            PeerId::parse(&"f".repeat(MAX_HEX_ID + 1)),
            Err(IdError::NotHex)
        );
        assert_eq!(
            ConnId::parse("c0ffee").map(|c| c.to_string()),
            Ok("c0ffee".into())
        );
        assert_eq!(ConnId::parse("conn"), Err(IdError::NotHex));
    }

    #[test]
    fn node_ids_follow_the_rule_of_room_names() {
        assert!(NodeId::parse("node-1_a").is_ok());
        assert_eq!(NodeId::parse(""), Err(IdError::NotToken(NameError::Empty)));
        assert_eq!(
            NodeId::parse("node 1"),
            Err(IdError::NotToken(NameError::BadCharacters))
        );
        assert_eq!(
            NodeId::parse(&"n".repeat(65)),
            Err(IdError::NotToken(NameError::TooLong { max: 64 }))
        );
    }

    #[test]
    fn minted_ids_parse_and_differ() {
        let (a, b) = (PeerId::mint(), PeerId::mint());
        assert_eq!(a.as_str().len(), 2 * MINTED_ID_BYTES);
        assert_eq!(PeerId::parse(a.as_str()), Ok(a.clone()));
        assert_ne!(a, b);
        let conn = ConnId::mint();
        assert_eq!(ConnId::parse(conn.as_str()), Ok(conn));
    }

    #[test]
    fn node_ids_for_a_host_keep_what_a_node_id_may_have() {
        for (host, prefix) in [
            ("pod-7\n", "pod-7-"),
            ("häst.example", "hstexample-"),
            ("", "node-"),
            ("...", "node-"),
        ] {
            let id = NodeId::for_host(host);
            assert!(id.as_str().starts_with(prefix), "{host:?} gave {id}");
            assert_eq!(NodeId::parse(id.as_str()), Ok(id.clone()));
        }
        let long = NodeId::for_host(&"h".repeat(100));
        assert_eq!(
            long.as_str().len(),
            MAX_HOST_CHARS + 1 + 2 * NODE_SUFFIX_BYTES
        );
    }

    #[test]
    fn ids_cross_serde_as_their_plain_string_and_are_checked_on_the_way_back() {
        let peer = PeerId::parse("0a1b").expect("a peer id");
        let json = serde_json::to_string(&peer).expect("serializes");
        assert_eq!(json, r#""0a1b""#);
        assert_eq!(serde_json::from_str::<PeerId>(&json).ok(), Some(peer));
        assert!(serde_json::from_str::<PeerId>(r#""p1""#).is_err());
        assert!(serde_json::from_str::<ConnId>(r#""""#).is_err());
        let node = NodeId::parse("n1").expect("a node id");
        assert_eq!(
            serde_json::to_string(&node).ok().as_deref(),
            Some(r#""n1""#)
        );
        assert!(serde_json::from_str::<NodeId>(r#""n 1""#).is_err());
        assert!(serde_json::from_str::<NodeId>("1").is_err());
    }
}
