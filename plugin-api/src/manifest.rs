//! The plugin manifest: who a plugin is, what it needs, and how the host should treat it,
//! with the validation the host applies before it trusts any of it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The default prefix every route path is mounted under.
pub const DEFAULT_PREFIX: &str = "/api/v1";

/// The longest plugin id accepted.
pub const MAX_ID_LEN: usize = 64;

/// A plugin's manifest, declared once in the plugin's `Plugin::manifest`.
///
/// Built with [`Manifest::new`] and the chained setters; crosses to the host as JSON inside
/// the [`crate::PluginDescriptor`]. Fields missing from the JSON take their defaults, so a
/// manifest written against an older plugin-api still reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Unique id: lower-case ASCII letters, digits and `-`, starting with a letter
    /// (e.g. `game-stealth`). Other plugins name it in their dependencies.
    pub id: String,
    /// Human-readable name, shown in logs and the admin API.
    pub name: String,
    /// Semantic version (`1.2.0`); dependents' requirements are checked against it.
    pub version: String,
    /// One sentence on what the plugin does.
    #[serde(default)]
    pub description: String,
    /// Prefix of every route path; starts with `/`, no trailing `/`. Default `/api/v1`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// OpenAPI tags for the plugin's routes.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Plugins that must be loaded before this one.
    #[serde(default)]
    pub dependencies: Vec<Dependency>,
    /// `false` ships the plugin switched off; the operator's config can also disable it.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Host services the plugin needs, e.g. `session:write`. If the operator denies one, the
    /// plugin does not load (unless it is also in `optional_permissions`).
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Permissions the plugin can do without: if the operator denies one, the plugin loads
    /// anyway and the calls that need it fail.
    #[serde(default)]
    pub optional_permissions: Vec<String>,
    /// Event topics (or `namespace:*` patterns) the plugin receives in `on_event`; needs
    /// `event:subscribe`.
    #[serde(default)]
    pub subscriptions: Vec<String>,
    /// How the plugin's subscribed events are delivered when several instances share one
    /// database: once per cluster (the default) or to every instance.
    #[serde(default)]
    pub event_delivery: EventDelivery,
    /// Event topics (or `namespace:*` patterns) the plugin may emit; needs `event:emit`.
    /// Emitting anything else is refused, so no plugin can speak under another's topics.
    #[serde(default)]
    pub emits: Vec<String>,
    /// When `true`, a failure of this plugin stops the host at startup.
    #[serde(default)]
    pub required: bool,
}

/// How a subscriber's events are delivered (see [`Manifest::event_delivery`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventDelivery {
    /// Each event is handled once, by one instance, in the same transaction as the handler's
    /// writes: exactly once across crashes and restarts. For reactions that change game
    /// state.
    #[default]
    Cluster,
    /// Every instance handles every event committed while it runs (not those from before it
    /// started). For in-memory reactions such as caches.
    Instance,
}

fn default_prefix() -> String {
    DEFAULT_PREFIX.to_owned()
}

fn default_true() -> bool {
    true
}

/// A dependency on another plugin, optionally with a semver requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    /// The id of the plugin depended on.
    pub id: String,
    /// A semver requirement on its version, e.g. `^1` or `>=1.2, <2`; `None` accepts any.
    #[serde(default)]
    pub requirement: Option<String>,
}

impl Dependency {
    /// Parses `"game-sessions"` or `"game-sessions ^1"` (id, whitespace, requirement).
    pub fn parse(spec: &str) -> Dependency {
        let spec = spec.trim();
        match spec.split_once(char::is_whitespace) {
            Some((id, requirement)) => Dependency {
                id: id.to_owned(),
                requirement: Some(requirement.trim().to_owned()),
            },
            None => Dependency {
                id: spec.to_owned(),
                requirement: None,
            },
        }
    }
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.requirement {
            Some(requirement) => write!(f, "{} {}", self.id, requirement),
            None => f.write_str(&self.id),
        }
    }
}

impl Manifest {
    /// Starts a manifest with the three fields every plugin must set; the version is
    /// usually `env!("CARGO_PKG_VERSION")`.
    pub fn new(id: &str, name: &str, version: &str) -> Manifest {
        Manifest {
            id: id.to_owned(),
            name: name.to_owned(),
            version: version.to_owned(),
            description: String::new(),
            prefix: default_prefix(),
            tags: Vec::new(),
            dependencies: Vec::new(),
            enabled: true,
            permissions: Vec::new(),
            optional_permissions: Vec::new(),
            subscriptions: Vec::new(),
            event_delivery: EventDelivery::Cluster,
            emits: Vec::new(),
            required: false,
        }
    }

    /// Sets the description.
    pub fn description(mut self, description: &str) -> Manifest {
        self.description = description.to_owned();
        self
    }

    /// Sets the route prefix (default `/api/v1`).
    pub fn prefix(mut self, prefix: &str) -> Manifest {
        self.prefix = prefix.to_owned();
        self
    }

    /// Sets the OpenAPI tags.
    pub fn tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Manifest {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a dependency: `"game-sessions"` or `"game-sessions ^1"`.
    pub fn depends_on(mut self, spec: &str) -> Manifest {
        self.dependencies.push(Dependency::parse(spec));
        self
    }

    /// Sets the permissions the plugin needs.
    pub fn permissions<I: IntoIterator<Item = S>, S: Into<String>>(mut self, p: I) -> Manifest {
        self.permissions = p.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the permissions the plugin can do without (see the field).
    pub fn optional_permissions<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        p: I,
    ) -> Manifest {
        self.optional_permissions = p.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the event topics or `namespace:*` patterns the plugin receives.
    pub fn subscribes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, topics: I) -> Manifest {
        self.subscriptions = topics.into_iter().map(Into::into).collect();
        self
    }

    /// Asks for every instance to receive every event (for in-memory reactions), instead of
    /// the default once-per-cluster delivery.
    pub fn deliver_events_per_instance(mut self) -> Manifest {
        self.event_delivery = EventDelivery::Instance;
        self
    }

    /// Sets the event topics or `namespace:*` patterns the plugin may emit.
    pub fn emits<I: IntoIterator<Item = S>, S: Into<String>>(mut self, topics: I) -> Manifest {
        self.emits = topics.into_iter().map(Into::into).collect();
        self
    }

    /// Whether the manifest declares `topic` under `emits`.
    pub fn may_emit(&self, topic: &str) -> bool {
        self.emits
            .iter()
            .any(|pattern| crate::events::matches(pattern, topic))
    }

    /// Every permission the plugin asks for: required and optional.
    pub fn requested_permissions(&self) -> impl Iterator<Item = &str> {
        let mut all: Vec<&str> = self
            .permissions
            .iter()
            .chain(&self.optional_permissions)
            .map(String::as_str)
            .collect();
        all.sort_unstable();
        all.dedup();
        all.into_iter()
    }

    /// Whether the plugin cannot load without `permission`.
    pub fn requires_permission(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission)
            && !self.optional_permissions.iter().any(|p| p == permission)
    }

    /// Marks the plugin as required: its failure stops the host at startup.
    pub fn required(mut self) -> Manifest {
        self.required = true;
        self
    }

    /// Ships the plugin disabled; the host lists it but never loads it.
    pub fn disabled(mut self) -> Manifest {
        self.enabled = false;
        self
    }

    /// Checks every field, returning all problems found (not only the first).
    pub fn validate(&self) -> Result<(), ManifestErrors> {
        let mut problems = Vec::new();
        if let Err(problem) = check_id(&self.id) {
            problems.push(format!("id {:?} {problem}", self.id));
        }
        if self.name.trim().is_empty() {
            problems.push("name is empty".to_owned());
        }
        if let Err(error) = semver::Version::parse(&self.version) {
            problems.push(format!(
                "version {:?} is not a semantic version like 1.0.0 ({error})",
                self.version
            ));
        }
        if let Err(problem) = check_prefix(&self.prefix) {
            problems.push(format!("prefix {:?} {problem}", self.prefix));
        }
        for dependency in &self.dependencies {
            if let Err(problem) = check_id(&dependency.id) {
                problems.push(format!("dependency id {:?} {problem}", dependency.id));
            } else if dependency.id == self.id {
                problems.push(format!("plugin {:?} depends on itself", self.id));
            }
            if let Some(requirement) = &dependency.requirement {
                if let Err(error) = semver::VersionReq::parse(requirement) {
                    problems.push(format!(
                        "dependency {:?} has requirement {requirement:?}, which is not a semver requirement like ^1.2 ({error})",
                        dependency.id
                    ));
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for dependency in &self.dependencies {
            if !seen.insert(dependency.id.as_str()) {
                problems.push(format!("dependency {:?} is listed twice", dependency.id));
            }
        }
        for subscription in &self.subscriptions {
            if let Err(problem) = crate::events::validate_subscription(subscription) {
                problems.push(problem);
            }
        }
        for topic in &self.emits {
            if let Err(problem) = crate::events::validate_subscription(topic) {
                problems.push(problem.replace("subscription", "emitted topic"));
            } else if crate::events::is_host_topic(topic) {
                problems.push(format!(
                    "emitted topic {topic:?} is in a namespace only the host emits into"
                ));
            }
        }
        for permission in self.permissions.iter().chain(&self.optional_permissions) {
            if permission.trim().is_empty() || permission.chars().any(char::is_whitespace) {
                problems.push(format!(
                    "permission {permission:?} must be a non-empty name without spaces, like session:read"
                ));
            } else if !crate::permissions::is_known(permission) {
                let hint = match crate::permissions::closest(permission) {
                    Some(known) => format!(" (did you mean {known:?}?)"),
                    None => String::new(),
                };
                let known: Vec<&str> = crate::permissions::KNOWN_PERMISSIONS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect();
                problems.push(format!(
                    "unknown permission {permission:?}{hint}; known permissions: {}",
                    known.join(", ")
                ));
            }
        }
        for tag in &self.tags {
            if tag.trim().is_empty() {
                problems.push("tags contain an empty string".to_owned());
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ManifestErrors(problems))
        }
    }
}

fn check_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("is empty");
    }
    if id.len() > MAX_ID_LEN {
        return Err("is longer than 64 characters");
    }
    if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("must start with a lower-case letter");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("may contain only lower-case letters, digits and '-'");
    }
    if id.ends_with('-') || id.contains("--") {
        return Err("must not end with '-' or contain '--'");
    }
    Ok(())
}

fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    if !prefix.starts_with('/') {
        return Err("must start with '/'");
    }
    if prefix.len() > 1 && prefix.ends_with('/') {
        return Err("must not end with '/'");
    }
    if prefix.contains("//") || prefix.contains(['{', '}', '*', '?', '#', ' ']) {
        return Err("must be a plain path (no '//', parameters, '?', '#' or spaces)");
    }
    Ok(())
}

/// Everything wrong with a manifest, as returned by [`Manifest::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestErrors(pub Vec<String>);

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid manifest: {}", self.0.join("; "))
    }
}

impl std::error::Error for ManifestErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_invalid(manifest: Manifest, expected_fragment: &str) {
        let error = manifest.validate().expect_err("manifest should be invalid");
        let text = error.to_string();
        assert!(
            text.contains(expected_fragment),
            "expected {expected_fragment:?} in {text:?}"
        );
    }

    fn base() -> Manifest {
        Manifest::new("game-stealth", "Stealth", "1.0.0")
    }

    #[test]
    fn a_complete_manifest_is_valid() {
        base()
            .depends_on("game-sessions ^1")
            .permissions(["session:write"])
            .tags(["game"])
            .validate()
            .unwrap();
    }

    #[test]
    fn each_field_is_checked() {
        check_invalid(
            Manifest::new("Game", "x", "1.0.0"),
            "start with a lower-case",
        );
        check_invalid(
            Manifest::new("a_b", "x", "1.0.0"),
            "only lower-case letters",
        );
        check_invalid(Manifest::new("a", " ", "1.0.0"), "name is empty");
        check_invalid(Manifest::new("a", "x", "1.0"), "not a semantic version");
        check_invalid(base().prefix("api"), "must start with '/'");
        check_invalid(base().prefix("/api/"), "must not end with '/'");
        check_invalid(
            base().depends_on("game-sessions ^x"),
            "not a semver requirement",
        );
        check_invalid(base().depends_on("game-stealth"), "depends on itself");
        check_invalid(base().permissions([""]), "non-empty name");
        check_invalid(
            base().permissions(["sesion:write"]),
            "unknown permission \"sesion:write\" (did you mean \"session:write\"?)",
        );
        check_invalid(base().depends_on("a").depends_on("a ^1"), "listed twice");
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let error = Manifest::new("", "", "x").validate().unwrap_err();
        assert_eq!(error.0.len(), 3, "{error}");
    }

    #[test]
    fn dependency_specs_parse() {
        assert_eq!(
            Dependency::parse("game-sessions >=1.2, <2"),
            Dependency {
                id: "game-sessions".into(),
                requirement: Some(">=1.2, <2".into())
            }
        );
        assert_eq!(Dependency::parse("game-npcs").requirement, None);
    }

    #[test]
    fn missing_json_fields_take_defaults() {
        let manifest: Manifest =
            serde_json::from_str(r#"{"id":"a","name":"A","version":"1.0.0"}"#).unwrap();
        assert_eq!(manifest.prefix, "/api/v1");
        assert!(manifest.enabled);
        assert!(!manifest.required);
    }
}
