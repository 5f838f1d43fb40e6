//! The outage queue: what this node's sessions send to other nodes while the bus
//! is down, kept in order and published when it is back, instead of refused.
//!
//! [`Publisher`](crate::publisher::Publisher) puts an envelope here when the bus
//! cannot take it now (it is disconnected, or the Redis resync has not finished)
//! or when earlier ones still wait, so that a sender's messages reach the bus
//! in the order it sent them. One task, [`OutageQueue::start`]'s, owns the
//! flush: it publishes the oldest entry once the bus is connected again, and
//! only then the next one. The queue is bounded by count and bytes; an entry
//! that does not fit is refused at once, and one that waited longer than
//! `outage.max_wait` is dropped and its sender told with `unavailable`, naming
//! its request id. Either way the client library sends it again or the page
//! says it was not delivered.
//!
//! A relay whose target has no seat in Redis yet (Redis came back empty and
//! the target's node has not written its seats back) waits at the head too, for
//! as long as that node may take to reconnect (twice
//! [`RedisSettings::max_backoff`] and 3 s, counted from when this node's bus
//! came back), then is dropped the same way: the peer is gone.
//!
//! [`RedisSettings::max_backoff`]: crate::config::RedisSettings::max_backoff

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tracing::{info, warn};
use vc_protocol::{ErrorCode, RequestId, ServerMessage};

use crate::bus::{Bus, BusError};
use crate::config::OutageSettings;
use crate::envelope::Envelope;
use crate::lifecycle::{Lifecycle, Phase};
use crate::metrics::Metrics;
use crate::outbox::{Outbound, SessionHandle};

/// How often the flush looks again while the bus is away or the head waits for
/// its target's seat: short next to an outage, long next to a Redis round trip.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// Who sent a queued message, to tell if it is dropped.
#[derive(Debug, Clone)]
pub struct Sender {
    pub handle: SessionHandle,
    pub id: Option<RequestId>,
    /// The message type, for the refusal's text.
    pub what: &'static str,
}

/// One envelope waiting for the bus, with the chat entry to keep with it.
#[derive(Debug)]
pub struct Queued {
    pub envelope: Envelope,
    pub kept: Option<String>,
    pub sender: Sender,
    since: Instant,
    bytes: usize,
}

impl Queued {
    pub fn new(envelope: Envelope, kept: Option<String>, sender: Sender) -> Self {
        let bytes = envelope.event.payload_len()
            + kept.as_ref().map_or(0, String::len)
            + std::mem::size_of::<Self>();
        Self {
            envelope,
            kept,
            sender,
            since: Instant::now(),
            bytes,
        }
    }
}

/// Why the queue did not take an envelope.
#[derive(Debug, thiserror::Error)]
#[error("the outage queue is full ({messages} messages, {bytes} bytes)")]
pub struct QueueFull {
    pub messages: usize,
    pub bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    entries: VecDeque<Queued>,
    bytes: usize,
    /// The flush has taken the head out and is publishing it: later envelopes
    /// must still queue behind it.
    in_flight: bool,
}

pub struct OutageQueue {
    bus: Arc<dyn Bus>,
    settings: OutageSettings,
    /// How long a relay waits for its target's seat after the bus is back.
    seat_grace: Duration,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
    /// Entries waiting plus the one in flight, as the last change of `state`
    /// left them: read on every publish, so without the lock.
    waiting: AtomicUsize,
    wake: Notify,
}

/// What became of the head of the queue.
enum Flushed {
    Done,
    /// Not taken now; try again after [`RETRY_EVERY`].
    Later(Queued),
    /// Dropped, for this reason (a metric label).
    Dropped(Queued, &'static str),
}

impl OutageQueue {
    /// The queue over `bus`, with its flush task running until the node stops;
    /// then whatever still waits is dropped and its senders told.
    pub fn start(
        bus: Arc<dyn Bus>,
        settings: OutageSettings,
        seat_grace: Duration,
        metrics: Arc<Metrics>,
        lifecycle: &Lifecycle,
    ) -> Arc<Self> {
        let queue = Arc::new(Self {
            bus,
            settings,
            seat_grace,
            metrics,
            state: Mutex::new(State::default()),
            waiting: AtomicUsize::new(0),
            wake: Notify::new(),
        });
        lifecycle.spawn(Arc::clone(&queue).flush(lifecycle.subscribe()));
        queue
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent before it could
        // panic, so a poisoned lock is safe to keep using.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the state under the lock, and publishes how much waits.
    fn change<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut state = self.lock();
        let result = f(&mut state);
        let waiting = state.entries.len() + usize::from(state.in_flight);
        self.waiting.store(waiting, Ordering::Release);
        drop(state);
        self.metrics.outage_queued.set(gauge(waiting));
        result
    }

    /// Whether an envelope must queue rather than go to the bus now: the bus is
    /// away, or earlier ones still wait (a sender's order must hold).
    pub fn must_queue(&self) -> bool {
        if !self.bus.is_connected() {
            return true;
        }
        self.waiting.load(Ordering::Acquire) > 0
    }

    /// Whether the queue keeps anything at all (`outage.queue_messages` > 0).
    pub fn is_enabled(&self) -> bool {
        self.settings.queue_messages > 0
    }

    /// Takes `queued` at the tail, or refuses it when it would pass a bound.
    pub fn push(&self, queued: Queued) -> Result<(), QueueFull> {
        let (messages, bytes) = (self.settings.queue_messages, self.settings.queue_bytes);
        let taken = self.change(|state| {
            if state.entries.len() >= messages || state.bytes + queued.bytes > bytes {
                return false;
            }
            state.bytes += queued.bytes;
            state.entries.push_back(queued);
            true
        });
        if !taken {
            self.count_dropped("full");
            return Err(QueueFull { messages, bytes });
        }
        self.wake.notify_one();
        Ok(())
    }

    /// The flush task: publishes the oldest entry whenever the bus takes it,
    /// one at a time, so that the order of the queue is the order on the bus.
    async fn flush(self: Arc<Self>, mut phase: watch::Receiver<Phase>) {
        let mut connected_since: Option<Instant> = None;
        loop {
            let head = self.change(|state| {
                let head = state.entries.pop_front();
                if let Some(head) = &head {
                    state.bytes -= head.bytes;
                    state.in_flight = true;
                }
                head
            });
            let Some(head) = head else {
                tokio::select! {
                    () = self.wake.notified() => continue,
                    () = stopping(&mut phase) => break,
                }
            };
            if self.bus.is_connected() {
                connected_since.get_or_insert_with(Instant::now);
            } else {
                connected_since = None;
            }
            let outcome = self.publish(head, connected_since).await;
            match outcome {
                Flushed::Done => self.change(|state| state.in_flight = false),
                Flushed::Dropped(queued, reason) => {
                    self.change(|state| state.in_flight = false);
                    self.refuse(&queued, reason);
                }
                Flushed::Later(queued) => {
                    self.change(|state| {
                        state.bytes += queued.bytes;
                        state.entries.push_front(queued);
                        state.in_flight = false;
                    });
                    self.expire();
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_EVERY) => {}
                        () = stopping(&mut phase) => break,
                    }
                }
            }
        }
        let left: Vec<Queued> = self.change(|state| {
            state.bytes = 0;
            state.entries.drain(..).collect()
        });
        if !left.is_empty() {
            info!(
                messages = left.len(),
                "node stopping: queued messages dropped"
            );
        }
        for queued in &left {
            self.refuse(queued, "shutdown");
        }
    }

    async fn publish(&self, queued: Queued, connected_since: Option<Instant>) -> Flushed {
        if queued.since.elapsed() > self.settings.max_wait {
            return Flushed::Dropped(queued, "expired");
        }
        let Some(connected_since) = connected_since else {
            return Flushed::Later(queued);
        };
        let result = match &queued.kept {
            Some(entry) => self.bus.publish_kept(&queued.envelope, entry).await,
            None => self.bus.publish(&queued.envelope).await,
        };
        match result {
            Ok(()) => {
                self.metrics.bus_published.inc();
                self.metrics.outage_flushed.inc();
                Flushed::Done
            }
            Err(BusError::NoSeat) if connected_since.elapsed() > self.seat_grace => {
                Flushed::Dropped(queued, "gone")
            }
            Err(BusError::NoSeat | BusError::Disconnected) => Flushed::Later(queued),
            // The command may or may not have run (a timeout): tried again, so a
            // receiver may get it twice, each copy with its own `seq`.
            Err(e) => {
                warn!(room = %queued.envelope.room, error = %e, "publishing a queued message failed; trying again");
                self.metrics
                    .bus_errors
                    .with_label_values(&["publish"])
                    .inc();
                Flushed::Later(queued)
            }
        }
    }

    /// Drops what waited longer than `outage.max_wait`, telling the senders.
    fn expire(&self) {
        let max_wait = self.settings.max_wait;
        let expired: Vec<Queued> = self.change(|state| {
            let (keep, expired): (VecDeque<Queued>, VecDeque<Queued>) = state
                .entries
                .drain(..)
                .partition(|queued| queued.since.elapsed() <= max_wait);
            state.entries = keep;
            state.bytes = state.entries.iter().map(|queued| queued.bytes).sum();
            expired.into()
        });
        for queued in &expired {
            self.refuse(queued, "expired");
        }
    }

    /// Tells the sender that `queued` was not delivered, naming its request.
    fn refuse(&self, queued: &Queued, reason: &'static str) {
        self.count_dropped(reason);
        let message = match reason {
            "gone" => format!(
                "{}: the peer it was for has no seat any more; not delivered",
                queued.sender.what
            ),
            "shutdown" => format!(
                "{}: the node is shutting down; not delivered",
                queued.sender.what
            ),
            _ => format!(
                "{}: the cluster bus was away for longer than {} s; not delivered",
                queued.sender.what,
                self.settings.max_wait.as_secs()
            ),
        };
        queued
            .sender
            .handle
            .send(Outbound::message(&ServerMessage::Error {
                code: ErrorCode::Unavailable,
                message,
                id: queued.sender.id.clone(),
            }));
    }

    fn count_dropped(&self, reason: &str) {
        self.metrics
            .outage_dropped
            .with_label_values(&[reason])
            .inc();
    }
}

/// Resolves once the node is stopping (or its lifecycle is gone).
async fn stopping(phase: &mut watch::Receiver<Phase>) {
    while *phase.borrow_and_update() != Phase::Stopping {
        if phase.changed().await.is_err() {
            return;
        }
    }
}

fn gauge(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
}
