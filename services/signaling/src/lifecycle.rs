//! The node's life: running, draining, stopping. One watch channel that every
//! session and background task listens to, so that shutdown is a single broadcast.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Interval;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Taking sessions.
    Running,
    /// Not ready, refusing new sessions and joins; sessions are asked to move.
    Draining,
    /// Closing every socket with 1001 and exiting.
    Stopping,
}

/// Waits for the next tick of a periodic background task: true on a tick, false
/// once the node is stopping (or the lifecycle is gone), so that every periodic
/// task ends with the node by the same rule.
pub async fn next_tick(ticker: &mut Interval, phase: &mut watch::Receiver<Phase>) -> bool {
    loop {
        tokio::select! {
            _ = ticker.tick() => return true,
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow() == Phase::Stopping {
                    return false;
                }
            }
        }
    }
}

#[derive(Clone)]
pub struct Lifecycle {
    phase: Arc<watch::Sender<Phase>>,
    sessions: Arc<AtomicUsize>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl Lifecycle {
    pub fn new() -> Self {
        Self {
            phase: Arc::new(watch::channel(Phase::Running).0),
            sessions: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// Moves forward only: a stopping node never goes back to draining.
    pub fn advance(&self, to: Phase) {
        self.phase.send_if_modified(|phase| {
            let forward = matches!(
                (*phase, to),
                (Phase::Running, Phase::Draining | Phase::Stopping)
                    | (Phase::Draining, Phase::Stopping)
            );
            if forward {
                *phase = to;
            }
            forward
        });
    }

    /// Counts a live socket until the guard drops.
    pub fn session_guard(&self) -> SessionGuard {
        self.sessions.fetch_add(1, Ordering::SeqCst);
        SessionGuard {
            sessions: Arc::clone(&self.sessions),
        }
    }

    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::SeqCst)
    }
}

pub struct SessionGuard {
    sessions: Arc<AtomicUsize>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.sessions.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_only_move_forward() {
        let life = Lifecycle::new();
        life.advance(Phase::Draining);
        life.advance(Phase::Running);
        assert_eq!(life.phase(), Phase::Draining);
        life.advance(Phase::Stopping);
        life.advance(Phase::Draining);
        assert_eq!(life.phase(), Phase::Stopping);
    }

    #[test]
    fn guards_count_sessions() {
        let life = Lifecycle::new();
        let a = life.session_guard();
        let b = life.session_guard();
        assert_eq!(life.sessions(), 2);
        drop(a);
        drop(b);
        assert_eq!(life.sessions(), 0);
    }
}
