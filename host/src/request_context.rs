//! The host's record of one request in flight, handed to the plugin as an opaque
//! `RequestContext` and passed back with every host service call made while handling it:
//! it names the request in audit lines, says whose data the calls may see, and holds the
//! request's unit of work, which every call joins and which commits only if the response
//! shows the request succeeded.

use std::{cell::RefCell, sync::Arc};

use abi_stable::{
    sabi_trait::TD_CanDowncast,
    std_types::{RArc, RString},
};
use actix_web::http::header::HeaderValue;
use plugin_api::abi::{RequestContext, RequestContextHandle, RequestContext_TO};

use crate::{
    auth::Caller,
    client_address::ClientOrigin,
    db::{unit_of_work::UnitOfWork, Database},
};

/// One request (or event delivery) in flight; the object behind its `RequestContext`
/// handle, so that a handle is one allocation (and, for requests, a pooled one).
#[derive(Clone)]
pub struct RequestState {
    /// The request id, as sent in `x-request-id` (a cheap, shared copy of that header); for
    /// an event delivery, `event-<id>`.
    request_id: HeaderValue,
    /// Who is calling, as verified from the bearer token; for an event delivery, the user on
    /// whose behalf the event was emitted (with no roles).
    pub caller: Option<Caller>,
    /// Where the request came from (peer and `X-Forwarded-For`, resolved on demand against
    /// the trusted proxies); empty for an event delivery.
    pub client: ClientOrigin,
    /// The request's database transaction and the events written in it.
    pub unit: Arc<UnitOfWork>,
}

/// A request record shared between the host and the plugin's handle on it.
pub type SharedRequestState = RArc<RequestState>;

impl RequestState {
    /// The request id.
    pub fn request_id(&self) -> &str {
        self.request_id.to_str().unwrap_or_default()
    }
}

impl RequestContext for RequestState {
    fn request_id(&self) -> RString {
        RString::from(RequestState::request_id(self))
    }
}

/// Request records of finished requests, per worker thread, ready for the next request.
const POOLED_PER_THREAD: usize = 64;

thread_local! {
    static POOL: RefCell<Vec<SharedRequestState>> = const { RefCell::new(Vec::new()) };
}

/// A new request record and the handle that crosses to the plugin. The record comes from
/// this thread's pool when one is free (see [`recycle_request_context`]).
pub fn new_request_context(
    request_id: &HeaderValue,
    caller: Option<Caller>,
    client: ClientOrigin,
    database: &Database,
) -> (SharedRequestState, RequestContextHandle) {
    let state = match POOL.with(|pool| pool.borrow_mut().pop()) {
        // Pooled records were unique when pooled, and nothing reaches them in the pool.
        Some(mut state) => {
            let record = RArc::get_mut(&mut state).expect("a pooled record is unique");
            let unit = Arc::get_mut(&mut record.unit).expect("a pooled unit is unique");
            *unit = UnitOfWork::new(database);
            record.request_id = request_id.clone();
            record.caller = caller;
            record.client = client;
            state
        }
        None => RArc::new(RequestState {
            request_id: request_id.clone(),
            caller,
            client,
            unit: Arc::new(UnitOfWork::new(database)),
        }),
    };
    let handle = RequestContext_TO::from_ptr(state.clone(), TD_CanDowncast);
    (state, handle)
}

/// Returns a finished request's record to this thread's pool, if nothing else holds it or
/// its unit of work (a plugin may have kept a clone of its handle). Call it after the unit
/// was settled.
pub fn recycle_request_context(mut state: SharedRequestState) {
    let Some(record) = RArc::get_mut(&mut state) else {
        return;
    };
    if Arc::get_mut(&mut record.unit).is_none() {
        return;
    }
    // Nothing of the request stays alive in the pool (its id shares the request's buffer).
    record.caller = None;
    record.client = ClientOrigin::default();
    record.request_id = HeaderValue::from_static("");
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOLED_PER_THREAD {
            pool.push(state);
        }
    });
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
    let state = RArc::new(RequestState {
        request_id,
        caller: user_id.map(|user_id| Caller {
            user_id,
            roles: Vec::new(),
        }),
        client: ClientOrigin::default(),
        unit,
    });
    RequestContext_TO::from_ptr(state, TD_CanDowncast)
}

/// The request record behind a handle the host created (`None` for a foreign handle).
pub fn request_state(handle: &RequestContextHandle) -> Option<SharedRequestState> {
    handle.clone().obj.downcast_into::<RequestState>().ok()
}
