//! Worlds and their clocks.

use plugin_api::game::{NewWorld, World, WorldSummary};
use sqlx::{any::AnyRow, AnyPool, Row};

use super::{database_error, json_column, not_found, object_text, require_name};
use crate::db::unix_now;
use plugin_api::abi::ServiceError;

fn world(row: &AnyRow) -> Result<World, sqlx::Error> {
    Ok(World {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        meta: json_column(&row.try_get::<String, _>("meta")?),
        world_time: row.try_get("world_time")?,
    })
}

pub async fn list(pool: &AnyPool) -> Result<Vec<WorldSummary>, ServiceError> {
    let rows = sqlx::query("SELECT id, name FROM game_worlds ORDER BY id")
        .fetch_all(pool)
        .await
        .map_err(database_error)?;
    rows.iter()
        .map(|row| {
            Ok(WorldSummary {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(database_error)
}

pub async fn get(pool: &AnyPool, id: i64) -> Result<World, ServiceError> {
    let row = sqlx::query("SELECT id, name, meta, world_time FROM game_worlds WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(database_error)?
        .ok_or_else(|| not_found("GameWorld", id))?;
    world(&row).map_err(database_error)
}

pub async fn create(pool: &AnyPool, new: &NewWorld) -> Result<World, ServiceError> {
    require_name(&new.name)?;
    let meta = object_text("meta", new.meta.as_ref())?;
    let row = sqlx::query(
        "INSERT INTO game_worlds (name, meta, world_time, created_at) VALUES ($1, $2, $3, $4) \
         RETURNING id, name, meta, world_time",
    )
    .bind(&new.name)
    .bind(meta)
    .bind(0.0_f64)
    .bind(unix_now())
    .fetch_one(pool)
    .await
    .map_err(database_error)?;
    world(&row).map_err(database_error)
}

pub async fn advance(pool: &AnyPool, id: i64, delta_seconds: f64) -> Result<World, ServiceError> {
    let delta = if delta_seconds.is_finite() {
        delta_seconds.max(0.0)
    } else {
        0.0
    };
    let row = sqlx::query(
        "UPDATE game_worlds SET world_time = world_time + $1 WHERE id = $2 \
         RETURNING id, name, meta, world_time",
    )
    .bind(delta)
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(database_error)?
    .ok_or_else(|| not_found("GameWorld", id))?;
    world(&row).map_err(database_error)
}
