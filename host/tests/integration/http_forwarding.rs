//! Forwarding: requests reach plugin handlers on the worker thread, panics answer 500 and
//! harm nothing else, and the host's own answers (404, 405, 413, health, OpenAPI) carry
//! `{"detail": ...}` where they are errors.

use serde_json::json;

use crate::harness::{pixsim7, PluginDir};

#[test]
fn a_panicking_handler_answers_500_and_everything_keeps_working() {
    let dir = PluginDir::with(&["dice_game", "fixture_panicking"]);
    let host = pixsim7(&dir).start();
    for _ in 0..3 {
        let reply = host.request(
            "GET",
            "/api/v1/fixture-panicking/panic",
            &[("x-request-id", "req-42")],
            b"",
        );
        assert_eq!(reply.status, 500);
        assert_eq!(
            reply.json(),
            json!({"detail": "internal error in plugin fixture-panicking", "request_id": "req-42"})
        );
        assert_eq!(
            host.get("/api/v1/fixture-panicking/ok").status,
            200,
            "same plugin, other route"
        );
        assert_eq!(
            host.post_json("/api/v1/dice-game/roll", &json!({"dice": "1d6"}))
                .status,
            200,
            "other plugin"
        );
    }
    let line = host.wait_for_log("panicked while handling GET /api/v1/fixture-panicking/panic");
    assert_eq!(line.level(), "ERROR");
    assert_eq!(line.field("plugin").as_deref(), Some("fixture-panicking"));
    assert_eq!(line.field("request_id").as_deref(), Some("req-42"));
    assert!(
        line.message()
            .contains("fixture handler panic for /api/v1/fixture-panicking/panic"),
        "the panic message is logged: {line:?}"
    );
    assert!(
        line.message().contains("src/lib.rs"),
        "with its location: {line:?}"
    );
    assert!(host.stop().status.success(), "the host survived");
}

#[test]
#[cfg(target_os = "linux")]
fn handlers_run_on_the_worker_thread_that_received_the_request() {
    let dir = PluginDir::with(&["fixture_panicking"]);
    let host = pixsim7(&dir).start();
    let reply = host.get("/api/v1/fixture-panicking/thread").json();
    let thread = reply["thread"].as_str().unwrap_or_default();
    // actix names its worker threads `actix-rt|system:N|arbiter:M` (the OS keeps the first
    // 15 bytes); a blocking pool or another runtime's task would run on another thread.
    assert_eq!(thread, "actix-rt|system", "handler ran on {thread:?}");
}

#[test]
fn host_errors_have_a_detail_and_the_right_status() {
    let dir = PluginDir::with(&["dice_game"]);
    let config = dir.config_file("body_limit = 1024\n");
    let host = pixsim7(&dir).env("PIXSIM7_CONFIG", &config).start();

    let unknown = host.get("/api/v1/nothing/here");
    assert_eq!(
        (unknown.status, unknown.json()),
        (404, json!({"detail": "Not Found"}))
    );

    let wrong_method = host.get("/api/v1/dice-game/roll");
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.json(), json!({"detail": "Method Not Allowed"}));
    assert_eq!(wrong_method.header("allow"), Some("POST"));

    let big = format!(r#"{{"dice": "1d6", "pad": "{}"}}"#, "x".repeat(2048));
    let too_large = host.request("POST", "/api/v1/dice-game/roll", &[], big.as_bytes());
    assert_eq!(too_large.status, 413);
    assert!(too_large.json()["detail"]
        .as_str()
        .unwrap()
        .contains("1024 bytes"));

    let trailing = host.post_json("/api/v1/dice-game/roll/", &json!({"dice": "1d6"}));
    assert_eq!(trailing.status, 200, "a trailing slash is the same route");

    let malformed = host.request("POST", "/api/v1/dice-game/roll", &[], b"{\"dice\": ");
    assert_eq!(malformed.status, 422);
    assert_eq!(malformed.json()["detail"][0]["type"], "json_invalid");

    let health = host.get("/healthz");
    assert_eq!(
        (health.status, health.json()),
        (200, json!({"status": "ok"}))
    );
    assert!(health
        .header("x-request-id")
        .is_some_and(|id| !id.is_empty()));
}

#[test]
fn openapi_lists_every_enabled_route_with_its_tags() {
    let dir = PluginDir::with(&["dice_game", "fixture_hooks_base", "fixture_disabled"]);
    let host = pixsim7(&dir).start();
    let document = host.get("/openapi.json").json();
    assert_eq!(document["openapi"], "3.1.0");
    let roll = &document["paths"]["/api/v1/dice-game/roll"]["post"];
    assert_eq!(roll["tags"], json!(["dice-game"]));
    assert!(roll["summary"].as_str().unwrap().contains("Roll dice"));
    assert!(document["paths"]["/api/v1/plugins/{id}"]["get"]["parameters"][0]["name"] == "id");
    assert!(
        document["paths"]["/api/v1/fixture-disabled/ping"].is_null(),
        "disabled plugins are not documented"
    );
}
