//! The one way host code runs SQL, on either database: `query(sql).bind(..).fetch_*(conn)`,
//! with `$1`-style parameters, rows of typed values, and errors that name the column.
//!
//! SQLite statements run right here, on the calling thread, through rusqlite's statement
//! cache: no thread hop, no channel per statement. PostgreSQL statements go through sqlx
//! (which prepares each once per connection).

use std::{fmt, sync::Arc};

use sqlx::{Column as _, Row as _, TypeInfo as _, ValueRef as _};

/// A connection lent for some statements.
pub enum Conn<'a> {
    /// SQLite, executed synchronously on this thread.
    Sqlite(&'a mut rusqlite::Connection),
    /// PostgreSQL.
    Postgres(&'a mut sqlx::PgConnection),
}

/// The type of a value, for typed NULLs (PostgreSQL wants to know what a NULL parameter is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// `BIGINT`
    Integer,
    /// `DOUBLE PRECISION`
    Real,
    /// `TEXT`
    Text,
    /// `BLOB` / `BYTEA`
    Blob,
}

/// One value, as a parameter or in a row.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// `NULL` of a type.
    Null(SqlType),
    /// An integer (booleans too).
    Integer(i64),
    /// A float.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

macro_rules! from_value {
    ($($t:ty => $variant:ident, $ty:ident, $convert:expr;)*) => {$(
        impl From<$t> for SqlValue {
            fn from(value: $t) -> SqlValue {
                SqlValue::$variant($convert(value))
            }
        }
        impl From<Option<$t>> for SqlValue {
            fn from(value: Option<$t>) -> SqlValue {
                value.map_or(SqlValue::Null(SqlType::$ty), SqlValue::from)
            }
        }
    )*};
}

from_value! {
    i64 => Integer, Integer, |v| v;
    bool => Integer, Integer, i64::from;
    f64 => Real, Real, |v| v;
    String => Text, Text, |v| v;
    &str => Text, Text, str::to_owned;
    &String => Text, Text, String::clone;
    Vec<u8> => Blob, Blob, |v| v;
}

/// Why a statement failed.
#[derive(Debug)]
pub enum DbError {
    /// SQLite refused or failed.
    Sqlite(rusqlite::Error),
    /// PostgreSQL (or the connection to it) refused or failed.
    Postgres(sqlx::Error),
    /// A value could not be read as the type asked for.
    Decode {
        /// The column.
        column: String,
        /// What was expected and what was found.
        problem: String,
    },
    /// A query that must answer one row answered none.
    NoRow,
    /// No connection could be had (the pool is closed or exhausted for too long).
    Unavailable(String),
    /// The database's confinement of a plugin's statement refused it (`db::confine`).
    Refused(String),
    /// A plugin's statement is wrong in a way the host noticed before running it.
    Statement(String),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Sqlite(error) => write!(f, "{error}"),
            DbError::Postgres(error) => write!(f, "{error}"),
            DbError::Decode { column, problem } => {
                write!(f, "column {column} cannot be read: {problem}")
            }
            DbError::NoRow => f.write_str("the query answered no row"),
            DbError::Unavailable(why) => write!(f, "no database connection: {why}"),
            DbError::Refused(why) => write!(f, "refused: {why}"),
            DbError::Statement(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for DbError {}

impl From<rusqlite::Error> for DbError {
    fn from(error: rusqlite::Error) -> Self {
        DbError::Sqlite(error)
    }
}

impl From<sqlx::Error> for DbError {
    fn from(error: sqlx::Error) -> Self {
        DbError::Postgres(error)
    }
}

impl DbError {
    /// The database's own message when it refused the statement itself (bad SQL, a broken
    /// constraint), as opposed to being unreachable.
    pub fn statement_message(&self) -> Option<String> {
        match self {
            DbError::Sqlite(rusqlite::Error::SqliteFailure(_, Some(message))) => {
                Some(message.clone())
            }
            DbError::Sqlite(rusqlite::Error::SqlInputError { msg, .. }) => Some(msg.clone()),
            DbError::Sqlite(
                error @ (rusqlite::Error::InvalidParameterCount(..)
                | rusqlite::Error::InvalidColumnType(..)
                | rusqlite::Error::SqliteFailure(..)),
            ) => Some(error.to_string()),
            DbError::Postgres(sqlx::Error::Database(error)) => Some(error.message().to_owned()),
            DbError::Statement(message) => Some(message.clone()),
            DbError::Decode { .. } => Some(self.to_string()),
            _ => None,
        }
    }
}

/// One row: column names (shared by the rows of one result) and values.
#[derive(Debug, Clone)]
pub struct Row {
    columns: Arc<[String]>,
    values: Vec<SqlValue>,
}

/// A column, by name or position.
pub trait ColumnIndex {
    /// The position in `columns`.
    fn position(&self, columns: &[String]) -> Option<usize>;
    /// How to name it in an error.
    fn describe(&self) -> String;
}

impl ColumnIndex for &str {
    fn position(&self, columns: &[String]) -> Option<usize> {
        columns.iter().position(|c| c == self)
    }
    fn describe(&self) -> String {
        (*self).to_owned()
    }
}

impl ColumnIndex for usize {
    fn position(&self, columns: &[String]) -> Option<usize> {
        (*self < columns.len()).then_some(*self)
    }
    fn describe(&self) -> String {
        format!("#{self}")
    }
}

/// A Rust type a value can be read as.
pub trait FromValue: Sized {
    /// The value as this type, or what was wrong.
    fn from_value(value: &SqlValue) -> Result<Self, String>;
}

fn found(value: &SqlValue) -> String {
    match value {
        SqlValue::Null(_) => "NULL".to_owned(),
        SqlValue::Integer(i) => format!("the integer {i}"),
        SqlValue::Real(r) => format!("the float {r}"),
        SqlValue::Text(_) => "text".to_owned(),
        SqlValue::Blob(_) => "bytes".to_owned(),
    }
}

impl FromValue for i64 {
    fn from_value(value: &SqlValue) -> Result<Self, String> {
        match value {
            SqlValue::Integer(i) => Ok(*i),
            other => Err(format!("expected an integer, found {}", found(other))),
        }
    }
}

impl FromValue for f64 {
    fn from_value(value: &SqlValue) -> Result<Self, String> {
        match value {
            SqlValue::Real(r) => Ok(*r),
            // SQLite keeps a whole number written to a REAL column as REAL, but an expression
            // may still yield an integer.
            SqlValue::Integer(i) => Ok(*i as f64),
            other => Err(format!("expected a float, found {}", found(other))),
        }
    }
}

impl FromValue for String {
    fn from_value(value: &SqlValue) -> Result<Self, String> {
        match value {
            SqlValue::Text(text) => Ok(text.clone()),
            other => Err(format!("expected text, found {}", found(other))),
        }
    }
}

impl FromValue for bool {
    fn from_value(value: &SqlValue) -> Result<Self, String> {
        match value {
            SqlValue::Integer(i) => Ok(*i != 0),
            other => Err(format!("expected a boolean, found {}", found(other))),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &SqlValue) -> Result<Self, String> {
        match value {
            SqlValue::Null(_) => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

impl Row {
    /// The value of `column` as `T`.
    pub fn try_get<T: FromValue, I: ColumnIndex>(&self, column: I) -> Result<T, DbError> {
        let value = column
            .position(&self.columns)
            .map(|i| &self.values[i])
            .ok_or_else(|| DbError::Decode {
                column: column.describe(),
                problem: "no such column in the result".to_owned(),
            })?;
        T::from_value(value).map_err(|problem| DbError::Decode {
            column: column.describe(),
            problem,
        })
    }

    /// Column names and values, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &SqlValue)> {
        self.columns
            .iter()
            .map(String::as_str)
            .zip(self.values.iter())
    }
}

/// A statement with its parameters, ready to run.
pub struct Query<'q> {
    sql: &'q str,
    params: Vec<SqlValue>,
}

/// A statement with `$1`, `$2`, ... parameters.
pub fn query(sql: &str) -> Query<'_> {
    Query {
        sql,
        params: Vec::new(),
    }
}

impl<'q> Query<'q> {
    /// Binds the next parameter.
    pub fn bind(mut self, value: impl Into<SqlValue>) -> Query<'q> {
        self.params.push(value.into());
        self
    }

    /// Binds parameters already converted.
    pub fn bind_all(mut self, values: impl IntoIterator<Item = SqlValue>) -> Query<'q> {
        self.params.extend(values);
        self
    }

    /// Every row.
    pub async fn fetch_all(self, conn: &mut Conn<'_>) -> Result<Vec<Row>, DbError> {
        match conn {
            Conn::Sqlite(connection) => sqlite_rows(connection, self.sql, &self.params, usize::MAX),
            Conn::Postgres(connection) => {
                let rows = pg_fetch_all(connection, self.sql, &self.params).await?;
                postgres_rows(&rows)
            }
        }
    }

    /// The first row, if any.
    pub async fn fetch_optional(self, conn: &mut Conn<'_>) -> Result<Option<Row>, DbError> {
        match conn {
            Conn::Sqlite(connection) => {
                Ok(sqlite_rows(connection, self.sql, &self.params, 1)?.pop())
            }
            Conn::Postgres(connection) => {
                let row = pg_fetch_optional(connection, self.sql, &self.params).await?;
                Ok(postgres_rows(row.as_slice())?.pop())
            }
        }
    }

    /// The first row; none is an error.
    pub async fn fetch_one(self, conn: &mut Conn<'_>) -> Result<Row, DbError> {
        self.fetch_optional(conn).await?.ok_or(DbError::NoRow)
    }

    /// Runs a statement that answers no rows; the number of rows it changed.
    pub async fn execute(self, conn: &mut Conn<'_>) -> Result<u64, DbError> {
        match conn {
            Conn::Sqlite(connection) => {
                let mut statement = connection.prepare_cached(self.sql)?;
                bind_sqlite(&mut statement, &self.params)?;
                Ok(statement.raw_execute()? as u64)
            }
            Conn::Postgres(connection) => Ok(pg_execute(connection, self.sql, &self.params).await?),
        }
    }
}

/// Runs a script of several statements without parameters (migrations, transaction control).
pub async fn execute_script(conn: &mut Conn<'_>, sql: &str) -> Result<(), DbError> {
    match conn {
        Conn::Sqlite(connection) => Ok(sqlite_script(connection, sql)?),
        Conn::Postgres(connection) => Ok(pg_script(connection, sql).await?),
    }
}

/// Runs `sql` on SQLite: a single statement from the statement cache (transaction control
/// runs several times per request), a script of several parsed afresh.
pub fn sqlite_script(connection: &rusqlite::Connection, sql: &str) -> rusqlite::Result<()> {
    if sql.contains(';') {
        return connection.execute_batch(sql);
    }
    connection.prepare_cached(sql)?.raw_execute().map(drop)
}

/// Binds `$n` parameters by number: SQLite numbers `$name` parameters in order of first
/// appearance, so each is looked up by its name rather than trusted to be in place.
fn bind_sqlite(
    statement: &mut rusqlite::CachedStatement<'_>,
    params: &[SqlValue],
) -> Result<(), DbError> {
    let count = statement.parameter_count();
    for index in 1..=count {
        let number = statement
            .parameter_name(index)
            .and_then(|name| name.strip_prefix('$').or_else(|| name.strip_prefix('?')))
            .and_then(|digits| digits.parse::<usize>().ok())
            .unwrap_or(index);
        let value = params.get(number - 1).ok_or_else(|| {
            DbError::Sqlite(rusqlite::Error::InvalidParameterCount(params.len(), count))
        })?;
        match value {
            SqlValue::Null(_) => statement.raw_bind_parameter(index, rusqlite::types::Null)?,
            SqlValue::Integer(i) => statement.raw_bind_parameter(index, i)?,
            SqlValue::Real(r) => statement.raw_bind_parameter(index, r)?,
            SqlValue::Text(text) => statement.raw_bind_parameter(index, text.as_str())?,
            SqlValue::Blob(bytes) => statement.raw_bind_parameter(index, bytes.as_slice())?,
        }
    }
    Ok(())
}

fn sqlite_rows(
    connection: &rusqlite::Connection,
    sql: &str,
    params: &[SqlValue],
    limit: usize,
) -> Result<Vec<Row>, DbError> {
    let mut statement = connection.prepare_cached(sql)?;
    bind_sqlite(&mut statement, params)?;
    let columns: Arc<[String]> = statement
        .column_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let width = columns.len();
    let mut rows = statement.raw_query();
    let mut out = Vec::new();
    while out.len() < limit {
        let Some(row) = rows.next()? else { break };
        let mut values = Vec::with_capacity(width);
        for index in 0..width {
            use rusqlite::types::ValueRef;
            values.push(match row.get_ref(index)? {
                ValueRef::Null => SqlValue::Null(SqlType::Text),
                ValueRef::Integer(i) => SqlValue::Integer(i),
                ValueRef::Real(r) => SqlValue::Real(r),
                ValueRef::Text(bytes) => {
                    SqlValue::Text(String::from_utf8(bytes.to_vec()).map_err(|_| {
                        DbError::Decode {
                            column: columns[index].clone(),
                            problem: "the text is not UTF-8".to_owned(),
                        }
                    })?)
                }
                ValueRef::Blob(bytes) => SqlValue::Blob(bytes.to_vec()),
            });
        }
        out.push(Row {
            columns: columns.clone(),
            values,
        });
    }
    Ok(out)
}

// The PostgreSQL calls are boxed: sqlx's executor traits, borrowed through `Conn`, trip
// rustc's check that the plugin-facing future is `Send` for every lifetime ("implementation
// of `Executor` is not general enough"); a boxed future names one lifetime.
pub(super) type PgFuture<'c, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, sqlx::Error>> + Send + 'c>>;

/// A bound PostgreSQL query (the host's parameters here, a plugin's in `confine`).
pub(super) type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// All rows of a bound query.
pub(super) fn pg_fetch_all_bound<'c>(
    connection: &'c mut sqlx::PgConnection,
    query: PgQuery<'c>,
) -> PgFuture<'c, Vec<sqlx::postgres::PgRow>> {
    Box::pin(query.fetch_all(connection))
}

/// Runs a bound query; the rows it changed.
pub(super) fn pg_execute_bound<'c>(
    connection: &'c mut sqlx::PgConnection,
    query: PgQuery<'c>,
) -> PgFuture<'c, u64> {
    Box::pin(async move { Ok(query.execute(connection).await?.rows_affected()) })
}

fn pg_fetch_all<'c>(
    connection: &'c mut sqlx::PgConnection,
    sql: &'c str,
    params: &'c [SqlValue],
) -> PgFuture<'c, Vec<sqlx::postgres::PgRow>> {
    pg_fetch_all_bound(connection, postgres_query(sql, params))
}

fn pg_fetch_optional<'c>(
    connection: &'c mut sqlx::PgConnection,
    sql: &'c str,
    params: &'c [SqlValue],
) -> PgFuture<'c, Option<sqlx::postgres::PgRow>> {
    Box::pin(postgres_query(sql, params).fetch_optional(connection))
}

fn pg_execute<'c>(
    connection: &'c mut sqlx::PgConnection,
    sql: &'c str,
    params: &'c [SqlValue],
) -> PgFuture<'c, u64> {
    pg_execute_bound(connection, postgres_query(sql, params))
}

/// Runs `sql` (any number of statements) through the simple-query protocol.
pub(super) fn pg_script<'c>(
    connection: &'c mut sqlx::PgConnection,
    sql: &'c str,
) -> PgFuture<'c, ()> {
    // `&str` runs through the simple-query protocol, which takes several statements.
    let run = sqlx::Executor::execute(connection, sql);
    Box::pin(async move {
        run.await?;
        Ok(())
    })
}

fn postgres_query<'q>(sql: &'q str, params: &'q [SqlValue]) -> PgQuery<'q> {
    let mut query = sqlx::query(sql);
    for value in params {
        query = match value {
            SqlValue::Null(SqlType::Integer) => query.bind(None::<i64>),
            SqlValue::Null(SqlType::Real) => query.bind(None::<f64>),
            SqlValue::Null(SqlType::Text) => query.bind(None::<String>),
            SqlValue::Null(SqlType::Blob) => query.bind(None::<Vec<u8>>),
            SqlValue::Integer(i) => query.bind(*i),
            SqlValue::Real(r) => query.bind(*r),
            SqlValue::Text(text) => query.bind(text.as_str()),
            SqlValue::Blob(bytes) => query.bind(bytes.as_slice()),
        };
    }
    query
}

fn postgres_rows(rows: &[sqlx::postgres::PgRow]) -> Result<Vec<Row>, DbError> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let columns: Arc<[String]> = first
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    rows.iter()
        .map(|row| {
            let values = row
                .columns()
                .iter()
                .map(|column| postgres_value(row, column))
                .collect::<Result<_, _>>()?;
            Ok(Row {
                columns: columns.clone(),
                values,
            })
        })
        .collect()
}

fn postgres_value(
    row: &sqlx::postgres::PgRow,
    column: &sqlx::postgres::PgColumn,
) -> Result<SqlValue, DbError> {
    let index = column.ordinal();
    let type_name = column.type_info().name();
    let decode = |error: sqlx::Error| DbError::Decode {
        column: column.name().to_owned(),
        problem: format!("{type_name}: {error}"),
    };
    let null = row.try_get_raw(index).map_err(decode)?.is_null();
    let kind = match type_name {
        "INT2" | "INT4" | "INT8" | "BOOL" => SqlType::Integer,
        "FLOAT4" | "FLOAT8" => SqlType::Real,
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "JSON" | "JSONB" => SqlType::Text,
        "BYTEA" => SqlType::Blob,
        other => {
            return Err(DbError::Decode {
                column: column.name().to_owned(),
                problem: format!(
                    "its type {other} is not one the host reads (integers, floats, text, JSON, bytes, booleans)"
                ),
            })
        }
    };
    if null {
        return Ok(SqlValue::Null(kind));
    }
    Ok(match type_name {
        "INT2" => SqlValue::Integer(row.try_get::<i16, _>(index).map_err(decode)?.into()),
        "INT4" => SqlValue::Integer(row.try_get::<i32, _>(index).map_err(decode)?.into()),
        "INT8" => SqlValue::Integer(row.try_get::<i64, _>(index).map_err(decode)?),
        "BOOL" => SqlValue::Integer(row.try_get::<bool, _>(index).map_err(decode)?.into()),
        "FLOAT4" => SqlValue::Real(row.try_get::<f32, _>(index).map_err(decode)?.into()),
        "FLOAT8" => SqlValue::Real(row.try_get::<f64, _>(index).map_err(decode)?),
        "JSON" | "JSONB" => SqlValue::Text(
            row.try_get::<sqlx::types::JsonValue, _>(index)
                .map_err(decode)?
                .to_string(),
        ),
        "BYTEA" => SqlValue::Blob(row.try_get::<Vec<u8>, _>(index).map_err(decode)?),
        _ => SqlValue::Text(row.try_get::<String, _>(index).map_err(decode)?),
    })
}
