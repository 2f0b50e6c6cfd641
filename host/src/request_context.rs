//! The host's record of one request in flight, handed to the plugin as an opaque
//! `RequestContext` and passed back with every host service call made while handling it:
//! it names the request in audit lines and holds the events emitted during it until the
//! response shows the request succeeded.

use std::sync::{Arc, Mutex};

use abi_stable::{
    sabi_trait::TD_CanDowncast,
    std_types::{RArc, RString},
};
use actix_web::http::header::HeaderValue;
use plugin_api::abi::{RequestContext, RequestContextHandle, RequestContext_TO};
use serde_json::Value;

use crate::auth::Caller;

/// An event emitted during a request, waiting for its outcome.
pub struct PendingEvent {
    /// The emitting plugin.
    pub emitter: String,
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Value,
}

/// One request in flight.
pub struct RequestState {
    /// The request id, as sent in `x-request-id` (a cheap, shared copy of that header).
    request_id: HeaderValue,
    /// Who is calling, as verified from the bearer token.
    pub caller: Option<Caller>,
    pending_events: Mutex<Vec<PendingEvent>>,
}

impl RequestState {
    /// The request id.
    pub fn request_id(&self) -> &str {
        self.request_id.to_str().unwrap_or_default()
    }

    /// Holds an event until the request's outcome is known.
    pub fn hold_event(&self, event: PendingEvent) {
        self.pending_events
            .lock()
            .expect("request lock")
            .push(event);
    }

    /// The held events, in emission order.
    pub fn take_events(&self) -> Vec<PendingEvent> {
        std::mem::take(&mut *self.pending_events.lock().expect("request lock"))
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
) -> (Arc<RequestState>, RequestContextHandle) {
    let state = Arc::new(RequestState {
        request_id: request_id.clone(),
        caller,
        pending_events: Mutex::new(Vec::new()),
    });
    let handle =
        RequestContext_TO::from_ptr(RArc::new(RequestHandle(state.clone())), TD_CanDowncast);
    (state, handle)
}

/// The request record behind a handle the host created (`None` for a foreign handle).
pub fn request_state(handle: &RequestContextHandle) -> Option<Arc<RequestState>> {
    handle
        .obj
        .downcast_as::<RequestHandle>()
        .ok()
        .map(|handle| handle.0.clone())
}
