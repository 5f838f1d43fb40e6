//! What a node does when Redis answers again after an outage, before it reports
//! ready: resubscribe every room that still has local seats (a connection that
//! came back has no subscriptions), write back every seat this node holds,
//! attached or parked, with `REASSERT` (Redis may have restarted empty; a seat
//! another connection took meanwhile is left alone), put its rooms back in its
//! rooms set, refresh its liveness key; then report connected, and announce again
//! (`peer-joined`) each attached seat that `REASSERT` had to re-create, since
//! other nodes may have been told it left (a sweep during a partition). Last,
//! each attached seat catches up: what other nodes published for it while its
//! room was not subscribed here is in its replay buffer, so the node reads the
//! buffer and sends what the seat was not sent, before what arrived since. In
//! rooms where Redis had lost a seat of this node, the seats are then told the
//! call states they missed: a change broadcast before the seats were back was
//! numbered for nobody here.
//!
//! The seats come from [`HeldSeats`], the node's one record of them, which the
//! room core keeps; the announcements go through the node's [`Publisher`].

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::StreamExt;
use redis::AsyncCommands;
use thiserror::Error;
use tokio::sync::mpsc;
use tracing::{info, warn};
use vc_protocol::{Member, RoomName};

use super::bus::RedisBus;
use super::connection::Connections;
use super::presence::{encode_record, RedisPresence};
use super::{keys, liveness, scripts};
use crate::bus::Bus;
use crate::config::RedisSettings;
use crate::envelope::{AttachedSeat, EnvelopeSink};
use crate::held_seats::HeldSeats;
use crate::metrics::Metrics;
use crate::presence::{MemberRecord, Presence};
use crate::publisher::Publisher;
use crate::vocabulary::NodeId;

/// Task: reads the buffer of each seat the sink reports skipping numbers, and
/// hands it to the sink to send what pub/sub lost. A seat is reported once per
/// gap (it holds until then), so the queue is bounded by the seats.
pub(super) async fn mend_gaps(
    mut skipped: mpsc::UnboundedReceiver<AttachedSeat>,
    bus: Arc<RedisBus>,
    sink: Arc<dyn EnvelopeSink>,
    metrics: Arc<Metrics>,
) {
    while let Some(seat) = skipped.recv().await {
        let log = match bus.replay(&seat.room, &seat.peer).await {
            Ok(log) => Some(log),
            Err(e) => {
                warn!(room = %seat.room, error = %e, "reading the buffer of a seat that skipped frames failed");
                None
            }
        };
        let outcome = if sink.catch_up(&seat, log.as_ref()) {
            "complete"
        } else {
            "incomplete"
        };
        info!(room = %seat.room, outcome, "a seat's frames from the bus skipped numbers; its buffer was read");
        metrics.bus_gaps.with_label_values(&[outcome]).inc();
    }
}

/// `REASSERT`'s answer when the seat was missing and has been written again.
const RECREATED: i64 = 2;

/// Replay buffers read at once while seats catch up: enough to fill the
/// connection's pipeline, few enough not to crowd out live traffic.
const CATCH_UP_READS: usize = 32;

#[derive(Debug, Error)]
pub(super) enum ResyncError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("encoding a seat: {0}")]
    Record(#[from] serde_json::Error),
}

pub(super) struct Resync {
    pub node_id: NodeId,
    pub settings: RedisSettings,
    pub connections: Arc<Connections>,
    pub bus: Arc<RedisBus>,
    pub sink: Arc<dyn EnvelopeSink>,
    pub presence: Arc<RedisPresence>,
    pub held: Arc<HeldSeats>,
    pub publisher: Arc<Publisher>,
    pub metrics: Arc<Metrics>,
}

impl Resync {
    /// Makes the node whole again and reports it connected. An error leaves it
    /// disconnected, for the supervisor to try again.
    pub async fn run(&self) -> Result<(), ResyncError> {
        // Before any room is subscribed again: whatever the bus brings from
        // now on waits behind what the seats missed. A run that fails leaves
        // them holding, and the next one takes them over.
        let attached = self.sink.hold_attached();
        let rooms = self.bus.resubscribe().await?;
        let (recreated, lost_rooms) = self.reassert().await?;
        self.metrics
            .bus_resubscriptions
            .inc_by(u64::try_from(rooms).unwrap_or(u64::MAX));
        info!(rooms, "resubscribed after a Redis outage");
        self.connections.set_connected(true);
        // Nodes drop the announcement for clients that never stopped knowing
        // the peer (after a Redis restart, say).
        for (room, member) in recreated {
            self.publisher.announce_arrival(&room, member).await;
        }
        self.catch_up(attached).await;
        // Read after this node's seats are back: a state set before the read
        // is in it, one set after reaches these seats as a broadcast.
        for room in &lost_rooms {
            match self.presence.members(room).await {
                Ok(records) => {
                    let members: Vec<Member> = records.iter().map(MemberRecord::member).collect();
                    self.sink.tell_states(room, &members);
                }
                Err(e) => {
                    warn!(%room, error = %e, "reading a room's call states after an outage failed")
                }
            }
        }
        Ok(())
    }

    /// Reads each seat's buffer and hands it to the sink, which sends what the
    /// seat missed and then what it held. A seat whose buffer cannot be read is
    /// told to reconnect, like one whose buffer no longer reaches back.
    async fn catch_up(&self, seats: Vec<AttachedSeat>) {
        let count = seats.len();
        let outcomes: Vec<bool> = futures_util::stream::iter(seats)
            .map(|seat| async move {
                let log = match self.bus.replay(&seat.room, &seat.peer).await {
                    Ok(log) => Some(log),
                    Err(e) => {
                        warn!(room = %seat.room, error = %e, "reading a seat's replay buffer after an outage failed");
                        None
                    }
                };
                self.sink.catch_up(&seat, log.as_ref())
            })
            .buffer_unordered(CATCH_UP_READS)
            .collect()
            .await;
        let incomplete = outcomes.iter().filter(|complete| !**complete).count();
        for (outcome, n) in [("complete", count - incomplete), ("incomplete", incomplete)] {
            self.metrics
                .bus_catch_ups
                .with_label_values(&[outcome])
                .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
        }
        info!(
            seats = count,
            incomplete, "seats caught up after a Redis outage"
        );
    }

    /// Writes back every seat held here; returns the attached ones that Redis
    /// had lost, to announce again, and the rooms where it had lost any seat.
    async fn reassert(&self) -> Result<(Vec<(RoomName, Member)>, HashSet<RoomName>), ResyncError> {
        let seats = self.held.all();
        let mut commands = self.connections.commands();
        let mut recreated = Vec::new();
        let mut lost_rooms = HashSet::new();
        for (room, record, sent) in &seats {
            let outcome: i64 = scripts::REASSERT
                .key(keys::members(room))
                .key(keys::seqs(room))
                .arg(record.id.as_str())
                .arg(encode_record(record)?)
                .arg(*sent)
                .invoke_async(&mut commands)
                .await?;
            if outcome == RECREATED {
                lost_rooms.insert(room.clone());
                if record.parked.is_none() {
                    recreated.push((room.clone(), record.member()));
                }
            }
            let _: i64 = commands
                .sadd(keys::node_rooms(&self.node_id), room.as_str())
                .await?;
        }
        liveness::heartbeat(&self.node_id, &self.settings, &mut commands).await?;
        info!(seats = seats.len(), "presence re-asserted");
        Ok((recreated, lost_rooms))
    }
}
