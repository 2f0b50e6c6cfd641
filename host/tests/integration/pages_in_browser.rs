//! The host's pages, `/docs` (Swagger UI) and `/admin` (the plugin dashboard): their files,
//! headers and caching over plain HTTP, then both pages in headless Chromium, driven by
//! `host/tests/browser/pages.mjs` (playwright-core) as an operator would use them. The
//! script reports what the browser showed and requested; the assertions are here, against
//! the admin API and the OpenAPI document of the same server. One plugin is quarantined
//! before the browser comes, and re-enabled from the dashboard.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::{json, Value};

use crate::harness::{game_plugins_and, pixsim7, token_for, PluginDir, RunningHost};

/// Fixtures beside the game plugins: a dependency chain that loads, a plugin whose
/// dependency is not installed, one whose `on_load` fails and one that depends on it, one
/// that ships disabled, an event emitter-subscriber, and one whose route panics (quarantined
/// by the test), so every kind of node, edge, counter and state is drawn.
const FIXTURES: [&str; 8] = [
    "fixture_disabled",
    "fixture_hooks_base",
    "fixture_hooks_dependent",
    "fixture_missing_dep",
    "fixture_load_fails",
    "fixture_needs_failing",
    "fixture_events",
    "fixture_blocking",
];

/// The plugin the test quarantines (two panics with `quarantine_after = 2`) and the
/// dashboard re-enables.
const QUARANTINED: &str = "fixture-blocking";

/// Markup that would run script if the dashboard inserted API strings as HTML.
const MARKUP: &str = "<img src=x onerror='document.title=1'><b>bold</b>";

#[test]
fn the_pages_are_served_with_their_types_caching_and_security_headers() {
    let dir = PluginDir::empty();
    let host = pixsim7(&dir).start();
    for (page, policy_part) in [
        ("/docs", "img-src 'self' data:"),
        ("/admin", "form-action 'none'"),
    ] {
        let reply = host.request_raw("GET", page, &[], b"");
        assert_eq!(reply.status, 200, "{page}: {}", reply.body);
        assert_eq!(
            reply.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(reply.header("cache-control"), Some("no-cache"));
        assert_eq!(reply.header("x-frame-options"), Some("DENY"));
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        let policy = reply.header("content-security-policy").unwrap_or_default();
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            policy_part,
        ] {
            assert!(policy.contains(part), "{page}: {part} in {policy}");
        }
        assert!(!policy.contains("unsafe"), "{page}: {policy}");
        assert!(
            !reply.body.contains("<script>"),
            "no inline script in {page}"
        );
        assert!(
            !reply.body.contains("//"),
            "no other host is named in {page}"
        );

        let etag = reply.header("etag").expect("an ETag").to_owned();
        let again = host.request_raw("GET", page, &[("if-none-match", &etag)], b"");
        assert_eq!(again.status, 304, "{page} revalidates");

        let files = referenced_files(&reply.body, page);
        assert!(files.len() >= 3, "{page} names its files: {files:?}");
        for url in files {
            let reply = host.request_raw("GET", &url, &[], b"");
            assert_eq!(reply.status, 200, "{url}");
            let expected_type = match url.split('?').next().unwrap().rsplit('.').next() {
                Some("js") => "text/javascript; charset=utf-8",
                Some("css") => "text/css; charset=utf-8",
                Some("svg") => "image/svg+xml",
                Some("png") => "image/png",
                other => panic!("{url}: unexpected file type {other:?}"),
            };
            assert_eq!(reply.header("content-type"), Some(expected_type), "{url}");
            assert_eq!(
                reply.header("cache-control"),
                Some("public, max-age=31536000, immutable"),
                "{url}: a URL with the content's hash is cached for good"
            );
            let bare = url.split('?').next().unwrap();
            assert_eq!(
                host.request_raw("GET", bare, &[], b"")
                    .header("cache-control"),
                Some("no-cache"),
                "{bare}: without the hash, always revalidated"
            );
        }
    }
    let bundle = host.request_raw("GET", "/docs/swagger-ui-bundle.js", &[], b"");
    assert!(
        bundle.body.len() > 500_000,
        "the Swagger UI bundle is served"
    );
    let licence = host.request_raw("GET", "/docs/LICENSE", &[], b"");
    assert!(licence.body.contains("Apache License"), "{}", licence.body);

    let missing = host.request_raw("GET", "/docs/nope.js", &[], b"");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json(), json!({"detail": "Not Found"}));
    assert_eq!(
        host.request_raw("POST", "/admin", &[], b"").status,
        405,
        "pages are GET (and HEAD) only"
    );

    let document = host.get("/openapi.json").json();
    let paths = document["paths"].as_object().unwrap();
    assert!(
        paths.contains_key("/admin"),
        "the dashboard is a documented page"
    );
    for hidden in ["/docs", "/docs/{file}", "/admin/{file}"] {
        assert!(
            !paths.contains_key(hidden),
            "{hidden} is not in the document"
        );
    }
}

#[test]
fn the_dashboard_and_the_api_page_work_in_chromium() {
    let browser = BrowserTools::find();
    let dir = PluginDir::with(&game_plugins_and(&FIXTURES));
    // A configuration value the plugin refuses ends up in its reason, shown on the page:
    // markup in it must stay text.
    let config = dir.config_file(&format!(
        "[watchdog]\nquarantine_after = 2\nstall_threshold_ms = 30000\n\n[plugins.game-stealth]\nseed = {MARKUP:?}\n"
    ));
    let host = pixsim7(&dir)
        .env("PIXSIM7_CONFIG", &config)
        .env("PIXSIM7_LOG", "info,pixsim7::events=debug")
        .start();
    let emitted = host.post_json(
        "/api/v1/fixture-events/emit",
        &json!({"topic": "test:ping", "count": 3}),
    );
    assert_eq!(emitted.status, 200, "{}", emitted.body);
    host.wait_for_logs("delivered test:ping to plugin fixture-events", 3);

    for _ in 0..2 {
        let panicked = host.get(&format!("/api/v1/{QUARANTINED}/panic"));
        assert_eq!(panicked.status, 500, "{}", panicked.body);
    }
    host.wait_for_log("quarantined after 2 stalls or panics");
    assert_eq!(host.get(&format!("/api/v1/{QUARANTINED}/ok")).status, 503);
    // What the page will be shown: the plugins as the browser finds them.
    let listed = host.get("/api/v1/plugins").json();
    let listed = listed.as_array().expect("a list").clone();
    let quarantined = host.plugin(QUARANTINED);
    assert_eq!(quarantined["state"], "quarantined", "{quarantined:#}");

    let admin_token = token_for(1, &["admin"]);
    let seen = browser.run(&host, &admin_token, &token_for(2, &[]));

    check_dashboard(&host, &listed, &seen["admin"]);
    check_reenable(&host, &listed, &quarantined, &seen["admin"]["reenable"]);
    check_api_page(&host, &seen["docs"]);
    check_traffic(&host, &admin_token, &seen);
    for path in [
        &seen["admin"]["screenshot"],
        &seen["docs"]["screenshot"],
        &seen["admin"]["reenable"]["screenshot"],
    ] {
        let path = path.as_str().unwrap();
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{path} is a real screenshot ({size} bytes)");
        println!("screenshot: {path}");
    }
}

/// `/admin`: refused tokens explained, then every plugin with its facts, one edge per
/// declared dependency, the event counters, and a sign-out that forgets the token.
fn check_dashboard(host: &RunningHost, listed: &[Value], admin: &Value) {
    let bad = admin["badToken"]["message"].as_str().unwrap();
    assert!(
        bad.contains("401") && bad.contains("did not accept this token"),
        "{bad}"
    );
    assert_eq!(
        admin["badToken"]["stored"], 0,
        "a refused token is not kept"
    );
    assert_eq!(admin["badToken"]["signInVisible"], true);
    assert_eq!(
        admin["badToken"]["sessionControlsVisible"], false,
        "no sign-out before signing in"
    );
    assert_eq!(admin["badToken"]["dashboardVisible"], false);
    let user = admin["userToken"]["message"].as_str().unwrap();
    assert!(
        user.contains("403") && user.contains("admin role"),
        "{user}"
    );
    assert_eq!(
        admin["pageUrl"].as_str(),
        Some(format!("http://{}/admin", host.address()).as_str()),
        "signing in leaves the URL alone (the token is never in it)"
    );
    assert_eq!(
        admin["messageVisible"], false,
        "the error is gone once signed in"
    );

    let shown: BTreeMap<&str, &Value> = admin["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|card| (card["id"].as_str().unwrap(), card))
        .collect();
    assert_eq!(shown.len(), listed.len(), "one card per library: {shown:?}");
    for plugin in listed {
        let id = plugin["id"].as_str().unwrap();
        let card = shown.get(id).unwrap_or_else(|| panic!("{id} has no card"));
        assert_eq!(card["state"], plugin["state"], "{id}");
        assert_eq!(card["version"], plugin["version"], "{id}");
        assert_eq!(card["sha256"], plugin["sha256"], "{id}");
        assert_eq!(card["reason"], plugin["reason"], "{id}");
        let routes: Vec<&Value> = plugin["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["path"])
            .collect();
        let shown_routes: Vec<&Value> = card["routes"].as_array().unwrap().iter().collect();
        assert_eq!(shown_routes, routes, "{id}");
        assert_eq!(card["granted"], plugin["granted_permissions"], "{id}");
        assert_eq!(card["denied"], plugin["denied_permissions"], "{id}");
        let details = host.plugin(id);
        let counters = details["events"].as_object().unwrap();
        assert_eq!(
            card["counters"].as_object().unwrap().len(),
            counters.len(),
            "{id}: one row per counted topic"
        );
        for (topic, count) in counters {
            for counter in ["emitted", "delivered", "failed"] {
                // Counters only grow; the page read them before this did.
                let on_page = card["counters"][topic][counter]
                    .as_u64()
                    .unwrap_or(u64::MAX);
                assert!(
                    on_page <= count[counter].as_u64().unwrap(),
                    "{id} {topic} {counter}: {on_page} on the page, {count} now"
                );
            }
        }
    }
    let states: BTreeSet<&str> = shown
        .values()
        .map(|c| c["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        BTreeSet::from(["disabled", "enabled", "failed", "quarantined", "skipped"]),
        "the fixtures cover every state they can reach"
    );
    let stealth = shown["game-stealth"];
    assert!(
        stealth["reason"].as_str().unwrap().contains(MARKUP),
        "the refused value is in the reason: {stealth}"
    );
    assert_eq!(
        stealth["reasonElements"], 0,
        "the reason is text, not markup"
    );
    assert_eq!(admin["imagesOnPage"], 0, "no element came from API strings");
    assert_eq!(
        admin["title"], "PixSim7 · Plugins",
        "no script came from API strings"
    );
    let events = shown["fixture-events"];
    assert_eq!(
        events["counters"]["test:ping"],
        json!({"emitted": 3, "delivered": 3, "failed": 0}),
        "the counters of the events emitted before the page was opened"
    );
    assert_eq!(events["lag"], "Pending events (lag): 0");

    let declared: BTreeSet<(String, String)> = listed
        .iter()
        .flat_map(|plugin| {
            let id = plugin["id"].as_str().unwrap().to_owned();
            plugin["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |d| (id.clone(), d["id"].as_str().unwrap().to_owned()))
        })
        .collect();
    let edges = admin["edges"].as_array().unwrap();
    let drawn: BTreeSet<(String, String)> = edges
        .iter()
        .map(|e| {
            (
                e["from"].as_str().unwrap().to_owned(),
                e["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        edges.len(),
        drawn.len(),
        "no edge is drawn twice: {edges:?}"
    );
    assert_eq!(drawn, declared, "exactly one edge per declared dependency");
    assert!(
        declared.len() >= 7,
        "the graph has something to show: {declared:?}"
    );
    for edge in edges {
        let to = edge["to"].as_str().unwrap();
        let available = listed
            .iter()
            .any(|p| p["id"] == to && p["state"] == "enabled");
        let arrow = if available {
            "url(#arrow)"
        } else {
            "url(#arrow-broken)"
        };
        assert_eq!(edge["arrow"], arrow, "{edge}");
    }
    let nodes: BTreeMap<&str, &str> = admin["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n["state"].as_str().unwrap()))
        .collect();
    for plugin in listed {
        let id = plugin["id"].as_str().unwrap();
        assert_eq!(
            Some(&plugin["state"].as_str().unwrap()),
            nodes.get(id),
            "node {id}"
        );
    }
    assert_eq!(
        nodes.get("not-installed"),
        Some(&"missing"),
        "a dependency that is not installed is drawn too"
    );

    assert_eq!(
        admin["keptAfterReload"], true,
        "the session survives a reload"
    );
    assert_eq!(
        admin["afterSignOut"],
        json!({"stored": 0, "pluginsShown": 0}),
        "signing out forgets the token and the data"
    );
}

/// The quarantined plugin's card: its reason and since (as the page's local time), the only
/// "Re-enable" button on the page, the summary counting it; after the click the page shows it
/// enabled with the outcome, and the server agrees: enabled, serving, the re-enable audited.
fn check_reenable(host: &RunningHost, listed: &[Value], quarantined: &Value, seen: &Value) {
    let before = &seen["before"];
    assert_eq!(seen["id"], QUARANTINED, "{seen:#}");
    assert_eq!(before["state"], "quarantined");
    assert_eq!(before["reason"], quarantined["reason"]);
    assert_eq!(before["reasonVisible"], true);
    let reason = quarantined["reason"].as_str().unwrap();
    assert!(
        reason.contains("a panic: GET /api/v1/fixture-blocking/panic panicked"),
        "{reason}"
    );
    let since = quarantined["quarantined_since"].as_i64().unwrap();
    assert_eq!(
        before["sinceDatetime"].as_str(),
        Some(iso_utc(since).as_str()),
        "the <time> element carries quarantined_since ({since})"
    );
    assert_eq!(
        before["sinceText"], before["sinceExpected"],
        "since is shown as the browser's local time"
    );
    assert_eq!(
        before["buttonsInCard"], 1,
        "the card has one button, Re-enable"
    );
    assert_eq!(
        before["reenableButtonsOnPage"], 1,
        "only a quarantined plugin offers Re-enable"
    );
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for plugin in listed {
        *counts
            .entry(plugin["state"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(counts.get("quarantined"), Some(&1));
    assert_eq!(
        before["summary"],
        json!(counts),
        "the summary counts by state"
    );

    let after = &seen["after"];
    assert_eq!(after["state"], "enabled", "{after:#}");
    assert_eq!(after["dataState"], "enabled");
    assert_eq!(after["outcomeKind"], "success");
    assert_eq!(
        after["outcome"],
        format!("Re-enabled: {QUARANTINED} is enabled and serves its routes again.")
    );
    assert_eq!(after["quarantinePanels"], 0);
    assert_eq!(after["reenableButtonsOnPage"], 0);
    assert_eq!(after["graphNode"], "enabled");
    *counts.get_mut("quarantined").unwrap() -= 1;
    *counts.entry("enabled".to_owned()).or_default() += 1;
    assert_eq!(
        after["summary"],
        json!(counts),
        "quarantined is counted at 0, the plugin as enabled"
    );
    assert_eq!(after["messageVisible"], false);
    assert_eq!(
        seen["stale"],
        json!({
            "id": QUARANTINED,
            "outcome": format!("{QUARANTINED} was no longer quarantined; it is enabled."),
            "outcomeKind": "info",
            "state": "enabled",
        }),
        "a second operator's stale page learns that the plugin was re-enabled already"
    );

    let now = host.plugin(QUARANTINED);
    assert_eq!(now["state"], "enabled", "{now:#}");
    assert!(now.get("quarantined_since").is_none(), "{now:#}");
    let audit = host.wait_for_log("plugin fixture-blocking re-enabled by user 1");
    assert_eq!(audit.0["target"], "pixsim7::audit");
    assert_eq!(
        host.get(&format!("/api/v1/{QUARANTINED}/ok")).status,
        200,
        "its routes serve again"
    );
}

/// `seconds` since the Unix epoch as JavaScript's `Date.toISOString()` writes it
/// (days to a civil date: Howard Hinnant's `civil_from_days`).
fn iso_utc(seconds: i64) -> String {
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

#[test]
fn iso_utc_writes_what_javascript_writes() {
    assert_eq!(iso_utc(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(iso_utc(951_782_400), "2000-02-29T00:00:00.000Z");
    assert_eq!(iso_utc(1_796_125_057), "2026-12-01T11:37:37.000Z");
}

/// `/docs`: every operation of the document rendered, and "Try it out" works on a public
/// route and, after "Authorize" with the admin token, on an admin one.
fn check_api_page(host: &RunningHost, docs: &Value) {
    let document = host.get("/openapi.json").json();
    let expected: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, operations)| {
            operations
                .as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    let rendered: Vec<(String, String)> = docs["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["method"].as_str().unwrap_or_default().to_owned(),
                o["path"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(rendered.len(), expected.len(), "{rendered:?}");
    assert_eq!(rendered.into_iter().collect::<BTreeSet<_>>(), expected);
    assert!(
        docs["title"].as_str().unwrap().starts_with("PixSim7"),
        "{docs}"
    );

    assert_eq!(docs["healthz"]["status"], "200", "{}", docs["healthz"]);
    let body: Value = serde_json::from_str(docs["healthz"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, json!({"status": "ok"}));
    assert_eq!(docs["plugins"]["status"], "200", "{}", docs["plugins"]);
    // The script keeps the first 2000 characters: the first library by file name.
    assert!(
        docs["plugins"]["body"]
            .as_str()
            .unwrap()
            .contains("\"fixture-blocking\""),
        "{}",
        docs["plugins"]
    );
}

/// Nothing but the server was asked for anything, the token never went into a URL, no
/// console errors but the two refusals the test provoked, no script errors.
fn check_traffic(host: &RunningHost, admin_token: &str, seen: &Value) {
    let origin = format!("http://{}/", host.address());
    let requests = seen["requests"].as_array().unwrap();
    assert!(requests.len() > 20, "{requests:?}");
    for request in requests {
        let url = request["url"].as_str().unwrap();
        assert!(
            url.starts_with(&origin),
            "a request to another host: {request}"
        );
        assert!(!url.contains(admin_token), "the token in a URL: {request}");
    }
    let authorized = requests
        .iter()
        .filter(|r| r["phase"] == "docs: try /api/v1/plugins")
        .find(|r| r["url"] == format!("{origin}api/v1/plugins"))
        .expect("Swagger UI called the admin API");
    assert_eq!(
        authorized["authorization"],
        format!("Bearer {admin_token}"),
        "\"Authorize\" sends the bearer token"
    );
    let enables: Vec<&Value> = requests.iter().filter(|r| r["method"] == "POST").collect();
    let phases: Vec<&Value> = enables.iter().map(|r| &r["phase"]).collect();
    assert_eq!(
        phases,
        ["admin: re-enable", "admin: re-enable from a stale page"],
        "the two clicks on Re-enable are the only POSTs: {enables:?}"
    );
    for enable in enables {
        assert_eq!(
            enable["url"],
            format!("{origin}api/v1/plugins/{QUARANTINED}/enable")
        );
        assert_eq!(
            enable["authorization"],
            format!("Bearer {admin_token}"),
            "Re-enable sends the signed-in token"
        );
    }
    assert_eq!(seen["pageErrors"], json!([]), "script errors");
    assert_eq!(seen["failedRequests"], json!([]), "failed requests");
    let unexpected: Vec<&Value> = seen["console"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|message| {
            let provoked = match message["phase"].as_str() {
                Some("admin: bad token") => "status of 401",
                Some("admin: user token") => "status of 403",
                _ => return true,
            };
            !(message["text"].as_str().unwrap().contains(provoked)
                && message["url"] == format!("{origin}api/v1/plugins"))
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "console errors or warnings: {unexpected:?}"
    );
}

/// The URLs of the files (`/docs/...`, `/admin/...`) a page names.
fn referenced_files(html: &str, page: &str) -> Vec<String> {
    let marker = format!("=\"{page}/");
    html.match_indices(&marker)
        .map(|(at, _)| {
            let start = at + 2;
            let end = start + html[start..].find('"').expect("a closing quote");
            html[start..end].to_owned()
        })
        .collect()
}

/// Node with playwright-core and a Chromium: all must be there, or the test fails saying
/// how to install them (a browser test that skips itself tests nothing).
struct BrowserTools {
    chromium: PathBuf,
    script_dir: PathBuf,
}

impl BrowserTools {
    fn find() -> BrowserTools {
        let chromium = std::env::var_os("PIXSIM7_CHROMIUM")
            .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
        assert!(
            chromium.exists(),
            "{} not found: install Chromium (Debian: `apt-get install -y chromium`) or set \
             PIXSIM7_CHROMIUM to its path",
            chromium.display()
        );
        let node = Command::new("node").arg("--version").output();
        assert!(
            node.as_ref().is_ok_and(|o| o.status.success()),
            "node not found: install Node.js 20 or newer with npm"
        );
        let script_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
        assert!(
            script_dir.join("node_modules/playwright-core").is_dir(),
            "playwright-core is not installed: run `npm ci` in {} (`cargo xtask test` does)",
            script_dir.display()
        );
        BrowserTools {
            chromium,
            script_dir,
        }
    }

    /// Runs the browser script against `host`; what it saw.
    fn run(&self, host: &RunningHost, admin_token: &str, user_token: &str) -> Value {
        let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target dir")
            .join("browser-screenshots");
        std::fs::create_dir_all(&screenshots).expect("create the screenshot folder");
        let output = Command::new("node")
            .arg("pages.mjs")
            .current_dir(&self.script_dir)
            .env("PIXSIM7_URL", format!("http://{}", host.address()))
            .env("PIXSIM7_ADMIN_TOKEN", admin_token)
            .env("PIXSIM7_USER_TOKEN", user_token)
            .env("PIXSIM7_SCREENSHOT_DIR", &screenshots)
            .env("PIXSIM7_CHROMIUM", &self.chromium)
            .output()
            .expect("run node");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "the browser script failed ({}):\n{}\n{stdout}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("the browser script printed no JSON ({e}): {stdout}"))
    }
}
