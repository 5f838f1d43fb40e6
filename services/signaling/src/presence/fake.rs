//! `FakePresence`: the in-memory presence with faults, for tests.
//!
//! Several nodes of one test share one [`MemoryPresence`] (the cluster-wide
//! truth) and each wraps it with its own [`FaultPlan`], so that a test can fail,
//! delay or hold one node's call of one operation.

use std::sync::Arc;

use async_trait::async_trait;
use vc_protocol::{CallState, CallStateChange, LeaveReason, RoomName};

use super::memory::MemoryPresence;
use super::{MemberRecord, Parked, Presence, PresenceError, ResumeClaim};
use crate::faults::{FaultPlan, Op};
use crate::vocabulary::{ConnId, PeerId};

pub struct FakePresence {
    store: Arc<MemoryPresence>,
    faults: Arc<FaultPlan>,
}

impl FakePresence {
    pub fn new(store: Arc<MemoryPresence>, faults: Arc<FaultPlan>) -> Self {
        Self { store, faults }
    }
}

fn injected() -> PresenceError {
    PresenceError::Injected
}

#[async_trait]
impl Presence for FakePresence {
    async fn join(
        &self,
        room: &RoomName,
        record: &MemberRecord,
        capacity: usize,
    ) -> Result<Vec<MemberRecord>, PresenceError> {
        self.faults
            .run(
                Op::PresenceJoin,
                injected,
                self.store.join(room, record, capacity),
            )
            .await
    }

    async fn leave(
        &self,
        room: &RoomName,
        peer: &PeerId,
        conn: &ConnId,
    ) -> Result<bool, PresenceError> {
        self.faults
            .run(
                Op::PresenceLeave,
                injected,
                self.store.leave(room, peer, conn),
            )
            .await
    }

    async fn park(
        &self,
        room: &RoomName,
        peer: &PeerId,
        conn: &ConnId,
        parked: Parked,
    ) -> Result<bool, PresenceError> {
        self.faults
            .run(
                Op::PresencePark,
                injected,
                self.store.park(room, peer, conn, parked),
            )
            .await
    }

    async fn resume(
        &self,
        claim: &ResumeClaim<'_>,
    ) -> Result<(MemberRecord, Vec<MemberRecord>), PresenceError> {
        self.faults
            .run(Op::PresenceResume, injected, self.store.resume(claim))
            .await
    }

    async fn expire(
        &self,
        room: &RoomName,
        peer: &PeerId,
        conn: &ConnId,
    ) -> Result<Option<LeaveReason>, PresenceError> {
        self.faults
            .run(
                Op::PresenceExpire,
                injected,
                self.store.expire(room, peer, conn),
            )
            .await
    }

    async fn seat(
        &self,
        room: &RoomName,
        peer: &PeerId,
    ) -> Result<Option<MemberRecord>, PresenceError> {
        self.faults
            .run(Op::PresenceSeat, injected, self.store.seat(room, peer))
            .await
    }

    async fn members(&self, room: &RoomName) -> Result<Vec<MemberRecord>, PresenceError> {
        self.faults
            .run(Op::PresenceMembers, injected, self.store.members(room))
            .await
    }

    async fn count(&self, room: &RoomName) -> Result<usize, PresenceError> {
        self.faults
            .run(Op::PresenceCount, injected, self.store.count(room))
            .await
    }

    async fn set_call_state(
        &self,
        room: &RoomName,
        peer: &PeerId,
        conn: &ConnId,
        change: CallStateChange,
    ) -> Result<Option<CallState>, PresenceError> {
        self.faults
            .run(
                Op::PresenceSetCallState,
                injected,
                self.store.set_call_state(room, peer, conn, change),
            )
            .await
    }
}
