//! `Publisher`: the one way this node puts an envelope on the bus. It stamps each
//! envelope (room, this node as origin, the publish time, the current trace
//! context) and counts it in the bus metrics.
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
use crate::vocabulary::{NodeId, PeerId};

pub struct Publisher {
    node_id: NodeId,
    bus: Arc<dyn Bus>,
    metrics: Arc<Metrics>,
}

impl Publisher {
    pub fn new(node_id: NodeId, bus: Arc<dyn Bus>, metrics: Arc<Metrics>) -> Self {
        Self {
            node_id,
            bus,
            metrics,
        }
    }

    /// Publishes `event` to the room.
    pub async fn publish(&self, room: &RoomName, event: Event) -> Result<(), BusError> {
        self.publish_with(room, event, None).await
    }

    /// Publishes a chat message's `event` and keeps `entry` in the room's
    /// history in the same step ([`Bus::publish_kept`]).
    pub async fn publish_kept(
        &self,
        room: &RoomName,
        event: Event,
        entry: &str,
    ) -> Result<(), BusError> {
        self.publish_with(room, event, Some(entry)).await
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

    async fn publish_with(
        &self,
        room: &RoomName,
        event: Event,
        kept: Option<&str>,
    ) -> Result<(), BusError> {
        let envelope = Envelope {
            room: room.clone(),
            origin: self.node_id.clone(),
            sent_at_us: unix_us(),
            traceparent: crate::telemetry::current_traceparent(),
            event,
            seqs: Seqs::default(),
        };
        let started = Instant::now();
        let result = match kept {
            Some(entry) => self.bus.publish_kept(&envelope, entry).await,
            None => self.bus.publish(&envelope).await,
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
