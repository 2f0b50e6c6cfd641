//! The FFI-safe contract between the host and a plugin library: the root module, the
//! request and response that cross per call, and the host services handed to a plugin.
//!
//! Everything here is `#[repr(C)]` and `StableAbi`, so abi_stable checks its layout when the
//! host loads a library. The crate version is the ABI version: a change to any type in this
//! module is a breaking change and bumps the minor version (0.x), which makes the host refuse
//! plugins built against the old one. Fields and methods are only ever appended after the
//! `last_prefix_field` markers, which keeps older plugins loadable.
//!
//! Plugin authors never touch this module; the SDK (`crate::sdk`) generates all of it.

// abi_stable generates `PluginModule_Ref` and `HostServices_TO`; their names are its own.
#![allow(non_camel_case_types)]

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RArc, RBox, RCowStr, ROption, RResult, RStr, RString, RVec, Tuple2},
    StableAbi,
};
use async_ffi::FfiFuture;

/// The outcome of a host service call: JSON bytes, or why not.
pub type ServiceResult = RResult<RVec<u8>, ServiceError>;

/// The root module every plugin library exports (through `export_plugin!`).
///
/// A prefix type: the host can load plugins built against an older plugin-api that lacks
/// fields appended after `handle`, and sees those fields as absent.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModule_Ref)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// The plugin's manifest and route table as one JSON document
    /// ([`crate::PluginDescriptor`]). Pure: runs no hook and may be called before `on_load`.
    pub describe: extern "C" fn() -> RResult<RString, PluginFault>,
    /// First hook: receives the plugin's configuration and its host services. An error fails
    /// the plugin (and skips its dependents).
    pub on_load: extern "C" fn(context: FfiLoadContext) -> FfiFuture<RResult<(), PluginFault>>,
    /// Called in load order once the server is bound, before it serves.
    pub on_enable: extern "C" fn() -> FfiFuture<RResult<(), PluginFault>>,
    /// Called in reverse load order at shutdown, after in-flight requests have finished.
    pub on_disable: extern "C" fn() -> FfiFuture<RResult<(), PluginFault>>,
    /// Serves one request for the route at `route_index` in the descriptor's route table.
    pub handle: extern "C" fn(
        route_index: u32,
        request: FfiRequest,
    ) -> FfiFuture<RResult<FfiResponse, PluginFault>>,
    /// Receives one event the plugin subscribed to: who emitted it (a plugin id, or `host`),
    /// its topic, its JSON payload, and the delivery's context (acting for the user on whose
    /// behalf it was emitted, joined to the delivery's unit of work), which the SDK passes
    /// back with the host service calls the handler makes.
    #[sabi(last_prefix_field)]
    pub on_event: extern "C" fn(
        source: RString,
        topic: RString,
        payload: RVec<u8>,
        context: RequestContextHandle,
    ) -> FfiFuture<RResult<(), PluginFault>>,
}

impl RootModule for PluginModule_Ref {
    declare_root_module_statics! {PluginModule_Ref}
    const BASE_NAME: &'static str = "pixsim7_plugin";
    const NAME: &'static str = "pixsim7 plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// Why a call into plugin code produced no result.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginFault {
    /// Whether the plugin returned an error or panicked.
    pub kind: FaultKind,
    /// The error message, or the panic message with its source location.
    pub message: RString,
}

/// The kind of a [`PluginFault`].
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The plugin returned an error value.
    Error,
    /// Plugin code panicked; the SDK caught the unwind inside the plugin.
    Panic,
}

/// An HTTP method a route can answer.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FfiMethod {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
    /// `HEAD`
    Head,
    /// `OPTIONS`
    Options,
}

/// One request, owned by the plugin for the duration of the call.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiRequest {
    /// The request method.
    pub method: FfiMethod,
    /// The full request path as received, e.g. `/api/v1/game/sessions/7`.
    pub path: RString,
    /// Values of the route's named parameters, in the order they appear in the pattern.
    pub path_params: RVec<Tuple2<RString, RString>>,
    /// The raw query string without the leading `?` (empty when absent).
    pub query: RString,
    /// Request headers as `name:value\n` lines in one buffer (one allocation, however many
    /// headers); names lower-case, values that are not UTF-8 passed lossily. HTTP forbids
    /// line breaks in values, and names cannot hold `:`.
    pub headers: RString,
    /// The request body (already bounded by the host's body limit).
    pub body: RVec<u8>,
    /// The host's handle on this request; the SDK passes it back with every host service
    /// call made while handling it (events emitted then wait for the response).
    pub context: RequestContextHandle,
    /// Who is calling, as the host verified from the bearer token (`None` on public routes
    /// when no valid token was sent). Plugins never parse tokens.
    pub caller: ROption<FfiCaller>,
}

/// A verified caller.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiCaller {
    /// The user id (the token's subject).
    pub user_id: i64,
    /// The user's roles, e.g. `admin`.
    pub roles: RVec<RString>,
}

/// A plugin's answer to one request.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct FfiResponse {
    /// HTTP status code.
    pub status: u16,
    /// Response headers; static names and values (`content-type: application/json`) are
    /// borrowed from the plugin, which is never unloaded, so they cost no allocation.
    pub headers: RVec<Tuple2<RCowStr<'static>, RCowStr<'static>>>,
    /// The response body.
    pub body: RVec<u8>,
}

/// Why a host service call did not succeed.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    /// What kind of failure.
    pub kind: ServiceErrorKind,
    /// What happened, for the plugin's error response or log.
    pub message: RString,
}

/// The kind of a [`ServiceError`]; the SDK maps each to an HTTP status.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceErrorKind {
    /// The plugin's manifest (or the operator) does not grant the permission the call needs.
    PermissionDenied,
    /// The addressed record does not exist.
    NotFound,
    /// The record changed since it was read (stale `expected_version`), or a uniqueness rule.
    Conflict,
    /// The values are not acceptable (an empty name, a negative world time): usually the
    /// client's input, passed on.
    Invalid,
    /// The host could not do it (database down, internal error).
    Unavailable,
    /// The call itself is the plugin's mistake (unknown operation, malformed payload, an
    /// SQL error in its own statement, a reserved topic): a bug to fix, not the client's.
    BadCall,
}

/// Severity of a log line a plugin emits through the host.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Something failed.
    Error,
    /// Something is wrong but the plugin goes on.
    Warn,
    /// Normal operation worth recording.
    Info,
    /// Detail for the plugin's developers.
    Debug,
    /// Very verbose detail.
    Trace,
}

/// What the host hands to a plugin's `on_load`.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiLoadContext {
    /// The plugin's `[plugins.<id>]` table from the host configuration (host keys such as
    /// `enabled` removed), as a JSON object.
    pub config_json: RString,
    /// The most verbose level the host records for this plugin; lines below it are dropped
    /// inside the plugin, before any formatting.
    pub max_log_level: LogLevel,
    /// The services this plugin may call, bound to the plugin's identity by the host.
    pub services: HostServicesHandle,
}

/// The host services trait object as it crosses the boundary.
pub type HostServicesHandle = HostServices_TO<RArc<()>>;

/// The per-request context object as it crosses the boundary.
pub type RequestContextHandle = RequestContext_TO<RArc<()>>;

/// A piece of blocking work as it crosses the boundary.
pub type BlockingJobBox = BlockingJob_TO<RBox<()>>;

pub use host_services::{
    BlockingJob, BlockingJob_TO, HostServices, HostServices_TO, RequestContext, RequestContext_TO,
};

mod host_services {
    // `#[sabi_trait]` expands to impls inside a generated module, which trips this lint;
    // the code is abi_stable's, so the allowance lives here, once.
    #![allow(non_local_definitions)]

    use super::*;

    /// Services the host offers to one plugin. The host builds one object per plugin, so every
    /// call is attributed to that plugin; a plugin cannot act under another's name.
    #[sabi_trait]
    pub trait HostServices: Clone + Send + Sync + 'static {
        /// Writes one log line into the host's `tracing` output, tagged with the plugin id
        /// (needs `log:emit`; without it the line is dropped and the host warns once).
        fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>);

        /// Calls a host service operation (see `crate::game::ops`) with a JSON payload,
        /// answering JSON. The host checks the operation's permission first. `context` is the
        /// request being handled, if any.
        fn call(
            &self,
            context: ROption<RequestContextHandle>,
            operation: RStr<'_>,
            payload: RVec<u8>,
        ) -> FfiFuture<ServiceResult>;

        /// Runs CPU-heavy or blocking work (password hashing, say) on the host's blocking
        /// pool, off the async workers other requests share. The future resolves when `job`
        /// has run; `Err` carries a panic message or why it could not run.
        #[sabi(last_prefix_field)]
        fn run_blocking(&self, job: BlockingJobBox) -> FfiFuture<RResult<(), RString>>;
    }

    /// Work handed to [`HostServices::run_blocking`]; the SDK builds it from a closure.
    #[sabi_trait]
    pub trait BlockingJob: Send + 'static {
        /// Runs the work (once), catching panics inside the plugin.
        #[sabi(last_prefix_field)]
        fn run(&mut self) -> RResult<(), RString>;
    }

    /// The host's record of one request in flight. Opaque to plugins; the SDK hands it back
    /// to the host with the service calls made while handling that request.
    #[sabi_trait]
    pub trait RequestContext: Clone + Send + Sync + 'static {
        /// The id the host assigned to the request (also in the `x-request-id` response
        /// header); asked for only by plugins that use it.
        #[sabi(last_prefix_field)]
        fn request_id(&self) -> RString;
    }
}
