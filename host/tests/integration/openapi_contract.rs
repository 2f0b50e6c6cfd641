//! `/openapi.json` is a contract the server keeps: schemathesis (from PyPI; `cargo xtask test`
//! installs a pinned version into `target/schemathesis-venv` and names its `st` in
//! `PIXSIM7_SCHEMATHESIS`) generates requests from the live document of a host serving every
//! game plugin, sends them with an admin's token, and runs all its checks: every request the
//! schemas admit must be accepted (2xx, or 404/409 for state), every one they do not must be
//! refused with a 4xx, and every answer must match its documented schema. Any failure fails
//! this test with schemathesis's own report.

use std::{path::PathBuf, process::Command};

use serde_json::json;

use crate::harness::{game_plugins_and, pixsim7, token_for, PluginDir};

/// Where `cargo xtask test` puts the `st` executable.
const SCHEMATHESIS_VARIABLE: &str = "PIXSIM7_SCHEMATHESIS";

/// Test cases per operation and phase: enough to find what the issue found (thirty
/// schema-valid requests refused at about twenty-five cases an operation), bounded so the run
/// takes about a minute on two cores.
const EXAMPLES_PER_OPERATION: &str = "50";

/// What schemathesis is told about this API, beyond the document: two checks are off for
/// one operation, `PUT /api/v1/game/npcs/{npc_id}/schedules`, where they cannot apply.
///
/// - `positive_data_acceptance` ("schema-valid requests must be accepted") presumes the schema
///   states every rule of a valid request, but a schedule entry must also start before it
///   ends (`start_time < end_time`), a relation between two fields that JSON Schema has no
///   keyword for (the field's description states it). Such an entry is refused with 400,
///   which `negative_data_rejection` and the other checks still see.
/// - `ensure_resource_availability` ("a resource just created must not answer 404") takes
///   any 404 on a path below a created resource for that resource missing, but this body
///   names another resource, a location, and a missing location is 404 as everywhere in this
///   API (the wire contract answers 404 for a missing session or NPC named in a body). The
///   NPC the check created is there; the 404 names the location it did not create.
const CONFIG: &str = r#"
[[operations]]
include-path = "/api/v1/game/npcs/{npc_id}/schedules"
include-method = "PUT"
checks.positive_data_acceptance.enabled = false
checks.ensure_resource_availability.enabled = false
"#;

fn schemathesis() -> PathBuf {
    let installed = std::env::var_os(SCHEMATHESIS_VARIABLE)
        .map(PathBuf::from)
        .filter(|path| path.is_file());
    installed.unwrap_or_else(|| {
        panic!(
            "schemathesis is needed to check /openapi.json against the server, and \
             {SCHEMATHESIS_VARIABLE} does not name its `st` executable. Run the tests with \
             `cargo xtask test` (it installs a pinned schemathesis with pip into \
             target/schemathesis-venv), or install it yourself \
             (`python3 -m venv target/schemathesis-venv && \
             target/schemathesis-venv/bin/pip install schemathesis`) and set \
             {SCHEMATHESIS_VARIABLE}=target/schemathesis-venv/bin/st"
        )
    })
}

#[test]
fn every_schema_valid_request_is_accepted_and_every_invalid_one_refused() {
    let st = schemathesis();
    let dir = PluginDir::with(&game_plugins_and(&[
        "game_relationships",
        "dice_game",
        "auth",
    ]));
    let host = pixsim7(&dir).start();

    // Something for generated ids to find, so positive cases reach the handlers' real work
    // and not only 404: a world, a location, an NPC with a schedule, a session.
    let world = host.ok("POST", "/api/v1/game/worlds", json!({"name": "Harbor"}));
    let location = host.ok("POST", "/api/v1/game/locations", json!({"name": "Dock"}));
    let npc = host.ok(
        "POST",
        "/api/v1/game/npcs",
        json!({"name": "Mara", "world_id": world["id"], "home_location_id": location["id"]}),
    );
    host.ok(
        "PUT",
        &format!("/api/v1/game/npcs/{}/schedules", npc["id"]),
        json!({"schedules": [{"day_of_week": 0, "start_time": 0, "end_time": 3600, "location_id": location["id"]}]}),
    );
    host.ok(
        "POST",
        "/api/v1/game/sessions",
        json!({"world_id": world["id"]}),
    );

    let work = dir.path().with_extension("schemathesis");
    std::fs::create_dir_all(&work).expect("schemathesis work directory");
    let config = work.join("schemathesis.toml");
    std::fs::write(&config, CONFIG).expect("write schemathesis.toml");
    let token = token_for(1, &["admin"]);
    // Every check runs: none is named, and schemathesis enables all by default (naming them
    // with `--checks all` would override the one exception in CONFIG).
    let output = Command::new(&st)
        .current_dir(&work) // its .hypothesis/ database goes there, not into the tree
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("http://{}/openapi.json", host.address()))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--max-examples", EXAMPLES_PER_OPERATION])
        .args(["--seed", "3"])
        .args(["--workers", "2"])
        .arg("--no-color")
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", st.display()));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found requests the server and /openapi.json disagree on ({}):\n{report}",
        output.status
    );
    assert!(
        report.contains("Operations:") && !report.contains(" 0 selected"),
        "schemathesis tested no operation:\n{report}"
    );
    host.stop();
}
