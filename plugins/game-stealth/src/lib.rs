//! `game-stealth`: `POST /api/v1/game/stealth/pickpocket`, exactly as the original game
//! specified it: validation order, two independent rolls, the flags and relationship
//! changes, the messages, and `updated_flags`. The change is saved with the session by
//! compare-and-set on its version, so concurrent attempts are never lost.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Mutex,
};

use plugin_api::{game::Session, prelude::*};

/// The plugin: the RNG (seedable for play-tests) and a count of attempts served.
pub struct GameStealth {
    host: Host,
    rng: Mutex<fastrand::Rng>,
    seeded: bool,
    attempts: AtomicU64,
}

/// `[plugins.game-stealth]` settings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Fixes the RNG seed so a play-test replays the same rolls.
    seed: Option<u64>,
}

impl Plugin for GameStealth {
    fn manifest() -> Manifest {
        Manifest::new("game-stealth", "Game stealth", env!("CARGO_PKG_VERSION"))
            .description("Stealth mechanics: pickpocketing NPCs")
            .tags(["game-stealth"])
            .depends_on("game-sessions ^1")
            .depends_on("game-npcs ^1")
            .permissions(["session:read", "session:write", "log:emit", "event:emit"])
            .optional_permissions(["event:emit"])
    }

    fn routes(routes: &mut Routes<Self>) {
        routes
            .post(
                "/game/stealth/pickpocket",
                "Attempt to pickpocket an NPC",
                pickpocket,
            )
            .request::<PickpocketRequest>()
            .response::<PickpocketResponse>();
    }

    async fn on_load(context: LoadContext) -> Result<Self, PluginError> {
        let settings: Settings = context.config_as()?;
        let rng = match settings.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        Ok(GameStealth {
            host: context.host(),
            rng: Mutex::new(rng),
            seeded: settings.seed.is_some(),
            attempts: AtomicU64::new(0),
        })
    }

    async fn on_enable(&self) -> Result<(), PluginError> {
        let rolls = if self.seeded {
            "seeded (reproducible)"
        } else {
            "random"
        };
        log::info!("pickpocketing enabled; rolls are {rolls}");
        Ok(())
    }

    async fn on_disable(&self) -> Result<(), PluginError> {
        log::info!(
            "pickpocketing disabled after {} attempts",
            self.attempts.load(Ordering::Relaxed)
        );
        Ok(())
    }
}

/// The request body (`world_id` is accepted and unused, as in the original).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct PickpocketRequest {
    npc_id: i64,
    slot_id: String,
    base_success_chance: f64,
    detection_chance: f64,
    session_id: i64,
    #[serde(default)]
    #[allow(dead_code)]
    world_id: Option<i64>,
}

/// The answer.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PickpocketResponse {
    success: bool,
    detected: bool,
    /// The session's whole `flags` after the change.
    updated_flags: Value,
    message: String,
}

async fn pickpocket(
    plugin: &GameStealth,
    request: Request,
) -> Result<Json<PickpocketResponse>, ApiError> {
    let body: PickpocketRequest = request.json()?;
    if !(0.0..=1.0).contains(&body.base_success_chance) {
        return Err(ApiError::bad_request(
            "base_success_chance must be between 0 and 1",
        ));
    }
    if !(0.0..=1.0).contains(&body.detection_chance) {
        return Err(ApiError::bad_request(
            "detection_chance must be between 0 and 1",
        ));
    }
    // Roll once, before any retry of the save: a lost race must not re-roll the dice.
    let (r1, r2) = {
        let mut rng = plugin
            .rng
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (rng.f64(), rng.f64())
    };
    let success = r1 < body.base_success_chance;
    let detected = r2 < body.detection_chance;
    let (session, ()) = plugin
        .host
        .modify_session(body.session_id, |session| {
            apply_attempt(session, &body, success, detected);
            Ok(())
        })
        .await?;
    plugin.attempts.fetch_add(1, Ordering::Relaxed);
    let (session_id, npc_id) = (session.id, body.npc_id);
    let attempt = json!({
        "session_id": session_id, "npc_id": npc_id, "slot_id": body.slot_id,
        "success": success, "detected": detected,
    });
    plugin.host.announce("stealth:pickpocket", &attempt).await;
    let interaction =
        json!({"interaction": "pickpocket", "session_id": session_id, "npc_id": npc_id});
    plugin
        .host
        .announce("interaction:executed", &interaction)
        .await;
    Ok(Json(PickpocketResponse {
        success,
        detected,
        updated_flags: session.flags,
        message: message(body.npc_id, success, detected),
    }))
}

fn message(npc_id: i64, success: bool, detected: bool) -> String {
    let mut message = if success {
        format!("You successfully pickpocketed NPC #{npc_id}!")
    } else {
        format!("Pickpocket attempt on NPC #{npc_id} failed.")
    };
    if detected {
        message.push_str(" You were detected!");
    }
    message
}

/// The state change of one attempt, applied to the session as read.
fn apply_attempt(session: &mut Session, body: &PickpocketRequest, success: bool, detected: bool) {
    let npc_id = body.npc_id;
    let stealth = object_at(&mut session.flags, "stealth");
    let attempts = stealth
        .entry("pickpocket_attempts")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !attempts.is_array() {
        *attempts = Value::Array(Vec::new());
    }
    if let Value::Array(list) = attempts {
        list.push(json!({"npc_id": npc_id, "slot_id": body.slot_id, "success": success, "detected": detected}));
    }
    if success {
        stealth.insert(format!("stole_from_npc_{npc_id}"), Value::Bool(true));
    }
    if detected {
        stealth.insert(format!("caught_by_npc_{npc_id}"), Value::Bool(true));
        let entry = object_at(&mut session.relationships, &format!("npc:{npc_id}"));
        object_at_map(entry, "flags").insert("caught_pickpocketing".to_owned(), Value::Bool(true));
        if let Some(score) = entry.get("score").and_then(Value::as_f64) {
            let lowered = (score - 10.0).max(0.0);
            let value = if entry["score"].is_i64() || entry["score"].is_u64() {
                json!(lowered as i64)
            } else {
                json!(lowered)
            };
            entry.insert("score".to_owned(), value);
        }
    }
}

/// The object at `key` of a JSON object value, created (or replacing a non-object) if needed.
fn object_at<'a>(value: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    let Value::Object(map) = value else {
        unreachable!("made an object above")
    };
    object_at_map(map, key)
}

fn object_at_map<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(inner) => inner,
        _ => unreachable!("made an object above"),
    }
}

export_plugin!(GameStealth);

#[cfg(test)]
mod tests {
    use super::*;

    fn session(flags: Value, relationships: Value) -> Session {
        Session {
            id: 1,
            user_id: None,
            world_id: None,
            scene_id: None,
            current_node_id: None,
            flags,
            relationships,
            world_time: 0.0,
            version: 1,
        }
    }

    fn body(npc_id: i64) -> PickpocketRequest {
        PickpocketRequest {
            npc_id,
            slot_id: "wallet".into(),
            base_success_chance: 0.5,
            detection_chance: 0.5,
            session_id: 1,
            world_id: None,
        }
    }

    #[test]
    fn success_undetected_records_the_theft() {
        let mut s = session(json!({}), json!({}));
        apply_attempt(&mut s, &body(7), true, false);
        assert_eq!(
            s.flags,
            json!({"stealth": {
                "pickpocket_attempts": [{"npc_id": 7, "slot_id": "wallet", "success": true, "detected": false}],
                "stole_from_npc_7": true,
            }})
        );
        assert_eq!(s.relationships, json!({}));
        assert_eq!(
            message(7, true, false),
            "You successfully pickpocketed NPC #7!"
        );
    }

    #[test]
    fn failure_detected_marks_the_relationship_and_lowers_score() {
        let mut s = session(
            json!({"stealth": {"pickpocket_attempts": [{"npc_id": 1}]}, "other": 1}),
            json!({"npc:7": {"affinity": 50, "score": 5}}),
        );
        apply_attempt(&mut s, &body(7), false, true);
        assert_eq!(
            s.flags["stealth"]["pickpocket_attempts"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(s.flags["stealth"]["caught_by_npc_7"], true);
        assert_eq!(s.flags["other"], 1);
        assert!(s.flags["stealth"].get("stole_from_npc_7").is_none());
        assert_eq!(
            s.relationships["npc:7"],
            json!({"affinity": 50, "score": 0, "flags": {"caught_pickpocketing": true}})
        );
        assert_eq!(
            message(7, false, true),
            "Pickpocket attempt on NPC #7 failed. You were detected!"
        );
    }

    #[test]
    fn a_score_is_only_lowered_when_present_and_numeric() {
        let mut s = session(
            json!({}),
            json!({"npc:3": {"score": 25.5}, "npc:4": {"score": "high"}}),
        );
        apply_attempt(&mut s, &body(3), true, true);
        apply_attempt(&mut s, &body(4), true, true);
        apply_attempt(&mut s, &body(5), true, true);
        assert_eq!(s.relationships["npc:3"]["score"], 15.5);
        assert_eq!(s.relationships["npc:4"]["score"], "high");
        assert_eq!(
            s.relationships["npc:5"],
            json!({"flags": {"caught_pickpocketing": true}})
        );
    }
}
