//! `SeatTimers`: the one task per node that frees seats later.
//!
//! Two kinds of seat wait here, in one `DelayQueue` the task owns: a parked seat,
//! freed when its resume window passes unless a resume or a leave on this node
//! cancels its timer first; and a seat whose freeing failed (presence did not
//! answer), tried again every [`FREE_RETRY`] until presence answers. However
//! many seats wait, they are entries of one queue, not sleeping tasks of their
//! own, and they end with the node: the task stops on the lifecycle's
//! `Stopping` broadcast, and shutdown awaits it through the lifecycle's tracker.
//!
//! The frees themselves run side by side in a `JoinSet` the task owns, so that a
//! slow presence call holds up only its own seat. One still running when the
//! node stops is let finish: an `EXPIRE` that ran must still be announced.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::time::{delay_queue, DelayQueue};
use tracing::{debug, error};
use vc_protocol::{LeaveReason, RoomName};

use crate::lifecycle::{Lifecycle, Phase};
use crate::rooms::Seat;
use crate::vocabulary::{ConnId, PeerId};

/// How long a presence call that frees a seat waits before it is tried again.
pub const FREE_RETRY: Duration = Duration::from_secs(1);

/// Most seats that wait at once for presence to come back and free them, so that
/// a long outage cannot grow the node's memory without bound.
pub const MAX_PENDING_FREES: usize = 10_000;

/// The longest a parked seat waits: the queue's wheel panics on a deadline more
/// than about two years past its own time, which may lag the clock by as much as
/// the longest wait it holds.
const LONGEST_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// How a seat is freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freeing {
    /// `LEAVE`, then `peer-left` with this reason.
    Leave(LeaveReason),
    /// `EXPIRE` of a parked seat, then `peer-left` with the reason it was parked with.
    Expire,
}

/// Frees a seat in presence and tells its room: true once presence has answered.
pub type Free = Arc<dyn Fn(Seat, Freeing) -> BoxFuture<'static, bool> + Send + Sync>;

/// A parked seat's timer, found by the connection that parked it: a late leave
/// of an older socket of the same peer must not cancel a newer socket's timer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TimerKey {
    room: RoomName,
    peer: PeerId,
    conn: ConnId,
}

impl TimerKey {
    fn new(room: &RoomName, peer: &PeerId, conn: &ConnId) -> Self {
        Self {
            room: room.clone(),
            peer: peer.clone(),
            conn: conn.clone(),
        }
    }

    fn of(seat: &Seat) -> Self {
        Self::new(&seat.room, &seat.peer, &seat.conn)
    }
}

enum Command {
    Park {
        seat: Seat,
        freeing: Freeing,
        at: Instant,
    },
    Cancel(TimerKey),
    Retry {
        seat: Seat,
        freeing: Freeing,
    },
}

/// The handle `Rooms` keeps: what it asks of the task.
pub struct SeatTimers {
    commands: mpsc::UnboundedSender<Command>,
    waiting: watch::Receiver<usize>,
}

impl SeatTimers {
    /// Starts the task on `lifecycle`'s tracker; `free` is what it runs when a
    /// seat is due.
    pub fn start(lifecycle: &Lifecycle, free: Free) -> Self {
        // Unbounded: a command comes from the end of a session or from a failed
        // free, both bounded by the node's sessions, and a sender never waits.
        let (commands, received) = mpsc::unbounded_channel();
        let (counted, waiting) = watch::channel(0);
        let owner = Owner {
            free,
            queue: DelayQueue::new(),
            parked: HashMap::new(),
            retrying: 0,
            running: JoinSet::new(),
            waiting: counted,
        };
        lifecycle.spawn(owner.run(received, lifecycle.subscribe()));
        Self { commands, waiting }
    }

    /// Frees `seat` with `freeing` once `window` has passed, unless
    /// [`SeatTimers::cancel`] comes first.
    pub fn park(&self, seat: Seat, freeing: Freeing, window: Duration) {
        let at = Instant::now() + window.min(LONGEST_WAIT);
        self.send(Command::Park { seat, freeing, at });
    }

    /// Drops the timer that the park of `conn` set for the seat, if it is still
    /// waiting: the seat was resumed from that connection, or left.
    pub fn cancel(&self, room: &RoomName, peer: &PeerId, conn: &ConnId) {
        self.send(Command::Cancel(TimerKey::new(room, peer, conn)));
    }

    /// Tries freeing `seat` again every [`FREE_RETRY`] until presence answers,
    /// for at most [`MAX_PENDING_FREES`] seats at a time.
    pub fn retry(&self, seat: Seat, freeing: Freeing) {
        self.send(Command::Retry { seat, freeing });
    }

    /// How many seats wait in the queue (parked, or for their next try), as the
    /// task last counted them; frees that are running are not counted.
    pub fn waiting(&self) -> watch::Receiver<usize> {
        self.waiting.clone()
    }

    fn send(&self, command: Command) {
        if self.commands.send(command).is_err() {
            // The task stopped with the node, whose process is about to exit:
            // what it would have freed is freed by the other nodes' sweep.
            debug!("the seat timers have stopped; nothing more is freed later");
        }
    }
}

/// A seat waiting in the queue, or being freed.
struct Due {
    seat: Seat,
    freeing: Freeing,
    /// A try after a failed one, counted in [`Owner::retrying`].
    retry: bool,
}

/// The task's state: only the task touches it.
struct Owner {
    free: Free,
    queue: DelayQueue<Due>,
    /// The queue entry of each parked seat's timer.
    parked: HashMap<TimerKey, delay_queue::Key>,
    /// Seats between a failed free and a successful one.
    retrying: usize,
    running: JoinSet<(Due, bool)>,
    waiting: watch::Sender<usize>,
}

impl Owner {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut phase: watch::Receiver<Phase>,
    ) {
        let stopping = |phase: Phase| phase == Phase::Stopping;
        if stopping(*phase.borrow_and_update()) {
            return;
        }
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.apply(command),
                    // The room service is gone: nothing can be parked again.
                    None => break,
                },
                Some(expired) = self.queue.next() => self.start(expired),
                Some(done) = self.running.join_next() => self.finished(done),
                changed = phase.changed() => {
                    if changed.is_err() || stopping(*phase.borrow()) {
                        break;
                    }
                }
            }
            self.waiting.send_replace(self.queue.len());
        }
        debug!(
            waiting = self.queue.len(),
            running = self.running.len(),
            "seat timers stopping"
        );
        while self.running.join_next().await.is_some() {}
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Park { seat, freeing, at } => {
                let key = TimerKey::of(&seat);
                self.cancel(&key);
                self.renew_if_idle();
                let entry = self.queue.insert_at(
                    Due {
                        seat,
                        freeing,
                        retry: false,
                    },
                    at,
                );
                self.parked.insert(key, entry);
            }
            Command::Cancel(key) => self.cancel(&key),
            Command::Retry { seat, freeing } => self.first_retry(seat, freeing),
        }
    }

    fn cancel(&mut self, key: &TimerKey) {
        if let Some(entry) = self.parked.remove(key) {
            self.queue.try_remove(&entry);
        }
    }

    /// A queue that stood empty starts over: its wheel only moves on while it
    /// holds entries, and a new one must not land too far past its old time.
    fn renew_if_idle(&mut self) {
        if self.queue.is_empty() {
            self.queue = DelayQueue::new();
        }
    }

    fn start(&mut self, expired: delay_queue::Expired<Due>) {
        let entry = expired.key();
        let due = expired.into_inner();
        if !due.retry {
            let key = TimerKey::of(&due.seat);
            // Entry keys are reused once expired: forget this one now.
            if self.parked.get(&key) == Some(&entry) {
                self.parked.remove(&key);
            }
        }
        let free = Arc::clone(&self.free);
        self.running.spawn(async move {
            let freed = free(due.seat.clone(), due.freeing).await;
            (due, freed)
        });
    }

    fn finished(&mut self, done: Result<(Due, bool), JoinError>) {
        let (due, freed) = match done {
            Ok(done) => done,
            Err(e) => {
                error!(error = %e, "freeing a seat did not finish");
                return;
            }
        };
        match (freed, due.retry) {
            (true, false) => {}
            (true, true) => self.retrying = self.retrying.saturating_sub(1),
            (false, false) => self.first_retry(due.seat, due.freeing),
            (false, true) => self.again(due),
        }
    }

    fn first_retry(&mut self, seat: Seat, freeing: Freeing) {
        if self.retrying >= MAX_PENDING_FREES {
            error!(room = %seat.room, "too many seats waiting to be freed: this one stays until the node restarts");
            return;
        }
        self.retrying += 1;
        self.again(Due {
            seat,
            freeing,
            retry: true,
        });
    }

    fn again(&mut self, due: Due) {
        self.renew_if_idle();
        self.queue.insert(due, FREE_RETRY);
    }
}
