//! `vc-load`: drives Video Caller signaling nodes (or the Socket.IO baseline)
//! with real WebSocket clients on loopback.
//!
//! - [`rate`]: open-loop schedules, so that latency under load is honest;
//! - [`net`]: loopback-only targets, many source addresses, one task per socket;
//! - [`stats`] and [`report`]: histograms per phase, the JSON and HTML reports;
//! - [`scenarios`]: `idle`, `calls`, `mesh`, `churn`, `relay` and `mixed`.

pub mod net;
pub mod rate;
pub mod report;
pub mod scenarios;
pub mod stats;
