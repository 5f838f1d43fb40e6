//! `FakeBus`: the in-process bus for tests, with faults, several nodes and
//! envelopes held in transit.
//!
//! Nodes attach their sinks (their routers) to one [`BusHub`]. Like Redis
//! pub/sub, a publish reaches the sinks of the nodes subscribed to the room at
//! that moment, publisher included, in publish order. Unlike the in-process bus of a single
//! node, subscriptions are counted per node and room, so a test sees what the
//! room core left subscribed. The hub records every envelope published, and can
//! hold envelopes instead of delivering them, so that a test releases them later
//! and in another order (messages in flight from different nodes). Each node's
//! bus also obeys that node's [`FaultPlan`], and like the Redis bus it subscribes
//! and unsubscribes each room under that room's own lock ([`RoomLocks`]), so
//! that a call a test holds at a gate holds up its own room only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use vc_protocol::RoomName;

use super::memory::{MemoryHistory, MemoryStreams};
use super::room_locks::RoomLocks;
use super::{Bus, BusError, SeatLog};
use crate::envelope::{Envelope, EnvelopeSink};
use crate::faults::{FaultPlan, Op};
use crate::vocabulary::{NodeId, PeerId};

/// An envelope published while the hub was holding, with the nodes that were
/// subscribed to its room when it was published.
#[derive(Debug, Clone)]
pub struct Held {
    pub envelope: Envelope,
    recipients: Vec<NodeId>,
}

#[derive(Default)]
struct HubState {
    sinks: HashMap<NodeId, Arc<dyn EnvelopeSink>>,
    /// (node, room) → subscriptions not yet given back.
    subscriptions: HashMap<(NodeId, RoomName), usize>,
    published: Vec<Envelope>,
    /// Unsubscribes with no subscription left to give back: a room core bug.
    unbalanced: usize,
    holding: bool,
    held: Vec<Held>,
}

/// What connects the fake buses of the nodes of one test.
pub struct BusHub {
    state: Mutex<HubState>,
    /// The rooms' chat history, shared by the nodes as Redis keeps it for a fleet.
    history: MemoryHistory,
    /// The seats' streams, shared with the test's presence, which opens and
    /// closes them with the seats, as the members hash and the streams share
    /// Redis.
    streams: Arc<MemoryStreams>,
}

/// How many chat entries a room keeps in the fake: the default of `chat.history`.
const HISTORY: usize = 50;

impl BusHub {
    pub fn new(streams: Arc<MemoryStreams>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(HubState::default()),
            history: MemoryHistory::new(HISTORY),
            streams,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        // Test support: a test that panicked holding the lock has failed already.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bus of node `node`, delivering to `sink`, obeying `faults`.
    pub fn attach(
        self: &Arc<Self>,
        node: &NodeId,
        sink: Arc<dyn EnvelopeSink>,
        faults: Arc<FaultPlan>,
    ) -> FakeBus {
        self.lock().sinks.insert(node.clone(), sink);
        FakeBus {
            node: node.clone(),
            hub: Arc::clone(self),
            faults,
            rooms: RoomLocks::new(),
        }
    }

    /// Subscriptions `node` holds on `room`.
    pub fn subscriptions(&self, node: &str, room: &str) -> usize {
        self.lock()
            .subscriptions
            .iter()
            .find(|((n, r), _)| *n == node && *r == room)
            .map_or(0, |(_, count)| *count)
    }

    /// Unsubscribes that found no subscription to give back.
    pub fn unbalanced_unsubscribes(&self) -> usize {
        self.lock().unbalanced
    }

    /// Every envelope the bus took, in publish order.
    pub fn published(&self) -> Vec<Envelope> {
        self.lock().published.clone()
    }

    /// From now on, envelopes are kept in transit instead of delivered.
    pub fn hold(&self) {
        self.lock().holding = true;
    }

    /// Stops holding and hands over what is in transit, in publish order, for the
    /// test to [`BusHub::release`] in the order it wants.
    pub fn take_held(&self) -> Vec<Held> {
        let mut state = self.lock();
        state.holding = false;
        std::mem::take(&mut state.held)
    }

    /// Delivers an envelope that was in transit to the nodes that were subscribed
    /// when it was published.
    pub fn release(&self, held: &Held) {
        let sinks: Vec<Arc<dyn EnvelopeSink>> = {
            let state = self.lock();
            held.recipients
                .iter()
                .filter_map(|node| state.sinks.get(node).cloned())
                .collect()
        };
        for sink in sinks {
            sink.deliver(&held.envelope);
        }
    }

    /// Numbers the envelope and delivers it (or holds it) in one step, as
    /// Redis's script does: delivery keeps the order of the numbers.
    fn publish(&self, envelope: &Envelope) {
        self.streams
            .publish(envelope, |numbered| self.deliver(numbered));
    }

    fn deliver(&self, envelope: &Envelope) {
        let sinks: Vec<Arc<dyn EnvelopeSink>> = {
            let mut state = self.lock();
            state.published.push(envelope.clone());
            let recipients: Vec<NodeId> = state
                .subscriptions
                .iter()
                .filter(|((_, room), count)| *room == envelope.room && **count > 0)
                .map(|((node, _), _)| node.clone())
                .collect();
            if state.holding {
                state.held.push(Held {
                    envelope: envelope.clone(),
                    recipients,
                });
                return;
            }
            recipients
                .iter()
                .filter_map(|node| state.sinks.get(node).cloned())
                .collect()
        };
        // Outside the hub's lock: a sink never calls back into the bus, but a
        // test's assertions may read the hub while a delivery runs.
        for sink in sinks {
            sink.deliver(envelope);
        }
    }
}

/// One node's view of the hub: a [`Bus`] with faults.
pub struct FakeBus {
    node: NodeId,
    hub: Arc<BusHub>,
    faults: Arc<FaultPlan>,
    /// Held across each (un)subscribe, faults included, as the Redis bus holds
    /// a room across its round trip.
    rooms: RoomLocks<()>,
}

fn injected() -> BusError {
    BusError::Injected
}

#[async_trait]
impl Bus for FakeBus {
    async fn subscribe(&self, room: &RoomName) -> Result<(), BusError> {
        let _room = self.rooms.lock(room).await;
        self.faults
            .run(Op::BusSubscribe, injected, async {
                let key = (self.node.clone(), room.clone());
                *self.hub.lock().subscriptions.entry(key).or_default() += 1;
                Ok(())
            })
            .await
    }

    async fn unsubscribe(&self, room: &RoomName) -> Result<(), BusError> {
        let _room = self.rooms.lock(room).await;
        self.faults
            .run(Op::BusUnsubscribe, injected, async {
                let key = (self.node.clone(), room.clone());
                let mut state = self.hub.lock();
                match state.subscriptions.get_mut(&key) {
                    Some(count) if *count > 1 => *count -= 1,
                    Some(_) => {
                        state.subscriptions.remove(&key);
                    }
                    None => state.unbalanced += 1,
                }
                Ok(())
            })
            .await
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError> {
        if self.faults.bus_is_down() {
            return Err(BusError::Disconnected);
        }
        self.faults
            .run(Op::BusPublish, injected, async {
                self.hub.publish(envelope);
                Ok(())
            })
            .await
    }

    async fn publish_kept(&self, envelope: &Envelope, entry: &str) -> Result<(), BusError> {
        if self.faults.bus_is_down() {
            return Err(BusError::Disconnected);
        }
        self.faults
            .run(Op::BusPublish, injected, async {
                // Kept first, as the in-process bus does.
                self.hub.history.keep(&envelope.room, entry);
                self.hub.publish(envelope);
                Ok(())
            })
            .await
    }

    async fn history(&self, room: &RoomName) -> Result<Vec<String>, BusError> {
        Ok(self.hub.history.entries(room))
    }

    async fn replay(&self, room: &RoomName, peer: &PeerId) -> Result<SeatLog, BusError> {
        self.faults
            .run(Op::BusReplay, injected, async {
                Ok(self.hub.streams.replay(room, peer))
            })
            .await
    }

    async fn trim(&self, room: &RoomName, peer: &PeerId, upto: u64) -> Result<(), BusError> {
        self.faults
            .run(Op::BusTrim, injected, async {
                self.hub.streams.trim(room, peer, upto);
                Ok(())
            })
            .await
    }

    fn is_connected(&self) -> bool {
        !self.faults.bus_is_down()
    }
}
