//! The glue `export_plugin!` generates: the plugin's runtime (route table, descriptor and
//! loaded instance) and the `extern "C"` entry points of the root module.
//!
//! Every entry point catches panics inside the plugin and returns them as a
//! [`PluginFault`]; nothing here may unwind into the host.

use std::{any::Any, future::Future, marker::PhantomData, sync::OnceLock};

use abi_stable::{
    prefix_type::PrefixTypeTrait,
    std_types::{RResult, RString, RVec},
};
use async_ffi::{BorrowingFfiFuture, FfiFuture, FutureExt};

use super::{
    error::PluginError,
    host::Host,
    logging,
    panic::{catch_panic, install_recording_hook, CatchPanic},
    plugin::{Event, LoadContext, Plugin},
    request::Request,
    response::IntoResponse,
};
use crate::{
    abi::{
        FaultKind, FfiLoadContext, FfiRequest, HandleResult, HookResult, HostServicesHandle,
        PluginFault, PluginModule, PluginModule_Ref, RequestContextHandle,
    },
    route::PluginDescriptor,
};

/// A plugin type `export_plugin!` exported: the macro knows whether the type is `Default`
/// (which a generic function cannot ask), for plugins without `on_load`.
#[doc(hidden)]
pub trait ExportedPlugin: Plugin {
    /// `Default::default` when the type implements it.
    fn default_constructor() -> Option<fn() -> Self>;
}

/// Picks `Some(T::default)` when `T: Default` and `None` otherwise, by method resolution on
/// `(&&DefaultProbe::<T>::new()).constructor()` with [`ViaDefault`] and [`ViaNothing`] in
/// scope (the first applies only to `Default` types and is tried first).
#[doc(hidden)]
pub struct DefaultProbe<T>(PhantomData<T>);

impl<T> DefaultProbe<T> {
    /// A probe for `T`.
    pub fn new() -> DefaultProbe<T> {
        DefaultProbe(PhantomData)
    }
}

impl<T> Default for DefaultProbe<T> {
    fn default() -> DefaultProbe<T> {
        DefaultProbe::new()
    }
}

/// See [`DefaultProbe`].
#[doc(hidden)]
pub trait ViaDefault<T> {
    /// `Some(T::default)`.
    fn constructor(&self) -> Option<fn() -> T>;
}

impl<T: Default> ViaDefault<T> for &DefaultProbe<T> {
    fn constructor(&self) -> Option<fn() -> T> {
        Some(T::default)
    }
}

/// See [`DefaultProbe`].
#[doc(hidden)]
pub trait ViaNothing<T> {
    /// `None`.
    fn constructor(&self) -> Option<fn() -> T>;
}

impl<T> ViaNothing<T> for DefaultProbe<T> {
    fn constructor(&self) -> Option<fn() -> T> {
        None
    }
}

/// A plugin's descriptor and (once loaded) instance with its host services.
pub(crate) struct Runtime<P> {
    pub(crate) descriptor: PluginDescriptor,
    plugin: OnceLock<(P, HostServicesHandle)>,
    default_constructor: Option<fn() -> P>,
}

impl<P: Plugin> Runtime<P> {
    pub(crate) fn new(default_constructor: Option<fn() -> P>) -> Runtime<P> {
        let descriptor = PluginDescriptor {
            manifest: P::MANIFEST.to_manifest(),
            routes: P::ROUTES.iter().map(|route| route.to_spec()).collect(),
            migrations: P::migrations(),
        };
        Runtime {
            descriptor,
            plugin: OnceLock::new(),
            default_constructor,
        }
    }

    pub(crate) async fn load(&'static self, context: LoadContext) -> Result<(), PluginError> {
        let services = context.services();
        let plugin = match (P::on_load(context).await, self.default_constructor) {
            (Err(error), Some(default)) if error.is_no_on_load() => default(),
            (outcome, _) => outcome?,
        };
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

    pub(crate) fn handle<'a>(
        &'static self,
        index: u32,
        request: FfiRequest<'a>,
    ) -> BorrowingFfiFuture<'a, HandleResult> {
        let (plugin, services) = match self.loaded_with_services("handle") {
            Ok(loaded) => loaded,
            Err(error) => return ready_fault(FaultKind::Error, error.to_string()),
        };
        match (
            P::ROUTES.get(index as usize),
            self.descriptor.routes.get(index as usize),
        ) {
            (Some(route), Some(spec)) => {
                let request = Request::from_ffi(request, services);
                // What the route declared for its parameters holds before its code runs.
                match request.check_declared_parameters(
                    spec.path_schema.as_ref(),
                    spec.query_schema.as_ref(),
                ) {
                    Ok(()) => route.handler.call(plugin, request),
                    Err(error) => {
                        let response = error.into_response().into_ffi();
                        async move { RResult::ROk(response) }.into_ffi()
                    }
                }
            }
            _ => ready_fault(
                FaultKind::Error,
                format!(
                    "no route with index {index} (the plugin has {})",
                    P::ROUTES.len()
                ),
            ),
        }
    }
}

fn ready_fault<'a, T: Send + 'static>(
    kind: FaultKind,
    message: String,
) -> BorrowingFfiFuture<'a, RResult<T, PluginFault>> {
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
fn runtime<P: ExportedPlugin>() -> &'static Runtime<P> {
    let erased =
        *RUNTIME.get_or_init(|| Box::leak(Box::new(Runtime::<P>::new(P::default_constructor()))));
    erased
        .downcast_ref::<Runtime<P>>()
        .expect("export_plugin! used for two plugin types in one library")
}

/// Runs a hook future under panic containment, converting its outcome for the boundary.
pub(crate) fn guarded<F>(hook: F) -> FfiFuture<HookResult>
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

extern "C" fn describe<P: ExportedPlugin>() -> RResult<RString, PluginFault> {
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

extern "C" fn on_load<P: ExportedPlugin>(context: FfiLoadContext) -> FfiFuture<HookResult> {
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

extern "C" fn on_enable<P: ExportedPlugin>() -> FfiFuture<HookResult> {
    guarded(async { runtime::<P>().enable().await })
}

extern "C" fn on_disable<P: ExportedPlugin>() -> FfiFuture<HookResult> {
    guarded(async { runtime::<P>().disable().await })
}

extern "C" fn on_event<P: ExportedPlugin>(
    source: RString,
    topic: RString,
    payload: RVec<u8>,
    context: RequestContextHandle,
) -> FfiFuture<HookResult> {
    guarded(async move {
        let payload = serde_json::from_slice(&payload)
            .map_err(|error| PluginError::new(format!("event payload is not JSON: {error}")))?;
        runtime::<P>()
            .event(source.into_string(), topic.into_string(), payload, context)
            .await
    })
}

extern "C" fn handle<'a, P: ExportedPlugin>(
    route_index: u32,
    request: FfiRequest<'a>,
) -> BorrowingFfiFuture<'a, HandleResult> {
    match catch_panic(runtime::<P>) {
        Ok(runtime) => runtime.handle(route_index, request),
        Err(panic) => ready_fault(FaultKind::Panic, panic),
    }
}

/// Builds the root module for plugin type `P`. Called once, by the loader `export_plugin!`
/// generates, when the host initialises the library.
#[doc(hidden)]
pub fn root_module<P: ExportedPlugin>() -> PluginModule_Ref {
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
        // The descriptor section: the manifest and route table, evaluated by the compiler,
        // for the host to read from the file before it opens the library.
        const _: () = {
            const LEN: usize = $crate::__private::descriptor_section_len::<$plugin>();
            #[used]
            #[cfg_attr(target_vendor = "apple", link_section = "__DATA,__pixsim7_plug")]
            #[cfg_attr(windows, link_section = ".pxs7dsc")]
            #[cfg_attr(
                not(any(target_vendor = "apple", windows)),
                link_section = ".pixsim7_plugin"
            )]
            static PIXSIM7_DESCRIPTOR_SECTION: [u8; LEN] =
                $crate::__private::descriptor_section::<$plugin, LEN>();
        };

        impl $crate::__private::ExportedPlugin for $plugin {
            fn default_constructor() -> ::std::option::Option<fn() -> Self> {
                #[allow(unused_imports)]
                use $crate::__private::{ViaDefault as _, ViaNothing as _};
                (&&$crate::__private::DefaultProbe::<$plugin>::new()).constructor()
            }
        }

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
