//! `game-sessions`: players' game sessions (`/api/v1/game/sessions`): flags,
//! relationships and world time, each replaced whole on `PATCH`, with optimistic
//! concurrency through `version` / `expected_version`.

use plugin_api::{
    game::{limits, NewSession, Session, SessionPath, SessionUpdate},
    prelude::*,
};

/// The plugin: all state lives in the host's database.
#[derive(Default)]
pub struct GameSessions;

impl Plugin for GameSessions {
    const MANIFEST: PluginManifest =
        PluginManifest::new("game-sessions", "Game sessions", env!("CARGO_PKG_VERSION"))
            .description("Players' game sessions: flags, relationships and world time")
            .tags(&["game-sessions"])
            .permissions(&["session:read", "session:write", "event:emit"])
            .optional_permissions(&["event:emit"])
            .emits(&["session:created", "session:updated"]);

    const ROUTES: &'static [Route<Self>] = &[
        Route::post("/game/sessions", "Create a session", create)
            .request::<CreateBody>()
            .response::<Session>(),
        Route::get("/game/sessions/{session_id}", "Get a session", get)
            .path::<SessionPath>()
            .response::<Session>(),
        Route::patch(
            "/game/sessions/{session_id}",
            "Replace world_time, flags or relationships; expected_version guards against lost updates (409)",
            patch,
        )
        .path::<SessionPath>()
        .request::<PatchBody>()
        .response::<Session>(),
    ];
}

/// `POST /game/sessions`.
#[derive(Deserialize, JsonSchema)]
struct CreateBody {
    world_id: Option<i64>,
    scene_id: Option<i64>,
    flags: Option<Map<String, Value>>,
    relationships: Option<Map<String, Value>>,
}

async fn create(_: &GameSessions, request: Request<'_>) -> Result<Json<Session>, ApiError> {
    let body: CreateBody = request.json()?;
    let new = NewSession {
        world_id: body.world_id,
        scene_id: body.scene_id,
        flags: body.flags.map(Value::Object),
        relationships: body.relationships.map(Value::Object),
    };
    let session = request.host().create_session(&new).await?;
    let created = json!({"session_id": session.id, "world_id": session.world_id, "scene_id": session.scene_id});
    request.host().announce("session:created", &created).await;
    Ok(Json(session))
}

async fn get(_: &GameSessions, request: Request<'_>) -> Result<Json<Session>, ApiError> {
    Ok(Json(
        request
            .host()
            .get_session(request.param_as("session_id")?)
            .await?,
    ))
}

/// `PATCH /game/sessions/{id}`.
#[derive(Deserialize, JsonSchema)]
struct PatchBody {
    /// Seconds, from 0 to [`limits::MAX_WORLD_TIME`].
    #[schemars(range(min = 0, max = limits::MAX_WORLD_TIME))]
    world_time: Option<f64>,
    flags: Option<Map<String, Value>>,
    relationships: Option<Map<String, Value>>,
    expected_version: Option<i64>,
}

async fn patch(_: &GameSessions, request: Request<'_>) -> Result<Json<Session>, ApiError> {
    let session_id = request.param_as("session_id")?;
    let body: PatchBody = request.json()?;
    if body.world_time.is_some_and(|t| t < 0.0) {
        return Err(ApiError::bad_request("world_time must not be negative"));
    }
    let update = SessionUpdate {
        world_time: body.world_time,
        flags: body.flags.map(Value::Object),
        relationships: body.relationships.map(Value::Object),
        expected_version: body.expected_version,
    };
    let changed: Vec<&str> = [
        ("world_time", update.world_time.is_some()),
        ("flags", update.flags.is_some()),
        ("relationships", update.relationships.is_some()),
    ]
    .into_iter()
    .filter_map(|(field, given)| given.then_some(field))
    .collect();
    let session = request.host().update_session(session_id, &update).await?;
    let updated = json!({"session_id": session.id, "version": session.version, "changed": changed});
    request.host().announce("session:updated", &updated).await;
    Ok(Json(session))
}

export_plugin!(GameSessions);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_is_valid() {
        plugin_api::descriptor_of::<GameSessions>().unwrap();
    }
}
