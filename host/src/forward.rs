//! The request path: one actix default service matches every request against the route
//! table and either answers it (host routes) or forwards it into the plugin that owns it.
//!
//! Invariant: the plugin's future is awaited right here, on the actix worker thread that
//! received the request; no thread hop, no blocking pool. Nothing a plugin returns or does
//! (panic, bad status, bad header) can make this path fail other than with a 500.

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures_core::Stream;

use abi_stable::{
    sabi_trait::TD_Opaque,
    sabi_types::RRef,
    std_types::{RCowStr, ROption, RResult, RSlice, RStr, RVec, Tuple2},
};
use actix_web::{
    http::{
        header::{
            HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE,
            COOKIE, PROXY_AUTHORIZATION,
        },
        Method as HttpMethod, StatusCode,
    },
    web::{self, Bytes},
    HttpRequest, HttpResponse,
};
use plugin_api::{
    abi::{
        FaultKind, FfiCaller, FfiRequest, FfiResponse, PluginModule_Ref, RequestContextHandle,
        RequestHeaders, RequestHeaders_TO,
    },
    sdk::{panic::CatchPanic, request::percent_decode},
    Access, Method,
};

use crate::{
    admin::AdminSnapshot,
    auth::{bearer_token, Caller, TokenKeys},
    client_address::ClientOrigin,
    config::HttpSettings,
    cors::{self, CorsPolicy},
    db::unit_of_work::UnitOfWork,
    events::EventBus,
    http_error,
    in_flight::InFlight,
    metrics::{metrics, RouteMetrics},
    pages::{self, Page},
    plugin_health::{IncidentKind, PluginHealth, Reenabled},
    readiness::Readiness,
    request_context::{new_request_context, recycle_request_context, RequestState},
    routing::{HostRoute, Lookup, RouteTable, Target, HOST_ROUTES},
    watchdog::Watchdog,
};

/// Header carrying the request id, in and out.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Everything the request path needs, shared read-only by all workers.
pub struct ServingState {
    /// Host and plugin routes.
    pub routes: RouteTable,
    /// The enabled plugins, indexed by `Target::Plugin::plugin`.
    pub plugins: Vec<ServedPlugin>,
    /// Pre-rendered admin API answers.
    pub admin: AdminSnapshot,
    /// Pre-rendered `/openapi.json`.
    pub openapi: Bytes,
    /// Largest request body accepted.
    pub body_limit: usize,
    /// The event outbox; it also ends each request's unit of work.
    pub events: Arc<EventBus>,
    /// Verifies bearer tokens.
    pub keys: TokenKeys,
    /// Which browser origins may call.
    pub cors: CorsPolicy,
    /// Time limits, the access log, who reads `/metrics`.
    pub http: HttpSettings,
    /// Each plugin's quarantine state, indexed like `plugins`.
    pub health: Arc<PluginHealth>,
    /// Watches handlers that block their worker.
    pub watchdog: Watchdog,
    /// Starting, ready or draining.
    pub readiness: Readiness,
    /// The requests being served, for the shutdown report.
    pub in_flight: InFlight,
    /// The metrics of each host route, indexed like `HOST_ROUTES`.
    pub host_metrics: Vec<RouteMetrics>,
    /// The metrics of requests that matched no route.
    pub unmatched_metrics: RouteMetrics,
    /// The metrics of CORS preflights (answered by the host).
    pub preflight_metrics: RouteMetrics,
    /// Plugins by state at startup (quarantines are counted live), for `/metrics`.
    pub plugin_states: Vec<&'static str>,
    /// Plugins subscribed to events, for their lag in `/metrics`.
    pub subscribers: Vec<String>,
}

impl ServingState {
    /// `(plugin id, "METHOD /template")` of route `route` of plugin `plugin`.
    pub fn describe_route(&self, plugin: usize, route: u32) -> (String, String) {
        let served = &self.plugins[plugin];
        (
            served.id.clone(),
            served.routes[route as usize].name.clone(),
        )
    }
}

/// An enabled plugin as the request path sees it.
pub struct ServedPlugin {
    /// Its id, for logs and error bodies.
    pub id: String,
    /// Its entry points.
    pub module: PluginModule_Ref,
    /// Its routes, indexed like its route table.
    pub routes: Vec<ServedRoute>,
}

/// One plugin route as the request path sees it.
pub struct ServedRoute {
    /// `METHOD /full/template`, for logs.
    pub name: String,
    /// The full path template (`/api/v1/game/worlds/{world_id}`).
    pub template: String,
    /// How long its handler may take.
    pub timeout: Duration,
    /// Its counters and latency histogram.
    pub metrics: RouteMetrics,
}

/// What the access log and the metrics say about one answered request.
struct Served<'s> {
    metrics: &'s RouteMetrics,
    plugin: &'s str,
    template: &'s str,
    user_id: Option<i64>,
}

/// The actix default service: every request comes through here.
pub async fn dispatch(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<ServingState>,
) -> HttpResponse {
    let started = Instant::now();
    let request_id_header = request_id(&request);
    let origin = state.cors.allowed_origin(&request);
    let (mut response, served) = if cors::is_preflight(&request) {
        let served = Served {
            metrics: &state.preflight_metrics,
            plugin: "host",
            template: "(preflight)",
            user_id: None,
        };
        (
            cors::preflight(&request, &state.routes, origin.is_some()),
            served,
        )
    } else {
        route_request(&request, payload, &state, &request_id_header).await
    };
    let status = response.status().as_u16();
    served.metrics.record(status, started);
    if state.http.access_log && tracing::enabled!(target: "pixsim7::access", tracing::Level::INFO) {
        log_access(&request, &request_id_header, status, started, &served);
    }
    if state.readiness.is_draining() {
        // Shutting down: this connection ends with this answer, so its client's next
        // request opens a new one, which the listener (or the next instance) takes.
        response
            .head_mut()
            .set_connection_type(actix_http::ConnectionType::Close);
    }
    response.headers_mut().insert(
        HeaderName::from_static(REQUEST_ID_HEADER),
        request_id_header,
    );
    cors::add_headers(&state.cors, &mut response, origin);
    response
}

/// The access log: one line per request, at INFO on the target `pixsim7::access`.
fn log_access(
    request: &HttpRequest,
    request_id: &HeaderValue,
    status: u16,
    started: Instant,
    served: &Served<'_>,
) {
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let method = request.method().as_str();
    tracing::info!(
        target: "pixsim7::access",
        request_id = request_id.to_str().unwrap_or_default(),
        method,
        route = served.template,
        path = request.path(),
        status,
        duration_ms,
        plugin = served.plugin,
        user_id = served.user_id,
        "{method} {} {status} {duration_ms:.1} ms",
        request.path(),
    );
}

/// Matches the request, checks who may call the route, and serves it.
async fn route_request<'s>(
    request: &HttpRequest,
    payload: web::Payload,
    state: &'s ServingState,
    request_id_header: &HeaderValue,
) -> (HttpResponse, Served<'s>) {
    let request_id = request_id_header.to_str().unwrap_or_default();
    let method = plugin_method(request.method());
    let unmatched = |response| {
        let served = Served {
            metrics: &state.unmatched_metrics,
            plugin: "none",
            template: "(unmatched)",
            user_id: None,
        };
        (response, served)
    };
    let (target, access, params) = match state.routes.lookup(method, request.path()) {
        Lookup::NotFound => return unmatched(http_error::not_found()),
        Lookup::MethodNotAllowed { allow } => {
            return unmatched(http_error::method_not_allowed(allow))
        }
        Lookup::Found {
            target,
            access,
            params,
        } => (target, access, params),
    };
    let mut served = match target {
        Target::Host(route) => {
            let index = HOST_ROUTES
                .iter()
                .position(|(_, _, r, _)| *r == route)
                .expect("every host route is in HOST_ROUTES");
            Served {
                metrics: &state.host_metrics[index],
                plugin: "host",
                template: HOST_ROUTES[index].1,
                user_id: None,
            }
        }
        Target::Plugin { plugin, route } => {
            let served_plugin = &state.plugins[plugin];
            let served_route = &served_plugin.routes[route as usize];
            Served {
                metrics: &served_route.metrics,
                plugin: &served_plugin.id,
                template: &served_route.template,
                user_id: None,
            }
        }
    };
    let caller = match authenticate(request, access, &state.keys, request_id) {
        Ok(caller) => caller,
        Err(Refusal::NotAuthenticated) => return (http_error::not_authenticated(), served),
        Err(Refusal::Forbidden) => return (http_error::forbidden(), served),
    };
    served.user_id = caller.as_ref().map(|c| c.user_id);
    let (plugin, route) = match target {
        Target::Host(route) => {
            let answer = serve_host_route(route, &params, request, state, caller.as_ref()).await;
            return (answer, served);
        }
        Target::Plugin { plugin, route } => (plugin, route),
    };
    if state.health.is_quarantined(plugin) {
        return (quarantined(state, plugin), served);
    }
    let _in_flight = state.in_flight.enter(request_id_header, plugin, route);
    // Raw values, borrowed from the path: the SDK decodes the ones the handler reads.
    let path_params: Vec<Tuple2<RStr<'_>, RStr<'_>>> = params
        .iter()
        .map(|(name, value)| Tuple2(RStr::from_str(name), RStr::from_str(value)))
        .collect();
    let (request_state, context) = new_request_context(
        request_id_header,
        caller,
        ClientOrigin::of(request),
        state.events.database(),
    );
    let call = PluginCall {
        plugin,
        route,
        method: method.expect("a matched route has a known method"),
        path_params: &path_params,
        context,
        caller: request_state.caller.as_ref(),
    };
    let response = forward_request(call, request, payload, request_id, state).await;
    let response = settle_request(
        &state.events,
        &request_state,
        response,
        &state.plugins[plugin].id,
    )
    .await;
    recycle_request_context(request_state);
    (response, served)
}

/// 503 for a route of a quarantined plugin.
fn quarantined(state: &ServingState, plugin: usize) -> HttpResponse {
    let retry_after = state.health.retry_after_secs();
    let mut response = http_error::detail_response(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "{} is temporarily unavailable; try again later",
            state.plugins[plugin].id
        ),
    );
    response.headers_mut().insert(
        actix_web::http::header::RETRY_AFTER,
        HeaderValue::from(retry_after),
    );
    response
}

/// Why a caller may not use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No valid token (401).
    NotAuthenticated,
    /// A valid token without the role (403).
    Forbidden,
}

/// Who is calling, checked against the route's access before any plugin code runs. On a
/// public route a missing or bad token just means an anonymous caller (a stale token must
/// not lock anyone out of signing in again); elsewhere it is 401, and a missing role 403.
fn authenticate(
    request: &HttpRequest,
    access: Access,
    keys: &TokenKeys,
    request_id: &str,
) -> Result<Option<Caller>, Refusal> {
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let verified = bearer_token(header).and_then(|token| token.map(|t| keys.verify(t)).transpose());
    match (access, verified) {
        (Access::Public, Ok(caller)) => Ok(caller),
        (Access::Public, Err(_)) => Ok(None),
        (_, Err(reason)) => {
            tracing::debug!(request_id, "refused a bearer token: {reason}");
            Err(Refusal::NotAuthenticated)
        }
        (_, Ok(caller)) => check_access(access, caller.as_ref()).map(|()| caller),
    }
}

/// Whether `caller` (verified, or nobody) may use a route with `access`.
pub fn check_access(access: Access, caller: Option<&Caller>) -> Result<(), Refusal> {
    match (access, caller) {
        (Access::Public, _) => Ok(()),
        (_, None) => Err(Refusal::NotAuthenticated),
        (Access::Admin, Some(caller)) if !caller.is_admin() => Err(Refusal::Forbidden),
        (_, Some(_)) => Ok(()),
    }
}

/// The detail of the 503 a request gets when its changes could not be committed.
pub const COMMIT_FAILED: &str =
    "the game database could not save this request's changes; nothing was changed";

/// Ends a request's unit of work by its response's status: commits below 400 (and logs a
/// failed commit, after which the response must become 503 [`COMMIT_FAILED`]), rolls back
/// otherwise. Whether the response may go out as it is.
pub async fn settle_unit(
    events: &EventBus,
    unit: &UnitOfWork,
    status: u16,
    plugin_id: &str,
    request_id: &str,
) -> bool {
    match events.settle(unit, status < 400).await {
        Ok(_) => true,
        Err(error) => {
            tracing::error!(
                plugin = plugin_id,
                request_id,
                error = %error,
                "could not commit the request's changes: {error}; answered 503 and nothing was kept"
            );
            false
        }
    }
}

/// Ends the request's unit of work: commits its writes and events if the response is a
/// success (below 400), rolls them back otherwise. The response leaves only after the
/// commit, so a client never sees success for a change that was not kept; a commit that
/// fails turns the answer into 503. (A request whose client went away never gets here: its
/// future is dropped, and with it the unit, which rolls back.)
async fn settle_request(
    events: &EventBus,
    request: &RequestState,
    response: HttpResponse,
    plugin_id: &str,
) -> HttpResponse {
    let status = response.status().as_u16();
    if settle_unit(
        events,
        &request.unit,
        status,
        plugin_id,
        request.request_id(),
    )
    .await
    {
        response
    } else {
        http_error::detail_response(StatusCode::SERVICE_UNAVAILABLE, COMMIT_FAILED)
    }
}

/// A matched plugin route, ready to be called.
struct PluginCall<'a> {
    /// Index into the served plugins.
    plugin: usize,
    route: u32,
    method: Method,
    path_params: &'a [Tuple2<RStr<'a>, RStr<'a>>],
    context: RequestContextHandle,
    caller: Option<&'a Caller>,
}

/// A request's headers as a plugin reads them: on demand, borrowed, without credentials.
pub(crate) struct PluginHeaders<'a>(pub(crate) &'a HeaderMap);

impl RequestHeaders for PluginHeaders<'_> {
    fn get<'s>(&'s self, name: RStr<'_>) -> ROption<RStr<'s>> {
        let Ok(name) = HeaderName::from_bytes(name.as_str().as_bytes()) else {
            return ROption::RNone;
        };
        if CREDENTIAL_HEADERS.contains(&name) {
            return ROption::RNone;
        }
        self.0
            .get(name)
            .and_then(|value| std::str::from_utf8(value.as_bytes()).ok())
            .map(RStr::from_str)
            .into()
    }

    fn list<'s>(&'s self) -> RVec<Tuple2<RStr<'s>, RStr<'s>>> {
        self.0
            .iter()
            .filter(|(name, _)| !CREDENTIAL_HEADERS.contains(name))
            .filter_map(|(name, value)| {
                let value = std::str::from_utf8(value.as_bytes()).ok()?;
                Some(Tuple2(RStr::from_str(name.as_str()), RStr::from_str(value)))
            })
            .collect()
    }
}

/// Reads the body, calls the plugin's handler for the matched route (within the route's
/// time limit, watched for blocking) and converts its answer.
async fn forward_request(
    call: PluginCall<'_>,
    request: &HttpRequest,
    payload: web::Payload,
    request_id: &str,
    state: &ServingState,
) -> HttpResponse {
    let PluginCall {
        plugin: plugin_index,
        route,
        method,
        path_params,
        context,
        caller,
    } = call;
    let plugin = &state.plugins[plugin_index];
    let served_route = &plugin.routes[route as usize];
    let body = match read_body(
        request,
        payload,
        state.body_limit,
        state.http.body_read_timeout,
    )
    .await
    {
        Ok(body) => body,
        Err(response) => return response,
    };
    let headers = PluginHeaders(request.headers());
    let ffi_request = FfiRequest {
        method,
        path: RStr::from_str(request.path()),
        path_params: RSlice::from_slice(path_params),
        query: RStr::from_str(request.query_string()),
        headers: RequestHeaders_TO::from_ptr(RRef::new(&headers), TD_Opaque),
        body: RSlice::from_slice(&body),
        context: &context,
        caller: caller
            .map(|caller| FfiCaller {
                user_id: caller.user_id,
                roles: RSlice::from_slice(&caller.roles),
            })
            .into(),
    };
    // The SDK catches panics inside the plugin; CatchPanic is the backstop for a plugin
    // future that panics past it ("FFI future panicked").
    let handler = state.watchdog.watch(
        plugin_index,
        route,
        CatchPanic::new((plugin.module.handle())(route, ffi_request)),
    );
    let called = Instant::now();
    let outcome = match tokio::time::timeout(served_route.timeout, handler).await {
        // A handler that blocked its worker past the limit finishes before the timer is
        // looked at: it is over its time all the same.
        Ok(_) if called.elapsed() > served_route.timeout => Err(()),
        other => other.map_err(|_| ()),
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(()) => {
            tracing::error!(
                plugin = %plugin.id,
                request_id,
                route = %served_route.name,
                timeout_secs = served_route.timeout.as_secs(),
                "plugin {} did not answer {} within {} s; answered 504 and dropped the handler",
                plugin.id,
                served_route.name,
                served_route.timeout.as_secs()
            );
            metrics()
                .timeouts
                .get_or_create(served_route.metrics.labels())
                .inc();
            return http_error::detail_response(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "the request took longer than {} s and was stopped; nothing was changed",
                    served_route.timeout.as_secs()
                ),
            );
        }
    };
    let panic = match outcome {
        Ok(RResult::ROk(response)) => return into_http_response(plugin, response, request_id),
        Ok(RResult::RErr(fault)) => {
            let what = match fault.kind {
                FaultKind::Panic => "panicked",
                _ => "failed",
            };
            tracing::error!(
                plugin = %plugin.id,
                request_id,
                method = %method,
                path = request.path(),
                "plugin {} {what} while handling {method} {}: {}",
                plugin.id,
                request.path(),
                fault.message
            );
            (fault.kind == FaultKind::Panic).then_some(fault.message.to_string())
        }
        Err(panic) => {
            tracing::error!(
                plugin = %plugin.id,
                request_id,
                "plugin {} panicked while handling {method} {}: {panic}",
                plugin.id,
                request.path()
            );
            Some(panic.to_string())
        }
    };
    if let Some(message) = panic {
        metrics().count_panic(&plugin.id);
        state.health.record(
            plugin_index,
            IncidentKind::Panic,
            &format!("{} panicked: {message}", served_route.name),
        );
    }
    http_error::plugin_internal_error(&plugin.id, request_id)
}

/// Reads the body, refusing anything over `limit` with 413 (early, from `Content-Length`,
/// when the client declares it).
/// The whole body must arrive within `timeout`, else 408.
async fn read_body(
    request: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, HttpResponse> {
    match tokio::time::timeout(timeout, read_body_unbounded(request, payload, limit)).await {
        Ok(read) => read,
        Err(_) => Err(http_error::detail_response(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                timeout.as_secs()
            ),
        )),
    }
}

async fn read_body_unbounded(
    request: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, HttpResponse> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(http_error::payload_too_large(limit));
    }
    // Read the chunks into one buffer of the declared size: actix's own collector starts
    // every body of unknown size at 32 KiB, which costs more than the request itself.
    let mut payload = payload;
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = std::future::poll_fn(|cx| Pin::new(&mut payload).poll_next(cx)).await {
        let chunk = chunk.map_err(|error| {
            http_error::detail_response(
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {error}"),
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(http_error::payload_too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Converts a plugin's response; an invalid status is the plugin's bug and answers 500, an
/// invalid header is dropped, both with a log line naming the plugin.
fn into_http_response(
    plugin: &ServedPlugin,
    response: FfiResponse,
    request_id: &str,
) -> HttpResponse {
    let Ok(status) = StatusCode::from_u16(response.status) else {
        tracing::error!(plugin = %plugin.id, request_id, "plugin {} answered with invalid status {}", plugin.id, response.status);
        return http_error::plugin_internal_error(&plugin.id, request_id);
    };
    let mut builder = HttpResponse::build(status);
    for Tuple2(name, value) in response.headers {
        let header_value = match &value {
            // Borrowed strings live in the plugin's static memory (never unloaded): no copy.
            RCowStr::Borrowed(text) => {
                HeaderValue::from_maybe_shared(Bytes::from_static(text.as_str().as_bytes()))
            }
            RCowStr::Owned(text) => HeaderValue::from_str(text),
        };
        // Most plugins send only a content type: skip parsing its name.
        let header_name = match name.as_str() {
            "content-type" => Ok(CONTENT_TYPE),
            other => HeaderName::from_bytes(other.as_bytes()),
        };
        match (header_name, header_value) {
            (Ok(name), Ok(value)) => {
                builder.append_header((name, value));
            }
            _ => tracing::warn!(
                plugin = %plugin.id,
                request_id,
                "plugin {} sent an invalid header {name:?}: {value:?}; dropped",
                plugin.id
            ),
        }
    }
    builder.body(Bytes::from_owner(response.body))
}

async fn serve_host_route(
    route: HostRoute,
    params: &matchit::Params<'_, '_>,
    request: &HttpRequest,
    state: &ServingState,
    caller: Option<&Caller>,
) -> HttpResponse {
    let json = |body: Bytes| {
        HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, "application/json"))
            .body(body)
    };
    match route {
        HostRoute::Health => json(Bytes::from_static(br#"{"status":"ok"}"#)),
        HostRoute::Ready => state.readiness.answer(state.events.database()).await,
        HostRoute::Metrics => serve_metrics(state, request).await,
        HostRoute::OpenApi => json(state.openapi.clone()),
        HostRoute::ListPlugins => json(state.admin.list(&state.health)),
        HostRoute::Docs => pages::serve_page(Page::Docs, request),
        HostRoute::DocsFile => {
            pages::serve_file(Page::Docs, params.get("file").unwrap_or_default(), request)
        }
        HostRoute::Dashboard => pages::serve_page(Page::Dashboard, request),
        HostRoute::DashboardFile => pages::serve_file(
            Page::Dashboard,
            params.get("file").unwrap_or_default(),
            request,
        ),
        HostRoute::GetPlugin => {
            let id = percent_decode(params.get("id").unwrap_or_default());
            match state.admin.get(&id, &state.events, &state.health).await {
                Some(body) => json(body),
                None => http_error::detail_response(
                    StatusCode::NOT_FOUND,
                    format!("no plugin with id {id:?}"),
                ),
            }
        }
        HostRoute::EnablePlugin => {
            let id = percent_decode(params.get("id").unwrap_or_default());
            enable_plugin(&id, state, caller).await
        }
    }
}

/// `POST /api/v1/plugins/{id}/enable`: lifts a quarantine.
async fn enable_plugin(id: &str, state: &ServingState, caller: Option<&Caller>) -> HttpResponse {
    let by = caller.map_or_else(
        || "an unknown caller".to_owned(),
        |c| format!("user {}", c.user_id),
    );
    let Some(index) = state.health.index_of(id) else {
        return match state.admin.state_of(id) {
            Some((plugin_state, reason)) => http_error::detail_response(
                StatusCode::CONFLICT,
                format!(
                    "plugin {id} is {plugin_state}{}: only a quarantined plugin can be re-enabled while serving; \
                     fix the cause and restart the host",
                    reason.map(|r| format!(" ({r})")).unwrap_or_default()
                ),
            ),
            None => http_error::detail_response(
                StatusCode::NOT_FOUND,
                format!("no plugin with id {id:?}"),
            ),
        };
    };
    let reenabled = state.health.enable(index, &by);
    match state.admin.get(id, &state.events, &state.health).await {
        Some(body) => HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, "application/json"))
            .insert_header((
                HeaderName::from_static("x-pixsim7-reenabled"),
                HeaderValue::from_static(if reenabled == Reenabled::Yes {
                    "true"
                } else {
                    "false"
                }),
            ))
            .body(body),
        None => {
            http_error::detail_response(StatusCode::NOT_FOUND, format!("no plugin with id {id:?}"))
        }
    }
}

/// `GET /metrics`: Prometheus text, public unless `[http] metrics = "admin"`.
async fn serve_metrics(state: &ServingState, request: &HttpRequest) -> HttpResponse {
    if state.http.metrics_admin_only {
        let request_id = request
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        match authenticate(request, Access::Admin, &state.keys, request_id) {
            Ok(_) => {}
            Err(Refusal::NotAuthenticated) => return http_error::not_authenticated(),
            Err(Refusal::Forbidden) => return http_error::forbidden(),
        }
    }
    let mut states = state.plugin_states.clone();
    for (index, _) in state.plugins.iter().enumerate() {
        if state.health.is_quarantined(index) {
            states.push("quarantined");
        } else {
            states.push("enabled");
        }
    }
    // The lags need the database: a scrape waits for them at most a second in all, and a lag
    // not known by then is left out (a busy database must not make the scrape fail).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut lags = Vec::with_capacity(state.subscribers.len());
    for subscriber in &state.subscribers {
        let lag = tokio::time::timeout_at(deadline, state.events.lag(subscriber)).await;
        lags.push((subscriber.clone(), lag.ok().and_then(Result::ok).flatten()));
    }
    match metrics().render(&states, &lags, state.in_flight.count()) {
        Ok(text) => HttpResponse::Ok()
            .insert_header((
                CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ))
            .body(text),
        Err(error) => {
            tracing::error!("cannot render the metrics: {error}");
            http_error::detail_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot render the metrics",
            )
        }
    }
}

fn plugin_method(method: &HttpMethod) -> Option<Method> {
    Some(match *method {
        HttpMethod::GET => Method::Get,
        HttpMethod::POST => Method::Post,
        HttpMethod::PUT => Method::Put,
        HttpMethod::PATCH => Method::Patch,
        HttpMethod::DELETE => Method::Delete,
        HttpMethod::HEAD => Method::Head,
        HttpMethod::OPTIONS => Method::Options,
        _ => return None,
    })
}

/// The client's `x-request-id` when it is short and plain, else a fresh one.
fn request_id(request: &HttpRequest) -> HeaderValue {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let given = request.headers().get(REQUEST_ID_HEADER).filter(|v| {
        (1..=128).contains(&v.len())
            && v.as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    });
    match given {
        // The client's own id, shared with its header: no copy.
        Some(id) => id.clone(),
        None => {
            // `<process tag>-<counter>` in hex, written by hand: `write!` costs more than the
            // rest of this function.
            let mut buffer = [0u8; 25];
            let mut length = push_hex(&mut buffer, 0, u64::from(process_tag()), 8);
            buffer[length] = b'-';
            length = push_hex(
                &mut buffer,
                length + 1,
                NEXT.fetch_add(1, Ordering::Relaxed),
                1,
            );
            HeaderValue::from_bytes(&buffer[..length])
                .expect("hex digits and '-' are a valid header value")
        }
    }
}

/// Writes `value` in lower-case hex at `at`, at least `min_digits` digits; the new end.
fn push_hex(buffer: &mut [u8], at: usize, value: u64, min_digits: usize) -> usize {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let significant = (64 - value.leading_zeros() as usize).div_ceil(4);
    let digits = significant.max(min_digits);
    for index in 0..digits {
        let shift = 4 * (digits - 1 - index);
        buffer[at + index] = DIGITS[((value >> shift) & 0xf) as usize];
    }
    at + digits
}

/// Headers a plugin never sees: the host has already turned them into the verified caller,
/// and a plugin holding a user's token could act as that user elsewhere.
const CREDENTIAL_HEADERS: [HeaderName; 3] = [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION];

/// A random tag per process, so ids from several instances do not collide.
fn process_tag() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    static TAG: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *TAG.get_or_init(|| RandomState::new().hash_one(std::process::id()) as u32)
}

#[cfg(test)]
mod tests {
    use super::push_hex;

    #[test]
    fn request_ids_are_hex_with_a_fixed_width_tag() {
        let mut buffer = [0u8; 25];
        let end = push_hex(&mut buffer, 0, 0xbeef, 8);
        buffer[end] = b'-';
        let end = push_hex(&mut buffer, end + 1, 0, 1);
        assert_eq!(&buffer[..end], b"0000beef-0");
        let end = push_hex(&mut buffer, 0, u64::MAX, 1);
        assert_eq!(&buffer[..end], b"ffffffffffffffff");
        assert_eq!(push_hex(&mut buffer, 0, 0x1234_5678, 8), 8);
        assert_eq!(&buffer[..8], b"12345678");
    }
}
