//! Support for testing a plugin crate (built as `rlib` too) in-process.
//!
//! Plugin tests run the plugin against the host's real services with
//! `host::testing::{TestHost, TestPlugin}` (a dev-dependency on the `host` crate): a
//! throwaway SQLite database, the host's migrations and the plugin's own, users, worlds,
//! sessions, routes called as a user, events delivered to `on_event`:
//!
//! ```text
//! let host = host::testing::TestHost::new();
//! let plugin = host.load::<DiceGame>(json!({"seed": 7})).unwrap();
//! let response = plugin.post_json_as(host.new_user(), "/dice-game/roll", &json!({"dice": "2d6"}));
//! assert_eq!(response.status, 200);
//! ```
//!
//! This module holds what that harness needs from the SDK — [`TestRuntime`], one plugin
//! instance of its own with the same entry points the exported module has — and
//! [`descriptor_of`], which checks a manifest and route table without any host.

use std::{
    future::Future,
    pin::pin,
    sync::Arc,
    task::{Context, Poll, Wake, Waker},
    thread::Thread,
};

use abi_stable::std_types::{RResult, RString};
use async_ffi::{BorrowingFfiFuture, FfiFuture, FutureExt};
use serde_json::Value;

use super::{
    export::{guarded, ExportedPlugin, Runtime},
    host::Host,
    panic::catch_panic,
    plugin::{LoadContext, Plugin},
};
use crate::{
    abi::{
        FaultKind, FfiRequest, HandleResult, HookResult, HostServicesHandle, PluginFault,
        RequestContextHandle,
    },
    route::{Method, PluginDescriptor},
};

/// Plugin `P`'s manifest and routes, validated as the host would, without a host. To run a
/// plugin in a test (call its routes, deliver events to it), use `host::testing::TestPlugin`,
/// which runs it against the host's real services.
pub fn descriptor_of<P: Plugin>() -> Result<PluginDescriptor, crate::ManifestErrors> {
    let descriptor = Runtime::<P>::new(None).descriptor;
    descriptor.validate().map(|()| descriptor)
}

/// One instance of plugin `P` with the entry points of its exported module (`on_load`,
/// `on_enable`, `on_disable`, `handle`, `on_event`), for a test host that has no library to
/// open. Each `TestRuntime` is an instance of its own (never the library's process-wide
/// one), so tests running in parallel each load their own plugin. Every entry point runs
/// the plugin under panic containment and answers as the module would.
///
/// Used by `host::testing`; not meant to be called by plugin tests directly.
#[doc(hidden)]
pub struct TestRuntime<P: ExportedPlugin> {
    /// Leaked, as a library's runtime is never unloaded: handlers get `&'static` references.
    runtime: &'static Runtime<P>,
}

impl<P: ExportedPlugin> Clone for TestRuntime<P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P: ExportedPlugin> Copy for TestRuntime<P> {}

impl<P: ExportedPlugin> Default for TestRuntime<P> {
    fn default() -> Self {
        TestRuntime::new()
    }
}

impl<P: ExportedPlugin> TestRuntime<P> {
    /// A fresh, not yet loaded instance (its route table built, as `describe` sees it).
    pub fn new() -> TestRuntime<P> {
        TestRuntime {
            runtime: Box::leak(Box::new(Runtime::new(P::default_constructor()))),
        }
    }

    /// The descriptor (manifest, routes, migrations), not validated.
    pub fn descriptor(&self) -> &'static PluginDescriptor {
        &self.runtime.descriptor
    }

    /// `on_load` with `config` (the `[plugins.<id>]` table as JSON) and the services the host
    /// built for this plugin. Unlike the exported module it installs no `log` bridge (that is
    /// process-wide): the test host decides where the plugin's `log` lines go.
    pub fn load(&self, config: Value, services: HostServicesHandle) -> FfiFuture<HookResult> {
        let runtime = self.runtime;
        guarded(async move {
            runtime
                .load(LoadContext::new(config, Host::new(services)))
                .await
        })
    }

    /// `on_enable`.
    pub fn enable(&self) -> FfiFuture<HookResult> {
        let runtime = self.runtime;
        guarded(async move { runtime.enable().await })
    }

    /// `on_disable`.
    pub fn disable(&self) -> FfiFuture<HookResult> {
        let runtime = self.runtime;
        guarded(async move { runtime.disable().await })
    }

    /// `handle`: serves one request for the route at `route_index` of the descriptor.
    pub fn handle<'a>(
        &self,
        route_index: u32,
        request: FfiRequest<'a>,
    ) -> BorrowingFfiFuture<'a, HandleResult> {
        let runtime = self.runtime;
        match catch_panic(move || runtime.handle(route_index, request)) {
            Ok(future) => future,
            Err(panic) => async move {
                RResult::RErr(PluginFault {
                    kind: FaultKind::Panic,
                    message: RString::from(panic),
                })
            }
            .into_ffi(),
        }
    }

    /// `on_event`: one event, with the delivery's context (acting for the event's user,
    /// joined to the delivery's unit of work).
    pub fn event(
        &self,
        source: &str,
        topic: &str,
        payload: Value,
        context: RequestContextHandle,
    ) -> FfiFuture<HookResult> {
        let runtime = self.runtime;
        let (source, topic) = (source.to_owned(), topic.to_owned());
        guarded(async move { runtime.event(source, topic, payload, context).await })
    }

    /// The route `method path` (below the manifest prefix, without a query) matches: its
    /// index in the descriptor and its parameters, as raw (not percent-decoded) text.
    pub fn match_route(&self, method: Method, path: &str) -> Option<(u32, Vec<(String, String)>)> {
        self.runtime
            .descriptor
            .routes
            .iter()
            .enumerate()
            .find_map(|(index, route)| {
                (route.method == method)
                    .then(|| match_pattern(&route.path, path))
                    .flatten()
                    .map(|params| (index as u32, params))
            })
    }

    /// The methods of the routes whose pattern matches `path`, for a 405's `Allow`.
    pub fn methods_for(&self, path: &str) -> Vec<Method> {
        self.runtime
            .descriptor
            .routes
            .iter()
            .filter(|route| match_pattern(&route.path, path).is_some())
            .map(|route| route.method)
            .collect()
    }
}

/// The parameters of `path` under route pattern `pattern` (`{name}` segments, a trailing
/// `{*rest}`), or `None` when it does not match.
pub fn match_pattern(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    let mut actual = path.trim_end_matches('/').split('/');
    for expected in pattern.split('/') {
        if let Some(name) = expected
            .strip_prefix("{*")
            .and_then(|n| n.strip_suffix('}'))
        {
            let rest: Vec<&str> = actual.by_ref().collect();
            params.push((name.to_owned(), rest.join("/")));
            return Some(params);
        }
        let segment = actual.next()?;
        match expected.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
            Some(name) => params.push((name.to_owned(), segment.to_owned())),
            None if expected == segment => {}
            None => return None,
        }
    }
    actual.next().is_none().then_some(params)
}

/// Drives a future to completion on this thread, for futures that need no reactor.
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct ThreadWaker(Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    #[test]
    fn patterns_bind_parameters() {
        assert_eq!(
            match_pattern("/s/{id}/x", "/s/7/x"),
            Some(vec![("id".into(), "7".into())])
        );
        assert_eq!(match_pattern("/s/{id}", "/s/7/x"), None);
        assert_eq!(match_pattern("/s/{id}/x", "/s/7"), None);
        assert_eq!(
            match_pattern("/f/{*rest}", "/f/a/b"),
            Some(vec![("rest".into(), "a/b".into())])
        );
    }

    struct Probe;

    impl ExportedPlugin for Probe {
        fn default_constructor() -> Option<fn() -> Probe> {
            None
        }
    }

    impl Plugin for Probe {
        const MANIFEST: PluginManifest = PluginManifest::new("probe", "Probe", "1.0.0");
        const ROUTES: &'static [Route<Self>] = &[
            Route::get("/probe/{id}", "Reads", |_: &Probe, _: Request<'_>| async {
                Ok::<_, ApiError>(Json(1))
            }),
            Route::post("/probe/{id}", "Writes", |_: &Probe, _: Request<'_>| async {
                Ok::<_, ApiError>(Json(2))
            }),
        ];
        async fn on_load(context: LoadContext) -> Result<Self, PluginError> {
            match context.config().get("fail") {
                Some(_) => panic!("asked to fail"),
                None => Ok(Probe),
            }
        }
    }

    /// Services that refuse everything (the on_load here calls none).
    #[derive(Clone)]
    struct NoServices;

    impl crate::abi::HostServices for NoServices {
        fn log(
            &self,
            _: crate::abi::LogLevel,
            _: abi_stable::std_types::RStr<'_>,
            _: abi_stable::std_types::RStr<'_>,
        ) {
        }

        fn call(
            &self,
            _: abi_stable::std_types::ROption<RequestContextHandle>,
            _: abi_stable::std_types::RStr<'_>,
            _: u32,
            _: abi_stable::std_types::RVec<u8>,
        ) -> FfiFuture<crate::abi::ServiceResult> {
            async {
                RResult::RErr(crate::abi::ServiceError {
                    kind: crate::abi::ServiceErrorKind::Unavailable,
                    message: "none".into(),
                })
            }
            .into_ffi()
        }

        fn run_blocking(&self, _: crate::abi::BlockingJobBox) -> FfiFuture<RResult<(), RString>> {
            async { RResult::RErr("none".into()) }.into_ffi()
        }
    }

    fn services() -> HostServicesHandle {
        crate::abi::HostServices_TO::from_ptr(
            abi_stable::std_types::RArc::new(NoServices),
            abi_stable::sabi_trait::TD_Opaque,
        )
    }

    fn fault_kind(outcome: RResult<(), PluginFault>) -> Option<FaultKind> {
        outcome.into_result().err().map(|fault| fault.kind)
    }

    #[test]
    fn a_test_runtime_matches_routes_and_contains_panics() {
        let runtime = TestRuntime::<Probe>::new();
        assert_eq!(
            runtime.match_route(Method::Post, "/probe/7"),
            Some((1, vec![("id".into(), "7".into())]))
        );
        assert_eq!(runtime.match_route(Method::Put, "/probe/7"), None);
        assert_eq!(runtime.methods_for("/probe/7"), [Method::Get, Method::Post]);
        assert!(descriptor_of::<Probe>().is_ok());
        // Not loaded: refused as an error.
        assert_eq!(
            fault_kind(block_on(runtime.enable())),
            Some(FaultKind::Error)
        );
        // A panic in a hook is a fault, not an unwind.
        let panics = block_on(runtime.load(json!({"fail": true}), services()));
        assert_eq!(fault_kind(panics), Some(FaultKind::Panic));
        // Each runtime is an instance of its own: another one loads.
        let other = TestRuntime::<Probe>::new();
        assert_eq!(
            fault_kind(block_on(other.load(json!({}), services()))),
            None
        );
        assert_eq!(fault_kind(block_on(other.enable())), None);
    }

    /// Has no `on_load`; whether it loads depends on `Default`.
    struct NoLoad;

    #[derive(Default)]
    struct NoLoadDefault;

    impl Plugin for NoLoad {
        const MANIFEST: PluginManifest = PluginManifest::new("no-load", "No load", "1.0.0");
        const ROUTES: &'static [Route<Self>] = &[];
    }

    impl Plugin for NoLoadDefault {
        const MANIFEST: PluginManifest =
            PluginManifest::new("no-load-default", "No load, Default", "1.0.0");
        const ROUTES: &'static [Route<Self>] = &[];
    }

    // What `export_plugin!` generates for each: the probe picks `Default` when there is one.
    impl ExportedPlugin for NoLoad {
        // The borrows and both traits are the probe's trick (see `DefaultProbe`).
        #[allow(unused_imports, clippy::needless_borrow)]
        fn default_constructor() -> Option<fn() -> NoLoad> {
            use crate::sdk::export::{DefaultProbe, ViaDefault as _, ViaNothing as _};
            (&&DefaultProbe::<NoLoad>::new()).constructor()
        }
    }

    impl ExportedPlugin for NoLoadDefault {
        // The borrows and both traits are the probe's trick (see `DefaultProbe`).
        #[allow(unused_imports, clippy::needless_borrow)]
        fn default_constructor() -> Option<fn() -> NoLoadDefault> {
            use crate::sdk::export::{DefaultProbe, ViaDefault as _, ViaNothing as _};
            (&&DefaultProbe::<NoLoadDefault>::new()).constructor()
        }
    }

    #[test]
    fn without_on_load_a_default_plugin_loads_and_another_fails_saying_why() {
        assert!(NoLoad::default_constructor().is_none());
        assert!(NoLoadDefault::default_constructor().is_some());
        let loads = TestRuntime::<NoLoadDefault>::new();
        assert_eq!(
            fault_kind(block_on(loads.load(json!({}), services()))),
            None
        );
        assert_eq!(fault_kind(block_on(loads.enable())), None);
        let fails = TestRuntime::<NoLoad>::new();
        let outcome = block_on(fails.load(json!({}), services()));
        let fault = outcome.into_result().unwrap_err();
        assert_eq!(fault.kind, FaultKind::Error);
        assert!(
            fault
                .message
                .contains("no on_load and its type is not Default"),
            "{}",
            fault.message
        );
    }
}
