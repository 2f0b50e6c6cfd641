//! The OpenAPI 3 document of everything served: the host's routes and every enabled
//! plugin's, with full paths, path parameters, summaries and the manifest's tags.

use serde_json::{json, Map, Value};

use crate::{
    plugins::{PluginRegistry, PluginState},
    routing::{HostRoute, HOST_ROUTES},
};

/// Builds the document (once, at startup).
pub fn openapi_document(registry: &PluginRegistry) -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for (method, path, route) in HOST_ROUTES {
        let summary = match route {
            HostRoute::Health => "Liveness: 200 once the host is serving",
            HostRoute::OpenApi => "This document",
            HostRoute::ListPlugins => "Every plugin library found, with state and reason",
            HostRoute::GetPlugin => "One plugin, by id",
        };
        add_operation(
            &mut paths,
            method.as_str(),
            path,
            summary,
            &["host".to_owned()],
            "host",
        );
    }
    for record in &registry.records {
        let Some(descriptor) = &record.descriptor else {
            continue;
        };
        if record.state != PluginState::Enabled {
            continue;
        }
        let manifest = &descriptor.manifest;
        let tags = if manifest.tags.is_empty() {
            vec![manifest.id.clone()]
        } else {
            manifest.tags.clone()
        };
        for (route, (method, path)) in descriptor.routes.iter().zip(record.full_routes()) {
            add_operation(
                &mut paths,
                method.as_str(),
                &path,
                &route.summary,
                &tags,
                &manifest.id,
            );
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "PixSim7",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The PixSim7 game backend: every route below /api/v1 except /api/v1/plugins is served by a plugin library.",
        },
        "paths": paths,
    })
}

fn add_operation(
    paths: &mut Map<String, Value>,
    method: &str,
    pattern: &str,
    summary: &str,
    tags: &[String],
    owner: &str,
) {
    let parameters: Vec<Value> = plugin_api::route::parameter_names(pattern)
        .into_iter()
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    let path = pattern.replace("{*", "{");
    let operation_id = format!("{owner}:{} {path}", method.to_ascii_lowercase());
    let operation = json!({
        "summary": summary,
        "tags": tags,
        "operationId": operation_id,
        "parameters": parameters,
        "x-plugin": owner,
        "responses": {
            "200": {"description": "Success"},
            "default": {
                "description": "Error: {\"detail\": ...}",
                "content": {"application/json": {"schema": {
                    "type": "object",
                    "properties": {"detail": {}},
                    "required": ["detail"],
                }}},
            },
        },
    });
    let entry = paths.entry(path).or_insert_with(|| json!({}));
    entry[method.to_ascii_lowercase()] = operation;
}
