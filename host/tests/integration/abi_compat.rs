//! The ABI promise: a library built against the previous plugin ABI release (the frozen
//! copy under host/tests/compat/) loads and serves on this host; libraries of another major
//! are refused with one line that names both versions and says which side to rebuild, the
//! same in `serve` and in `pixsim7 plugins`.

use crate::harness::{pixsim7, PluginDir};

fn host_abi() -> (&'static str, &'static str) {
    let version = plugin_api::abi::ABI_VERSION;
    (version, version.split('.').next().unwrap())
}

/// A library from before the stable ABI (plugin-api 0.7) has no descriptor section, which
/// is what the host reads first.
fn older_message() -> String {
    "not a PixSim7 plugin of this host: the library has no descriptor section \
     (.pixsim7_plugin), which plugin-api 0.9 (plugin ABI 1.2) and later write; rebuild the \
     plugin with plugin-api 0.9 or later (export_plugin!)"
        .to_owned()
}

fn newer_message() -> String {
    let (version, major) = host_abi();
    format!(
        "built against plugin ABI 2.0.0, newer than this host's plugin ABI {version}: upgrade \
         the host, or rebuild the plugin against plugin-abi {major}.x"
    )
}

#[test]
fn a_plugin_built_against_the_previous_abi_release_loads_and_serves() {
    assert_ne!(
        plugin_api::abi::ABI_VERSION,
        "1.0.0",
        "the fixture is only a test of compatibility while the host is newer"
    );
    let dir = PluginDir::with(&["fixture_abi_1_0"]);
    let host = pixsim7(&dir).start();
    let plugin = host.plugin("fixture-abi-1-0");
    assert_eq!(plugin["state"], "enabled", "{plugin}");

    let reply = host.request_raw(
        "GET",
        "/api/v1/fixture-abi-1-0/hello/ada?greeting=welcome",
        &[("user-agent", "compat-test/1")],
        b"",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["greeting"], "welcome, ada");
    assert_eq!(body["built_against"], "1.0.0");
    assert_eq!(body["user_agent"], "compat-test/1");
    // An operation this host lacks is a typed answer (NotSupported, code 6), not a crash.
    assert_eq!(body["unknown_operation_kind"], 6, "{body}");
    // Its log line went through the 1.0 vtable of the host services.
    host.wait_for_log("hello from a library built against plugin ABI 1.0");
}

#[test]
fn libraries_of_another_abi_major_are_refused_in_one_line_naming_both_versions() {
    let dir = PluginDir::with(&["dice_game", "fixture_old_api", "fixture_newer_abi"]);
    let host = pixsim7(&dir).start();
    for (file, message) in [
        ("libfixture_old_api.so", older_message()),
        ("libfixture_newer_abi.so", newer_message()),
    ] {
        let line = host.wait_for_log(&message);
        assert_eq!(line.level(), "WARN");
        assert!(!line.message().contains('\n'), "{}", line.message());
        assert_eq!(
            line.field("file").as_deref().map(|f| f.ends_with(file)),
            Some(true)
        );
    }
    let roll = host.post_json(
        "/api/v1/dice-game/roll",
        &serde_json::json!({"dice": "1d6"}),
    );
    assert_eq!(roll.status, 200, "the others keep serving: {}", roll.body);
    host.stop();

    let exited = pixsim7(&dir).run_to_exit(&["plugins"]);
    assert_eq!(exited.status.code(), Some(1), "{}", exited.stdout);
    for message in [older_message(), newer_message()] {
        assert!(
            exited
                .stdout
                .lines()
                .any(|line| line.trim_start() == format!("reason:       {message}")),
            "no one-line reason {message:?} in:\n{}",
            exited.stdout
        );
    }
}
