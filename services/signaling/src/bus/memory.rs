//! The in-process bus of a single node: publishing is delivering.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Bus, BusError, Envelope};
use crate::router::Router;

/// Delivers each envelope straight to this node's router. There is no other node
/// to reach, so subscriptions need no bookkeeping and nothing can disconnect.
pub struct MemoryBus {
    router: Arc<Router>,
}

impl MemoryBus {
    pub fn new(router: Arc<Router>) -> Self {
        Self { router }
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
        self.router.deliver(envelope);
        Ok(())
    }

    fn is_connected(&self) -> bool {
        true
    }
}
