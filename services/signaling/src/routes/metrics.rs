//! `GET /metrics`: Prometheus text exposition.

use actix_web::{web, HttpResponse};

use crate::lifecycle::Phase;
use crate::node::Node;

/// Gauges of live state are read at scrape time rather than kept up to date on
/// every change: cheaper, and never out of step.
pub async fn metrics(node: web::Data<Node>) -> HttpResponse {
    let m = &node.metrics;
    m.sessions
        .set(i64::try_from(node.lifecycle.sessions()).unwrap_or(i64::MAX));
    m.rooms
        .set(i64::try_from(node.rooms.router().stats().rooms).unwrap_or(i64::MAX));
    m.bus_connected
        .set(i64::from(node.rooms.bus().is_connected()));
    m.draining
        .set(i64::from(node.lifecycle.phase() == Phase::Draining));
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(m.render())
}
