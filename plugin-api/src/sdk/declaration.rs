//! What a plugin declares as constants: its [`PluginManifest`] and its table of [`Route`]s.
//!
//! Both are built by `const fn`s, so the compiler evaluates them: `export_plugin!` writes
//! them into the library's descriptor section (`section.rs`), where the host reads them
//! before it opens the library, and the live descriptor is made from the same constants.

use serde_json::Value;

use super::plugin::Handler;
use crate::{
    manifest::{Dependency, EventDelivery, Manifest, DEFAULT_PREFIX},
    route::{Access, Method, RouteSpec},
};

/// A plugin's manifest, declared as `const MANIFEST` in its [`crate::Plugin`] impl:
///
/// ```
/// # use plugin_api::prelude::*;
/// const MANIFEST: PluginManifest = PluginManifest::new("game-stealth", "Stealth", "1.0.0")
///     .description("Pickpocketing")
///     .depends_on(&["game-sessions ^1"])
///     .permissions(&["session:write"]);
/// ```
///
/// Every field is a constant, so the host can read the manifest from the library file
/// without running any of the plugin's code. The fields mean what the host-side
/// [`Manifest`]'s fields of the same names mean.
#[derive(Debug, Clone, Copy)]
pub struct PluginManifest {
    pub(crate) id: &'static str,
    pub(crate) name: &'static str,
    pub(crate) version: &'static str,
    pub(crate) description: &'static str,
    pub(crate) prefix: &'static str,
    pub(crate) tags: &'static [&'static str],
    pub(crate) dependencies: &'static [&'static str],
    pub(crate) enabled: bool,
    pub(crate) permissions: &'static [&'static str],
    pub(crate) optional_permissions: &'static [&'static str],
    pub(crate) subscriptions: &'static [&'static str],
    pub(crate) event_delivery: EventDelivery,
    pub(crate) emits: &'static [&'static str],
    pub(crate) required: bool,
}

impl PluginManifest {
    /// Starts a manifest with the three fields every plugin sets; the version is usually
    /// `env!("CARGO_PKG_VERSION")`.
    pub const fn new(id: &'static str, name: &'static str, version: &'static str) -> Self {
        PluginManifest {
            id,
            name,
            version,
            description: "",
            prefix: DEFAULT_PREFIX,
            tags: &[],
            dependencies: &[],
            enabled: true,
            permissions: &[],
            optional_permissions: &[],
            subscriptions: &[],
            event_delivery: EventDelivery::Cluster,
            emits: &[],
            required: false,
        }
    }

    /// Sets the description: one sentence on what the plugin does.
    pub const fn description(mut self, description: &'static str) -> Self {
        self.description = description;
        self
    }

    /// Sets the route prefix (default `/api/v1`).
    pub const fn prefix(mut self, prefix: &'static str) -> Self {
        self.prefix = prefix;
        self
    }

    /// Sets the OpenAPI tags of the plugin's routes.
    pub const fn tags(mut self, tags: &'static [&'static str]) -> Self {
        self.tags = tags;
        self
    }

    /// Sets the plugins that must load before this one: `"game-sessions"`, or with a semver
    /// requirement, `"game-sessions ^1"`.
    pub const fn depends_on(mut self, dependencies: &'static [&'static str]) -> Self {
        self.dependencies = dependencies;
        self
    }

    /// Sets the permissions the plugin needs (the operator may deny them; it then fails).
    pub const fn permissions(mut self, permissions: &'static [&'static str]) -> Self {
        self.permissions = permissions;
        self
    }

    /// Sets the permissions the plugin can do without: denied, it loads anyway.
    pub const fn optional_permissions(mut self, permissions: &'static [&'static str]) -> Self {
        self.optional_permissions = permissions;
        self
    }

    /// Sets the event topics or `namespace:*` patterns the plugin receives in `on_event`.
    pub const fn subscribes(mut self, topics: &'static [&'static str]) -> Self {
        self.subscriptions = topics;
        self
    }

    /// Asks for every instance to receive every event (for in-memory reactions), instead of
    /// the default once-per-cluster delivery.
    pub const fn deliver_events_per_instance(mut self) -> Self {
        self.event_delivery = EventDelivery::Instance;
        self
    }

    /// Sets the event topics or `namespace:*` patterns the plugin may emit.
    pub const fn emits(mut self, topics: &'static [&'static str]) -> Self {
        self.emits = topics;
        self
    }

    /// Marks the plugin as required: its failure stops the host at startup.
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Ships the plugin disabled; the host lists it but never opens it.
    pub const fn disabled(mut self) -> Self {
        self.enabled = false;
        self
    }

    /// The plugin id.
    pub const fn id(&self) -> &'static str {
        self.id
    }

    /// The manifest as the host reads it.
    pub fn to_manifest(&self) -> Manifest {
        let strings = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
        Manifest {
            id: self.id.to_owned(),
            name: self.name.to_owned(),
            version: self.version.to_owned(),
            description: self.description.to_owned(),
            prefix: self.prefix.to_owned(),
            tags: strings(self.tags),
            dependencies: self
                .dependencies
                .iter()
                .map(|spec| {
                    let (id, requirement) = split_dependency(spec);
                    Dependency {
                        id: id.to_owned(),
                        requirement: requirement.map(str::to_owned),
                    }
                })
                .collect(),
            enabled: self.enabled,
            permissions: strings(self.permissions),
            optional_permissions: strings(self.optional_permissions),
            subscriptions: strings(self.subscriptions),
            event_delivery: self.event_delivery,
            emits: strings(self.emits),
            required: self.required,
        }
    }
}

/// Splits a dependency spec into its id and its requirement: `"game-sessions ^1"` into
/// `("game-sessions", Some("^1"))`, at the first ASCII white space, both sides trimmed.
pub const fn split_dependency(spec: &str) -> (&str, Option<&str>) {
    let spec = spec.trim_ascii();
    let bytes = spec.as_bytes();
    let mut at = 0;
    while at < bytes.len() && !bytes[at].is_ascii_whitespace() {
        at += 1;
    }
    let (id, rest) = bytes.split_at(at);
    let rest = rest.trim_ascii();
    let id = match core::str::from_utf8(id) {
        Ok(id) => id,
        Err(_) => panic!("split at an ASCII byte keeps UTF-8 whole"),
    };
    if rest.is_empty() {
        return (id, None);
    }
    match core::str::from_utf8(rest) {
        Ok(requirement) => (id, Some(requirement)),
        Err(_) => panic!("split at an ASCII byte keeps UTF-8 whole"),
    }
}

/// One route of a plugin's table, declared in `const ROUTES`:
///
/// ```
/// # use plugin_api::prelude::*;
/// # #[derive(Default)]
/// # struct Dice;
/// # #[derive(Deserialize, JsonSchema)]
/// # struct RollRequest { dice: String }
/// # async fn roll(_: &Dice, _: Request<'_>) -> Result<Json<u8>, ApiError> { Ok(Json(1)) }
/// # impl Plugin for Dice {
/// #     const MANIFEST: PluginManifest = PluginManifest::new("dice-game", "Dice", "1.0.0");
/// const ROUTES: &'static [Route<Self>] = &[
///     Route::post("/dice-game/roll", "Roll dice", roll).public().request::<RollRequest>(),
/// ];
/// # }
/// ```
///
/// Paths are below the manifest's prefix and may hold `{name}` parameters (a final
/// `{*rest}` catches the rest). A route needs a signed-in user unless marked `public()`.
///
/// `.path::<T>()` and `.query::<T>()` declare the path and query parameters as the fields of
/// a struct (`#[derive(Deserialize, JsonSchema)] struct NpcPath { npc_id: i64 }`): they are
/// documented in `/openapi.json` from `T`'s JSON Schema, and the SDK checks every request
/// against that schema before the handler runs (422 in pydantic's words, as FastAPI answers),
/// so the documentation and the behaviour cannot disagree.
pub struct Route<P: 'static> {
    pub(crate) method: Method,
    pub(crate) path: &'static str,
    pub(crate) summary: &'static str,
    pub(crate) access: Access,
    pub(crate) path_schema: Option<fn() -> Value>,
    pub(crate) query_schema: Option<fn() -> Value>,
    pub(crate) request_schema: Option<fn() -> Value>,
    pub(crate) response_schema: Option<fn() -> Value>,
    pub(crate) handler: &'static dyn Handler<P>,
}

impl<P: Sync + 'static> Route<P> {
    /// A route with any method. The handler is an `async fn(&P, Request<'_>)` (a function
    /// item, or a closure that captures nothing: the table is a constant).
    pub const fn new<H: Handler<P>>(
        method: Method,
        path: &'static str,
        summary: &'static str,
        handler: H,
    ) -> Self {
        assert!(
            size_of::<H>() == 0,
            "a route handler must be a function (or a closure that captures nothing)"
        );
        std::mem::forget(handler);
        // SAFETY: `H` has size 0, so a well-aligned dangling pointer is a valid `&H`; a value
        // of `H` existed (the argument), so the type is inhabited, and a zero-sized value
        // owns nothing, so forgetting the argument and conjuring it again loses nothing.
        let handler: &'static H = unsafe { std::ptr::NonNull::<H>::dangling().as_ref() };
        Route {
            method,
            path,
            summary,
            access: Access::User,
            path_schema: None,
            query_schema: None,
            request_schema: None,
            response_schema: None,
            handler,
        }
    }

    /// A `GET` route.
    pub const fn get<H: Handler<P>>(path: &'static str, summary: &'static str, h: H) -> Self {
        Route::new(Method::Get, path, summary, h)
    }

    /// A `POST` route.
    pub const fn post<H: Handler<P>>(path: &'static str, summary: &'static str, h: H) -> Self {
        Route::new(Method::Post, path, summary, h)
    }

    /// A `PUT` route.
    pub const fn put<H: Handler<P>>(path: &'static str, summary: &'static str, h: H) -> Self {
        Route::new(Method::Put, path, summary, h)
    }

    /// A `PATCH` route.
    pub const fn patch<H: Handler<P>>(path: &'static str, summary: &'static str, h: H) -> Self {
        Route::new(Method::Patch, path, summary, h)
    }

    /// A `DELETE` route.
    pub const fn delete<H: Handler<P>>(path: &'static str, summary: &'static str, h: H) -> Self {
        Route::new(Method::Delete, path, summary, h)
    }

    /// Lets anyone call the route, signed in or not.
    pub const fn public(mut self) -> Self {
        self.access = Access::Public;
        self
    }

    /// Restricts the route to users with the `admin` role.
    pub const fn admin(mut self) -> Self {
        self.access = Access::Admin;
        self
    }

    /// Declares the path parameters as the fields of `T` (one per `{name}` of the path, e.g.
    /// `npc_id: i64`): documented with their types and constraints, and checked before the
    /// handler runs, so `request.param_as::<i64>("npc_id")` cannot fail there.
    pub const fn path<T: schemars::JsonSchema>(mut self) -> Self {
        self.path_schema = Some(schema_of::<T>);
        self
    }

    /// Declares the query parameters as the fields of `T` (required unless `Option` or
    /// `#[serde(default)]`; constraints from schemars attributes such as
    /// `#[schemars(range(min = 0))]`): documented, and checked before the handler runs.
    /// The handler reads them with [`crate::Request::query_params`].
    pub const fn query<T: schemars::JsonSchema>(mut self) -> Self {
        self.query_schema = Some(schema_of::<T>);
        self
    }

    /// Documents the request body as `T`'s JSON Schema.
    pub const fn request<T: schemars::JsonSchema>(mut self) -> Self {
        self.request_schema = Some(schema_of::<T>);
        self
    }

    /// Documents the success response body as `T`'s JSON Schema.
    pub const fn response<T: schemars::JsonSchema>(mut self) -> Self {
        self.response_schema = Some(schema_of::<T>);
        self
    }
}

impl<P> Route<P> {
    /// The route as the host reads it, with its schemas.
    pub fn to_spec(&self) -> RouteSpec {
        RouteSpec {
            method: self.method,
            path: self.path.to_owned(),
            summary: self.summary.to_owned(),
            access: self.access,
            path_schema: self.path_schema.map(|schema| schema()),
            query_schema: self.query_schema.map(|schema| schema()),
            request_schema: self.request_schema.map(|schema| schema()),
            response_schema: self.response_schema.map(|schema| schema()),
        }
    }
}

fn schema_of<T: schemars::JsonSchema>() -> Value {
    let mut schema = schemars::schema_for!(T).to_value();
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_specs_split_at_the_first_space() {
        assert_eq!(split_dependency("game-sessions"), ("game-sessions", None));
        assert_eq!(
            split_dependency("  game-sessions   >=1.2, <2 "),
            ("game-sessions", Some(">=1.2, <2"))
        );
        assert_eq!(split_dependency(""), ("", None));
    }
}
