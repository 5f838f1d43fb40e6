//! `GET /api/rooms/{room}`: how many people are in a room, so that a lobby can
//! say so before the person joins.
//!
//! With `auth.mode = "jwt"` it answers only to `Authorization: Bearer <token>`
//! with a token that would let its holder join that room: nobody learns of a
//! room more than they could by joining it.

use actix_web::{http::header, http::StatusCode, web, HttpRequest, HttpResponse};
use serde::Serialize;
use vc_protocol::{ErrorCode, RoomName};

use crate::node::Node;
use crate::rooms::Refusal;

#[derive(Serialize)]
struct HeadCount<'a> {
    room: &'a str,
    /// Seats taken, on every node; a seat kept for a reconnecting person counts.
    members: usize,
}

#[derive(Serialize)]
struct Problem<'a> {
    code: ErrorCode,
    message: &'a str,
}

pub async fn head_count(
    node: web::Data<Node>,
    room: web::Path<String>,
    request: HttpRequest,
) -> HttpResponse {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let counted = match RoomName::parse(&room) {
        Ok(room) => node.rooms.head_count(&room, token).await,
        Err(e) => Err(Refusal::invalid_room(&e)),
    };
    match counted {
        Ok(members) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .json(HeadCount {
                room: &room,
                members,
            }),
        Err(refusal) => {
            let status = status_of(refusal.code);
            let mut response = HttpResponse::build(status);
            response
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
            if status == StatusCode::UNAUTHORIZED {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            response.json(Problem {
                code: refusal.code,
                message: &refusal.message,
            })
        }
    }
}

fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidRoom => StatusCode::BAD_REQUEST,
        ErrorCode::AuthRequired => StatusCode::UNAUTHORIZED,
        ErrorCode::AuthInvalid | ErrorCode::AuthExpired | ErrorCode::AuthWrongRoom => {
            StatusCode::FORBIDDEN
        }
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}
