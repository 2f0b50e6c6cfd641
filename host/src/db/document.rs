//! Changes at paths inside a JSON document (`session.patch`): the semantics, and the SQLite
//! function `pixsim7_patch(document, changes, max_bytes)` that applies them inside an
//! `UPDATE`, so a patch is one statement that never sends the document to the caller and
//! back. On PostgreSQL the same `apply` runs between `SELECT ... FOR UPDATE` and `UPDATE`.
//!
//! The document is edited lazily: only the objects on a change's path are parsed (into
//! their keys and the raw text of each value); everything else, such as a long list that a
//! change appends to, is copied through as text. A session's documents grow with play, and
//! this keeps a change's cost independent of their size. The semantics are those of
//! `plugin_api::game::apply_changes` (which plugins test against); a test below holds the two
//! to each other.

use std::fmt::Write as _;

use plugin_api::game::DocumentChange;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{value::RawValue, Value};

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
    // The root is always an object (sessions store objects); parsing its entries checks the
    // whole text once.
    let Entries(entries) = serde_json::from_str(text)
        .map_err(|e| ChangeError::Invalid(format!("{name} is not a JSON object: {e}")))?;
    let mut root = Node::Object(entries);
    for change in changes {
        apply_change(name, &mut root, change)?;
    }
    let mut text = String::with_capacity(text.len() + 256);
    root.write(&mut text);
    if text.len() > limit {
        return Err(ChangeError::TooLarge {
            size: text.len(),
            limit,
        });
    }
    Ok(text)
}

/// A document being edited: raw text where untouched.
enum Node<'a> {
    /// Not looked into.
    Raw(&'a RawValue),
    /// An object on some change's path: its entries in order.
    Object(Vec<(String, Node<'a>)>),
    /// A list appended to: the original text and the appended values' texts.
    Appended(&'a str, Vec<String>),
    /// A value a change wrote.
    Value(Value),
}

impl<'a> Node<'a> {
    /// The text this node stands for, for error messages (long values cut short).
    fn describe(&self) -> String {
        let mut text = String::new();
        self.write(&mut text);
        if text.len() > 80 {
            let cut = (0..=80)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            text.truncate(cut);
            text.push_str("...");
        }
        text
    }

    fn write(&self, out: &mut String) {
        match self {
            Node::Raw(raw) => out.push_str(raw.get()),
            Node::Value(value) => {
                out.push_str(&serde_json::to_string(value).expect("a JSON value serializes"))
            }
            Node::Object(entries) => {
                out.push('{');
                for (index, (key, value)) in entries.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(key).expect("a string serializes"));
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
            Node::Appended(list, appended) => {
                let open = list
                    .trim_end()
                    .strip_suffix(']')
                    .expect("a list ends with ]");
                out.push_str(open);
                let empty = open.trim_end().ends_with('[');
                for (index, value) in appended.iter().enumerate() {
                    if index > 0 || !empty {
                        out.push(',');
                    }
                    out.push_str(value);
                }
                out.push(']');
            }
        }
    }

    /// This node as an object's entries, parsing its raw text if need be; `None` if it is
    /// not an object.
    fn entries(&mut self) -> Option<&mut Vec<(String, Node<'a>)>> {
        if let Node::Raw(raw) = self {
            if !raw.get().starts_with('{') {
                return None;
            }
            let Entries(entries) = serde_json::from_str(raw.get()).ok()?;
            *self = Node::Object(entries);
        }
        if let Node::Value(Value::Object(map)) = self {
            let entries = std::mem::take(map)
                .into_iter()
                .map(|(k, v)| (k, Node::Value(v)))
                .collect();
            *self = Node::Object(entries);
        }
        match self {
            Node::Object(entries) => Some(entries),
            _ => None,
        }
    }
}

/// An object's entries in order, each value left as raw text.
struct Entries<'a>(Vec<(String, Node<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Entries<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Entries<'de>, M::Error> {
                let mut entries = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
                    // A repeated key: the last one counts, as in serde_json's own maps.
                    entries.retain(|(k, _): &(String, Node<'de>)| *k != key);
                    entries.push((key, Node::Raw(value)));
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

fn apply_change(
    name: &str,
    root: &mut Node<'_>,
    change: &DocumentChange,
) -> Result<(), ChangeError> {
    let (last, parents) = change.split_path(name).map_err(ChangeError::Invalid)?;
    let create = !matches!(change, DocumentChange::Remove { .. });
    let shape = |at: &str, node: &Node<'_>, wanted: &str| {
        ChangeError::Shape(format!("{at} is {}, not {wanted}", node.describe()))
    };
    let mut container = root;
    let mut at = name.to_owned();
    if container.entries().is_none() {
        return Err(shape(&at, container, "an object"));
    }
    for key in parents {
        let entries = container.entries().expect("checked to be an object");
        let position = match entries.iter().position(|(k, _)| k == key) {
            Some(position) => position,
            None if create => {
                entries.push((key.clone(), Node::Object(Vec::new())));
                entries.len() - 1
            }
            None => return Ok(()), // removing under a path that does not exist
        };
        let _ = write!(at, ".{key}");
        container = &mut entries[position].1;
        if container.entries().is_none() {
            return Err(shape(&at, container, "an object"));
        }
    }
    let entries = container.entries().expect("checked to be an object");
    let _ = write!(at, ".{last}");
    let position = entries.iter().position(|(k, _)| k == last);
    match change {
        DocumentChange::Set { value, .. } => match position {
            Some(position) => entries[position].1 = Node::Value(value.clone()),
            None => entries.push((last.clone(), Node::Value(value.clone()))),
        },
        DocumentChange::Remove { .. } => {
            if let Some(position) = position {
                entries.remove(position);
            }
        }
        DocumentChange::Append { value, .. } => {
            let text = serde_json::to_string(value).expect("a JSON value serializes");
            let Some(position) = position else {
                entries.push((last.clone(), Node::Appended("[]", vec![text])));
                return Ok(());
            };
            let node = &mut entries[position].1;
            match node {
                Node::Appended(_, appended) => appended.push(text),
                Node::Raw(raw) if raw.get().starts_with('[') => {
                    *node = Node::Appended(raw.get(), vec![text]);
                }
                Node::Value(Value::Array(list)) => list.push(value.clone()),
                other => return Err(shape(&at, other, "a list")),
            }
        }
        DocumentChange::Add { .. } => {
            let current = match position.map(|p| &entries[p].1) {
                None => None,
                Some(Node::Raw(raw)) => {
                    Some(serde_json::from_str::<Value>(raw.get()).expect("raw text is JSON"))
                }
                Some(Node::Value(value)) => Some(value.clone()),
                Some(_) => return Ok(()), // an object or a list: not a number
            };
            if let Some(value) = change.added_to(current.as_ref()) {
                match position {
                    Some(position) => entries[position].1 = Node::Value(value),
                    None => entries.push((last.clone(), Node::Value(value))),
                }
            }
        }
    }
    Ok(())
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
    fn the_lazy_editor_agrees_with_the_plugin_side_semantics() {
        let documents = [
            json!({}),
            json!({"stealth": {"pickpocket_attempts": [{"n": 0}], "x": 1}, "b": [1, 2]}),
            json!({"stealth": 5, "npc:1": {"score": "high", "affinity": 12.5}}),
            json!({"stealth": {"pickpocket_attempts": {}}, "npc:1": {"score": 3}}),
            json!({"npc:1": {"flags": [], "score": null}, "e": []}),
        ];
        let changes = json!([
            [{"op": "append", "path": ["stealth", "pickpocket_attempts"], "value": {"n": 1}}],
            [{"op": "append", "path": ["e"], "value": 1}, {"op": "append", "path": ["e"], "value": [2]}],
            [{"op": "append", "path": ["b"], "value": 3}, {"op": "remove", "path": ["b"]}],
            [{"op": "set", "path": ["npc:1", "flags", "caught"], "value": true}],
            [{"op": "set", "path": ["x", "y"], "value": {"z": [1]}}, {"op": "append", "path": ["x", "y", "z"], "value": 2}],
            [{"op": "add", "path": ["npc:1", "score"], "by": -10, "min": 0}],
            [{"op": "add", "path": ["npc:1", "affinity"], "by": -10, "min": 0, "default": 50}],
            [{"op": "add", "path": ["npc:2", "affinity"], "by": -10, "min": 0, "default": 50}],
            [{"op": "remove", "path": ["stealth", "x"]}, {"op": "remove", "path": ["q", "r"]}],
        ]);
        for document in &documents {
            for change in changes.as_array().unwrap() {
                let change: Vec<DocumentChange> = serde_json::from_value(change.clone()).unwrap();
                let mut expected = document.clone();
                let expected = plugin_api::game::apply_changes("flags", &mut expected, &change)
                    .map(|()| expected)
                    .map_err(|e| match e {
                        plugin_api::game::DocumentError::Shape(m)
                        | plugin_api::game::DocumentError::Invalid(m) => m,
                    });
                let lazy = apply("flags", &document.to_string(), &change, 1 << 20)
                    .map(|text| serde_json::from_str::<Value>(&text).unwrap())
                    .map_err(|e| e.to_string());
                assert_eq!(lazy, expected, "{document} with {change:?}");
            }
        }
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
