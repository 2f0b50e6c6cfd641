//! CORS for the game's browser front end: the origins the operator allows (`[cors]
//! allowed_origins`, none by default, `*` for any) get the CORS headers, and preflight
//! requests are answered by the host without reaching a plugin.

use actix_web::{
    http::{
        header::{self, HeaderValue},
        Method, StatusCode,
    },
    HttpRequest, HttpResponse,
};

use crate::{
    http_error,
    routing::{Lookup, RouteTable},
};

/// How long a browser may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// The operator's allowed origins.
#[derive(Debug, Clone, Default)]
pub struct CorsPolicy {
    origins: Vec<String>,
    any: bool,
}

impl CorsPolicy {
    /// A policy allowing `origins` (`*` allows any).
    pub fn new(origins: &[String]) -> CorsPolicy {
        CorsPolicy {
            any: origins.iter().any(|o| o == "*"),
            origins: origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_owned())
                .collect(),
        }
    }

    /// Whether answers differ by origin: whenever any origin is allowed, since the allowed
    /// origin is echoed in `Access-Control-Allow-Origin` (with `*` too: the echo is what lets
    /// a browser send credentials), so a cache must key on `Origin`.
    pub fn varies_by_origin(&self) -> bool {
        !self.origins.is_empty()
    }

    /// The request's `Origin` if this policy allows it.
    pub fn allowed_origin(&self, request: &HttpRequest) -> Option<HeaderValue> {
        let origin = request.headers().get(header::ORIGIN)?;
        let text = origin.to_str().ok()?;
        (self.any || self.origins.iter().any(|o| o == text)).then(|| origin.clone())
    }
}

/// Whether the request is a CORS preflight.
pub fn is_preflight(request: &HttpRequest) -> bool {
    request.method() == Method::OPTIONS
        && request.headers().contains_key(header::ORIGIN)
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Answers a preflight: 204 with the path's methods for an allowed origin, 403 otherwise.
pub fn preflight(request: &HttpRequest, routes: &RouteTable, allowed: bool) -> HttpResponse {
    if !allowed {
        return http_error::detail_response(StatusCode::FORBIDDEN, "CORS origin not allowed");
    }
    // OPTIONS itself is no route's method, so the lookup answers with the path's methods.
    let methods = match routes.lookup(None, request.path()) {
        Lookup::MethodNotAllowed { allow } => allow.to_owned(),
        Lookup::Found { .. } => "GET".to_owned(),
        Lookup::NotFound => return http_error::not_found(),
    };
    let requested_headers = request
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("authorization, content-type")
        .to_owned();
    HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, methods))
        .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, requested_headers))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE))
        .finish()
}

/// Adds the CORS headers to a response: for an allowed origin, the allowance; whenever
/// the answer depends on the origin, `Vary: Origin` (appended, keeping a plugin's own), so
/// a shared cache never serves one origin's answer to another.
pub fn add_headers(policy: &CorsPolicy, response: &mut HttpResponse, origin: Option<HeaderValue>) {
    let headers = response.headers_mut();
    if policy.varies_by_origin() {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-request-id"),
        );
    }
}
