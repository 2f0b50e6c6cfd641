//! Benchmark plugin `bench-many`: the benchmark copies one build of it to
//! `libbench_many_<n>.so` for n = 1..100; each copy names itself `bench-many-<n>` after its
//! own file (found with `dladdr`) and serves ten parameterised routes, so 100 copies put
//! 1000 routes in the host's table.

use plugin_api::prelude::*;

/// Routes each copy serves.
pub const ROUTES_PER_PLUGIN: usize = 10;

/// The plugin.
#[derive(Default)]
pub struct BenchMany;

/// This copy's number, from its file name (`0` when it cannot tell).
fn copy_number() -> u32 {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let address = copy_number as *const libc::c_void;
    // SAFETY: dladdr only reads the loader's tables; `info` is a valid out-pointer.
    let found = unsafe { libc::dladdr(address, &mut info) } != 0 && !info.dli_fname.is_null();
    if !found {
        return 0;
    }
    // SAFETY: dladdr returned a NUL-terminated path owned by the loader.
    let path = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }.to_string_lossy();
    path.rsplit('_')
        .next()
        .and_then(|tail| tail.split('.').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

impl Plugin for BenchMany {
    fn manifest() -> Manifest {
        Manifest::new(
            &format!("bench-many-{}", copy_number()),
            "Benchmark filler",
            env!("CARGO_PKG_VERSION"),
        )
    }

    fn routes(routes: &mut Routes<Self>) {
        let n = copy_number();
        for route in 0..ROUTES_PER_PLUGIN {
            routes
                .get(
                    &format!("/bench-many-{n}/r{route}/{{id}}/items/{{item}}"),
                    "Filler",
                    filler,
                )
                .public();
        }
    }
}

async fn filler(_: &BenchMany, request: Request<'_>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"id": request.param("id")?})))
}

export_plugin!(BenchMany);
