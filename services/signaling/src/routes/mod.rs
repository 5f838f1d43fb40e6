//! HTTP routes: the WebSocket upgrade, health, a room's head count, and the
//! embedded web client.

pub mod health;
pub mod metrics;
pub mod rooms;
pub mod web_client;
pub mod ws;
