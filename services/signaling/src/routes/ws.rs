//! `GET /ws`: where every socket enters the node.

use actix_web::dev::Payload;
use actix_web::{http::header, web, FromRequest, HttpRequest, HttpResponse};

use crate::frame_guard::FrameGuard;
use crate::lifecycle::Phase;
use crate::node::Node;
use crate::origin::OriginPolicy;
use crate::session;

/// Upgrades to a WebSocket and hands the socket to its own session task. A
/// draining node refuses new sockets with 503 so that the load balancer's retry
/// lands on another node; a page from a site the node does not serve gets 403.
pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    node: web::Data<Node>,
    origins: web::Data<OriginPolicy>,
) -> Result<HttpResponse, actix_web::Error> {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    if !origins.allows(origin, host) {
        node.metrics
            .upgrades_refused
            .with_label_values(&["origin"])
            .inc();
        return Ok(HttpResponse::Forbidden().body("origin not allowed"));
    }
    if node.lifecycle.phase() != Phase::Running {
        node.metrics
            .upgrades_refused
            .with_label_values(&["draining"])
            .inc();
        return Ok(HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .body("draining"));
    }
    // Frame headers are checked as the bytes arrive, before actix-http buffers a
    // frame whole: see `frame_guard`.
    let (guard, violations) =
        FrameGuard::new(body.into_inner(), node.settings.limits.max_frame_bytes);
    let mut guarded =
        Payload::from(Box::pin(guard) as std::pin::Pin<Box<dyn futures_util::Stream<Item = _>>>);
    let body = web::Payload::from_request(&req, &mut guarded).await?;
    let (response, ws, stream) = actix_ws::handle(&req, body)?;
    actix_web::rt::spawn(session::run(node.into_inner(), ws, stream, violations));
    Ok(response)
}
