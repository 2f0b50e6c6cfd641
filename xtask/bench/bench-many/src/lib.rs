//! Benchmark plugin `bench-many`: ten parameterised routes under `/bench-many-000/`.
//!
//! The benchmark needs 100 distinct libraries. A plugin's id and routes are constants
//! (written into its descriptor section and read back live), so instead of 100 builds the
//! benchmark copies this one build to `libbench_many_<n>.so` and replaces every `000` of the
//! marker [`MARKER`] with `n` (three digits, so no offset moves): the section and the
//! strings the live descriptor is made of change alike, and each copy is a library of its
//! own, `bench-many-<n>`, with its own SHA-256. 100 copies put 1000 routes in the table.

use plugin_api::prelude::*;

/// The text every copy rewrites: in the id and in every route path.
pub const MARKER: &str = "bench-many-000";

/// Routes each copy serves.
pub const ROUTES_PER_PLUGIN: usize = 10;

/// The plugin.
#[derive(Default)]
pub struct BenchMany;

macro_rules! filler_route {
    ($n:literal) => {
        Route::get(
            concat!("/bench-many-000/r", $n, "/{id}/items/{item}"),
            "Filler",
            filler,
        )
        .public()
    };
}

impl Plugin for BenchMany {
    const MANIFEST: PluginManifest = PluginManifest::new(
        "bench-many-000",
        "Benchmark filler",
        env!("CARGO_PKG_VERSION"),
    );
    const ROUTES: &'static [Route<Self>] = &[
        filler_route!("0"),
        filler_route!("1"),
        filler_route!("2"),
        filler_route!("3"),
        filler_route!("4"),
        filler_route!("5"),
        filler_route!("6"),
        filler_route!("7"),
        filler_route!("8"),
        filler_route!("9"),
    ];
}

async fn filler(_: &BenchMany, request: Request<'_>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"id": request.param("id")?})))
}

export_plugin!(BenchMany);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_carries_the_marker_once() {
        assert_eq!(BenchMany::ROUTES.len(), ROUTES_PER_PLUGIN);
        assert_eq!(BenchMany::MANIFEST.id(), MARKER);
        for route in BenchMany::ROUTES {
            assert_eq!(route.to_spec().path.matches(MARKER).count(), 1);
        }
    }
}
