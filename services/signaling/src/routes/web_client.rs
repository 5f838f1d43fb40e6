//! The web client, embedded in the binary so that one file is all a deploy needs.

use actix_web::{http::header, web, HttpResponse};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../../web-client/public/"]
struct Assets;

/// `/` and `/r/<room>`: the app's single page; the room comes from the path.
pub async fn index() -> HttpResponse {
    serve("index.html")
}

/// Any other path: a file of the web client, or 404.
pub async fn asset(path: web::Path<String>) -> HttpResponse {
    serve(&path)
}

/// What the page may load and do. Everything it needs comes from this node: its
/// own scripts and styles (no inline ones), media from the camera, and the
/// WebSocket back to the node. No other site may frame it, so no page can dress
/// the camera prompt up as its own.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; \
connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; \
frame-ancestors 'none'; object-src 'none'";

/// Camera, microphone and screen for this origin only, never for a frame.
const PERMISSIONS_POLICY: &str =
    "camera=(self), microphone=(self), display-capture=(self), geolocation=(), payment=()";

fn serve(path: &str) -> HttpResponse {
    let mut response = match Assets::get(path) {
        Some(file) => {
            let mime = file.metadata.mimetype();
            // The page names its scripts by fixed paths, so browsers must check
            // back on every load to pick up a new release.
            let mut ok = HttpResponse::Ok();
            ok.insert_header((header::CONTENT_TYPE, mime))
                .insert_header((header::CACHE_CONTROL, "no-cache"));
            ok.body(file.data.into_owned())
        }
        None => HttpResponse::NotFound().body("not found"),
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Invite links carry room names and tokens: never hand them to other sites.
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::HeaderName::from_static("permissions-policy"),
            PERMISSIONS_POLICY,
        ),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, header::HeaderValue::from_static(value));
    }
    response
}
