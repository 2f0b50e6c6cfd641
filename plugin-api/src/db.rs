//! Typed values for a plugin's SQL on its own tables (`db.query`, `db.execute`): parameters
//! bound to `$1, $2, ...` and the rows that come back. A column decodes to its type; a value
//! the host cannot decode is an error naming the column, never `null`.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{Map, Value};

/// One SQL value: a parameter, or a column's value in a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SqlValue {
    /// SQL `NULL`.
    Null,
    /// A boolean (`BOOLEAN`; on SQLite, an integer 0/1 in a column declared `BOOLEAN`).
    Bool(bool),
    /// A 64-bit integer.
    Int(i64),
    /// A double.
    Float(f64),
    /// Text.
    Text(String),
    /// Bytes (`BYTEA` / `BLOB`).
    Bytes(Vec<u8>),
    /// A JSON document (`JSONB`/`JSON`; on SQLite, text in a column declared `JSON`).
    Json(Value),
}

impl SqlValue {
    /// A JSON parameter (`SqlValue::json(json!({"k": 1}))`; for your own types,
    /// `serde_json::to_value(&x)?` first).
    pub fn json(value: impl Into<Value>) -> SqlValue {
        SqlValue::Json(value.into())
    }

    /// The value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            SqlValue::Null => "null",
            SqlValue::Bool(_) => "bool",
            SqlValue::Int(_) => "int",
            SqlValue::Float(_) => "float",
            SqlValue::Text(_) => "text",
            SqlValue::Bytes(_) => "bytes",
            SqlValue::Json(_) => "json",
        }
    }

    /// The value as plain JSON (bytes as an array of numbers).
    pub fn to_json(&self) -> Value {
        match self {
            SqlValue::Null => Value::Null,
            SqlValue::Bool(b) => Value::from(*b),
            SqlValue::Int(i) => Value::from(*i),
            SqlValue::Float(f) => Value::from(*f),
            SqlValue::Text(t) => Value::from(t.as_str()),
            SqlValue::Bytes(b) => Value::from(b.clone()),
            SqlValue::Json(v) => v.clone(),
        }
    }
}

macro_rules! from_value {
    ($($ty:ty => |$v:ident| $make:expr;)*) => {
        $(impl From<$ty> for SqlValue {
            fn from($v: $ty) -> SqlValue {
                $make
            }
        })*
    };
}

from_value! {
    bool => |v| SqlValue::Bool(v);
    i64 => |v| SqlValue::Int(v);
    i32 => |v| SqlValue::Int(i64::from(v));
    u32 => |v| SqlValue::Int(i64::from(v));
    f64 => |v| SqlValue::Float(v);
    String => |v| SqlValue::Text(v);
    &str => |v| SqlValue::Text(v.to_owned());
    &String => |v| SqlValue::Text(v.clone());
    Vec<u8> => |v| SqlValue::Bytes(v);
    &[u8] => |v| SqlValue::Bytes(v.to_vec());
}

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(value: Option<T>) -> SqlValue {
        value.map_or(SqlValue::Null, Into::into)
    }
}

/// Parameters for `db_query` / `db_execute`: `params![session_id, "text", SqlValue::json(json!({"k": 1}))]`.
#[macro_export]
macro_rules! params {
    ($($value:expr),* $(,)?) => {
        ::std::vec![$($crate::db::SqlValue::from($value)),*]
    };
}

/// The rows a `db.query` answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rows {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Each row's values, in column order.
    pub rows: Vec<Vec<SqlValue>>,
}

impl Rows {
    /// How many rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows, in order.
    pub fn iter(&self) -> impl Iterator<Item = RowRef<'_>> {
        self.rows.iter().map(|values| RowRef {
            columns: &self.columns,
            values,
        })
    }

    /// The first row, if any.
    pub fn first(&self) -> Option<RowRef<'_>> {
        self.iter().next()
    }

    /// Every row as a JSON object (column → value), e.g. to answer a client.
    pub fn to_json_objects(&self) -> Vec<Map<String, Value>> {
        self.iter().map(|row| row.to_json_object()).collect()
    }
}

/// One row of [`Rows`].
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    columns: &'a [String],
    values: &'a [SqlValue],
}

impl<'a> RowRef<'a> {
    /// The value of `column`, if the row has that column.
    pub fn value(&self, column: &str) -> Option<&'a SqlValue> {
        let index = self.columns.iter().position(|c| c == column)?;
        self.values.get(index)
    }

    /// The value of `column` as `T`; a missing column or a value of another kind is an
    /// error naming the column.
    pub fn get<T: FromSql>(&self, column: &str) -> Result<T, SqlDecodeError> {
        let value = self.value(column).ok_or_else(|| SqlDecodeError {
            column: column.to_owned(),
            problem: format!("no such column (the row has {})", self.columns.join(", ")),
        })?;
        T::from_sql(value).map_err(|problem| SqlDecodeError {
            column: column.to_owned(),
            problem,
        })
    }

    /// The row as a JSON object (column → value).
    pub fn to_json_object(&self) -> Map<String, Value> {
        self.columns
            .iter()
            .zip(self.values)
            .map(|(column, value)| (column.clone(), value.to_json()))
            .collect()
    }
}

/// A column that could not be read as the type asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlDecodeError {
    /// The column.
    pub column: String,
    /// What was wrong.
    pub problem: String,
}

impl std::fmt::Display for SqlDecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "column {}: {}", self.column, self.problem)
    }
}

impl std::error::Error for SqlDecodeError {}

/// A Rust type a column's value reads as.
pub trait FromSql: Sized {
    /// `value` as `Self`, or why not.
    fn from_sql(value: &SqlValue) -> Result<Self, String>;
}

fn mismatch(wanted: &str, value: &SqlValue) -> String {
    format!("expected {wanted}, found {}", value.kind())
}

impl FromSql for i64 {
    fn from_sql(value: &SqlValue) -> Result<i64, String> {
        match value {
            SqlValue::Int(i) => Ok(*i),
            other => Err(mismatch("int", other)),
        }
    }
}

impl FromSql for f64 {
    fn from_sql(value: &SqlValue) -> Result<f64, String> {
        match value {
            SqlValue::Float(f) => Ok(*f),
            SqlValue::Int(i) => Ok(*i as f64),
            other => Err(mismatch("float", other)),
        }
    }
}

impl FromSql for bool {
    fn from_sql(value: &SqlValue) -> Result<bool, String> {
        match value {
            SqlValue::Bool(b) => Ok(*b),
            other => Err(mismatch("bool", other)),
        }
    }
}

impl FromSql for String {
    fn from_sql(value: &SqlValue) -> Result<String, String> {
        match value {
            SqlValue::Text(t) => Ok(t.clone()),
            other => Err(mismatch("text", other)),
        }
    }
}

impl FromSql for Vec<u8> {
    fn from_sql(value: &SqlValue) -> Result<Vec<u8>, String> {
        match value {
            SqlValue::Bytes(b) => Ok(b.clone()),
            other => Err(mismatch("bytes", other)),
        }
    }
}

impl FromSql for Value {
    fn from_sql(value: &SqlValue) -> Result<Value, String> {
        match value {
            SqlValue::Json(v) => Ok(v.clone()),
            other => Err(mismatch("json", other)),
        }
    }
}

impl FromSql for SqlValue {
    fn from_sql(value: &SqlValue) -> Result<SqlValue, String> {
        Ok(value.clone())
    }
}

impl<T: FromSql> FromSql for Option<T> {
    fn from_sql(value: &SqlValue) -> Result<Option<T>, String> {
        match value {
            SqlValue::Null => Ok(None),
            other => T::from_sql(other).map(Some),
        }
    }
}

/// A JSON column deserialized into `T`.
pub struct JsonColumn<T>(pub T);

impl<T: DeserializeOwned> FromSql for JsonColumn<T> {
    fn from_sql(value: &SqlValue) -> Result<JsonColumn<T>, String> {
        match value {
            SqlValue::Json(v) => serde_json::from_value(v.clone())
                .map(JsonColumn)
                .map_err(|e| format!("JSON of an unexpected shape: {e}")),
            other => Err(mismatch("json", other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cross_as_tagged_json_and_read_back_typed() {
        let params = crate::params![1_i64, "a", None::<i64>, true, SqlValue::json(vec![1, 2])];
        let text = serde_json::to_string(&params).unwrap();
        assert_eq!(
            text,
            r#"[{"int":1},{"text":"a"},"null",{"bool":true},{"json":[1,2]}]"#
        );
        let rows = Rows {
            columns: vec!["id".into(), "note".into()],
            rows: vec![vec![SqlValue::Int(7), SqlValue::Null]],
        };
        let row = rows.first().unwrap();
        assert_eq!(row.get::<i64>("id"), Ok(7));
        assert_eq!(row.get::<Option<String>>("note"), Ok(None));
        let wrong = row.get::<String>("id").unwrap_err();
        assert_eq!(wrong.to_string(), "column id: expected text, found int");
        assert!(row.get::<i64>("nope").is_err());
    }
}
