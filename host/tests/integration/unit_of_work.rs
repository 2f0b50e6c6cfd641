//! One unit of work per request (issue 9): every host-service call of a request joins one
//! transaction, committed only when the handler answers below 400. A handler that writes and
//! then fails, refuses or panics leaves nothing behind, in the game tables, its own tables or
//! the event outbox; reads inside the request see its own writes; an event delivery is
//! applied once; an oversize session document or string field is refused and changes
//! nothing.

use serde_json::{json, Value};

use crate::{
    databases::{test_databases, TestDatabase},
    harness::{game_plugins_and, pixsim7, PluginDir, RunningHost},
};

fn write(host: &RunningHost, marker: &str, outcome: &str) -> (u16, Value) {
    let reply = host.post_json(
        "/api/v1/fixture-uow/write",
        &json!({"marker": marker, "outcome": outcome}),
    );
    (
        reply.status,
        serde_json::from_str(&reply.body).unwrap_or(Value::Null),
    )
}

/// What a marker left behind: sessions flagged with it, notes holding it, reactions to it,
/// and events naming it.
fn traces(database: &TestDatabase, marker: &str) -> [i64; 4] {
    let notes = database.plugin_table("fixture-unit-of-work", "notes");
    [
        database.scalar(&format!(
            "SELECT COUNT(*) FROM game_sessions WHERE flags LIKE '%\"{marker}\"%'"
        )),
        database.scalar(&format!(
            "SELECT COUNT(*) FROM {notes} WHERE marker = '{marker}'"
        )),
        database.scalar(&format!(
            "SELECT COUNT(*) FROM {notes} WHERE marker = '{marker}-reacted'"
        )),
        database.scalar(&format!(
            "SELECT COUNT(*) FROM pixsim7_events WHERE payload LIKE '%\"{marker}\"%'"
        )),
    ]
}

#[test]
fn a_request_that_fails_after_writing_leaves_nothing_behind() {
    for database in test_databases() {
        let kind = database.kind;
        let dir = PluginDir::with(&["fixture_unit_of_work"]);
        let host = pixsim7(&dir)
            .env("PIXSIM7_DATABASE_URL", &database.url)
            .start();

        for outcome in ["error", "refuse", "panic"] {
            let marker = format!("m-{outcome}");
            let (status, _) = write(&host, &marker, outcome);
            let expected = if outcome == "refuse" { 409 } else { 500 };
            assert_eq!(status, expected, "{outcome} on {kind}");
            assert_eq!(
                traces(&database, &marker),
                [0, 0, 0, 0],
                "a request that answered {status} left writes behind on {kind}"
            );
        }

        let (status, answer) = write(&host, "m-ok", "ok");
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            (
                answer["notes_seen"].clone(),
                answer["session_marker"].clone()
            ),
            (json!(1), json!("m-ok")),
            "reads inside the request see its own writes on {kind}"
        );
        host.wait_for_log("fixture-unit-of-work reacted to m-ok");
        let exited = host.stop();
        assert!(exited.status.success(), "{kind}: {:?}", exited.logs);
        assert_eq!(
            traces(&database, "m-ok"),
            [1, 1, 1, 1],
            "a successful request keeps its session, its note and its event, and the event's \
             reaction is applied once, on {kind}"
        );
    }
}

#[test]
fn an_oversize_session_document_is_refused_and_changes_nothing() {
    for database in test_databases() {
        let kind = database.kind;
        let dir = PluginDir::with(&game_plugins_and(&[]));
        let config = dir.config_file("[game]\nmax_session_document_bytes = 1024\n");
        let host = pixsim7(&dir)
            .env("PIXSIM7_DATABASE_URL", &database.url)
            .env("PIXSIM7_CONFIG", &config)
            .start();
        let session = host.ok("POST", "/api/v1/game/sessions", json!({"flags": {"a": 1}}));
        let path = format!("/api/v1/game/sessions/{}", session["id"]);

        let big = "x".repeat(2000);
        for field in ["flags", "relationships"] {
            let reply = host.request(
                "PATCH",
                &path,
                &[("content-type", "application/json")],
                json!({ field: {"big": big} }).to_string().as_bytes(),
            );
            assert_eq!(reply.status, 400, "{field} on {kind}: {}", reply.body);
            let detail = reply.json()["detail"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(
                detail.contains(field)
                    && detail.contains("over the limit of 1024 bytes")
                    && detail.contains("max_session_document_bytes"),
                "the detail names the bound: {detail}"
            );
        }
        let reply = host.post_json("/api/v1/game/sessions", &json!({"flags": {"big": big}}));
        assert_eq!(reply.status, 400, "create on {kind}: {}", reply.body);

        // A string field over its bound: 422 from the plugin, 400 from the host's service.
        let reply = host.post_json(
            "/api/v1/game/stealth/pickpocket",
            &json!({"npc_id": 1, "slot_id": "s".repeat(300_000), "base_success_chance": 1.0,
                    "detection_chance": 0.0, "session_id": session["id"]}),
        );
        assert_eq!(reply.status, 422, "{kind}");
        let issue = &reply.json()["detail"][0];
        assert_eq!(
            (&issue["loc"], &issue["type"], &issue["msg"]),
            (
                &json!(["body", "slot_id"]),
                &json!("string_too_long"),
                &json!("String should have at most 128 characters")
            )
        );
        // The body's schema states the bound, so the plugin's input check names it first.
        let reply = host.post_json("/api/v1/game/worlds", &json!({"name": "w".repeat(201)}));
        assert_eq!(reply.status, 422, "{kind}");
        let issue = &reply.json()["detail"][0];
        assert_eq!(
            (&issue["loc"], &issue["msg"]),
            (
                &json!(["body", "name"]),
                &json!("String should have at most 200 characters")
            )
        );

        let unchanged = host.ok("GET", &path, json!(null));
        assert_eq!(unchanged["flags"], json!({"a": 1}), "{kind}");
        assert_eq!(unchanged["version"], session["version"], "{kind}");
        assert_eq!(
            database.scalar("SELECT COUNT(*) FROM game_sessions"),
            1,
            "the refused create made no session on {kind}"
        );
        let openapi = host.get("/openapi.json").json();
        let pickpocket = &openapi["paths"]["/api/v1/game/stealth/pickpocket"]["post"]
            ["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(
            pickpocket["properties"]["slot_id"]["maxLength"],
            json!(128),
            "the bound is in the schema"
        );
    }
}
