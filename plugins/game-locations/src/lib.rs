//! `game-locations`: locations and their hotspots (`/api/v1/game/locations`).

use plugin_api::{
    game::{Hotspot, Location, LocationPath, LocationSummary, NewLocation},
    prelude::*,
};

/// The plugin: all state lives in the host's database.
#[derive(Default)]
pub struct GameLocations;

impl Plugin for GameLocations {
    const MANIFEST: PluginManifest = PluginManifest::new(
        "game-locations",
        "Game locations",
        env!("CARGO_PKG_VERSION"),
    )
    .description("Locations and their hotspots")
    .tags(&["game-locations"])
    .permissions(&["location:read", "location:write", "event:emit"])
    .optional_permissions(&["event:emit"])
    .emits(&["location:changed"]);

    const ROUTES: &'static [Route<Self>] = &[
        Route::get("/game/locations", "List locations", list).response::<Vec<LocationSummary>>(),
        Route::post("/game/locations", "Create a location (admins)", create)
            .admin()
            .request::<NewLocation>()
            .response::<Location>(),
        Route::get(
            "/game/locations/{location_id}",
            "Get a location with its meta and hotspots",
            get,
        )
        .path::<LocationPath>()
        .response::<Location>(),
        Route::put(
            "/game/locations/{location_id}/hotspots",
            "Replace a location's hotspots (admins)",
            set_hotspots,
        )
        .path::<LocationPath>()
        .admin()
        .request::<HotspotsBody>()
        .response::<Location>(),
    ];
}

async fn list(
    _: &GameLocations,
    request: Request<'_>,
) -> Result<Json<Vec<LocationSummary>>, ApiError> {
    Ok(Json(request.host().list_locations().await?))
}

async fn create(_: &GameLocations, request: Request<'_>) -> Result<Json<Location>, ApiError> {
    let body: NewLocation = request.json()?;
    if body.name.trim().is_empty() {
        return Err(ApiError::bad_request("name must not be empty"));
    }
    let location = request.host().create_location(&body).await?;
    let changed = json!({"location_id": location.id, "change": "created"});
    request.host().announce("location:changed", &changed).await;
    Ok(Json(location))
}

async fn get(_: &GameLocations, request: Request<'_>) -> Result<Json<Location>, ApiError> {
    Ok(Json(
        request
            .host()
            .get_location(request.param_as("location_id")?)
            .await?,
    ))
}

/// `PUT /game/locations/{id}/hotspots`.
#[derive(Deserialize, JsonSchema)]
struct HotspotsBody {
    hotspots: Vec<Hotspot>,
}

async fn set_hotspots(_: &GameLocations, request: Request<'_>) -> Result<Json<Location>, ApiError> {
    let location_id = request.param_as("location_id")?;
    // The original answered 400 (not 422) when `hotspots` is not a list; keep that.
    let raw: Value = request.json()?;
    if !raw.get("hotspots").is_some_and(Value::is_array) {
        return Err(ApiError::bad_request("hotspots must be a list"));
    }
    let body: HotspotsBody = request.json()?;
    let location = request
        .host()
        .set_hotspots(location_id, body.hotspots)
        .await?;
    let changed = json!({"location_id": location.id, "change": "hotspots"});
    request.host().announce("location:changed", &changed).await;
    Ok(Json(location))
}

export_plugin!(GameLocations);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_is_valid() {
        plugin_api::descriptor_of::<GameLocations>().unwrap();
    }
}
