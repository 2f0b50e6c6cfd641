//! `game-stealth`: `POST /api/v1/game/stealth/pickpocket`, exactly as the original game
//! specified it: validation order, two independent rolls, the flags and relationship
//! changes, the messages, and `updated_flags`. The change is one `session.patch`: appended
//! and set at paths by the host under the session's lock, so concurrent attempts (and other
//! plugins writing other keys) are never lost, and the session never travels here and back.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
};

use plugin_api::{
    abi::ServiceErrorKind,
    game::{limits, DocumentChange, SessionPatch},
    prelude::*,
};

/// The plugin: the rolls (seedable for play-tests) and a count of attempts served.
pub struct GameStealth {
    rolls: Mutex<Rolls>,
    seeded: bool,
    attempts: AtomicU64,
}

/// Uniform draws in [0, 1), two per attempt. An attempt that finds no session gives its
/// draws back for the next one, so with a seed a play-test's rolls do not depend on
/// requests that failed.
struct Rolls {
    rng: fastrand::Rng,
    returned: VecDeque<(f64, f64)>,
}

impl Rolls {
    fn take(&mut self) -> (f64, f64) {
        self.returned
            .pop_front()
            .unwrap_or_else(|| (self.rng.f64(), self.rng.f64()))
    }
}

/// `[plugins.game-stealth]` settings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Fixes the RNG seed so a play-test replays the same rolls.
    seed: Option<u64>,
}

impl Plugin for GameStealth {
    const MANIFEST: PluginManifest =
        PluginManifest::new("game-stealth", "Game stealth", env!("CARGO_PKG_VERSION"))
            .description("Stealth mechanics: pickpocketing NPCs")
            .tags(&["game-stealth"])
            .depends_on(&["game-sessions ^1", "game-npcs ^1"])
            .permissions(&["session:read", "session:write", "log:emit", "event:emit"])
            .optional_permissions(&["event:emit"])
            .emits(&["stealth:pickpocket", "interaction:executed"]);

    const ROUTES: &'static [Route<Self>] = &[Route::post(
        "/game/stealth/pickpocket",
        "Attempt to pickpocket an NPC",
        pickpocket,
    )
    .request::<PickpocketRequest>()
    .response::<PickpocketResponse>()];

    async fn on_load(context: LoadContext) -> Result<Self, PluginError> {
        let settings: Settings = context.config_as()?;
        let rng = match settings.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        Ok(GameStealth {
            rolls: Mutex::new(Rolls {
                rng,
                returned: VecDeque::new(),
            }),
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
    /// The chance of success, from 0 to 1.
    #[schemars(range(min = 0.0, max = 1.0))]
    base_success_chance: f64,
    /// The chance of being seen, from 0 to 1.
    #[schemars(range(min = 0.0, max = 1.0))]
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
    #[schemars(with = "Value")]
    updated_flags: Box<plugin_api::serde_json::value::RawValue>,
    message: String,
}

async fn pickpocket(
    plugin: &GameStealth,
    request: Request<'_>,
) -> Result<Json<PickpocketResponse>, ApiError> {
    // The original answered 400 (not 422) for a chance outside [0, 1]; the schema states the
    // range, which the typed parse below would refuse with 422, so the wire contract's 400
    // comes first.
    let raw: Value = request.json()?;
    for chance in ["base_success_chance", "detection_chance"] {
        let value = raw.get(chance).and_then(Value::as_f64);
        if value.is_some_and(|value| !(0.0..=1.0).contains(&value)) {
            return Err(ApiError::bad_request(format!(
                "{chance} must be between 0 and 1"
            )));
        }
    }
    let body: PickpocketRequest = request.json()?;
    if let Err(message) = limits::check_length("slot_id", &body.slot_id, limits::MAX_KEY_CHARS) {
        return Err(ApiError::validation(
            "string_too_long",
            vec![json!("body"), json!("slot_id")],
            message,
        ));
    }
    let draws = plugin
        .rolls
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    let success = draws.0 < body.base_success_chance;
    let detected = draws.1 < body.detection_chance;
    let patch = attempt_patch(&body, success, detected);
    let session = match request.host().patch_session(body.session_id, &patch).await {
        Ok(session) => session,
        Err(error) => {
            if error.kind == ServiceErrorKind::NotFound {
                plugin
                    .rolls
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .returned
                    .push_front(draws);
            }
            return Err(error.into());
        }
    };
    plugin.attempts.fetch_add(1, Ordering::Relaxed);
    let (session_id, npc_id) = (session.id, body.npc_id);
    let attempt = json!({
        "session_id": session_id, "npc_id": npc_id, "slot_id": body.slot_id,
        "success": success, "detected": detected,
    });
    request
        .host()
        .announce("stealth:pickpocket", &attempt)
        .await;
    let interaction =
        json!({"interaction": "pickpocket", "session_id": session_id, "npc_id": npc_id});
    request
        .host()
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

/// The state change of one attempt, as changes at paths: the attempt appended to
/// `flags.stealth.pickpocket_attempts`, the theft or the capture flagged, and on capture the
/// relationship marked and its numeric `score` lowered by 10 (floor 0). Containers are
/// created when missing; a value of the wrong shape on a path makes the host refuse the
/// whole change (409), never overwrite it.
fn attempt_patch(body: &PickpocketRequest, success: bool, detected: bool) -> SessionPatch {
    let npc_id = body.npc_id;
    let path = |keys: &[&str]| keys.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>();
    let mut flags = vec![DocumentChange::Append {
        path: path(&["stealth", "pickpocket_attempts"]),
        value: json!({"npc_id": npc_id, "slot_id": body.slot_id, "success": success, "detected": detected}),
    }];
    let mut relationships = Vec::new();
    if success {
        flags.push(DocumentChange::Set {
            path: path(&["stealth", &format!("stole_from_npc_{npc_id}")]),
            value: Value::Bool(true),
        });
    }
    if detected {
        let key = format!("npc:{npc_id}");
        flags.push(DocumentChange::Set {
            path: path(&["stealth", &format!("caught_by_npc_{npc_id}")]),
            value: Value::Bool(true),
        });
        relationships.push(DocumentChange::Set {
            path: path(&[&key, "flags", "caught_pickpocketing"]),
            value: Value::Bool(true),
        });
        relationships.push(DocumentChange::Add {
            path: path(&[&key, "score"]),
            by: -10.0,
            min: Some(0.0),
            max: None,
            default: None,
        });
    }
    SessionPatch {
        flags,
        relationships,
        expected_version: None,
    }
}

export_plugin!(GameStealth);

#[cfg(test)]
mod tests {
    use plugin_api::game::apply_changes;

    use super::*;

    /// The session's documents after the attempt's patch, as the host applies it.
    fn attempt(
        flags: Value,
        relationships: Value,
        npc_id: i64,
        success: bool,
        detected: bool,
    ) -> Result<(Value, Value), String> {
        let patch = attempt_patch(&body(npc_id), success, detected);
        let (mut flags, mut relationships) = (flags, relationships);
        apply_changes("flags", &mut flags, &patch.flags).map_err(|e| format!("{e:?}"))?;
        apply_changes("relationships", &mut relationships, &patch.relationships)
            .map_err(|e| format!("{e:?}"))?;
        Ok((flags, relationships))
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

    mod with_the_host {
        use host::testing::TestHost;
        use plugin_api::abi::ServiceErrorKind;

        use super::super::*;

        fn attempt(session_id: i64, npc_id: i64, success: f64, detection: f64) -> Value {
            json!({
                "npc_id": npc_id, "slot_id": "wallet", "session_id": session_id,
                "base_success_chance": success, "detection_chance": detection,
            })
        }

        #[test]
        fn a_pickpocket_changes_the_callers_session_and_no_one_elses() {
            let host = TestHost::new();
            let stealth = host.load::<GameStealth>(json!({"seed": 7})).unwrap();
            let (thief, stranger) = (host.new_user(), host.new_user());
            let world = host.create_world(thief, "Harbor");
            let session = host.create_session(thief, Some(world.id));

            // Chances of 1 make both rolls hit, whatever the seed draws.
            let response = stealth.post_json_as(
                thief,
                "/game/stealth/pickpocket",
                &attempt(session.id, 3, 1.0, 1.0),
            );
            assert_eq!(response.status, 200, "{:?}", response.json_body());
            let body = response.json_body();
            assert_eq!(body["success"], true);
            assert_eq!(body["detected"], true);
            assert_eq!(
                body["message"],
                "You successfully pickpocketed NPC #3! You were detected!"
            );
            assert_eq!(body["updated_flags"]["stealth"]["caught_by_npc_3"], true);

            let saved = host.get_session(thief, session.id).unwrap();
            assert_eq!(
                saved.flags["stealth"]["pickpocket_attempts"],
                json!([{"npc_id": 3, "slot_id": "wallet", "success": true, "detected": true}])
            );
            assert_eq!(saved.flags["stealth"]["stole_from_npc_3"], true);
            assert_eq!(
                saved.relationships["npc:3"],
                json!({"flags": {"caught_pickpocketing": true}})
            );
            assert_eq!(saved.version, session.version + 1);
            // The attempt was announced on the thief's behalf, after the plugin announcements.
            let announced: Vec<_> = host
                .outbox()
                .into_iter()
                .filter(|e| e.source == "game-stealth")
                .map(|e| (e.topic, e.user_id, e.payload))
                .collect();
            assert_eq!(
                announced,
                [
                    (
                        "stealth:pickpocket".to_owned(),
                        Some(thief),
                        json!({"session_id": session.id, "npc_id": 3, "slot_id": "wallet",
                               "success": true, "detected": true})
                    ),
                    (
                        "interaction:executed".to_owned(),
                        Some(thief),
                        json!({"interaction": "pickpocket", "session_id": session.id, "npc_id": 3})
                    ),
                ]
            );

            // Another user cannot see, or change, the thief's session.
            let refused = stealth.post_json_as(
                stranger,
                "/game/stealth/pickpocket",
                &attempt(session.id, 3, 1.0, 0.0),
            );
            assert_eq!(refused.status, 404, "{:?}", refused.json_body());
            let error = host.get_session(stranger, session.id).unwrap_err();
            assert_eq!(error.kind, ServiceErrorKind::NotFound);
            // Nor can an anonymous caller reach the route at all.
            let anonymous = stealth.call(
                None,
                Method::Post,
                "/game/stealth/pickpocket",
                attempt(session.id, 3, 1.0, 0.0).to_string().as_bytes(),
            );
            assert_eq!(anonymous.status, 401);
            assert_eq!(host.get_session(thief, session.id).unwrap(), saved);
            // The refused requests announced nothing.
            let emitted = host
                .outbox()
                .iter()
                .filter(|e| e.source == "game-stealth")
                .count();
            assert_eq!(emitted, 2);
        }

        #[test]
        fn a_refused_attempt_leaves_the_session_as_it_was() {
            let host = TestHost::new();
            let stealth = host.load::<GameStealth>(json!({"seed": 7})).unwrap();
            let thief = host.new_user();
            let session = host.create_session(thief, None);
            let response = stealth.post_json_as(
                thief,
                "/game/stealth/pickpocket",
                &attempt(session.id, 3, 1.5, 0.0),
            );
            assert_eq!(response.status, 400);
            // Chances of 0 make both rolls miss: the attempt is recorded, nothing else.
            let response = stealth.post_json_as(
                thief,
                "/game/stealth/pickpocket",
                &attempt(session.id, 9, 0.0, 0.0),
            );
            assert_eq!(response.status, 200);
            assert_eq!(
                response.json_body()["message"],
                "Pickpocket attempt on NPC #9 failed."
            );
            let saved = host.get_session(thief, session.id).unwrap();
            assert_eq!(
                saved.flags,
                json!({"stealth": {"pickpocket_attempts": [
                    {"npc_id": 9, "slot_id": "wallet", "success": false, "detected": false}
                ]}})
            );
            assert_eq!(saved.relationships, json!({}));
        }
    }

    #[test]
    fn success_undetected_records_the_theft() {
        let (flags, relationships) = attempt(json!({}), json!({}), 7, true, false).unwrap();
        assert_eq!(
            flags,
            json!({"stealth": {
                "pickpocket_attempts": [{"npc_id": 7, "slot_id": "wallet", "success": true, "detected": false}],
                "stole_from_npc_7": true,
            }})
        );
        assert_eq!(relationships, json!({}));
        assert_eq!(
            message(7, true, false),
            "You successfully pickpocketed NPC #7!"
        );
    }

    #[test]
    fn failure_detected_marks_the_relationship_and_lowers_score() {
        let (flags, relationships) = attempt(
            json!({"stealth": {"pickpocket_attempts": [{"npc_id": 1}]}, "other": 1}),
            json!({"npc:7": {"affinity": 50, "score": 5}}),
            7,
            false,
            true,
        )
        .unwrap();
        assert_eq!(
            flags["stealth"]["pickpocket_attempts"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(flags["stealth"]["caught_by_npc_7"], true);
        assert_eq!(flags["other"], 1);
        assert!(flags["stealth"].get("stole_from_npc_7").is_none());
        assert_eq!(
            relationships["npc:7"],
            json!({"affinity": 50, "score": 0, "flags": {"caught_pickpocketing": true}})
        );
        assert_eq!(
            message(7, false, true),
            "Pickpocket attempt on NPC #7 failed. You were detected!"
        );
    }

    #[test]
    fn values_of_the_wrong_shape_are_refused_not_overwritten() {
        let error = attempt(json!({"stealth": "x"}), json!({}), 1, true, false).unwrap_err();
        assert!(error.contains("flags.stealth is \\\"x\\\""), "{error}");
        let error = attempt(json!({}), json!({"npc:1": 5}), 1, false, true).unwrap_err();
        assert!(error.contains("relationships.npc:1 is 5"), "{error}");
        let error = attempt(
            json!({"stealth": {"pickpocket_attempts": {}}}),
            json!({}),
            1,
            true,
            true,
        )
        .unwrap_err();
        assert!(error.contains("not a list"), "{error}");
    }

    #[test]
    fn a_score_is_only_lowered_when_present_and_numeric() {
        let mut relationships = json!({"npc:3": {"score": 25.5}, "npc:4": {"score": "high"}});
        for npc in [3, 4, 5] {
            relationships = attempt(json!({}), relationships, npc, true, true)
                .unwrap()
                .1;
        }
        assert_eq!(relationships["npc:3"]["score"], 15.5);
        assert_eq!(relationships["npc:4"]["score"], "high");
        assert_eq!(
            relationships["npc:5"],
            json!({"flags": {"caught_pickpocketing": true}})
        );
    }
}
