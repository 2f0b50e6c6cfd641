//! Changes at paths inside a JSON document (`session.patch`): the semantics, and the SQLite
//! function `pixsim7_patch(document, changes, max_bytes)` that applies them inside an
//! `UPDATE`, so a patch is one statement that never sends the document to the caller and
//! back. On PostgreSQL the same `apply` runs between `SELECT ... FOR UPDATE` and `UPDATE`.

use plugin_api::game::{apply_changes, DocumentChange, DocumentError};
use serde_json::Value;

/// Why changes could not be applied.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeError {
    /// A value of the wrong shape is on the path (the document is left as it was).
    Shape(String),
    /// The result would be larger than allowed.
    TooLarge {
        /// Its size in bytes of JSON.
        size: usize,
        /// The bound.
        limit: usize,
    },
    /// The change itself is malformed (an empty path, a document that is not JSON).
    Invalid(String),
}

impl std::fmt::Display for ChangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChangeError::Shape(message) | ChangeError::Invalid(message) => f.write_str(message),
            ChangeError::TooLarge { size, limit } => write!(
                f,
                "would be {size} bytes of JSON, over the limit of {limit} bytes"
            ),
        }
    }
}

/// Applies `changes` in order to the document `text` (named `name` in errors); the new
/// document as JSON text, at most `limit` bytes.
pub fn apply(
    name: &str,
    text: &str,
    changes: &[DocumentChange],
    limit: usize,
) -> Result<String, ChangeError> {
    if changes.is_empty() {
        return Ok(text.to_owned());
    }
    let mut document: Value = serde_json::from_str(text)
        .map_err(|e| ChangeError::Invalid(format!("{name} is not JSON: {e}")))?;
    apply_changes(name, &mut document, changes).map_err(|error| match error {
        DocumentError::Shape(message) => ChangeError::Shape(message),
        DocumentError::Invalid(message) => ChangeError::Invalid(message),
    })?;
    let text = document.to_string();
    if text.len() > limit {
        return Err(ChangeError::TooLarge {
            size: text.len(),
            limit,
        });
    }
    Ok(text)
}

/// The prefix of the messages `pixsim7_patch` fails with, by kind, so the caller can tell a
/// conflict from a bound from a malformed change.
pub const SHAPE_PREFIX: &str = "pixsim7_patch shape: ";
/// See [`SHAPE_PREFIX`].
pub const TOO_LARGE_PREFIX: &str = "pixsim7_patch too large: ";
/// See [`SHAPE_PREFIX`].
pub const INVALID_PREFIX: &str = "pixsim7_patch invalid: ";

/// Registers `pixsim7_patch(name, document, changes_json, max_bytes)` on an SQLite
/// connection.
pub fn register(connection: &rusqlite::Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    connection.create_scalar_function(
        "pixsim7_patch",
        4,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |context| {
            let name: String = context.get(0)?;
            let document: String = context.get(1)?;
            let changes: Option<String> = context.get(2)?;
            let limit: i64 = context.get(3)?;
            let Some(changes) = changes else {
                return Ok(document);
            };
            let fail = |prefix: &str, message: String| {
                rusqlite::Error::UserFunctionError(format!("{prefix}{message}").into())
            };
            let changes: Vec<DocumentChange> = serde_json::from_str(&changes)
                .map_err(|e| fail(INVALID_PREFIX, format!("changes to {name}: {e}")))?;
            apply(
                &name,
                &document,
                &changes,
                usize::try_from(limit).unwrap_or(0),
            )
            .map_err(|error| match error {
                ChangeError::Shape(message) => fail(SHAPE_PREFIX, message),
                ChangeError::Invalid(message) => fail(INVALID_PREFIX, message),
                too_large @ ChangeError::TooLarge { .. } => fail(
                    TOO_LARGE_PREFIX,
                    format!("the session's {name} {too_large}"),
                ),
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[track_caller]
    fn check(document: Value, changes: Value, expected: Result<Value, &str>) {
        let changes: Vec<DocumentChange> = serde_json::from_value(changes).unwrap();
        let result = apply("flags", &document.to_string(), &changes, 10_000)
            .map(|text| serde_json::from_str::<Value>(&text).unwrap())
            .map_err(|e| e.to_string());
        match expected {
            Ok(value) => assert_eq!(result, Ok(value)),
            Err(fragment) => {
                let error = result.unwrap_err();
                assert!(error.contains(fragment), "{error}");
            }
        }
    }

    #[test]
    fn changes_create_containers_and_keep_other_keys() {
        check(
            json!({"other": 1}),
            json!([
                {"op": "append", "path": ["stealth", "attempts"], "value": {"n": 1}},
                {"op": "append", "path": ["stealth", "attempts"], "value": {"n": 2}},
                {"op": "set", "path": ["stealth", "seen"], "value": true},
            ]),
            Ok(json!({"other": 1, "stealth": {"attempts": [{"n": 1}, {"n": 2}], "seen": true}})),
        );
        check(
            json!({"a": {"b": 1, "c": 2}}),
            json!([{"op": "remove", "path": ["a", "b"]}, {"op": "remove", "path": ["x", "y"]}]),
            Ok(json!({"a": {"c": 2}})),
        );
    }

    #[test]
    fn add_clamps_defaults_keeps_integers_and_leaves_other_values() {
        check(
            json!({"npc:1": {"affinity": 5, "score": 12.5}, "npc:3": {"score": "high"}}),
            json!([
                {"op": "add", "path": ["npc:1", "affinity"], "by": -10, "min": 0},
                {"op": "add", "path": ["npc:1", "score"], "by": -10, "min": 0},
                {"op": "add", "path": ["npc:2", "affinity"], "by": -10, "min": 0, "default": 50},
                {"op": "add", "path": ["npc:2", "score"], "by": -10},
                {"op": "add", "path": ["npc:3", "score"], "by": -10},
            ]),
            Ok(
                json!({"npc:1": {"affinity": 0, "score": 2.5}, "npc:2": {"affinity": 40},
                      "npc:3": {"score": "high"}}),
            ),
        );
    }

    #[test]
    fn a_wrong_shape_is_an_error_and_never_overwritten() {
        check(
            json!({"stealth": 5}),
            json!([{"op": "set", "path": ["stealth", "x"], "value": 1}]),
            Err("flags.stealth is 5, not an object"),
        );
        check(
            json!({"stealth": {"attempts": "many"}}),
            json!([{"op": "append", "path": ["stealth", "attempts"], "value": 1}]),
            Err("flags.stealth.attempts is \"many\", not a list"),
        );
        check(
            json!({}),
            json!([{"op": "set", "path": [], "value": 1}]),
            Err("at least one key"),
        );
    }

    #[test]
    fn the_result_is_bounded() {
        let changes = vec![DocumentChange::Set {
            path: vec!["big".into()],
            value: json!("x".repeat(100)),
        }];
        assert!(matches!(
            apply("flags", "{}", &changes, 50),
            Err(ChangeError::TooLarge { limit: 50, .. })
        ));
    }
}
