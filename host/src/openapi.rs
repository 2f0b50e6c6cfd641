//! The OpenAPI 3 document of everything served: the host's routes and every enabled
//! plugin's, with full paths, path parameters, summaries and the manifest's tags.

use plugin_api::route::{PluginDescriptor, RouteSpec};
use serde_json::{json, Map, Value};

use crate::{
    plugins::{PluginRegistry, PluginState},
    routing::{full_path, HostRoute, HOST_ROUTES},
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
        if record.state == PluginState::Enabled {
            add_plugin(descriptor, &mut paths, &mut components);
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

/// Adds one plugin's routes, with their parameters and schemas (named in its namespace).
fn add_plugin(
    descriptor: &PluginDescriptor,
    paths: &mut Map<String, Value>,
    components: &mut Map<String, Value>,
) {
    let manifest = &descriptor.manifest;
    let tags = if manifest.tags.is_empty() {
        vec![manifest.id.clone()]
    } else {
        manifest.tags.clone()
    };
    for route in &descriptor.routes {
        let (method, path, access) = (
            route.method,
            full_path(&manifest.prefix, &route.path),
            route.access,
        );
        let mut operation = operation(method.as_str(), &path, &route.summary, &tags, &manifest.id);
        // A plugin's success may be any 2xx (201 for a registration), with the body below.
        if let Some(responses) = operation["responses"].as_object_mut() {
            if let Some(success) = responses.remove("200") {
                responses.insert("2XX".to_owned(), success);
            }
        }
        if access != plugin_api::Access::Public {
            operation["security"] = json!([{"bearerAuth": []}]);
        }
        let mut hoist = |schema: &Value| hoist_definitions(schema, &manifest.id, components);
        operation["parameters"] = Value::Array(declared_parameters(route, &mut hoist));
        if let Some(schema) = &route.request_schema {
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": hoist(schema)}},
            });
        }
        if let Some(schema) = &route.response_schema {
            operation["responses"]["2XX"]["content"] =
                json!({"application/json": {"schema": hoist(schema)}});
        }
        insert(paths, method.as_str(), &path, operation);
    }
}

/// The route's path and query parameters: those its path and query schemas declare (typed,
/// with their constraints; query parameters required as the schema says), and any path
/// parameter they do not name as a string.
fn declared_parameters(route: &RouteSpec, hoist: &mut dyn FnMut(&Value) -> Value) -> Vec<Value> {
    let mut parameters = Vec::new();
    let path_schema = route.path_schema.as_ref().map(&mut *hoist);
    let property = |schema: &Option<Value>, name: &str| -> Option<Value> {
        schema.as_ref()?.get("properties")?.get(name).cloned()
    };
    for name in route.parameter_names() {
        let schema = property(&path_schema, name).unwrap_or_else(|| json!({"type": "string"}));
        parameters.push(parameter(name, "path", true, schema));
    }
    if let Some(query_schema) = route.query_schema.as_ref().map(&mut *hoist) {
        let required: Vec<&str> = query_schema
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let properties = query_schema.get("properties").and_then(Value::as_object);
        for (name, schema) in properties.into_iter().flatten() {
            let required = required.contains(&name.as_str());
            parameters.push(parameter(name, "query", required, schema.clone()));
        }
    }
    parameters
}

/// One OpenAPI parameter; the schema's `description` becomes the parameter's.
fn parameter(name: &str, location: &str, required: bool, mut schema: Value) -> Value {
    let description = schema
        .as_object_mut()
        .and_then(|schema| schema.remove("description"));
    let mut parameter =
        json!({"name": name, "in": location, "required": required, "schema": schema});
    if let Some(description) = description {
        parameter["description"] = description;
    }
    parameter
}

/// Moves a schema's `$defs` into `components/schemas` under the owning plugin's namespace
/// (`game-npcs.Item`: two plugins' `Item`s never overwrite each other; the names stay within
/// OpenAPI's `^[a-zA-Z0-9.\-_]+$`) and points its references there, so every `$ref` resolves
/// within the OpenAPI document.
fn hoist_definitions(schema: &Value, owner: &str, components: &mut Map<String, Value>) -> Value {
    let mut schema = schema.clone();
    if let Some(Value::Object(definitions)) = schema.as_object_mut().and_then(|o| o.remove("$defs"))
    {
        for (name, mut definition) in definitions {
            rewrite_refs(&mut definition, owner);
            components.insert(component_name(owner, &name), definition);
        }
    }
    rewrite_refs(&mut schema, owner);
    schema
}

/// `owner.name`, with every character OpenAPI does not allow in a component name as `_`.
fn component_name(owner: &str, name: &str) -> String {
    format!("{owner}.{name}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn rewrite_refs(value: &mut Value, owner: &str) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match (key.as_str(), child) {
                    ("$ref", Value::String(reference)) => {
                        if let Some(name) = reference.strip_prefix("#/$defs/") {
                            let name = component_name(owner, name);
                            *reference = format!("#/components/schemas/{name}");
                        }
                    }
                    (_, child) => rewrite_refs(child, owner),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| rewrite_refs(item, owner)),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A plugin `id` with one route whose body refers to its own `Item`, described by
    /// `field`.
    fn plugin_with_item(id: &str, field: &str) -> PluginDescriptor {
        serde_json::from_value(json!({
            "manifest": {"id": id, "name": id, "version": "1.0.0"},
            "routes": [{
                "method": "POST",
                "path": format!("/{id}/items/{{item_id}}"),
                "path_schema": {"type": "object", "properties": {"item_id": {"type": "integer"}}, "required": ["item_id"]},
                "query_schema": {"type": "object", "properties": {"at": {"type": "number", "minimum": 0}}, "required": ["at"]},
                "request_schema": {
                    "type": "object",
                    "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/Item"}}},
                    "$defs": {"Item": {"type": "object", "properties": {field: {"type": "string"}}}},
                },
            }],
        }))
        .unwrap()
    }

    #[test]
    fn two_plugins_schemas_of_one_name_do_not_collide() {
        let (mut paths, mut components) = (Map::new(), Map::new());
        add_plugin(
            &plugin_with_item("alpha", "colour"),
            &mut paths,
            &mut components,
        );
        add_plugin(
            &plugin_with_item("beta-two", "weight"),
            &mut paths,
            &mut components,
        );

        assert_eq!(
            components["alpha.Item"]["properties"],
            json!({"colour": {"type": "string"}})
        );
        assert_eq!(
            components["beta-two.Item"]["properties"],
            json!({"weight": {"type": "string"}})
        );
        assert!(!components.contains_key("Item"));
        for (id, path) in [
            ("alpha", "/api/v1/alpha/items/{item_id}"),
            ("beta-two", "/api/v1/beta-two/items/{item_id}"),
        ] {
            let operation = &paths[path]["post"];
            let body = &operation["requestBody"]["content"]["application/json"]["schema"];
            assert_eq!(
                body["properties"]["items"]["items"]["$ref"],
                format!("#/components/schemas/{id}.Item")
            );
            assert_eq!(
                operation["parameters"],
                json!([
                    {"name": "item_id", "in": "path", "required": true, "schema": {"type": "integer"}},
                    {"name": "at", "in": "query", "required": true, "schema": {"type": "number", "minimum": 0}},
                ])
            );
        }
    }

    #[test]
    fn component_names_keep_to_openapis_alphabet() {
        assert_eq!(
            component_name("game-npcs", "Vec<Item>"),
            "game-npcs.Vec_Item_"
        );
        assert_eq!(component_name("a_b", "Map_of_string"), "a_b.Map_of_string");
    }
}
