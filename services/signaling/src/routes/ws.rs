//! `GET /ws`: where every socket enters the node.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::lifecycle::Phase;
use crate::node::Node;
use crate::session;

/// Upgrades to a WebSocket and hands the socket to its own session task. A
/// draining node refuses new sockets with 503 so that the load balancer's retry
/// lands on another node.
pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    node: web::Data<Node>,
) -> Result<HttpResponse, actix_web::Error> {
    if node.lifecycle.phase() != Phase::Running {
        return Ok(HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .body("draining"));
    }
    let (response, ws, stream) = actix_ws::handle(&req, body)?;
    actix_web::rt::spawn(session::run(node.into_inner(), ws, stream));
    Ok(response)
}
