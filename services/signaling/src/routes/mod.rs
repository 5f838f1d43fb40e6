//! HTTP routes: the WebSocket upgrade, health, and the embedded web client.

pub mod health;
pub mod metrics;
pub mod web_client;
pub mod ws;
