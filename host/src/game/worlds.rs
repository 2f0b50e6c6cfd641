//! Worlds and their clocks.

use crate::db::sql::{query, Conn, DbError, Row};
use plugin_api::game::{NewWorld, World, WorldSummary};

use super::{database_error, invalid, json_column, not_found, object_text, require_name, Scope};

/// The latest world time there can be, in seconds (about 31.7 million years): far beyond
/// any game, and far below where adding seconds to a float stops working.
pub const MAX_WORLD_TIME: f64 = plugin_api::game::limits::MAX_WORLD_TIME;
use crate::db::unix_now;
use plugin_api::abi::ServiceError;

fn world(row: &Row) -> Result<World, DbError> {
    Ok(World {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        meta: json_column(&row.try_get::<String, _>("meta")?)?,
        world_time: row.try_get("world_time")?,
    })
}

/// The worlds the scope owns.
pub async fn list(db: &mut Conn<'_>, scope: Scope) -> Result<Vec<WorldSummary>, ServiceError> {
    let rows = query(
        "SELECT id, name FROM game_worlds WHERE ($1 IS NULL OR owner_user_id = $1) ORDER BY id",
    )
    .bind(scope.owner_filter())
    .fetch_all(&mut *db)
    .await
    .map_err(database_error)?;
    rows.iter()
        .map(|row| {
            Ok(WorldSummary {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
            })
        })
        .collect::<Result<_, DbError>>()
        .map_err(database_error)
}

/// One world; another user's answers not found, like a missing one, so ids cannot be probed.
pub async fn get(db: &mut Conn<'_>, id: i64, scope: Scope) -> Result<World, ServiceError> {
    let row = query(
        "SELECT id, name, meta, world_time FROM game_worlds \
         WHERE id = $1 AND ($2 IS NULL OR owner_user_id = $2)",
    )
    .bind(id)
    .bind(scope.owner_filter())
    .fetch_optional(&mut *db)
    .await
    .map_err(database_error)?
    .ok_or_else(|| not_found("GameWorld", id))?;
    world(&row).map_err(database_error)
}

/// Creates a world owned by the scope's user.
pub async fn create(
    db: &mut Conn<'_>,
    new: &NewWorld,
    scope: Scope,
) -> Result<World, ServiceError> {
    require_name(&new.name)?;
    let meta = object_text("meta", new.meta.as_ref())?;
    let row = query(
        "INSERT INTO game_worlds (name, meta, world_time, created_at, owner_user_id) VALUES ($1, $2, $3, $4, $5) \
         RETURNING id, name, meta, world_time",
    )
    .bind(&new.name)
    .bind(meta)
    .bind(0.0_f64)
    .bind(unix_now())
    .bind(scope.new_owner())
    .fetch_one(&mut *db)
    .await
    .map_err(database_error)?;
    world(&row).map_err(database_error)
}

/// Advances the clock; the new time must stay at most [`MAX_WORLD_TIME`], checked in the
/// same statement, so an absurd delta changes nothing.
pub async fn advance(
    db: &mut Conn<'_>,
    id: i64,
    delta_seconds: f64,
    scope: Scope,
) -> Result<World, ServiceError> {
    if !delta_seconds.is_finite() {
        return Err(invalid("delta_seconds must be a finite number"));
    }
    let delta = delta_seconds.max(0.0);
    let row = query(
        "UPDATE game_worlds SET world_time = world_time + $1 \
         WHERE id = $2 AND world_time + $1 <= $3 AND ($4 IS NULL OR owner_user_id = $4) \
         RETURNING id, name, meta, world_time",
    )
    .bind(delta)
    .bind(id)
    .bind(MAX_WORLD_TIME)
    .bind(scope.owner_filter())
    .fetch_optional(&mut *db)
    .await
    .map_err(database_error)?;
    match row {
        Some(row) => world(&row).map_err(database_error),
        None => {
            let current = get(db, id, scope).await?;
            // The delta alone is within bounds (the route's schema says so); it is this
            // world's current time that makes it too much: a conflict with its state.
            Err(super::service_error(plugin_api::abi::ServiceErrorKind::Conflict, format!(
                "advancing world {id} by {delta} s would take its time ({}) past the maximum of {MAX_WORLD_TIME} s",
                current.world_time
            )))
        }
    }
}
