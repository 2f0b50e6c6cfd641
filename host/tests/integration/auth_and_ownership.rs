//! Users, sign-in and ownership: tokens are checked before any plugin code runs, only a
//! player's own worlds and sessions are theirs, world content needs the admin role to
//! change, and the operator's aids (token command, generated secret, CORS) work.

use serde_json::{json, Value};

use crate::{
    databases::test_databases,
    harness::{game_plugins_and, pixsim7, token_for, PluginDir, RunningHost, TEST_JWT_SECRET},
};

/// A request with exactly this bearer token (or none).
fn call(
    host: &RunningHost,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer.as_str()));
    }
    let reply = host.request_raw(method, path, &headers, body.to_string().as_bytes());
    let body = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
    (reply.status, body)
}

#[track_caller]
fn login(host: &RunningHost, username: &str, password: &str) -> String {
    let (status, body) = call(
        host,
        None,
        "POST",
        "/api/v1/auth/login",
        json!({"username": username, "password": password}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "bearer");
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    body["access_token"].as_str().unwrap().to_owned()
}

fn pickpocket(session_id: i64) -> Value {
    json!({"npc_id": 1, "slot_id": "purse", "base_success_chance": 1.0, "detection_chance": 0.0, "session_id": session_id})
}

#[test]
fn sign_in_then_only_your_own_game_state_is_yours() {
    for database in test_databases() {
        let dir = PluginDir::with(&game_plugins_and(&["auth", "game_relationships"]));
        let config = dir.config_file("[plugins.auth]\nadmin_usernames = [\"gamemaster\"]\n");
        let host = pixsim7(&dir)
            .env("PIXSIM7_DATABASE_URL", &database.url)
            .env("PIXSIM7_CONFIG", &config)
            .start();
        let register = |name: &str| {
            call(
                &host,
                None,
                "POST",
                "/api/v1/auth/register",
                json!({"username": name, "password": "correct horse"}),
            )
        };
        let (status, alice) = register("Alice");
        assert_eq!(
            (status, alice["username"].clone(), alice["roles"].clone()),
            (201, json!("alice"), json!([])),
            "{}",
            database.kind
        );
        assert_eq!(
            register("alice").0,
            409,
            "usernames are unique, whatever the case"
        );
        assert_eq!(register("bob").0, 201);
        assert_eq!(register("GameMaster").1["roles"], json!(["admin"]));
        assert_eq!(
            call(
                &host,
                None,
                "POST",
                "/api/v1/auth/register",
                json!({"username": "carol", "password": "short"})
            )
            .0,
            422
        );

        let wrong_password = host.request_raw(
            "POST",
            "/api/v1/auth/login",
            &[],
            br#"{"username": "alice", "password": "wrong horse"}"#,
        );
        let unknown_user = host.request_raw(
            "POST",
            "/api/v1/auth/login",
            &[],
            br#"{"username": "nobody", "password": "correct horse"}"#,
        );
        for reply in [&wrong_password, &unknown_user] {
            assert_eq!(
                (reply.status, reply.json()),
                (401, json!({"detail": "Incorrect username or password"}))
            );
        }

        let alice = login(&host, "alice", "correct horse");
        let bob = login(&host, "bob", "correct horse");
        let gm = login(&host, "gamemaster", "correct horse");
        assert_eq!(
            call(&host, Some(&alice), "GET", "/api/v1/auth/me", json!(null)).1["username"],
            "alice"
        );

        // World content is made by the game master.
        assert_eq!(
            call(
                &host,
                Some(&alice),
                "POST",
                "/api/v1/game/npcs",
                json!({"name": "Mara"})
            )
            .0,
            403
        );
        assert_eq!(
            call(
                &host,
                Some(&gm),
                "POST",
                "/api/v1/game/npcs",
                json!({"name": "Mara"})
            )
            .0,
            200
        );
        assert_eq!(
            call(&host, Some(&alice), "GET", "/api/v1/game/npcs", json!(null)).0,
            200,
            "readable by players"
        );

        let (_, world) = call(
            &host,
            Some(&alice),
            "POST",
            "/api/v1/game/worlds",
            json!({"name": "Alice's"}),
        );
        let (status, session) = call(
            &host,
            Some(&alice),
            "POST",
            "/api/v1/game/sessions",
            json!({"world_id": world["id"]}),
        );
        assert_eq!(status, 200, "{session}");
        let sid = session["id"].as_i64().unwrap();
        assert_eq!(session["user_id"], json!(alice_id(&host, &alice)));
        let (status, stolen) = call(
            &host,
            Some(&alice),
            "POST",
            "/api/v1/game/stealth/pickpocket",
            pickpocket(sid),
        );
        assert_eq!((status, stolen["success"].clone()), (200, json!(true)));

        // No token: 401 before any plugin code, with the challenge header.
        let anonymous = host.request_raw(
            "POST",
            "/api/v1/game/stealth/pickpocket",
            &[],
            pickpocket(sid).to_string().as_bytes(),
        );
        assert_eq!(
            (anonymous.status, anonymous.json()),
            (401, json!({"detail": "Not authenticated"}))
        );
        assert_eq!(anonymous.header("www-authenticate"), Some("Bearer"));

        // Another player: every route answers 404, as if it did not exist.
        let session_path = format!("/api/v1/game/sessions/{sid}");
        for (method, path, body) in [
            ("GET", session_path.as_str(), json!(null)),
            ("PATCH", session_path.as_str(), json!({"flags": {}})),
            ("POST", "/api/v1/game/stealth/pickpocket", pickpocket(sid)),
            (
                "POST",
                "/api/v1/game/dialogue/next-line",
                json!({"npc_id": 1, "session_id": sid}),
            ),
        ] {
            let (status, body) = call(&host, Some(&bob), method, path, body);
            assert_eq!(
                (status, body),
                (
                    404,
                    json!({"detail": format!("GameSession {sid} not found")})
                ),
                "{method} {path}"
            );
        }
        for path in [
            format!("/api/v1/game/relationships/{sid}"),
            format!("/api/v1/game/dialogue/sessions/{sid}/history"),
        ] {
            let (status, body) = call(&host, Some(&bob), "GET", &path, json!(null));
            assert_eq!(
                (status, body),
                (
                    404,
                    json!({"detail": format!("GameSession {sid} not found")})
                ),
                "{path}"
            );
            assert_eq!(
                call(&host, Some(&alice), "GET", &path, json!(null)).0,
                200,
                "{path}"
            );
        }
        let world_path = format!("/api/v1/game/worlds/{}", world["id"]);
        assert_eq!(
            call(&host, Some(&bob), "GET", &world_path, json!(null)).0,
            404
        );
        assert_eq!(
            call(&host, Some(&bob), "GET", "/api/v1/game/worlds", json!(null)).1,
            json!([])
        );
        assert_eq!(
            call(
                &host,
                Some(&bob),
                "POST",
                "/api/v1/game/sessions",
                json!({"world_id": world["id"]})
            )
            .0,
            404,
            "not in someone else's world"
        );
        let (_, after) = call(&host, Some(&alice), "GET", &session_path, json!(null));
        assert_eq!(after["version"], 2, "bob changed nothing");

        // Expired and tampered tokens.
        let keys = host::auth::TokenKeys::new(TEST_JWT_SECRET.as_bytes()).unwrap();
        let expired = keys.issue(1, &[], std::time::Duration::ZERO);
        let mut tampered = alice.clone().into_bytes();
        let middle = alice.find('.').unwrap() + 3;
        tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        for token in [expired.as_str(), tampered.as_str()] {
            let (status, body) = call(&host, Some(token), "GET", &session_path, json!(null));
            assert_eq!(
                (status, body),
                (401, json!({"detail": "Not authenticated"}))
            );
        }
        assert!(host.stop().status.success());
    }
}

fn alice_id(host: &RunningHost, token: &str) -> i64 {
    call(host, Some(token), "GET", "/api/v1/auth/me", json!(null)).1["id"]
        .as_i64()
        .unwrap()
}

#[test]
fn the_admin_api_needs_the_admin_role_and_health_and_docs_are_public() {
    let dir = PluginDir::with(&["dice_game"]);
    let host = pixsim7(&dir).start();
    let player = token_for(5, &[]);
    assert_eq!(
        call(&host, None, "GET", "/api/v1/plugins", json!(null)).0,
        401
    );
    assert_eq!(
        call(&host, Some(&player), "GET", "/api/v1/plugins", json!(null)),
        (403, json!({"detail": "Not enough permissions"}))
    );
    assert_eq!(
        call(
            &host,
            Some(&player),
            "GET",
            "/api/v1/plugins/dice-game",
            json!(null)
        )
        .0,
        403
    );
    assert_eq!(
        call(
            &host,
            Some(&token_for(5, &["admin"])),
            "GET",
            "/api/v1/plugins",
            json!(null)
        )
        .0,
        200
    );
    assert_eq!(call(&host, None, "GET", "/healthz", json!(null)).0, 200);
    assert_eq!(
        call(&host, None, "GET", "/openapi.json", json!(null)).0,
        200
    );
    assert_eq!(
        call(
            &host,
            None,
            "POST",
            "/api/v1/dice-game/roll",
            json!({"dice": "d6"})
        )
        .0,
        200,
        "a public plugin route"
    );
}

#[test]
fn malformed_authorization_headers_never_reach_plugin_code_or_cause_a_5xx() {
    let dir = PluginDir::with(&["fixture_panicking"]);
    let host = pixsim7(&dir).start();
    let valid = token_for(1, &[]);
    let (header, payload, _) = {
        let mut parts = valid.split('.');
        (
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().to_owned(),
        )
    };
    let mut cases: Vec<String> = vec![
        String::new(),
        "Bearer".into(),
        "Bearer ".into(),
        "Basic dXNlcjpwYXNz".into(),
        format!("Token {valid}"),
        format!("Bearer {valid}x"),
        format!("Bearer {valid}.extra"),
        format!("Bearer {header}.{payload}."),
        format!("Bearer eyJhbGciOiJub25lIn0.{payload}."),
        format!("Bearer {header}.{payload}.{}", "A".repeat(43)),
        format!("Bearer {}", "a.".repeat(3000)),
        format!("Bearer {}", "x".repeat(9000)),
        "Bearer ....".into(),
        "Bearer %00%ff".into(),
    ];
    // Deterministic noise: printable ASCII of many lengths, alone and after "Bearer ".
    let mut seed: u64 = 0x5eed;
    for length in 0..200 {
        let mut text = String::new();
        for _ in 0..(length % 97) {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text.push(char::from(b' ' + ((seed >> 33) % 95) as u8));
        }
        cases.push(if length % 2 == 0 {
            format!("Bearer {text}")
        } else {
            text
        });
    }
    for case in &cases {
        let reply = host.request_raw(
            "GET",
            "/api/v1/fixture-panicking/ok",
            &[("authorization", case.trim())],
            b"",
        );
        assert_eq!(reply.status, 401, "{case:?}: {}", reply.body);
        assert_eq!(
            reply.json(),
            json!({"detail": "Not authenticated"}),
            "{case:?}"
        );
    }
    // And the same route with a good token does reach the plugin.
    assert_eq!(
        host.request("GET", "/api/v1/fixture-panicking/ok", &[], b"")
            .status,
        200
    );
}

#[test]
fn plugins_never_see_the_callers_credentials() {
    let dir = PluginDir::with(&["fixture_panicking"]);
    let host = pixsim7(&dir).start();
    let reply = host.request(
        "GET",
        "/api/v1/fixture-panicking/headers",
        &[("cookie", "session=secret"), ("x-game-client", "web 1.2")],
        b"",
    );
    assert_eq!(reply.status, 200);
    let headers = reply.json();
    assert_eq!(headers["x-game-client"], "web 1.2", "{headers}");
    assert!(
        headers.get("authorization").is_none(),
        "the bearer token reached the plugin: {headers}"
    );
    assert!(headers.get("cookie").is_none(), "{headers}");
}

#[test]
fn cors_preflights_are_answered_for_allowed_origins_only() {
    let dir = PluginDir::with(&["dice_game"]);
    let config = dir.config_file("[cors]\nallowed_origins = [\"https://game.example\"]\n");
    let host = pixsim7(&dir).env("PIXSIM7_CONFIG", &config).start();
    let preflight = |origin: &str| {
        host.request_raw(
            "OPTIONS",
            "/api/v1/dice-game/roll",
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "authorization, content-type",
                ),
            ],
            b"",
        )
    };
    let allowed = preflight("https://game.example");
    assert_eq!(allowed.status, 204);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://game.example")
    );
    assert_eq!(allowed.header("access-control-allow-methods"), Some("POST"));
    assert_eq!(
        allowed.header("access-control-allow-headers"),
        Some("authorization, content-type")
    );
    assert_eq!(preflight("https://evil.example").status, 403);

    let from_game = host.request_raw(
        "POST",
        "/api/v1/dice-game/roll",
        &[("origin", "https://game.example")],
        br#"{"dice": "d6"}"#,
    );
    assert_eq!(
        from_game.header("access-control-allow-origin"),
        Some("https://game.example")
    );
    assert_eq!(
        from_game.header("access-control-expose-headers"),
        Some("x-request-id")
    );
    let from_elsewhere = host.request_raw(
        "POST",
        "/api/v1/dice-game/roll",
        &[("origin", "https://evil.example")],
        br#"{"dice": "d6"}"#,
    );
    assert_eq!(from_elsewhere.header("access-control-allow-origin"), None);
    assert_eq!(
        from_elsewhere.header("vary"),
        Some("Origin"),
        "caches must key on the origin"
    );
}

#[test]
fn the_token_command_and_the_generated_secret() {
    let dir = PluginDir::with(&["dice_game"]);
    // No secret configured, SQLite: one is generated in the data directory, mode 0600.
    let host = pixsim7(&dir).env_remove("PIXSIM7_JWT_SECRET").start();
    let generated = dir.path().with_extension("data").join("jwt-secret");
    let warning = host.wait_for_log("Generated a new JWT secret");
    assert_eq!(warning.level(), "WARN");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&generated).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // The token command signs with the same secret; the running host accepts its token.
    let printed = pixsim7(&dir)
        .env_remove("PIXSIM7_JWT_SECRET")
        .run_to_exit(&["token", "--user-id", "7", "--admin", "--ttl", "10m"]);
    assert!(printed.status.success(), "{:?}", printed.logs);
    let token = printed.stdout.trim();
    let secret = std::fs::read_to_string(&generated).unwrap();
    let caller = host::auth::TokenKeys::new(secret.trim().as_bytes())
        .unwrap()
        .verify(token)
        .unwrap();
    assert_eq!((caller.user_id, caller.roles), (7, vec!["admin".into()]));
    assert_eq!(
        call(&host, Some(token), "GET", "/api/v1/plugins", json!(null)).0,
        200
    );
    assert!(host.stop().status.success());

    // A restart reuses the secret, so the token still works.
    let host = pixsim7(&dir).env_remove("PIXSIM7_JWT_SECRET").start();
    assert_eq!(
        call(&host, Some(token), "GET", "/api/v1/plugins", json!(null)).0,
        200
    );
}

#[test]
fn postgresql_without_a_configured_secret_refuses_to_start() {
    let dir = PluginDir::with(&["dice_game"]);
    let exited = pixsim7(&dir)
        .env_remove("PIXSIM7_JWT_SECRET")
        .env("PIXSIM7_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .run_to_exit(&["serve", "--bind", "127.0.0.1:0"]);
    assert_eq!(exited.status.code(), Some(1));
    assert!(
        exited.logged("ERROR", "no JWT secret configured"),
        "{:?}",
        exited.logs
    );
}
