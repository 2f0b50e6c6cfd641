//! The route table: every plugin route and host route in one radix tree (matchit), built
//! once at startup. actix does HTTP; this does matching, so the per-request cost stays flat
//! however many plugins are loaded (actix's own router scans its routes linearly).
//!
//! Adding a plugin's routes is all-or-nothing: a conflict with any existing route fails the
//! plugin and leaves the table as it was. Never silent shadowing.

use std::collections::HashMap;

use plugin_api::{Access, Method};

/// What serves a matched route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A route the host itself serves.
    Host(HostRoute),
    /// Route `route` of the plugin at index `plugin` of the serving list.
    Plugin {
        /// Index into the served plugins.
        plugin: usize,
        /// Index into that plugin's route table (passed to its `handle`).
        route: u32,
    },
}

/// The host's own routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostRoute {
    /// `GET /healthz`
    Health,
    /// `GET /readyz`
    Ready,
    /// `GET /metrics`
    Metrics,
    /// `GET /openapi.json`
    OpenApi,
    /// `GET /api/v1/plugins`
    ListPlugins,
    /// `GET /api/v1/plugins/{id}`
    GetPlugin,
    /// `POST /api/v1/plugins/{id}/enable`
    EnablePlugin,
    /// `GET /docs`: Swagger UI (`pages`)
    Docs,
    /// `GET /docs/{*file}`: its files
    DocsFile,
    /// `GET /admin`: the plugin dashboard (`pages`)
    Dashboard,
    /// `GET /admin/{*file}`: its files
    DashboardFile,
}

/// The host's routes, registered before any plugin's so plugins cannot take them over:
/// health, readiness, metrics (checked by its handler when `[http] metrics = "admin"`), the
/// API document and the pages are public (the data the dashboard shows comes from the admin
/// API), the plugin admin API needs the admin role.
pub const HOST_ROUTES: [(Method, &str, HostRoute, Access); 11] = [
    (Method::Get, "/healthz", HostRoute::Health, Access::Public),
    (Method::Get, "/readyz", HostRoute::Ready, Access::Public),
    (Method::Get, "/metrics", HostRoute::Metrics, Access::Public),
    (
        Method::Get,
        "/openapi.json",
        HostRoute::OpenApi,
        Access::Public,
    ),
    (
        Method::Get,
        "/api/v1/plugins",
        HostRoute::ListPlugins,
        Access::Admin,
    ),
    (
        Method::Get,
        "/api/v1/plugins/{id}",
        HostRoute::GetPlugin,
        Access::Admin,
    ),
    (
        Method::Post,
        "/api/v1/plugins/{id}/enable",
        HostRoute::EnablePlugin,
        Access::Admin,
    ),
    (Method::Get, "/docs", HostRoute::Docs, Access::Public),
    (
        Method::Get,
        "/docs/{*file}",
        HostRoute::DocsFile,
        Access::Public,
    ),
    (Method::Get, "/admin", HostRoute::Dashboard, Access::Public),
    (
        Method::Get,
        "/admin/{*file}",
        HostRoute::DashboardFile,
        Access::Public,
    ),
];

/// One method on one path.
#[derive(Debug, Clone)]
struct MethodRoute {
    method: Method,
    target: Target,
    access: Access,
    owner: String,
}

/// The methods registered on one path pattern.
#[derive(Debug, Clone)]
struct PathRoutes {
    pattern: String,
    methods: Vec<MethodRoute>,
    /// The `Allow` header for a 405 on this path.
    allow: String,
}

/// All routes, matched by a radix tree.
pub struct RouteTable {
    router: matchit::Router<usize>,
    paths: Vec<PathRoutes>,
    by_pattern: HashMap<String, usize>,
}

/// The result of matching a request.
pub enum Lookup<'t, 'p> {
    /// A route matched; `params` are the path parameters, raw (percent-encoded).
    Found {
        /// What serves it.
        target: Target,
        /// Who may call it.
        access: Access,
        /// Parameter names and raw values, in pattern order.
        params: matchit::Params<'t, 'p>,
    },
    /// The path exists but not with this method.
    MethodNotAllowed {
        /// The methods it has, for the `Allow` header.
        allow: &'t str,
    },
    /// No route has this path.
    NotFound,
}

impl RouteTable {
    /// A table holding only the host's routes.
    pub fn with_host_routes() -> RouteTable {
        let mut table = RouteTable {
            router: matchit::Router::new(),
            paths: Vec::new(),
            by_pattern: HashMap::new(),
        };
        for (method, path, route, access) in HOST_ROUTES {
            let entry = MethodRoute {
                method,
                target: Target::Host(route),
                access,
                owner: "the host".into(),
            };
            table
                .insert(path, entry)
                .expect("host routes do not conflict");
        }
        table
    }

    /// Adds every route of one plugin (method, full path, access), or none: on a conflict
    /// the table is unchanged and the error names both routes and the other owner.
    pub fn add_plugin_routes(
        &mut self,
        owner: &str,
        plugin: usize,
        routes: &[(Method, String, Access)],
    ) -> Result<(), String> {
        // Inserted in place and undone on a conflict: cloning the table per plugin made
        // start-up quadratic in the number of routes.
        let mut done = Vec::with_capacity(routes.len());
        for (index, (method, path, access)) in routes.iter().enumerate() {
            let entry = u32::try_from(index)
                .map_err(|_| "too many routes".to_owned())
                .map(|route| MethodRoute {
                    method: *method,
                    target: Target::Plugin { plugin, route },
                    access: *access,
                    owner: format!("plugin {owner}"),
                });
            match entry.and_then(|entry| self.insert(path, entry)) {
                Ok(insertion) => done.push(insertion),
                Err(reason) => {
                    for insertion in done.into_iter().rev() {
                        self.undo(insertion);
                    }
                    // matchit may have reshaped its tree before refusing the insertion, and
                    // removing routes does not reshape it back: rebuild it from what is left.
                    self.rebuild_router();
                    return Err(reason);
                }
            }
        }
        Ok(())
    }

    /// Takes back one insertion, the latest not yet taken back (the radix tree is rebuilt
    /// afterwards, by the caller).
    fn undo(&mut self, insertion: Insertion) {
        let path_routes = &mut self.paths[insertion.path];
        path_routes.methods.retain(|m| m.method != insertion.method);
        refresh_allow(path_routes);
        if insertion.new_path {
            let pattern = path_routes.pattern.clone();
            self.by_pattern.remove(&pattern);
            self.paths.pop();
        }
    }

    /// The radix tree afresh from `paths`, which were all inserted without conflict once.
    fn rebuild_router(&mut self) {
        let mut router = matchit::Router::new();
        for (index, path_routes) in self.paths.iter().enumerate() {
            router
                .insert(path_routes.pattern.as_str(), index)
                .expect("patterns that were accepted once are accepted again");
        }
        self.router = router;
    }

    fn insert(&mut self, path: &str, entry: MethodRoute) -> Result<Insertion, String> {
        let method = entry.method;
        let new_path = !self.by_pattern.contains_key(path);
        let index = match self.by_pattern.get(path) {
            Some(&index) => index,
            None => {
                self.router
                    .insert(path, self.paths.len())
                    .map_err(|error| match error {
                        matchit::InsertError::Conflict { with } => {
                            let other = self.by_pattern.get(&with).map_or(
                                "another route".to_owned(),
                                |&i| {
                                    let owners: Vec<&str> = self.paths[i]
                                        .methods
                                        .iter()
                                        .map(|m| m.owner.as_str())
                                        .collect();
                                    owners.join(", ")
                                },
                            );
                            format!("route conflict: {method} {path} overlaps {with} of {other}")
                        }
                        other => format!("route {method} {path} is not a valid pattern: {other}"),
                    })?;
                self.paths.push(PathRoutes {
                    pattern: path.to_owned(),
                    methods: Vec::new(),
                    allow: String::new(),
                });
                self.by_pattern
                    .insert(path.to_owned(), self.paths.len() - 1);
                self.paths.len() - 1
            }
        };
        let path_routes = &mut self.paths[index];
        if let Some(other) = path_routes.methods.iter().find(|m| m.method == method) {
            return Err(format!(
                "route conflict: {method} {} is already served by {}",
                path_routes.pattern, other.owner
            ));
        }
        path_routes.methods.push(entry);
        path_routes.methods.sort_by_key(|m| m.method);
        refresh_allow(path_routes);
        Ok(Insertion {
            path: index,
            method,
            new_path,
        })
    }

    /// Matches a request. A trailing `/` is ignored (`/game/worlds/` is `/game/worlds`).
    /// `method` is `None` for methods no route can have (the answer is then 405 or 404).
    pub fn lookup<'t, 'p>(&'t self, method: Option<Method>, path: &'p str) -> Lookup<'t, 'p> {
        let path = match path.strip_suffix('/') {
            Some(trimmed) if !trimmed.is_empty() => trimmed,
            _ => path,
        };
        let Ok(matched) = self.router.at(path) else {
            return Lookup::NotFound;
        };
        let path_routes = &self.paths[*matched.value];
        let find = |wanted: Method| path_routes.methods.iter().find(|m| m.method == wanted);
        // HEAD is served by the GET route unless one is declared (actix sends no body).
        let route = match method {
            Some(Method::Head) => find(Method::Head).or_else(|| find(Method::Get)),
            Some(method) => find(method),
            None => None,
        };
        match route {
            Some(route) => Lookup::Found {
                target: route.target,
                access: route.access,
                params: matched.params,
            },
            None => Lookup::MethodNotAllowed {
                allow: &path_routes.allow,
            },
        }
    }
}

/// The full path of a route: the manifest prefix joined with the route path.
pub fn full_path(prefix: &str, path: &str) -> String {
    match (prefix.trim_end_matches('/'), path) {
        ("", path) => path.to_owned(),
        (prefix, "/") => prefix.to_owned(),
        (prefix, path) => format!("{prefix}{path}"),
    }
}

/// What one [`RouteTable::insert`] did, so it can be taken back.
struct Insertion {
    /// Index into `paths`.
    path: usize,
    method: Method,
    /// Whether the pattern was new (and is the last of `paths`).
    new_path: bool,
}

/// Recomputes a path's `Allow` header value from its methods (HEAD comes with GET).
fn refresh_allow(path_routes: &mut PathRoutes) {
    let has = |wanted: Method| path_routes.methods.iter().any(|m| m.method == wanted);
    let head_from_get = has(Method::Get) && !has(Method::Head);
    let mut allowed: Vec<&str> = path_routes
        .methods
        .iter()
        .map(|m| m.method.as_str())
        .collect();
    if head_from_get {
        allowed.push(Method::Head.as_str());
    }
    path_routes.allow = allowed.join(", ");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(list: &[(Method, &str)]) -> Vec<(Method, String, Access)> {
        list.iter()
            .map(|(m, p)| (*m, p.to_string(), Access::User))
            .collect()
    }

    #[test]
    fn matches_params_methods_and_trailing_slashes() {
        let mut table = RouteTable::with_host_routes();
        table
            .add_plugin_routes(
                "sessions",
                0,
                &routes(&[
                    (Method::Post, "/api/v1/game/sessions"),
                    (Method::Get, "/api/v1/game/sessions/{id}"),
                    (Method::Patch, "/api/v1/game/sessions/{id}"),
                ]),
            )
            .unwrap();
        match table.lookup(Some(Method::Patch), "/api/v1/game/sessions/42/") {
            Lookup::Found { target, params, .. } => {
                assert_eq!(
                    target,
                    Target::Plugin {
                        plugin: 0,
                        route: 2
                    }
                );
                assert_eq!(params.get("id"), Some("42"));
            }
            _ => panic!("expected a match"),
        }
        assert!(matches!(
            table.lookup(Some(Method::Delete), "/api/v1/game/sessions/42"),
            Lookup::MethodNotAllowed {
                allow: "GET, PATCH, HEAD"
            }
        ));
        assert!(matches!(
            table.lookup(Some(Method::Head), "/api/v1/game/sessions/42"),
            Lookup::Found {
                target: Target::Plugin {
                    plugin: 0,
                    route: 1
                },
                ..
            }
        ));
        assert!(matches!(
            table.lookup(Some(Method::Get), "/nope"),
            Lookup::NotFound
        ));
        assert!(matches!(
            table.lookup(Some(Method::Get), "/api/v1/plugins/dice-game"),
            Lookup::Found {
                target: Target::Host(HostRoute::GetPlugin),
                ..
            }
        ));
    }

    #[test]
    fn conflicts_fail_the_later_plugin_whole() {
        let mut table = RouteTable::with_host_routes();
        table
            .add_plugin_routes("first", 0, &routes(&[(Method::Post, "/api/v1/x/{id}")]))
            .unwrap();
        let error = table
            .add_plugin_routes(
                "second",
                1,
                &routes(&[(Method::Get, "/api/v1/y"), (Method::Post, "/api/v1/x/{id}")]),
            )
            .unwrap_err();
        assert_eq!(
            error,
            "route conflict: POST /api/v1/x/{id} is already served by plugin first"
        );
        assert!(
            matches!(
                table.lookup(Some(Method::Get), "/api/v1/y"),
                Lookup::NotFound
            ),
            "nothing of the failed plugin stays"
        );
        let error = table
            .add_plugin_routes("third", 2, &routes(&[(Method::Get, "/api/v1/x/{key}")]))
            .unwrap_err();
        assert!(
            error.contains("overlaps /api/v1/x/{id} of plugin first"),
            "{error}"
        );
        let error = table
            .add_plugin_routes("fourth", 3, &routes(&[(Method::Get, "/healthz")]))
            .unwrap_err();
        assert!(error.contains("already served by the host"), "{error}");
    }

    #[test]
    fn full_paths() {
        assert_eq!(
            full_path("/api/v1", "/dice-game/roll"),
            "/api/v1/dice-game/roll"
        );
        assert_eq!(full_path("/api/v1", "/"), "/api/v1");
        assert_eq!(full_path("/", "/x"), "/x");
    }
}
