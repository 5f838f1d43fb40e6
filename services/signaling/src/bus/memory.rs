//! The in-process bus of a single node: publishing is delivering.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{Bus, BusError};
use crate::envelope::{Envelope, EnvelopeSink};

/// Delivers each envelope straight to this node's sink. There is no other node
/// to reach, so subscriptions need no bookkeeping and nothing can disconnect.
pub struct MemoryBus {
    sink: Arc<dyn EnvelopeSink>,
    history: Arc<MemoryHistory>,
}

impl MemoryBus {
    pub fn new(sink: Arc<dyn EnvelopeSink>, history: Arc<MemoryHistory>) -> Self {
        Self { sink, history }
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn subscribe(&self, _room: &str) -> Result<(), BusError> {
        Ok(())
    }

    async fn unsubscribe(&self, _room: &str) -> Result<(), BusError> {
        Ok(())
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError> {
        self.sink.deliver(envelope);
        Ok(())
    }

    async fn publish_kept(&self, envelope: &Envelope, entry: &str) -> Result<(), BusError> {
        // Kept first: a joiner reading the history between the two steps finds
        // the message there and drops the copy that reaches its seat.
        self.history.keep(&envelope.room, entry);
        self.sink.deliver(envelope);
        Ok(())
    }

    async fn history(&self, room: &str) -> Result<Vec<String>, BusError> {
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
    rooms: Mutex<HashMap<String, VecDeque<String>>>,
}

impl MemoryHistory {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            rooms: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<String>>> {
        // Every edit is one push, pop or remove: a poisoned map is still whole.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn keep(&self, room: &str, entry: &str) {
        if self.limit == 0 {
            return;
        }
        let mut rooms = self.lock();
        let kept = rooms.entry(room.to_owned()).or_default();
        kept.push_back(entry.to_owned());
        while kept.len() > self.limit {
            kept.pop_front();
        }
    }

    pub(crate) fn entries(&self, room: &str) -> Vec<String> {
        self.lock()
            .get(room)
            .map(|kept| kept.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Drops the room's history: it has no seat left.
    pub fn forget(&self, room: &str) {
        self.lock().remove(room);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_last_entries_per_room_until_forgotten() {
        let history = MemoryHistory::new(3);
        for i in 0..5 {
            history.keep("a", &i.to_string());
        }
        history.keep("b", "x");
        assert_eq!(history.entries("a"), ["2", "3", "4"]);
        assert_eq!(history.entries("b"), ["x"]);
        history.forget("a");
        assert!(history.entries("a").is_empty());
        assert_eq!(history.entries("b"), ["x"]);
        let none = MemoryHistory::new(0);
        none.keep("a", "x");
        assert!(none.entries("a").is_empty());
    }
}
