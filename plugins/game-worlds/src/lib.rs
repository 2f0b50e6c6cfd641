//! `game-worlds`: the game's worlds and their clocks (`/api/v1/game/worlds`).

use plugin_api::{
    game::{limits, NewWorld, World, WorldPath, WorldSummary},
    prelude::*,
};

/// The plugin: all state lives in the host's database.
#[derive(Default)]
pub struct GameWorlds;

impl Plugin for GameWorlds {
    const MANIFEST: PluginManifest =
        PluginManifest::new("game-worlds", "Game worlds", env!("CARGO_PKG_VERSION"))
            .description("Worlds and their world time")
            .tags(&["game-worlds"])
            .permissions(&["world:read", "world:write"]);

    const ROUTES: &'static [Route<Self>] = &[
        Route::get("/game/worlds", "List worlds", list).response::<Vec<WorldSummary>>(),
        Route::post(
            "/game/worlds",
            "Create a world (world time starts at 0)",
            create,
        )
        .request::<NewWorld>()
        .response::<World>(),
        Route::get(
            "/game/worlds/{world_id}",
            "Get a world with its meta and world time",
            get,
        )
        .path::<WorldPath>()
        .response::<World>(),
        Route::post(
            "/game/worlds/{world_id}/advance",
            "Advance world time (negative counts as 0)",
            advance,
        )
        .path::<WorldPath>()
        .request::<AdvanceBody>()
        .response::<World>(),
    ];
}

async fn list(_: &GameWorlds, request: Request<'_>) -> Result<Json<Vec<WorldSummary>>, ApiError> {
    Ok(Json(request.host().list_worlds().await?))
}

async fn create(_: &GameWorlds, request: Request<'_>) -> Result<Json<World>, ApiError> {
    let body: NewWorld = request.json()?;
    if body.name.trim().is_empty() {
        return Err(ApiError::bad_request("name must not be empty"));
    }
    if body.meta.as_ref().is_some_and(|m| !m.is_object()) {
        return Err(ApiError::validation(
            "dict_type",
            vec![json!("body"), json!("meta")],
            "Input should be a valid dictionary",
        ));
    }
    Ok(Json(request.host().create_world(&body).await?))
}

async fn get(_: &GameWorlds, request: Request<'_>) -> Result<Json<World>, ApiError> {
    Ok(Json(
        request
            .host()
            .get_world(request.param_as("world_id")?)
            .await?,
    ))
}

/// `POST /game/worlds/{id}/advance`.
#[derive(Deserialize, JsonSchema)]
struct AdvanceBody {
    /// Seconds to add; negative counts as 0. A world's time never passes
    /// [`limits::MAX_WORLD_TIME`]: a delta that would take it there is a conflict (409).
    #[schemars(range(max = limits::MAX_WORLD_TIME))]
    delta_seconds: f64,
}

async fn advance(_: &GameWorlds, request: Request<'_>) -> Result<Json<World>, ApiError> {
    let world_id = request.param_as("world_id")?;
    let body: AdvanceBody = request.json()?;
    Ok(Json(
        request
            .host()
            .advance_world(world_id, body.delta_seconds)
            .await?,
    ))
}

export_plugin!(GameWorlds);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_is_valid() {
        plugin_api::descriptor_of::<GameWorlds>().unwrap();
    }
}
