//! `RoomLocks`: one async lock per room over that room's state, made when the room
//! is first locked and dropped once nobody holds it or waits for it.
//!
//! A bus subscribes a room with a round trip to its backend, and the room's
//! subscription count must not change during it: a join racing the room's last
//! leave has to end up subscribed, and a room is unsubscribed only when its last
//! local seat leaves. One lock for every room would keep that order too, but
//! every join on the node would then queue behind any other room's round trip; a
//! lock per room makes a slow SUBSCRIBE delay only its own room.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

type Slot<T> = Arc<AsyncMutex<T>>;

/// Per-room locks over a `T` per room. A room whose state is back to
/// `T::default()` when its last holder lets go is forgotten.
pub struct RoomLocks<T> {
    rooms: Mutex<HashMap<String, Slot<T>>>,
}

impl<T: Default + PartialEq> Default for RoomLocks<T> {
    fn default() -> Self {
        Self {
            rooms: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Default + PartialEq> RoomLocks<T> {
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot<T>>> {
        // Every critical section is one lookup, insert or remove: a poisoned
        // map is still whole.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the room's lock; other rooms are not held up meanwhile.
    pub async fn lock(&self, room: &str) -> RoomGuard<'_, T> {
        let slot = {
            let mut rooms = self.map();
            match rooms.get(room) {
                Some(slot) => Arc::clone(slot),
                None => Arc::clone(rooms.entry(room.to_owned()).or_default()),
            }
        };
        // Dropped while waiting (its caller went away), the clone goes with the
        // future; the room is forgotten by whoever next lets go of it.
        let guard = slot.lock_owned().await;
        RoomGuard {
            locks: self,
            room: room.to_owned(),
            guard,
        }
    }

    /// Every room with state or a holder now, for a walk over them (a resync).
    pub fn rooms(&self) -> Vec<String> {
        self.map().keys().cloned().collect()
    }
}

/// A room's state while its lock is held.
pub struct RoomGuard<'a, T: Default + PartialEq> {
    locks: &'a RoomLocks<T>,
    room: String,
    guard: OwnedMutexGuard<T>,
}

impl<T: Default + PartialEq> Deref for RoomGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: Default + PartialEq> DerefMut for RoomGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T: Default + PartialEq> Drop for RoomGuard<'_, T> {
    fn drop(&mut self) {
        let mut rooms = self.locks.map();
        // Two owners, the map and this guard: nobody waits, and nobody can start
        // to while the map is locked, since a waiter clones its slot under it.
        let alone = Arc::strong_count(OwnedMutexGuard::mutex(&self.guard)) == 2;
        if alone && *self.guard == T::default() {
            rooms.remove(&self.room);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_held_room_holds_up_only_itself() {
        let locks = Arc::new(RoomLocks::<usize>::new());
        let mut a = locks.lock("a").await;
        *a += 1;
        // Another room is free at once.
        let b = tokio::time::timeout(Duration::from_secs(5), locks.lock("b")).await;
        assert!(b.is_ok(), "room b waited for room a");
        drop(b);
        // The same room waits until the holder lets go, and sees what it left.
        let waiter = {
            let locks = Arc::clone(&locks);
            tokio::spawn(async move { *locks.lock("a").await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "room a was locked twice at once");
        drop(a);
        assert_eq!(waiter.await.ok(), Some(1));
    }

    #[tokio::test]
    async fn a_room_back_at_rest_is_forgotten_and_one_in_use_is_kept() {
        let locks = RoomLocks::<usize>::new();
        drop(locks.lock("idle").await);
        assert!(locks.rooms().is_empty());
        *locks.lock("busy").await += 1;
        assert_eq!(locks.rooms(), ["busy"]);
        *locks.lock("busy").await -= 1;
        assert!(locks.rooms().is_empty());
    }
}
