//! The host's record of one request in flight, handed to the plugin as an opaque
//! `RequestContext` and passed back with every host service call made while handling it:
//! it names the request in audit lines, says whose data the calls may see, and holds the
//! request's unit of work, which every call joins and which commits only if the response
//! shows the request succeeded.

use std::sync::Arc;

use abi_stable::{
    sabi_trait::TD_CanDowncast,
    std_types::{RArc, RString},
};
use actix_web::http::header::HeaderValue;
use plugin_api::abi::{RequestContext, RequestContextHandle, RequestContext_TO};

use crate::{
    auth::Caller,
    db::{unit_of_work::UnitOfWork, Database},
};

/// One request (or event delivery) in flight.
pub struct RequestState {
    /// The request id, as sent in `x-request-id` (a cheap, shared copy of that header); for
    /// an event delivery, `event-<id>`.
    request_id: HeaderValue,
    /// Who is calling, as verified from the bearer token; for an event delivery, the user on
    /// whose behalf the event was emitted (with no roles).
    pub caller: Option<Caller>,
    /// The request's database transaction and the events written in it.
    pub unit: Arc<UnitOfWork>,
}

impl RequestState {
    /// The request id.
    pub fn request_id(&self) -> &str {
        self.request_id.to_str().unwrap_or_default()
    }
}

/// The object behind a plugin's `RequestContext` handle.
#[derive(Clone)]
struct RequestHandle(Arc<RequestState>);

impl RequestContext for RequestHandle {
    fn request_id(&self) -> RString {
        RString::from(self.0.request_id())
    }
}

/// A new request record and the handle that crosses to the plugin.
pub fn new_request_context(
    request_id: &HeaderValue,
    caller: Option<Caller>,
    database: &Database,
) -> (Arc<RequestState>, RequestContextHandle) {
    let state = Arc::new(RequestState {
        request_id: request_id.clone(),
        caller,
        unit: Arc::new(UnitOfWork::new(database)),
    });
    let handle = handle_for(&state);
    (state, handle)
}

/// The context an event handler gets: it acts for `user_id` (the emitting request's
/// caller, if any) and joins the delivery's unit of work.
pub fn event_delivery_context(
    event_id: i64,
    user_id: Option<i64>,
    unit: Arc<UnitOfWork>,
) -> RequestContextHandle {
    let request_id = HeaderValue::from_str(&format!("event-{event_id}"))
        .expect("a number makes a valid header value");
    let state = Arc::new(RequestState {
        request_id,
        caller: user_id.map(|user_id| Caller {
            user_id,
            roles: Vec::new(),
        }),
        unit,
    });
    handle_for(&state)
}

fn handle_for(state: &Arc<RequestState>) -> RequestContextHandle {
    RequestContext_TO::from_ptr(RArc::new(RequestHandle(state.clone())), TD_CanDowncast)
}

/// The request record behind a handle the host created (`None` for a foreign handle).
pub fn request_state(handle: &RequestContextHandle) -> Option<Arc<RequestState>> {
    handle
        .obj
        .downcast_as::<RequestHandle>()
        .ok()
        .map(|handle| handle.0.clone())
}
