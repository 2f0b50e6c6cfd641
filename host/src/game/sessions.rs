//! Game sessions: flags, relationships and world time, updated by compare-and-set on
//! `version` (or patched at paths, under the row's lock) so concurrent writers never lose
//! each other's changes. Sessions are answered with their documents as JSON text, checked but
//! never parsed here: the biggest values in the game cross the host without a round trip
//! through `serde_json::Value`.

use plugin_api::{
    abi::{ServiceError, ServiceErrorKind},
    game::{DocumentChange, NewSession, RawSession, SessionPatch, SessionUpdate},
};
use std::fmt::Write as _;

use serde_json::value::RawValue;

use super::{database_error, not_found, object_text, service_error, Scope};
use crate::{
    config::GameLimits,
    db::{
        document::{self, ChangeError},
        sql::{query, Conn, DbError, Row, SqlType, SqlValue},
        unix_now,
    },
};

const COLUMNS: &str =
    "id, user_id, world_id, scene_id, current_node_id, flags, relationships, world_time, version";

fn session(row: &Row) -> Result<RawSession, DbError> {
    Ok(RawSession {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        world_id: row.try_get("world_id")?,
        scene_id: row.try_get("scene_id")?,
        current_node_id: row.try_get("current_node_id")?,
        flags: json_text(row, "flags")?,
        relationships: json_text(row, "relationships")?,
        world_time: row.try_get("world_time")?,
        version: row.try_get("version")?,
    })
}

/// A JSON column as checked JSON text. Text that is not JSON (only a hand edit can cause
/// it) is an error, never passed on.
fn json_text(row: &Row, column: &str) -> Result<Box<RawValue>, DbError> {
    RawValue::from_string(row.try_get::<String, _>(column)?).map_err(|error| DbError::Decode {
        column: column.to_owned(),
        problem: format!("not JSON: {error}"),
    })
}

/// `text` (a session's `field` document as JSON) if it is within the configured bound.
fn bounded(text: String, field: &str, limits: &GameLimits) -> Result<String, ServiceError> {
    let limit = limits.max_session_document_bytes;
    if text.len() > limit {
        return Err(service_error(
            ServiceErrorKind::Invalid,
            format!(
                "the session's {field} would be {} bytes of JSON, over the limit of {limit} bytes ([game] max_session_document_bytes)",
                text.len()
            ),
        ));
    }
    Ok(text)
}

/// Creates a session owned by the scope's user, in one of its own worlds.
pub async fn create(
    db: &mut Conn<'_>,
    new: &NewSession,
    scope: Scope,
    limits: &GameLimits,
) -> Result<RawSession, ServiceError> {
    let flags = bounded(object_text("flags", new.flags.as_ref())?, "flags", limits)?;
    let relationships = bounded(
        object_text("relationships", new.relationships.as_ref())?,
        "relationships",
        limits,
    )?;
    if let Some(world_id) = new.world_id {
        super::worlds::get(db, world_id, scope).await?;
    }
    let now = unix_now();
    let row = query(&format!(
        "INSERT INTO game_sessions (world_id, scene_id, flags, relationships, world_time, version, created_at, updated_at, user_id) \
         VALUES ($1, $2, $3, $4, $5, 1, $6, $6, $7) RETURNING {COLUMNS}"
    ))
    .bind(new.world_id)
    .bind(new.scene_id)
    .bind(flags)
    .bind(relationships)
    .bind(0.0_f64)
    .bind(now)
    .bind(scope.new_owner())
    .fetch_one(&mut *db)
    .await
    .map_err(database_error)?;
    session(&row).map_err(database_error)
}

/// One session; another user's answers not found, like a missing one.
pub async fn get(db: &mut Conn<'_>, id: i64, scope: Scope) -> Result<RawSession, ServiceError> {
    let row = query(&format!(
        "SELECT {COLUMNS} FROM game_sessions WHERE id = $1 AND ($2 IS NULL OR user_id = $2)"
    ))
    .bind(id)
    .bind(scope.owner_filter())
    .fetch_optional(&mut *db)
    .await
    .map_err(database_error)?
    .ok_or_else(|| not_found("GameSession", id))?;
    session(&row).map_err(database_error)
}

/// Replaces the given fields and bumps `version`, in one statement; with
/// `expected_version`, only if the session still has that version.
pub async fn update(
    db: &mut Conn<'_>,
    id: i64,
    update: &SessionUpdate,
    scope: Scope,
    limits: &GameLimits,
) -> Result<RawSession, ServiceError> {
    let flags = update
        .flags
        .as_ref()
        .map(|f| bounded(object_text("flags", Some(f))?, "flags", limits))
        .transpose()?;
    let relationships = update
        .relationships
        .as_ref()
        .map(|r| {
            bounded(
                object_text("relationships", Some(r))?,
                "relationships",
                limits,
            )
        })
        .transpose()?;
    if let Some(world_time) = update.world_time {
        if !world_time.is_finite() || !(0.0..=super::worlds::MAX_WORLD_TIME).contains(&world_time) {
            return Err(super::invalid(format!(
                "world_time must be between 0 and {} seconds",
                super::worlds::MAX_WORLD_TIME
            )));
        }
    }
    let row = query(&format!(
        "UPDATE game_sessions SET \
            flags = COALESCE($1, flags), \
            relationships = COALESCE($2, relationships), \
            world_time = CASE WHEN $7 = 1 THEN $3 ELSE world_time END, \
            version = version + 1, \
            updated_at = $4 \
         WHERE id = $5 AND ($6 IS NULL OR version = $6) AND ($8 IS NULL OR user_id = $8) \
         RETURNING {COLUMNS}"
    ))
    .bind(flags)
    .bind(relationships)
    // Never bind a NULL float: sqlx 0.8's Any driver sends a NULL f64 as a float4 parameter,
    // which poisons the cached statement on PostgreSQL; a flag says whether to use $3.
    .bind(update.world_time.unwrap_or_default())
    .bind(unix_now())
    .bind(id)
    .bind(update.expected_version)
    .bind(i64::from(update.world_time.is_some()))
    .bind(scope.owner_filter())
    .fetch_optional(&mut *db)
    .await
    .map_err(database_error)?;
    match row {
        Some(row) => session(&row).map_err(database_error),
        None => {
            // Either it does not exist or the version moved on; tell which.
            let current = get(db, id, scope).await?;
            Err(service_error(
                ServiceErrorKind::Conflict,
                format!(
                    "GameSession {id} is at version {}, not the expected version {}",
                    current.version,
                    update.expected_version.unwrap_or_default()
                ),
            ))
        }
    }
}

/// Applies changes at paths of the session's documents under the row's lock: on SQLite in
/// one `UPDATE` (the changes run inside it, see `db::document`), on PostgreSQL between
/// `SELECT ... FOR UPDATE` and `UPDATE`. Writers of other keys never conflict with it.
pub async fn patch(
    db: &mut Conn<'_>,
    id: i64,
    patch: &SessionPatch,
    scope: Scope,
    limits: &GameLimits,
) -> Result<Vec<u8>, ServiceError> {
    let limit = limits.max_session_document_bytes;
    let now = unix_now();
    let row = match db {
        Conn::Sqlite(_) => query(&format!(
            "UPDATE game_sessions SET {}{}version = version + 1, updated_at = $4 \
             WHERE id = $5 AND ($6 IS NULL OR version = $6) AND ($7 IS NULL OR user_id = $7) \
             RETURNING {COLUMNS}",
            // Only the documents that change go through the function (4 statement shapes,
            // each prepared once).
            if patch.flags.is_empty() {
                ""
            } else {
                "flags = pixsim7_patch('flags', flags, $1, $3), "
            },
            if patch.relationships.is_empty() {
                ""
            } else {
                "relationships = pixsim7_patch('relationships', relationships, $2, $3), "
            },
        ))
        .bind(changes_json(&patch.flags)?)
        .bind(changes_json(&patch.relationships)?)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(now)
        .bind(id)
        .bind(patch.expected_version)
        .bind(scope.owner_filter())
        .fetch_optional(&mut *db)
        .await
        .map_err(patch_error)?,
        Conn::Postgres(_) => {
            let current = query(
                "SELECT flags, relationships, version FROM game_sessions \
                 WHERE id = $1 AND ($2 IS NULL OR user_id = $2) FOR UPDATE",
            )
            .bind(id)
            .bind(scope.owner_filter())
            .fetch_optional(&mut *db)
            .await
            .map_err(database_error)?
            .ok_or_else(|| not_found("GameSession", id))?;
            let version: i64 = current.try_get("version").map_err(database_error)?;
            if patch
                .expected_version
                .is_some_and(|expected| expected != version)
            {
                return Err(stale(id, version, patch.expected_version));
            }
            let changed =
                |name: &str, changes: &[DocumentChange]| -> Result<String, ServiceError> {
                    let text: String = current.try_get(name).map_err(database_error)?;
                    document::apply(name, &text, changes, limit)
                        .map_err(|error| change_error(name, error))
                };
            let flags = changed("flags", &patch.flags)?;
            let relationships = changed("relationships", &patch.relationships)?;
            query(&format!(
                "UPDATE game_sessions SET flags = $1, relationships = $2, version = version + 1, \
                 updated_at = $3 WHERE id = $4 RETURNING {COLUMNS}"
            ))
            .bind(flags)
            .bind(relationships)
            .bind(now)
            .bind(id)
            .fetch_optional(&mut *db)
            .await
            .map_err(database_error)?
        }
    };
    match row {
        Some(row) => patched_answer(&row, patch).map_err(database_error),
        None => {
            let current = get(db, id, scope).await?;
            Err(stale(id, current.version, patch.expected_version))
        }
    }
}

/// The answer to a patch, written straight from the row: a document the patch changed was
/// just written by `db::document` and is not scanned again (sessions grow with play, and
/// this is the game's busiest write); one it left alone is checked like any read.
fn patched_answer(row: &Row, patch: &SessionPatch) -> Result<Vec<u8>, DbError> {
    let flags: String = row.try_get("flags")?;
    let relationships: String = row.try_get("relationships")?;
    for (column, text, changed) in [
        ("flags", &flags, !patch.flags.is_empty()),
        (
            "relationships",
            &relationships,
            !patch.relationships.is_empty(),
        ),
    ] {
        if !changed {
            serde_json::from_str::<&RawValue>(text).map_err(|error| DbError::Decode {
                column: column.to_owned(),
                problem: format!("not JSON: {error}"),
            })?;
        }
    }
    let number = |value: Option<i64>| value.map_or_else(|| "null".to_owned(), |v| v.to_string());
    let world_time: f64 = row.try_get("world_time")?;
    let mut out = String::with_capacity(flags.len() + relationships.len() + 192);
    let _ = write!(
        out,
        "{{\"id\":{},\"user_id\":{},\"world_id\":{},\"scene_id\":{},\"current_node_id\":{},\"flags\":{flags},\"relationships\":{relationships},\"world_time\":{},\"version\":{}}}",
        row.try_get::<i64, _>("id")?,
        number(row.try_get("user_id")?),
        number(row.try_get("world_id")?),
        number(row.try_get("scene_id")?),
        number(row.try_get("current_node_id")?),
        serde_json::to_string(&world_time).unwrap_or_else(|_| "0.0".to_owned()),
        row.try_get::<i64, _>("version")?,
    );
    Ok(out.into_bytes())
}

fn stale(id: i64, version: i64, expected: Option<i64>) -> ServiceError {
    service_error(
        ServiceErrorKind::Conflict,
        format!(
            "GameSession {id} is at version {version}, not the expected version {}",
            expected.unwrap_or_default()
        ),
    )
}

/// The changes as the JSON the SQLite function reads (`NULL` for none).
fn changes_json(changes: &[DocumentChange]) -> Result<SqlValue, ServiceError> {
    if changes.is_empty() {
        return Ok(SqlValue::Null(SqlType::Text));
    }
    serde_json::to_string(changes)
        .map(SqlValue::Text)
        .map_err(|e| service_error(ServiceErrorKind::BadCall, format!("changes: {e}")))
}

fn change_error(name: &str, error: ChangeError) -> ServiceError {
    match error {
        ChangeError::Shape(message) => service_error(ServiceErrorKind::Conflict, message),
        ChangeError::Invalid(message) => service_error(ServiceErrorKind::BadCall, message),
        too_large @ ChangeError::TooLarge { .. } => service_error(
            ServiceErrorKind::Invalid,
            format!("the session's {name} {too_large} ([game] max_session_document_bytes)"),
        ),
    }
}

/// The SQLite function's refusals, told apart by their prefixes.
fn patch_error(error: DbError) -> ServiceError {
    let message = error.statement_message().unwrap_or_default();
    for (prefix, kind, suffix) in [
        (document::SHAPE_PREFIX, ServiceErrorKind::Conflict, ""),
        (
            document::TOO_LARGE_PREFIX,
            ServiceErrorKind::Invalid,
            " ([game] max_session_document_bytes)",
        ),
        (document::INVALID_PREFIX, ServiceErrorKind::BadCall, ""),
    ] {
        if let Some(at) = message.find(prefix) {
            return service_error(kind, format!("{}{suffix}", &message[at + prefix.len()..]));
        }
    }
    database_error(error)
}
