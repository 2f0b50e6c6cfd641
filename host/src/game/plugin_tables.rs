//! Raw SQL on a plugin's own tables (`db:read`, `db:write`). Plugin tables are named
//! `<plugin_id>__<table>` (with `_` for `-`); a statement naming the host's tables
//! (`game_*`, `pixsim7_*`) or another plugin's is refused. This catches mistakes; it is not
//! a sandbox (see the security model in the README).

use plugin_api::{
    abi::{ServiceError, ServiceErrorKind},
    game::calls::{Executed, Sql},
};
use serde_json::{Map, Value};
use sqlx::{
    any::{AnyArguments, AnyRow, AnyTypeInfoKind},
    query::Query,
    Any, AnyPool, Column, Row, ValueRef,
};

use super::{database_error, invalid, service_error};

/// The table-name prefix a plugin owns.
pub fn table_prefix(plugin_id: &str) -> String {
    format!("{}__", plugin_id.replace('-', "_"))
}

/// Refuses statements that name tables the plugin does not own.
fn check_ownership(plugin_id: &str, sql: &str) -> Result<(), ServiceError> {
    let own = table_prefix(plugin_id);
    let foreign = sql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map(str::to_ascii_lowercase)
        .find(|word| {
            !word.starts_with(&own)
                && (word.starts_with("game_")
                    || word.starts_with("pixsim7_")
                    || word.starts_with("sqlite_")
                    || word.starts_with("pg_")
                    || word.contains("__"))
        });
    match foreign {
        Some(table) => Err(service_error(
            ServiceErrorKind::PermissionDenied,
            format!(
                "plugin {plugin_id} may only use its own tables ({own}*) through db:read/db:write, but the statement names {table}"
            ),
        )),
        None => Ok(()),
    }
}

fn bind_all<'q>(
    mut query: Query<'q, Any, AnyArguments<'q>>,
    params: &'q [Value],
) -> Result<Query<'q, Any, AnyArguments<'q>>, ServiceError> {
    for param in params {
        query = match param {
            Value::Null => query.bind(None::<String>),
            Value::Bool(b) => query.bind(i64::from(*b)),
            Value::Number(n) => match n.as_i64() {
                Some(i) => query.bind(i),
                None => query.bind(n.as_f64().unwrap_or_default()),
            },
            Value::String(s) => query.bind(s.as_str()),
            other => {
                return Err(invalid(format!(
                    "SQL parameters must be null, booleans, numbers or strings, not {other}"
                )))
            }
        };
    }
    Ok(query)
}

pub async fn query(
    pool: &AnyPool,
    plugin_id: &str,
    sql: &Sql,
) -> Result<Vec<Map<String, Value>>, ServiceError> {
    check_ownership(plugin_id, &sql.sql)?;
    let first_word = sql
        .sql
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    if first_word != "SELECT" && first_word != "WITH" {
        return Err(invalid(
            "db.query runs only SELECT statements; use db.execute (db:write) to change data",
        ));
    }
    let rows = bind_all(sqlx::query(&sql.sql), &sql.params)?
        .fetch_all(pool)
        .await
        .map_err(sql_error)?;
    Ok(rows.iter().map(row_to_json).collect())
}

pub async fn execute(pool: &AnyPool, plugin_id: &str, sql: &Sql) -> Result<Executed, ServiceError> {
    check_ownership(plugin_id, &sql.sql)?;
    let result = bind_all(sqlx::query(&sql.sql), &sql.params)?
        .execute(pool)
        .await
        .map_err(sql_error)?;
    Ok(Executed {
        rows_affected: result.rows_affected(),
    })
}

/// Errors in the plugin's own SQL are the plugin's to fix: reported as invalid, with the
/// database's message.
fn sql_error(error: sqlx::Error) -> ServiceError {
    match error {
        sqlx::Error::Database(db) => invalid(format!("SQL error: {}", db.message())),
        other => database_error(other),
    }
}

fn row_to_json(row: &AnyRow) -> Map<String, Value> {
    row.columns()
        .iter()
        .map(|column| {
            let index = column.ordinal();
            let null = row.try_get_raw(index).map_or(true, |raw| raw.is_null());
            let value = if null {
                Value::Null
            } else {
                match column.type_info().kind() {
                    AnyTypeInfoKind::Bool => row
                        .try_get::<bool, _>(index)
                        .map(Value::from)
                        .unwrap_or(Value::Null),
                    AnyTypeInfoKind::SmallInt
                    | AnyTypeInfoKind::Integer
                    | AnyTypeInfoKind::BigInt => row
                        .try_get::<i64, _>(index)
                        .map(Value::from)
                        .unwrap_or(Value::Null),
                    AnyTypeInfoKind::Real | AnyTypeInfoKind::Double => row
                        .try_get::<f64, _>(index)
                        .map(Value::from)
                        .unwrap_or(Value::Null),
                    _ => row
                        .try_get::<String, _>(index)
                        .map(Value::from)
                        .or_else(|_| row.try_get::<i64, _>(index).map(Value::from))
                        .or_else(|_| row.try_get::<f64, _>(index).map(Value::from))
                        .unwrap_or(Value::Null),
                }
            };
            (column.name().to_owned(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::check_ownership;

    #[test]
    fn only_own_tables_are_allowed() {
        check_ownership(
            "game-dialogue",
            "SELECT * FROM game_dialogue__lines WHERE id = $1",
        )
        .unwrap();
        let denied =
            check_ownership("game-dialogue", "UPDATE game_sessions SET flags = '{}'").unwrap_err();
        assert!(
            denied.message.contains("names game_sessions"),
            "{}",
            denied.message
        );
        assert!(check_ownership("game-dialogue", "select * from game_stealth__log").is_err());
        assert!(check_ownership("a", "DELETE FROM pixsim7_migrations").is_err());
    }
}
