//! The session outbox as the rest of the node sees it: [`Outbound`], one frame
//! waiting for a socket; [`SessionHandle`], which queues frames into a session's
//! bounded outbox and flips its eviction switch; and [`Eviction`], why a
//! session is told to close.
//!
//! The session owns the receiving end and is the only writer of its socket
//! (`session.rs`); the router and the session's own replies feed the sending end.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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

/// `frame` with `"seq":N` as its first field.
fn numbered_text(seq: u64, frame: &str) -> Box<str> {
    let rest = frame.get(1..).unwrap_or("}");
    let mut text = String::with_capacity(frame.len() + 24);
    // Writing into a String cannot fail.
    let _ = write!(text, "{{\"seq\":{seq}");
    if !rest.starts_with('}') {
        text.push(',');
    }
    text.push_str(rest);
    text.into_boxed_str()
}

/// Why the router tells a session to close its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Its outbox is full: it does not read fast enough.
    SlowConsumer,
    /// Its seat was resumed by another connection.
    SeatMoved,
}

/// The router's handle on one session: its outbox, its eviction switch, and the
/// highest `seq` of the seat's stream queued for it.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    outbox: mpsc::Sender<Outbound>,
    evict: watch::Sender<Option<Eviction>>,
    /// Shared with [`HeldSeats`](crate::held_seats::HeldSeats), which writes it
    /// back to Redis after an outage so that the stream's numbering goes on.
    sent: Arc<AtomicU64>,
}

impl SessionHandle {
    pub fn new(outbox: mpsc::Sender<Outbound>, evict: watch::Sender<Option<Eviction>>) -> Self {
        Self {
            outbox,
            evict,
            sent: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The same outbox and switch, counting a new seat's stream from zero.
    pub fn renumbered(&self) -> Self {
        Self {
            outbox: self.outbox.clone(),
            evict: self.evict.clone(),
            sent: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The highest `seq` queued for this session.
    pub fn sent_seq(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// The count behind [`SessionHandle::sent_seq`], to read after the session
    /// is gone.
    pub fn sent_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.sent)
    }

    /// The client has processed everything up to `seq` already (a resume's
    /// `lastSeq`): frames numbered up to it are not queued again.
    pub fn start_at(&self, seq: u64) {
        self.sent.fetch_max(seq, Ordering::Relaxed);
    }

    /// Queues a frame numbered `seq` on the seat's stream, with the number as its
    /// first field (`{"seq":N,` then the frame after its `{`), unless this
    /// session was queued that number or a higher one already: a frame that
    /// came by the replay and by the bus goes out once. False when dropped.
    pub fn send_numbered(&self, seq: u64, out: Outbound) -> bool {
        if self.sent.fetch_max(seq, Ordering::Relaxed) >= seq {
            return false;
        }
        self.send(Outbound {
            text: numbered_text(seq, &out.text),
            ..out
        });
        true
    }

    /// [`SessionHandle::send_numbered`] straight from a frame's text, for the
    /// relay path: the numbered text is the only copy made.
    pub fn send_numbered_frame(
        &self,
        seq: u64,
        frame: &str,
        kind: &'static str,
        sent_at_us: u64,
        cross_node: bool,
    ) -> bool {
        if self.sent.fetch_max(seq, Ordering::Relaxed) >= seq {
            return false;
        }
        self.send(Outbound {
            text: numbered_text(seq, frame),
            kind,
            sent_at_us,
            cross_node,
        });
        true
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

/// The highest `seq` a client acknowledged (`ack`, piggybacked on any message).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Acknowledged(u64);

impl Acknowledged {
    /// From a resume: the client processed everything up to `seq`.
    pub fn upto(seq: u64) -> Self {
        Self(seq)
    }

    /// Takes an acknowledgement, cumulative: one no higher than the last, or
    /// higher than `sent` (anything the seat was sent), is ignored. True when it
    /// moved.
    pub fn take(&mut self, ack: u64, sent: u64) -> bool {
        if ack > self.0 && ack <= sent {
            self.0 = ack;
            return true;
        }
        false
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_only_move_forward_and_never_past_what_was_sent() {
        let mut acked = Acknowledged::default();
        assert!(acked.take(3, 5));
        // The same again, or an older one arriving late: nothing changes.
        assert!(!acked.take(3, 5));
        assert!(!acked.take(2, 5));
        // Higher than anything sent: a confused client, ignored.
        assert!(!acked.take(9, 5));
        assert_eq!(acked.get(), 3);
        assert!(acked.take(5, 5));
        assert_eq!(acked, Acknowledged::upto(5));
    }

    #[test]
    fn numbered_frames_carry_their_seq_first_and_go_out_once() {
        let (tx, mut rx) = mpsc::channel(8);
        let (etx, _erx) = watch::channel(None);
        let handle = SessionHandle::new(tx, etx);
        let frame = |text: &str| Outbound {
            text: text.into(),
            kind: "offer",
            sent_at_us: 0,
            cross_node: false,
        };
        assert!(handle.send_numbered(2, frame(r#"{"type":"offer","sdp":"x"}"#)));
        assert!(!handle.send_numbered(2, frame(r#"{"type":"offer"}"#)));
        assert!(!handle.send_numbered(1, frame(r#"{"type":"offer"}"#)));
        handle.start_at(4);
        assert!(!handle.send_numbered(4, frame("{}")));
        assert!(handle.send_numbered(5, frame("{}")));
        assert_eq!(handle.sent_seq(), 5);
        let texts: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|o| String::from(o.text))
            .collect();
        assert_eq!(
            texts,
            [r#"{"seq":2,"type":"offer","sdp":"x"}"#, r#"{"seq":5}"#]
        );
    }
}
