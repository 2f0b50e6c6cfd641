//! `game-relationships`: NPC relationships as the game's later versions had them. It reacts
//! to `stealth:pickpocket` (without depending on, or being known by, `game-stealth`): a
//! thief who was caught loses 10 affinity with that NPC (floor 0; an entry without affinity
//! starts from 50). `GET /api/v1/game/relationships/{session_id}` shows each relationship with
//! its tier (80+ close, 60+ friendly, 40+ neutral, 20+ wary, below that hostile).

use plugin_api::{
    game::{relationship_tier, DEFAULT_AFFINITY},
    prelude::*,
};

/// Affinity lost when caught pickpocketing.
pub const CAUGHT_PENALTY: f64 = 10.0;

/// The plugin.
pub struct GameRelationships;

impl Plugin for GameRelationships {
    fn manifest() -> Manifest {
        Manifest::new(
            "game-relationships",
            "Game relationships",
            env!("CARGO_PKG_VERSION"),
        )
        .description("NPC relationships: affinity reacts to game events; tiers for the UI")
        .tags(["game-relationships"])
        .permissions([
            "session:read",
            "session:write",
            "event:subscribe",
            "log:emit",
        ])
        .subscribes(["stealth:pickpocket"])
    }

    fn routes(routes: &mut Routes<Self>) {
        routes
            .get(
                "/game/relationships/{session_id}",
                "A session's relationships, each with its tier",
                relationships,
            )
            .response::<RelationshipsView>();
    }

    async fn on_load(_: LoadContext) -> Result<Self, PluginError> {
        Ok(GameRelationships)
    }

    async fn on_event(&self, event: Event) -> Result<(), PluginError> {
        // Only game-stealth reports pickpockets; the host checks that the emitter declared the
        // topic, and names it here.
        if event.source != "game-stealth" {
            log::warn!(
                "ignored {} from {}: only game-stealth reports pickpockets",
                event.topic,
                event.source
            );
            return Ok(());
        }
        let attempt: PickpocketEvent = event.payload_as()?;
        let key = format!("npc:{}", attempt.npc_id);
        if !attempt.detected {
            log::info!(
                "stealth:pickpocket in session {}: not detected; affinity of {key} unchanged",
                attempt.session_id
            );
            return Ok(());
        }
        // Acting for the player whose pickpocket it was: their session, their unit of work.
        let (_, (before, after)) = event
            .host()
            .modify_session(attempt.session_id, |session| {
                Ok(lower_affinity(&mut session.relationships, &key))
            })
            .await?;
        log::info!(
            "lowered affinity of {key} in session {} from {before} to {after} (caught pickpocketing)",
            attempt.session_id
        );
        Ok(())
    }
}

/// The part of a `stealth:pickpocket` payload this plugin reads.
#[derive(Deserialize)]
struct PickpocketEvent {
    session_id: i64,
    npc_id: i64,
    detected: bool,
}

/// Lowers the entry's affinity by the penalty (floor 0, default 50), creating the entry if
/// needed; returns the affinity before and after.
fn lower_affinity(relationships: &mut Value, key: &str) -> (f64, f64) {
    if !relationships.is_object() {
        *relationships = json!({});
    }
    let entry = &mut relationships[key];
    if !entry.is_object() {
        *entry = json!({});
    }
    let before = entry
        .get("affinity")
        .and_then(Value::as_f64)
        .unwrap_or(DEFAULT_AFFINITY);
    let after = (before - CAUGHT_PENALTY).max(0.0);
    entry["affinity"] = if after.fract() == 0.0 {
        json!(after as i64)
    } else {
        json!(after)
    };
    (before, after)
}

/// The answer of `GET /game/relationships/{session_id}`.
#[derive(Serialize, JsonSchema)]
pub struct RelationshipsView {
    session_id: i64,
    /// Keyed `npc:{id}`: the stored entry plus `tier`.
    relationships: Map<String, Value>,
}

async fn relationships(
    _: &GameRelationships,
    request: Request,
) -> Result<Json<RelationshipsView>, ApiError> {
    let session = request.host().get_session(request.param_as("session_id")?)
        .await?;
    let mut view = Map::new();
    if let Value::Object(entries) = session.relationships {
        for (key, mut entry) in entries {
            let affinity = entry
                .get("affinity")
                .and_then(Value::as_f64)
                .unwrap_or(DEFAULT_AFFINITY);
            if entry.is_object() {
                entry["tier"] = json!(relationship_tier(affinity));
            }
            view.insert(key, entry);
        }
    }
    Ok(Json(RelationshipsView {
        session_id: session.id,
        relationships: view,
    }))
}

export_plugin!(GameRelationships);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_drops_by_ten_from_fifty_and_never_below_zero() {
        let mut relationships = json!({"npc:2": {"affinity": 5, "trust": 3}});
        assert_eq!(lower_affinity(&mut relationships, "npc:1"), (50.0, 40.0));
        assert_eq!(lower_affinity(&mut relationships, "npc:2"), (5.0, 0.0));
        assert_eq!(
            relationships,
            json!({"npc:1": {"affinity": 40}, "npc:2": {"affinity": 0, "trust": 3}})
        );
    }

    #[test]
    fn the_manifest_is_valid() {
        plugin_api::TestPlugin::<GameRelationships>::descriptor().unwrap();
    }
}
