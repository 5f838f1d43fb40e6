//! Room operations of one session: join, resume, relay, the room-wide messages
//! (chat, call state, reactions), leave, park and expire; and the head count a
//! lobby shows.
//!
//! Each operation goes through the same three parts in the same order: the
//! [`Router`] (this node's sockets), the [`Bus`] (subscriptions and events) and
//! [`Presence`] (the seat itself). Keeping the order in one place is what makes the
//! join race-free: the node subscribes to the room before presence gives out the
//! seat, so no event about the room can fall between the snapshot and the stream.

use std::sync::{Arc, Weak};
use std::time::Duration;

use thiserror::Error;
use tracing::{debug, warn};
use vc_protocol::{
    is_reaction, validate_chat_text, BroadcastKind, CallState, CallStateChange, ChatEntry,
    ChatTextError, DisplayName, ErrorCode, LeaveReason, Member, NameError, RelayKind, Replay,
    RequestId, RoomName, SeatSnapshot, ServerMessage, REACTIONS,
};

use crate::auth::Authenticator;
use crate::bus::Bus;
use crate::clock::{duration_ms, unix_ms};
use crate::config::Settings;
use crate::envelope::{Envelope, Event};
use crate::held_seats::HeldSeats;
use crate::ice::IceServers;
use crate::ids::random_hex;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::outage_queue::{OutageQueue, Sender};
use crate::outbox::{Outbound, SessionHandle};
use crate::presence::{MemberRecord, Parked, Presence, PresenceError, ResumeClaim};
use crate::publisher::Publisher;
use crate::router::Router;
use crate::seat_timers::{Free, Freeing, SeatTimers, FREE_RETRY};
use crate::vocabulary::{ConnId, NodeId, PeerId, MAX_HEX_ID};

/// A request the node turned down: the code and text of the `error` frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{code}: {message}")]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A room name that did not parse, as a join or a head count is told.
    pub fn invalid_room(e: &NameError) -> Self {
        Self::new(ErrorCode::InvalidRoom, format!("room name {e}"))
    }

    fn unavailable(what: &str) -> Self {
        Self::new(
            ErrorCode::Unavailable,
            format!("{what}: the cluster bus is unavailable, try again shortly"),
        )
    }
}

/// The seat a session holds: what it needs to relay, leave or park.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub room: RoomName,
    pub peer: PeerId,
    /// The display name the others see, stamped on what the seat says.
    pub name: DisplayName,
    pub conn: ConnId,
    /// When the join token's grant ends (unix ms); the session closes then.
    pub grant_expires_ms: Option<u64>,
}

/// What a resume asks for: the seat's token and, from a client that numbers
/// what it processed, the last `seq` it processed and its stream's id.
#[derive(Debug, Clone)]
pub struct ResumeRequest<'a> {
    pub id: Option<RequestId>,
    pub token: &'a str,
    pub last_seq: Option<u64>,
    pub stream: Option<&'a str>,
}

/// What a join asks for. The name is parsed by the join itself, since a join
/// token may carry the name to use instead.
pub struct JoinRequest<'a> {
    pub id: Option<RequestId>,
    pub room: RoomName,
    pub name: &'a str,
    pub token: Option<&'a str>,
}

pub struct Rooms {
    node_id: NodeId,
    settings: Arc<Settings>,
    router: Arc<Router>,
    bus: Arc<dyn Bus>,
    /// The only way anything on this node publishes.
    publisher: Arc<Publisher>,
    presence: Arc<dyn Presence>,
    /// The seats this node holds in presence, written next to each presence call.
    held: Arc<HeldSeats>,
    auth: Authenticator,
    ice: IceServers,
    metrics: Arc<Metrics>,
    /// Parked seats until their window passes, and seats whose freeing failed.
    timers: SeatTimers,
}

impl Rooms {
    /// The room service, with its seat timers running on `lifecycle` until the
    /// node stops.
    pub fn start(
        node_id: NodeId,
        settings: Arc<Settings>,
        router: Arc<Router>,
        bus: Arc<dyn Bus>,
        presence: Arc<dyn Presence>,
        metrics: Arc<Metrics>,
        lifecycle: &Lifecycle,
    ) -> Arc<Self> {
        Arc::new_cyclic(|rooms: &Weak<Self>| {
            let rooms = rooms.clone();
            // Weak: the task must not keep the service alive, nor the service
            // the task, whose command channel closes when the service goes.
            let free: Free = Arc::new(move |seat, freeing| {
                let rooms = rooms.clone();
                Box::pin(async move {
                    match rooms.upgrade() {
                        Some(rooms) => rooms.free_once(&seat, freeing).await,
                        None => true,
                    }
                })
            });
            // A relay for a seat Redis does not have yet waits for as long as
            // the seat's node may take to reconnect and write its seats back:
            // two reconnect waits, and a Cluster's reopening of its connections.
            let seat_grace = settings.redis.max_backoff * 2 + Duration::from_secs(3);
            let queue = OutageQueue::start(
                Arc::clone(&bus),
                settings.outage.clone(),
                seat_grace,
                Arc::clone(&metrics),
                lifecycle,
            );
            Self {
                publisher: Arc::new(Publisher::new(
                    node_id.clone(),
                    Arc::clone(&bus),
                    queue,
                    Arc::clone(&metrics),
                )),
                held: Arc::new(HeldSeats::new()),
                metrics,
                auth: Authenticator::new(&settings.auth),
                ice: IceServers::new(&settings.ice),
                node_id,
                settings,
                router,
                bus,
                presence,
                timers: SeatTimers::start(lifecycle, free),
            }
        })
    }

    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    pub fn bus(&self) -> &dyn Bus {
        self.bus.as_ref()
    }

    /// What the node's other publishers (the Redis backend's tasks) publish through.
    pub fn publisher(&self) -> Arc<Publisher> {
        Arc::clone(&self.publisher)
    }

    /// The seats this node holds, for the Redis resync to write back.
    pub fn held_seats(&self) -> Arc<HeldSeats> {
        Arc::clone(&self.held)
    }

    pub fn seat_timers(&self) -> &SeatTimers {
        &self.timers
    }

    /// Seats a session in a room; the `joined` reply is queued on `handle`.
    pub async fn join(
        &self,
        req: JoinRequest<'_>,
        conn: &ConnId,
        handle: SessionHandle,
    ) -> Result<Seat, Refusal> {
        let grant = self
            .auth
            .authorize(req.room.as_str(), req.token)
            .map_err(|e| Refusal::new(e.code(), e.to_string()))?;
        let name = grant.name.as_deref().unwrap_or(req.name);
        let name = DisplayName::parse(name)
            .map_err(|e| Refusal::new(ErrorCode::InvalidName, format!("display name {e}")))?;
        let record = MemberRecord {
            id: PeerId::mint(),
            name,
            user: grant.user,
            node: self.node_id.clone(),
            conn: conn.clone(),
            joined_at_ms: unix_ms(),
            resume_secret: random_hex(16),
            grant_expires_ms: grant.expires_ms,
            parked: None,
            state: CallState::default(),
            stream: random_hex(8),
        };
        let seat = Seat {
            room: req.room,
            peer: record.id.clone(),
            name: record.name.clone(),
            conn: conn.clone(),
            grant_expires_ms: record.grant_expires_ms,
        };
        let sent = handle.sent_counter();
        self.router.reserve(&seat.room, &seat.peer, conn, handle);
        if let Err(e) = self.bus.subscribe(&seat.room).await {
            self.metrics
                .bus_errors
                .with_label_values(&["subscribe"])
                .inc();
            warn!(room = %seat.room, error = %e, "subscribe failed");
            self.router.remove(&seat.room, &seat.peer, conn);
            return Err(Refusal::unavailable("join"));
        }
        let others = match self
            .presence
            .join(&seat.room, &record, self.settings.rooms.capacity)
            .await
        {
            Ok(others) => {
                self.held.hold(&seat.room, record.clone(), sent);
                others
            }
            Err(PresenceError::Full { capacity }) => {
                self.release(&seat).await;
                return Err(Refusal::new(
                    ErrorCode::RoomFull,
                    format!("room \"{}\" is full ({capacity} of {capacity})", seat.room),
                ));
            }
            Err(e) => {
                self.presence_failed();
                warn!(room = %seat.room, error = %e, "taking a seat failed");
                // The call may have run before it failed (a timeout): take the
                // seat back if it is there.
                self.free(&seat, Freeing::Leave(LeaveReason::Disconnected))
                    .await;
                self.release(&seat).await;
                return Err(Refusal::unavailable("join"));
            }
        };
        let me = record.member();
        let others: Vec<Member> = others.iter().map(MemberRecord::member).collect();
        let chat = self.chat_history(&seat.room).await;
        let chat_ids = chat.iter().map(|m| m.message_id.clone()).collect();
        let reply = ServerMessage::Joined {
            id: req.id,
            seat: self.snapshot(
                &seat,
                &record,
                others.clone(),
                resume_token(&seat.room, &seat.peer, &record.resume_secret),
                chat,
            ),
        };
        // Announce before activating: if the bus refuses the announcement the
        // client never sees `joined`, and frames others send meanwhile are held.
        if let Err(e) = self
            .publish(&seat.room, Event::PeerJoined { member: me.clone() })
            .await
        {
            warn!(room = %seat.room, error = %e, "announcing a join failed");
            self.free(&seat, Freeing::Leave(LeaveReason::Disconnected))
                .await;
            self.release(&seat).await;
            return Err(Refusal::unavailable("join"));
        }
        // A new peer id: no other reservation can stand above this one.
        self.router.activate(
            &seat.room,
            me,
            conn,
            &others,
            chat_ids,
            Outbound::message(&reply),
            &[],
        );
        debug!(room = %seat.room, peer = %seat.peer, "joined");
        Ok(seat)
    }

    /// Gives a session back a parked seat; the `resumed` reply is queued on
    /// `handle`, then, when the request names the last `seq` its client
    /// processed, every frame of the seat's stream after it.
    pub async fn resume(
        &self,
        req: ResumeRequest<'_>,
        conn: &ConnId,
        handle: SessionHandle,
    ) -> Result<Seat, Refusal> {
        let ResumeRequest {
            id,
            token,
            last_seq,
            stream,
        } = req;
        let failed = || {
            Refusal::new(
                ErrorCode::ResumeFailed,
                "the seat cannot be resumed (unknown token or window passed): join again",
            )
        };
        let (room, peer, secret) = parse_resume_token(token).ok_or_else(failed)?;
        let (room, peer) = (&room, &peer);
        // Checked before anything changes, in one read: a wrong secret must not
        // touch the owner's socket, its seat or the room's subscription.
        let found = self.presence.seat(room, peer).await.map_err(|e| {
            self.presence_failed();
            warn!(%room, error = %e, "reading a seat to resume failed");
            Refusal::unavailable("resume")
        })?;
        let record = found
            .filter(|r| secret_matches(&r.resume_secret, secret))
            .ok_or_else(failed)?;
        let now = unix_ms();
        if record.parked.is_some_and(|p| p.until_ms <= now) {
            return Err(failed());
        }
        if record.grant_expires_ms.is_some_and(|until| until <= now) {
            if record.parked.is_some() {
                // Nobody will come back with a valid grant: free the seat now.
                let seat = Seat {
                    room: room.clone(),
                    peer: peer.clone(),
                    name: record.name.clone(),
                    conn: record.conn.clone(),
                    grant_expires_ms: record.grant_expires_ms,
                };
                self.timers.cancel(room, peer, &record.conn);
                self.free(&seat, Freeing::Expire).await;
            }
            return Err(Refusal::new(
                ErrorCode::AuthExpired,
                "the join token has expired: ask for a new invitation and join again",
            ));
        }
        let seat = Seat {
            room: room.clone(),
            peer: peer.clone(),
            name: record.name.clone(),
            conn: conn.clone(),
            grant_expires_ms: record.grant_expires_ms,
        };
        let sent = handle.sent_counter();
        // Frames the client has processed are not queued again, whichever way
        // they come (the replay, the frames held while the resume runs).
        let continues = last_seq.filter(|_| stream.is_none_or(|s| s == record.stream));
        if let Some(last) = continues {
            handle.start_at(last);
        }
        self.router.reserve(room, peer, conn, handle);
        if let Err(e) = self.bus.subscribe(room).await {
            self.metrics
                .bus_errors
                .with_label_values(&["subscribe"])
                .inc();
            warn!(%room, error = %e, "subscribe failed");
            self.router.remove(room, peer, conn);
            return Err(Refusal::unavailable("resume"));
        }
        let claim = ResumeClaim {
            room,
            peer,
            secret,
            from_conn: &record.conn,
            node: &self.node_id,
            conn,
            now_ms: unix_ms(),
        };
        let (record, others) = match self.presence.resume(&claim).await {
            Ok(found) => {
                // The seat left the parked connection: its timer would find
                // another one there.
                self.timers.cancel(room, peer, claim.from_conn);
                found
            }
            Err(e) => {
                self.release(&seat).await;
                return Err(match e {
                    PresenceError::NoSeat | PresenceError::Full { .. } => failed(),
                    e => {
                        self.presence_failed();
                        warn!(%room, error = %e, "resuming a seat failed");
                        Refusal::unavailable("resume")
                    }
                });
            }
        };
        self.held.hold(room, record.clone(), sent);
        let others: Vec<Member> = others.iter().map(MemberRecord::member).collect();
        let chat = self.chat_history(&seat.room).await;
        let chat_ids = chat.iter().map(|m| m.message_id.clone()).collect();
        // Read after the seat's subscription and its RESUME: whatever the
        // buffer does not have yet is published later, and reaches the seat.
        let (replay, missed) = match last_seq {
            None => (None, Vec::new()),
            Some(_) if continues.is_none() => (Some(Replay::Incomplete), Vec::new()),
            Some(last) => self.missed(room, peer, last).await,
        };
        let reply = ServerMessage::Resumed {
            id,
            seat: self.snapshot(&seat, &record, others.clone(), token.to_owned(), chat),
            replay,
        };
        if !self.router.activate(
            &seat.room,
            record.member(),
            conn,
            &others,
            chat_ids,
            Outbound::message(&reply),
            &missed,
        ) {
            // A resume of the seat that read it after this one moved it was
            // confirmed here first: the seat is that one's now.
            self.release(&seat).await;
            return Err(failed());
        }
        let moved = Event::SeatMoved {
            peer: seat.peer.clone(),
            conn: conn.clone(),
        };
        if let Err(e) = self.publish(&seat.room, moved).await {
            // The seat is ours in presence; a stale socket elsewhere will be
            // noticed by its own node's ping timeout instead.
            warn!(room = %seat.room, error = %e, "announcing a resume failed");
        }
        debug!(room = %seat.room, peer = %seat.peer, "resumed");
        Ok(seat)
    }

    /// What the seat's client missed after `last`, from the seat's buffer, and
    /// whether that is everything: the buffer must hold every number from
    /// `last + 1` to the last one its stream gave. A buffer that cannot be read
    /// is a gap the client must renegotiate over, not a failed resume.
    async fn missed(
        &self,
        room: &RoomName,
        peer: &PeerId,
        last: u64,
    ) -> (Option<Replay>, Vec<(u64, Envelope)>) {
        let log = match self.bus.replay(room, peer).await {
            Ok(log) => log,
            Err(e) => {
                self.metrics.bus_errors.with_label_values(&["replay"]).inc();
                warn!(%room, error = %e, "reading a seat's replay buffer failed");
                return (Some(Replay::Incomplete), Vec::new());
            }
        };
        let replay = if log.covers(last) {
            Replay::Complete
        } else {
            Replay::Incomplete
        };
        self.metrics
            .replays
            .with_label_values(&[replay.as_str()])
            .inc();
        let missed = log
            .entries
            .into_iter()
            .filter(|(seq, _)| *seq > last)
            .collect();
        (Some(replay), missed)
    }

    /// The body of `joined` and `resumed`: the seat, the room as it is now, and
    /// TURN credentials minted for it.
    fn snapshot(
        &self,
        seat: &Seat,
        record: &MemberRecord,
        members: Vec<Member>,
        resume_token: String,
        chat: Vec<ChatEntry>,
    ) -> SeatSnapshot {
        SeatSnapshot {
            room: seat.room.to_string(),
            peer: seat.peer.to_string(),
            name: record.name.to_string(),
            members,
            ice_servers: self.ice.for_peer(seat.peer.as_str(), unix_ms() / 1000),
            resume_token,
            resume_window_ms: duration_ms(self.settings.resume.window),
            stream: Some(record.stream.clone()),
            chat,
        }
    }

    /// Relays a finished frame to `to`, if it is another member of the room.
    /// `to` is the client's text: one that is not a peer id names nobody.
    /// While the bus is away, a frame for a seat of this node is handed over
    /// directly, and one for another node waits in the outage queue; `sender`
    /// is who to tell if it is dropped there.
    pub async fn relay(
        &self,
        seat: &Seat,
        to: &str,
        kind: RelayKind,
        frame: String,
        sender: impl FnOnce() -> Sender,
    ) -> Result<(), Refusal> {
        let to = PeerId::parse(to)
            .ok()
            .filter(|to| *to != seat.peer && self.router.is_member(&seat.room, to))
            .ok_or_else(|| {
                // The id is the client's own input: echoed, but cut short.
                Refusal::new(
                    ErrorCode::UnknownPeer,
                    format!(
                        "peer \"{}\" is not in your room",
                        to.chars().take(32).collect::<String>()
                    ),
                )
            })?;
        // Unnumbered: without Redis nothing can number it, and the seat's
        // stream goes on from the bus once it is back.
        if !self.bus.is_connected() && self.router.hand_over(&seat.room, &to, &frame, kind) {
            debug!(kind = kind.as_str(), "handed over while the bus is away");
            return Ok(());
        }
        let event = Event::Relay {
            from: seat.peer.clone(),
            to,
            message: kind.to_string(),
            frame,
        };
        self.send_from(seat, event, None, sender, kind.as_str())
            .await?;
        debug!(kind = kind.as_str(), "relayed");
        Ok(())
    }

    /// Says `text` to every other member of the room, stamped with the seat's
    /// peer id and name, and keeps it in the room's history for later joiners
    /// (while the bus is away, once it is back: see [`Rooms::relay`]).
    pub async fn chat(
        &self,
        seat: &Seat,
        text: &str,
        sender: impl FnOnce() -> Sender,
    ) -> Result<(), Refusal> {
        let text = validate_chat_text(text, self.settings.limits.max_chat_bytes).map_err(|e| {
            let code = match e {
                ChatTextError::Empty => ErrorCode::ChatEmpty,
                ChatTextError::TooLong { .. } => ErrorCode::ChatTooLong,
                ChatTextError::ControlCharacters => ErrorCode::InvalidChat,
            };
            Refusal::new(code, format!("chat message {e}"))
        })?;
        let entry = ChatEntry {
            message_id: random_hex(8),
            from: seat.peer.to_string(),
            name: seat.name.to_string(),
            text,
            at: unix_ms(),
        };
        let kept = serde_json::to_string(&entry).map_err(|e| {
            warn!(error = %e, "encoding a chat entry failed");
            Refusal::unavailable("chat")
        })?;
        let event = Event::Broadcast {
            from: seat.peer.clone(),
            message: BroadcastKind::Chat.to_string(),
            frame: ServerMessage::chat(&entry).to_json(),
            chat: Some(entry.message_id),
        };
        self.send_from(seat, event, Some(&kept), sender, "chat")
            .await
    }

    /// Changes the seat's call state (the fields `change` names): kept with the
    /// seat in presence in one atomic step, so that joiners and resumers see it,
    /// and the whole resulting state told to every other member.
    pub async fn set_call_state(
        &self,
        seat: &Seat,
        change: CallStateChange,
        sender: impl FnOnce() -> Sender,
    ) -> Result<(), Refusal> {
        // With Redis away, presence would wait out its reconnect before failing:
        // refused at once instead, changing nothing. The client sends its state
        // again once the node delivers.
        if !self.bus.is_connected() {
            return Err(Refusal::unavailable("call-state"));
        }
        self.held
            .set_call_state(&seat.room, &seat.peer, &seat.conn, change);
        let state = match self
            .presence
            .set_call_state(&seat.room, &seat.peer, &seat.conn, change)
            .await
        {
            Ok(Some(state)) => state,
            // The seat moved to another socket, which this one will hear of: the
            // room is told nothing presence does not say.
            Ok(None) => return Ok(()),
            Err(e) => {
                self.presence_failed();
                warn!(room = %seat.room, error = %e, "recording a call state failed");
                return Err(Refusal::unavailable("call-state"));
            }
        };
        let event = Event::Broadcast {
            from: seat.peer.clone(),
            message: BroadcastKind::PeerState.to_string(),
            frame: ServerMessage::PeerState {
                peer: seat.peer.to_string(),
                state,
            }
            .to_json(),
            chat: None,
        };
        self.send_from(seat, event, None, sender, "call-state")
            .await
    }

    /// A passing reaction for every other member; nothing is kept.
    pub async fn react(
        &self,
        seat: &Seat,
        emoji: &str,
        sender: impl FnOnce() -> Sender,
    ) -> Result<(), Refusal> {
        if !is_reaction(emoji) {
            return Err(Refusal::new(
                ErrorCode::InvalidReaction,
                format!("a reaction is one of {}", REACTIONS.join(" ")),
            ));
        }
        let event = Event::Broadcast {
            from: seat.peer.clone(),
            message: BroadcastKind::Reaction.to_string(),
            frame: ServerMessage::Reaction {
                from: seat.peer.to_string(),
                emoji: emoji.to_owned(),
            }
            .to_json(),
            chat: None,
        };
        self.send_from(seat, event, None, sender, "reaction").await
    }

    /// How many seats the room has, for a lobby: with auth on, only for the
    /// holder of a token that grants the room, so that nobody learns more of a
    /// room than they could by joining it.
    pub async fn head_count(&self, room: &RoomName, token: Option<&str>) -> Result<usize, Refusal> {
        self.auth
            .authorize(room.as_str(), token)
            .map_err(|e| Refusal::new(e.code(), e.to_string()))?;
        self.presence.count(room).await.map_err(|e| {
            self.presence_failed();
            warn!(%room, error = %e, "counting a room's seats failed");
            Refusal::unavailable("head count")
        })
    }

    /// The room's chat history as a joiner gets it: oldest first, none older
    /// than `chat.history_max_age`. Without it the join goes on: the call
    /// matters more than its past messages.
    async fn chat_history(&self, room: &RoomName) -> Vec<ChatEntry> {
        if self.settings.chat.history == 0 {
            return Vec::new();
        }
        let kept = match self.bus.history(room).await {
            Ok(kept) => kept,
            Err(e) => {
                self.metrics
                    .bus_errors
                    .with_label_values(&["history"])
                    .inc();
                warn!(%room, error = %e, "reading the chat history failed");
                return Vec::new();
            }
        };
        let oldest = unix_ms().saturating_sub(duration_ms(self.settings.chat.history_max_age));
        kept.iter()
            .filter_map(|raw| serde_json::from_str::<ChatEntry>(raw).ok())
            .filter(|entry| entry.at >= oldest)
            .collect()
    }

    /// Frees the seat now and tells the room why.
    pub async fn leave(&self, seat: &Seat, reason: LeaveReason) {
        self.router.remove(&seat.room, &seat.peer, &seat.conn);
        self.timers.cancel(&seat.room, &seat.peer, &seat.conn);
        self.free(seat, Freeing::Leave(reason)).await;
        self.unsubscribe(&seat.room).await;
    }

    /// Keeps the seat for `resume.window`, then frees it unless it was resumed.
    /// `acked` is the highest `seq` the client acknowledged: the seat's buffer
    /// need not keep those frames for a resume, and drops them here, in one
    /// call per park rather than one per acknowledgement.
    pub async fn park(&self, seat: Seat, reason: LeaveReason, acked: u64) {
        self.router.remove(&seat.room, &seat.peer, &seat.conn);
        self.unsubscribe(&seat.room).await;
        if acked > 0 {
            if let Err(e) = self.bus.trim(&seat.room, &seat.peer, acked).await {
                warn!(room = %seat.room, error = %e, "trimming a seat's replay buffer failed");
            }
        }
        let window = self.settings.resume.window;
        let parked = Parked {
            until_ms: unix_ms() + duration_ms(window),
            reason,
        };
        self.held.park(&seat.room, &seat.peer, &seat.conn, parked);
        let freeing = match self
            .presence
            .park(&seat.room, &seat.peer, &seat.conn, parked)
            .await
        {
            Ok(true) => Freeing::Expire,
            // Resumed elsewhere already, or gone: nothing to wait for.
            Ok(false) => {
                self.held.let_go(&seat.room, &seat.peer, &seat.conn);
                return;
            }
            // The seat stays attached to this dead connection: it can still be
            // resumed, and is freed like a parked one when the window passes.
            Err(e) => {
                self.presence_failed();
                warn!(room = %seat.room, error = %e, "parking a seat failed; it is freed when the window passes");
                Freeing::Leave(reason)
            }
        };
        self.timers.park(seat, freeing, window);
    }

    /// Frees the seat in presence if `seat.conn` still holds it, and tells the
    /// room when it did. While presence fails, the seat timers try again every
    /// [`FREE_RETRY`]: a seat left behind would outlive its socket on a node
    /// that is alive, where no sweep frees it.
    async fn free(&self, seat: &Seat, freeing: Freeing) {
        if !self.free_once(seat, freeing).await {
            self.timers.retry(seat.clone(), freeing);
        }
    }

    /// One try of [`Rooms::free`]: true once presence has answered.
    async fn free_once(&self, seat: &Seat, freeing: Freeing) -> bool {
        let (room, peer, conn) = (&seat.room, &seat.peer, &seat.conn);
        self.held.let_go(room, peer, conn);
        let freed = match freeing {
            Freeing::Leave(reason) => self
                .presence
                .leave(room, peer, conn)
                .await
                .map(|freed| freed.then_some(reason)),
            Freeing::Expire => self.presence.expire(room, peer, conn).await,
        };
        match freed {
            Ok(Some(reason)) => {
                self.announce_departure(room, peer, reason).await;
                true
            }
            Ok(None) => true,
            Err(e) => {
                self.presence_failed();
                warn!(%room, error = %e, retry_in = ?FREE_RETRY, "freeing a seat failed");
                false
            }
        }
    }

    /// Gives back a seat's local reservation and subscription without touching
    /// presence: after a failed join, or when the seat moved to another socket.
    pub async fn release(&self, seat: &Seat) {
        self.held.let_go(&seat.room, &seat.peer, &seat.conn);
        self.router.remove(&seat.room, &seat.peer, &seat.conn);
        self.unsubscribe(&seat.room).await;
    }

    async fn unsubscribe(&self, room: &RoomName) {
        if let Err(e) = self.bus.unsubscribe(room).await {
            warn!(%room, error = %e, "unsubscribe failed");
        }
    }

    pub async fn announce_departure(&self, room: &RoomName, peer: &PeerId, reason: LeaveReason) {
        self.publisher.announce_departure(room, peer, reason).await;
    }

    async fn publish(&self, room: &RoomName, event: Event) -> Result<(), crate::bus::BusError> {
        self.publisher.publish(room, event).await
    }

    /// Publishes what `seat` sent, or keeps it for the bus
    /// ([`Publisher::publish_from`]); `what` names it in the refusal.
    async fn send_from(
        &self,
        seat: &Seat,
        event: Event,
        kept: Option<&str>,
        sender: impl FnOnce() -> Sender,
        what: &str,
    ) -> Result<(), Refusal> {
        self.publisher
            .publish_from(&seat.room, event, kept, sender)
            .await
            .map_err(|e| {
                warn!(room = %seat.room, error = %e, what, "not delivered");
                Refusal::unavailable(what)
            })
    }

    fn presence_failed(&self) {
        self.metrics
            .bus_errors
            .with_label_values(&["presence"])
            .inc();
    }
}

/// `<room>.<peer>.<secret>`: room names and ids never contain a dot.
fn resume_token(room: &RoomName, peer: &PeerId, secret: &str) -> String {
    format!("{room}.{peer}.{secret}")
}

fn secret_matches(expected: &str, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

/// The seat a resume token names, and its secret.
fn parse_resume_token(token: &str) -> Option<(RoomName, PeerId, &str)> {
    let mut parts = token.splitn(3, '.');
    let (room, peer, secret) = (parts.next()?, parts.next()?, parts.next()?);
    let hex = !secret.is_empty()
        && secret.len() <= MAX_HEX_ID
        && secret.bytes().all(|b| b.is_ascii_hexdigit());
    let room = RoomName::parse(room).ok()?;
    let peer = PeerId::parse(peer).ok()?;
    hex.then_some((room, peer, secret))
}

#[cfg(test)]
#[path = "rooms_tests.rs"]
mod rooms_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_tokens_round_trip_and_reject_garbage() {
        let (room, peer) = (
            RoomName::parse("room-1").expect("a room"),
            PeerId::parse("0a1b").expect("a peer id"),
        );
        let token = resume_token(&room, &peer, "ff00");
        assert_eq!(parse_resume_token(&token), Some((room, peer, "ff00")));
        assert_eq!(parse_resume_token("room-1.0a1b"), None);
        assert_eq!(parse_resume_token("bad room.0a.ff"), None);
        assert_eq!(parse_resume_token("r.zz.ff"), None);
        assert_eq!(parse_resume_token("r.0a."), None);
    }
}
