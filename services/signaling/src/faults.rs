//! Faults on demand, for the in-process fakes of the bus and presence
//! ([`crate::bus::fake`], [`crate::presence::fake`]).
//!
//! A test names an operation and says what its next call does: fail (without
//! running, or after running, like a command that timed out once Redis had run
//! it), wait a while, or stop at a [`Gate`] that the test opens when it chooses.
//! Gates are what make an interleaving happen on every run instead of by luck:
//! the test waits until a call stands at the gate, does what has to happen
//! meanwhile, then opens it. Every call is also logged, so that a test can check
//! the order in which the room core called its parts.
//!
//! Faults are queued per operation and each is used by one call, in order; calls
//! with nothing queued run untouched.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// A call a fake can be told to disturb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    BusSubscribe,
    BusUnsubscribe,
    BusPublish,
    BusReplay,
    BusTrim,
    PresenceJoin,
    PresenceLeave,
    PresencePark,
    PresenceResume,
    PresenceExpire,
    PresenceSeat,
    PresenceMembers,
    PresenceCount,
    PresenceSetCallState,
}

/// What one call does instead of running plainly.
#[derive(Debug, Clone)]
enum Fault {
    /// Returns an error; the call does not run.
    Fail,
    /// Runs, then returns an error anyway: the outcome is unknown to the caller.
    FailAfter,
    /// Waits, then runs.
    Delay(Duration),
    /// Waits at the gate until it is opened, then runs.
    Hold(Gate),
    /// Runs, then waits at the gate before returning.
    HoldAfter(Gate),
    /// Waits at the gate until it is opened, then fails without running.
    HoldThenFail(Gate),
}

/// Where a held call waits until the test lets it go.
#[derive(Debug, Clone)]
pub struct Gate {
    reached: Arc<watch::Sender<bool>>,
    open: Arc<watch::Sender<bool>>,
}

impl Gate {
    fn new() -> Self {
        Self {
            reached: Arc::new(watch::Sender::new(false)),
            open: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Returns once a call stands at the gate (at once if one already passed).
    pub async fn reached(&self) {
        // The gate owns the sender, so the channel cannot close while waiting.
        self.reached.subscribe().wait_for(|r| *r).await.ok();
    }

    /// Lets the held call go on.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    async fn pass(&self) {
        self.reached.send_replace(true);
        self.open.subscribe().wait_for(|o| *o).await.ok();
    }
}

#[derive(Debug, Default)]
struct PlanState {
    queued: HashMap<Op, VecDeque<Fault>>,
    calls: Vec<Op>,
    bus_down: bool,
}

/// The faults a test has planned for the fakes that share this plan, and the log
/// of their calls.
#[derive(Debug, Default)]
pub struct FaultPlan {
    state: Mutex<PlanState>,
}

impl FaultPlan {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PlanState> {
        // Test support: a test that panicked holding the lock has failed already.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn queue(&self, op: Op, fault: Fault) {
        self.lock().queued.entry(op).or_default().push_back(fault);
    }

    /// Takes the bus away (it reports itself disconnected and refuses every
    /// publish, as the Redis bus does while Redis is away) or brings it back.
    pub fn set_bus_down(&self, down: bool) {
        self.lock().bus_down = down;
    }

    pub fn bus_is_down(&self) -> bool {
        self.lock().bus_down
    }

    /// The next call of `op` fails without running.
    pub fn fail_next(&self, op: Op) {
        self.queue(op, Fault::Fail);
    }

    /// The next call of `op` runs, then reports failure.
    pub fn fail_next_after_running(&self, op: Op) {
        self.queue(op, Fault::FailAfter);
    }

    /// The next call of `op` waits `delay` before it runs.
    pub fn delay_next(&self, op: Op, delay: Duration) {
        self.queue(op, Fault::Delay(delay));
    }

    /// The next call of `op` waits at the returned gate before it runs.
    pub fn hold_next(&self, op: Op) -> Gate {
        let gate = Gate::new();
        self.queue(op, Fault::Hold(gate.clone()));
        gate
    }

    /// The next call of `op` runs, then waits at the returned gate before it
    /// returns.
    pub fn hold_next_after_running(&self, op: Op) -> Gate {
        let gate = Gate::new();
        self.queue(op, Fault::HoldAfter(gate.clone()));
        gate
    }

    /// The next call of `op` waits at the returned gate, then fails without
    /// running: what happens meanwhile meets a call still in flight.
    pub fn hold_next_then_fail(&self, op: Op) -> Gate {
        let gate = Gate::new();
        self.queue(op, Fault::HoldThenFail(gate.clone()));
        gate
    }

    /// Every call so far, in the order the fakes received them.
    pub fn calls(&self) -> Vec<Op> {
        self.lock().calls.clone()
    }

    /// How many calls of `op` there were.
    pub fn count(&self, op: Op) -> usize {
        self.lock().calls.iter().filter(|c| **c == op).count()
    }

    /// Runs one call of `op` under the plan; `failure` makes the error an
    /// injected failure returns.
    pub async fn run<T, E>(
        &self,
        op: Op,
        failure: impl FnOnce() -> E,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let fault = {
            let mut state = self.lock();
            state.calls.push(op);
            state.queued.get_mut(&op).and_then(VecDeque::pop_front)
        };
        match fault {
            None => call.await,
            Some(Fault::Fail) => Err(failure()),
            Some(Fault::FailAfter) => {
                call.await.ok();
                Err(failure())
            }
            Some(Fault::Delay(delay)) => {
                tokio::time::sleep(delay).await;
                call.await
            }
            Some(Fault::Hold(gate)) => {
                gate.pass().await;
                call.await
            }
            Some(Fault::HoldAfter(gate)) => {
                let result = call.await;
                gate.pass().await;
                result
            }
            Some(Fault::HoldThenFail(gate)) => {
                gate.pass().await;
                Err(failure())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ok(n: u32) -> Result<u32, &'static str> {
        Ok(n)
    }

    #[tokio::test]
    async fn faults_apply_to_one_call_each_in_order() {
        let plan = FaultPlan::new();
        plan.fail_next(Op::BusPublish);
        plan.delay_next(Op::BusPublish, Duration::from_millis(1));
        assert_eq!(plan.run(Op::BusPublish, || "no", ok(1)).await, Err("no"));
        assert_eq!(plan.run(Op::BusPublish, || "no", ok(2)).await, Ok(2));
        assert_eq!(plan.run(Op::BusPublish, || "no", ok(3)).await, Ok(3));
        assert_eq!(plan.run(Op::PresenceJoin, || "no", ok(4)).await, Ok(4));
        assert_eq!(plan.count(Op::BusPublish), 3);
        assert_eq!(
            plan.calls(),
            [
                Op::BusPublish,
                Op::BusPublish,
                Op::BusPublish,
                Op::PresenceJoin
            ]
        );
    }

    #[tokio::test]
    async fn a_held_call_waits_for_its_gate() {
        let plan = FaultPlan::new();
        let gate = plan.hold_next(Op::PresenceLeave);
        let ran = Arc::new(Mutex::new(false));
        let task = {
            let (plan, ran) = (Arc::clone(&plan), Arc::clone(&ran));
            tokio::spawn(async move {
                plan.run(Op::PresenceLeave, || "no", async {
                    *ran.lock().unwrap_or_else(|p| p.into_inner()) = true;
                    Ok::<_, &str>(())
                })
                .await
            })
        };
        gate.reached().await;
        assert!(!*ran.lock().unwrap_or_else(|p| p.into_inner()));
        gate.open();
        assert_eq!(task.await.ok(), Some(Ok(())));
        assert!(*ran.lock().unwrap_or_else(|p| p.into_inner()));
    }
}
