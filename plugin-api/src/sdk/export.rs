//! The glue `export_plugin!` generates: the plugin's runtime (route table, descriptor and
//! loaded instance) and the `extern "C"` entry points of the root module.
//!
//! Every entry point catches panics inside the plugin and returns them as a
//! [`PluginFault`]; nothing here may unwind into the host.

use std::{any::Any, future::Future, sync::OnceLock};

use abi_stable::{
    prefix_type::PrefixTypeTrait,
    std_types::{RResult, RString, RVec},
};
use async_ffi::{FfiFuture, FutureExt};

use super::{
    error::PluginError,
    host::Host,
    logging,
    panic::{catch_panic, install_recording_hook, CatchPanic},
    plugin::{Event, FfiHandleResult, LoadContext, Plugin, RouteEntry, Routes},
    request::Request,
};
use crate::{
    abi::{
        FaultKind, FfiLoadContext, FfiRequest, HostServicesHandle, PluginFault, PluginModule,
        PluginModule_Ref, RequestContextHandle,
    },
    route::PluginDescriptor,
};

/// A plugin's route table, descriptor and (once loaded) instance with its host services.
pub(crate) struct Runtime<P> {
    routes: Vec<RouteEntry<P>>,
    pub(crate) descriptor: PluginDescriptor,
    plugin: OnceLock<(P, HostServicesHandle)>,
}

impl<P: Plugin> Runtime<P> {
    pub(crate) fn new() -> Runtime<P> {
        let mut routes = Routes::new();
        P::routes(&mut routes);
        let descriptor = PluginDescriptor {
            manifest: P::manifest(),
            routes: routes
                .entries
                .iter()
                .map(|entry| entry.spec.clone())
                .collect(),
            migrations: P::migrations(),
        };
        Runtime {
            routes: routes.entries,
            descriptor,
            plugin: OnceLock::new(),
        }
    }

    pub(crate) async fn load(&'static self, context: LoadContext) -> Result<(), PluginError> {
        let services = context.services();
        let plugin = P::on_load(context).await?;
        self.plugin
            .set((plugin, services))
            .map_err(|_| PluginError::new("on_load called twice"))
    }

    fn loaded_with_services(
        &'static self,
        hook: &str,
    ) -> Result<&'static (P, HostServicesHandle), PluginError> {
        self.plugin
            .get()
            .ok_or_else(|| PluginError::new(format!("{hook} called before on_load succeeded")))
    }

    fn loaded(&'static self, hook: &str) -> Result<&'static P, PluginError> {
        self.loaded_with_services(hook).map(|(plugin, _)| plugin)
    }

    pub(crate) async fn enable(&'static self) -> Result<(), PluginError> {
        self.loaded("on_enable")?.on_enable().await
    }

    pub(crate) async fn disable(&'static self) -> Result<(), PluginError> {
        self.loaded("on_disable")?.on_disable().await
    }

    pub(crate) async fn event(
        &'static self,
        source: String,
        topic: String,
        payload: serde_json::Value,
        context: RequestContextHandle,
    ) -> Result<(), PluginError> {
        let (plugin, services) = self.loaded_with_services("on_event")?;
        let event = Event {
            source,
            topic,
            payload,
            host: Host::scoped(services.clone(), context),
        };
        plugin.on_event(event).await
    }

    pub(crate) fn handle(
        &'static self,
        index: u32,
        request: FfiRequest,
    ) -> FfiFuture<FfiHandleResult> {
        let (plugin, services) = match self.loaded_with_services("handle") {
            Ok(loaded) => loaded,
            Err(error) => return ready_fault(FaultKind::Error, error.to_string()),
        };
        match self.routes.get(index as usize) {
            Some(entry) => entry
                .handler
                .call(plugin, Request::from_ffi(request, services.clone())),
            None => ready_fault(
                FaultKind::Error,
                format!(
                    "no route with index {index} (the plugin has {})",
                    self.routes.len()
                ),
            ),
        }
    }
}

fn ready_fault<T: Send + 'static>(
    kind: FaultKind,
    message: String,
) -> FfiFuture<RResult<T, PluginFault>> {
    async move {
        RResult::RErr(PluginFault {
            kind,
            message: RString::from(message),
        })
    }
    .into_ffi()
}

static RUNTIME: OnceLock<&'static (dyn Any + Send + Sync)> = OnceLock::new();

/// This library's runtime; a library exports exactly one plugin type.
fn runtime<P: Plugin>() -> &'static Runtime<P> {
    let erased = *RUNTIME.get_or_init(|| Box::leak(Box::new(Runtime::<P>::new())));
    erased
        .downcast_ref::<Runtime<P>>()
        .expect("export_plugin! used for two plugin types in one library")
}

/// Runs a hook future under panic containment, converting its outcome for the boundary.
pub(crate) fn guarded<F>(hook: F) -> FfiFuture<RResult<(), PluginFault>>
where
    F: Future<Output = Result<(), PluginError>> + Send + 'static,
{
    async move {
        match CatchPanic::new(hook).await {
            Ok(Ok(())) => RResult::ROk(()),
            Ok(Err(error)) => RResult::RErr(PluginFault {
                kind: FaultKind::Error,
                message: RString::from(error.to_string()),
            }),
            Err(panic) => RResult::RErr(PluginFault {
                kind: FaultKind::Panic,
                message: RString::from(panic),
            }),
        }
    }
    .into_ffi()
}

extern "C" fn describe<P: Plugin>() -> RResult<RString, PluginFault> {
    match catch_panic(|| serde_json::to_string(&runtime::<P>().descriptor)) {
        Ok(Ok(json)) => RResult::ROk(RString::from(json)),
        Ok(Err(error)) => RResult::RErr(PluginFault {
            kind: FaultKind::Error,
            message: RString::from(format!("descriptor could not be serialized: {error}")),
        }),
        Err(panic) => RResult::RErr(PluginFault {
            kind: FaultKind::Panic,
            message: RString::from(panic),
        }),
    }
}

extern "C" fn on_load<P: Plugin>(context: FfiLoadContext) -> FfiFuture<RResult<(), PluginFault>> {
    guarded(async move {
        logging::install(context.services.clone(), context.max_log_level);
        let config = serde_json::from_str(&context.config_json).map_err(|error| {
            PluginError::new(format!(
                "host passed configuration that is not JSON: {error}"
            ))
        })?;
        let context = LoadContext::new(config, Host::new(context.services));
        runtime::<P>().load(context).await
    })
}

extern "C" fn on_enable<P: Plugin>() -> FfiFuture<RResult<(), PluginFault>> {
    guarded(async { runtime::<P>().enable().await })
}

extern "C" fn on_disable<P: Plugin>() -> FfiFuture<RResult<(), PluginFault>> {
    guarded(async { runtime::<P>().disable().await })
}

extern "C" fn on_event<P: Plugin>(
    source: RString,
    topic: RString,
    payload: RVec<u8>,
    context: RequestContextHandle,
) -> FfiFuture<RResult<(), PluginFault>> {
    guarded(async move {
        let payload = serde_json::from_slice(&payload)
            .map_err(|error| PluginError::new(format!("event payload is not JSON: {error}")))?;
        runtime::<P>()
            .event(source.into_string(), topic.into_string(), payload, context)
            .await
    })
}

extern "C" fn handle<P: Plugin>(
    route_index: u32,
    request: FfiRequest,
) -> FfiFuture<FfiHandleResult> {
    match catch_panic(runtime::<P>) {
        Ok(runtime) => runtime.handle(route_index, request),
        Err(panic) => ready_fault(FaultKind::Panic, panic),
    }
}

/// Builds the root module for plugin type `P`. Called once, by the loader `export_plugin!`
/// generates, when the host initialises the library.
#[doc(hidden)]
pub fn root_module<P: Plugin>() -> PluginModule_Ref {
    install_recording_hook();
    PluginModule {
        describe: describe::<P>,
        on_load: on_load::<P>,
        on_enable: on_enable::<P>,
        on_disable: on_disable::<P>,
        handle: handle::<P>,
        on_event: on_event::<P>,
    }
    .leak_into_prefix()
}

/// Exports a [`Plugin`] type as this library's root module, so the host can load it.
///
/// ```text
/// pixsim7_plugin_api::export_plugin!(DiceGame);
/// ```
///
/// Expands to the same `static` that abi_stable's `#[export_root_module]` writes, with paths
/// through this crate, so plugin crates need no direct abi_stable dependency.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        #[no_mangle]
        #[allow(non_upper_case_globals)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::LibHeader = {
            extern "C" fn __pixsim7_root_module_loader() -> $crate::__private::RootModuleResult {
                $crate::__private::__call_root_module_loader(
                    $crate::__private::root_module::<$plugin>,
                )
            }
            // SAFETY: the constructor returns the `PluginModule_Ref` this header is typed
            // with, exactly as abi_stable's `#[export_root_module]` arranges it.
            unsafe {
                $crate::__private::LibHeader::from_constructor::<$crate::abi::PluginModule_Ref>(
                    __pixsim7_root_module_loader,
                    $crate::__private::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn exported_symbol_matches_abi_stable_loader_name() {
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader"
        );
    }
}
