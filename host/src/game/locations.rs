//! Locations and their hotspots.

use crate::db::sql::{query, Conn, DbError};
use plugin_api::{
    abi::ServiceError,
    game::{limits, Hotspot, Location, LocationSummary, NewLocation},
};

use super::{
    database_error, invalid, json_column, not_found, object_text, optional_json_column,
    require_name, within,
};

pub async fn list(db: &mut Conn<'_>) -> Result<Vec<LocationSummary>, ServiceError> {
    let rows = query("SELECT id, name, asset_id, default_spawn FROM game_locations ORDER BY id")
        .fetch_all(&mut *db)
        .await
        .map_err(database_error)?;
    rows.iter()
        .map(|row| {
            Ok(LocationSummary {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                asset_id: row.try_get("asset_id")?,
                default_spawn: row.try_get("default_spawn")?,
            })
        })
        .collect::<Result<_, DbError>>()
        .map_err(database_error)
}

pub async fn get(db: &mut Conn<'_>, id: i64) -> Result<Location, ServiceError> {
    let row =
        query("SELECT id, name, asset_id, default_spawn, meta FROM game_locations WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *db)
            .await
            .map_err(database_error)?
            .ok_or_else(|| not_found("GameLocation", id))?;
    let hotspots = query(
        "SELECT object_name, hotspot_id, linked_scene_id, meta FROM game_hotspots WHERE location_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&mut *db)
    .await
    .map_err(database_error)?;
    let read = || -> Result<Location, DbError> {
        Ok(Location {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            asset_id: row.try_get("asset_id")?,
            default_spawn: row.try_get("default_spawn")?,
            meta: json_column(&row.try_get::<String, _>("meta")?)?,
            hotspots: hotspots
                .iter()
                .map(|h| {
                    Ok(Hotspot {
                        object_name: h.try_get("object_name")?,
                        hotspot_id: h.try_get("hotspot_id")?,
                        linked_scene_id: h.try_get("linked_scene_id")?,
                        meta: optional_json_column(h.try_get("meta")?)?,
                    })
                })
                .collect::<Result<_, DbError>>()?,
        })
    };
    read().map_err(database_error)
}

pub async fn create(db: &mut Conn<'_>, new: &NewLocation) -> Result<Location, ServiceError> {
    require_name(&new.name)?;
    if let Some(spawn) = &new.default_spawn {
        within("default_spawn", spawn, limits::MAX_KEY_CHARS)?;
    }
    let meta = object_text("meta", new.meta.as_ref())?;
    let row = query(
        "INSERT INTO game_locations (name, asset_id, default_spawn, meta) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(&new.name)
    .bind(new.asset_id)
    .bind(new.default_spawn.as_deref())
    .bind(meta)
    .fetch_one(&mut *db)
    .await
    .map_err(database_error)?;
    get(db, row.try_get("id").map_err(database_error)?).await
}

/// Replaces all hotspots in one transaction.
pub async fn set_hotspots(
    db: &mut Conn<'_>,
    location_id: i64,
    hotspots: &[Hotspot],
) -> Result<Location, ServiceError> {
    get(db, location_id).await?;
    for hotspot in hotspots {
        within("object_name", &hotspot.object_name, limits::MAX_KEY_CHARS)?;
        within("hotspot_id", &hotspot.hotspot_id, limits::MAX_KEY_CHARS)?;
        if hotspot.object_name.trim().is_empty() || hotspot.hotspot_id.trim().is_empty() {
            return Err(invalid(
                "hotspot object_name and hotspot_id must not be empty",
            ));
        }
    }
    query("DELETE FROM game_hotspots WHERE location_id = $1")
        .bind(location_id)
        .execute(&mut *db)
        .await
        .map_err(database_error)?;
    for hotspot in hotspots {
        query(
            "INSERT INTO game_hotspots (location_id, object_name, hotspot_id, linked_scene_id, meta) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(location_id)
        .bind(&hotspot.object_name)
        .bind(&hotspot.hotspot_id)
        .bind(hotspot.linked_scene_id)
        .bind(hotspot.meta.as_ref().map(ToString::to_string))
        .execute(&mut *db)
        .await
        .map_err(database_error)?;
    }
    get(db, location_id).await
}
