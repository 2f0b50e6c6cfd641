//! The game state behind the host services: worlds, sessions, NPCs, locations, and plugins'
//! own tables. `execute` dispatches one permitted operation inside the caller's unit of
//! work; the permission check happens before, in `plugins::services`.
//!
//! Invariant: every change runs in the caller's unit of work (so it commits or rolls back
//! with the request), and one call is one statement or one nested transaction, so a failed
//! call changes nothing even in a unit that goes on; session updates are compare-and-set on
//! `version`, so none is ever lost.

mod locations;
mod npcs;
mod plugin_tables;
mod sessions;
mod worlds;

use crate::db::sql::{execute_script, Conn, DbError};
use plugin_api::{
    abi::{ServiceError, ServiceErrorKind},
    game::{calls, limits, ops, Operation},
};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::{
    config::GameLimits,
    db::unit_of_work::{UnitError, UnitOfWork},
};

/// Whose game state a call may see. Worlds and sessions belong to the user who created
/// them; NPCs and locations are world content, visible to all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A plugin holding `system:read` / `system:write` acting outside any request: the
    /// whole game (every use is audited).
    System,
    /// A call made for a request's (or an event's) caller: only what this user owns
    /// (`None`, a public route called without a token, owns nothing).
    Caller(Option<i64>),
    /// A plugin acting as itself (outside any request) without a system permission: no
    /// user's worlds or sessions.
    Plugin,
}

impl Scope {
    /// The owner to filter on, as an SQL parameter: `NULL` for no filter. Nobody (an
    /// anonymous caller, a plugin acting as itself) filters on an id no user has.
    fn owner_filter(self) -> Option<i64> {
        match self {
            Scope::System => None,
            Scope::Caller(Some(user_id)) => Some(user_id),
            Scope::Caller(None) | Scope::Plugin => Some(i64::MIN),
        }
    }

    /// The owner a new world or session gets.
    fn new_owner(self) -> Option<i64> {
        match self {
            Scope::Caller(user_id) => user_id,
            Scope::System | Scope::Plugin => None,
        }
    }

    /// The user this scope acts for, if any.
    pub fn user_id(self) -> Option<i64> {
        match self {
            Scope::Caller(user_id) => user_id,
            Scope::System | Scope::Plugin => None,
        }
    }
}

/// Whether `op` changes anything (and so needs the unit's transaction).
pub fn writes(op: Operation) -> bool {
    op.permission.ends_with(":write")
}

/// Whether `op` writes with more than one statement (the replacements of a whole list).
fn several_writes(op: Operation) -> bool {
    [
        ops::NPC_EXPRESSIONS_SET,
        ops::NPC_SCHEDULES_SET,
        ops::LOCATION_HOTSPOTS_SET,
    ]
    .contains(&op)
}

/// Runs operation `op` for plugin `plugin_id` with a JSON payload in `unit`, answering JSON.
pub async fn execute(
    unit: &UnitOfWork,
    limits: &GameLimits,
    plugin_id: &str,
    scope: Scope,
    op: Operation,
    payload: &[u8],
) -> Result<Vec<u8>, ServiceError> {
    if op == ops::DB_QUERY || op == ops::DB_EXECUTE {
        // Confined by the database (`db::confine`). On PostgreSQL always inside the unit's
        // transaction: the statement runs in a savepoint of it, under the plugin's role.
        let write = op == ops::DB_EXECUTE;
        let postgres = unit.database().backend == crate::db::Backend::Postgres;
        let mut connection = unit
            .connection(write || postgres)
            .await
            .map_err(unit_error)?;
        return plugin_tables::run(
            &mut connection.conn(),
            unit,
            limits,
            plugin_id,
            scope,
            write,
            payload,
        )
        .await;
    }
    let mut connection = unit.connection(writes(op)).await.map_err(unit_error)?;
    let in_transaction = connection.in_transaction();
    let mut db = connection.conn();
    // A savepoint makes a call of several statements all-or-nothing, and on PostgreSQL it
    // keeps a failed statement from aborting the whole unit, so a plugin that handles the
    // error can go on. On SQLite a single statement is all-or-nothing by itself, and its
    // failure leaves the transaction usable: those calls need none.
    let contained = in_transaction
        && match db {
            Conn::Sqlite(_) => several_writes(op),
            Conn::Postgres(_) => writes(op),
        };
    if !contained {
        return run(&mut db, limits, scope, op, payload).await;
    }
    execute_script(&mut db, "SAVEPOINT call")
        .await
        .map_err(database_error)?;
    let result = run(&mut db, limits, scope, op, payload).await;
    if result.is_err() {
        execute_script(&mut db, "ROLLBACK TO call")
            .await
            .map_err(database_error)?;
    }
    execute_script(&mut db, "RELEASE call")
        .await
        .map_err(database_error)?;
    result
}

async fn run(
    pool: &mut Conn<'_>,
    limits: &GameLimits,
    scope: Scope,
    op: Operation,
    payload: &[u8],
) -> Result<Vec<u8>, ServiceError> {
    match op {
        o if o == ops::WORLD_LIST => answer(worlds::list(pool, scope).await),
        o if o == ops::WORLD_GET => {
            answer(worlds::get(pool, parse::<calls::ById>(payload)?.id, scope).await)
        }
        o if o == ops::WORLD_CREATE => answer(worlds::create(pool, &parse(payload)?, scope).await),
        o if o == ops::WORLD_ADVANCE => {
            let call: calls::AdvanceWorld = parse(payload)?;
            answer(worlds::advance(pool, call.id, call.delta_seconds, scope).await)
        }
        o if o == ops::SESSION_CREATE => {
            answer(sessions::create(pool, &parse(payload)?, scope, limits).await)
        }
        o if o == ops::SESSION_GET => {
            answer(sessions::get(pool, parse::<calls::ById>(payload)?.id, scope).await)
        }
        o if o == ops::SESSION_UPDATE => {
            let call: calls::UpdateSession = parse(payload)?;
            answer(sessions::update(pool, call.id, &call.update, scope, limits).await)
        }
        o if o == ops::SESSION_PATCH => {
            let call: calls::PatchSession = parse(payload)?;
            sessions::patch(pool, call.id, &call.patch, scope, limits).await
        }
        o if o == ops::NPC_LIST => answer(npcs::list(pool).await),
        o if o == ops::NPC_GET => answer(npcs::get(pool, parse::<calls::ById>(payload)?.id).await),
        o if o == ops::NPC_CREATE => answer(npcs::create(pool, &parse(payload)?).await),
        o if o == ops::NPC_EXPRESSIONS_GET => {
            answer(npcs::expressions(pool, parse::<calls::ById>(payload)?.id).await)
        }
        o if o == ops::NPC_EXPRESSIONS_SET => {
            let call: calls::SetExpressions = parse(payload)?;
            answer(npcs::set_expressions(pool, call.npc_id, &call.expressions).await)
        }
        o if o == ops::NPC_SCHEDULES_GET => {
            answer(npcs::schedules(pool, parse::<calls::ById>(payload)?.id).await)
        }
        o if o == ops::NPC_SCHEDULES_SET => {
            let call: calls::SetSchedules = parse(payload)?;
            answer(npcs::set_schedules(pool, call.npc_id, &call.schedules).await)
        }
        o if o == ops::NPC_PRESENCE => answer(npcs::presence(pool, &parse(payload)?).await),
        o if o == ops::LOCATION_LIST => answer(locations::list(pool).await),
        o if o == ops::LOCATION_GET => {
            answer(locations::get(pool, parse::<calls::ById>(payload)?.id).await)
        }
        o if o == ops::LOCATION_CREATE => answer(locations::create(pool, &parse(payload)?).await),
        o if o == ops::LOCATION_HOTSPOTS_SET => {
            let call: calls::SetHotspots = parse(payload)?;
            answer(locations::set_hotspots(pool, call.location_id, &call.hotspots).await)
        }
        other => Err(service_error(
            ServiceErrorKind::BadCall,
            format!("unknown operation {other:?}"),
        )),
    }
}

fn parse<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ServiceError> {
    serde_json::from_slice(payload).map_err(|error| {
        service_error(
            ServiceErrorKind::BadCall,
            format!("invalid payload: {error}"),
        )
    })
}

fn answer<T: Serialize>(result: Result<T, ServiceError>) -> Result<Vec<u8>, ServiceError> {
    let value = result?;
    serde_json::to_vec(&value).map_err(|error| {
        service_error(
            ServiceErrorKind::Unavailable,
            format!("unserializable answer: {error}"),
        )
    })
}

/// A service error of `kind`.
pub fn service_error(kind: ServiceErrorKind, message: impl Into<String>) -> ServiceError {
    ServiceError {
        kind,
        message: message.into().into(),
    }
}

fn not_found(what: &str, id: i64) -> ServiceError {
    service_error(ServiceErrorKind::NotFound, format!("{what} {id} not found"))
}

fn invalid(message: impl Into<String>) -> ServiceError {
    service_error(ServiceErrorKind::Invalid, message)
}

/// A unit of work that cannot serve a call.
pub fn unit_error(error: UnitError) -> ServiceError {
    match error {
        UnitError::Ended => service_error(
            ServiceErrorKind::BadCall,
            "the request this call belongs to has already been answered; its unit of work has ended",
        ),
        UnitError::Database(error) => database_error(error),
    }
}

/// A database failure: logged in full here, reported to the plugin without internals.
pub fn database_error(error: DbError) -> ServiceError {
    tracing::error!(error = %error, "database error in a host service");
    service_error(
        ServiceErrorKind::Unavailable,
        "the game database is unavailable",
    )
}

/// A JSON column's text as a value. Text that is not JSON (only a hand edit can cause it)
/// is an error, never silently `{}`, so a later write cannot replace the data.
fn json_column(text: &str) -> Result<Value, DbError> {
    serde_json::from_str(text).map_err(|error| DbError::Decode {
        column: "a JSON column".to_owned(),
        problem: format!("not JSON: {error}"),
    })
}

/// `value` as JSON text, requiring an object (flags, relationships, meta, personality).
fn object_text(field: &str, value: Option<&Value>) -> Result<String, ServiceError> {
    match value {
        None => Ok("{}".to_owned()),
        Some(value @ Value::Object(_)) => Ok(value.to_string()),
        Some(other) => Err(invalid(format!(
            "{field} must be a JSON object, not {other}"
        ))),
    }
}

fn optional_json_column(text: Option<String>) -> Result<Option<Value>, DbError> {
    text.map(|t| json_column(&t)).transpose()
}

fn require_name(name: &str) -> Result<(), ServiceError> {
    if name.trim().is_empty() {
        return Err(invalid("name must not be empty"));
    }
    within("name", name, limits::MAX_NAME_CHARS)
}

/// `Ok` if `value` (the string field `field`) is at most `max` characters long.
fn within(field: &str, value: &str, max: usize) -> Result<(), ServiceError> {
    limits::check_length(field, value, max).map_err(invalid)
}
