//! The game state the host keeps for all plugins (worlds, sessions, NPCs, locations), as
//! the JSON shapes that cross the service boundary and the HTTP API, and the catalogue of
//! host service operations with the permission each needs.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Bounds on the strings of game request bodies, in characters. They appear as `maxLength`
/// in the OpenAPI schema; the host refuses longer values (400) and changes nothing.
pub mod limits {
    /// Names of worlds, NPCs and locations.
    pub const MAX_NAME_CHARS: usize = 200;
    /// Short identifiers: expression states, hotspot ids and object names, spawn points,
    /// pickpocket slots.
    pub const MAX_KEY_CHARS: usize = 128;
    /// Free text a player types (dialogue input).
    pub const MAX_TEXT_CHARS: usize = 4000;

    /// The JSON Schema `pattern` of a name or identifier that must not be blank: it holds a
    /// character outside Unicode's `White_Space` (what Rust's `char::is_whitespace` and
    /// `str::trim` go by), spelt out because Python's and JavaScript's `\s` differ from it.
    pub const NOT_BLANK: &str =
        r"[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";

    /// The longest world time, in seconds (about 31.7 million years).
    pub const MAX_WORLD_TIME: f64 = 1.0e15;

    /// Seconds in a day: schedule times lie in `0..=SECONDS_PER_DAY`.
    pub const SECONDS_PER_DAY: f64 = 86_400.0;

    /// `Err` naming the field and both lengths when `value` is longer than `max` characters.
    pub fn check_length(field: &str, value: &str, max: usize) -> Result<(), String> {
        // Bytes bound characters from above: most values never need counting.
        if value.len() <= max {
            return Ok(());
        }
        let chars = value.chars().count();
        if chars <= max {
            return Ok(());
        }
        Err(format!(
            "{field} is {chars} characters long, over the limit of {max}"
        ))
    }
}

/// A world, with its clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct World {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Free-form metadata (a JSON object).
    pub meta: Value,
    /// World time in seconds since the world began.
    pub world_time: f64,
}

/// A world in a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorldSummary {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
}

/// The body that creates a world; its time starts at 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NewWorld {
    /// Name (not empty, at most [`limits::MAX_NAME_CHARS`] characters).
    #[schemars(length(min = 1, max = limits::MAX_NAME_CHARS), pattern(limits::NOT_BLANK))]
    pub name: String,
    /// Free-form metadata (a JSON object).
    #[serde(default)]
    #[schemars(with = "Option<Map<String, Value>>")]
    pub meta: Option<Value>,
}

/// A player's game session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Session {
    /// Id.
    pub id: i64,
    /// The owning user, when sessions are tied to users.
    pub user_id: Option<i64>,
    /// The world the session plays in.
    pub world_id: Option<i64>,
    /// The scene the session started in.
    pub scene_id: Option<i64>,
    /// The current node of the scene graph.
    pub current_node_id: Option<i64>,
    /// Game flags (a JSON object), e.g. `flags.stealth.pickpocket_attempts`.
    pub flags: Value,
    /// Relationships keyed `"npc:{id}"` → `{affinity, trust, chemistry, tension, flags, score?}`.
    pub relationships: Value,
    /// The session's world time in seconds.
    pub world_time: f64,
    /// Increases by one with every update; send it back as `expected_version`.
    pub version: i64,
}

/// One change to a JSON document (a session's `flags` or `relationships`) at a path of object
/// keys, applied by the host inside the database without the caller sending or receiving
/// the whole document. Containers on the path are created as objects when missing; a value
/// of the wrong shape on the path is an error (`Conflict`), never overwritten.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum DocumentChange {
    /// Puts `value` at `path` (replacing what is there).
    Set {
        /// Object keys from the document's root; not empty.
        path: Vec<String>,
        /// The value.
        value: Value,
    },
    /// Appends `value` to the list at `path` (created empty when missing).
    Append {
        /// Object keys from the document's root; not empty.
        path: Vec<String>,
        /// The value.
        value: Value,
    },
    /// Removes the key at `path`, if present.
    Remove {
        /// Object keys from the document's root; not empty.
        path: Vec<String>,
    },
    /// Adds `by` to the number at `path`, clamped to `min`/`max`. A missing value starts
    /// from `default` (without one it stays missing); a value that is not a number is left
    /// as it is. Integers stay integers when the result is whole.
    Add {
        /// Object keys from the document's root; not empty.
        path: Vec<String>,
        /// The amount (negative to subtract).
        by: f64,
        /// The least result.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        /// The greatest result.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
        /// Where a missing number starts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default: Option<f64>,
    },
}

/// Why [`apply_changes`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentError {
    /// A value of the wrong shape is on a change's path.
    Shape(String),
    /// A change is malformed (an empty path).
    Invalid(String),
}

/// Applies `changes` in order to `document` (named `name` in errors), as the host does for
/// `session.patch`; on an error the document may be partly changed (the host then keeps
/// the stored one). Plugins use it to test the changes they send.
pub fn apply_changes(
    name: &str,
    document: &mut Value,
    changes: &[DocumentChange],
) -> Result<(), DocumentError> {
    for change in changes {
        apply_change(name, document, change)?;
    }
    Ok(())
}

fn apply_change(
    name: &str,
    document: &mut Value,
    change: &DocumentChange,
) -> Result<(), DocumentError> {
    let (last, parents) = change.split_path(name).map_err(DocumentError::Invalid)?;
    let create = !matches!(change, DocumentChange::Remove { .. });
    let Some(container) = container_at(name, document, parents, create)? else {
        return Ok(()); // removing under a path that does not exist
    };
    let at = || format!("{name}.{}", change.path().join("."));
    match change {
        DocumentChange::Set { value, .. } => {
            container.insert(last.clone(), value.clone());
        }
        DocumentChange::Remove { .. } => {
            container.remove(last);
        }
        DocumentChange::Append { value, .. } => {
            match container
                .entry(last.clone())
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                Value::Array(list) => list.push(value.clone()),
                other => {
                    return Err(DocumentError::Shape(format!(
                        "{} is {other}, not a list",
                        at()
                    )))
                }
            }
        }
        DocumentChange::Add { .. } => {
            if let Some(value) = change.added_to(container.get(last)) {
                container.insert(last.clone(), value);
            }
        }
    }
    Ok(())
}

/// The object at `parents` (created as needed when `create`); `None` when it is missing
/// and not to be created.
fn container_at<'a>(
    name: &str,
    document: &'a mut Value,
    parents: &[String],
    create: bool,
) -> Result<Option<&'a mut Map<String, Value>>, DocumentError> {
    let mut current = match document {
        Value::Object(map) => map,
        other => {
            return Err(DocumentError::Shape(format!(
                "{name} is {other}, not an object"
            )))
        }
    };
    for (depth, key) in parents.iter().enumerate() {
        if !current.contains_key(key) {
            if !create {
                return Ok(None);
            }
            current.insert(key.clone(), Value::Object(Map::new()));
        }
        current = match current.get_mut(key) {
            Some(Value::Object(map)) => map,
            Some(other) => {
                return Err(DocumentError::Shape(format!(
                    "{name}.{} is {other}, not an object",
                    parents[..=depth].join(".")
                )))
            }
            None => unreachable!("inserted above"),
        };
    }
    Ok(Some(current))
}

impl DocumentChange {
    /// The keys from the document's root to the value changed.
    pub fn path(&self) -> &[String] {
        match self {
            DocumentChange::Set { path, .. }
            | DocumentChange::Append { path, .. }
            | DocumentChange::Remove { path }
            | DocumentChange::Add { path, .. } => path,
        }
    }

    /// The last key and the keys before it; `Err` for an empty path (in document `name`).
    pub fn split_path(&self, name: &str) -> Result<(&String, &[String]), String> {
        self.path()
            .split_last()
            .ok_or_else(|| format!("a change to {name} needs a path of at least one key"))
    }

    /// For an `Add`: the value that replaces `current` (the value at its path, if any), or
    /// `None` when it stays as it is (missing without a default, or not a number).
    pub fn added_to(&self, current: Option<&Value>) -> Option<Value> {
        let DocumentChange::Add {
            by,
            min,
            max,
            default,
            ..
        } = self
        else {
            return None;
        };
        let start = match current {
            None | Some(Value::Null) => (*default)?,
            Some(Value::Number(n)) => n.as_f64().unwrap_or_default(),
            Some(_) => return None,
        };
        let mut result = start + by;
        if let Some(min) = min {
            result = result.max(*min);
        }
        if let Some(max) = max {
            result = result.min(*max);
        }
        let was_float = current.is_some_and(Value::is_f64);
        Some(
            if result.fract() == 0.0 && !was_float && result.abs() < 9.0e15 {
                Value::from(result as i64)
            } else {
                Value::from(result)
            },
        )
    }
}

/// Changes to a session applied in one step by the host (`session.patch`): plugins that
/// change different keys never conflict, and nothing is lost to a concurrent writer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionPatch {
    /// Changes to `flags`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<DocumentChange>,
    /// Changes to `relationships`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relationships: Vec<DocumentChange>,
    /// Apply only if the session is still at this version (else `Conflict`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<i64>,
}

/// A session as the host answers it, with `flags` and `relationships` left as JSON text: a
/// plugin that passes them on (in a response) never parses them.
#[derive(Debug, Serialize, Deserialize)]
pub struct RawSession {
    /// Id.
    pub id: i64,
    /// The owning user.
    pub user_id: Option<i64>,
    /// The world the session plays in.
    pub world_id: Option<i64>,
    /// The scene the session started in.
    pub scene_id: Option<i64>,
    /// The current node of the scene graph.
    pub current_node_id: Option<i64>,
    /// Game flags, as JSON text.
    pub flags: Box<serde_json::value::RawValue>,
    /// Relationships, as JSON text.
    pub relationships: Box<serde_json::value::RawValue>,
    /// The session's world time in seconds.
    pub world_time: f64,
    /// The version after the change.
    pub version: i64,
}

/// The body that creates a session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NewSession {
    /// The world to play in.
    #[serde(default)]
    pub world_id: Option<i64>,
    /// The scene to start in.
    #[serde(default)]
    pub scene_id: Option<i64>,
    /// Initial flags (a JSON object; default `{}`).
    #[serde(default)]
    pub flags: Option<Value>,
    /// Initial relationships (a JSON object; default `{}`).
    #[serde(default)]
    pub relationships: Option<Value>,
}

/// A change to a session: each given field is replaced whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionUpdate {
    /// New world time.
    #[serde(default)]
    pub world_time: Option<f64>,
    /// New flags (a JSON object).
    #[serde(default)]
    pub flags: Option<Value>,
    /// New relationships (a JSON object).
    #[serde(default)]
    pub relationships: Option<Value>,
    /// When given, the update applies only if the session still has this version (else 409).
    #[serde(default)]
    pub expected_version: Option<i64>,
}

/// A non-player character.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Npc {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// The world the NPC lives in, if tied to one.
    pub world_id: Option<i64>,
    /// Where the NPC lives.
    pub home_location_id: Option<i64>,
    /// Personality traits (a JSON object), used by dialogue.
    pub personality: Value,
}

/// An NPC in a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NpcSummary {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
}

/// The body that creates an NPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NewNpc {
    /// Name (not empty, at most [`limits::MAX_NAME_CHARS`] characters).
    #[schemars(length(min = 1, max = limits::MAX_NAME_CHARS), pattern(limits::NOT_BLANK))]
    pub name: String,
    /// The world the NPC lives in.
    #[serde(default)]
    pub world_id: Option<i64>,
    /// Where the NPC lives.
    #[serde(default)]
    pub home_location_id: Option<i64>,
    /// Personality traits (a JSON object).
    #[serde(default)]
    #[schemars(with = "Option<Map<String, Value>>")]
    pub personality: Option<Value>,
}

/// One expression (portrait) of an NPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NpcExpression {
    /// The state it shows, e.g. `"happy"` (not empty, at most [`limits::MAX_KEY_CHARS`]
    /// characters).
    #[schemars(length(min = 1, max = limits::MAX_KEY_CHARS), pattern(limits::NOT_BLANK))]
    pub state: String,
    /// The image asset.
    pub asset_id: i64,
    /// Crop rectangle, if any.
    #[serde(default)]
    pub crop: Option<Value>,
    /// Free-form metadata.
    #[serde(default)]
    pub meta: Option<Value>,
}

/// One row of an NPC's weekly schedule: where the NPC is from `start_time` to `end_time`
/// (seconds into the day) on `day_of_week` (0 = Monday).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NpcScheduleEntry {
    /// 0 = Monday ... 6 = Sunday.
    #[schemars(range(min = 0, max = 6))]
    pub day_of_week: i64,
    /// Start, seconds into the day (inclusive).
    #[schemars(range(min = 0, max = limits::SECONDS_PER_DAY))]
    pub start_time: f64,
    /// End, seconds into the day (exclusive; after `start_time`).
    #[schemars(range(min = 0, max = limits::SECONDS_PER_DAY))]
    pub end_time: f64,
    /// Where the NPC is.
    pub location_id: i64,
}

/// Where an NPC is at a given world time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NpcPresence {
    /// The NPC.
    pub npc_id: i64,
    /// Where it is.
    pub location_id: i64,
    /// What it is doing (`"scheduled"` for a schedule match).
    pub state: String,
}

/// A presence query: world time in seconds, optionally narrowed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PresenceQuery {
    /// World time in seconds; splits into day of week (0 = Monday) and seconds in day.
    #[schemars(range(min = 0))]
    pub world_time: f64,
    /// Only NPCs of this world.
    #[serde(default)]
    pub world_id: Option<i64>,
    /// Only this location.
    #[serde(default)]
    pub location_id: Option<i64>,
}

/// The path of the routes about one world: `/game/worlds/{world_id}...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WorldPath {
    /// The world's id.
    pub world_id: i64,
}

/// The path of the routes about one session: `.../{session_id}...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionPath {
    /// The session's id.
    pub session_id: i64,
}

/// The path of the routes about one NPC: `/game/npcs/{npc_id}...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NpcPath {
    /// The NPC's id.
    pub npc_id: i64,
}

/// The path of the routes about one location: `/game/locations/{location_id}...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocationPath {
    /// The location's id.
    pub location_id: i64,
}

/// A location, with its hotspots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Location {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// The background asset.
    pub asset_id: Option<i64>,
    /// Where the player appears.
    pub default_spawn: Option<String>,
    /// Free-form metadata.
    pub meta: Value,
    /// Interactive spots.
    pub hotspots: Vec<Hotspot>,
}

/// A location in a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LocationSummary {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// The background asset.
    pub asset_id: Option<i64>,
    /// Where the player appears.
    pub default_spawn: Option<String>,
}

/// The body that creates a location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NewLocation {
    /// Name (not empty, at most [`limits::MAX_NAME_CHARS`] characters).
    #[schemars(length(min = 1, max = limits::MAX_NAME_CHARS), pattern(limits::NOT_BLANK))]
    pub name: String,
    /// The background asset.
    #[serde(default)]
    pub asset_id: Option<i64>,
    /// Where the player appears (at most [`limits::MAX_KEY_CHARS`] characters).
    #[serde(default)]
    #[schemars(length(max = limits::MAX_KEY_CHARS))]
    pub default_spawn: Option<String>,
    /// Free-form metadata (a JSON object).
    #[serde(default)]
    #[schemars(with = "Option<Map<String, Value>>")]
    pub meta: Option<Value>,
}

/// An interactive spot of a location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Hotspot {
    /// The scene object it is attached to (not empty, at most [`limits::MAX_KEY_CHARS`]
    /// characters).
    #[schemars(length(min = 1, max = limits::MAX_KEY_CHARS), pattern(limits::NOT_BLANK))]
    pub object_name: String,
    /// Its id within the location (not empty, at most [`limits::MAX_KEY_CHARS`]
    /// characters).
    #[schemars(length(min = 1, max = limits::MAX_KEY_CHARS), pattern(limits::NOT_BLANK))]
    pub hotspot_id: String,
    /// The scene it leads to.
    #[serde(default)]
    pub linked_scene_id: Option<i64>,
    /// Free-form metadata.
    #[serde(default)]
    pub meta: Option<Value>,
}

/// The relationship tier for an affinity (0-100; an entry without one counts as
/// [`DEFAULT_AFFINITY`]): 80+ `close`, 60+ `friendly`, 40+ `neutral`, 20+ `wary`, below
/// that `hostile`.
pub fn relationship_tier(affinity: f64) -> &'static str {
    match affinity {
        a if a >= 80.0 => "close",
        a if a >= 60.0 => "friendly",
        a if a >= 40.0 => "neutral",
        a if a >= 20.0 => "wary",
        _ => "hostile",
    }
}

/// The affinity of a relationship entry that has none.
pub const DEFAULT_AFFINITY: f64 = 50.0;

/// A host service operation: its name and version on the wire, and the permission it
/// needs. A change to an operation's payload or answer that an older plugin would misread
/// is a new version of it (the host keeps serving the old one); a new optional field is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    /// The name passed to `HostServices::call`, e.g. `"session.update"`.
    pub name: &'static str,
    /// The version passed with it.
    pub version: u32,
    /// The permission the calling plugin must hold.
    pub permission: &'static str,
}

macro_rules! operations {
    ($($constant:ident = $name:literal v $version:literal requires $permission:literal;)*) => {
        /// Host service operations by name.
        pub mod ops {
            use super::Operation;
            $(
                #[doc = concat!("`", $name, "` version ", $version, ", needs `", $permission, "`.")]
                pub const $constant: Operation =
                    Operation { name: $name, version: $version, permission: $permission };
            )*
            /// Every operation.
            pub const ALL: &[Operation] = &[$($constant),*];
        }
    };
}

operations! {
    WORLD_LIST = "world.list" v 1 requires "world:read";
    WORLD_GET = "world.get" v 1 requires "world:read";
    WORLD_CREATE = "world.create" v 1 requires "world:write";
    WORLD_ADVANCE = "world.advance" v 1 requires "world:write";
    SESSION_CREATE = "session.create" v 1 requires "session:write";
    SESSION_GET = "session.get" v 1 requires "session:read";
    SESSION_UPDATE = "session.update" v 1 requires "session:write";
    SESSION_PATCH = "session.patch" v 1 requires "session:write";
    NPC_LIST = "npc.list" v 1 requires "npc:read";
    NPC_GET = "npc.get" v 1 requires "npc:read";
    NPC_CREATE = "npc.create" v 1 requires "npc:write";
    NPC_EXPRESSIONS_GET = "npc.expressions.get" v 1 requires "npc:read";
    NPC_EXPRESSIONS_SET = "npc.expressions.set" v 1 requires "npc:write";
    NPC_SCHEDULES_GET = "npc.schedules.get" v 1 requires "npc:read";
    NPC_SCHEDULES_SET = "npc.schedules.set" v 1 requires "npc:write";
    NPC_PRESENCE = "npc.presence" v 1 requires "npc:read";
    LOCATION_LIST = "location.list" v 1 requires "location:read";
    LOCATION_GET = "location.get" v 1 requires "location:read";
    LOCATION_CREATE = "location.create" v 1 requires "location:write";
    LOCATION_HOTSPOTS_SET = "location.hotspots.set" v 1 requires "location:write";
    DB_QUERY = "db.query" v 1 requires "db:read";
    DB_EXECUTE = "db.execute" v 1 requires "db:write";
    EVENT_EMIT = "event.emit" v 1 requires "event:emit";
    AUTH_ISSUE_TOKEN = "auth.issue_token" v 1 requires "auth:issue";
    AUTH_LOGIN_ATTEMPT = "auth.login_attempt" v 1 requires "auth:throttle";
    AUTH_LOGIN_SUCCEEDED = "auth.login_succeeded" v 1 requires "auth:throttle";
}

/// The operation with this name and version.
pub fn operation(name: &str, version: u32) -> Option<Operation> {
    ops::ALL
        .iter()
        .copied()
        .find(|op| op.name == name && op.version == version)
}

/// Payloads of the operations that take more than a body type.
pub mod calls {
    use serde::{Deserialize, Serialize};
    use serde_json::Value;

    use super::{Hotspot, NpcExpression, NpcScheduleEntry, SessionPatch, SessionUpdate};

    /// An id, for `*.get` and list-by-owner operations.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct ById {
        /// The id.
        pub id: i64,
    }

    /// `world.advance`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct AdvanceWorld {
        /// The world.
        pub id: i64,
        /// Seconds to add; negative counts as 0.
        pub delta_seconds: f64,
    }

    /// `session.update`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct UpdateSession {
        /// The session.
        pub id: i64,
        /// The change.
        pub update: SessionUpdate,
    }

    /// `session.patch`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct PatchSession {
        /// The session.
        pub id: i64,
        /// The changes.
        pub patch: SessionPatch,
    }

    /// `npc.expressions.set`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct SetExpressions {
        /// The NPC.
        pub npc_id: i64,
        /// The new expressions (replacing all).
        pub expressions: Vec<NpcExpression>,
    }

    /// `npc.schedules.set`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct SetSchedules {
        /// The NPC.
        pub npc_id: i64,
        /// The new schedule (replacing all).
        pub schedules: Vec<NpcScheduleEntry>,
    }

    /// `location.hotspots.set`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct SetHotspots {
        /// The location.
        pub location_id: i64,
        /// The new hotspots (replacing all).
        pub hotspots: Vec<Hotspot>,
    }

    /// `db.query` and `db.execute`: one SQL statement with `$1, $2, ...` parameters. The
    /// database confines it to the plugin's own tables (and `db.query` to reading); the
    /// answer to `db.query` is [`crate::db::Rows`].
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Sql {
        /// The statement.
        pub sql: String,
        /// Parameters, typed.
        #[serde(default)]
        pub params: Vec<crate::db::SqlValue>,
    }

    /// `event.emit`: a topic like `stealth:pickpocket` and a JSON payload.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Emit {
        /// The topic (`namespace:name`; `app:*` and `plugin:*` are the host's).
        pub topic: String,
        /// The payload.
        pub payload: Value,
    }

    /// `auth.issue_token`: a signed access token for a user.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct IssueToken {
        /// The user.
        pub user_id: i64,
        /// Their roles, e.g. `["admin"]`.
        #[serde(default)]
        pub roles: Vec<String>,
        /// Lifetime in seconds (the host caps it).
        pub ttl_secs: u64,
    }

    /// The answer to `auth.issue_token`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct IssuedToken {
        /// The token, for `Authorization: Bearer ...`.
        pub access_token: String,
        /// Seconds until it expires.
        pub expires_in: u64,
    }

    /// `auth.login_attempt` and `auth.login_succeeded`: a sign-in attempt for `username` (as
    /// the plugin stores usernames, e.g. lower-cased; known or not, alike), from the client
    /// address the host knows for the request (never one the plugin names).
    ///
    /// Call `auth.login_attempt` before checking the password: it either refuses (answer
    /// 429 with `Retry-After`, check nothing) or counts the attempt as a failure in advance,
    /// taking one token from the username's and the address's bucket, so that parallel
    /// guesses cannot all pass before any failure is counted. When the password is right,
    /// call `auth.login_succeeded`: it gives those tokens back, so correct sign-ins never
    /// count. Both need the request's host handle.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct LoginAttempt {
        /// The username tried, known or not.
        pub username: String,
    }

    /// The answer to `auth.login_attempt`: go ahead and check the password, or refuse.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct LoginVerdict {
        /// Set when the attempt is refused (answer 429): too many failed sign-ins.
        #[serde(default)]
        pub refused: Option<LoginRefusal>,
    }

    /// Why a sign-in attempt was refused, and for how long.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct LoginRefusal {
        /// What had too many failures: `"username"` or `"address"`.
        pub scope: String,
        /// Whole seconds (rounded up, at least 1) until an attempt can be made again.
        pub retry_after_secs: u64,
    }

    /// The answer to `db.execute`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Executed {
        /// Rows changed.
        pub rows_affected: u64,
    }
}
