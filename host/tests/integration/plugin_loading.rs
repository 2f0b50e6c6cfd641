//! Loading: every kind of bad plugin is reported with its state and a reason a person can
//! act on, once, while the good plugins keep serving; adding or removing a library and
//! restarting changes what is served.

use serde_json::{json, Value};

use crate::harness::{pixsim7, PluginDir};

const BAD_FIXTURES: &[&str] = &[
    "fixture_abi_mismatch",
    "fixture_cycle_a",
    "fixture_cycle_b",
    "fixture_disabled",
    "fixture_duplicate_id",
    "fixture_load_fails",
    "fixture_missing_dep",
    "fixture_needs_failing",
    "fixture_needs_newer",
    "fixture_newer_abi",
    "fixture_no_root",
    "fixture_old_api",
    "fixture_route_conflict",
];

fn by_file<'a>(plugins: &'a [Value], file: &str) -> &'a Value {
    plugins
        .iter()
        .find(|p| p["file"].as_str().is_some_and(|f| f.contains(file)))
        .unwrap_or_else(|| panic!("no plugin from {file} in {plugins:?}"))
}

#[track_caller]
fn check(plugins: &[Value], file: &str, state: &str, reason: &str) {
    let plugin = by_file(plugins, file);
    assert_eq!(plugin["state"], state, "{plugin}");
    let actual = plugin["reason"].as_str().unwrap_or_default();
    assert!(
        actual.contains(reason),
        "{file}: reason {actual:?} lacks {reason:?}"
    );
}

#[test]
fn bad_plugins_are_reported_and_the_good_ones_keep_serving() {
    let dir = PluginDir::with(&["dice_game"]);
    for fixture in BAD_FIXTURES {
        dir.add(fixture);
    }
    dir.write(
        "libnot_a_library.so",
        b"this is a text file, not a shared library\n",
    );
    let host = pixsim7(&dir).start();

    let roll = host.post_json("/api/v1/dice-game/roll", &json!({"dice": "2d6"}));
    assert_eq!(roll.status, 200, "{}", roll.body);

    let plugins = host.get("/api/v1/plugins").json();
    let plugins = plugins.as_array().unwrap();
    assert_eq!(
        plugins.len(),
        BAD_FIXTURES.len() + 2,
        "one entry per library found"
    );
    check(plugins, "libdice_game", "enabled", "");
    check(plugins, "not_a_library", "failed", "not a loadable library");
    // Neither an SDK-less library nor one built with plugin-api 0.7 carries a descriptor
    // section; both are refused from the file, unopened.
    let no_section = "not a PixSim7 plugin of this host: the library has no descriptor section \
                      (.pixsim7_plugin), which plugin-api 0.9 (plugin ABI 1.2) and later write";
    check(plugins, "no_root", "failed", no_section);
    check(plugins, "old_api", "failed", no_section);
    let host_abi = plugin_api::abi::ABI_VERSION;
    let host_major = host_abi.split('.').next().unwrap();
    check(
        plugins,
        "newer_abi",
        "failed",
        &format!(
            "built against plugin ABI 2.0.0, newer than this host's plugin ABI {host_abi}: \
             upgrade the host, or rebuild the plugin against plugin-abi {host_major}.x"
        ),
    );
    check(
        plugins,
        "abi_mismatch",
        "failed",
        &format!(
            "ABI layout mismatch: built against plugin ABI 1.0.0, which this host ({host_abi}) \
             would load, but its interface types differ"
        ),
    );
    let cycle =
        "Circular dependency detected: fixture-cycle-a -> fixture-cycle-b -> fixture-cycle-a";
    check(plugins, "cycle_a", "skipped", cycle);
    check(plugins, "cycle_b", "skipped", cycle);
    check(
        plugins,
        "missing_dep",
        "skipped",
        "requires not-installed, which is not loaded",
    );
    check(
        plugins,
        "needs_newer",
        "skipped",
        "requires dice-game ^2, but dice-game 1.0.0 is installed",
    );
    check(
        plugins,
        "duplicate_id",
        "failed",
        "duplicate plugin id \"dice-game\": libdice_game.so already provides it",
    );
    check(
        plugins,
        "route_conflict",
        "failed",
        "route conflict: POST /api/v1/dice-game/roll is already served by plugin dice-game",
    );
    check(plugins, "disabled", "disabled", "disabled in its manifest");
    check(
        plugins,
        "load_fails",
        "failed",
        "on_load failed: database fixture-db is unreachable",
    );
    check(
        plugins,
        "needs_failing",
        "skipped",
        "requires fixture-load-fails, which failed to load",
    );

    let dice = host.plugin("dice-game");
    assert_eq!(dice["order"], 1);
    assert_eq!(dice["version"], "1.0.0");
    assert_eq!(dice["prefix"], "/api/v1");
    assert_eq!(dice["tags"], json!(["dice-game"]));
    assert_eq!(
        dice["routes"],
        json!([{"method": "POST", "path": "/api/v1/dice-game/roll", "access": "public"}])
    );
    assert_eq!(dice["reason"], Value::Null);
    let missing = host.get("/api/v1/plugins/not-a-plugin");
    assert_eq!(missing.status, 404);
    assert!(missing.json()["detail"]
        .as_str()
        .unwrap()
        .contains("not-a-plugin"));

    // Nothing of a failed plugin is served.
    assert_eq!(host.get("/api/v1/fixture-route-conflict/ping").status, 404);
    assert_eq!(host.get("/api/v1/fixture-cycle-a/ping").status, 404);

    let exited = host.stop();
    assert!(exited.status.success());
    for (label, text) in [
        (
            "libnot_a_library.so",
            "Failed to load plugin libnot_a_library.so: not a loadable library",
        ),
        (
            "fixture-route-conflict",
            "Failed to load plugin fixture-route-conflict: route conflict",
        ),
        (
            "fixture-cycle-a",
            "Skipped plugin fixture-cycle-a: Circular dependency detected",
        ),
        (
            "fixture-load-fails",
            "Failed to load plugin fixture-load-fails: on_load failed",
        ),
    ] {
        let lines: Vec<_> = exited
            .logs
            .iter()
            .filter(|l| l.message().contains(text))
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "{label} is reported exactly once: {lines:?}"
        );
        assert_eq!(lines[0].level(), "WARN");
    }
    assert!(exited.logged("INFO", "Discovered 15 plugins"));
    assert!(exited.logged("INFO", "Loaded plugin: Dice Game v1.0.0"));
    // The order is planned from the descriptor sections, before any library is opened:
    // fixture-abi-mismatch is in it, and fails when its library is opened.
    assert!(exited.logged(
        "INFO",
        "Plugin load order: [dice-game, fixture-abi-mismatch, fixture-load-fails, fixture-needs-failing]"
    ));
    assert!(exited.logged("INFO", "Loaded 1 plugins"));
}

#[test]
fn a_panic_in_on_load_fails_only_that_plugin() {
    let dir = PluginDir::with(&["dice_game", "fixture_load_fails"]);
    let config = dir.config_file("[plugins.fixture-load-fails]\nmode = \"panic\"\n");
    let host = pixsim7(&dir).env("PIXSIM7_CONFIG", &config).start();
    let plugin = host.plugin("fixture-load-fails");
    assert_eq!(plugin["state"], "failed");
    let reason = plugin["reason"].as_str().unwrap();
    assert!(
        reason.contains("on_load failed: panicked: fixture on_load panic"),
        "{reason}"
    );
    assert_eq!(host.plugin("dice-game")["state"], "enabled");
}

#[test]
fn adding_or_removing_a_library_and_restarting_changes_the_routes() {
    let dir = PluginDir::with(&["dice_game"]);
    let host = pixsim7(&dir).start();
    assert_eq!(host.get("/api/v1/fixture-hooks-base/slow?ms=1").status, 404);
    assert!(host.stop().status.success());

    dir.add("fixture_hooks_base");
    let host = pixsim7(&dir).start();
    assert_eq!(host.get("/api/v1/fixture-hooks-base/slow?ms=1").status, 200);
    let openapi = host.get("/openapi.json").json();
    assert!(openapi["paths"]["/api/v1/fixture-hooks-base/slow"]["get"].is_object());
    assert!(host.stop().status.success());

    dir.remove("fixture_hooks_base");
    let host = pixsim7(&dir).start();
    assert_eq!(host.get("/api/v1/fixture-hooks-base/slow?ms=1").status, 404);
    assert!(host.get("/openapi.json").json()["paths"]["/api/v1/fixture-hooks-base/slow"].is_null());
    assert_eq!(
        host.post_json("/api/v1/dice-game/roll", &json!({"dice": "d4"}))
            .status,
        200
    );
}

#[test]
fn the_operator_can_disable_a_plugin_and_configure_another() {
    let dir = PluginDir::with(&["dice_game", "fixture_hooks_base"]);
    let config = dir.config_file(
        "[plugins.dice-game]\nenabled = false\n\n[plugins.fixture-hooks-base]\ngreeting = \"hi\"\nlimit = 3\n",
    );
    let host = pixsim7(&dir)
        .args(&["--config", config.to_str().unwrap()])
        .start();
    let dice = host.plugin("dice-game");
    assert_eq!(dice["state"], "disabled");
    assert!(dice["reason"]
        .as_str()
        .unwrap()
        .contains("[plugins.dice-game] enabled = false"));
    assert_eq!(
        host.post_json("/api/v1/dice-game/roll", &json!({"dice": "d4"}))
            .status,
        404
    );
    let line = host.wait_for_log("hook on_load fixture-hooks-base");
    assert!(
        line.message()
            .contains(r#"config={"greeting":"hi","limit":3}"#),
        "{line:?}"
    );
    assert_eq!(
        line.field("plugin").as_deref(),
        Some("fixture-hooks-base"),
        "plugin log lines carry the plugin id"
    );
}
