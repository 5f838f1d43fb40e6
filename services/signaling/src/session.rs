//! One WebSocket session: a task that owns its socket.
//!
//! Everything the client receives goes through the session's bounded outbox, fed by
//! the session itself (replies, errors) and by the router (room events, relays), so
//! frames leave in one order and a client that stops reading fills the outbox and
//! is evicted instead of growing the node's memory. Client frames are handled one
//! at a time, each finished before the next is read: that is what keeps a peer's
//! messages in order across the bus.

use std::sync::Arc;
use std::time::Instant;

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, ProtocolError};
use tracing::{debug, debug_span, info_span, Instrument};
use vc_protocol::{
    parse_client_frame, ClientMessage, ErrorCode, LeaveReason, RelayKind, RequestId, RoomName,
    ServerMessage, PROTOCOL_REVISION, PROTOCOL_VERSION,
};

use crate::clock::unix_us;
use crate::frame_guard::{Violation, ViolationCell};
use crate::lifecycle::Phase;
use crate::metrics::{join_outcome, Metrics};
use crate::node::Node;
use crate::outage_queue::Sender;
use crate::outbox::{self, Acknowledged, Eviction, Next, Outbound, Receiver, SessionHandle};
use crate::ratelimit::{Strikes, TokenBucket};
use crate::rooms::{JoinRequest, Refusal, ResumeRequest, Seat};
use crate::telemetry;
use crate::vocabulary::ConnId;

/// Most frames written to the socket per wake-up, so that a busy outbox cannot
/// starve reading and pinging.
const WRITE_BATCH: usize = 32;

/// How a session ended, which decides the close code and what happens to its seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The client sent a close frame with this code.
    ClientClosed(Option<u16>),
    /// The socket ended without a close frame.
    Dropped,
    /// No pong or message within `heartbeat.timeout`.
    TimedOut,
    /// Too many client-caused errors.
    Abuse,
    /// A frame over `limits.max_frame_bytes`.
    TooBig,
    /// Broken WebSocket framing: reserved bits or opcodes, bad fragments.
    Protocol,
    /// A text message that is not UTF-8.
    InvalidText,
    /// The join token's `exp` passed while the seat was held.
    GrantExpired,
    Evicted(Eviction),
    /// The node is stopping.
    Shutdown,
}

impl Ending {
    /// The `reason` label of `vc_sessions_closed_total`.
    fn label(self) -> &'static str {
        match self {
            Ending::ClientClosed(_) => "client_closed",
            Ending::Dropped => "dropped",
            Ending::TimedOut => "timed_out",
            Ending::Abuse => "abuse",
            Ending::TooBig => "too_big",
            Ending::Protocol => "protocol",
            Ending::InvalidText => "invalid_text",
            Ending::GrantExpired => "grant_expired",
            Ending::Evicted(Eviction::SlowConsumer) => "slow_consumer",
            Ending::Evicted(Eviction::SeatMoved) => "seat_moved",
            Ending::Shutdown => "shutdown",
        }
    }

    fn close_reason(self) -> Option<CloseReason> {
        let (code, text) = match self {
            Ending::ClientClosed(_) | Ending::Dropped => return None,
            Ending::TimedOut => (CloseCode::Away, "ping timeout"),
            Ending::Abuse => (CloseCode::Policy, "too many invalid messages"),
            Ending::TooBig => (CloseCode::Size, "frame too large"),
            Ending::Protocol => (CloseCode::Protocol, "websocket protocol error"),
            Ending::InvalidText => (CloseCode::Invalid, "text frame is not valid UTF-8"),
            Ending::GrantExpired => (CloseCode::Policy, "join token expired"),
            Ending::Evicted(Eviction::SlowConsumer) => (CloseCode::Again, "outbound queue full"),
            Ending::Evicted(Eviction::SeatMoved) => (CloseCode::Other(4001), "resumed elsewhere"),
            Ending::Shutdown => (CloseCode::Away, "node shutting down"),
        };
        Some(CloseReason {
            code,
            description: Some(text.to_owned()),
        })
    }
}

/// What woke a waiting session.
enum Woken {
    /// The node's phase changed; false when the node is gone.
    Phase(bool),
    Outbox(Next),
    Frame(Option<Result<AggregatedMessage, ProtocolError>>),
    GrantExpired,
    Tick,
}

struct Session {
    node: Arc<Node>,
    ws: actix_ws::Session,
    conn: ConnId,
    handle: SessionHandle,
    seat: Option<Seat>,
    bucket: TokenBucket,
    /// Room-wide messages (chat, call state, reactions) reach the whole room:
    /// their own, smaller budget.
    broadcasts: TokenBucket,
    strikes: Strikes,
    last_heard: Instant,
    /// Reference point for ping payloads, which carry the send time.
    started: Instant,
    /// What the frame guard saw, when it cut the stream.
    violations: ViolationCell,
    /// The highest `seq` of the seat's stream the client acknowledged (`ack`).
    acked: Acknowledged,
}

/// Runs a session to its end. Spawned on the actix worker that accepted the socket
/// (`MessageStream` is not `Send`).
///
/// The session is set up before the future is made, so that nothing used only to
/// open it stays in the future, which lives as long as the socket.
pub fn run(
    node: Arc<Node>,
    ws: actix_ws::Session,
    stream: actix_ws::MessageStream,
    violations: ViolationCell,
) -> impl std::future::Future<Output = ()> {
    let live = node.lifecycle.session_guard();
    let (mut session, mut stream, outbox, span) = Session::open(node, ws, stream, violations);
    async move {
        let _live = live;
        // By reference: this future holds the stream already, and a second
        // copy in `serve`'s would stay for the session's life.
        let ending = session.serve(&mut stream, &outbox).await;
        debug!(?ending, "session ended");
        // Boxed, as every rarely taken path: the future of `run` is held for the
        // whole life of every session, idle or not, and is as large as its
        // largest state.
        Box::pin(session.finish(ending, outbox)).await;
    }
    .instrument(span)
}

impl Session {
    /// A new session, the client's frames, its outbox and its span.
    fn open(
        node: Arc<Node>,
        ws: actix_ws::Session,
        stream: actix_ws::MessageStream,
        violations: ViolationCell,
    ) -> (Self, AggregatedMessageStream, Receiver, tracing::Span) {
        node.metrics.sessions_opened.inc();
        let limits = node.settings.limits.clone();
        let stream = stream
            .max_frame_size(limits.max_frame_bytes)
            .aggregate_continuations()
            .max_continuation_size(limits.max_frame_bytes);
        let (handle, outbox) = outbox::outbox(limits.outbound_queue);
        let now = Instant::now();
        let conn = ConnId::mint();
        let span = info_span!(
            "session",
            node = %node.id,
            conn = %conn,
            trace_id = tracing::field::Empty
        );
        telemetry::record_trace_id(&span);
        let session = Session {
            ws,
            handle,
            seat: None,
            bucket: TokenBucket::new(limits.messages_per_second, limits.message_burst, now),
            broadcasts: TokenBucket::new(limits.broadcasts_per_second, limits.broadcast_burst, now),
            strikes: Strikes::new(limits.abuse_strikes, limits.abuse_window),
            last_heard: now,
            started: now,
            violations,
            acked: Acknowledged::default(),
            conn,
            node,
        };
        (session, stream, outbox, span)
    }

    async fn serve(&mut self, stream: &mut AggregatedMessageStream, outbox: &Receiver) -> Ending {
        let mut phase = self.node.lifecycle.subscribe();
        let patience = self.node.settings.heartbeat.timeout;
        let mut ticker = tokio::time::interval(self.node.settings.heartbeat.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        // One timer for the seat's grant, moved when the seat changes, rather
        // than a new one on every turn of the loop.
        let grant_timer = tokio::time::sleep(std::time::Duration::ZERO);
        tokio::pin!(grant_timer);
        let mut grant_armed: Option<u64> = None;
        self.reply(ServerMessage::Welcome {
            protocol: PROTOCOL_VERSION,
            revision: PROTOCOL_REVISION,
            node: self.node.id.to_string(),
            max_frame_bytes: self.node.settings.limits.max_frame_bytes,
            max_chat_bytes: Some(self.node.settings.limits.max_chat_bytes),
        });
        if *phase.borrow_and_update() == Phase::Draining {
            self.ask_to_reconnect();
        }
        loop {
            let grant = self.seat.as_ref().and_then(|s| s.grant_expires_ms);
            if grant != grant_armed {
                if let Some(until_ms) = grant {
                    let left = until_ms.saturating_sub(unix_us() / 1000);
                    grant_timer.as_mut().reset(
                        tokio::time::Instant::now() + std::time::Duration::from_millis(left),
                    );
                }
                grant_armed = grant;
            }
            // What woke the session is handled after the `select!`, once its
            // futures are gone: the wait and the handling then share the
            // session future's space instead of adding up.
            let woken = tokio::select! {
                biased;
                changed = phase.changed() => Woken::Phase(changed.is_ok()),
                next = outbox.next() => Woken::Outbox(next),
                frame = stream.recv() => Woken::Frame(frame),
                () = &mut grant_timer, if grant_armed.is_some() => Woken::GrantExpired,
                _ = ticker.tick() => Woken::Tick,
            };
            match woken {
                Woken::Phase(changed) => {
                    let now = changed.then(|| *phase.borrow_and_update());
                    match now {
                        Some(Phase::Running) => {}
                        Some(Phase::Draining) => self.ask_to_reconnect(),
                        Some(Phase::Stopping) | None => return Ending::Shutdown,
                    }
                }
                Woken::Outbox(Next::Evicted(why)) => return Ending::Evicted(why),
                Woken::Outbox(Next::Frame(first)) => {
                    if let Err(ending) = self.write(first, outbox, patience).await {
                        return ending;
                    }
                    // Whatever else is queued goes out now, a bounded number at a
                    // time so that reading and pinging are not starved.
                    for _ in 1..WRITE_BATCH {
                        let Some(out) = outbox.try_recv() else { break };
                        if let Err(ending) = self.write(out, outbox, patience).await {
                            return ending;
                        }
                    }
                }
                Woken::Frame(frame) => {
                    if let Some(ending) = self.on_frame(frame).await {
                        return ending;
                    }
                }
                Woken::GrantExpired => {
                    self.reply(ServerMessage::error(
                        ErrorCode::AuthExpired,
                        "your join token has expired: the call ends here",
                        None,
                    ));
                    return Ending::GrantExpired;
                }
                Woken::Tick => {
                    if self.last_heard.elapsed() > patience {
                        return Ending::TimedOut;
                    }
                    let stamp = elapsed_micros(self.started).to_be_bytes();
                    if self.ws.ping(&stamp).await.is_err() {
                        return Ending::Dropped;
                    }
                }
            }
        }
    }

    /// Writes one frame. A client that stops reading blocks the write once the
    /// socket's buffers fill; eviction and the heartbeat timeout must still end
    /// the session.
    ///
    /// Boxed: its timer and the socket's send would otherwise sit in every
    /// session's future, written to or not.
    fn write<'a>(
        &'a mut self,
        out: Outbound,
        outbox: &'a Receiver,
        patience: std::time::Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Ending>> + 'a>> {
        Box::pin(async move {
            let sent = Sent::of(&out);
            tokio::select! {
                written = self.ws.text(String::from(out.text)) => {
                    if written.is_err() {
                        return Err(Ending::Dropped);
                    }
                    sent.record(&self.node.metrics);
                    Ok(())
                }
                why = outbox.evicted() => Err(Ending::Evicted(why)),
                () = tokio::time::sleep(patience) => Err(Ending::TimedOut),
            }
        })
    }

    async fn on_frame(
        &mut self,
        frame: Option<Result<AggregatedMessage, ProtocolError>>,
    ) -> Option<Ending> {
        let frame = match frame {
            None => return Some(Ending::Dropped),
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Some(self.broken(e)),
        };
        self.last_heard = Instant::now();
        match frame {
            // Boxed: handling a message (a relay, a join) takes far more room
            // than waiting for one, and a session mostly waits.
            AggregatedMessage::Text(text) => Box::pin(self.on_text(&text)).await,
            AggregatedMessage::Binary(_) => {
                self.count_received("binary");
                self.refuse(
                    None,
                    Refusal::new(
                        ErrorCode::BinaryNotSupported,
                        "binary frames are not supported: send JSON text",
                    ),
                )
            }
            AggregatedMessage::Ping(bytes) => {
                if Box::pin(self.ws.pong(&bytes)).await.is_err() {
                    return Some(Ending::Dropped);
                }
                None
            }
            AggregatedMessage::Pong(bytes) => {
                if let Ok(stamp) = <[u8; 8]>::try_from(bytes.as_ref()) {
                    let rtt =
                        elapsed_micros(self.started).saturating_sub(u64::from_be_bytes(stamp));
                    self.node.metrics.ping_rtt.observe(rtt as f64 / 1e6);
                }
                None
            }
            AggregatedMessage::Close(reason) => {
                Some(Ending::ClientClosed(reason.map(|r| u16::from(r.code))))
            }
        }
    }

    /// How a stream error ends the session: the frame guard's verdict first, since
    /// it cuts the stream before actix-ws sees the frame.
    fn broken(&self, e: ProtocolError) -> Ending {
        match self.violations.get() {
            Some(Violation::TooBig) => return Ending::TooBig,
            Some(Violation::Protocol) => return Ending::Protocol,
            None => {}
        }
        match e {
            ProtocolError::Overflow => Ending::TooBig,
            // actix-ws reports an over-long continuation as an I/O error.
            ProtocolError::Io(e) if e.to_string().contains("maximum continuation") => {
                Ending::TooBig
            }
            // Text that is not UTF-8; the guard has already refused reserved bits,
            // actix-http's other source of this kind.
            ProtocolError::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                Ending::InvalidText
            }
            ProtocolError::Io(_) => Ending::Dropped,
            _ => Ending::Protocol,
        }
    }

    async fn on_text(&mut self, text: &str) -> Option<Ending> {
        self.node
            .metrics
            .received_bytes
            .inc_by(u64::try_from(text.len()).unwrap_or(u64::MAX));
        if !self.bucket.try_take(Instant::now()) {
            return self.refuse(
                None,
                Refusal::new(
                    ErrorCode::RateLimited,
                    "too many messages: slow down; this one was dropped",
                ),
            );
        }
        let message = match parse_client_frame(text) {
            Ok(frame) => {
                if let Some(ack) = frame.ack {
                    self.acknowledge(ack);
                }
                frame.message
            }
            Err(e) => {
                self.count_received("invalid");
                return self.refuse(e.id, Refusal::new(e.code, e.message));
            }
        };
        self.count_received(message.type_name());
        let id = message.request_id().cloned();
        match self.dispatch(message).await {
            Ok(()) => None,
            Err(refusal) => self.refuse(id, refusal),
        }
    }

    async fn dispatch(&mut self, message: ClientMessage) -> Result<(), Refusal> {
        let rooms = Arc::clone(&self.node.rooms);
        match message {
            ClientMessage::Join {
                id,
                room,
                name,
                token,
                protocol,
            } => {
                let joined = match self
                    .admit(protocol)
                    .and_then(|()| RoomName::parse(&room).map_err(|e| Refusal::invalid_room(&e)))
                {
                    Ok(room) => {
                        self.renumber();
                        let span = info_span!("join", room = %room);
                        let request = JoinRequest {
                            id,
                            room,
                            name: &name,
                            token: token.as_deref(),
                        };
                        // Boxed, like the resume below: once per seat, and the
                        // largest futures a session awaits.
                        Box::pin(
                            rooms
                                .join(request, &self.conn, self.handle.clone())
                                .instrument(span),
                        )
                        .await
                    }
                    Err(refusal) => Err(refusal),
                };
                let outcome = match &joined {
                    Ok(_) => "ok",
                    Err(refusal) => join_outcome(refusal.code),
                };
                self.node.metrics.joins.with_label_values(&[outcome]).inc();
                self.seat = Some(joined?);
            }
            ClientMessage::Resume {
                id,
                token,
                protocol,
                last_seq,
                stream,
            } => {
                let resumed = match self.admit(protocol) {
                    Ok(()) => {
                        self.renumber();
                        let request = ResumeRequest {
                            id,
                            token: &token,
                            last_seq,
                            stream: stream.as_deref(),
                        };
                        Box::pin(rooms.resume(request, &self.conn, self.handle.clone())).await
                    }
                    Err(refusal) => Err(refusal),
                };
                if resumed.is_ok() {
                    // What the client processed before is acknowledged: as far
                    // as the stream continued (see `Rooms::resume`).
                    self.acked =
                        Acknowledged::upto(last_seq.unwrap_or(0).min(self.handle.sent_seq()));
                }
                let outcome = match &resumed {
                    Ok(_) => "ok",
                    Err(refusal) if refusal.code == ErrorCode::Unavailable => "unavailable",
                    Err(_) => "failed",
                };
                self.node
                    .metrics
                    .resumes
                    .with_label_values(&[outcome])
                    .inc();
                self.seat = Some(resumed?);
            }
            ClientMessage::Offer { to, sdp, id } => {
                let seat = self.seat()?;
                // Written out before the wait, so that only the text is held.
                let frame = ServerMessage::Offer {
                    from: seat.peer.to_string(),
                    sdp,
                }
                .to_json();
                let sender = || self.sender(id, RelayKind::Offer.as_str());
                relay(&rooms, seat, &to, RelayKind::Offer, frame, sender).await?;
            }
            ClientMessage::Answer { to, sdp, id } => {
                let seat = self.seat()?;
                // Written out before the wait, so that only the text is held.
                let frame = ServerMessage::Answer {
                    from: seat.peer.to_string(),
                    sdp,
                }
                .to_json();
                let sender = || self.sender(id, RelayKind::Answer.as_str());
                relay(&rooms, seat, &to, RelayKind::Answer, frame, sender).await?;
            }
            ClientMessage::Candidate { to, candidate, id } => {
                let seat = self.seat()?;
                // Written out before the wait, so that only the text is held.
                let frame = ServerMessage::Candidate {
                    from: seat.peer.to_string(),
                    candidate,
                }
                .to_json();
                let sender = || self.sender(id, RelayKind::Candidate.as_str());
                relay(&rooms, seat, &to, RelayKind::Candidate, frame, sender).await?;
            }
            ClientMessage::AppData { to, data, id } => {
                let seat = self.seat()?;
                // Written out before the wait, so that only the text is held.
                let frame = ServerMessage::AppData {
                    from: seat.peer.to_string(),
                    data,
                }
                .to_json();
                let sender = || self.sender(id, RelayKind::AppData.as_str());
                relay(&rooms, seat, &to, RelayKind::AppData, frame, sender).await?;
            }
            ClientMessage::Leave { id } => {
                let seat = self.seat.take().ok_or_else(not_joined)?;
                Box::pin(rooms.leave(&seat, LeaveReason::Left)).await;
                self.reply(ServerMessage::Left { id });
            }
            ClientMessage::Report { report, .. } => {
                report
                    .validate()
                    .map_err(|e| Refusal::new(ErrorCode::InvalidMessage, e))?;
                self.node.metrics.record_report(&report);
            }
            // Answered here, from the session alone: no seat, no bus, no Redis. It
            // has already taken its token from the bucket like any message.
            ClientMessage::Ping { id } => self.reply(ServerMessage::Pong { id }),
            ClientMessage::Chat { text, id } => {
                self.take_broadcast_token()?;
                let sender = || self.sender(id, "chat");
                Box::pin(rooms.chat(self.seat()?, &text, sender)).await?;
            }
            ClientMessage::CallState { change, id } => {
                self.take_broadcast_token()?;
                let sender = || self.sender(id, "call-state");
                Box::pin(rooms.set_call_state(self.seat()?, change, sender)).await?;
            }
            ClientMessage::Reaction { emoji, id } => {
                self.take_broadcast_token()?;
                let sender = || self.sender(id, "reaction");
                Box::pin(rooms.react(self.seat()?, &emoji, sender)).await?;
            }
        }
        Ok(())
    }

    /// Who sent a message, for the outage queue to tell if it drops it.
    fn sender(&self, id: Option<RequestId>, what: &'static str) -> Sender {
        Sender {
            handle: self.handle.clone(),
            id,
            what,
        }
    }

    /// Takes a piggybacked acknowledgement: cumulative, so one lower than an
    /// earlier one, or higher than anything the seat was sent, is ignored.
    fn acknowledge(&mut self, ack: u64) {
        self.acked.take(ack, self.handle.sent_seq());
    }

    /// A new seat (a join, a resume) numbers its own stream: the count of what
    /// was sent starts again, and with it what the client can acknowledge.
    fn renumber(&mut self) {
        self.handle = self.handle.renumbered();
        self.acked = Acknowledged::default();
    }

    /// A room-wide message needs a seat and a token of the broadcast bucket.
    fn take_broadcast_token(&mut self) -> Result<(), Refusal> {
        self.seat()?;
        if self.broadcasts.try_take(Instant::now()) {
            return Ok(());
        }
        Err(Refusal::new(
            ErrorCode::BroadcastRateLimited,
            "too many messages to the whole room: wait a moment; this one was dropped",
        ))
    }

    /// Checks that a join or resume may proceed on this session and node.
    fn admit(&self, protocol: Option<u32>) -> Result<(), Refusal> {
        if let Some(v) = protocol.filter(|v| *v != PROTOCOL_VERSION) {
            return Err(Refusal::new(
                ErrorCode::UnsupportedProtocol,
                format!("protocol {v} is not supported; this node speaks {PROTOCOL_VERSION}"),
            ));
        }
        if self.seat.is_some() {
            return Err(Refusal::new(
                ErrorCode::AlreadyJoined,
                "this session is already in a room: leave first",
            ));
        }
        if self.node.lifecycle.phase() != Phase::Running {
            return Err(Refusal::new(
                ErrorCode::Draining,
                "this node is shutting down: connect again to reach another node",
            ));
        }
        Ok(())
    }

    fn seat(&self) -> Result<&Seat, Refusal> {
        self.seat.as_ref().ok_or_else(not_joined)
    }

    fn reply(&self, message: ServerMessage) {
        self.handle.send(Outbound::message(&message));
    }

    fn ask_to_reconnect(&self) {
        self.reply(ServerMessage::Reconnect {
            reason: vc_protocol::ReconnectReason::Draining,
        });
    }

    /// Sends the error; a client-caused one is a strike, and too many close the
    /// socket.
    fn refuse(&mut self, id: Option<RequestId>, refusal: Refusal) -> Option<Ending> {
        debug!(code = %refusal.code, "refused: {}", refusal.message);
        self.node.metrics.reject(refusal.code);
        let abusive = refusal.code.is_client_fault() && self.strikes.record(Instant::now());
        self.reply(ServerMessage::error(refusal.code, refusal.message, id));
        abusive.then_some(Ending::Abuse)
    }

    /// Settles the seat according to how the session ended, then closes the socket.
    async fn finish(mut self, ending: Ending, outbox: Receiver) {
        let rooms = Arc::clone(&self.node.rooms);
        let metrics = Arc::clone(&self.node.metrics);
        metrics
            .sessions_closed
            .with_label_values(&[ending.label()])
            .inc();
        if let Some(seat) = self.seat.take() {
            match ending {
                // A deliberate close (a closed tab) or a client thrown out: gone now.
                Ending::ClientClosed(Some(1000 | 1001))
                | Ending::Abuse
                | Ending::TooBig
                | Ending::InvalidText
                | Ending::GrantExpired => {
                    rooms.leave(&seat, LeaveReason::Disconnected).await;
                }
                Ending::Evicted(Eviction::SeatMoved) => rooms.release(&seat).await,
                Ending::TimedOut => {
                    rooms
                        .park(seat, LeaveReason::TimedOut, self.acked.get())
                        .await
                }
                Ending::ClientClosed(_)
                | Ending::Dropped
                | Ending::Protocol
                | Ending::Evicted(Eviction::SlowConsumer)
                | Ending::Shutdown => {
                    rooms
                        .park(seat, LeaveReason::Disconnected, self.acked.get())
                        .await
                }
            }
        }
        // A slow client may take a while to make room for the close frame; a dead
        // one never will, and is let go after the heartbeat timeout.
        let patience = self.node.settings.heartbeat.timeout;
        let ws = self.ws;
        let close = async move {
            let mut ws = ws;
            if matches!(
                ending,
                Ending::Abuse | Ending::Shutdown | Ending::GrantExpired
            ) {
                // Say why before closing: the last error, or a pending `reconnect`.
                while let Some(out) = outbox.try_recv() {
                    let sent = Sent::of(&out);
                    if ws.text(String::from(out.text)).await.is_err() {
                        return;
                    }
                    sent.record(&metrics);
                }
            }
            ws.close(ending.close_reason()).await.ok();
        };
        tokio::time::timeout(patience, close).await.ok();
    }
}

impl Session {
    fn count_received(&self, kind: &str) {
        self.node
            .metrics
            .messages_received
            .with_label_values(&[kind])
            .inc();
    }
}

/// What to record about a frame once it is written.
struct Sent {
    kind: &'static str,
    bytes: u64,
    relayed: Option<(u64, bool)>,
}

impl Sent {
    fn of(out: &Outbound) -> Self {
        Self {
            kind: out.kind,
            bytes: u64::try_from(out.text.len()).unwrap_or(u64::MAX),
            relayed: (out.sent_at_us != 0).then_some((out.sent_at_us, out.cross_node)),
        }
    }

    fn record(&self, metrics: &Metrics) {
        metrics.messages_sent.with_label_values(&[self.kind]).inc();
        metrics.sent_bytes.inc_by(self.bytes);
        if let Some((sent_at_us, cross_node)) = self.relayed {
            let path = if cross_node {
                "cross_node"
            } else {
                "same_node"
            };
            let latency = unix_us().saturating_sub(sent_at_us) as f64 / 1e6;
            metrics
                .relay_latency
                .with_label_values(&[path])
                .observe(latency);
        }
    }
}

fn elapsed_micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Relays in a span of its own, one trace per message: the trace follows the
/// message to the receiving node rather than growing with the session.
async fn relay(
    rooms: &crate::rooms::Rooms,
    seat: &Seat,
    to: &str,
    kind: RelayKind,
    frame: String,
    sender: impl FnOnce() -> Sender,
) -> Result<(), Refusal> {
    let span = debug_span!(
        parent: None,
        "relay",
        node = %rooms.node_id(),
        kind = kind.as_str(),
        trace_id = tracing::field::Empty
    );
    telemetry::record_trace_id(&span);
    rooms
        .relay(seat, to, kind, frame, sender)
        .instrument(span)
        .await
}

fn not_joined() -> Refusal {
    Refusal::new(ErrorCode::NotJoined, "join a room first")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Most bytes the future of [`run`] may take. It lives as long as its socket,
    /// idle or not, so its size is part of every session's memory (see "Where an
    /// idle session's memory goes" in docs/benchmarks.md). A change that grows it
    /// past this should box its rarely taken path, as `finish`, joins and the
    /// handling of a message are.
    const SESSION_FUTURE_BOUND: usize = 1536;

    /// The size of what `f` returns, without calling it.
    fn returned_size<A, B, C, D, F>(_: impl FnOnce(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn the_session_future_held_per_socket_stays_small() {
        let size = returned_size(run);
        assert!(
            size <= SESSION_FUTURE_BOUND,
            "the session future is {size} bytes, over the bound of {SESSION_FUTURE_BOUND}"
        );
    }
}
