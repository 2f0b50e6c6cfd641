//! Sign-in throttling, over the real binary and the real `auth` plugin: failed sign-ins per
//! username and per client address end in 429 with `Retry-After`, the right password is
//! refused too while throttled, correct sign-ins never count, addresses come from a trusted
//! proxy's `X-Forwarded-For` only, every refusal is an audit line without the password, and
//! a disabled throttle changes nothing. Refill times are long, so nothing refills during a
//! test; refilling itself is unit-tested on a hand-moved clock (`host::login_throttle`).

use serde_json::json;

use crate::harness::{pixsim7, LogLine, PluginDir, Reply, RunningHost};

const PASSWORD: &str = "correct horse";
const WRONG: &str = "wrong horse battery";

/// `POST /api/v1/auth/login`, through a proxy that says the client is `forwarded_for`.
fn login(host: &RunningHost, username: &str, password: &str, forwarded_for: &str) -> Reply {
    let body = json!({"username": username, "password": password}).to_string();
    host.request_raw(
        "POST",
        "/api/v1/auth/login",
        &[
            ("content-type", "application/json"),
            ("x-forwarded-for", forwarded_for),
        ],
        body.as_bytes(),
    )
}

#[track_caller]
fn register(host: &RunningHost, username: &str) {
    let body = json!({"username": username, "password": PASSWORD}).to_string();
    let reply = host.request_raw(
        "POST",
        "/api/v1/auth/register",
        &[("content-type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
}

#[track_caller]
fn assert_status(reply: &Reply, status: u16) {
    assert_eq!(reply.status, status, "{}", reply.body);
}

/// Asserts a 429 whose `Retry-After` is within the refill time `refill_secs` and whose
/// detail says the same number; the number.
#[track_caller]
fn assert_throttled(reply: &Reply, refill_secs: u64) -> u64 {
    assert_status(reply, 429);
    let seconds: u64 = reply
        .header("retry-after")
        .expect("a Retry-After header")
        .parse()
        .expect("whole seconds");
    assert!(
        (refill_secs - 60..=refill_secs).contains(&seconds),
        "Retry-After {seconds}, refill {refill_secs}"
    );
    assert_eq!(
        reply.json(),
        json!({"detail": format!("Too many failed sign-in attempts; try again in {seconds} seconds")})
    );
    seconds
}

/// The audit line of a refusal: WARN on `pixsim7::audit`, naming username, address, scope
/// and the wait.
#[track_caller]
fn assert_audited(line: &LogLine, username: &str, address: &str, scope: &str, seconds: u64) {
    assert_eq!(line.level(), "WARN");
    assert_eq!(line.0["target"], "pixsim7::audit", "{:?}", line.0);
    assert_eq!(line.field("plugin").as_deref(), Some("auth"));
    assert_eq!(line.field("outcome").as_deref(), Some("throttled"));
    assert_eq!(line.field("username").as_deref(), Some(username));
    assert_eq!(line.field("client_address").as_deref(), Some(address));
    assert_eq!(line.field("scope").as_deref(), Some(scope));
    assert_eq!(line.field("retry_after_secs"), Some(seconds.to_string()));
    assert!(line.field("request_id").is_some());
}

#[test]
fn failed_sign_ins_are_throttled_per_username_and_per_address() {
    let dir = PluginDir::with(&["auth"]);
    let config = dir.config_file(
        "[login_throttle]\nusername_burst = 3\nusername_refill_secs = 3600\n\
         address_burst = 5\naddress_refill_secs = 7200\ntrusted_proxies = [\"127.0.0.1\"]\n",
    );
    let host = pixsim7(&dir).env("PIXSIM7_CONFIG", &config).start();
    register(&host, "alice");
    register(&host, "bob");

    // Correct sign-ins never count, however many (more than either burst).
    for _ in 0..7 {
        assert_status(&login(&host, "alice", PASSWORD, "203.0.113.1"), 200);
    }

    // Three failures for alice, then 429 for her from anywhere, even with her password.
    let attacker = "203.0.113.7";
    for _ in 0..3 {
        assert_status(&login(&host, "alice", WRONG, attacker), 401);
    }
    let seconds = assert_throttled(&login(&host, "alice", WRONG, attacker), 3600);
    let line = host.wait_for_log("refused: too many failed sign-ins for this username");
    assert_audited(&line, "alice", attacker, "username", seconds);
    assert_throttled(&login(&host, "alice", PASSWORD, attacker), 3600);
    assert_throttled(&login(&host, "alice", PASSWORD, "198.51.100.2"), 3600);

    // An unknown username goes exactly the same way: throttling reveals no usernames.
    for _ in 0..3 {
        assert_status(&login(&host, "nobody", WRONG, "192.0.2.9"), 401);
    }
    assert_throttled(&login(&host, "nobody", PASSWORD, "192.0.2.9"), 3600);

    // The attacker's address has had three failures (its refused attempts were not
    // counted): two more for another username, then that address is refused for any
    // username, while the same user from elsewhere is served.
    for _ in 0..2 {
        assert_status(&login(&host, "bob", WRONG, attacker), 401);
    }
    let seconds = assert_throttled(&login(&host, "bob", WRONG, attacker), 7200);
    let line = host.wait_for_log("refused: too many failed sign-ins for this address");
    assert_audited(&line, "bob", attacker, "address", seconds);
    assert_throttled(&login(&host, "carol", WRONG, attacker), 7200);
    assert_status(&login(&host, "bob", PASSWORD, "198.51.100.2"), 200);
    // A trusted proxy's header is read from the right: the client's own left-most entry
    // (forgeable) does not get the attacker a fresh address.
    assert_throttled(
        &login(&host, "bob", WRONG, &format!("198.51.100.99, {attacker}")),
        7200,
    );
    let metrics = host.get("/metrics").body;
    let counted = |scope: &str| -> u64 {
        let series = format!("pixsim7_login_throttled_total{{scope=\"{scope}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series.as_str()))
            .map_or(0, |value| value.parse().unwrap())
    };
    assert_eq!(
        counted("username") + counted("address"),
        7,
        "every 429 is counted: {metrics}"
    );

    let exited = host.stop();
    let refusals: Vec<&LogLine> = exited
        .logs
        .iter()
        .filter(|l| l.field("outcome").as_deref() == Some("throttled"))
        .collect();
    assert_eq!(refusals.len(), 7, "one audit line per 429");
    for line in &exited.logs {
        let text = line.0.to_string();
        assert!(
            !text.contains(PASSWORD) && !text.contains(WRONG),
            "a password in the log: {text}"
        );
    }
}

#[test]
fn an_untrusted_peers_forwarded_for_is_ignored() {
    let dir = PluginDir::with(&["auth"]);
    // The test's connections come from 127.0.0.1, which is not a trusted proxy here.
    let config = dir.config_file(
        "[login_throttle]\nusername_burst = 100\naddress_burst = 2\naddress_refill_secs = 7200\n\
         trusted_proxies = [\"10.0.0.0/8\"]\n",
    );
    let host = pixsim7(&dir).env("PIXSIM7_CONFIG", &config).start();
    assert_status(&login(&host, "mallory1", WRONG, "203.0.113.1"), 401);
    assert_status(&login(&host, "mallory2", WRONG, "203.0.113.2"), 401);
    let seconds = assert_throttled(&login(&host, "mallory3", WRONG, "203.0.113.3"), 7200);
    let line = host.wait_for_log("refused: too many failed sign-ins for this address");
    assert_audited(&line, "mallory3", "127.0.0.1", "address", seconds);
}

#[test]
fn with_throttling_disabled_failed_sign_ins_get_only_401() {
    let dir = PluginDir::with(&["auth"]);
    let config = dir.config_file(
        "[login_throttle]\nenabled = false\nusername_burst = 1\naddress_burst = 1\n\
         trusted_proxies = [\"127.0.0.1\"]\n",
    );
    let host = pixsim7(&dir).env("PIXSIM7_CONFIG", &config).start();
    register(&host, "alice");
    for _ in 0..6 {
        assert_status(&login(&host, "alice", WRONG, "203.0.113.7"), 401);
    }
    assert_status(&login(&host, "alice", PASSWORD, "203.0.113.7"), 200);
    let exited = host.stop();
    assert!(
        !exited
            .logs
            .iter()
            .any(|l| l.field("outcome").as_deref() == Some("throttled")),
        "no refusal was logged"
    );
}

#[test]
fn a_mistake_in_the_table_stops_startup_with_its_name() {
    let dir = PluginDir::with(&["auth"]);
    for (table, expected) in [
        (
            "trusted_proxies = [\"10.0.0.0/33\"]",
            "[login_throttle] trusted_proxies: \"10.0.0.0/33\" has prefix length \"33\"; an IPv4 block takes 0 to 32",
        ),
        (
            "username_burst = 0",
            "[login_throttle] username_burst must be between 1 and 10000, got 0",
        ),
        ("adress_burst = 3", "unknown field `adress_burst`"),
    ] {
        let config = dir.config_file(&format!("[login_throttle]\n{table}\n"));
        let exited = pixsim7(&dir).env("PIXSIM7_CONFIG", &config).run_to_exit(&[
            "serve",
            "--bind",
            "127.0.0.1:0",
        ]);
        assert_eq!(exited.status.code(), Some(1), "{table}");
        assert!(exited.logged("ERROR", expected), "{table}: {:?}", exited.logs);
    }
}
