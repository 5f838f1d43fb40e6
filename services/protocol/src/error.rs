use strum::VariantArray;

wire_enum! {
    /// Stable, machine-readable error codes carried by `error` messages.
    ///
    /// Clients branch on these strings, so a code is never renamed within a protocol
    /// version; new codes may be added.
    pub enum ErrorCode {
        /// The frame is not valid JSON.
        BadJson,
        /// A binary frame; the protocol is text only.
        BinaryNotSupported,
        /// The `type` names no message of this protocol version.
        UnknownType,
        /// A field is missing, has the wrong type, or the frame is not an object.
        InvalidMessage,
        /// The room name is empty, too long or has characters outside `[A-Za-z0-9_-]`.
        InvalidRoom,
        /// The display name is empty, too long or has control characters.
        InvalidName,
        /// The client asked for a protocol version this node does not speak.
        UnsupportedProtocol,
        /// A room message before `join`.
        NotJoined,
        /// A second `join` (or `resume`) on a session that is already in a room.
        AlreadyJoined,
        /// The room holds as many peers as its capacity allows.
        RoomFull,
        /// Auth is on and the join carried no token.
        AuthRequired,
        /// The token's signature, algorithm or claims are not acceptable.
        AuthInvalid,
        /// The token has expired.
        AuthExpired,
        /// The token grants another room.
        AuthWrongRoom,
        /// The relay target is not a member of the sender's room.
        UnknownPeer,
        /// The session sends faster than its rate limit; the message was dropped.
        RateLimited,
        /// The resume token is invalid, or its seat has already expired.
        ResumeFailed,
        /// The node is draining and takes no new joins; connect again.
        Draining,
        /// The message could not be handed to the bus (for example Redis is down);
        /// it was not delivered.
        Unavailable,
        /// A chat message with nothing visible in it.
        ChatEmpty,
        /// A chat message over `limits.max_chat_bytes`.
        ChatTooLong,
        /// A chat message with control characters other than the newline.
        InvalidChat,
        /// A reaction that is not one of the protocol's reactions.
        InvalidReaction,
        /// The session sends room-wide messages (chat, call state, reactions) faster
        /// than their own limit; the message was dropped.
        BroadcastRateLimited,
    }
}

impl ErrorCode {
    /// Every code, in declaration order, for documentation tests and metrics
    /// pre-registration.
    pub const ALL: &'static [ErrorCode] = <Self as VariantArray>::VARIANTS;

    /// Whether the error counts as misbehaviour towards the abuse limit. Faults of
    /// the node or of the room's state (full, draining, bus down) never do. A
    /// failed resume does: guessing resume secrets must cost the guesser. Nor
    /// does the broadcast limit: a person tapping reactions quickly is no abuser,
    /// and a flood still meets the message limit, which counts.
    pub fn is_client_fault(self) -> bool {
        !matches!(
            self,
            ErrorCode::RoomFull
                | ErrorCode::Draining
                | ErrorCode::Unavailable
                | ErrorCode::UnknownPeer
                | ErrorCode::BroadcastRateLimited
        )
    }
}
