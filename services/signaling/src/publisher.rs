//! `Publisher`: the one way this node puts an envelope on the bus. It stamps each
//! envelope (room, this node as origin, the publish time, the current trace
//! context) and counts it in the bus metrics. What a session sends to its room
//! ([`Publisher::publish_from`]) goes to the [`OutageQueue`] instead while the
//! bus cannot take it, and is published from there when it can.
//!
//! [`Rooms`](crate::rooms::Rooms) owns it and publishes every room operation
//! through it. The Redis backend's own tasks are handed the same publisher when
//! the node starts them, for the two announcements only they can make: the seats
//! a sweep freed (`peer-left`) and the seats a resync had to re-create
//! (`peer-joined`).

use std::sync::Arc;
use std::time::Instant;

use tracing::warn;
use vc_protocol::{LeaveReason, Member, RoomName};

use crate::bus::{Bus, BusError};
use crate::clock::unix_us;
use crate::envelope::{Envelope, Event, Seqs};
use crate::metrics::Metrics;
use crate::outage_queue::{OutageQueue, Queued, Sender};
use crate::vocabulary::{NodeId, PeerId};

pub struct Publisher {
    node_id: NodeId,
    bus: Arc<dyn Bus>,
    queue: Arc<OutageQueue>,
    metrics: Arc<Metrics>,
}

impl Publisher {
    pub fn new(
        node_id: NodeId,
        bus: Arc<dyn Bus>,
        queue: Arc<OutageQueue>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            node_id,
            bus,
            queue,
            metrics,
        }
    }

    /// Publishes what a session sent (a relay, a room-wide message, with the
    /// chat entry to keep), or, while the bus cannot take it, keeps it in the
    /// outage queue, behind whatever waits there. `Ok` means it was published
    /// or kept; the sender (made only when needed) hears if a kept one is
    /// dropped later. `Err` means it was not sent, and the session says so.
    pub async fn publish_from(
        &self,
        room: &RoomName,
        event: Event,
        kept: Option<&str>,
        sender: impl FnOnce() -> Sender,
    ) -> Result<(), BusError> {
        let envelope = self.stamp(room, event);
        let queueing = self.queue.is_enabled();
        if queueing && self.queue.must_queue() {
            let queued = Queued::new(envelope, kept.map(str::to_owned), sender());
            return Ok(self.queue.push(queued)?);
        }
        match self.send(&envelope, kept).await {
            // Certainly not published: refused before any command was sent, or
            // a relay whose target has no seat in Redis yet (its node has not
            // written it back after an empty restart). Kept rather than
            // refused, so that what the sender sends next waits behind it.
            Err(BusError::Disconnected | BusError::NoSeat) if queueing => {
                let queued = Queued::new(envelope, kept.map(str::to_owned), sender());
                Ok(self.queue.push(queued)?)
            }
            other => other,
        }
    }

    /// Publishes `event` to the room.
    pub async fn publish(&self, room: &RoomName, event: Event) -> Result<(), BusError> {
        let envelope = self.stamp(room, event);
        self.send(&envelope, None).await
    }

    /// Tells the room that `peer` is gone; a failure is logged, since nobody
    /// waits for the answer.
    pub async fn announce_departure(&self, room: &RoomName, peer: &PeerId, reason: LeaveReason) {
        let event = Event::PeerLeft {
            peer: peer.clone(),
            reason,
        };
        if let Err(e) = self.publish(room, event).await {
            warn!(%room, error = %e, "announcing a departure failed");
        }
    }

    /// Tells the room that `member` is in it; a failure is logged, since nobody
    /// waits for the answer.
    pub async fn announce_arrival(&self, room: &RoomName, member: Member) {
        if let Err(e) = self.publish(room, Event::PeerJoined { member }).await {
            warn!(%room, error = %e, "announcing a seat failed");
        }
    }

    fn stamp(&self, room: &RoomName, event: Event) -> Envelope {
        Envelope {
            room: room.clone(),
            origin: self.node_id.clone(),
            sent_at_us: unix_us(),
            traceparent: crate::telemetry::current_traceparent(),
            event,
            seqs: Seqs::default(),
        }
    }

    async fn send(&self, envelope: &Envelope, kept: Option<&str>) -> Result<(), BusError> {
        let started = Instant::now();
        let result = match kept {
            Some(entry) => self.bus.publish_kept(envelope, entry).await,
            None => self.bus.publish(envelope).await,
        };
        self.metrics
            .bus_publish
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(()) => self.metrics.bus_published.inc(),
            Err(_) => self
                .metrics
                .bus_errors
                .with_label_values(&["publish"])
                .inc(),
        }
        result
    }
}
