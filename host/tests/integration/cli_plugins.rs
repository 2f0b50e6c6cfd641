//! `pixsim7 plugins`: the dry run. Same verdicts as serving, no hook runs, non-zero exit
//! when any plugin would fail; the load order does not depend on file names or runs.

use serde_json::Value;

use crate::harness::{pixsim7, PluginDir};

#[test]
fn reports_states_reasons_and_order_without_running_hooks() {
    let dir = PluginDir::with(&["dice_game", "fixture_hooks_base", "fixture_needs_newer"]);
    let exited = pixsim7(&dir).run_to_exit(&["plugins"]);
    assert_eq!(exited.status.code(), Some(1), "a plugin would be skipped");
    let text = &exited.stdout;
    assert!(
        text.contains("dice-game 1.0.0 (libdice_game.so): would load (#1)"),
        "{text}"
    );
    assert!(
        text.contains("fixture-needs-newer 1.0.0 (libfixture_needs_newer.so): skipped"),
        "{text}"
    );
    assert!(
        text.contains("reason:       requires dice-game ^2, but dice-game 1.0.0 is installed"),
        "{text}"
    );
    assert!(
        text.contains("route:        POST /api/v1/dice-game/roll"),
        "{text}"
    );
    assert!(
        text.contains("Load order: [dice-game, fixture-hooks-base]"),
        "{text}"
    );
    assert!(
        !exited
            .logs
            .iter()
            .any(|l| l.message().contains("hook on_load")),
        "no hook runs in a dry run"
    );

    let good = PluginDir::with(&["dice_game"]);
    assert_eq!(
        pixsim7(&good).run_to_exit(&["plugins"]).status.code(),
        Some(0)
    );
}

#[test]
fn json_output_and_load_order_are_the_same_whatever_the_file_names() {
    let libs = [
        "fixture_hooks_dependent",
        "fixture_hooks_base",
        "dice_game",
        "fixture_panicking",
    ];
    let forward = PluginDir::empty();
    let backward = PluginDir::empty();
    for (index, lib) in libs.iter().enumerate() {
        forward.add_as(lib, &format!("lib{index}_{lib}.so"));
        backward.add_as(lib, &format!("lib{}_{lib}.so", libs.len() - index));
    }
    let report = |dir: &PluginDir| -> Value {
        let exited = pixsim7(dir).run_to_exit(&["plugins", "--json"]);
        assert_eq!(exited.status.code(), Some(0), "{}", exited.stdout);
        serde_json::from_str(&exited.stdout).expect("JSON report")
    };
    let expected = [
        "dice-game",
        "fixture-hooks-base",
        "fixture-hooks-dependent",
        "fixture-panicking",
    ];
    for dir in [&forward, &backward, &forward] {
        let report = report(dir);
        assert_eq!(report["load_order"], serde_json::json!(expected));
        assert_eq!(report["plugins"].as_array().unwrap().len(), 4);
    }
}
