//! The in-process bus of a single node: publishing is delivering, after the
//! event is numbered and kept in its seats' replay buffers ([`MemoryStreams`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use vc_protocol::RoomName;

use super::{Bus, BusError, SeatLog};
use crate::config::ReplaySettings;
use crate::envelope::{Envelope, EnvelopeSink, Recipients};
use crate::vocabulary::PeerId;

/// Delivers each envelope straight to this node's sink. There is no other node
/// to reach, so subscriptions need no bookkeeping and nothing can disconnect.
pub struct MemoryBus {
    sink: Arc<dyn EnvelopeSink>,
    history: Arc<MemoryHistory>,
    streams: Arc<MemoryStreams>,
}

impl MemoryBus {
    pub fn new(
        sink: Arc<dyn EnvelopeSink>,
        history: Arc<MemoryHistory>,
        streams: Arc<MemoryStreams>,
    ) -> Self {
        Self {
            sink,
            history,
            streams,
        }
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn subscribe(&self, _room: &RoomName) -> Result<(), BusError> {
        Ok(())
    }

    async fn unsubscribe(&self, _room: &RoomName) -> Result<(), BusError> {
        Ok(())
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError> {
        self.streams
            .publish(envelope, |numbered| self.sink.deliver(numbered));
        Ok(())
    }

    async fn publish_kept(&self, envelope: &Envelope, entry: &str) -> Result<(), BusError> {
        // Kept first: a joiner reading the history between the two steps finds
        // the message there and drops the copy that reaches its seat.
        self.history.keep(&envelope.room, entry);
        self.streams
            .publish(envelope, |numbered| self.sink.deliver(numbered));
        Ok(())
    }

    async fn replay(&self, room: &RoomName, peer: &PeerId) -> Result<SeatLog, BusError> {
        Ok(self.streams.replay(room, peer))
    }

    async fn trim(&self, room: &RoomName, peer: &PeerId, upto: u64) -> Result<(), BusError> {
        self.streams.trim(room, peer, upto);
        Ok(())
    }

    async fn history(&self, room: &RoomName) -> Result<Vec<String>, BusError> {
        Ok(self.history.entries(room))
    }

    fn is_connected(&self) -> bool {
        true
    }
}

/// The chat history of each room of a single node: the last `limit` entries. The
/// in-process presence drops a room's history with its last seat.
#[derive(Debug, Default)]
pub struct MemoryHistory {
    limit: usize,
    rooms: Mutex<HashMap<RoomName, VecDeque<String>>>,
}

impl MemoryHistory {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            rooms: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RoomName, VecDeque<String>>> {
        // Every edit is one push, pop or remove: a poisoned map is still whole.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn keep(&self, room: &RoomName, entry: &str) {
        if self.limit == 0 {
            return;
        }
        let mut rooms = self.lock();
        let kept = rooms.entry(room.clone()).or_default();
        kept.push_back(entry.to_owned());
        while kept.len() > self.limit {
            kept.pop_front();
        }
    }

    pub(crate) fn entries(&self, room: &RoomName) -> Vec<String> {
        self.lock()
            .get(room)
            .map(|kept| kept.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Drops the room's history: it has no seat left.
    pub fn forget(&self, room: &RoomName) {
        self.lock().remove(room);
    }
}

/// One seat's stream in memory: the last number given, and the kept events.
#[derive(Debug, Default)]
struct SeatStream {
    last: u64,
    log: VecDeque<(u64, Arc<Envelope>, usize)>,
    bytes: usize,
    /// When the last event was kept: the buffer lives `resume.window` past it.
    touched: Option<Instant>,
}

/// The seats' streams of a single node (or of a test's nodes, as Redis keeps
/// them for a fleet): which seats each room has, the last number on each seat's
/// stream and its bounded replay buffer. Presence opens a seat's stream when it
/// gives the seat and closes it when it frees it, under its own lock, so that
/// numbering an event sees the members presence has at that moment.
#[derive(Debug)]
pub struct MemoryStreams {
    settings: ReplaySettings,
    window: Duration,
    rooms: Mutex<HashMap<RoomName, HashMap<PeerId, SeatStream>>>,
}

impl Default for MemoryStreams {
    fn default() -> Self {
        Self::new(
            &ReplaySettings::default(),
            crate::config::ResumeSettings::default().window,
        )
    }
}

impl MemoryStreams {
    pub fn new(settings: &ReplaySettings, window: Duration) -> Self {
        Self {
            settings: settings.clone(),
            window,
            rooms: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RoomName, HashMap<PeerId, SeatStream>>> {
        // Every edit leaves each stream whole before it could panic.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The seat is in the room now: events for it are numbered from here on.
    pub fn open(&self, room: &RoomName, peer: &PeerId) {
        self.lock()
            .entry(room.clone())
            .or_default()
            .entry(peer.clone())
            .or_default();
    }

    /// The seat is gone: its numbering and buffer go with it.
    pub fn close(&self, room: &RoomName, peer: &PeerId) {
        let mut rooms = self.lock();
        if let Some(seats) = rooms.get_mut(room) {
            seats.remove(peer);
            if seats.is_empty() {
                rooms.remove(room);
            }
        }
    }

    /// Loses every kept event but keeps the numbering: a Redis that restarted
    /// empty, once the nodes' resync has written back each seat's last `seq`
    /// (tests).
    #[cfg(test)]
    pub fn lose_buffers(&self) {
        for stream in self
            .lock()
            .values_mut()
            .flat_map(|seats| seats.values_mut())
        {
            stream.log.clear();
            stream.bytes = 0;
        }
    }

    /// Numbers the envelope for each seat it is for, keeps it in their buffers
    /// (one copy, shared by the buffers and the delivery), and hands it to
    /// `deliver` before any other envelope is numbered: as with Redis, where
    /// the script numbers and publishes in one step, envelopes reach the sinks
    /// in the order of their numbers, so that no seat sees a lower number after
    /// a higher one (which it would drop as a duplicate).
    pub fn publish(&self, envelope: &Envelope, deliver: impl FnOnce(&Envelope)) {
        let mut rooms = self.lock();
        let numbered = self.number(&mut rooms, envelope);
        deliver(&numbered);
    }

    fn number(
        &self,
        rooms: &mut HashMap<RoomName, HashMap<PeerId, SeatStream>>,
        envelope: &Envelope,
    ) -> Arc<Envelope> {
        let size = envelope_size(envelope);
        let now = Instant::now();
        let Some(seats) = rooms.get_mut(&envelope.room) else {
            return Arc::new(envelope.clone());
        };
        match envelope.event.recipients() {
            Recipients::One(to) => {
                let Some(stream) = seats.get_mut(to) else {
                    return Arc::new(envelope.clone());
                };
                // The relay's one seat: numbered and kept on one lookup.
                stream.last += 1;
                let seq = stream.last;
                let mut numbered = envelope.clone();
                numbered.seqs.insert(to.clone(), seq);
                let numbered = Arc::new(numbered);
                self.keep(stream, seq, &numbered, size, now);
                numbered
            }
            Recipients::AllBut(sender) => {
                let mut numbered = envelope.clone();
                for (peer, stream) in seats.iter_mut() {
                    if peer.as_str() != sender {
                        stream.last += 1;
                        numbered.seqs.insert(peer.clone(), stream.last);
                    }
                }
                let numbered = Arc::new(numbered);
                for (peer, seq) in numbered.seqs.iter() {
                    if let Some(stream) = seats.get_mut(peer) {
                        self.keep(stream, seq, &numbered, size, now);
                    }
                }
                numbered
            }
            Recipients::Nobody => Arc::new(envelope.clone()),
        }
    }

    /// Keeps one event in a seat's buffer, within the bounds.
    fn keep(
        &self,
        stream: &mut SeatStream,
        seq: u64,
        envelope: &Arc<Envelope>,
        size: usize,
        now: Instant,
    ) {
        if stream
            .touched
            .is_some_and(|at| now.duration_since(at) > self.window)
        {
            stream.log.clear();
            stream.bytes = 0;
        }
        stream.log.push_back((seq, Arc::clone(envelope), size));
        stream.bytes += size;
        stream.touched = Some(now);
        while stream.log.len() > 1
            && (stream.log.len() > self.settings.buffer_messages
                || stream.bytes > self.settings.buffer_bytes)
        {
            if let Some((_, _, gone)) = stream.log.pop_front() {
                stream.bytes -= gone;
            }
        }
    }

    pub fn replay(&self, room: &RoomName, peer: &PeerId) -> SeatLog {
        let rooms = self.lock();
        let Some(stream) = rooms.get(room).and_then(|seats| seats.get(peer)) else {
            return SeatLog::default();
        };
        let fresh = stream.touched.is_some_and(|at| at.elapsed() <= self.window);
        SeatLog {
            last: stream.last,
            entries: if fresh {
                stream
                    .log
                    .iter()
                    .map(|(seq, envelope, _)| (*seq, Envelope::clone(envelope)))
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    pub fn trim(&self, room: &RoomName, peer: &PeerId, upto: u64) {
        let mut rooms = self.lock();
        let Some(stream) = rooms.get_mut(room).and_then(|seats| seats.get_mut(peer)) else {
            return;
        };
        while stream.log.front().is_some_and(|(seq, _, _)| *seq <= upto) {
            if let Some((_, _, gone)) = stream.log.pop_front() {
                stream.bytes -= gone;
            }
        }
    }
}

/// What an event costs its buffers, near enough: the frame it carries.
fn envelope_size(envelope: &Envelope) -> usize {
    use crate::envelope::Event;
    let frame = match &envelope.event {
        Event::Relay { frame, .. } | Event::Broadcast { frame, .. } => frame.len(),
        _ => 0,
    };
    frame + 128
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocabulary::testing::room;

    #[test]
    fn history_keeps_the_last_entries_per_room_until_forgotten() {
        let history = MemoryHistory::new(3);
        for i in 0..5 {
            history.keep(&room("a"), &i.to_string());
        }
        history.keep(&room("b"), "x");
        assert_eq!(history.entries(&room("a")), ["2", "3", "4"]);
        assert_eq!(history.entries(&room("b")), ["x"]);
        history.forget(&room("a"));
        assert!(history.entries(&room("a")).is_empty());
        assert_eq!(history.entries(&room("b")), ["x"]);
        let none = MemoryHistory::new(0);
        none.keep(&room("a"), "x");
        assert!(none.entries(&room("a")).is_empty());
    }
}
