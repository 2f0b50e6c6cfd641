//! The binary interface between the PixSim7 host and a plugin library: the root module, the
//! request and response that cross per call, and the host services handed to a plugin.
//!
//! Everything here is `#[repr(C)]` and `StableAbi`, so abi_stable checks its layout when the
//! host loads a library. This crate changes rarely and has its own version, the ABI
//! version (docs/abi.md):
//!
//! - a **minor** release only appends: a field after the `last_prefix_field` marker of a
//!   prefix type ([`PluginModule`]), a method with a default body after the marker of a
//!   `#[sabi_trait]`, a constant of a code type ([`ServiceErrorKind`], [`FaultKind`]).
//!   A library built against an older minor keeps loading on a newer host.
//! - anything else (a field added to a plain struct, a changed signature, a removed item)
//!   is a **major** release, and the host refuses libraries of another major.
//!
//! What a plugin can ask the host for grows without touching this crate: host services are
//! called by operation name and version with a JSON payload ([`HostServices::call`]), and
//! the plugin's manifest crosses as JSON ([`PluginModule::describe`]); both grow by new
//! operations and new optional fields. The SDK (`plugin-api`) generates all of this; plugin
//! authors never touch it.
//!
//! ABI 1.1 appended [`HostServices::supports`] (capability queries).

// abi_stable generates `PluginModule_Ref`, `HostServices_TO` and the like; their names are
// its own.
#![allow(non_camel_case_types)]

pub use abi_stable;
pub use async_ffi;

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::{RRef, VersionStrings},
    std_types::{RArc, RBox, RCowStr, ROption, RResult, RSlice, RStr, RString, RVec, Tuple2},
    StableAbi,
};
use async_ffi::{BorrowingFfiFuture, FfiFuture};

/// This crate's version: the ABI version a library was built against.
pub const ABI_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The section of a plugin library that holds its descriptor (since 1.2): UTF-8 JSON with
/// `format` (1), `abi_version`, `manifest` and `routes` (method, path, summary, access), the
/// same manifest and route table `describe` returns. The host reads it from the file
/// before it opens the library, and refuses a library without it. The name depends on the
/// platform's object format: ELF `.pixsim7_plugin`, Mach-O `__DATA,__pixsim7_plug`, PE
/// `.pxs7dsc` (PE section names have at most 8 bytes).
pub const DESCRIPTOR_SECTION: &str = if cfg!(target_vendor = "apple") {
    "__pixsim7_plug"
} else if cfg!(windows) {
    ".pxs7dsc"
} else {
    ".pixsim7_plugin"
};

/// The outcome of a host service call: JSON bytes, or why not.
pub type ServiceResult = RResult<RVec<u8>, ServiceError>;

/// The outcome of one request crossing the boundary.
pub type HandleResult = RResult<FfiResponse, PluginFault>;

/// The outcome of a lifecycle hook or an event delivery.
pub type HookResult = RResult<(), PluginFault>;

/// The root module every plugin library exports (through the SDK's `export_plugin!`).
///
/// A prefix type: fields appended after `on_event` in a later minor are absent in libraries
/// built before, and the host reads them through `Option`-returning accessors (abi_stable's
/// default for fields after the `last_prefix_field` marker; never `missing_field(panic)`).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModule_Ref)))]
pub struct PluginModule {
    /// The plugin's manifest and route table as one JSON document (the SDK's
    /// `PluginDescriptor`). Pure: runs no hook and may be called before `on_load`.
    pub describe: extern "C" fn() -> RResult<RString, PluginFault>,
    /// First hook: receives the plugin's configuration and its host services. An error fails
    /// the plugin (and skips its dependents).
    pub on_load: extern "C" fn(context: FfiLoadContext) -> FfiFuture<HookResult>,
    /// Called in load order once the server is bound, before it serves.
    pub on_enable: extern "C" fn() -> FfiFuture<HookResult>,
    /// Called in reverse load order at shutdown, after in-flight requests have finished.
    pub on_disable: extern "C" fn() -> FfiFuture<HookResult>,
    /// Serves one request for the route at `route_index` in the descriptor's route table.
    /// The request is borrowed for the duration of the call: the future may hold on to it
    /// until it completes, and nothing of it after.
    pub handle: for<'a> extern "C" fn(
        route_index: u32,
        request: FfiRequest<'a>,
    ) -> BorrowingFfiFuture<'a, HandleResult>,
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
    ) -> FfiFuture<HookResult>,
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

/// The kind of a [`PluginFault`]: a code, so that a later minor can add kinds (a reader
/// treats a code it does not know as [`FaultKind::Error`]).
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaultKind(pub u8);

impl std::fmt::Debug for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            FaultKind::Error => f.write_str("Error"),
            FaultKind::Panic => f.write_str("Panic"),
            FaultKind(code) => write!(f, "FaultKind({code})"),
        }
    }
}

// Associated constants named like the variants they stand for, so code reads as it would
// with an enum.
#[allow(non_upper_case_globals)]
impl FaultKind {
    /// The plugin returned an error value.
    pub const Error: FaultKind = FaultKind(0);
    /// Plugin code panicked; the SDK caught the unwind inside the plugin.
    pub const Panic: FaultKind = FaultKind(1);
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

impl FfiMethod {
    /// Every method, in the order used for `Allow` headers.
    pub const ALL: [FfiMethod; 7] = [
        FfiMethod::Get,
        FfiMethod::Post,
        FfiMethod::Put,
        FfiMethod::Patch,
        FfiMethod::Delete,
        FfiMethod::Head,
        FfiMethod::Options,
    ];

    /// The upper-case name, e.g. `"GET"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            FfiMethod::Get => "GET",
            FfiMethod::Post => "POST",
            FfiMethod::Put => "PUT",
            FfiMethod::Patch => "PATCH",
            FfiMethod::Delete => "DELETE",
            FfiMethod::Head => "HEAD",
            FfiMethod::Options => "OPTIONS",
        }
    }
}

impl std::fmt::Display for FfiMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FfiMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<FfiMethod, String> {
        FfiMethod::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown HTTP method {s:?}"))
    }
}

/// One request, borrowed from the host for the duration of [`PluginModule::handle`].
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiRequest<'a> {
    /// The request method.
    pub method: FfiMethod,
    /// The full request path as received (percent-encoded), e.g. `/api/v1/game/sessions/7`.
    pub path: RStr<'a>,
    /// The route's named parameters and their raw (percent-encoded) values, in the order
    /// they appear in the pattern.
    pub path_params: RSlice<'a, Tuple2<RStr<'a>, RStr<'a>>>,
    /// The raw query string without the leading `?` (empty when absent).
    pub query: RStr<'a>,
    /// The request headers, read on demand (credentials are never shown to plugins).
    pub headers: RequestHeadersRef<'a>,
    /// The request body (already bounded by the host's body limit).
    pub body: RSlice<'a, u8>,
    /// The host's handle on this request; the SDK passes a clone back with every host
    /// service call made while handling it.
    pub context: &'a RequestContextHandle,
    /// Who is calling, as the host verified it from the bearer token (`None` on public
    /// routes when no valid token was sent). Plugins never parse tokens.
    pub caller: ROption<FfiCaller<'a>>,
}

/// A verified caller.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct FfiCaller<'a> {
    /// The user id (the token's subject).
    pub user_id: i64,
    /// The user's roles, e.g. `admin`.
    pub roles: RSlice<'a, RString>,
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

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ServiceError {}

/// The kind of a [`ServiceError`]; the SDK maps each to an HTTP status. A code, so that a
/// later minor can add kinds: a reader treats a code it does not know as `Unavailable`.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServiceErrorKind(pub u8);

impl std::fmt::Debug for ServiceErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match *self {
            ServiceErrorKind::PermissionDenied => "PermissionDenied",
            ServiceErrorKind::NotFound => "NotFound",
            ServiceErrorKind::Conflict => "Conflict",
            ServiceErrorKind::Invalid => "Invalid",
            ServiceErrorKind::Unavailable => "Unavailable",
            ServiceErrorKind::BadCall => "BadCall",
            ServiceErrorKind::NotSupported => "NotSupported",
            ServiceErrorKind(code) => return write!(f, "ServiceErrorKind({code})"),
        };
        f.write_str(name)
    }
}

// Associated constants named like the variants they stand for (see `FaultKind`).
#[allow(non_upper_case_globals)]
impl ServiceErrorKind {
    /// The plugin's manifest (or the operator) does not grant the permission the call needs.
    pub const PermissionDenied: ServiceErrorKind = ServiceErrorKind(0);
    /// The addressed record does not exist.
    pub const NotFound: ServiceErrorKind = ServiceErrorKind(1);
    /// The record changed since it was read (stale `expected_version`), or a uniqueness rule.
    pub const Conflict: ServiceErrorKind = ServiceErrorKind(2);
    /// The values are not acceptable (an empty name, a negative world time): usually the
    /// client's input, passed on.
    pub const Invalid: ServiceErrorKind = ServiceErrorKind(3);
    /// The host could not do it (database down, internal error).
    pub const Unavailable: ServiceErrorKind = ServiceErrorKind(4);
    /// The call itself is the plugin's mistake (malformed payload, an SQL error in its own
    /// statement, a reserved topic): a bug to fix, not the client's.
    pub const BadCall: ServiceErrorKind = ServiceErrorKind(5);
    /// This host does not offer the operation, or not in the requested version (an older
    /// host than the plugin was written for). [`HostServices::supports`] asks beforehand.
    pub const NotSupported: ServiceErrorKind = ServiceErrorKind(6);
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

/// A request's headers as they cross the boundary: borrowed for the call.
pub type RequestHeadersRef<'a> = RequestHeaders_TO<'a, RRef<'a, ()>>;

pub use host_services::{
    BlockingJob, BlockingJob_TO, HostServices, HostServices_TO, RequestContext, RequestContext_TO,
    RequestHeaders, RequestHeaders_TO,
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

        /// Calls version `version` of a host operation (the SDK's `plugin_api::game::ops`)
        /// with a JSON payload, answering JSON. The host checks the operation's permission
        /// first; an operation (or version) it does not offer answers
        /// [`ServiceErrorKind::NotSupported`]. `context` is the request being handled, if any.
        fn call(
            &self,
            context: ROption<RequestContextHandle>,
            operation: RStr<'_>,
            version: u32,
            payload: RVec<u8>,
        ) -> FfiFuture<ServiceResult>;

        /// Runs CPU-heavy or blocking work (password hashing, say) on the host's blocking
        /// pool, off the async workers other requests share. The future resolves when `job`
        /// has run; `Err` carries a panic message or why it could not run.
        #[sabi(last_prefix_field)]
        fn run_blocking(&self, job: BlockingJobBox) -> FfiFuture<RResult<(), RString>>;

        /// Since ABI 1.1: whether this host offers version `version` of `operation` (a
        /// capability query, for `on_load`). A host older than 1.1 lacks the method, and the
        /// answer is `false`: such a host offers only what ABI 1.0 hosts had, which a plugin
        /// finds out by calling (an operation it lacks answers `NotSupported`).
        fn supports(&self, operation: RStr<'_>, version: u32) -> bool {
            let _ = (operation, version);
            false
        }
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

    /// A request's headers, read on demand: most handlers read none, so nothing is copied
    /// or packed for them. `Authorization` and `Cookie` are never shown.
    #[sabi_trait]
    pub trait RequestHeaders: Send + Sync {
        /// The first value of the header `name` (case-insensitive); `None` when absent or
        /// not valid UTF-8.
        fn get<'s>(&'s self, name: RStr<'_>) -> ROption<RStr<'s>>;

        /// Every header as (lower-case name, value), in no particular order; values that
        /// are not valid UTF-8 are left out.
        #[sabi(last_prefix_field)]
        fn list<'s>(&'s self) -> RVec<Tuple2<RStr<'s>, RStr<'s>>>;
    }
}
