//! NPCs, their expressions and weekly schedules, and who is where at a world time.

use crate::db::sql::{query, Conn, DbError, Row};
use plugin_api::{
    abi::ServiceError,
    game::{
        limits, NewNpc, Npc, NpcExpression, NpcPresence, NpcScheduleEntry, NpcSummary,
        PresenceQuery,
    },
};

use super::{
    database_error, invalid, json_column, not_found, object_text, optional_json_column,
    require_name, within,
};

const SECONDS_PER_DAY: f64 = plugin_api::game::limits::SECONDS_PER_DAY;

fn npc(row: &Row) -> Result<Npc, DbError> {
    Ok(Npc {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        world_id: row.try_get("world_id")?,
        home_location_id: row.try_get("home_location_id")?,
        personality: json_column(&row.try_get::<String, _>("personality")?)?,
    })
}

pub async fn list(db: &mut Conn<'_>) -> Result<Vec<NpcSummary>, ServiceError> {
    let rows = query("SELECT id, name FROM game_npcs ORDER BY id")
        .fetch_all(&mut *db)
        .await
        .map_err(database_error)?;
    rows.iter()
        .map(|row| {
            Ok(NpcSummary {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
            })
        })
        .collect::<Result<_, DbError>>()
        .map_err(database_error)
}

pub async fn get(db: &mut Conn<'_>, id: i64) -> Result<Npc, ServiceError> {
    let row = query(
        "SELECT id, name, world_id, home_location_id, personality FROM game_npcs WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *db)
    .await
    .map_err(database_error)?
    .ok_or_else(|| not_found("GameNPC", id))?;
    npc(&row).map_err(database_error)
}

pub async fn create(db: &mut Conn<'_>, new: &NewNpc) -> Result<Npc, ServiceError> {
    require_name(&new.name)?;
    let personality = object_text("personality", new.personality.as_ref())?;
    if let Some(world_id) = new.world_id {
        // NPCs are world content: the world must exist, whoever plays in it.
        super::worlds::get(db, world_id, super::Scope::System).await?;
    }
    if let Some(location_id) = new.home_location_id {
        super::locations::get(db, location_id).await?;
    }
    let row = query(
        "INSERT INTO game_npcs (name, world_id, home_location_id, personality) VALUES ($1, $2, $3, $4) \
         RETURNING id, name, world_id, home_location_id, personality",
    )
    .bind(&new.name)
    .bind(new.world_id)
    .bind(new.home_location_id)
    .bind(personality)
    .fetch_one(&mut *db)
    .await
    .map_err(database_error)?;
    npc(&row).map_err(database_error)
}

pub async fn expressions(
    db: &mut Conn<'_>,
    npc_id: i64,
) -> Result<Vec<NpcExpression>, ServiceError> {
    get(db, npc_id).await?;
    let rows = query(
        "SELECT state, asset_id, crop, meta FROM game_npc_expressions WHERE npc_id = $1 ORDER BY id",
    )
    .bind(npc_id)
    .fetch_all(&mut *db)
    .await
    .map_err(database_error)?;
    rows.iter()
        .map(|row| {
            Ok(NpcExpression {
                state: row.try_get("state")?,
                asset_id: row.try_get("asset_id")?,
                crop: optional_json_column(row.try_get("crop")?)?,
                meta: optional_json_column(row.try_get("meta")?)?,
            })
        })
        .collect::<Result<_, DbError>>()
        .map_err(database_error)
}

/// Replaces all expressions (atomically: `execute` runs each write call in a savepoint).
pub async fn set_expressions(
    db: &mut Conn<'_>,
    npc_id: i64,
    expressions: &[NpcExpression],
) -> Result<Vec<NpcExpression>, ServiceError> {
    get(db, npc_id).await?;
    query("DELETE FROM game_npc_expressions WHERE npc_id = $1")
        .bind(npc_id)
        .execute(&mut *db)
        .await
        .map_err(database_error)?;
    for expression in expressions {
        within("state", &expression.state, limits::MAX_KEY_CHARS)?;
        if expression.state.trim().is_empty() {
            return Err(invalid("expression state must not be empty"));
        }
        query("INSERT INTO game_npc_expressions (npc_id, state, asset_id, crop, meta) VALUES ($1, $2, $3, $4, $5)")
            .bind(npc_id)
            .bind(&expression.state)
            .bind(expression.asset_id)
            .bind(expression.crop.as_ref().map(ToString::to_string))
            .bind(expression.meta.as_ref().map(ToString::to_string))
            .execute(&mut *db)
            .await
            .map_err(database_error)?;
    }
    self::expressions(db, npc_id).await
}

pub async fn schedules(
    db: &mut Conn<'_>,
    npc_id: i64,
) -> Result<Vec<NpcScheduleEntry>, ServiceError> {
    get(db, npc_id).await?;
    let rows = query(
        "SELECT day_of_week, start_time, end_time, location_id FROM game_npc_schedules \
         WHERE npc_id = $1 ORDER BY day_of_week, start_time, id",
    )
    .bind(npc_id)
    .fetch_all(&mut *db)
    .await
    .map_err(database_error)?;
    rows.iter()
        .map(|row| {
            Ok(NpcScheduleEntry {
                day_of_week: row.try_get("day_of_week")?,
                start_time: row.try_get("start_time")?,
                end_time: row.try_get("end_time")?,
                location_id: row.try_get("location_id")?,
            })
        })
        .collect::<Result<_, DbError>>()
        .map_err(database_error)
}

/// Replaces the weekly schedule in one transaction.
pub async fn set_schedules(
    db: &mut Conn<'_>,
    npc_id: i64,
    entries: &[NpcScheduleEntry],
) -> Result<Vec<NpcScheduleEntry>, ServiceError> {
    get(db, npc_id).await?;
    for entry in entries {
        if !(0..=6).contains(&entry.day_of_week) {
            return Err(invalid(format!(
                "day_of_week must be 0 (Monday) to 6, got {}",
                entry.day_of_week
            )));
        }
        let in_day = |t: f64| (0.0..=SECONDS_PER_DAY).contains(&t);
        if !in_day(entry.start_time)
            || !in_day(entry.end_time)
            || entry.start_time >= entry.end_time
        {
            return Err(invalid(format!(
                "start_time and end_time must be seconds within a day with start before end, got {} and {}",
                entry.start_time, entry.end_time
            )));
        }
        super::locations::get(db, entry.location_id).await?;
    }
    query("DELETE FROM game_npc_schedules WHERE npc_id = $1")
        .bind(npc_id)
        .execute(&mut *db)
        .await
        .map_err(database_error)?;
    for entry in entries {
        query(
            "INSERT INTO game_npc_schedules (npc_id, day_of_week, start_time, end_time, location_id) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(npc_id)
        .bind(entry.day_of_week)
        .bind(entry.start_time)
        .bind(entry.end_time)
        .bind(entry.location_id)
        .execute(&mut *db)
        .await
        .map_err(database_error)?;
    }
    schedules(db, npc_id).await
}

/// The day of week (0 = Monday) and seconds into the day of a world time; world time 0 is
/// Monday 00:00.
pub fn split_world_time(world_time: f64) -> (i64, f64) {
    let days = (world_time / SECONDS_PER_DAY).floor();
    let day_of_week = (days as i64).rem_euclid(7);
    (day_of_week, world_time - days * SECONDS_PER_DAY)
}

pub async fn presence(
    db: &mut Conn<'_>,
    at: &PresenceQuery,
) -> Result<Vec<NpcPresence>, ServiceError> {
    if !at.world_time.is_finite() || at.world_time < 0.0 {
        return Err(invalid("world_time must be a non-negative number"));
    }
    let (day_of_week, seconds) = split_world_time(at.world_time);
    let rows = query(
        "SELECT s.npc_id, s.location_id FROM game_npc_schedules s JOIN game_npcs n ON n.id = s.npc_id \
         WHERE s.day_of_week = $1 AND s.start_time <= $2 AND $2 < s.end_time \
           AND ($3 IS NULL OR s.location_id = $3) AND ($4 IS NULL OR n.world_id = $4) \
         ORDER BY s.npc_id, s.start_time",
    )
    .bind(day_of_week)
    .bind(seconds)
    .bind(at.location_id)
    .bind(at.world_id)
    .fetch_all(&mut *db)
    .await
    .map_err(database_error)?;
    rows.iter()
        .map(|row| {
            Ok(NpcPresence {
                npc_id: row.try_get("npc_id")?,
                location_id: row.try_get("location_id")?,
                state: "scheduled".to_owned(),
            })
        })
        .collect::<Result<_, DbError>>()
        .map_err(database_error)
}

#[cfg(test)]
mod tests {
    use super::split_world_time;

    #[test]
    fn world_time_splits_into_day_and_seconds() {
        assert_eq!(split_world_time(0.0), (0, 0.0));
        assert_eq!(split_world_time(86_400.0 + 3_600.0), (1, 3_600.0));
        assert_eq!(split_world_time(7.0 * 86_400.0 + 5.0), (0, 5.0));
    }
}
