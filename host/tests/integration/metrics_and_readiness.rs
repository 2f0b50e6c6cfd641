//! What an operator watches: `/metrics` counting a plugin's requests by route template and
//! status class, the access log (one JSON line per request), `/readyz` before, during and
//! after shutdown, and CORS answers that say they vary by `Origin`.

use serde_json::json;

use crate::harness::{game_plugins_and, pixsim7, token_for, PluginDir};

/// The value of the sample `name{labels}` in a Prometheus text answer.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

#[test]
fn metrics_count_each_plugin_route_by_template_and_status_class_and_each_request_is_logged() {
    let dir = PluginDir::with(&["dice_game", "fixture_panicking", "fixture_load_fails"]);
    let host = pixsim7(&dir).start();
    for _ in 0..3 {
        let reply = host.request(
            "POST",
            "/api/v1/dice-game/roll",
            &[
                ("content-type", "application/json"),
                ("x-request-id", "roll-1"),
            ],
            br#"{"dice": "1d6"}"#,
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    assert_eq!(
        host.post_json("/api/v1/dice-game/roll", &json!({"dice": "nonsense"}))
            .status,
        422
    );
    assert_eq!(host.get("/api/v1/fixture-panicking/panic").status, 500);
    assert_eq!(host.get("/api/v1/nowhere/42").status, 404);

    let reply = host.request_raw("GET", "/metrics", &[], b"");
    assert_eq!(reply.status, 200, "public by default");
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        reply.header("content-type")
    );
    let metrics = reply.body;
    let roll = r#"plugin="dice-game",route="/api/v1/dice-game/roll",method="POST""#;
    assert_eq!(
        sample(
            &metrics,
            &format!(r#"pixsim7_http_requests_total{{{roll},status="2xx"}}"#)
        ),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            &format!(r#"pixsim7_http_requests_total{{{roll},status="4xx"}}"#)
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            &format!("pixsim7_http_request_duration_seconds_count{{{roll}}}")
        ),
        Some(4.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"pixsim7_http_requests_total{plugin="none",route="(unmatched)",method="*",status="4xx"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"pixsim7_plugin_panics_total{plugin="fixture-panicking"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, r#"pixsim7_plugins{state="enabled"}"#),
        Some(2.0)
    );
    assert_eq!(
        sample(&metrics, r#"pixsim7_plugins{state="failed"}"#),
        Some(1.0)
    );
    assert!(
        metrics.contains("# TYPE pixsim7_db_pool_wait_seconds histogram"),
        "{metrics}"
    );
    assert!(metrics.ends_with("# EOF\n"));

    // The access log: one line per request, with the route's template and the caller.
    let lines = host.wait_for_logs("POST /api/v1/dice-game/roll 200", 3);
    let line = &lines[0];
    assert_eq!(line.0["target"], "pixsim7::access");
    assert_eq!(line.level(), "INFO");
    assert_eq!(line.field("request_id").as_deref(), Some("roll-1"));
    assert_eq!(line.field("method").as_deref(), Some("POST"));
    assert_eq!(
        line.field("route").as_deref(),
        Some("/api/v1/dice-game/roll")
    );
    assert_eq!(line.field("status").as_deref(), Some("200"));
    assert_eq!(line.field("plugin").as_deref(), Some("dice-game"));
    assert_eq!(line.field("user_id").as_deref(), Some("1"));
    assert!(line.field("duration_ms").unwrap().parse::<f64>().unwrap() >= 0.0);
    host.wait_for_log("GET /api/v1/nowhere/42 404");
    host.stop();

    // Access log off, metrics for admins only; every game plugin, so a subscriber's event
    // lag is reported.
    let dir = PluginDir::with(&game_plugins_and(&["game_relationships"]));
    let config = dir.config_file("[http]\naccess_log = false\nmetrics = \"admin\"\n");
    let host = pixsim7(&dir).env("PIXSIM7_CONFIG", &config).start();
    assert_eq!(host.request_raw("GET", "/metrics", &[], b"").status, 401);
    let user = format!("Bearer {}", token_for(3, &[]));
    assert_eq!(
        host.request_raw("GET", "/metrics", &[("authorization", &user)], b"")
            .status,
        403
    );
    let metrics = host.get("/metrics");
    assert_eq!(metrics.status, 200, "as the admin");
    assert_eq!(
        sample(
            &metrics.body,
            r#"pixsim7_event_lag{subscriber="game-relationships"}"#
        ),
        Some(0.0),
        "{}",
        metrics.body
    );
    let exited = host.stop();
    assert!(
        !exited
            .logs
            .iter()
            .any(|l| l.0["target"] == "pixsim7::access"),
        "access_log = false"
    );
}

#[test]
fn readyz_is_200_once_started_and_503_from_the_moment_shutdown_begins() {
    let dir = PluginDir::with(&["dice_game"]);
    let config = dir.config_file("[http]\nshutdown_delay_secs = 120\n");
    let host = pixsim7(&dir).env("PIXSIM7_CONFIG", &config).start();
    let ready = host.request_raw("GET", "/readyz", &[], b"");
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json(), json!({"status": "ready"}));

    host.terminate();
    host.wait_for_log("SIGTERM received; /readyz answers 503");
    let draining = host.request_raw("GET", "/readyz", &[], b"");
    assert_eq!(draining.status, 503);
    assert_eq!(
        draining.json(),
        json!({"detail": "shutting down: finishing the requests in flight"})
    );
    // Still serving, and asking clients to reconnect (to the next instance).
    assert_eq!(host.request_raw("GET", "/healthz", &[], b"").status, 200);
    let roll = host.post_json("/api/v1/dice-game/roll", &json!({"dice": "1d6"}));
    assert_eq!(roll.status, 200);
    assert_eq!(roll.header("connection"), Some("close"));

    // A second signal ends the wait: the listener closes and the host exits.
    let address = host.address();
    host.terminate();
    let exited = host.wait();
    assert!(exited.status.success(), "{:?}", exited.status);
    assert!(exited.logged("INFO", "SIGTERM received; stopping now"));
    assert!(exited.logged("INFO", "in-flight requests finished"));
    assert!(
        std::net::TcpStream::connect(address).is_err(),
        "after shutdown nothing listens"
    );
}

#[test]
fn cors_answers_that_echo_the_origin_vary_by_origin_even_for_any_origin() {
    let dir = PluginDir::with(&["dice_game"]);
    let config = dir.config_file("[cors]\nallowed_origins = [\"*\"]\n");
    let host = pixsim7(&dir).env("PIXSIM7_CONFIG", &config).start();
    let reply = host.request_raw(
        "POST",
        "/api/v1/dice-game/roll",
        &[
            ("origin", "https://a.example"),
            ("content-type", "application/json"),
        ],
        br#"{"dice": "d6"}"#,
    );
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://a.example")
    );
    assert_eq!(reply.header("vary"), Some("Origin"));
    let preflight = host.request_raw(
        "OPTIONS",
        "/api/v1/dice-game/roll",
        &[
            ("origin", "https://b.example"),
            ("access-control-request-method", "POST"),
        ],
        b"",
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("vary"), Some("Origin"));
}
