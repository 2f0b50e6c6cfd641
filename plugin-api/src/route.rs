//! The route table a plugin declares: method, path pattern with named parameters, summary;
//! the descriptor (manifest + routes) that crosses to the host as JSON, and the section copy
//! of it the host reads from the library file.

use serde::{Deserialize, Serialize};

pub use crate::abi::FfiMethod as Method;
use crate::manifest::Manifest;

/// A method in the descriptor's JSON: its upper-case name (any case is read).
mod method_name {
    use super::Method;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        method: &Method,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(method.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Method, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Anyone, signed in or not.
    Public,
    /// A signed-in user (a valid bearer token): the default.
    #[default]
    User,
    /// A signed-in user with the `admin` role.
    Admin,
}

/// One entry of a plugin's route table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    /// The method this route answers.
    #[serde(with = "method_name")]
    pub method: Method,
    /// Path below the manifest prefix, e.g. `/game/sessions/{id}`.
    pub path: String,
    /// One line for the API docs.
    #[serde(default)]
    pub summary: String,
    /// Who may call the route; the host checks it before any plugin code runs.
    #[serde(default)]
    pub access: Access,
    /// JSON Schema of an object whose properties are the path parameters (declared with
    /// `Route::path`): documented, and checked by the SDK before the handler runs. Path
    /// parameters it does not name are strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_schema: Option<serde_json::Value>,
    /// JSON Schema of an object whose properties are the query parameters (declared with
    /// `Route::query`), with `required` naming the required ones; checked like `path_schema`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_schema: Option<serde_json::Value>,
    /// JSON Schema of the request body, for the API docs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_schema: Option<serde_json::Value>,
    /// JSON Schema of the success response body, for the API docs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_schema: Option<serde_json::Value>,
}

impl RouteSpec {
    /// The names of the path's `{parameters}`, in order.
    pub fn parameter_names(&self) -> Vec<&str> {
        parameter_names(&self.path)
    }
}

/// The names of a pattern's `{parameters}` (and `{*rest}` catch-alls), in order.
pub fn parameter_names(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| name.trim_start_matches('*'))
        .collect()
}

/// Checks a route path pattern: starts with `/`, plain segments or whole-segment
/// `{name}` parameters (a final `{*name}` catches the rest), no duplicate names.
pub fn validate_route_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("route path {path:?} must start with '/'"));
    }
    if path.len() > 1 && path.ends_with('/') {
        return Err(format!("route path {path:?} must not end with '/'"));
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    let mut names = Vec::new();
    for (index, segment) in segments.iter().enumerate() {
        if path == "/" {
            break;
        }
        if segment.is_empty() {
            return Err(format!("route path {path:?} contains an empty segment"));
        }
        if let Some(inner) = segment.strip_prefix('{') {
            let Some(name) = inner.strip_suffix('}') else {
                return Err(format!(
                    "route path {path:?}: parameter {segment:?} must fill its whole segment, like {{id}}"
                ));
            };
            let (catch_all, name) = match name.strip_prefix('*') {
                Some(rest) => (true, rest),
                None => (false, name),
            };
            if catch_all && index + 1 != segments.len() {
                return Err(format!(
                    "route path {path:?}: catch-all {segment:?} must be the last segment"
                ));
            }
            let is_identifier = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !is_identifier {
                return Err(format!(
                    "route path {path:?}: parameter name {name:?} must be an identifier"
                ));
            }
            if names.contains(&name) {
                return Err(format!(
                    "route path {path:?}: parameter {name:?} appears twice"
                ));
            }
            names.push(name);
        } else if segment.contains(['{', '}', '*', '?', '#', ' ']) {
            return Err(format!(
                "route path {path:?}: segment {segment:?} may not contain '{{', '}}', '*', '?', '#' or spaces"
            ));
        }
    }
    Ok(())
}

/// What a plugin library says about itself: its manifest and route table.
///
/// Produced by the SDK from typed values and read by the host with the same types, so both
/// sides agree; JSON keeps the FFI surface small and lets fields be appended compatibly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginDescriptor {
    /// The manifest.
    pub manifest: Manifest,
    /// The routes, indexed by position: the host calls `handle(index, ...)`.
    pub routes: Vec<RouteSpec>,
    /// Migrations for the plugin's own tables, applied by the host before `on_load`.
    #[serde(default)]
    pub migrations: Vec<Migration>,
}

/// The version of the descriptor section's JSON layout ([`SectionDescriptor`]).
pub const SECTION_FORMAT: u8 = 1;

/// What a library's descriptor section holds: written at compile time by `export_plugin!`,
/// read by the host from the file before it opens the library.
///
/// The routes carry no schemas (those come from the live descriptor once the library is
/// open); everything else the host decides before opening a library is here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionDescriptor {
    /// The section's layout version: [`SECTION_FORMAT`].
    pub format: u8,
    /// The plugin ABI version the library was built against.
    pub abi_version: String,
    /// The manifest.
    pub manifest: Manifest,
    /// The route table, in the order `handle` indexes it.
    pub routes: Vec<RouteSpec>,
}

impl SectionDescriptor {
    /// Whether the live descriptor (what the opened library's `describe` returned) says the
    /// same as this section: the same manifest, and the same routes (schemas aside).
    pub fn describes_the_same_plugin_as(&self, live: &PluginDescriptor) -> bool {
        self.manifest == live.manifest
            && self.routes.len() == live.routes.len()
            && self.routes.iter().zip(&live.routes).all(|(section, live)| {
                section.method == live.method
                    && section.path == live.path
                    && section.summary == live.summary
                    && section.access == live.access
            })
    }

    /// A descriptor with this section's manifest and routes, for the decisions made before
    /// the library is opened (no schemas, no migrations yet).
    pub fn to_descriptor(&self) -> PluginDescriptor {
        PluginDescriptor {
            manifest: self.manifest.clone(),
            routes: self.routes.clone(),
            migrations: Vec::new(),
        }
    }
}

/// One schema migration of a plugin's own tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    /// Increasing number; the host applies each version once, in order, and records it.
    pub version: i64,
    /// What it does.
    pub description: String,
    /// The SQL (portable between SQLite and PostgreSQL; see `migrations/README.md`).
    pub sql: String,
}

impl PluginDescriptor {
    /// Validates the manifest and every route, returning all problems at once.
    pub fn validate(&self) -> Result<(), crate::ManifestErrors> {
        let mut problems = match self.manifest.validate() {
            Ok(()) => Vec::new(),
            Err(errors) => errors.0,
        };
        let mut versions = std::collections::BTreeSet::new();
        for migration in &self.migrations {
            if migration.version <= 0 || !versions.insert(migration.version) {
                problems.push(format!(
                    "migration version {} must be positive and unique",
                    migration.version
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for route in &self.routes {
            if let Err(problem) = validate_route_path(&route.path) {
                problems.push(problem);
            } else if let Some(problem) = undeclared_path_parameters(route) {
                problems.push(problem);
            } else if !seen.insert((route.method, route.path.as_str())) {
                problems.push(format!(
                    "route {} {} is declared twice",
                    route.method, route.path
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(crate::ManifestErrors(problems))
        }
    }
}

/// A route whose path schema (`Route::path`) does not name exactly its path's parameters:
/// the problem, so documentation and pattern cannot drift apart.
fn undeclared_path_parameters(route: &RouteSpec) -> Option<String> {
    let schema = route.path_schema.as_ref()?;
    let mut declared: Vec<&str> = schema
        .get("properties")
        .and_then(serde_json::Value::as_object)
        .map(|properties| properties.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let mut in_path = route.parameter_names();
    declared.sort_unstable();
    in_path.sort_unstable();
    (declared != in_path).then(|| {
        format!(
            "route {} {}: its path parameters {in_path:?} and the fields of its path type {declared:?} differ",
            route.method, route.path
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(path: &str, expected: Result<Vec<&str>, &str>) {
        match (validate_route_path(path), expected) {
            (Ok(()), Ok(names)) => assert_eq!(parameter_names(path), names),
            (Err(error), Err(fragment)) => {
                assert!(error.contains(fragment), "{error:?} lacks {fragment:?}")
            }
            (got, want) => panic!("{path}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn route_paths() {
        check("/", Ok(vec![]));
        check("/game/sessions/{id}", Ok(vec!["id"]));
        check("/files/{*rest}", Ok(vec!["rest"]));
        check("/a/{x}/b/{y}", Ok(vec!["x", "y"]));
        check("game", Err("must start with '/'"));
        check("/game/", Err("must not end with '/'"));
        check("/a//b", Err("empty segment"));
        check("/a/x{id}", Err("may not contain"));
        check("/a/{id", Err("whole segment"));
        check("/a/{1d}", Err("identifier"));
        check("/a/{id}/{id}", Err("appears twice"));
        check("/a/{*rest}/b", Err("last segment"));
    }

    #[test]
    fn methods_round_trip_through_json() {
        let spec: RouteSpec =
            serde_json::from_str(r#"{"method":"patch","path":"/x","summary":""}"#).unwrap();
        assert_eq!(spec.request_schema, None);
        assert_eq!(spec.method, Method::Patch);
        assert_eq!(serde_json::to_value(&spec).unwrap()["method"], "PATCH");
        assert!(
            serde_json::from_str::<RouteSpec>(r#"{"method":"BREW","path":"/x","summary":""}"#)
                .is_err()
        );
    }
}
