//! `game-npcs`: non-player characters (`/api/v1/game/npcs`): their expressions, weekly
//! schedules, and who is where at a given world time.

use plugin_api::{
    game::{
        NewNpc, Npc, NpcExpression, NpcPath, NpcPresence, NpcScheduleEntry, NpcSummary,
        PresenceQuery,
    },
    prelude::*,
};

/// The plugin: all state lives in the host's database.
#[derive(Default)]
pub struct GameNpcs;

impl Plugin for GameNpcs {
    const MANIFEST: PluginManifest =
        PluginManifest::new("game-npcs", "Game NPCs", env!("CARGO_PKG_VERSION"))
            .description("NPCs, their expressions, schedules and presence")
            .tags(&["game-npcs"])
            .permissions(&["npc:read", "npc:write", "event:emit"])
            .optional_permissions(&["event:emit"])
            .emits(&["npc:spawned"]);

    const ROUTES: &'static [Route<Self>] = &[
        Route::get("/game/npcs", "List NPCs", list).response::<Vec<NpcSummary>>(),
        Route::post("/game/npcs", "Create an NPC (admins)", create)
            .admin()
            .request::<NewNpc>()
            .response::<Npc>(),
        Route::get(
            "/game/npcs/presence",
            "Which NPCs are where at ?world_time (seconds; day 0 is Monday), optionally &world_id and &location_id",
            presence,
        )
        .query::<PresenceQuery>()
        .response::<Vec<NpcPresence>>(),
        Route::get("/game/npcs/{npc_id}", "Get an NPC", get)
            .path::<NpcPath>()
            .response::<Npc>(),
        Route::get(
            "/game/npcs/{npc_id}/expressions",
            "An NPC's expressions",
            expressions,
        )
        .path::<NpcPath>()
        .response::<Vec<NpcExpression>>(),
        Route::put(
            "/game/npcs/{npc_id}/expressions",
            "Replace an NPC's expressions (admins)",
            set_expressions,
        )
        .path::<NpcPath>()
        .admin()
        .request::<ExpressionsBody>()
        .response::<Vec<NpcExpression>>(),
        Route::get(
            "/game/npcs/{npc_id}/schedules",
            "An NPC's weekly schedule",
            schedules,
        )
        .path::<NpcPath>()
        .response::<Vec<NpcScheduleEntry>>(),
        Route::put(
            "/game/npcs/{npc_id}/schedules",
            "Replace an NPC's weekly schedule (admins)",
            set_schedules,
        )
        .path::<NpcPath>()
        .admin()
        .request::<SchedulesBody>()
        .response::<Vec<NpcScheduleEntry>>(),
    ];
}

async fn list(_: &GameNpcs, request: Request<'_>) -> Result<Json<Vec<NpcSummary>>, ApiError> {
    Ok(Json(request.host().list_npcs().await?))
}

async fn create(_: &GameNpcs, request: Request<'_>) -> Result<Json<Npc>, ApiError> {
    let body: NewNpc = request.json()?;
    if body.name.trim().is_empty() {
        return Err(ApiError::bad_request("name must not be empty"));
    }
    let npc = request.host().create_npc(&body).await?;
    let spawned = json!({"npc_id": npc.id, "name": npc.name, "world_id": npc.world_id});
    request.host().announce("npc:spawned", &spawned).await;
    Ok(Json(npc))
}

async fn get(_: &GameNpcs, request: Request<'_>) -> Result<Json<Npc>, ApiError> {
    Ok(Json(
        request.host().get_npc(request.param_as("npc_id")?).await?,
    ))
}

async fn presence(_: &GameNpcs, request: Request<'_>) -> Result<Json<Vec<NpcPresence>>, ApiError> {
    let query: PresenceQuery = request.query_params()?;
    Ok(Json(request.host().npc_presence(&query).await?))
}

async fn expressions(
    _: &GameNpcs,
    request: Request<'_>,
) -> Result<Json<Vec<NpcExpression>>, ApiError> {
    Ok(Json(
        request
            .host()
            .npc_expressions(request.param_as("npc_id")?)
            .await?,
    ))
}

/// `PUT /game/npcs/{id}/expressions`.
#[derive(Deserialize, JsonSchema)]
struct ExpressionsBody {
    expressions: Vec<NpcExpression>,
}

async fn set_expressions(
    _: &GameNpcs,
    request: Request<'_>,
) -> Result<Json<Vec<NpcExpression>>, ApiError> {
    let npc_id = request.param_as("npc_id")?;
    let body: ExpressionsBody = request.json()?;
    Ok(Json(
        request
            .host()
            .set_npc_expressions(npc_id, body.expressions)
            .await?,
    ))
}

async fn schedules(
    _: &GameNpcs,
    request: Request<'_>,
) -> Result<Json<Vec<NpcScheduleEntry>>, ApiError> {
    Ok(Json(
        request
            .host()
            .npc_schedules(request.param_as("npc_id")?)
            .await?,
    ))
}

/// `PUT /game/npcs/{id}/schedules`.
#[derive(Deserialize, JsonSchema)]
struct SchedulesBody {
    schedules: Vec<NpcScheduleEntry>,
}

async fn set_schedules(
    _: &GameNpcs,
    request: Request<'_>,
) -> Result<Json<Vec<NpcScheduleEntry>>, ApiError> {
    let npc_id = request.param_as("npc_id")?;
    let body: SchedulesBody = request.json()?;
    Ok(Json(
        request
            .host()
            .set_npc_schedules(npc_id, body.schedules)
            .await?,
    ))
}

export_plugin!(GameNpcs);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_is_valid() {
        plugin_api::descriptor_of::<GameNpcs>().unwrap();
    }
}
