//! `cargo xtask new-plugin --out-of-tree`: the crate it writes builds outside the workspace
//! (`cargo xtask test` wrote it, ran its unit test and built it before these tests), and the
//! host serves its library after a (re)start.

use serde_json::json;

use crate::harness::{pixsim7, PluginDir};

#[test]
fn the_scaffolded_plugin_is_served() {
    let dir = PluginDir::with(&["scaffold_check"]);
    let host = pixsim7(&dir).start();
    let plugin = host.plugin("scaffold-check");
    assert_eq!(plugin["state"], "enabled", "{plugin}");
    let hello = host.request_raw("GET", "/api/v1/scaffold-check/hello?name=Ada", &[], b"");
    assert_eq!(hello.status, 200, "{}", hello.body);
    assert_eq!(hello.json(), json!({"message": "hello, Ada"}));
    let openapi = host.get("/openapi.json").json();
    assert!(
        openapi["paths"]["/api/v1/scaffold-check/hello"]["get"].is_object(),
        "documented in /openapi.json"
    );
}
