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

fn serve(path: &str) -> HttpResponse {
    match Assets::get(path) {
        Some(file) => {
            let mime = file.metadata.mimetype();
            // The page names its scripts by fixed paths, so browsers must check
            // back on every load to pick up a new release.
            HttpResponse::Ok()
                .insert_header((header::CONTENT_TYPE, mime))
                .insert_header((header::CACHE_CONTROL, "no-cache"))
                .insert_header(("X-Content-Type-Options", "nosniff"))
                .body(file.data.into_owned())
        }
        None => HttpResponse::NotFound().body("not found"),
    }
}
