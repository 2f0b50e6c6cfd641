//! What a plugin author implements: the [`Plugin`] trait (with the constant manifest and
//! route table of `declaration.rs`), the [`Handler`]s its routes call, and the
//! [`LoadContext`] handed to `on_load`.

use std::future::Future;

use abi_stable::std_types::{RResult, RString};
use async_ffi::{BorrowingFfiFuture, FutureExt};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    declaration::{PluginManifest, Route},
    error::PluginError,
    host::Host,
    panic::CatchPanic,
    request::Request,
    response::IntoResponse,
};
use crate::{
    abi::{FaultKind, HandleResult, PluginFault},
    route::Migration,
};

/// A plugin: its manifest, its routes, and its lifecycle hooks.
///
/// The value returned by `on_load` lives for the rest of the process and every handler
/// receives a `&'static` reference to it, so it is the place for configuration and state.
/// A plugin that needs no configuration skips `on_load` and derives `Default`: its value is
/// then `Default::default()`.
///
/// The manifest and the route table are constants: the compiler evaluates them, and
/// `export_plugin!` writes them into the library file, where the host reads them without
/// running any of the plugin's code (to list it, order it, or refuse it).
pub trait Plugin: Sized + Send + Sync + 'static {
    /// The manifest: id, name, version, dependencies, permissions...
    const MANIFEST: PluginManifest;

    /// The routes: `&[Route::get("/hello/{name}", "Greets someone", greet), ...]`. The host
    /// calls a route's handler by its position in this table.
    const ROUTES: &'static [Route<Self>];

    /// Migrations for the plugin's own tables (name them `<plugin_id>__<table>`, with `_`
    /// for `-`), applied by the host in version order before `on_load`. Usually
    /// `vec![Migration { version: 1, description: .., sql: include_str!(..).into() }]`.
    fn migrations() -> Vec<Migration> {
        Vec::new()
    }

    /// Builds the plugin from its configuration. An error fails the plugin (its dependents
    /// are skipped) and is logged with the plugin id.
    ///
    /// Optional: without it the plugin value is `Default::default()`, which `export_plugin!`
    /// requires then (a type that is not `Default` and lacks `on_load` fails to load, with a
    /// message saying so).
    fn on_load(context: LoadContext) -> impl Future<Output = Result<Self, PluginError>> + Send {
        let _ = context;
        async { Err(PluginError::no_on_load()) }
    }

    /// Called once the server is bound, in load order.
    fn on_enable(&self) -> impl Future<Output = Result<(), PluginError>> + Send {
        async { Ok(()) }
    }

    /// Called at shutdown in reverse load order, after in-flight requests have finished.
    fn on_disable(&self) -> impl Future<Output = Result<(), PluginError>> + Send {
        async { Ok(()) }
    }

    /// Receives an event matching the manifest's `subscriptions` (needs `event:subscribe`).
    /// Events arrive one at a time, in emission order; an error or panic is logged by the
    /// host and the next event still comes.
    fn on_event(&self, event: Event) -> impl Future<Output = Result<(), PluginError>> + Send {
        let _ = event;
        async { Ok(()) }
    }
}

/// An event delivered to [`Plugin::on_event`].
#[derive(Clone)]
pub struct Event {
    /// Who emitted it: a plugin id, or `host` for `app:*` and `plugin:*` (the host checked
    /// that the emitter declared the topic in its manifest's `emits`).
    pub source: String,
    /// The topic, e.g. `stealth:pickpocket`.
    pub topic: String,
    /// The JSON payload.
    pub payload: Value,
    pub(crate) host: Host,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("source", &self.source)
            .field("topic", &self.topic)
            .field("payload", &self.payload)
            .finish_non_exhaustive()
    }
}

impl Event {
    /// The host services acting for the user on whose behalf the event was emitted (the
    /// caller of the request that emitted it; nobody for host events and events a plugin
    /// emitted outside a request), joined to this delivery's unit of work: the handler's
    /// writes commit together with the delivery, exactly once.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The payload deserialized into `T`; a mismatch is an error naming the topic and field.
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        serde_path_to_error::deserialize(&self.payload).map_err(|error| {
            let path = error.path().to_string();
            PluginError::new(format!(
                "unexpected {} payload at {path}: {}",
                self.topic,
                error.into_inner()
            ))
        })
    }
}

/// A request handler: an `async fn(&MyPlugin, Request<'_>) -> impl IntoResponse`. The
/// request is borrowed from the host for as long as the handler runs.
pub trait Handler<P>: Send + Sync + 'static {
    /// Serves one request; panics inside are caught and reported as a fault.
    fn call<'a>(
        &'static self,
        plugin: &'static P,
        request: Request<'a>,
    ) -> BorrowingFfiFuture<'a, HandleResult>;
}

/// A handler function for one request lifetime `'a`: lets [`Handler`] be implemented for
/// every `async fn(&P, Request<'_>)`, whose future borrows the request.
pub trait HandlerFn<'a, P: 'static>: Send + Sync + 'static {
    /// The handler's future.
    type Future: Future<Output = Self::Output> + Send + 'a;
    /// What it answers.
    type Output: IntoResponse;
    /// Calls the handler.
    fn invoke(&self, plugin: &'static P, request: Request<'a>) -> Self::Future;
}

impl<'a, P, F, Fut> HandlerFn<'a, P> for F
where
    P: 'static,
    F: Fn(&'static P, Request<'a>) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'a,
    Fut::Output: IntoResponse,
{
    type Future = Fut;
    type Output = Fut::Output;
    fn invoke(&self, plugin: &'static P, request: Request<'a>) -> Fut {
        self(plugin, request)
    }
}

impl<P, F> Handler<P> for F
where
    P: Sync + 'static,
    F: for<'a> HandlerFn<'a, P>,
{
    fn call<'a>(
        &'static self,
        plugin: &'static P,
        request: Request<'a>,
    ) -> BorrowingFfiFuture<'a, HandleResult> {
        // The handler is called inside the guarded future, so a panic while creating its
        // future is caught as well as one while polling it.
        let guarded = CatchPanic::new(async move {
            self.invoke(plugin, request)
                .await
                .into_response()
                .into_ffi()
        });
        async move {
            match guarded.await {
                Ok(response) => RResult::ROk(response),
                Err(message) => RResult::RErr(PluginFault {
                    kind: FaultKind::Panic,
                    message: RString::from(message),
                }),
            }
        }
        .into_ffi()
    }
}

/// What `on_load` receives: the plugin's configuration and its handle on the host.
pub struct LoadContext {
    config: Value,
    host: Host,
}

impl LoadContext {
    pub(crate) fn new(config: Value, host: Host) -> LoadContext {
        LoadContext { config, host }
    }

    /// The plugin's `[plugins.<id>]` table from the host config, as JSON (an empty object
    /// when the operator configured nothing).
    pub fn config(&self) -> &Value {
        &self.config
    }

    /// The configuration deserialized into `T`; a mismatch is an error naming the field.
    pub fn config_as<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        serde_path_to_error::deserialize(&self.config).map_err(|error| {
            let path = error.path().to_string();
            PluginError::new(format!(
                "invalid configuration at {path}: {}",
                error.into_inner()
            ))
        })
    }

    /// The plugin's own host services: keep them for work outside requests (hooks, caches,
    /// background tasks). They act as the plugin itself, which sees no user's worlds or
    /// sessions unless it holds `system:read`; in handlers use `request.host()`.
    pub fn host(&self) -> Host {
        self.host.clone()
    }

    pub(crate) fn services(&self) -> crate::abi::HostServicesHandle {
        self.host.services()
    }
}
