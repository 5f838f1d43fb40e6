//! The node's life: running, draining, stopping. One watch channel that every
//! session and background task listens to, so that shutdown is a single broadcast;
//! the live-session count, which the drain waits on; and the tracker of the
//! background tasks, which shutdown awaits once they have heard `Stopping`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Interval;
use tokio_util::task::TaskTracker;

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
    /// Live sockets: a watch, so that a drain wakes when the last one goes.
    sessions: Arc<watch::Sender<usize>>,
    tasks: TaskTracker,
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
            sessions: Arc::new(watch::channel(0).0),
            tasks: TaskTracker::new(),
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
        self.sessions.send_modify(|n| *n += 1);
        SessionGuard {
            sessions: Arc::clone(&self.sessions),
        }
    }

    pub fn sessions(&self) -> usize {
        *self.sessions.borrow()
    }

    /// Returns as soon as no session is left, or once `limit` has passed: true
    /// if none is.
    pub async fn sessions_ended_within(&self, limit: Duration) -> bool {
        let mut sessions = self.sessions.subscribe();
        // The lifecycle owns the sender, so the channel cannot close meanwhile.
        let none_left = async move { sessions.wait_for(|n| *n == 0).await.is_ok() };
        tokio::time::timeout(limit, none_left)
            .await
            .unwrap_or(false)
    }

    /// Runs a background task that ends once the phase is `Stopping`, tracked
    /// so that shutdown can await it.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Returns as soon as every task from [`Lifecycle::spawn`] has ended, or
    /// once `limit` has passed: true if all have. Call it once the phase is
    /// `Stopping`, which is what ends them.
    pub async fn tasks_ended_within(&self, limit: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(limit, self.tasks.wait()).await.is_ok()
    }
}

pub struct SessionGuard {
    sessions: Arc<watch::Sender<usize>>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.sessions.send_modify(|n| *n = n.saturating_sub(1));
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

    // On tokio's paused clock, time moves only to the next timer: a wait woken
    // by the last guard shows exactly the time the guard was dropped at, where a
    // polling wait would show the next poll.

    #[tokio::test(start_paused = true)]
    async fn the_wait_for_sessions_ends_when_the_last_one_goes() {
        let life = Lifecycle::new();
        let (a, b) = (life.session_guard(), life.session_guard());
        let started = tokio::time::Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            drop(a);
            tokio::time::sleep(Duration::from_millis(837)).await;
            drop(b);
        });
        assert!(life.sessions_ended_within(Duration::from_secs(30)).await);
        assert_eq!(started.elapsed(), Duration::from_millis(1237));
        assert_eq!(life.sessions(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_for_sessions_returns_at_once_when_there_are_none() {
        let life = Lifecycle::new();
        drop(life.session_guard());
        let started = tokio::time::Instant::now();
        assert!(life.sessions_ended_within(Duration::from_secs(30)).await);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_for_sessions_gives_up_at_its_limit() {
        let life = Lifecycle::new();
        let _stays = life.session_guard();
        let started = tokio::time::Instant::now();
        assert!(!life.sessions_ended_within(Duration::from_secs(30)).await);
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn tracked_tasks_are_awaited_until_they_hear_stopping() {
        let life = Lifecycle::new();
        for _ in 0..3 {
            let mut phase = life.subscribe();
            life.spawn(async move {
                phase.wait_for(|p| *p == Phase::Stopping).await.ok();
            });
        }
        let started = tokio::time::Instant::now();
        assert!(!life.tasks_ended_within(Duration::from_secs(5)).await);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        life.advance(Phase::Stopping);
        assert!(life.tasks_ended_within(Duration::from_secs(5)).await);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }
}
