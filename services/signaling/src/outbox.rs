//! The session outbox as the rest of the node sees it: [`Outbound`], one frame
//! waiting for a socket; [`SessionHandle`], which queues frames into a session's
//! bounded outbox and flips its eviction switch; [`Receiver`], the session's end
//! of it; and [`Eviction`], why a session is told to close.
//!
//! The session owns the receiving end and is the only writer of its socket
//! (`session.rs`); the router and the session's own replies feed the sending end.
//!
//! An idle session holds one outbox for its whole life, so the outbox is one small
//! shared allocation: the queue, the eviction switch and the session's waker. The
//! queue's buffer exists only while frames wait; the session gives it back when
//! it has written everything and goes back to waiting.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use vc_protocol::ServerMessage;

/// One frame waiting for a session's socket. Kept small: a busy outbox holds up
/// to `limits.outbound_queue` of them.
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

/// What a session's outbox shares between its [`SessionHandle`]s and its
/// [`Receiver`].
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the session: a frame was queued, or the switch was flipped. Only
    /// the session waits on it, one wait at a time (see [`Receiver`]).
    wake: Notify,
    /// Most frames queued at once (`limits.outbound_queue`).
    bound: usize,
}

#[derive(Debug, Default)]
struct State {
    /// Frames waiting, oldest first; no buffer while none wait.
    queue: VecDeque<Outbound>,
    /// The eviction switch: the last reason given wins.
    evicted: Option<Eviction>,
    /// The session is gone: frames are dropped.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No code path panics while holding the lock; if one ever did, the queue
        // is still a valid queue.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A new session's outbox holding at most `bound` frames: the handle the router
/// and rooms queue into, and the session's end.
pub fn outbox(bound: usize) -> (SessionHandle, Receiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        wake: Notify::new(),
        bound: bound.max(1),
    });
    let handle = SessionHandle {
        shared: Arc::clone(&shared),
        sent: Arc::new(AtomicU64::new(0)),
    };
    (handle, Receiver { shared })
}

/// What the session's outbox has for it next.
#[derive(Debug)]
pub enum Next {
    /// The session was told to close; this comes before any frame still queued.
    Evicted(Eviction),
    Frame(Outbound),
}

/// The session's end of its outbox. Frames come out in the order they were
/// queued. One task waits on it, one wait at a time: the session's loop or
/// its write, never both.
#[derive(Debug)]
pub struct Receiver {
    shared: Arc<Shared>,
}

impl Receiver {
    /// Waits for the eviction switch or the next frame, the switch first. While
    /// nothing waits, the queue holds no buffer.
    pub async fn next(&self) -> Next {
        loop {
            {
                let mut state = self.shared.lock();
                if let Some(why) = state.evicted {
                    return Next::Evicted(why);
                }
                if let Some(out) = state.queue.pop_front() {
                    return Next::Frame(out);
                }
                if state.queue.capacity() != 0 {
                    state.queue = VecDeque::new();
                }
            }
            // A wake-up given between the check and here is kept as a permit.
            self.shared.wake.notified().await;
        }
    }

    /// Waits until the session is told to close.
    pub async fn evicted(&self) -> Eviction {
        loop {
            if let Some(why) = self.eviction() {
                return why;
            }
            self.shared.wake.notified().await;
        }
    }

    /// The next frame queued, without waiting.
    pub fn try_recv(&self) -> Option<Outbound> {
        self.shared.lock().queue.pop_front()
    }

    /// Why the session was told to close, if it was.
    pub fn eviction(&self) -> Option<Eviction> {
        self.shared.lock().evicted
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        state.queue = VecDeque::new();
    }
}

/// The router's handle on one session: its outbox, its eviction switch, and the
/// highest `seq` of the seat's stream queued for it.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    shared: Arc<Shared>,
    /// Shared with [`HeldSeats`](crate::held_seats::HeldSeats), which writes it
    /// back to Redis after an outage so that the stream's numbering goes on.
    sent: Arc<AtomicU64>,
}

impl SessionHandle {
    /// The same outbox and switch, counting a new seat's stream from zero.
    pub fn renumbered(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
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
        let full = {
            let mut state = self.shared.lock();
            if state.closed {
                // The session is ending; its cleanup will remove it from the router.
                return;
            }
            if state.queue.len() >= self.shared.bound {
                true
            } else {
                state.queue.push_back(out);
                false
            }
        };
        if full {
            self.evict(Eviction::SlowConsumer);
        } else {
            self.shared.wake.notify_one();
        }
    }

    pub fn evict(&self, why: Eviction) {
        self.shared.lock().evicted = Some(why);
        self.shared.wake.notify_one();
    }

    /// Why the session was told to close, if it was.
    pub fn eviction(&self) -> Option<Eviction> {
        self.shared.lock().evicted
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
        let (handle, rx) = outbox(8);
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
        let texts: Vec<String> = std::iter::from_fn(|| rx.try_recv())
            .map(|o| String::from(o.text))
            .collect();
        assert_eq!(
            texts,
            [r#"{"seq":2,"type":"offer","sdp":"x"}"#, r#"{"seq":5}"#]
        );
    }

    fn frame(kind: &'static str) -> Outbound {
        Outbound {
            text: kind.into(),
            kind,
            sent_at_us: 0,
            cross_node: false,
        }
    }

    #[test]
    fn a_full_outbox_evicts_its_session_and_keeps_what_it_had_in_order() {
        let (handle, rx) = outbox(2);
        handle.send(frame("a"));
        handle.renumbered().send(frame("b"));
        assert_eq!(rx.eviction(), None);
        handle.send(frame("c"));
        assert_eq!(handle.eviction(), Some(Eviction::SlowConsumer));
        let kinds: Vec<_> = std::iter::from_fn(|| rx.try_recv())
            .map(|o| o.kind)
            .collect();
        assert_eq!(kinds, ["a", "b"]);
    }

    #[tokio::test]
    async fn the_switch_comes_before_queued_frames_and_the_last_reason_wins() {
        let (handle, rx) = outbox(8);
        handle.send(frame("a"));
        assert!(matches!(rx.next().await, Next::Frame(out) if out.kind == "a"));
        handle.send(frame("b"));
        handle.evict(Eviction::SlowConsumer);
        handle.evict(Eviction::SeatMoved);
        assert!(matches!(
            rx.next().await,
            Next::Evicted(Eviction::SeatMoved)
        ));
        assert_eq!(rx.evicted().await, Eviction::SeatMoved);
    }

    #[tokio::test]
    async fn a_waiting_session_is_woken_and_its_drained_queue_holds_no_buffer() {
        let (handle, rx) = outbox(8);
        for kind in ["a", "b", "c"] {
            handle.send(frame(kind));
        }
        assert!(rx.shared.lock().queue.capacity() > 0);
        let mut kinds = Vec::new();
        for _ in 0..3 {
            if let Next::Frame(out) = rx.next().await {
                kinds.push(out.kind);
            }
        }
        assert_eq!(kinds, ["a", "b", "c"]);
        // Waiting on an empty queue gives its buffer back.
        let waiting = rx.next();
        tokio::pin!(waiting);
        assert!(futures_util::poll!(waiting.as_mut()).is_pending());
        assert_eq!(rx.shared.lock().queue.capacity(), 0);
        // A frame queued while the session waits wakes it.
        let sender = handle.clone();
        tokio::spawn(async move { sender.send(frame("d")) });
        match waiting.await {
            Next::Frame(out) => assert_eq!(out.kind, "d"),
            Next::Evicted(why) => panic!("evicted: {why:?}"),
        }
    }

    #[test]
    fn frames_for_a_session_that_is_gone_are_dropped() {
        let (handle, rx) = outbox(1);
        drop(rx);
        handle.send(frame("a"));
        handle.send(frame("b"));
        assert_eq!(handle.eviction(), None);
        assert!(handle.shared.lock().queue.is_empty());
    }
}
