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
    let mut components: Map<String, Value> = Map::new();
    for (method, path, route, access) in HOST_ROUTES {
        // As FastAPI does, the page showing this document and the pages' files are left out.
        let summary = match route {
            HostRoute::Health => "Liveness: 200 once the host is serving",
            HostRoute::Ready => "Readiness: 200 once startup finished and the database answers; 503 when starting or shutting down",
            HostRoute::Metrics => "Prometheus metrics (OpenMetrics text)",
            HostRoute::EnablePlugin => "Re-enable a quarantined plugin",
            HostRoute::OpenApi => "This document",
            HostRoute::ListPlugins => "Every plugin library found, with state and reason",
            HostRoute::GetPlugin => "One plugin, by id",
            HostRoute::Dashboard => {
                "The plugin dashboard (an HTML page; its data comes from /api/v1/plugins)"
            }
            HostRoute::Docs | HostRoute::DocsFile | HostRoute::DashboardFile => continue,
        };
        let mut operation = operation(method.as_str(), path, summary, &["host".to_owned()], "host");
        if access != plugin_api::Access::Public {
            operation["security"] = json!([{"bearerAuth": []}]);
        }
        insert(&mut paths, method.as_str(), path, operation);
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
        for (route, (method, path, access)) in descriptor.routes.iter().zip(record.full_routes()) {
            let mut operation =
                operation(method.as_str(), &path, &route.summary, &tags, &manifest.id);
            if access != plugin_api::Access::Public {
                operation["security"] = json!([{"bearerAuth": []}]);
            }
            if let Some(schema) = &route.request_schema {
                operation["requestBody"] = json!({
                    "required": true,
                    "content": {"application/json": {"schema": hoist_definitions(schema, &mut components)}},
                });
            }
            if let Some(schema) = &route.response_schema {
                operation["responses"]["200"]["content"] = json!({"application/json": {"schema": hoist_definitions(schema, &mut components)}});
            }
            insert(&mut paths, method.as_str(), &path, operation);
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
        "components": {
            "schemas": components,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    })
}

/// Moves a schema's `$defs` into `components/schemas` (shared by all routes) and points its
/// references there, so every `$ref` resolves within the OpenAPI document.
fn hoist_definitions(schema: &Value, components: &mut Map<String, Value>) -> Value {
    let mut schema = schema.clone();
    if let Some(Value::Object(definitions)) = schema.as_object_mut().and_then(|o| o.remove("$defs"))
    {
        for (name, mut definition) in definitions {
            rewrite_refs(&mut definition);
            components.insert(name, definition);
        }
    }
    rewrite_refs(&mut schema);
    schema
}

fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match (key.as_str(), child) {
                    ("$ref", Value::String(reference)) => {
                        if let Some(name) = reference.strip_prefix("#/$defs/") {
                            *reference = format!("#/components/schemas/{name}");
                        }
                    }
                    (_, child) => rewrite_refs(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

fn operation(method: &str, pattern: &str, summary: &str, tags: &[String], owner: &str) -> Value {
    let parameters: Vec<Value> = plugin_api::route::parameter_names(pattern)
        .into_iter()
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    let path = pattern.replace("{*", "{");
    let operation_id = format!("{owner}:{} {path}", method.to_ascii_lowercase());
    json!({
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
    })
}

fn insert(paths: &mut Map<String, Value>, method: &str, pattern: &str, operation: Value) {
    let entry = paths
        .entry(pattern.replace("{*", "{"))
        .or_insert_with(|| json!({}));
    entry[method.to_ascii_lowercase()] = operation;
}
