//! `GET /healthz` (alive) and `GET /readyz` (ready to take sessions).

use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::lifecycle::Phase;
use crate::node::Node;

#[derive(Serialize)]
struct Health<'a> {
    status: &'a str,
    node: &'a str,
    phase: &'a str,
    bus: &'a str,
    sessions: usize,
    rooms: usize,
}

fn health<'a>(node: &'a Node, status: &'static str) -> Health<'a> {
    Health {
        status,
        node: node.id.as_str(),
        phase: match node.lifecycle.phase() {
            Phase::Running => "running",
            Phase::Draining => "draining",
            Phase::Stopping => "stopping",
        },
        bus: if node.rooms.bus().is_connected() {
            "connected"
        } else {
            "disconnected"
        },
        sessions: node.lifecycle.sessions(),
        rooms: node.rooms.router().stats().rooms,
    }
}

/// The process is alive and serving HTTP. Never depends on Redis: restarting a
/// node because Redis is down would only drop its sockets.
pub async fn healthz(node: web::Data<Node>) -> HttpResponse {
    HttpResponse::Ok().json(health(&node, "ok"))
}

/// Ready to take new sessions: running (not draining) and the bus connected.
pub async fn readyz(node: web::Data<Node>) -> HttpResponse {
    if node.is_ready() {
        HttpResponse::Ok().json(health(&node, "ready"))
    } else {
        HttpResponse::ServiceUnavailable().json(health(&node, "not-ready"))
    }
}
