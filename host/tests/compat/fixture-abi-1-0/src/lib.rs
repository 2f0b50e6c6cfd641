//! Test fixture `fixture-abi-1-0`: a plugin built against plugin-abi 1.0.0 (the frozen copy
//! beside it), written directly against the binary interface as any SDK of that release
//! would generate it. The current host must load and serve it: `GET
//! /api/v1/fixture-abi-1-0/hello/{name}?greeting=..` answers from the borrowed request, logs
//! through the host, and calls an operation the host does not offer.

// abi_stable generates `PluginModule_Ref`.
#![allow(non_camel_case_types)]

use std::sync::OnceLock;

use plugin_abi::{
    abi_stable::{
        library::{LibHeader, RootModule},
        prefix_type::PrefixTypeTrait,
        std_types::{RCowStr, ROption, RResult, RStr, RString, RVec, Tuple2},
    },
    async_ffi::{BorrowingFfiFuture, FfiFuture, FutureExt},
    FfiLoadContext, FfiRequest, FfiResponse, HandleResult, HookResult, HostServicesHandle,
    LogLevel, PluginFault, PluginModule, PluginModule_Ref, RequestContextHandle, ABI_VERSION,
};
use serde_json::json;

static SERVICES: OnceLock<HostServicesHandle> = OnceLock::new();

extern "C" fn describe() -> RResult<RString, PluginFault> {
    let descriptor = json!({
        "manifest": {
            "id": "fixture-abi-1-0",
            "name": "Built against plugin ABI 1.0",
            "version": "1.0.0",
            "permissions": ["log:emit"],
        },
        "routes": [{
            "method": "GET",
            "path": "/fixture-abi-1-0/hello/{name}",
            "summary": "Greets from a library built against plugin ABI 1.0",
            "access": "public",
        }],
    });
    RResult::ROk(RString::from(descriptor.to_string()))
}

extern "C" fn on_load(context: FfiLoadContext) -> FfiFuture<HookResult> {
    let _ = SERVICES.set(context.services);
    async { RResult::ROk(()) }.into_ffi()
}

extern "C" fn no_hook() -> FfiFuture<HookResult> {
    async { RResult::ROk(()) }.into_ffi()
}

extern "C" fn on_event(
    _: RString,
    _: RString,
    _: RVec<u8>,
    _: RequestContextHandle,
) -> FfiFuture<HookResult> {
    async { RResult::ROk(()) }.into_ffi()
}

extern "C" fn handle<'a>(
    _route: u32,
    request: FfiRequest<'a>,
) -> BorrowingFfiFuture<'a, HandleResult> {
    async move {
        let name = request
            .path_params
            .iter()
            .find(|pair| pair.0.as_str() == "name")
            .map(|pair| pair.1.as_str())
            .unwrap_or_default();
        let greeting = request
            .query
            .as_str()
            .strip_prefix("greeting=")
            .unwrap_or("hello");
        let agent = request.headers.get(RStr::from_str("user-agent"));
        let services = SERVICES.get().expect("on_load ran");
        services.log(
            LogLevel::Info,
            RStr::from_str("fixture_abi_1_0"),
            RStr::from_str("hello from a library built against plugin ABI 1.0"),
        );
        let unknown = services
            .call(
                ROption::RSome(request.context.clone()),
                RStr::from_str("compat.not_an_operation"),
                1,
                RVec::from(b"{}".to_vec()),
            )
            .await;
        let unknown_kind = match unknown {
            RResult::ROk(_) => json!(null),
            RResult::RErr(error) => json!(error.kind.0),
        };
        let body = json!({
            "greeting": format!("{greeting}, {name}"),
            "built_against": ABI_VERSION,
            "user_agent": agent.into_option().map(|agent| agent.as_str()),
            "unknown_operation_kind": unknown_kind,
        });
        RResult::ROk(FfiResponse {
            status: 200,
            headers: RVec::from(vec![Tuple2(
                RCowStr::Borrowed(RStr::from_str("content-type")),
                RCowStr::Borrowed(RStr::from_str("application/json")),
            )]),
            body: RVec::from(body.to_string().into_bytes()),
        })
    }
    .into_ffi()
}

fn root_module() -> PluginModule_Ref {
    PluginModule {
        describe,
        on_load,
        on_enable: no_hook,
        on_disable: no_hook,
        handle,
        on_event,
    }
    .leak_into_prefix()
}

/// The header abi_stable's loader looks for, as the SDK's `export_plugin!` writes it.
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static _1as_0lib_1header_0root_bmodule_bloader: LibHeader = {
    extern "C" fn loader() -> plugin_abi::abi_stable::library::RootModuleResult {
        plugin_abi::abi_stable::library::__call_root_module_loader(root_module)
    }
    // SAFETY: the constructor returns the `PluginModule_Ref` this header is typed with.
    unsafe {
        LibHeader::from_constructor::<PluginModule_Ref>(
            loader,
            plugin_abi::abi_stable::library::CheckTypeLayout::Yes,
        )
    }
};

// Keeps `RootModule` in use for the header's type check.
const _: fn() = || {
    let _ = <PluginModule_Ref as RootModule>::NAME;
};

/// The descriptor section the host reads before it opens any library (see docs/abi.md:
/// libraries need it since plugin ABI 1.2; a library of an older minor's call interface,
/// like this one, carries it written by hand or by a rebuild with a current SDK).
#[used]
#[link_section = ".pixsim7_plugin"]
static PIXSIM7_DESCRIPTOR_SECTION: [u8; SECTION.len()] = section_bytes();

const SECTION: &str = r#"{"format":1,"abi_version":"1.0.0","manifest":{"id":"fixture-abi-1-0","name":"Built against plugin ABI 1.0","version":"1.0.0","permissions":["log:emit"]},"routes":[{"method":"GET","path":"/fixture-abi-1-0/hello/{name}","summary":"Greets from a library built against plugin ABI 1.0","access":"public"}]}"#;

const fn section_bytes<const N: usize>() -> [u8; N] {
    let bytes = SECTION.as_bytes();
    let mut array = [0; N];
    let mut i = 0;
    while i < N {
        array[i] = bytes[i];
        i += 1;
    }
    array
}
