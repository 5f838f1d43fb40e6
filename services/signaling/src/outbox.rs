//! The session outbox as the rest of the node sees it: [`Outbound`], one frame
//! waiting for a socket; [`SessionHandle`], which queues frames into a session's
//! bounded outbox and flips its eviction switch; and [`Eviction`], why a
//! session is told to close.
//!
//! The session owns the receiving end and is the only writer of its socket
//! (`session.rs`); the router and the session's own replies feed the sending end.

use tokio::sync::{mpsc, watch};
use vc_protocol::ServerMessage;

/// One frame waiting for a session's socket. Kept small: every session holds a
/// block of these in its outbox for its whole life.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub text: Box<str>,
    /// The message `type`, for metrics.
    pub kind: &'static str,
    /// When the sender's node published it (wall-clock µs) for relayed
    /// messages; 0 for everything else.
    pub sent_at_us: u64,
    /// Whether it was published by another node, for the relay latency path.
    pub cross_node: bool,
}

impl Outbound {
    pub fn message(msg: &ServerMessage) -> Self {
        Self {
            text: msg.to_json().into_boxed_str(),
            kind: msg.type_name(),
            sent_at_us: 0,
            cross_node: false,
        }
    }
}

/// Why the router tells a session to close its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Its outbox is full: it does not read fast enough.
    SlowConsumer,
    /// Its seat was resumed by another connection.
    SeatMoved,
}

/// The router's handle on one session: its outbox and its eviction switch.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    outbox: mpsc::Sender<Outbound>,
    evict: watch::Sender<Option<Eviction>>,
}

impl SessionHandle {
    pub fn new(outbox: mpsc::Sender<Outbound>, evict: watch::Sender<Option<Eviction>>) -> Self {
        Self { outbox, evict }
    }

    /// Queues a frame; a full outbox evicts the session rather than drop the frame.
    pub fn send(&self, out: Outbound) {
        match self.outbox.try_send(out) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.evict(Eviction::SlowConsumer),
            // The session is ending; its cleanup will remove it from the router.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    pub fn evict(&self, why: Eviction) {
        self.evict.send_replace(Some(why));
    }
}
