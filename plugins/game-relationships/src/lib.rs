//! `game-relationships`: NPC relationships as the game's later versions had them. It reacts
//! to `stealth:pickpocket` (without depending on, or being known by, `game-stealth`): a
//! thief who was caught loses 10 affinity with that NPC (floor 0; an entry without affinity
//! starts from 50). `GET /api/v1/game/relationships/{session_id}` shows each relationship with
//! its tier (80+ close, 60+ friendly, 40+ neutral, 20+ wary, below that hostile).

use plugin_api::{
    game::{relationship_tier, SessionPath, DEFAULT_AFFINITY},
    prelude::*,
};

/// Affinity lost when caught pickpocketing.
pub const CAUGHT_PENALTY: f64 = 10.0;

/// The plugin.
#[derive(Default)]
pub struct GameRelationships;

impl Plugin for GameRelationships {
    const MANIFEST: PluginManifest = PluginManifest::new(
        "game-relationships",
        "Game relationships",
        env!("CARGO_PKG_VERSION"),
    )
    .description("NPC relationships: affinity reacts to game events; tiers for the UI")
    .tags(&["game-relationships"])
    .permissions(&[
        "session:read",
        "session:write",
        "event:subscribe",
        "log:emit",
    ])
    .subscribes(&["stealth:pickpocket"]);

    const ROUTES: &'static [Route<Self>] = &[Route::get(
        "/game/relationships/{session_id}",
        "A session's relationships, each with its tier",
        relationships,
    )
    .path::<SessionPath>()
    .response::<RelationshipsView>()];

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
    request: Request<'_>,
) -> Result<Json<RelationshipsView>, ApiError> {
    let session = request
        .host()
        .get_session(request.param_as("session_id")?)
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
        plugin_api::descriptor_of::<GameRelationships>().unwrap();
    }

    mod with_the_host {
        use host::testing::TestHost;

        use super::super::*;

        fn pickpocket(session_id: i64, npc_id: i64, detected: bool) -> Value {
            json!({
                "session_id": session_id, "npc_id": npc_id, "slot_id": "wallet",
                "success": false, "detected": detected,
            })
        }

        fn affinity(view: &Value, npc: &str) -> Value {
            view["relationships"][npc]["affinity"].clone()
        }

        #[test]
        fn a_caught_pickpocket_lowers_affinity_in_the_thiefs_session() {
            let host = TestHost::new();
            let relationships = host.load::<GameRelationships>(json!({})).unwrap();
            let (thief, stranger) = (host.new_user(), host.new_user());
            let world = host.create_world(thief, "Harbor");
            let session = host.create_session(thief, Some(world.id));
            let path = format!("/game/relationships/{}", session.id);
            assert_eq!(
                relationships.get_as(thief, &path).json_body()["relationships"],
                json!({})
            );

            host.emit_as(
                Some(thief),
                "game-stealth",
                "stealth:pickpocket",
                &pickpocket(session.id, 4, true),
            );
            assert_eq!(relationships.event_failures(), []);
            let delivered: Vec<_> = relationships
                .deliveries()
                .into_iter()
                .map(|d| (d.source, d.topic))
                .collect();
            assert_eq!(
                delivered,
                [("game-stealth".to_owned(), "stealth:pickpocket".to_owned())]
            );
            let view = relationships.get_as(thief, &path);
            assert_eq!(view.status, 200);
            assert_eq!(affinity(&view.json_body(), "npc:4"), json!(40));
            assert_eq!(
                view.json_body()["relationships"]["npc:4"]["tier"],
                "neutral"
            );

            // Caught again: 30; not caught: unchanged.
            host.emit_as(
                Some(thief),
                "game-stealth",
                "stealth:pickpocket",
                &pickpocket(session.id, 4, true),
            );
            host.emit_as(
                Some(thief),
                "game-stealth",
                "stealth:pickpocket",
                &pickpocket(session.id, 4, false),
            );
            let view = relationships.get_as(thief, &path).json_body();
            assert_eq!(affinity(&view, "npc:4"), json!(30));
            assert_eq!(view["relationships"]["npc:4"]["tier"], "wary");
            let stored = host.get_session(thief, session.id).unwrap();
            assert_eq!(stored.relationships, json!({"npc:4": {"affinity": 30}}));

            // Another user sees nothing of the thief's session.
            assert_eq!(relationships.get_as(stranger, &path).status, 404);
            assert_eq!(relationships.get(&path).status, 401);
        }

        #[test]
        fn an_event_acts_only_for_its_own_user() {
            let host = TestHost::new();
            let relationships = host.load::<GameRelationships>(json!({})).unwrap();
            let (thief, stranger) = (host.new_user(), host.new_user());
            let session = host.create_session(thief, None);

            // An event on the stranger's behalf naming the thief's session: the handler acts
            // for the stranger, finds no such session, and its delivery fails, changing nothing.
            host.emit_as(
                Some(stranger),
                "game-stealth",
                "stealth:pickpocket",
                &pickpocket(session.id, 4, true),
            );
            let failures = relationships.event_failures();
            assert_eq!(failures.len(), 1);
            assert!(
                failures[0].error.as_deref().unwrap().contains("not found"),
                "{failures:?}"
            );
            // Another source is ignored (with a warning), and the topic it does not
            // subscribe to never reaches it.
            host.emit_as(
                Some(thief),
                "game-other",
                "stealth:pickpocket",
                &pickpocket(session.id, 4, true),
            );
            host.emit_as(
                Some(thief),
                "game-stealth",
                "stealth:other",
                &pickpocket(session.id, 4, true),
            );
            assert_eq!(relationships.deliveries().len(), 2);
            assert_eq!(relationships.event_failures().len(), 1);
            let stored = host.get_session(thief, session.id).unwrap();
            assert_eq!(stored.relationships, json!({}));
        }
    }
}
