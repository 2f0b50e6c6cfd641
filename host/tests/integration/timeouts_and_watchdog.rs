//! What a misbehaving handler or client meets: a handler that never answers gets 504, a body
//! that does not arrive gets 408, actix's own refusals carry `{"detail": ...}`, a handler
//! that blocks its worker is named in the log while it blocks and its plugin is quarantined
//! after repeated stalls (or panics) until an admin re-enables it, and a shutdown names the
//! requests it abandons.

use std::{
    io::{Read, Write},
    net::TcpStream,
    sync::mpsc,
    time::Duration,
};

use serde_json::{json, Value};

use crate::harness::{pixsim7, token_for, PluginDir};

/// Sends raw bytes on a new connection and reads until the server closes it or a whole
/// answer with a `content-length` body has arrived. The status and the body.
pub fn raw_exchange(address: std::net::SocketAddr, parts: &[&[u8]]) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    for part in parts {
        stream.write_all(part).expect("send");
    }
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = stream.read(&mut buffer).unwrap_or(0);
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|length| body.len() >= length) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or_else(String::new, |(_, b)| b.to_owned());
    (status, body)
}

#[test]
fn a_handler_that_never_answers_gets_504_with_a_detail_and_a_log_line_naming_it() {
    let dir = PluginDir::with(&["fixture_blocking", "dice_game"]);
    let config = dir.config_file(
        "[plugins.fixture-blocking.route_timeout_secs]\n\
         \"GET /api/v1/fixture-blocking/hang\" = 1\n\
         \"GET /api/v1/fixture-blocking/block\" = 1\n\
         \"GET /api/v1/no-such-route\" = 5\n",
    );
    let host = pixsim7(&dir).env("PIXSIM7_CONFIG", &config).start();
    host.wait_for_log(
        "names \"GET /api/v1/no-such-route\", which is not a route of plugin fixture-blocking",
    );
    let reply = host.request(
        "GET",
        "/api/v1/fixture-blocking/hang",
        &[("x-request-id", "hang-1")],
        b"",
    );
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(
        reply.json(),
        json!({"detail": "the request took longer than 1 s and was stopped; nothing was changed"}),
        "the detail names nothing internal"
    );
    let line = host.wait_for_log("did not answer GET /api/v1/fixture-blocking/hang within 1 s");
    assert_eq!(line.level(), "ERROR");
    assert_eq!(line.field("plugin").as_deref(), Some("fixture-blocking"));
    assert_eq!(line.field("request_id").as_deref(), Some("hang-1"));
    // A handler that blocks past its limit cannot be cut short, but its answer is 504 too
    // (and its writes, had it any, roll back).
    let reply = host.get("/api/v1/fixture-blocking/block?ms=1500");
    assert_eq!(reply.status, 504, "{}", reply.body);
    // The same plugin's other routes, and other plugins, are untouched.
    assert_eq!(host.get("/api/v1/fixture-blocking/ok").status, 200);
    let roll = host.post_json("/api/v1/dice-game/roll", &json!({"dice": "1d6"}));
    assert_eq!(roll.status, 200, "{}", roll.body);
    let metrics = host.get("/metrics").body;
    assert!(
        metrics.contains(r#"pixsim7_handler_timeouts_total{plugin="fixture-blocking",route="/api/v1/fixture-blocking/hang",method="GET"} 1"#)
            && metrics.contains(r#"pixsim7_handler_timeouts_total{plugin="fixture-blocking",route="/api/v1/fixture-blocking/block",method="GET"} 1"#),
        "{metrics}"
    );
    host.stop();

    // The global default, from the environment.
    let host = pixsim7(&dir)
        .env("PIXSIM7_HANDLER_TIMEOUT_SECS", "1")
        .start();
    let reply = host.get("/api/v1/fixture-blocking/hang");
    assert_eq!(reply.status, 504);
    assert!(reply.json()["detail"]
        .as_str()
        .unwrap()
        .contains("longer than 1 s"));
}

#[test]
fn a_body_that_does_not_arrive_gets_408_and_actix_s_own_refusals_carry_a_detail() {
    let dir = PluginDir::with(&["fixture_blocking"]);
    let config =
        dir.config_file("[http]\nbody_read_timeout_secs = 1\nrequest_head_timeout_secs = 1\n");
    let host = pixsim7(&dir).env("PIXSIM7_CONFIG", &config).start();
    let address = host.address();

    // A body announced as 100 bytes, of which 10 come: 408 once the body timeout passes.
    let (status, body) = raw_exchange(
        address,
        &[b"POST /api/v1/fixture-blocking/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n0123456789"],
    );
    assert_eq!(status, 408, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"detail": "the request body did not arrive within 1 s"})
    );
    // A whole body is served.
    let (status, body) = raw_exchange(
        address,
        &[b"POST /api/v1/fixture-blocking/echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 4\r\n\r\nabcd"],
    );
    assert_eq!((status, body.as_str()), (200, r#"{"length":4}"#));

    // actix-http's own answers: a head that never ends (408), one that is not HTTP (400),
    // one too large (431). Each has a JSON detail.
    let (status, body) = raw_exchange(address, &[b"GET /healthz HTTP/1.1\r\nhost: x\r\n"]);
    assert_eq!(status, 408, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"detail": "the request was not received in time"})
    );
    let (status, body) = raw_exchange(address, &[b"GARBAGE\x01 / HTTP/9\r\n\r\n"]);
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"detail": "the request is not valid HTTP/1.1"})
    );
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-padding: {}\r\n\r\n",
        "a".repeat(256 * 1024)
    );
    let (status, body) = raw_exchange(address, &[huge.as_bytes()]);
    assert_eq!(status, 431, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"detail": "the request's headers are too large"})
    );
    // And the host still serves.
    assert_eq!(host.get("/healthz").status, 200);
}

#[test]
fn a_blocking_handler_is_named_while_it_blocks_and_its_plugin_quarantined_until_re_enabled() {
    let dir = PluginDir::with(&["fixture_blocking", "dice_game", "fixture_load_fails"]);
    let config = dir.config_file(
        "[watchdog]\nstall_threshold_ms = 200\nquarantine_after = 2\nquarantine_window_secs = 600\nretry_after_secs = 17\n",
    );
    let host = pixsim7(&dir).env("PIXSIM7_CONFIG", &config).start();
    let address = host.address();

    // A handler that blocks its worker for 3 s. The warning comes while it still blocks.
    let (done, finished) = mpsc::channel();
    let blocking = std::thread::spawn(move || {
        let (status, _) = raw_exchange(
            address,
            &[b"GET /api/v1/fixture-blocking/block?ms=3000 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"],
        );
        done.send(status).unwrap();
    });
    let warning = host.wait_for_log("has blocked worker thread");
    assert_eq!(
        finished.try_recv(),
        Err(mpsc::TryRecvError::Empty),
        "the warning must come while the handler still blocks"
    );
    assert_eq!(warning.level(), "WARN");
    assert_eq!(warning.field("plugin").as_deref(), Some("fixture-blocking"));
    assert_eq!(
        warning.field("route").as_deref(),
        Some("GET /api/v1/fixture-blocking/block")
    );
    assert!(warning.field("blocked_ms").unwrap().parse::<u64>().unwrap() >= 200);
    assert!(
        warning
            .message()
            .contains("requests queued on that thread wait until the handler returns"),
        "{}",
        warning.message()
    );
    blocking.join().unwrap();
    assert_eq!(
        finished.recv().unwrap(),
        200,
        "a blocked handler still answers"
    );
    host.wait_for_log("is free again: the handler yielded after");
    assert_eq!(
        host.get("/api/v1/fixture-blocking/ok").status,
        200,
        "one stall is not enough"
    );

    // The second stall within the window quarantines the plugin.
    let reply = host.get("/api/v1/fixture-blocking/block?ms=600");
    assert_eq!(reply.status, 200);
    let quarantine = host.wait_for_log("quarantined after 2 stalls or panics");
    assert_eq!(quarantine.level(), "ERROR");
    let reply = host.get("/api/v1/fixture-blocking/ok");
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.header("retry-after"), Some("17"));
    assert_eq!(
        reply.json(),
        json!({"detail": "fixture-blocking is temporarily unavailable; try again later"})
    );
    assert_eq!(
        host.post_json("/api/v1/dice-game/roll", &json!({"dice": "1d6"}))
            .status,
        200,
        "other plugins serve on"
    );
    let admin = host.plugin("fixture-blocking");
    assert_eq!(admin["state"], "quarantined", "{admin:#}");
    let reason = admin["reason"].as_str().unwrap();
    assert!(
        reason.contains("quarantined after 2 stalls or panics within 600 s")
            && reason.contains("GET /api/v1/fixture-blocking/block blocked its worker thread"),
        "{reason}"
    );
    assert!(admin["quarantined_since"].as_u64().unwrap() > 1_700_000_000);
    let listed = host.plugin_by_file("libfixture_blocking.so");
    assert_eq!(listed["state"], "quarantined");
    let metrics = host.get("/metrics").body;
    for expected in [
        r#"pixsim7_handler_stalls_total{plugin="fixture-blocking",route="/api/v1/fixture-blocking/block",method="GET"} 2"#,
        r#"pixsim7_plugin_quarantines_total{plugin="fixture-blocking"} 1"#,
        r#"pixsim7_plugins{state="quarantined"} 1"#,
        r#"pixsim7_plugins{state="failed"} 1"#,
        r#"pixsim7_http_requests_total{plugin="fixture-blocking",route="/api/v1/fixture-blocking/ok",method="GET",status="5xx"} 1"#,
    ] {
        assert!(metrics.contains(expected), "{expected} not in:\n{metrics}");
    }

    // Only an admin may re-enable it; a plugin that failed at startup cannot be.
    let user = format!("Bearer {}", token_for(7, &[]));
    let refused = host.request(
        "POST",
        "/api/v1/plugins/fixture-blocking/enable",
        &[("authorization", &user)],
        b"",
    );
    assert_eq!(refused.status, 403);
    let failed = host.request(
        "POST",
        "/api/v1/plugins/fixture-load-fails/enable",
        &[],
        b"",
    );
    assert_eq!(failed.status, 409, "{}", failed.body);
    assert!(
        failed.json()["detail"]
            .as_str()
            .unwrap()
            .contains("only a quarantined plugin can be re-enabled"),
        "{}",
        failed.body
    );
    assert_eq!(
        host.request("POST", "/api/v1/plugins/no-such-plugin/enable", &[], b"")
            .status,
        404
    );
    let enabled = host.request("POST", "/api/v1/plugins/fixture-blocking/enable", &[], b"");
    assert_eq!(enabled.status, 200, "{}", enabled.body);
    assert_eq!(enabled.json()["state"], "enabled");
    assert_eq!(enabled.header("x-pixsim7-reenabled"), Some("true"));
    let audit = host.wait_for_log("plugin fixture-blocking re-enabled by user 1");
    assert_eq!(audit.0["target"], "pixsim7::audit");
    assert_eq!(host.get("/api/v1/fixture-blocking/ok").status, 200);
    let again = host.request("POST", "/api/v1/plugins/fixture-blocking/enable", &[], b"");
    assert_eq!(again.header("x-pixsim7-reenabled"), Some("false"));

    // Panics count too: two more and it is quarantined again.
    for _ in 0..2 {
        assert_eq!(host.get("/api/v1/fixture-blocking/panic").status, 500);
    }
    host.wait_for_logs("quarantined after 2 stalls or panics", 2);
    let admin = host.plugin("fixture-blocking");
    assert_eq!(admin["state"], "quarantined");
    assert!(
        admin["reason"]
            .as_str()
            .unwrap()
            .contains("a panic: GET /api/v1/fixture-blocking/panic panicked"),
        "{admin:#}"
    );
    assert!(host
        .get("/metrics")
        .body
        .contains(r#"pixsim7_plugin_panics_total{plugin="fixture-blocking"} 2"#));
}

#[test]
fn a_shutdown_that_cannot_wait_names_the_requests_it_abandons() {
    let dir = PluginDir::with(&["fixture_blocking"]);
    let config = dir.config_file("shutdown_timeout_secs = 1\n");
    let host = pixsim7(&dir).env("PIXSIM7_CONFIG", &config).start();
    let address = host.address();
    let hanging = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(address).unwrap();
        stream
            .write_all(b"GET /api/v1/fixture-blocking/hang HTTP/1.1\r\nhost: x\r\nx-request-id: left-behind\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        answer
    });
    // Wait until the request is in flight, as the metrics say.
    let patience = std::time::Instant::now() + Duration::from_secs(60);
    while !host
        .get("/metrics")
        .body
        .contains("pixsim7_http_requests_in_flight 1")
    {
        assert!(
            std::time::Instant::now() < patience,
            "the request never got in flight"
        );
    }
    let exited = host.stop();
    assert!(exited.status.success(), "{:?}", exited.status);
    let answer = hanging.join().unwrap();
    assert!(
        answer.is_empty(),
        "an abandoned request gets no answer: {}",
        String::from_utf8_lossy(&answer)
    );
    let line = exited
        .logs
        .iter()
        .find(|l| l.message().starts_with("abandoning request left-behind"))
        .unwrap_or_else(|| panic!("no abandoning line in {:#?}", exited.logs));
    assert_eq!(line.level(), "WARN");
    assert_eq!(line.field("plugin").as_deref(), Some("fixture-blocking"));
    assert_eq!(
        line.field("route").as_deref(),
        Some("GET /api/v1/fixture-blocking/hang")
    );
    assert!(exited.logged(
        "WARN",
        "1 requests still in flight at the shutdown deadline were abandoned"
    ));
    assert!(!exited.logged("INFO", "in-flight requests finished"));
}
