//! Everything a session or a route needs from its node, behind one `Arc`.

use std::sync::Arc;

use crate::config::Settings;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::rooms::Rooms;
use crate::vocabulary::NodeId;

pub struct Node {
    pub id: NodeId,
    pub settings: Arc<Settings>,
    pub rooms: Arc<Rooms>,
    pub lifecycle: Lifecycle,
    pub metrics: Arc<Metrics>,
}

impl Node {
    /// Ready to take sessions: running (not draining) with a connected bus.
    pub fn is_ready(&self) -> bool {
        self.lifecycle.phase() == crate::lifecycle::Phase::Running
            && self.rooms.bus().is_connected()
    }
}
