//! `game-stealth`: `POST /api/v1/game/stealth/pickpocket`, exactly as the original game
//! specified it: validation order, two independent rolls, the flags and relationship
//! changes, the messages, and `updated_flags`. The change is saved with the session by
//! compare-and-set on its version, so concurrent attempts are never lost.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Mutex,
};

use plugin_api::{
    game::{limits, Session},
    prelude::*,
};

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
            .emits(["stealth:pickpocket", "interaction:executed"])
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
    /// The pocket or slot picked (at most 128 characters; it is kept in the session's flags).
    #[schemars(length(max = limits::MAX_KEY_CHARS))]
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
    if let Err(message) = limits::check_length("slot_id", &body.slot_id, limits::MAX_KEY_CHARS) {
        return Err(ApiError::validation(
            "string_too_long",
            vec![json!("body"), json!("slot_id")],
            message,
        ));
    }
    // Roll once, and only once the session is known to exist (a 404 must not consume rolls
    // of a seeded RNG); a retry of the save after a lost race reuses the same rolls.
    let mut rolls = None;
    let (session, (success, detected)) = plugin
        .host
        .modify_session(body.session_id, |session| {
            let (success, detected) = *rolls.get_or_insert_with(|| {
                let mut rng = plugin
                    .rng
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                (
                    rng.f64() < body.base_success_chance,
                    rng.f64() < body.detection_chance,
                )
            });
            apply_attempt(session, &body, success, detected).map_err(ApiError::conflict)?;
            Ok((success, detected))
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
/// The state change of one attempt, applied to the session as read. Containers are
/// created when missing; a value of the wrong shape where one is needed is an error, never
/// overwritten (the session is then not saved).
fn apply_attempt(
    session: &mut Session,
    body: &PickpocketRequest,
    success: bool,
    detected: bool,
) -> Result<(), String> {
    let npc_id = body.npc_id;
    let stealth = object_in(&mut session.flags, "stealth", "flags")?;
    let attempts = stealth
        .entry("pickpocket_attempts")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(list) = attempts else {
        return Err(format!(
            "flags.stealth.pickpocket_attempts is {attempts}, not a list; fix the session before pickpocketing"
        ));
    };
    list.push(json!({"npc_id": npc_id, "slot_id": body.slot_id, "success": success, "detected": detected}));
    if success {
        stealth.insert(format!("stole_from_npc_{npc_id}"), Value::Bool(true));
    }
    if detected {
        stealth.insert(format!("caught_by_npc_{npc_id}"), Value::Bool(true));
        let key = format!("npc:{npc_id}");
        let entry = object_in(&mut session.relationships, &key, "relationships")?;
        let flags = object_in_map(entry, "flags", &format!("relationships.{key}"))?;
        flags.insert("caught_pickpocketing".to_owned(), Value::Bool(true));
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
    Ok(())
}

/// The object at `key` of the object `value` (named `path` in errors), created if missing.
fn object_in<'a>(
    value: &'a mut Value,
    key: &str,
    path: &str,
) -> Result<&'a mut Map<String, Value>, String> {
    match value {
        Value::Object(map) => object_in_map(map, key, path),
        other => Err(format!("{path} is {other}, not an object")),
    }
}

fn object_in_map<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a mut Map<String, Value>, String> {
    match map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()))
    {
        Value::Object(inner) => Ok(inner),
        other => Err(format!(
            "{path}.{key} is {other}, not an object; fix the session before pickpocketing"
        )),
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
        apply_attempt(&mut s, &body(7), true, false).unwrap();
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
        apply_attempt(&mut s, &body(7), false, true).unwrap();
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
    fn values_of_the_wrong_shape_are_refused_not_overwritten() {
        let mut s = session(json!({"stealth": "x"}), json!({}));
        let error = apply_attempt(&mut s, &body(1), true, false).unwrap_err();
        assert!(error.contains("flags.stealth is \"x\""), "{error}");
        let mut s = session(json!({}), json!({"npc:1": 5}));
        let error = apply_attempt(&mut s, &body(1), false, true).unwrap_err();
        assert!(error.contains("relationships.npc:1 is 5"), "{error}");
        let mut s = session(json!({"stealth": {"pickpocket_attempts": {}}}), json!({}));
        assert!(apply_attempt(&mut s, &body(1), true, true)
            .unwrap_err()
            .contains("not a list"));
    }

    #[test]
    fn a_score_is_only_lowered_when_present_and_numeric() {
        let mut s = session(
            json!({}),
            json!({"npc:3": {"score": 25.5}, "npc:4": {"score": "high"}}),
        );
        apply_attempt(&mut s, &body(3), true, true).unwrap();
        apply_attempt(&mut s, &body(4), true, true).unwrap();
        apply_attempt(&mut s, &body(5), true, true).unwrap();
        assert_eq!(s.relationships["npc:3"]["score"], 15.5);
        assert_eq!(s.relationships["npc:4"]["score"], "high");
        assert_eq!(
            s.relationships["npc:5"],
            json!({"flags": {"caught_pickpocketing": true}})
        );
    }
}
