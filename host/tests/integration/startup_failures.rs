//! Fatal startup: a failing `required` plugin, or any failure under `--strict` (flag,
//! environment or config file), ends startup with a non-zero exit and the reason.

use crate::harness::{pixsim7, PluginDir};

#[test]
fn strict_mode_makes_any_failure_fatal_from_flag_env_or_file() {
    let dir = PluginDir::with(&["dice_game", "fixture_missing_dep"]);
    let by_flag = pixsim7(&dir).run_to_exit(&["serve", "--bind", "127.0.0.1:0", "--strict"]);
    let by_env =
        pixsim7(&dir)
            .env("PIXSIM7_STRICT", "1")
            .run_to_exit(&["serve", "--bind", "127.0.0.1:0"]);
    let config = dir.config_file("strict = true\n");
    let by_file = pixsim7(&dir).env("PIXSIM7_CONFIG", &config).run_to_exit(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
    ]);
    for exited in [by_flag, by_env, by_file] {
        assert_eq!(exited.status.code(), Some(1));
        assert!(
            exited.logged(
                "ERROR",
                "startup aborted: strict mode: plugin fixture-missing-dep skipped: requires not-installed"
            ),
            "{:?}",
            exited.logs
        );
        assert!(!exited
            .logs
            .iter()
            .any(|l| l.message().starts_with("Serving on")));
    }
    // The flag beats the environment.
    let relaxed = pixsim7(&dir)
        .env("PIXSIM7_STRICT", "1")
        .start_with(&["--strict=false"]);
    assert_eq!(relaxed.plugin("fixture-missing-dep")["state"], "skipped");
}

#[test]
fn a_required_plugin_that_fails_stops_startup() {
    let dir = PluginDir::with(&["dice_game", "fixture_required"]);
    let config = dir.config_file("[plugins.fixture-required]\nfail = true\n");
    let exited = pixsim7(&dir).env("PIXSIM7_CONFIG", &config).run_to_exit(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
    ]);
    assert_eq!(exited.status.code(), Some(1));
    assert!(exited.logged(
        "ERROR",
        "startup aborted: required plugin fixture-required failed: on_load failed: configured to fail"
    ));

    // Without the failure the same plugin serves.
    let host = pixsim7(&dir).start();
    assert_eq!(host.get("/api/v1/fixture-required/ping").status, 200);
    assert_eq!(host.plugin("fixture-required")["required"], true);
}

#[test]
fn an_unreadable_plugin_dir_or_config_is_a_clear_error() {
    let dir = PluginDir::empty();
    let exited = pixsim7(&dir)
        .env("PIXSIM7_PLUGIN_DIR", dir.path().join("missing"))
        .run_to_exit(&["serve", "--bind", "127.0.0.1:0"]);
    assert_eq!(exited.status.code(), Some(1));
    assert!(
        exited.logged("ERROR", "cannot read plugin directory"),
        "{:?}",
        exited.logs
    );

    let config = dir.config_file("plugin_dri = \"x\"\n");
    let exited = pixsim7(&dir).env("PIXSIM7_CONFIG", &config).run_to_exit(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
    ]);
    assert_eq!(exited.status.code(), Some(1));
    assert!(
        exited.logged("ERROR", "unknown field `plugin_dri`"),
        "{:?}",
        exited.logs
    );
}
