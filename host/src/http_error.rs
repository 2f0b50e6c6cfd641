//! The one place host-made error responses are built: `{"detail": ...}` with a status, the
//! shape FastAPI used and the game's front end reads.

use actix_web::{http::StatusCode, HttpResponse};
use serde_json::{json, Value};

/// A JSON `{"detail": detail}` response with `status`.
pub fn detail_response(status: StatusCode, detail: impl Into<Value>) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "detail": detail.into() }))
}

/// 401 for a missing, malformed, badly signed or expired bearer token; the same answer for
/// all, so nothing is learnt by probing.
pub fn not_authenticated() -> HttpResponse {
    let mut response = detail_response(StatusCode::UNAUTHORIZED, "Not authenticated");
    response.headers_mut().insert(
        actix_web::http::header::WWW_AUTHENTICATE,
        actix_web::http::header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// 403 for a signed-in caller without the role a route needs.
pub fn forbidden() -> HttpResponse {
    detail_response(StatusCode::FORBIDDEN, "Not enough permissions")
}

/// 404 for a path no route has.
pub fn not_found() -> HttpResponse {
    detail_response(StatusCode::NOT_FOUND, "Not Found")
}

/// 405 with the methods the path does have.
pub fn method_not_allowed(allow: &str) -> HttpResponse {
    let mut response = detail_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    if let Ok(value) = allow.parse() {
        response
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
    }
    response
}

/// 413 for a body over the limit.
pub fn payload_too_large(limit: usize) -> HttpResponse {
    detail_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than the limit of {limit} bytes"),
    )
}

/// 500 for a plugin that panicked or failed; the cause goes to the log, not the client.
pub fn plugin_internal_error(plugin_id: &str, request_id: &str) -> HttpResponse {
    HttpResponse::InternalServerError().json(json!({
        "detail": format!("internal error in plugin {plugin_id}"),
        "request_id": request_id,
    }))
}
