//! The game over HTTP, on every test database: the reference pickpocket flow and its
//! persistence across restarts, validation statuses, no lost updates under concurrency,
//! optimistic versions, worlds/NPCs/locations/presence, dialogue, permissions, and a
//! missing dependency library.

use serde_json::{json, Value};

use crate::{
    databases::{test_databases, TestDatabase},
    harness::{pixsim7, PluginDir, RunningHost, GAME_PLUGINS},
};

fn start(dir: &PluginDir, database: &TestDatabase) -> RunningHost {
    pixsim7(dir)
        .env("PIXSIM7_DATABASE_URL", &database.url)
        .start()
}

fn pickpocket(session_id: i64, npc_id: i64, success: f64, detection: f64) -> Value {
    json!({
        "npc_id": npc_id, "slot_id": "wallet", "base_success_chance": success,
        "detection_chance": detection, "session_id": session_id, "world_id": 1,
    })
}

#[test]
fn the_reference_pickpocket_flow_persists_across_restarts() {
    for database in test_databases() {
        let dir = PluginDir::with(GAME_PLUGINS);
        let host = start(&dir, &database);
        let world = host.ok("POST", "/api/v1/game/worlds", json!({"name": "Harbor"}));
        let session = host.ok(
            "POST",
            "/api/v1/game/sessions",
            json!({"world_id": world["id"]}),
        );
        let npc = host.ok("POST", "/api/v1/game/npcs", json!({"name": "Mara"}));
        let (sid, nid) = (session["id"].as_i64().unwrap(), npc["id"].as_i64().unwrap());
        // A relationship with a score, to see it lowered when caught.
        host.ok(
            "PATCH",
            &format!("/api/v1/game/sessions/{sid}"),
            json!({"relationships": {format!("npc:{nid}"): {"affinity": 50, "score": 25}}}),
        );

        let first = host.ok(
            "POST",
            "/api/v1/game/stealth/pickpocket",
            pickpocket(sid, nid, 1.0, 0.0),
        );
        assert_eq!(
            (&first["success"], &first["detected"]),
            (&json!(true), &json!(false)),
            "{}",
            database.kind
        );
        assert_eq!(
            first["message"],
            format!("You successfully pickpocketed NPC #{nid}!")
        );
        let second = host.ok(
            "POST",
            "/api/v1/game/stealth/pickpocket",
            pickpocket(sid, nid, 0.0, 1.0),
        );
        assert_eq!(
            (&second["success"], &second["detected"]),
            (&json!(false), &json!(true))
        );
        assert_eq!(
            second["message"],
            format!("Pickpocket attempt on NPC #{nid} failed. You were detected!")
        );

        let expected_flags = json!({"stealth": {
            "pickpocket_attempts": [
                {"npc_id": nid, "slot_id": "wallet", "success": true, "detected": false},
                {"npc_id": nid, "slot_id": "wallet", "success": false, "detected": true},
            ],
            format!("stole_from_npc_{nid}"): true,
            format!("caught_by_npc_{nid}"): true,
        }});
        let expected_relationships = json!({format!("npc:{nid}"): {"affinity": 50, "score": 15, "flags": {"caught_pickpocketing": true}}});
        assert_eq!(second["updated_flags"], expected_flags);
        let read = host.ok("GET", &format!("/api/v1/game/sessions/{sid}"), json!(null));
        assert_eq!(read["flags"], expected_flags, "{}", database.kind);
        assert_eq!(read["relationships"], expected_relationships);
        assert_eq!(read["version"], 4);
        assert!(host.stop().status.success());

        let host = start(&dir, &database);
        let again = host.ok("GET", &format!("/api/v1/game/sessions/{sid}"), json!(null));
        assert_eq!(
            again, read,
            "the session survives a restart on {}",
            database.kind
        );
        let worlds = host.ok("GET", "/api/v1/game/worlds", json!(null));
        assert_eq!(worlds, json!([{"id": world["id"], "name": "Harbor"}]));
        assert!(host.stop().status.success());
    }
}

#[test]
fn pickpocket_validation_follows_the_reference_order() {
    for database in test_databases() {
        let dir = PluginDir::with(GAME_PLUGINS);
        let host = start(&dir, &database);
        let sid = host.ok("POST", "/api/v1/game/sessions", json!({}))["id"]
            .as_i64()
            .unwrap();
        let post = |body: Value| host.post_json("/api/v1/game/stealth/pickpocket", &body);

        let partial = json!({"npc_id": 1, "slot_id": "x", "base_success_chance": 0.5, "detection_chance": 0.5});
        let missing = post(partial.clone());
        assert_eq!(missing.status, 422);
        assert_eq!(
            missing.json()["detail"],
            json!([{"type": "missing", "loc": ["body", "session_id"], "msg": "Field required", "input": partial}])
        );
        // Every problem listed, as FastAPI does: an empty object lacks all five fields.
        let empty = post(json!({}));
        assert_eq!(empty.status, 422);
        let required = [
            "npc_id",
            "slot_id",
            "base_success_chance",
            "detection_chance",
            "session_id",
        ];
        let expected: Vec<Value> = required
            .iter()
            .map(|field| json!({"type": "missing", "loc": ["body", field], "msg": "Field required", "input": {}}))
            .collect();
        assert_eq!(empty.json()["detail"], json!(expected));
        let wrong_types = post(
            json!({"npc_id": "seven", "slot_id": 5, "base_success_chance": 0.5, "detection_chance": "high", "session_id": sid}),
        );
        assert_eq!(wrong_types.status, 422);
        let detail = wrong_types.json()["detail"].clone();
        let problems: Vec<(Value, Value)> = detail
            .as_array()
            .unwrap()
            .iter()
            .map(|issue| (issue["loc"].clone(), issue["type"].clone()))
            .collect();
        assert_eq!(
            problems,
            [
                (json!(["body", "npc_id"]), json!("int_parsing")),
                (json!(["body", "slot_id"]), json!("string_type")),
                (json!(["body", "detection_chance"]), json!("float_parsing")),
            ],
            "{detail}"
        );
        assert_eq!(
            detail[0]["msg"],
            "Input should be a valid integer, unable to parse string as an integer"
        );
        assert_eq!(detail[0]["input"], "seven");
        let both_bad = post(pickpocket(999_999, 1, 1.5, -1.0));
        assert_eq!(
            (both_bad.status, both_bad.json()),
            (
                400,
                json!({"detail": "base_success_chance must be between 0 and 1"})
            )
        );
        let detection_bad = post(pickpocket(999_999, 1, 0.5, 1.01));
        assert_eq!(
            (detection_bad.status, detection_bad.json()),
            (
                400,
                json!({"detail": "detection_chance must be between 0 and 1"})
            )
        );
        let no_session = post(pickpocket(999_999, 1, 0.5, 0.5));
        assert_eq!(
            (no_session.status, no_session.json()),
            (404, json!({"detail": "GameSession 999999 not found"}))
        );
        let malformed = host.request("POST", "/api/v1/game/stealth/pickpocket", &[], b"{not json");
        assert_eq!(malformed.status, 422);
        let unchanged = host.ok("GET", &format!("/api/v1/game/sessions/{sid}"), json!(null));
        assert_eq!(
            (unchanged["version"].clone(), unchanged["flags"].clone()),
            (json!(1), json!({})),
            "bad input changes nothing"
        );
    }
}

#[test]
fn fifty_concurrent_pickpockets_on_one_session_record_fifty_attempts() {
    for database in test_databases() {
        let dir = PluginDir::with(GAME_PLUGINS);
        let host = start(&dir, &database);
        let sid = host.ok("POST", "/api/v1/game/sessions", json!({}))["id"]
            .as_i64()
            .unwrap();
        std::thread::scope(|scope| {
            let attempts: Vec<_> = (0..50)
                .map(|i| {
                    let host = &host;
                    scope.spawn(move || {
                        host.post_json(
                            "/api/v1/game/stealth/pickpocket",
                            &pickpocket(sid, i, 0.5, 0.5),
                        )
                    })
                })
                .collect();
            for attempt in attempts {
                let reply = attempt.join().unwrap();
                assert_eq!(reply.status, 200, "{}: {}", database.kind, reply.body);
            }
        });
        let session = host.ok("GET", &format!("/api/v1/game/sessions/{sid}"), json!(null));
        let recorded = session["flags"]["stealth"]["pickpocket_attempts"]
            .as_array()
            .unwrap();
        assert_eq!(recorded.len(), 50, "no attempt lost on {}", database.kind);
        let mut npcs: Vec<i64> = recorded
            .iter()
            .map(|a| a["npc_id"].as_i64().unwrap())
            .collect();
        npcs.sort_unstable();
        assert_eq!(npcs, (0..50).collect::<Vec<_>>());
        assert_eq!(session["version"], 51);
    }
}

#[test]
fn session_patch_replaces_fields_whole_and_guards_versions() {
    for database in test_databases() {
        let dir = PluginDir::with(GAME_PLUGINS);
        let host = start(&dir, &database);
        let session = host.ok(
            "POST",
            "/api/v1/game/sessions",
            json!({"flags": {"a": 1, "b": 2}, "scene_id": 3}),
        );
        let path = format!("/api/v1/game/sessions/{}", session["id"]);
        let patched = host.ok(
            "PATCH",
            &path,
            json!({"flags": {"c": 3}, "world_time": 120.5, "expected_version": 1}),
        );
        assert_eq!(
            (
                patched["flags"].clone(),
                patched["world_time"].clone(),
                patched["version"].clone()
            ),
            (json!({"c": 3}), json!(120.5), json!(2))
        );
        assert_eq!(patched["scene_id"], 3);
        let stale = host.request(
            "PATCH",
            &path,
            &[],
            json!({"flags": {}, "expected_version": 1})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(stale.status, 409, "{}", stale.body);
        assert!(stale.json()["detail"]
            .as_str()
            .unwrap()
            .contains("version 2"));
        let not_object = host.request("PATCH", &path, &[], br#"{"flags": [1]}"#);
        assert_eq!(not_object.status, 422);
        assert_eq!(host.get("/api/v1/game/sessions/424242").status, 404);
        assert_eq!(host.get("/api/v1/game/sessions/abc").status, 422);
        assert_eq!(
            host.ok("GET", &path, json!(null))["version"],
            2,
            "failed patches changed nothing"
        );
    }
}

#[test]
fn worlds_locations_npcs_and_presence() {
    for database in test_databases() {
        let dir = PluginDir::with(GAME_PLUGINS);
        let host = start(&dir, &database);
        let world = host.ok(
            "POST",
            "/api/v1/game/worlds",
            json!({"name": "Vale", "meta": {"season": "spring"}}),
        );
        let wid = world["id"].as_i64().unwrap();
        assert_eq!(world["world_time"], 0.0);
        let advanced = host.ok(
            "POST",
            &format!("/api/v1/game/worlds/{wid}/advance"),
            json!({"delta_seconds": 3600}),
        );
        assert_eq!(advanced["world_time"], 3600.0);
        let unchanged = host.ok(
            "POST",
            &format!("/api/v1/game/worlds/{wid}/advance"),
            json!({"delta_seconds": -50}),
        );
        assert_eq!(unchanged["world_time"], 3600.0, "negative counts as 0");
        let absurd = host.request(
            "POST",
            &format!("/api/v1/game/worlds/{wid}/advance"),
            &[],
            br#"{"delta_seconds": 1.7e308}"#,
        );
        assert_eq!(absurd.status, 422, "{}", absurd.body);
        assert_eq!(absurd.json()["detail"][0]["type"], "less_than_equal");
        // A delta within bounds that this world's time cannot take: a conflict with its state.
        let too_far = host.request(
            "POST",
            &format!("/api/v1/game/worlds/{wid}/advance"),
            &[],
            br#"{"delta_seconds": 1e15}"#,
        );
        assert_eq!(too_far.status, 409, "{}", too_far.body);
        assert!(too_far.json()["detail"]
            .as_str()
            .unwrap()
            .contains("past the maximum"));
        assert_eq!(
            host.ok("GET", &format!("/api/v1/game/worlds/{wid}"), json!(null))["meta"],
            json!({"season": "spring"})
        );

        let library = host.ok(
            "POST",
            "/api/v1/game/locations",
            json!({"name": "Library", "asset_id": 9, "default_spawn": "door"}),
        );
        let lid = library["id"].as_i64().unwrap();
        let hotspots = json!({"hotspots": [{"object_name": "desk", "hotspot_id": "h1", "linked_scene_id": 4}]});
        let with_hotspots = host.ok(
            "PUT",
            &format!("/api/v1/game/locations/{lid}/hotspots"),
            hotspots,
        );
        assert_eq!(with_hotspots["hotspots"][0]["object_name"], "desk");
        let not_list = host.request(
            "PUT",
            &format!("/api/v1/game/locations/{lid}/hotspots"),
            &[],
            br#"{"hotspots": "desk"}"#,
        );
        assert_eq!(
            (not_list.status, not_list.json()),
            (400, json!({"detail": "hotspots must be a list"}))
        );
        assert_eq!(
            host.ok("GET", "/api/v1/game/locations", json!(null)),
            json!([{"id": lid, "name": "Library", "asset_id": 9, "default_spawn": "door"}])
        );

        let npc = host.ok(
            "POST",
            "/api/v1/game/npcs",
            json!({"name": "Mara", "world_id": wid}),
        );
        let nid = npc["id"].as_i64().unwrap();
        // Tuesday 09:00-17:00 in the library.
        let schedule = json!({"schedules": [{"day_of_week": 1, "start_time": 32400, "end_time": 61200, "location_id": lid}]});
        host.ok(
            "PUT",
            &format!("/api/v1/game/npcs/{nid}/schedules"),
            schedule,
        );
        let tuesday_noon = 86_400 + 12 * 3600;
        let present = host.ok(
            "GET",
            &format!("/api/v1/game/npcs/presence?world_time={tuesday_noon}&world_id={wid}"),
            json!(null),
        );
        assert_eq!(
            present,
            json!([{"npc_id": nid, "location_id": lid, "state": "scheduled"}])
        );
        let at_five = 86_400 + 17 * 3600;
        assert_eq!(
            host.ok(
                "GET",
                &format!("/api/v1/game/npcs/presence?world_time={at_five}"),
                json!(null)
            ),
            json!([]),
            "end is exclusive"
        );
        let next_week = tuesday_noon + 7 * 86_400;
        assert_eq!(
            host.ok(
                "GET",
                &format!("/api/v1/game/npcs/presence?world_time={next_week}&location_id={lid}"),
                json!(null)
            )
            .as_array()
            .unwrap()
            .len(),
            1
        );
        let bad_day = host.request("PUT", &format!("/api/v1/game/npcs/{nid}/schedules"), &[], json!({"schedules": [{"day_of_week": 9, "start_time": 0, "end_time": 1, "location_id": lid}]}).to_string().as_bytes());
        assert_eq!(bad_day.status, 422, "{}", bad_day.body);
        assert_eq!(bad_day.json()["detail"][0]["type"], "less_than_equal");

        let expressions =
            json!({"expressions": [{"state": "happy", "asset_id": 12, "crop": {"x": 1}}]});
        host.ok(
            "PUT",
            &format!("/api/v1/game/npcs/{nid}/expressions"),
            expressions,
        );
        assert_eq!(
            host.ok(
                "GET",
                &format!("/api/v1/game/npcs/{nid}/expressions"),
                json!(null)
            )[0]["crop"],
            json!({"x": 1})
        );
        assert_eq!(
            host.ok("GET", "/api/v1/game/npcs", json!(null)),
            json!([{"id": nid, "name": "Mara"}])
        );
        assert_eq!(host.get("/api/v1/game/npcs/777").status, 404);
    }
}

#[test]
fn dialogue_builds_the_prompt_from_the_game_state() {
    for database in test_databases() {
        let dir = PluginDir::with(GAME_PLUGINS);
        let host = start(&dir, &database);
        let lid = host.ok("POST", "/api/v1/game/locations", json!({"name": "Library"}))["id"]
            .as_i64()
            .unwrap();
        let nid = host.ok(
            "POST",
            "/api/v1/game/npcs",
            json!({"name": "Mara", "home_location_id": lid, "personality": {"temper": "calm"}}),
        )["id"]
            .as_i64()
            .unwrap();
        let sid = host.ok(
            "POST",
            "/api/v1/game/sessions",
            json!({"relationships": {format!("npc:{nid}"): {"affinity": 85}}}),
        )["id"]
            .as_i64()
            .unwrap();

        let line = host.ok(
            "POST",
            "/api/v1/game/dialogue/next-line",
            json!({"npc_id": nid, "session_id": sid, "player_input": "Hello"}),
        );
        let prompt = line["prompt"].as_str().unwrap();
        for fragment in [
            "You are Mara",
            "temper: calm",
            "tier close, affinity 85",
            "Location: Library.",
            "Time: Monday 00:00.",
            "The player says: \"Hello\"",
        ] {
            assert!(
                prompt.contains(fragment),
                "{fragment:?} missing from {prompt:?}"
            );
        }
        let same = host.ok(
            "POST",
            "/api/v1/game/dialogue/next-line",
            json!({"npc_id": nid, "session_id": sid, "player_input": "Hello"}),
        );
        assert_eq!(same["prompt"], line["prompt"], "deterministic");
        let history = host.ok(
            "GET",
            &format!("/api/v1/game/dialogue/sessions/{sid}/history"),
            json!(null),
        );
        assert_eq!(
            history.as_array().unwrap().len(),
            2,
            "kept in the plugin's own table"
        );

        let without = host.post_json("/api/v1/game/dialogue/next-line", &json!({"npc_id": nid}));
        assert_eq!(
            (without.status, without.json()),
            (400, json!({"detail": "npc_id and session_id are required"}))
        );
        let no_npc = host.post_json(
            "/api/v1/game/dialogue/next-line",
            &json!({"npc_id": 999, "session_id": sid}),
        );
        assert_eq!(
            (no_npc.status, no_npc.json()),
            (404, json!({"detail": "GameNPC 999 not found"}))
        );
        let no_session = host.post_json(
            "/api/v1/game/dialogue/next-line",
            &json!({"npc_id": nid, "session_id": 999}),
        );
        assert_eq!(
            (no_session.status, no_session.json()),
            (404, json!({"detail": "GameSession 999 not found"}))
        );
    }
}

#[test]
fn a_plugin_without_session_write_cannot_change_a_session() {
    for database in test_databases() {
        let dir = PluginDir::with(&["game_sessions", "fixture_no_session_write"]);
        let host = start(&dir, &database);
        let session = host.ok(
            "POST",
            "/api/v1/game/sessions",
            json!({"flags": {"gold": 5}}),
        );
        let sid = session["id"].as_i64().unwrap();
        let outcome = host.ok(
            "POST",
            &format!("/api/v1/fixture-no-session-write/tamper/{sid}"),
            json!({}),
        );
        assert_eq!(outcome["read_version"], 1, "session:read is granted");
        assert_eq!(outcome["write_denied"], true, "{outcome}");
        assert!(outcome["write_message"]
            .as_str()
            .unwrap()
            .contains("lacks permission session:write"));
        assert_eq!(
            host.ok("GET", &format!("/api/v1/game/sessions/{sid}"), json!(null)),
            session,
            "nothing changed"
        );
        let denial = host.wait_for_log("was refused session.update");
        assert_eq!(denial.level(), "WARN");
        assert_eq!(denial.0["target"], "pixsim7::audit");
        assert_eq!(
            denial.field("plugin").as_deref(),
            Some("fixture-no-session-write")
        );
        assert_eq!(denial.field("permission").as_deref(), Some("session:write"));
        assert_eq!(denial.field("operation").as_deref(), Some("session.update"));
    }
}

#[test]
fn a_misspelt_permission_fails_the_plugin_with_a_suggestion() {
    let dir = PluginDir::with(&["game_sessions", "fixture_typo_permission"]);
    let host = pixsim7(&dir).start();
    let plugin = host.plugin("fixture-typo-permission");
    assert_eq!(plugin["state"], "failed");
    let reason = plugin["reason"].as_str().unwrap();
    assert!(
        reason.contains(r#"unknown permission "sesion:write" (did you mean "session:write"?)"#),
        "{reason}"
    );
    assert_eq!(host.plugin("game-sessions")["state"], "enabled");
}

#[test]
fn without_game_npcs_stealth_and_dialogue_are_skipped_and_the_rest_serve() {
    let dir = PluginDir::with(GAME_PLUGINS);
    dir.remove("game_npcs");
    let host = pixsim7(&dir).start();
    for id in ["game-stealth", "game-dialogue"] {
        let plugin = host.plugin(id);
        assert_eq!(plugin["state"], "skipped", "{plugin}");
        assert_eq!(plugin["reason"], "requires game-npcs, which is not loaded");
    }
    for id in ["game-worlds", "game-sessions", "game-locations"] {
        assert_eq!(host.plugin(id)["state"], "enabled");
    }
    assert_eq!(
        host.post_json(
            "/api/v1/game/stealth/pickpocket",
            &pickpocket(1, 1, 1.0, 0.0)
        )
        .status,
        404
    );
    assert_eq!(
        host.post_json("/api/v1/game/sessions", &json!({})).status,
        200
    );
}

#[test]
fn the_api_docs_show_every_game_route_with_schemas() {
    let dir = PluginDir::with(GAME_PLUGINS);
    let host = pixsim7(&dir).start();
    let document = host.get("/openapi.json").json();
    let pickpocket = &document["paths"]["/api/v1/game/stealth/pickpocket"]["post"];
    assert_eq!(pickpocket["tags"], json!(["game-stealth"]));
    let request = &pickpocket["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(
        request["required"],
        json!([
            "npc_id",
            "slot_id",
            "base_success_chance",
            "detection_chance",
            "session_id"
        ])
    );
    let response = &pickpocket["responses"]["2XX"]["content"]["application/json"]["schema"];
    assert!(response["properties"]["updated_flags"].is_object());
    assert_eq!(request["properties"]["base_success_chance"]["maximum"], 1.0);
    let hotspots = &document["paths"]["/api/v1/game/locations/{location_id}/hotspots"]["put"];
    let reference = hotspots["requestBody"]["content"]["application/json"]["schema"]["properties"]
        ["hotspots"]["items"]["$ref"]
        .as_str()
        .unwrap();
    // Each plugin's schemas are named in its own namespace.
    assert_eq!(reference, "#/components/schemas/game-locations.Hotspot");
    let hotspot = &document["components"]["schemas"]["game-locations.Hotspot"];
    assert_eq!(hotspot["properties"]["hotspot_id"]["minLength"], 1);
    assert!(document["components"]["schemas"].get("Hotspot").is_none());

    // Path parameters carry the type the handler requires; required query parameters are listed.
    let get_npc = &document["paths"]["/api/v1/game/npcs/{npc_id}"]["get"];
    assert_eq!(
        get_npc["parameters"],
        json!([{"name": "npc_id", "in": "path", "required": true,
                "description": "The NPC's id.", "schema": {"type": "integer", "format": "int64"}}])
    );
    let presence = &document["paths"]["/api/v1/game/npcs/presence"]["get"]["parameters"];
    let world_time = presence
        .as_array()
        .unwrap()
        .iter()
        .find(|parameter| parameter["name"] == "world_time")
        .expect("world_time is documented");
    assert_eq!(
        (
            &world_time["in"],
            &world_time["required"],
            &world_time["schema"]["minimum"]
        ),
        (&json!("query"), &json!(true), &json!(0))
    );
    // ... and the SDK holds requests to them before any handler runs.
    let not_an_id = host.get("/api/v1/game/npcs/mara");
    assert_eq!(not_an_id.status, 422);
    assert_eq!(
        not_an_id.json()["detail"][0]["loc"],
        json!(["path", "npc_id"])
    );
    let no_time = host.get("/api/v1/game/npcs/presence");
    assert_eq!(
        no_time.json()["detail"],
        json!([{"type": "missing", "loc": ["query", "world_time"], "msg": "Field required", "input": null}])
    );
}
