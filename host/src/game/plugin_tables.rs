//! Raw SQL on a plugin's own tables (`db:read`, `db:write`). Plugin tables are named
//! `<plugin_id>__<table>` (with `_` for `-`); a statement naming the host's tables
//! (`game_*`, `pixsim7_*`) or another plugin's is refused. This catches mistakes; it is not
//! a sandbox (see the security model in the README).

use crate::db::sql::{query as sql_query, Conn, DbError, Row, SqlType, SqlValue};
use plugin_api::{
    abi::{ServiceError, ServiceErrorKind},
    game::calls::{Executed, Sql},
};
use serde_json::{Map, Value};

use super::{database_error, service_error};

/// The table-name prefix a plugin owns.
pub fn table_prefix(plugin_id: &str) -> String {
    format!("{}__", plugin_id.replace('-', "_"))
}

/// Refuses statements that name tables the plugin does not own.
pub fn check_ownership(plugin_id: &str, sql: &str) -> Result<(), ServiceError> {
    let own = table_prefix(plugin_id);
    let foreign = words(sql).find(|word| {
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
                "plugin {plugin_id} may only use its own tables ({own}*), but the statement names {table}"
            ),
        )),
        None => Ok(()),
    }
}

fn words(sql: &str) -> impl Iterator<Item = String> + '_ {
    sql.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
}

/// Statements that would change the connection rather than the plugin's data: a raw
/// transaction left open would poison the pooled connection for everyone.
const CONNECTION_STATEMENTS: &[&str] = &[
    "begin",
    "commit",
    "rollback",
    "savepoint",
    "release",
    "end",
    "pragma",
    "attach",
    "detach",
    "vacuum",
    "set",
    "reset",
    "listen",
    "notify",
    "lock",
    "copy",
    "grant",
    "revoke",
];

/// One statement on the plugin's own tables; `read_only` requires a plain SELECT.
fn check_statement(plugin_id: &str, sql: &str, read_only: bool) -> Result<(), ServiceError> {
    let body = sql.trim().trim_end_matches(';');
    if body.contains(';') {
        return Err(bad_call("one statement per call: the SQL contains ';'"));
    }
    let first = words(body).next().unwrap_or_default();
    if CONNECTION_STATEMENTS.contains(&first.as_str()) {
        return Err(bad_call(format!(
            "{} statements are not allowed through db.execute; each call runs in its own transaction",
            first.to_ascii_uppercase()
        )));
    }
    if read_only && first != "select" {
        return Err(bad_call(
            "db.query runs only SELECT statements; use db.execute (db:write) to change data",
        ));
    }
    check_ownership(plugin_id, body)
}

fn bad_call(message: impl Into<String>) -> ServiceError {
    service_error(ServiceErrorKind::BadCall, message)
}

/// The plugin's JSON parameters as SQL values.
fn sql_params(params: &[Value]) -> Result<Vec<SqlValue>, ServiceError> {
    params
        .iter()
        .map(|param| match param {
            Value::Null => Ok(SqlValue::Null(SqlType::Text)),
            Value::Bool(b) => Ok(SqlValue::Integer(i64::from(*b))),
            Value::Number(n) => Ok(match n.as_i64() {
                Some(i) => SqlValue::Integer(i),
                None => SqlValue::Real(n.as_f64().unwrap_or_default()),
            }),
            Value::String(s) => Ok(SqlValue::Text(s.clone())),
            other => Err(bad_call(format!(
                "SQL parameters must be null, booleans, numbers or strings, not {other}"
            ))),
        })
        .collect()
}

pub async fn query(
    db: &mut Conn<'_>,
    plugin_id: &str,
    sql: &Sql,
) -> Result<Vec<Map<String, Value>>, ServiceError> {
    check_statement(plugin_id, &sql.sql, true)?;
    let rows = sql_query(&sql.sql)
        .bind_all(sql_params(&sql.params)?)
        .fetch_all(db)
        .await
        .map_err(sql_error)?;
    Ok(rows.iter().map(row_to_json).collect())
}

pub async fn execute(
    db: &mut Conn<'_>,
    plugin_id: &str,
    sql: &Sql,
) -> Result<Executed, ServiceError> {
    check_statement(plugin_id, &sql.sql, false)?;
    let rows_affected = sql_query(&sql.sql)
        .bind_all(sql_params(&sql.params)?)
        .execute(db)
        .await
        .map_err(sql_error)?;
    Ok(Executed { rows_affected })
}

/// Errors in the plugin's own SQL are the plugin's to fix: a bad call, with the database's
/// message (which goes to the log, not to the client).
fn sql_error(error: DbError) -> ServiceError {
    match error.statement_message() {
        Some(message) => bad_call(format!("SQL error: {message}")),
        None => database_error(error),
    }
}

fn row_to_json(row: &Row) -> Map<String, Value> {
    row.iter()
        .map(|(column, value)| {
            let value = match value {
                SqlValue::Null(_) => Value::Null,
                SqlValue::Integer(i) => Value::from(*i),
                SqlValue::Real(r) => Value::from(*r),
                SqlValue::Text(text) => Value::from(text.as_str()),
                SqlValue::Blob(bytes) => Value::from(String::from_utf8_lossy(bytes).into_owned()),
            };
            (column.to_owned(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::check_ownership;

    #[test]
    fn one_plain_statement_per_call() {
        use super::check_statement;
        check_statement("a", "SELECT x FROM a__t;", true).unwrap();
        check_statement("a", "INSERT INTO a__t (x) VALUES ($1)", false).unwrap();
        for (sql, read_only, fragment) in [
            ("SELECT 1; DELETE FROM a__t", true, "one statement"),
            ("WITH x AS (SELECT 1) DELETE FROM a__t", true, "only SELECT"),
            ("DELETE FROM a__t", true, "only SELECT"),
            ("BEGIN", false, "BEGIN statements are not allowed"),
            ("pragma foreign_keys = off", false, "PRAGMA"),
            ("ATTACH 'x.db' AS y", false, "ATTACH"),
        ] {
            let error = check_statement("a", sql, read_only).unwrap_err();
            assert!(error.message.contains(fragment), "{sql}: {}", error.message);
        }
    }

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
