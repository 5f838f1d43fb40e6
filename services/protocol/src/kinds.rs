//! The messages a node carries from one member to others, by kind: what relay
//! routing names and what metrics count. Each name is also the `type` of a
//! [`crate::ServerMessage`] (and, for relays, of a [`crate::ClientMessage`]), which
//! `tests/wire_names.rs` checks.

wire_enum! {
    /// A targeted message, relayed from one peer to another under the same `type`.
    pub enum RelayKind {
        Offer,
        Answer,
        Candidate,
        AppData,
    }
}

wire_enum! {
    /// A room-wide message, delivered from one member to every other, named by the
    /// `type` the receivers get (a `call-state` arrives as `peer-state`).
    pub enum BroadcastKind {
        Chat,
        PeerState,
        Reaction,
    }
}
