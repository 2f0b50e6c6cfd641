//! Events and the operator's permission policy: plugins react to each other without knowing
//! each other; delivery is ordered, after success only, isolated from failing subscribers,
//! bounded; subscribing and emitting need their permissions; the operator can narrow any
//! plugin's grant.

use serde_json::{json, Value};

use crate::{
    databases::test_databases,
    harness::{game_plugins_and, pixsim7, PluginDir, RunningHost},
};

fn pickpocket(session_id: i64, npc_id: i64, detection: f64) -> Value {
    json!({"npc_id": npc_id, "slot_id": "purse", "base_success_chance": 0.0,
           "detection_chance": detection, "session_id": session_id})
}

fn emit(host: &RunningHost, topic: &str, count: u32, status: u16) -> Value {
    let reply = host.post_json(
        "/api/v1/fixture-events/emit",
        &json!({"topic": topic, "count": count, "status": status}),
    );
    assert_eq!(reply.status, status, "{}", reply.body);
    reply.json()
}

/// Waits until `plugin` logged `count` events on `topic`; their payloads, in order.
fn received(host: &RunningHost, plugin: &str, topic: &str, count: usize) -> Vec<Value> {
    let prefix = format!("{plugin} got {topic} ");
    host.wait_for_logs(&prefix, count)
        .iter()
        .filter_map(|l| l.message().strip_prefix(&prefix))
        .map(|payload| serde_json::from_str(payload).unwrap())
        .collect()
}

#[test]
fn a_detected_pickpocket_lowers_affinity_through_the_relationships_plugin() {
    for database in test_databases() {
        let dir = PluginDir::with(&game_plugins_and(&["game_relationships"]));
        let host = pixsim7(&dir)
            .env("PIXSIM7_DATABASE_URL", &database.url)
            .env("PIXSIM7_LOG", "info,pixsim7::events=debug")
            .start();
        let sid = host.ok("POST", "/api/v1/game/sessions", json!({}))["id"]
            .as_i64()
            .unwrap();
        let npc = host.ok("POST", "/api/v1/game/npcs", json!({"name": "Mara"}))["id"]
            .as_i64()
            .unwrap();

        host.ok(
            "POST",
            "/api/v1/game/stealth/pickpocket",
            pickpocket(sid, npc, 1.0),
        );
        host.wait_for_log(&format!(
            "lowered affinity of npc:{npc} in session {sid} from 50 to 40"
        ));
        // The plugin logs before its change commits; the host logs the delivery after.
        host.wait_for_log("delivered stealth:pickpocket to plugin game-relationships");
        let view = host.ok(
            "GET",
            &format!("/api/v1/game/relationships/{sid}"),
            json!(null),
        );
        let entry = &view["relationships"][format!("npc:{npc}")];
        assert_eq!(
            (entry["affinity"].clone(), entry["tier"].clone()),
            (json!(40), json!("neutral")),
            "{}",
            database.kind
        );
        assert_eq!(
            entry["flags"],
            json!({"caught_pickpocketing": true}),
            "stealth's own change is kept"
        );

        host.ok(
            "POST",
            "/api/v1/game/stealth/pickpocket",
            pickpocket(sid, npc, 0.0),
        );
        host.wait_for_log(&format!(
            "in session {sid}: not detected; affinity of npc:{npc} unchanged"
        ));
        let session = host.ok("GET", &format!("/api/v1/game/sessions/{sid}"), json!(null));
        assert_eq!(
            session["relationships"][format!("npc:{npc}")]["affinity"],
            40
        );
        assert_eq!(
            session["flags"]["stealth"]["pickpocket_attempts"]
                .as_array()
                .unwrap()
                .len(),
            2
        );

        host.wait_for_logs(
            "delivered stealth:pickpocket to plugin game-relationships",
            2,
        );
        let stealth = host.plugin("game-stealth");
        assert_eq!(
            stealth["emits"],
            json!(["stealth:pickpocket", "interaction:executed"])
        );
        assert_eq!(stealth["events"]["stealth:pickpocket"]["emitted"], 2);
        let relationships = host.plugin("game-relationships");
        assert_eq!(
            relationships["events"]["stealth:pickpocket"]["delivered"],
            2
        );
        assert_eq!(
            relationships["subscriptions"],
            json!(["stealth:pickpocket"])
        );
        assert!(host.stop().status.success());
    }

    // Without the relationships library, pickpocketing works and affinity is untouched.
    let database = test_databases().remove(0);
    let dir = PluginDir::with(&game_plugins_and(&["game_relationships"]));
    dir.remove("game_relationships");
    let host = pixsim7(&dir)
        .env("PIXSIM7_DATABASE_URL", &database.url)
        .start();
    let sid = host.ok("POST", "/api/v1/game/sessions", json!({}))["id"]
        .as_i64()
        .unwrap();
    let result = host.ok(
        "POST",
        "/api/v1/game/stealth/pickpocket",
        pickpocket(sid, 3, 1.0),
    );
    assert_eq!(result["detected"], true);
    let session = host.ok("GET", &format!("/api/v1/game/sessions/{sid}"), json!(null));
    assert_eq!(
        session["relationships"],
        json!({"npc:3": {"flags": {"caught_pickpocketing": true}}})
    );
    assert_eq!(
        host.get(&format!("/api/v1/game/relationships/{sid}"))
            .status,
        404
    );
}

#[test]
fn events_arrive_in_emission_order_and_never_from_failed_requests() {
    let dir = PluginDir::with(&["fixture_events", "fixture_events_listener"]);
    let host = pixsim7(&dir).start();
    assert_eq!(emit(&host, "test:order", 20, 200)["emitted"], 20);
    let seqs: Vec<Value> = received(&host, "fixture-events-listener", "test:order", 20)
        .iter()
        .map(|p| p["seq"].clone())
        .collect();
    assert_eq!(seqs, (0..20).map(|i| json!(i)).collect::<Vec<_>>());

    // A plugin may only emit the topics its manifest declares: no speaking for game-stealth.
    let spoofed = emit(&host, "stealth:pickpocket", 1, 200);
    assert_eq!(spoofed["emitted"], 0);
    assert!(
        spoofed["error"]
            .as_str()
            .unwrap()
            .contains("may not emit stealth:pickpocket"),
        "{spoofed}"
    );

    // A request that fails (400) or panics (500) after emitting: its events are discarded.
    emit(&host, "test:refused", 1, 400);
    let panicked = host.post_json(
        "/api/v1/fixture-events/emit",
        &json!({"topic": "test:panicked", "count": 1, "panic": true}),
    );
    assert_eq!(panicked.status, 500);
    emit(&host, "test:after", 1, 200);
    received(&host, "fixture-events-listener", "test:after", 1);
    let exited = host.stop();
    for topic in ["test:refused", "test:panicked"] {
        assert!(
            !exited
                .logs
                .iter()
                .any(|l| l.message().contains(&format!("got {topic}"))),
            "{topic} was delivered although its request failed"
        );
    }
}

#[test]
fn a_request_whose_client_went_away_still_finishes_and_announces_its_changes() {
    use std::io::Write;
    let dir = PluginDir::with(&["fixture_events", "fixture_events_listener"]);
    let host = pixsim7(&dir).start();
    let body = json!({"topic": "test:abandoned", "count": 1, "then_wait_ms": 300}).to_string();
    let token = crate::harness::token_for(1, &["admin"]);
    let mut stream = std::net::TcpStream::connect(host.address()).unwrap();
    write!(
        stream,
        "POST /api/v1/fixture-events/emit HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    host.wait_for_log("fixture-events emitted 1, now waiting");
    drop(stream); // the client gives up before the answer
    let payloads = received(&host, "fixture-events-listener", "test:abandoned", 1);
    assert_eq!(
        payloads[0]["seq"], 0,
        "the emitted event was delivered once the handler finished"
    );
}

#[test]
fn a_panicking_subscriber_harms_neither_the_emitter_nor_the_others() {
    let dir = PluginDir::with(&["fixture_events", "fixture_events_listener"]);
    let config = dir.config_file("[plugins.fixture-events]\npanic_on = \"test:boom\"\n");
    let host = pixsim7(&dir).env("PIXSIM7_CONFIG", &config).start();
    assert_eq!(
        emit(&host, "test:boom", 5, 200)["emitted"],
        5,
        "the emitter is unaffected"
    );
    assert_eq!(
        received(&host, "fixture-events-listener", "test:boom", 5).len(),
        5
    );
    let failures = host.wait_for_logs("plugin fixture-events failed to handle event test:boom", 5);
    assert_eq!(failures[0].level(), "ERROR");
    assert_eq!(
        failures[0].field("plugin").as_deref(),
        Some("fixture-events")
    );
    assert_eq!(failures[0].field("topic").as_deref(), Some("test:boom"));
    assert!(failures[0]
        .message()
        .contains("panicked: fixture-events cannot stand test:boom"));
    let counters = &host.plugin("fixture-events")["events"]["test:boom"];
    assert_eq!(
        *counters,
        json!({"emitted": 5, "delivered": 0, "failed": 5})
    );
    // And the panicking subscriber still gets (and survives) later events.
    emit(&host, "test:fine", 1, 200);
    received(&host, "fixture-events", "test:fine", 1);
    // The listener logs an event before its delivery is counted; once it has logged the
    // next one, the five before are counted.
    received(&host, "fixture-events-listener", "test:fine", 1);
    let listener = &host.plugin("fixture-events-listener")["events"]["test:boom"];
    assert_eq!(listener["delivered"], 5);
}

#[test]
fn lifecycle_events_reach_subscribers_and_pending_events_are_delivered_before_on_disable() {
    let dir = PluginDir::with(&["dice_game", "fixture_events", "fixture_events_listener"]);
    let host = pixsim7(&dir).start();
    let loaded: Vec<Value> = received(&host, "fixture-events", "plugin:loaded", 3)
        .iter()
        .map(|p| p["plugin_id"].clone())
        .collect();
    assert_eq!(
        loaded,
        [
            json!("dice-game"),
            json!("fixture-events"),
            json!("fixture-events-listener")
        ]
    );
    assert_eq!(
        received(&host, "fixture-events", "plugin:enabled", 3).len(),
        3
    );
    let startup = received(&host, "fixture-events", "app:startup", 1);
    assert_eq!(
        startup[0]["plugins"],
        json!(["dice-game", "fixture-events", "fixture-events-listener"])
    );
    let exited = host.stop();
    assert!(
        exited.position("fixture-events got app:shutdown")
            < exited.position("fixture-events on_disable")
    );
    // The listener (later in load order) is disabled first; the events plugin hears of it.
    assert!(
        exited.position(
            r#"fixture-events got plugin:disabled {"plugin_id":"fixture-events-listener"}"#
        ) < exited.position("fixture-events on_disable")
    );
}

#[test]
fn a_slow_subscriber_falls_behind_but_loses_nothing() {
    let dir = PluginDir::with(&["fixture_events", "fixture_events_listener"]);
    let config = dir.config_file("[plugins.fixture-events-listener]\ndelay_ms = 50\n");
    let host = pixsim7(&dir).env("PIXSIM7_CONFIG", &config).start();
    assert_eq!(
        emit(&host, "test:flood", 40, 200)["emitted"],
        40,
        "emitting never waits for subscribers"
    );
    let lag = host.plugin("fixture-events-listener")["event_lag"]
        .as_u64()
        .expect("a subscriber shows its lag");
    assert!(
        (1..=40).contains(&lag),
        "a subscriber that handles an event per 50 ms is behind right after 40 were emitted: {lag}"
    );
    let seqs: Vec<Value> = received(&host, "fixture-events-listener", "test:flood", 40)
        .iter()
        .map(|p| p["seq"].clone())
        .collect();
    assert_eq!(
        seqs,
        (0..40).map(|n| json!(n)).collect::<Vec<_>>(),
        "all, in order"
    );
}

#[test]
fn subscribing_and_emitting_need_their_permissions() {
    let dir = PluginDir::with(&["fixture_events", "fixture_events_listener"]);
    let config = dir.config_file(
        "[plugins.fixture-events]\ndeny = [\"event:emit\"]\n\n[plugins.fixture-events-listener]\ndeny = [\"event:subscribe\"]\n",
    );
    let host = pixsim7(&dir).env("PIXSIM7_CONFIG", &config).start();
    let refused = emit(&host, "test:x", 1, 200);
    assert_eq!(refused["emitted"], 0);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("lacks permission event:emit"),
        "{refused}"
    );
    let denial = host.wait_for_log("plugin fixture-events was refused event.emit");
    assert_eq!(denial.0["target"], "pixsim7::audit");
    assert_eq!(denial.field("outcome").as_deref(), Some("denied"));
    assert!(denial.field("request_id").is_some(), "{denial:?}");
    let unsubscribed = host.wait_for_log("plugin fixture-events-listener subscribes to [test:*] but lacks permission event:subscribe");
    assert_eq!(unsubscribed.0["target"], "pixsim7::audit");

    let listener = host.plugin("fixture-events-listener");
    assert_eq!(listener["state"], "enabled");
    assert_eq!(listener["denied_permissions"], json!(["event:subscribe"]));
    assert_eq!(listener["granted_permissions"], json!(["log:emit"]));
    assert_eq!(listener["subscriptions_active"], false);
}

#[test]
fn the_operator_can_deny_a_permission_a_plugin_needs_and_it_does_not_load() {
    let dir = PluginDir::with(&["game_sessions", "game_npcs", "game_dialogue"]);
    let config = dir.config_file("[permissions]\ndeny = [\"db:write\"]\n");
    let host = pixsim7(&dir).env("PIXSIM7_CONFIG", &config).start();
    let dialogue = host.plugin("game-dialogue");
    assert_eq!(dialogue["state"], "failed");
    assert!(
        dialogue["reason"]
            .as_str()
            .unwrap()
            .starts_with("permission db:write is denied by the operator ([permissions] deny)"),
        "{dialogue}"
    );
    assert_eq!(host.plugin("game-sessions")["state"], "enabled");

    let exited = pixsim7(&dir)
        .env("PIXSIM7_CONFIG", &config)
        .run_to_exit(&["plugins"]);
    assert!(
        exited.stdout.contains("denied:       db:write"),
        "{}",
        exited.stdout
    );
}

#[test]
fn privileged_actions_are_audited_with_the_request_id() {
    let dir = PluginDir::with(&["game_sessions"]);
    let host = pixsim7(&dir).start();
    let reply = host.request(
        "POST",
        "/api/v1/game/sessions",
        &[("x-request-id", "audit-me")],
        b"{}",
    );
    assert_eq!(reply.status, 200);
    let line =
        host.wait_for_log("plugin game-sessions used session.create with session:write (allowed)");
    assert_eq!(line.0["target"], "pixsim7::audit");
    assert_eq!(line.field("request_id").as_deref(), Some("audit-me"));
    assert_eq!(line.field("permission").as_deref(), Some("session:write"));
}

/// A realistic payload for each guarded operation, so a broken check would change data.
fn payload_for(operation: &str, session_id: i64) -> Value {
    match operation {
        "world.get" | "npc.get" | "location.get" | "npc.expressions.get" | "npc.schedules.get" => {
            json!({"id": 1})
        }
        "session.get" => json!({"id": session_id}),
        "world.create" | "npc.create" | "location.create" => json!({"name": "Intruder"}),
        "world.advance" => json!({"id": 1, "delta_seconds": 999}),
        "session.create" => json!({}),
        "session.update" => json!({"id": session_id, "update": {"flags": {"hacked": true}}}),
        "npc.expressions.set" => json!({"npc_id": 1, "expressions": []}),
        "npc.schedules.set" => json!({"npc_id": 1, "schedules": []}),
        "npc.presence" => json!({"world_time": 0}),
        "location.hotspots.set" => json!({"location_id": 1, "hotspots": []}),
        "db.query" => json!({"sql": "SELECT 1 AS one", "params": []}),
        "db.execute" => {
            json!({"sql": "CREATE TABLE fixture_no_permissions__t (x BIGINT)", "params": []})
        }
        "event.emit" => json!({"topic": "test:intrusion", "payload": {}}),
        _ => json!(null),
    }
}

#[test]
fn every_guarded_service_refuses_a_plugin_without_its_permission() {
    for database in test_databases() {
        let dir = PluginDir::with(&[
            "game_sessions",
            "game_worlds",
            "game_npcs",
            "game_locations",
            "fixture_no_permissions",
            "fixture_events_listener",
        ]);
        let host = pixsim7(&dir)
            .env("PIXSIM7_DATABASE_URL", &database.url)
            .start();
        host.ok("POST", "/api/v1/game/worlds", json!({"name": "Home"}));
        host.ok("POST", "/api/v1/game/npcs", json!({"name": "Mara"}));
        host.ok("POST", "/api/v1/game/locations", json!({"name": "Square"}));
        let session = host.ok(
            "POST",
            "/api/v1/game/sessions",
            json!({"flags": {"gold": 1}}),
        );
        let sid = session["id"].as_i64().unwrap();
        let before = (
            host.ok("GET", "/api/v1/game/worlds/1", json!(null)),
            host.ok("GET", "/api/v1/game/npcs", json!(null)),
            host.ok("GET", "/api/v1/game/locations/1", json!(null)),
        );

        let operations: Vec<&str> = plugin_api::game::ops::ALL
            .iter()
            .map(|op| op.name)
            .collect();
        assert!(operations.len() >= 20, "{operations:?}");
        for (index, op) in plugin_api::game::ops::ALL.iter().enumerate() {
            let request_id = format!("matrix-{index}");
            let reply = host.request(
                "POST",
                "/api/v1/fixture-no-permissions/call",
                &[("x-request-id", request_id.as_str())],
                json!({"operation": op.name, "payload": payload_for(op.name, sid)})
                    .to_string()
                    .as_bytes(),
            );
            assert_eq!(reply.status, 200, "{}", reply.body);
            let answer = reply.json();
            assert_eq!(
                answer["kind"], "PermissionDenied",
                "{} on {}: {answer}",
                op.name, database.kind
            );
            assert!(answer["message"]
                .as_str()
                .unwrap()
                .contains(&format!("lacks permission {}", op.permission)));
            let line = host.wait_for_log(&format!(
                "plugin fixture-no-permissions was refused {}:",
                op.name
            ));
            assert_eq!(line.0["target"], "pixsim7::audit");
            assert_eq!(line.field("permission").as_deref(), Some(op.permission));
            assert_eq!(line.field("outcome").as_deref(), Some("denied"));
            assert_eq!(
                line.field("request_id").as_deref(),
                Some(request_id.as_str())
            );
        }

        let after = (
            host.ok("GET", "/api/v1/game/worlds/1", json!(null)),
            host.ok("GET", "/api/v1/game/npcs", json!(null)),
            host.ok("GET", "/api/v1/game/locations/1", json!(null)),
        );
        assert_eq!(before, after, "nothing changed on {}", database.kind);
        assert_eq!(
            host.ok("GET", &format!("/api/v1/game/sessions/{sid}"), json!(null)),
            session
        );
        assert_eq!(
            host.ok("GET", "/api/v1/game/worlds", json!(null))
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let exited = host.stop();
        assert!(
            !exited
                .logs
                .iter()
                .any(|l| l.message().contains("test:intrusion")),
            "the refused event was not delivered"
        );
    }
}
