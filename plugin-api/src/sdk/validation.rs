//! Request validation in FastAPI's words: path, query and JSON-body input that does not fit
//! answers 422 with `{"detail": [...]}` listing every problem the way pydantic v2 reports it.
//!
//! A JSON body is checked in three steps. The bytes are parsed to a [`Value`] (a syntax error
//! is pydantic's `json_invalid`). The value is then walked together with the JSON Schema
//! `schemars` derives for the target type, collecting *every* issue with its `loc`. A body
//! keeps to the JSON types its schema (and so `/openapi.json`) states, with one conversion:
//! an integral float for an integer (`175.0`, which JSON Schema counts as an integer and
//! pydantic accepts; `175.5` is `int_from_float`). Path and query text is read as pydantic's
//! lax mode reads it (`"175"`, `"175.0"`, `"yes"`). Constraints (`minimum`, `maxLength`,
//! `pattern`, ...) are checked too, so a request the schema admits is one the handler gets,
//! and one it does not is refused. Finally serde deserializes the coerced value and has the last word: an input the
//! walk passed but serde rejects is one `value_error`, and structural issues the walk reported
//! for an input serde accepts anyway (a schema shape the walk misread, a serde `alias`) are
//! dropped, so the walk can never reject a body the type itself accepts. Only the schema's own
//! constraints (ranges, lengths), which serde does not check, are reported regardless.
//!
//! Issues have pydantic's shape, `{"type", "loc", "msg", "input"}` plus `"ctx"` where pydantic
//! has one, e.g. `{"type": "missing", "loc": ["body", "npc_id"], "msg": "Field required",
//! "input": {}}`.

use std::{
    any::TypeId,
    borrow::Cow,
    cell::Cell,
    cmp::Ordering,
    collections::HashMap,
    fmt,
    str::FromStr,
    sync::{Arc, OnceLock, RwLock},
};

use schemars::JsonSchema;
use serde::de::{DeserializeOwned, Visitor};
use serde_json::{json, Map, Number, Value};

use super::error::ApiError;

/// Parses a JSON request body into T, or a 422 ApiError listing every problem.
///
/// As in FastAPI, an empty body (or `null`, unless `T` takes it) is the `missing` issue at
/// `["body"]`; malformed JSON, trailing garbage and a body of only whitespace are one
/// `json_invalid` issue at `["body", <character position>]`; otherwise every field that does
/// not fit `T` is listed, in the order pydantic would list them.
pub fn parse_json_body<T: DeserializeOwned + JsonSchema>(body: &[u8]) -> Result<T, ApiError> {
    let missing_body = || {
        let loc = [json!("body")];
        ApiError::validation_issues(vec![issue("missing", &loc, "Field required", Value::Null)])
    };
    if body.is_empty() {
        return Err(missing_body());
    }
    // Python's json.loads skips a UTF-8 byte order mark, and counts positions after it.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut value: Value = serde_json::from_slice(body)
        .map_err(|error| ApiError::validation_issues(vec![json_invalid(body, &error)]))?;
    if value.is_null() {
        return T::deserialize(&value).map_err(|_| missing_body());
    }

    let body_schema = BodySchema::of::<T>();
    let mut checker = Checker::new(&body_schema.schema, body_schema.fields);
    checker.check(&body_schema.schema, &mut value, &mut vec![json!("body")]);
    let issues = checker.issues;

    match deserialize_reporting_path::<T>(&value) {
        Ok(parsed) => {
            // serde took the shape, so only the constraints serde cannot check still count.
            let constraints: Vec<Value> = issues
                .into_iter()
                .filter(|issue| issue.constraint)
                .map(|issue| issue.detail)
                .collect();
            if constraints.is_empty() {
                Ok(parsed)
            } else {
                Err(ApiError::validation_issues(constraints))
            }
        }
        Err(serde_issue) if issues.is_empty() => {
            Err(ApiError::validation_issues(vec![serde_issue]))
        }
        Err(_) => Err(ApiError::validation_issues(
            issues.into_iter().map(|issue| issue.detail).collect(),
        )),
    }
}

/// Parses one path or query value (location is "path" or "query"), or a 422 in pydantic's words.
///
/// Integers, floats and booleans are read as pydantic reads text (`" 5 "`, `"5.0"`, `"1_000"`
/// are the integer 5, 5 and 1000; `"yes"`/`"off"` are booleans); an integer outside the Rust
/// type's range is `greater_than_equal`/`less_than_equal` with the type's bound. Other types
/// use their `FromStr`, and a failure is a `value_error`.
pub fn parse_field<T: FromStr + 'static>(
    location: &str,
    name: &str,
    text: &str,
) -> Result<T, ApiError> {
    read_text(text, &[json!(location), json!(name)])
        .map_err(|issue| ApiError::validation_issues(vec![issue]))
}

/// `text` as a `T`, or the issue (at `loc`) saying why it is not one.
fn read_text<T: FromStr + 'static>(text: &str, loc: &[Value]) -> Result<T, Value> {
    let input = || json!(text);
    let mismatch = |(kind, msg): Mismatch| issue(kind, loc, msg, input());
    match ScalarKind::of::<T>() {
        ScalarKind::Integer { min, max } => match parse_int_text(text) {
            None => Err(mismatch(INT_PARSING)),
            Some(number) if number < min => Err(bound_issue(
                "greater_than_equal",
                loc,
                number_value(min),
                input(),
            )),
            Some(number) if number > max => Err(bound_issue(
                "less_than_equal",
                loc,
                number_value(max),
                input(),
            )),
            Some(number) => number
                .to_string()
                .parse()
                .map_err(|_| mismatch(INT_PARSING)),
        },
        ScalarKind::Float => {
            let trimmed = text.trim();
            trimmed
                .parse()
                .ok()
                .or_else(|| strip_underscores(trimmed)?.parse().ok())
                .ok_or_else(|| mismatch(FLOAT_PARSING))
        }
        ScalarKind::Bool => match parse_bool_text(text) {
            Some(flag) => flag.to_string().parse().map_err(|_| mismatch(BOOL_PARSING)),
            None => Err(mismatch(BOOL_PARSING)),
        },
        ScalarKind::Char => match text.chars().count() {
            0 => Err(length_issue("string_too_short", loc, 1, input())),
            1 => text.parse().map_err(|_| mismatch(STRING_TYPE)),
            _ => Err(length_issue("string_too_long", loc, 1, input())),
        },
        ScalarKind::Other => text.parse().map_err(|_| {
            let msg = format!(
                "Value error, unable to parse string as {}",
                short_type_name::<T>()
            );
            issue("value_error", loc, msg, input())
        }),
    }
}

/// Checks path or query parameters (`location` is `"path"` or `"query"`) against the JSON
/// Schema of the object they make up (what `Route::path` / `Route::query` declared): every
/// issue at `[location, name]` in pydantic's words, or the parameters as a JSON object with
/// their values coerced as pydantic's lax mode reads text (`"5"` for an integer, `"5.0"`
/// too). A repeated name counts once, its first value; names the schema lacks are ignored,
/// as FastAPI ignores them.
pub fn check_parameters<'t>(
    location: &str,
    schema: &Value,
    parameters: impl IntoIterator<Item = (Cow<'t, str>, Cow<'t, str>)>,
) -> Result<Value, ApiError> {
    let mut object = Map::new();
    for (name, text) in parameters {
        if !object.contains_key(name.as_ref()) {
            object.insert(name.into_owned(), Value::String(text.into_owned()));
        }
    }
    let mut value = Value::Object(object);
    let mut checker = Checker::new(schema, None);
    checker.text_input = true;
    checker.check(schema, &mut value, &mut vec![json!(location)]);
    if checker.issues.is_empty() {
        return Ok(value);
    }
    let issues = checker
        .issues
        .into_iter()
        .map(|issue| {
            let mut detail = issue.detail;
            // FastAPI shows no input for an absent parameter (the walk shows the object).
            if detail["type"] == "missing" {
                detail["input"] = Value::Null;
            }
            detail
        })
        .collect();
    Err(ApiError::validation_issues(issues))
}

/// The parameters as a `T` (the type a route declared with `Route::path` or `Route::query`),
/// checked as [`check_parameters`] checks them.
pub(crate) fn parameters_as<'t, T: DeserializeOwned + JsonSchema>(
    location: &str,
    parameters: impl IntoIterator<Item = (Cow<'t, str>, Cow<'t, str>)>,
) -> Result<T, ApiError> {
    let schema = BodySchema::of::<T>();
    let value = check_parameters(location, &schema.schema, parameters)?;
    T::deserialize(&value).map_err(|error| {
        let loc = [json!(location)];
        ApiError::validation_issues(vec![issue(
            "value_error",
            &loc,
            format!("Value error, {error}"),
            value.clone(),
        )])
    })
}

/// Whether `text` holds a match of the JSON Schema `pattern` (a pattern the engine cannot
/// compile matches everything: it is the schema author's mistake, not the client's).
fn matches_pattern(pattern: &str, text: &str) -> bool {
    type Compiled = HashMap<String, Option<regex_lite::Regex>>;
    static COMPILED: OnceLock<RwLock<Compiled>> = OnceLock::new();
    let compiled = COMPILED.get_or_init(RwLock::default);
    if let Some(found) = compiled.read().ok().and_then(|c| c.get(pattern).cloned()) {
        return found.is_none_or(|regex| regex.is_match(text));
    }
    let regex = regex_lite::Regex::new(pattern).ok();
    let matched = regex.as_ref().is_none_or(|regex| regex.is_match(text));
    if let Ok(mut compiled) = compiled.write() {
        compiled.insert(pattern.to_owned(), regex);
    }
    matched
}

/// A required query parameter that is absent: the pydantic "missing" issue.
///
/// `{"type": "missing", "loc": [location, name], "msg": "Field required", "input": null}`,
/// ready for [`ApiError::validation_issues`].
pub fn missing_field(location: &str, name: &str) -> Value {
    issue(
        "missing",
        &[json!(location), json!(name)],
        "Field required",
        Value::Null,
    )
}

// ---------------------------------------------------------------------------------------------
// Pydantic's issue types and messages.

/// A pydantic error type and its message, for the issues without a context.
type Mismatch = (&'static str, &'static str);

const INT_TYPE: Mismatch = ("int_type", "Input should be a valid integer");
const INT_PARSING: Mismatch = (
    "int_parsing",
    "Input should be a valid integer, unable to parse string as an integer",
);
const INT_FROM_FLOAT: Mismatch = (
    "int_from_float",
    "Input should be a valid integer, got a number with a fractional part",
);
const INT_PARSING_SIZE: Mismatch = (
    "int_parsing_size",
    "Unable to parse input string as an integer, exceeded maximum size",
);
const FLOAT_TYPE: Mismatch = ("float_type", "Input should be a valid number");
const FLOAT_PARSING: Mismatch = (
    "float_parsing",
    "Input should be a valid number, unable to parse string as a number",
);
const FINITE_NUMBER: Mismatch = ("finite_number", "Input should be a finite number");
const STRING_TYPE: Mismatch = ("string_type", "Input should be a valid string");
const BOOL_TYPE: Mismatch = ("bool_type", "Input should be a valid boolean");
const BOOL_PARSING: Mismatch = (
    "bool_parsing",
    "Input should be a valid boolean, unable to interpret input",
);
const NONE_REQUIRED: Mismatch = ("none_required", "Input should be None");
const LIST_TYPE: Mismatch = ("list_type", "Input should be a valid list");
const TUPLE_TYPE: Mismatch = ("tuple_type", "Input should be a valid tuple");
const SET_TYPE: Mismatch = ("set_type", "Input should be a valid set");
const DICT_TYPE: Mismatch = ("dict_type", "Input should be a valid dictionary");
const MODEL_ATTRIBUTES_TYPE: Mismatch = (
    "model_attributes_type",
    "Input should be a valid dictionary or object to extract fields from",
);

/// One issue in pydantic's shape (without `ctx`).
fn issue(kind: &str, loc: &[Value], msg: impl Into<String>, input: Value) -> Value {
    json!({"type": kind, "loc": loc, "msg": msg.into(), "input": input})
}

/// One issue in pydantic's shape with a `ctx`.
fn issue_with_ctx(
    kind: &str,
    loc: &[Value],
    msg: impl Into<String>,
    input: Value,
    ctx: Value,
) -> Value {
    json!({"type": kind, "loc": loc, "msg": msg.into(), "input": input, "ctx": ctx})
}

/// A numeric bound issue: `kind` is `greater_than_equal`, `less_than_equal`, `greater_than`
/// or `less_than`.
fn bound_issue(kind: &str, loc: &[Value], bound: Value, input: Value) -> Value {
    let (key, words) = match kind {
        "greater_than_equal" => ("ge", "greater than or equal to"),
        "less_than_equal" => ("le", "less than or equal to"),
        "greater_than" => ("gt", "greater than"),
        _ => ("lt", "less than"),
    };
    let msg = format!("Input should be {words} {bound}");
    issue_with_ctx(kind, loc, msg, input, json!({ key: bound }))
}

/// A string length issue: `kind` is `string_too_short` or `string_too_long`.
fn length_issue(kind: &str, loc: &[Value], limit: u64, input: Value) -> Value {
    let (key, words) = if kind == "string_too_short" {
        ("min_length", "at least")
    } else {
        ("max_length", "at most")
    };
    let msg = format!(
        "String should have {words} {limit} character{}",
        plural(limit)
    );
    issue_with_ctx(kind, loc, msg, input, json!({ key: limit }))
}

/// A collection length issue: `kind` is `too_short` or `too_long`, `field_type` is pydantic's
/// name for the collection (`List`, `Tuple`, `Set`).
fn items_issue(kind: &str, loc: &[Value], field_type: &str, limit: u64, input: Value) -> Value {
    let actual = input.as_array().map_or(0, Vec::len);
    let (key, words) = if kind == "too_short" {
        ("min_length", "at least")
    } else {
        ("max_length", "at most")
    };
    let msg = format!(
        "{field_type} should have {words} {limit} item{} after validation, not {actual}",
        plural(limit)
    );
    let ctx = json!({"field_type": field_type, key: limit, "actual_length": actual});
    issue_with_ctx(kind, loc, msg, input, ctx)
}

/// The `enum` (for `kind == "enum"`) or `literal_error` issue for an input outside `allowed`.
fn literal_issue<'v>(
    kind: &str,
    loc: &[Value],
    allowed: impl IntoIterator<Item = &'v Value>,
    input: Value,
) -> Value {
    let reprs: Vec<String> = allowed.into_iter().map(python_repr).collect();
    let expected = match reprs.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    };
    let msg = format!("Input should be {expected}");
    issue_with_ctx(kind, loc, msg, input, json!({ "expected": expected }))
}

fn plural(count: u64) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

/// A JSON value as Python's `repr` shows it, as pydantic quotes expected values.
fn python_repr(value: &Value) -> String {
    match value {
        Value::String(text) if text.contains('\'') && !text.contains('"') => format!("\"{text}\""),
        Value::String(text) => format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Null => "None".to_owned(),
        other => other.to_string(),
    }
}

/// An integer as a JSON number (a float when it fits neither `i64` nor `u64`).
fn number_value(number: i128) -> Value {
    if let Ok(small) = i64::try_from(number) {
        Value::from(small)
    } else if let Ok(large) = u64::try_from(number) {
        Value::from(large)
    } else {
        // Only the bounds of 128-bit types get here; a float is the closest JSON can say.
        Value::from(number as f64)
    }
}

// ---------------------------------------------------------------------------------------------
// JSON syntax errors.

/// The `json_invalid` issue FastAPI reports for a body `json.loads` rejects: the location is
/// the character position of the problem, the reason Python's where the two parsers agree.
fn json_invalid(body: &[u8], error: &serde_json::Error) -> Value {
    let message = strip_position(&error.to_string());
    let position = if error.classify() == serde_json::error::Category::Eof {
        body.len()
    } else {
        byte_offset(body, error.line(), error.column())
    };
    let reason = python_json_reason(&message, body.get(position).copied());
    issue_with_ctx(
        "json_invalid",
        &[json!("body"), json!(char_index(body, position))],
        "JSON decode error",
        json!({}),
        json!({ "error": reason }),
    )
}

/// The byte offset of a serde_json error position (1-based line; the column counts the bytes
/// of the line up to and including the offending one).
fn byte_offset(body: &[u8], line: usize, column: usize) -> usize {
    let start_of_line = if line <= 1 {
        0
    } else {
        body.iter()
            .enumerate()
            .filter(|(_, byte)| **byte == b'\n')
            .nth(line - 2)
            .map_or(body.len(), |(index, _)| index + 1)
    };
    (start_of_line + column.saturating_sub(1)).min(body.len())
}

/// The number of characters before byte `offset`, as Python counts positions in a `str`.
fn char_index(body: &[u8], offset: usize) -> usize {
    body[..offset.min(body.len())]
        .iter()
        .filter(|byte| (**byte & 0xC0) != 0x80)
        .count()
}

/// Python's `json` wording for the serde_json errors that mean the same thing; serde's own
/// wording otherwise.
fn python_json_reason(message: &str, at: Option<u8>) -> String {
    let reason = match message {
        "expected value" | "EOF while parsing a value" | "expected ident" => "Expecting value",
        "key must be a string" => "Expecting property name enclosed in double quotes",
        "expected `:`" => "Expecting ':' delimiter",
        "expected `,` or `}`" | "expected `,` or `]`" => "Expecting ',' delimiter",
        "trailing characters" => "Extra data",
        "trailing comma" if at == Some(b'}') => "Expecting property name enclosed in double quotes",
        "trailing comma" => "Expecting value",
        other if other.starts_with("control character") => "Invalid control character at",
        other => other,
    };
    reason.to_owned()
}

/// A serde error message without serde_json's " at line L column C" suffix.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// serde's last word.

/// Deserializes the checked value; on failure, the one issue describing serde's complaint.
fn deserialize_reporting_path<T: DeserializeOwned>(value: &Value) -> Result<T, Value> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let mut loc = vec![json!("body")];
        let mut input = Some(value);
        for segment in error.path().iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => {
                    loc.push(json!(index));
                    input = input.and_then(|value| value.get(index));
                }
                serde_path_to_error::Segment::Map { key } => {
                    loc.push(json!(key));
                    input = input.and_then(|value| value.get(key.as_str()));
                }
                serde_path_to_error::Segment::Enum { variant } => {
                    loc.push(json!(variant));
                    input = input.and_then(|value| value.get(variant.as_str()));
                }
                serde_path_to_error::Segment::Unknown => input = None,
            }
        }
        let message = strip_position(&error.inner().to_string());
        if let Some(field) = backquoted_after(&message, "missing field `") {
            loc.push(json!(field));
            issue(
                "missing",
                &loc,
                "Field required",
                input.cloned().unwrap_or(Value::Null),
            )
        } else if let Some(field) = backquoted_after(&message, "unknown field `") {
            let extra = input.and_then(|value| value.get(field)).cloned();
            loc.push(json!(field));
            issue(
                "extra_forbidden",
                &loc,
                "Extra inputs are not permitted",
                extra.unwrap_or(Value::Null),
            )
        } else {
            issue(
                "value_error",
                &loc,
                format!("Value error, {message}"),
                input.cloned().unwrap_or(Value::Null),
            )
        }
    })
}

/// The name in "<prefix>name`..." (serde's "missing field `x`" and "unknown field `x`").
fn backquoted_after<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    message
        .strip_prefix(prefix)?
        .split('`')
        .next()
        .filter(|name| !name.is_empty())
}

// ---------------------------------------------------------------------------------------------
// What the walk knows about a body type.

/// A body type's JSON Schema and declared field order, generated once per type.
struct BodySchema {
    /// The schema `schemars::schema_for!` generates.
    schema: Value,
    /// The struct's fields in declaration order, when it is a plain struct.
    fields: Option<&'static [&'static str]>,
}

/// Body schemas by type (Rust's type name and schemars' `schema_id`, which together tell any
/// two types apart even when a hand-written `JsonSchema` keeps the default `schema_id`).
type SchemaCache = HashMap<(&'static str, Cow<'static, str>), Arc<BodySchema>>;

impl BodySchema {
    /// `T`'s schema, from the cache or generated (a few microseconds) and cached.
    fn of<T: DeserializeOwned + JsonSchema>() -> Arc<BodySchema> {
        static CACHE: OnceLock<RwLock<SchemaCache>> = OnceLock::new();
        let cache = CACHE.get_or_init(RwLock::default);
        let key = (std::any::type_name::<T>(), T::schema_id());
        let cached = cache
            .read()
            .ok()
            .and_then(|schemas| schemas.get(&key).cloned());
        if let Some(found) = cached {
            return found;
        }
        let fresh = Arc::new(BodySchema {
            schema: schemars::schema_for!(T).to_value(),
            fields: declared_fields::<T>(),
        });
        if let Ok(mut schemas) = cache.write() {
            schemas.insert(key, Arc::clone(&fresh));
        }
        fresh
    }
}

/// The field names of `T` (with their serde aliases), in declaration order, when `T`
/// deserializes as a plain struct.
///
/// Issues are reported in field order, as pydantic does, but the schema's `properties` come
/// out of `serde_json` sorted by name; serde's derive passes the declared order to
/// `deserialize_struct`, which a probe deserializer captures without reading any input.
fn declared_fields<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    let found = Cell::new(None);
    // The probe fails every call by design; only what it saw on the way matters.
    let _ = T::deserialize(FieldProbe(&found));
    found.get()
}

/// A deserializer that records the field list of the struct asked for, then gives up.
struct FieldProbe<'a>(&'a Cell<Option<&'static [&'static str]>>);

/// The probe's only error.
#[derive(Debug)]
struct ProbeDone;

impl fmt::Display for ProbeDone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field probe")
    }
}

impl std::error::Error for ProbeDone {}

impl serde::de::Error for ProbeDone {
    fn custom<M: fmt::Display>(_message: M) -> ProbeDone {
        ProbeDone
    }
}

impl<'de> serde::Deserializer<'de> for FieldProbe<'_> {
    type Error = ProbeDone;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, ProbeDone> {
        Err(ProbeDone)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, ProbeDone> {
        self.0.set(Some(fields));
        Err(ProbeDone)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

// ---------------------------------------------------------------------------------------------
// The schema walk.

/// How many `$ref`/`allOf` hops one schema may take before the walk stops trusting it.
const MAX_REF_DEPTH: usize = 32;

/// The pattern schemars gives the keys of a map with integer keys.
const INTEGER_KEY_PATTERN: &str = "^-?\\d+$";

/// An issue found by the walk.
struct Issue {
    /// The issue in pydantic's shape.
    detail: Value,
    /// Whether it is a schema constraint serde does not check (a range, a length), which
    /// stands even when serde accepts the input.
    constraint: bool,
}

/// The outcome of checking a value against a schema's `type`.
enum TypeCheck {
    /// The value is not of any admitted type; the issue is reported.
    Mismatch,
    /// The value is of an admitted type as it stands.
    Exact,
    /// The value was coerced (pydantic's lax mode); this is what the client sent.
    Coerced(Value),
}

/// A JSON Schema `type`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Boolean,
    Integer,
    Number,
    String,
    Array,
    Object,
}

impl Kind {
    fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "null" => Kind::Null,
            "boolean" => Kind::Boolean,
            "integer" => Kind::Integer,
            "number" => Kind::Number,
            "string" => Kind::String,
            "array" => Kind::Array,
            "object" => Kind::Object,
            _ => return None,
        })
    }

    /// Whether `value` is of this type without any coercion.
    fn admits(self, value: &Value) -> bool {
        match self {
            Kind::Null => value.is_null(),
            Kind::Boolean => value.is_boolean(),
            Kind::Integer => value.is_i64() || value.is_u64(),
            Kind::Number => value.is_number(),
            Kind::String => value.is_string(),
            Kind::Array => value.is_array(),
            Kind::Object => value.is_object(),
        }
    }

    /// `value` converted to this type, or the issue explaining why it cannot be.
    ///
    /// A JSON body keeps to its schema's JSON types, as the OpenAPI document promises: the
    /// one conversion is an integral float for an integer (`175.0`, which JSON Schema counts
    /// as an integer and pydantic accepts; `175.5` is `int_from_float`). Text from a path
    /// or query (`text` true) is read as pydantic reads it (`"5"`, `"5.0"`, `"yes"`).
    fn coerce(
        self,
        value: &Value,
        schema: &Map<String, Value>,
        text: bool,
    ) -> Result<Value, Mismatch> {
        match self {
            Kind::Integer => match value {
                Value::Number(number) => match number.as_f64() {
                    Some(float) => float_to_integer(float),
                    None => Err(INT_TYPE),
                },
                Value::String(text_value) => match parse_int_text(text_value) {
                    Some(integer) if text => integer_value(integer).ok_or(INT_PARSING_SIZE),
                    // Text pydantic would read as a number is still not a JSON number.
                    Some(_) => Err(INT_TYPE),
                    None => Err(INT_PARSING),
                },
                _ => Err(INT_TYPE),
            },
            Kind::Number => match value {
                Value::String(text_value) => match parse_float_text(text_value) {
                    Some(float) if text => Number::from_f64(float)
                        .map(Value::Number)
                        .ok_or(FINITE_NUMBER),
                    Some(_) => Err(FLOAT_TYPE),
                    None => Err(FLOAT_PARSING),
                },
                _ => Err(FLOAT_TYPE),
            },
            Kind::Boolean => match value {
                Value::String(text_value) => match parse_bool_text(text_value) {
                    Some(flag) if text => Ok(Value::Bool(flag)),
                    Some(_) => Err(BOOL_TYPE),
                    None => Err(BOOL_PARSING),
                },
                Value::Number(number) => match number.as_f64() {
                    Some(float) if float.fract() == 0.0 && !(0.0..=1.0).contains(&float) => {
                        Err(BOOL_PARSING)
                    }
                    _ => Err(BOOL_TYPE),
                },
                _ => Err(BOOL_TYPE),
            },
            Kind::String => Err(STRING_TYPE),
            Kind::Null => Err(NONE_REQUIRED),
            Kind::Array if schema.contains_key("prefixItems") => Err(TUPLE_TYPE),
            Kind::Array if schema.get("uniqueItems") == Some(&Value::Bool(true)) => Err(SET_TYPE),
            Kind::Array => Err(LIST_TYPE),
            Kind::Object if schema.contains_key("properties") => Err(MODEL_ATTRIBUTES_TYPE),
            Kind::Object => Err(DICT_TYPE),
        }
    }
}

/// The types a schema's `type` keyword admits; `None` when it has none or names one the walk
/// does not know (then the type is not checked).
fn declared_kinds(schema: &Map<String, Value>) -> Option<Vec<Kind>> {
    match schema.get("type")? {
        Value::String(name) => Kind::parse(name).map(|kind| vec![kind]),
        Value::Array(names) => names
            .iter()
            .map(|name| name.as_str().and_then(Kind::parse))
            .collect::<Option<Vec<Kind>>>()
            .filter(|kinds| !kinds.is_empty()),
        _ => None,
    }
}

/// Walks a schema and a value together, collecting issues and coercing the value in place.
struct Checker<'s> {
    /// The whole schema, where `$ref`s point.
    root: &'s Value,
    /// The body struct's fields in declaration order, when known.
    root_fields: Option<&'static [&'static str]>,
    /// Every issue found so far.
    issues: Vec<Issue>,
    /// Whether any value was coerced (a lax rather than an exact match).
    coerced: bool,
    /// Whether the values are text to read (path and query parameters), not JSON.
    text_input: bool,
}

impl<'s> Checker<'s> {
    fn new(root: &'s Value, root_fields: Option<&'static [&'static str]>) -> Checker<'s> {
        Checker {
            root,
            root_fields,
            issues: Vec::new(),
            coerced: false,
            text_input: false,
        }
    }

    /// A checker with the same schema and no findings, to try a union branch.
    fn fork(&self) -> Checker<'s> {
        Checker {
            text_input: self.text_input,
            ..Checker::new(self.root, self.root_fields)
        }
    }

    fn report(&mut self, detail: Value) {
        self.issues.push(Issue {
            detail,
            constraint: false,
        });
    }

    fn report_constraint(&mut self, detail: Value) {
        self.issues.push(Issue {
            detail,
            constraint: true,
        });
    }

    /// Checks `value` (at `loc`) against `schema`.
    fn check(&mut self, schema: &Value, value: &mut Value, loc: &mut Vec<Value>) {
        let Some(schema) = self.resolve(schema, 0) else {
            return;
        };
        let schema: &Map<String, Value> = &schema;

        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.iter().any(|candidate| same_json(candidate, value)) {
                self.report(literal_issue("enum", loc, allowed, value.clone()));
            }
            return;
        }
        if let Some(expected) = schema.get("const") {
            if !same_json(expected, value) {
                self.report(literal_issue(
                    "literal_error",
                    loc,
                    [expected],
                    value.clone(),
                ));
            }
            return;
        }
        for keyword in ["anyOf", "oneOf"] {
            if let Some(branches) = schema.get(keyword).and_then(Value::as_array) {
                if !branches.is_empty() && !self.check_union(branches, value, loc) {
                    return;
                }
            }
        }

        let original = match self.check_type(schema, value, loc) {
            TypeCheck::Mismatch => return,
            TypeCheck::Exact => None,
            TypeCheck::Coerced(original) => Some(original),
        };
        match value {
            Value::Number(number) => {
                let input = original.unwrap_or_else(|| Value::Number(number.clone()));
                self.check_number(schema, number, input, loc);
            }
            Value::String(text) => {
                let input = original.unwrap_or_else(|| Value::String(text.clone()));
                self.check_string(schema, text, input, loc);
            }
            Value::Array(items) => self.check_array(schema, items, loc),
            Value::Object(object) => self.check_object(schema, object, loc),
            Value::Bool(_) | Value::Null => {}
        }
    }

    /// `schema` as one object of keywords: `$ref`s followed and merged with their siblings
    /// (schemars puts `properties` next to a `$ref` for internally tagged enums), and `allOf`
    /// members merged in. `None` for boolean schemas and shapes the walk does not follow,
    /// which are then not checked.
    fn resolve<'a>(&self, schema: &'a Value, depth: usize) -> Option<Cow<'a, Map<String, Value>>>
    where
        's: 'a,
    {
        let keywords = schema.as_object()?;
        let reference = keywords.get("$ref");
        let all_of = keywords.get("allOf");
        if reference.is_none() && all_of.is_none() {
            return Some(Cow::Borrowed(keywords));
        }
        if depth >= MAX_REF_DEPTH {
            return None;
        }
        let mut parts: Vec<Cow<'a, Map<String, Value>>> = Vec::new();
        if let Some(reference) = reference {
            let target = self.lookup(reference.as_str()?)?;
            parts.push(self.resolve(target, depth + 1)?);
        }
        for member in all_of.and_then(Value::as_array).into_iter().flatten() {
            parts.push(self.resolve(member, depth + 1)?);
        }
        let siblings: Map<String, Value> = keywords
            .iter()
            .filter(|(key, _)| !is_annotation(key) && *key != "$ref" && *key != "allOf")
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        if siblings.is_empty() && parts.len() == 1 {
            return parts.pop();
        }
        let mut merged = Map::new();
        for part in parts.iter().map(|part| &**part).chain([&siblings]) {
            merge_keywords(&mut merged, part);
        }
        Some(Cow::Owned(merged))
    }

    /// The schema a local `$ref` (`#/$defs/Name`) points to.
    fn lookup(&self, reference: &str) -> Option<&'s Value> {
        let pointer = reference.strip_prefix('#')?;
        if pointer.is_empty() {
            Some(self.root)
        } else {
            self.root.pointer(pointer)
        }
    }

    /// Checks the `type` keyword, coercing `value` where pydantic's lax mode would.
    fn check_type(
        &mut self,
        schema: &Map<String, Value>,
        value: &mut Value,
        loc: &[Value],
    ) -> TypeCheck {
        let Some(kinds) = declared_kinds(schema) else {
            return TypeCheck::Exact;
        };
        if kinds.iter().any(|kind| kind.admits(value)) {
            return TypeCheck::Exact;
        }
        let mut first_mismatch = None;
        for kind in kinds.iter().filter(|kind| **kind != Kind::Null) {
            match kind.coerce(value, schema, self.text_input) {
                Ok(coerced) => {
                    self.coerced = true;
                    return TypeCheck::Coerced(std::mem::replace(value, coerced));
                }
                Err(mismatch) => {
                    first_mismatch.get_or_insert(mismatch);
                }
            }
        }
        let (kind, msg) = first_mismatch.unwrap_or(NONE_REQUIRED);
        self.report(issue(kind, loc, msg, value.clone()));
        TypeCheck::Mismatch
    }

    /// `multipleOf`, `maximum`, `exclusiveMaximum`, `minimum`, `exclusiveMinimum` (the first
    /// that fails, in pydantic's order), then the range of an integer `format` (`int32`, ...).
    fn check_number(
        &mut self,
        schema: &Map<String, Value>,
        number: &Number,
        input: Value,
        loc: &[Value],
    ) {
        let bound = |key: &str| schema.get(key).and_then(Value::as_number);
        if let Some(divisor) = bound("multipleOf").filter(|divisor| !is_multiple(number, divisor)) {
            let msg = format!("Input should be a multiple of {divisor}");
            let ctx = json!({ "multiple_of": divisor });
            self.report_constraint(issue_with_ctx("multiple_of", loc, msg, input, ctx));
            return;
        }
        let failed = [
            ("maximum", "less_than_equal", &[Ordering::Greater][..]),
            (
                "exclusiveMaximum",
                "less_than",
                &[Ordering::Greater, Ordering::Equal][..],
            ),
            ("minimum", "greater_than_equal", &[Ordering::Less][..]),
            (
                "exclusiveMinimum",
                "greater_than",
                &[Ordering::Less, Ordering::Equal][..],
            ),
        ]
        .into_iter()
        .find_map(|(keyword, kind, failing)| {
            let limit = bound(keyword)?;
            let ordering = compare_numbers(number, limit)?;
            failing.contains(&ordering).then(|| (kind, limit.clone()))
        });
        if let Some((kind, limit)) = failed {
            self.report_constraint(bound_issue(kind, loc, Value::Number(limit), input));
            return;
        }
        let format_range = schema
            .get("format")
            .and_then(Value::as_str)
            .and_then(integer_format_range);
        if let (Some((min, max)), Some(integer)) = (format_range, as_i128(number)) {
            if integer < min {
                let issue = bound_issue("greater_than_equal", loc, number_value(min), input);
                self.report_constraint(issue);
            } else if integer > max {
                let issue = bound_issue("less_than_equal", loc, number_value(max), input);
                self.report_constraint(issue);
            }
        }
    }

    /// `minLength` and `maxLength`, counted in characters, then `pattern` (searched for
    /// anywhere in the text, as JSON Schema says).
    fn check_string(
        &mut self,
        schema: &Map<String, Value>,
        text: &str,
        input: Value,
        loc: &[Value],
    ) {
        let length = text.chars().count() as u64;
        let limit = |key: &str| schema.get(key).and_then(Value::as_u64);
        if let Some(min) = limit("minLength").filter(|min| length < *min) {
            self.report_constraint(length_issue("string_too_short", loc, min, input));
        } else if let Some(max) = limit("maxLength").filter(|max| length > *max) {
            self.report_constraint(length_issue("string_too_long", loc, max, input));
        } else if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            if !matches_pattern(pattern, text) {
                let msg = format!("String should match pattern '{pattern}'");
                let ctx = json!({ "pattern": pattern });
                let issue = issue_with_ctx("string_pattern_mismatch", loc, msg, input, ctx);
                self.report_constraint(issue);
            }
        }
    }

    /// `items`/`prefixItems` element by element, then `maxItems`/`minItems`.
    fn check_array(
        &mut self,
        schema: &Map<String, Value>,
        items: &mut [Value],
        loc: &mut Vec<Value>,
    ) {
        let prefix = schema.get("prefixItems").and_then(Value::as_array);
        let field_type = if prefix.is_some() {
            "Tuple"
        } else if schema.get("uniqueItems") == Some(&Value::Bool(true)) {
            "Set"
        } else {
            "List"
        };
        let limit = |key: &str| schema.get(key).and_then(Value::as_u64);
        let length = items.len() as u64;
        if let Some(max) = limit("maxItems").filter(|max| length > *max) {
            // Like pydantic, an over-long collection is not checked item by item.
            let input = Value::Array(items.to_vec());
            self.report_constraint(items_issue("too_long", loc, field_type, max, input));
            return;
        }
        let before = self.issues.len();
        for (index, item) in items.iter_mut().enumerate() {
            let item_schema = match prefix {
                Some(prefix) if index < prefix.len() => prefix.get(index),
                _ => schema.get("items"),
            };
            if let Some(item_schema) = item_schema {
                loc.push(json!(index));
                self.check(item_schema, item, loc);
                loc.pop();
            }
        }
        if let Some(prefix) = prefix.filter(|prefix| items.len() < prefix.len()) {
            // A tuple's missing positions are "missing", as pydantic reports them.
            let input = Value::Array(items.to_vec());
            for index in items.len()..prefix.len() {
                loc.push(json!(index));
                self.report(issue("missing", loc, "Field required", input.clone()));
                loc.pop();
            }
            return;
        }
        if self.issues.len() == before {
            if let Some(min) = limit("minItems").filter(|min| length < *min) {
                let input = Value::Array(items.to_vec());
                self.report_constraint(items_issue("too_short", loc, field_type, min, input));
            }
        }
    }

    /// `properties` and `required` field by field, then the keys the schema does not name
    /// (`additionalProperties`, or the integer-key pattern schemars uses for maps).
    fn check_object(
        &mut self,
        schema: &Map<String, Value>,
        object: &mut Map<String, Value>,
        loc: &mut Vec<Value>,
    ) {
        let no_properties = Map::new();
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&no_properties);
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        // "missing" shows the object as received, before any field in it is coerced.
        let received = required
            .iter()
            .any(|name| !object.contains_key(*name))
            .then(|| Value::Object(object.clone()));

        // The body struct's serde aliases are not in the schema; while one is in use, which
        // field it stands for is unknown, so absences are left for serde to judge.
        let at_root = loc.len() == 1;
        let root_fields: &[&str] = match self.root_fields {
            Some(fields) if at_root => fields,
            _ => &[],
        };
        let is_alias = |key: &str| root_fields.contains(&key);
        let alias_in_use = object
            .keys()
            .any(|key| !properties.contains_key(key) && is_alias(key));

        for name in self.field_order(properties, &required, at_root) {
            if let Some(field) = object.get_mut(name) {
                if let Some(field_schema) = properties.get(name) {
                    loc.push(json!(name));
                    self.check(field_schema, field, loc);
                    loc.pop();
                }
            } else if required.contains(&name) && !alias_in_use {
                loc.push(json!(name));
                let input = received.clone().unwrap_or(Value::Null);
                self.report(issue("missing", loc, "Field required", input));
                loc.pop();
            }
        }

        let patterns = schema.get("patternProperties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        let extra_keys: Vec<String> = object
            .keys()
            .filter(|key| {
                !properties.contains_key(*key)
                    && !required.contains(&key.as_str())
                    && !is_alias(key)
            })
            .cloned()
            .collect();
        for key in extra_keys {
            let Some(item) = object.get_mut(&key) else {
                continue;
            };
            loc.push(json!(key));
            match patterns {
                // Other patterns would need a regex engine; their keys go unchecked.
                Some(patterns) if patterns.len() == 1 => {
                    if let Some(item_schema) = patterns.get(INTEGER_KEY_PATTERN) {
                        if is_integer_key(&key) {
                            self.check(item_schema, item, loc);
                        } else {
                            loc.push(json!("[key]"));
                            let (kind, msg) = INT_PARSING;
                            self.report(issue(kind, loc, msg, json!(key)));
                            loc.pop();
                        }
                    }
                }
                Some(_) => {}
                None => match additional {
                    Some(Value::Bool(false)) => {
                        let input = item.clone();
                        self.report(issue(
                            "extra_forbidden",
                            loc,
                            "Extra inputs are not permitted",
                            input,
                        ));
                    }
                    Some(item_schema @ Value::Object(_)) => self.check(item_schema, item, loc),
                    _ => {}
                },
            }
            loc.pop();
        }
    }

    /// The order to visit an object's fields in: declaration order for the body's own struct
    /// (as pydantic reports), else the `required` fields in declaration order (schemars keeps
    /// it there) followed by the others by name.
    fn field_order<'p>(
        &self,
        properties: &'p Map<String, Value>,
        required: &[&'p str],
        at_root: bool,
    ) -> Vec<&'p str> {
        let declared = if at_root {
            self.root_fields.unwrap_or_default()
        } else {
            &[]
        };
        let mut order: Vec<&'p str> = Vec::with_capacity(properties.len());
        let names = declared
            .iter()
            .filter_map(|name| properties.get_key_value(*name).map(|(key, _)| key.as_str()))
            .chain(required.iter().copied())
            .chain(properties.keys().map(String::as_str));
        for name in names {
            if !order.contains(&name) {
                order.push(name);
            }
        }
        order
    }

    /// `anyOf`/`oneOf`; whether `value` matched a branch. A branch the value matches exactly
    /// wins over one it matches only after coercion (pydantic's "smart" unions). When none
    /// matches, the issues reported are: for a tagged union, those of the branch the tag
    /// selects (with the tag in `loc`, as pydantic's discriminated unions do); for a union of
    /// literals, one `enum` issue; otherwise those of the closest branch.
    fn check_union(&mut self, branches: &[Value], value: &mut Value, loc: &mut Vec<Value>) -> bool {
        if let Some(matched) = self.check_tagged_union(branches, value, loc) {
            return matched;
        }
        let mut lax_match = None;
        let mut failures: Vec<(usize, Vec<Issue>)> = Vec::new();
        for (index, branch) in branches.iter().enumerate() {
            let mut trial = self.fork();
            let mut candidate = value.clone();
            trial.check(branch, &mut candidate, loc);
            if !trial.issues.is_empty() {
                failures.push((index, trial.issues));
            } else if !trial.coerced {
                return true;
            } else if lax_match.is_none() {
                lax_match = Some(candidate);
            }
        }
        if let Some(coerced) = lax_match {
            *value = coerced;
            self.coerced = true;
            return true;
        }

        let resolved: Vec<Option<Cow<'_, Map<String, Value>>>> = branches
            .iter()
            .map(|branch| self.resolve(branch, 0))
            .collect();
        let is_null_only = |index: usize| {
            resolved[index]
                .as_ref()
                .is_some_and(|branch| branch.get("type") == Some(&json!("null")))
        };
        // An Option's null branch says nothing about why a non-null value failed.
        let candidates: Vec<&(usize, Vec<Issue>)> = failures
            .iter()
            .filter(|(index, _)| value.is_null() || !is_null_only(*index))
            .collect();
        let literals: Option<Vec<&Value>> = candidates
            .iter()
            .map(|(index, _)| resolved[*index].as_deref().and_then(literal_values))
            .collect::<Option<Vec<Vec<&Value>>>>()
            .map(|lists| lists.into_iter().flatten().collect());
        if let Some(allowed) = literals.filter(|allowed| !allowed.is_empty()) {
            self.report(literal_issue("enum", loc, allowed, value.clone()));
            return false;
        }

        let pool = if candidates.is_empty() {
            failures.iter().collect()
        } else {
            candidates
        };
        let here = Value::Array(loc.clone());
        let closest = pool
            .into_iter()
            .min_by_key(|(_, issues)| {
                let shape_mismatch = issues.iter().any(|issue| issue.detail["loc"] == here);
                (shape_mismatch, issues.len())
            })
            .map(|(index, _)| *index);
        if let Some(index) = closest {
            if let Some(position) = failures.iter().position(|(branch, _)| *branch == index) {
                let (_, issues) = failures.swap_remove(position);
                self.issues.extend(issues);
            }
        }
        false
    }

    /// A union whose branches are objects told apart by one required constant property (a
    /// serde internally or adjacently tagged enum): checks the branch the value's tag names.
    /// `None` when the union is not tagged or the value is not an object.
    fn check_tagged_union(
        &mut self,
        branches: &[Value],
        value: &mut Value,
        loc: &mut Vec<Value>,
    ) -> Option<bool> {
        let Value::Object(object) = &*value else {
            return None;
        };
        let (tag_name, tags) = self.discriminator(branches)?;
        let discriminator = format!("'{tag_name}'");
        let Some(tag) = object.get(&tag_name) else {
            let msg = format!("Unable to extract tag using discriminator {discriminator}");
            let ctx = json!({ "discriminator": discriminator });
            self.report(issue_with_ctx(
                "union_tag_not_found",
                loc,
                msg,
                value.clone(),
                ctx,
            ));
            return Some(false);
        };
        let tag_text = match tag {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let Some(index) = tags.iter().position(|candidate| same_json(candidate, tag)) else {
            let expected = tags.iter().map(python_repr).collect::<Vec<_>>().join(", ");
            let msg = format!(
                "Input tag '{tag_text}' found using {discriminator} does not match any of the expected tags: {expected}"
            );
            let ctx =
                json!({"discriminator": discriminator, "tag": tag_text, "expected_tags": expected});
            self.report(issue_with_ctx(
                "union_tag_invalid",
                loc,
                msg,
                value.clone(),
                ctx,
            ));
            return Some(false);
        };
        let before = self.issues.len();
        loc.push(json!(tag_text));
        self.check(&branches[index], value, loc);
        loc.pop();
        Some(self.issues.len() == before)
    }

    /// The tag property and each branch's tag value, when every branch is an object schema
    /// requiring the same property to be one constant.
    fn discriminator(&self, branches: &[Value]) -> Option<(String, Vec<Value>)> {
        let resolved: Vec<Cow<'_, Map<String, Value>>> = branches
            .iter()
            .map(|branch| self.resolve(branch, 0))
            .collect::<Option<_>>()?;
        let first = resolved.first()?.get("properties")?.as_object()?;
        first.keys().find_map(|name| {
            let tags = resolved
                .iter()
                .map(|branch| tag_value(branch, name))
                .collect::<Option<Vec<Value>>>()?;
            Some((name.clone(), tags))
        })
    }
}

/// The constant a branch requires property `name` to have, if it does.
fn tag_value(branch: &Map<String, Value>, name: &str) -> Option<Value> {
    let required = branch.get("required")?.as_array()?;
    if !required.iter().any(|required| required == name) {
        return None;
    }
    let property = branch.get("properties")?.get(name)?.as_object()?;
    literal_values(property)
        .filter(|values| values.len() == 1)
        .and_then(|values| values.first().map(|value| (*value).clone()))
}

/// The values a schema admits when it is only a literal (`enum` or `const`).
fn literal_values(schema: &Map<String, Value>) -> Option<Vec<&Value>> {
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        Some(allowed.iter().collect())
    } else {
        schema.get("const").map(|only| vec![only])
    }
}

/// Keywords that only describe and never constrain.
fn is_annotation(keyword: &str) -> bool {
    matches!(
        keyword,
        "title"
            | "description"
            | "default"
            | "examples"
            | "deprecated"
            | "readOnly"
            | "writeOnly"
            | "$comment"
            | "$schema"
            | "$id"
    )
}

/// Merges `part`'s keywords into `merged`: `properties` and `required` accumulate, any other
/// keyword is taken from the later part.
fn merge_keywords(merged: &mut Map<String, Value>, part: &Map<String, Value>) {
    for (key, value) in part {
        match (key.as_str(), merged.get_mut(key), value) {
            ("properties", Some(Value::Object(existing)), Value::Object(more)) => {
                for (name, schema) in more {
                    existing.insert(name.clone(), schema.clone());
                }
            }
            ("required", Some(Value::Array(existing)), Value::Array(more)) => {
                for name in more {
                    if !existing.contains(name) {
                        existing.push(name.clone());
                    }
                }
            }
            _ => {
                merged.insert(key.clone(), value.clone());
            }
        }
    }
}

/// JSON equality, with numbers compared by value (`1` equals `1.0`).
fn same_json(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(left), Value::Number(right)) => {
            compare_numbers(left, right) == Some(Ordering::Equal)
        }
        _ => left == right,
    }
}

/// A JSON number as an integer, when it is one.
fn as_i128(number: &Number) -> Option<i128> {
    number
        .as_i64()
        .map(i128::from)
        .or_else(|| number.as_u64().map(i128::from))
}

/// Compares two JSON numbers exactly when both are integers, as floats otherwise.
fn compare_numbers(left: &Number, right: &Number) -> Option<Ordering> {
    match (as_i128(left), as_i128(right)) {
        (Some(left), Some(right)) => Some(left.cmp(&right)),
        _ => left.as_f64()?.partial_cmp(&right.as_f64()?),
    }
}

/// Whether `number` is a multiple of `divisor` (exactly for integers, to a float's precision
/// otherwise).
fn is_multiple(number: &Number, divisor: &Number) -> bool {
    match (as_i128(number), as_i128(divisor)) {
        (Some(_), Some(0)) => true,
        (Some(number), Some(divisor)) => number % divisor == 0,
        _ => match (number.as_f64(), divisor.as_f64()) {
            (Some(number), Some(divisor)) if divisor != 0.0 => {
                let quotient = number / divisor;
                (quotient - quotient.round()).abs() < 1e-9
            }
            _ => true,
        },
    }
}

/// The range of the integer formats schemars emits for Rust's integer types.
fn integer_format_range(format: &str) -> Option<(i128, i128)> {
    fn range<T: Into<i128>>(min: T, max: T) -> Option<(i128, i128)> {
        Some((min.into(), max.into()))
    }
    match format {
        "int8" => range(i8::MIN, i8::MAX),
        "int16" => range(i16::MIN, i16::MAX),
        "int32" => range(i32::MIN, i32::MAX),
        "int64" => range(i64::MIN, i64::MAX),
        "int" => Some((
            i128::try_from(isize::MIN).ok()?,
            i128::try_from(isize::MAX).ok()?,
        )),
        "uint8" => range(u8::MIN, u8::MAX),
        "uint16" => range(u16::MIN, u16::MAX),
        "uint32" => range(u32::MIN, u32::MAX),
        "uint64" => range(u64::MIN, u64::MAX),
        "uint" => Some((0, i128::try_from(usize::MAX).ok()?)),
        _ => None,
    }
}

/// An integral float as a JSON integer (pydantic accepts `175.0` for an `int`).
///
/// An integer literal beyond the 64-bit range reaches the walk as the nearest float, so
/// -2^63 itself stands for every literal just below `i64::MIN` and is refused as too large
/// (written as an integer, `-9223372036854775808` is an `i64` and never gets here).
fn float_to_integer(float: f64) -> Result<Value, Mismatch> {
    // 2^63, exactly: the casts below are exact inside these ranges.
    let two_pow_63 = -(i64::MIN as f64);
    if !float.is_finite() {
        Err(FINITE_NUMBER)
    } else if float.fract() != 0.0 {
        Err(INT_FROM_FLOAT)
    } else if -two_pow_63 < float && float < two_pow_63 {
        Ok(Value::from(float as i64))
    } else if (0.0..2.0 * two_pow_63).contains(&float) {
        Ok(Value::from(float as u64))
    } else {
        Err(INT_PARSING_SIZE)
    }
}

/// An integer as a JSON number, when it fits one exactly.
fn integer_value(integer: i128) -> Option<Value> {
    i64::try_from(integer)
        .map(Value::from)
        .or_else(|_| u64::try_from(integer).map(Value::from))
        .ok()
}

/// Whether a map key is an integer as schemars' `^-?\d+$` describes it.
fn is_integer_key(key: &str) -> bool {
    let digits = key.strip_prefix('-').unwrap_or(key);
    !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit())
}

// ---------------------------------------------------------------------------------------------
// Reading text as pydantic does.

/// Text as an integer, as pydantic reads it: surrounding whitespace ignored, `"5.00"` is 5,
/// `"1_000"` is 1000.
fn parse_int_text(text: &str) -> Option<i128> {
    let text = text.trim();
    let digits = strip_decimal_zeros(text).unwrap_or(text);
    digits
        .parse()
        .ok()
        .or_else(|| strip_underscores(digits)?.parse().ok())
}

/// Text as a float, as pydantic reads it (whitespace ignored, `"1_000.5"` allowed).
fn parse_float_text(text: &str) -> Option<f64> {
    let text = text.trim();
    text.parse()
        .ok()
        .or_else(|| strip_underscores(text)?.parse().ok())
}

/// Text as a boolean, with pydantic's words for true and false.
fn parse_bool_text(text: &str) -> Option<bool> {
    const FALSE: [&str; 6] = ["0", "off", "f", "false", "n", "no"];
    const TRUE: [&str; 6] = ["1", "on", "t", "true", "y", "yes"];
    if FALSE.iter().any(|word| text.eq_ignore_ascii_case(word)) {
        Some(false)
    } else if TRUE.iter().any(|word| text.eq_ignore_ascii_case(word)) {
        Some(true)
    } else {
        None
    }
}

/// `"5.000"` as `"5"`; `None` when there is no all-zero fraction to strip.
fn strip_decimal_zeros(text: &str) -> Option<&str> {
    let (whole, fraction) = text.split_once('.')?;
    fraction.bytes().all(|byte| byte == b'0').then_some(whole)
}

/// `"1_000"` as `"1000"`, with Python's rules (no leading, trailing or doubled underscores).
fn strip_underscores(text: &str) -> Option<String> {
    let valid = text.contains('_')
        && !text.starts_with('_')
        && !text.ends_with('_')
        && !text.contains("__");
    valid.then(|| text.replace('_', ""))
}

/// What `parse_field` knows about a target type.
enum ScalarKind {
    /// A primitive integer and its range.
    Integer {
        min: i128,
        max: i128,
    },
    Float,
    Bool,
    Char,
    Other,
}

impl ScalarKind {
    fn of<T: 'static>() -> ScalarKind {
        let id = TypeId::of::<T>();
        macro_rules! integers {
            ($($integer:ty),*) => {
                $(
                    if id == TypeId::of::<$integer>() {
                        return ScalarKind::Integer {
                            min: i128::try_from(<$integer>::MIN).unwrap_or(i128::MIN),
                            max: i128::try_from(<$integer>::MAX).unwrap_or(i128::MAX),
                        };
                    }
                )*
            };
        }
        integers!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize);
        if id == TypeId::of::<f64>() || id == TypeId::of::<f32>() {
            ScalarKind::Float
        } else if id == TypeId::of::<bool>() {
            ScalarKind::Bool
        } else if id == TypeId::of::<char>() {
            ScalarKind::Char
        } else {
            ScalarKind::Other
        }
    }
}

/// `T`'s name without its path or generic arguments, for messages.
fn short_type_name<T>() -> &'static str {
    let name = std::any::type_name::<T>();
    let bare = name.split('<').next().unwrap_or(name);
    bare.rsplit("::").next().unwrap_or(bare)
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemars::JsonSchema;
    use serde::Deserialize;

    #[derive(Deserialize, JsonSchema, Debug)]
    struct Pickpocket {
        npc_id: i64,
        #[schemars(length(max = 128))]
        slot_id: String,
        base_success_chance: f64,
        detection_chance: f64,
        session_id: i64,
        #[serde(default)]
        world_id: Option<i64>,
    }

    #[derive(Deserialize, JsonSchema, Debug, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mood {
        Happy,
        Sad,
    }

    #[derive(Deserialize, JsonSchema, Debug, PartialEq)]
    struct Item {
        name: String,
        count: u32,
    }

    #[derive(Deserialize, JsonSchema, Debug)]
    #[allow(dead_code)]
    struct Npc {
        mood: Mood,
        #[schemars(length(min = 1))]
        items: Vec<Item>,
        home: Item,
        #[serde(default)]
        nickname: Option<String>,
        level: u8,
        #[schemars(range(min = 1, max = 10))]
        rank: i32,
    }

    #[track_caller]
    fn issues<T: DeserializeOwned + JsonSchema + fmt::Debug>(body: &str) -> Vec<Value> {
        let error = parse_json_body::<T>(body.as_bytes()).unwrap_err();
        assert_eq!(error.status(), 422);
        error.detail().as_array().unwrap().clone()
    }

    #[track_caller]
    fn field_issues<T: FromStr + 'static + fmt::Debug>(location: &str, text: &str) -> Vec<Value> {
        let error = parse_field::<T>(location, "n", text).unwrap_err();
        assert_eq!(error.status(), 422);
        error.detail().as_array().unwrap().clone()
    }

    fn valid_pickpocket() -> Value {
        json!({
            "npc_id": 7,
            "slot_id": "pocket",
            "base_success_chance": 0.5,
            "detection_chance": 0.25,
            "session_id": 3,
        })
    }

    #[test]
    fn an_empty_object_lists_every_missing_field_in_declaration_order() {
        let found = issues::<Pickpocket>("{}");
        let expected: Vec<Value> = [
            "npc_id",
            "slot_id",
            "base_success_chance",
            "detection_chance",
            "session_id",
        ]
        .iter()
        .map(|name| {
            json!({"type": "missing", "loc": ["body", name], "msg": "Field required", "input": {}})
        })
        .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn missing_shows_the_object_as_received() {
        let found = issues::<Pickpocket>(r#"{"npc_id": 5.0, "slot_id": "a"}"#);
        assert_eq!(found.len(), 3);
        for issue in &found {
            assert_eq!(issue["type"], "missing");
            assert_eq!(issue["input"], json!({"npc_id": 5.0, "slot_id": "a"}));
        }
    }

    #[test]
    fn several_wrong_types_are_all_listed() {
        let body = json!({
            "npc_id": "abc",
            "slot_id": 5,
            "base_success_chance": "likely",
            "detection_chance": [],
            "session_id": null,
            "world_id": {},
        });
        let found = issues::<Pickpocket>(&body.to_string());
        assert_eq!(
            found,
            vec![
                json!({"type": "int_parsing", "loc": ["body", "npc_id"], "input": "abc",
                    "msg": "Input should be a valid integer, unable to parse string as an integer"}),
                json!({"type": "string_type", "loc": ["body", "slot_id"], "input": 5,
                    "msg": "Input should be a valid string"}),
                json!({"type": "float_parsing", "loc": ["body", "base_success_chance"],
                    "input": "likely",
                    "msg": "Input should be a valid number, unable to parse string as a number"}),
                json!({"type": "float_type", "loc": ["body", "detection_chance"], "input": [],
                    "msg": "Input should be a valid number"}),
                json!({"type": "int_type", "loc": ["body", "session_id"], "input": null,
                    "msg": "Input should be a valid integer"}),
                json!({"type": "int_type", "loc": ["body", "world_id"], "input": {},
                    "msg": "Input should be a valid integer"}),
            ]
        );
    }

    #[test]
    fn a_valid_body_parses() {
        let parsed: Pickpocket =
            parse_json_body(valid_pickpocket().to_string().as_bytes()).unwrap();
        assert_eq!(parsed.npc_id, 7);
        assert_eq!(parsed.slot_id, "pocket");
        assert_eq!(parsed.world_id, None);
    }

    #[test]
    fn integral_floats_are_integers_and_json_types_are_kept() {
        let mut body = valid_pickpocket();
        body["npc_id"] = json!(175.0);
        body["world_id"] = json!(3.0);
        body["detection_chance"] = json!(1);
        let parsed: Pickpocket = parse_json_body(body.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.npc_id, 175);
        assert_eq!(parsed.world_id, Some(3));
        assert_eq!(parsed.detection_chance, 1.0);
        assert_eq!((parsed.session_id, parsed.base_success_chance), (3, 0.5));

        // What the schema calls another type is refused, as the OpenAPI document promises.
        body["session_id"] = json!(" 12 ");
        body["world_id"] = json!(false);
        body["base_success_chance"] = json!("0.75");
        let found = issues::<Pickpocket>(&body.to_string());
        let kinds: Vec<&Value> = found.iter().map(|issue| &issue["type"]).collect();
        assert_eq!(
            kinds,
            [&json!("float_type"), &json!("int_type"), &json!("int_type")]
        );
    }

    #[test]
    fn an_integer_literal_below_the_64_bit_range_is_refused() {
        let mut body = valid_pickpocket();
        body["world_id"] = json!(-9_223_372_036_854_775_808_i64);
        let parsed: Pickpocket = parse_json_body(body.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.world_id, Some(i64::MIN));
        let text = body
            .to_string()
            .replace("-9223372036854775808", "-9223372036854775809");
        let found = issues::<Pickpocket>(&text);
        assert_eq!(found[0]["type"], "int_parsing_size");
    }

    #[test]
    fn fractional_numbers_are_not_integers() {
        let mut body = valid_pickpocket();
        body["npc_id"] = json!(1.5);
        body["world_id"] = json!(-2.5);
        let found = issues::<Pickpocket>(&body.to_string());
        assert_eq!(
            found,
            vec![
                json!({"type": "int_from_float", "loc": ["body", "npc_id"], "input": 1.5,
                    "msg": "Input should be a valid integer, got a number with a fractional part"}),
                json!({"type": "int_from_float", "loc": ["body", "world_id"], "input": -2.5,
                    "msg": "Input should be a valid integer, got a number with a fractional part"}),
            ]
        );
    }

    #[test]
    fn integers_too_large_for_the_rust_type_are_reported() {
        let mut body = valid_pickpocket();
        body["npc_id"] = json!(1e19);
        body["session_id"] = json!(1e30);
        let found = issues::<Pickpocket>(&body.to_string());
        assert_eq!(found[0]["type"], "less_than_equal");
        assert_eq!(found[0]["loc"], json!(["body", "npc_id"]));
        assert_eq!(found[0]["ctx"], json!({"le": i64::MAX}));
        assert_eq!(found[1]["type"], "int_parsing_size");
        assert_eq!(found.len(), 2);
    }

    #[test]
    fn optional_fields_take_null_or_absence() {
        let mut body = valid_pickpocket();
        body["world_id"] = Value::Null;
        let parsed: Pickpocket = parse_json_body(body.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.world_id, None);
        body["world_id"] = json!(9);
        let parsed: Pickpocket = parse_json_body(body.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.world_id, Some(9));
    }

    #[test]
    fn nested_structs_and_list_items_have_full_locations() {
        let body = json!({
            "mood": "happy",
            "items": [{"name": "coin", "count": 1}, {"name": 3, "count": "many"}, {}],
            "home": {"name": "inn"},
            "level": 3,
            "rank": 2,
        });
        let found = issues::<Npc>(&body.to_string());
        let summary: Vec<(Value, Value)> = found
            .iter()
            .map(|issue| (issue["type"].clone(), issue["loc"].clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (json!("string_type"), json!(["body", "items", 1, "name"])),
                (json!("int_parsing"), json!(["body", "items", 1, "count"])),
                (json!("missing"), json!(["body", "items", 2, "name"])),
                (json!("missing"), json!(["body", "items", 2, "count"])),
                (json!("missing"), json!(["body", "home", "count"])),
            ]
        );
        assert_eq!(found[2]["input"], json!({}));
        assert_eq!(found[4]["input"], json!({"name": "inn"}));
    }

    #[test]
    fn a_model_needs_an_object() {
        let found =
            issues::<Npc>(r#"{"mood": "sad", "items": 5, "home": [], "level": 1, "rank": 1}"#);
        assert_eq!(
            found,
            vec![
                json!({"type": "list_type", "loc": ["body", "items"], "input": 5,
                    "msg": "Input should be a valid list"}),
                json!({"type": "model_attributes_type", "loc": ["body", "home"], "input": [],
                    "msg": "Input should be a valid dictionary or object to extract fields from"}),
            ]
        );
        let found = issues::<Pickpocket>("[1, 2]");
        assert_eq!(found[0]["type"], "model_attributes_type");
        assert_eq!(found[0]["loc"], json!(["body"]));
    }

    #[test]
    fn enum_values_are_listed_as_pydantic_does() {
        let body = json!({
            "mood": "angry",
            "items": [{"name": "coin", "count": 1}],
            "home": {"name": "inn", "count": 0},
            "level": 3,
            "rank": 2,
        });
        let found = issues::<Npc>(&body.to_string());
        assert_eq!(
            found,
            vec![json!({
                "type": "enum",
                "loc": ["body", "mood"],
                "msg": "Input should be 'happy' or 'sad'",
                "input": "angry",
                "ctx": {"expected": "'happy' or 'sad'"},
            })]
        );
        let parsed: Npc =
            parse_json_body(body.to_string().replace("angry", "sad").as_bytes()).unwrap();
        assert_eq!(parsed.mood, Mood::Sad);
    }

    #[test]
    fn numeric_bounds_from_types_and_attributes() {
        let body = json!({
            "mood": "happy",
            "items": [{"name": "coin", "count": -1}],
            "home": {"name": "inn", "count": 4_294_967_296_u64},
            "level": 300,
            "rank": 0,
        });
        let found = issues::<Npc>(&body.to_string());
        assert_eq!(
            found,
            vec![
                json!({"type": "greater_than_equal", "loc": ["body", "items", 0, "count"],
                    "msg": "Input should be greater than or equal to 0", "input": -1,
                    "ctx": {"ge": 0}}),
                json!({"type": "less_than_equal", "loc": ["body", "home", "count"],
                    "msg": "Input should be less than or equal to 4294967295",
                    "input": 4_294_967_296_u64, "ctx": {"le": 4_294_967_295_u64}}),
                json!({"type": "less_than_equal", "loc": ["body", "level"],
                    "msg": "Input should be less than or equal to 255", "input": 300,
                    "ctx": {"le": 255}}),
                json!({"type": "greater_than_equal", "loc": ["body", "rank"],
                    "msg": "Input should be greater than or equal to 1", "input": 0,
                    "ctx": {"ge": 1}}),
            ]
        );
    }

    #[test]
    fn bounds_report_what_the_client_sent() {
        let body = json!({
            "mood": "happy",
            "items": [{"name": "coin", "count": -1.0}],
            "home": {"name": "inn", "count": 0},
            "level": 1,
            "rank": 1,
        });
        let found = issues::<Npc>(&body.to_string());
        assert_eq!(found[0]["type"], "greater_than_equal");
        assert_eq!(found[0]["input"], -1.0);
    }

    #[test]
    fn string_and_list_lengths() {
        let mut body = valid_pickpocket();
        body["slot_id"] = json!("x".repeat(129));
        let found = issues::<Pickpocket>(&body.to_string());
        assert_eq!(
            found,
            vec![
                json!({"type": "string_too_long", "loc": ["body", "slot_id"],
                "msg": "String should have at most 128 characters", "input": "x".repeat(129),
                "ctx": {"max_length": 128}})
            ]
        );
        // Characters, not bytes.
        body["slot_id"] = json!("é".repeat(128));
        assert!(parse_json_body::<Pickpocket>(body.to_string().as_bytes()).is_ok());

        let body = json!({
            "mood": "happy",
            "items": [],
            "home": {"name": "inn", "count": 0},
            "level": 1,
            "rank": 1,
        });
        let found = issues::<Npc>(&body.to_string());
        assert_eq!(
            found,
            vec![json!({"type": "too_short", "loc": ["body", "items"],
                "msg": "List should have at least 1 item after validation, not 0", "input": [],
                "ctx": {"field_type": "List", "min_length": 1, "actual_length": 0}})]
        );
    }

    #[derive(Deserialize, JsonSchema, Debug)]
    #[allow(dead_code)]
    struct Named {
        #[schemars(length(min = 1, max = 3))]
        name: String,
    }

    #[test]
    fn a_length_of_one_is_singular() {
        let found = issues::<Named>(r#"{"name": ""}"#);
        assert_eq!(found[0]["msg"], "String should have at least 1 character");
        assert_eq!(found[0]["ctx"], json!({"min_length": 1}));
        let found = issues::<Named>(r#"{"name": "abcd"}"#);
        assert_eq!(found[0]["msg"], "String should have at most 3 characters");
    }

    #[test]
    fn an_empty_body_is_a_missing_body() {
        for body in ["", "null", " null "] {
            let found = issues::<Pickpocket>(body);
            assert_eq!(
                found,
                vec![
                    json!({"type": "missing", "loc": ["body"], "msg": "Field required", "input": null})
                ],
                "{body:?}"
            );
        }
        assert_eq!(parse_json_body::<Option<Item>>(b"null").unwrap(), None);
        // FastAPI hands any non-empty body to json.loads.
        let found = issues::<Pickpocket>("  \n");
        assert_eq!(found[0]["type"], "json_invalid");
        assert_eq!(found[0]["loc"], json!(["body", 3]));
        assert_eq!(found[0]["ctx"], json!({"error": "Expecting value"}));
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let mut body = b"\xEF\xBB\xBF".to_vec();
        body.extend_from_slice(valid_pickpocket().to_string().as_bytes());
        assert!(parse_json_body::<Pickpocket>(&body).is_ok());
        let found = issues::<Pickpocket>("\u{FEFF}{]");
        assert_eq!(found[0]["loc"], json!(["body", 1]));
    }

    #[test]
    fn malformed_json_is_json_invalid_at_a_character_position() {
        let cases = [
            (r#"{"npc_id": }"#, 11, "Expecting value"),
            (r#"{"npc_id": "#, 11, "Expecting value"),
            (
                "{npc_id: 1}",
                1,
                "Expecting property name enclosed in double quotes",
            ),
            (r#"{"npc_id" 1}"#, 10, "Expecting ':' delimiter"),
            ("[1 2]", 3, "Expecting ',' delimiter"),
            (
                "{\n  \"a\": 1,\n  \"b\" 2\n}",
                18,
                "Expecting ':' delimiter",
            ),
            (
                r#"{"é": 1,}"#,
                8,
                "Expecting property name enclosed in double quotes",
            ),
            ("garbage", 0, "Expecting value"),
        ];
        for (body, position, reason) in cases {
            let found = issues::<Pickpocket>(body);
            assert_eq!(
                found,
                vec![json!({"type": "json_invalid", "loc": ["body", position],
                    "msg": "JSON decode error", "input": {}, "ctx": {"error": reason}})],
                "{body}"
            );
        }
    }

    #[test]
    fn trailing_garbage_is_json_invalid() {
        let body = format!("{} x", valid_pickpocket());
        let found = issues::<Pickpocket>(&body);
        let position = body.len() - 1;
        assert_eq!(
            found,
            vec![json!({"type": "json_invalid", "loc": ["body", position],
                "msg": "JSON decode error", "input": {}, "ctx": {"error": "Extra data"}})]
        );
    }

    #[derive(Deserialize, JsonSchema, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Strict {
        a: i64,
        #[serde(alias = "bee")]
        b: Option<bool>,
    }

    #[test]
    fn unknown_fields_are_forbidden_only_when_the_type_says_so() {
        let found = issues::<Strict>(r#"{"a": 1, "c": 2, "d": [3]}"#);
        assert_eq!(
            found,
            vec![
                json!({"type": "extra_forbidden", "loc": ["body", "c"], "input": 2,
                    "msg": "Extra inputs are not permitted"}),
                json!({"type": "extra_forbidden", "loc": ["body", "d"], "input": [3],
                    "msg": "Extra inputs are not permitted"}),
            ]
        );
        let mut body = valid_pickpocket();
        body["extra"] = json!(true);
        assert!(parse_json_body::<Pickpocket>(body.to_string().as_bytes()).is_ok());
    }

    #[test]
    fn serde_has_the_last_word_on_what_the_schema_misses() {
        // schemars knows nothing of aliases: serde judges the aliased field.
        let parsed: Strict = parse_json_body(br#"{"a": 1, "bee": true}"#).unwrap();
        assert_eq!(parsed.b, Some(true));
        let found = issues::<Strict>(r#"{"bee": true}"#);
        assert_eq!(
            found,
            vec![
                json!({"type": "missing", "loc": ["body", "a"], "input": {"bee": true},
                "msg": "Field required"})
            ]
        );
        let found = issues::<Strict>(r#"{"a": 1, "bee": 5}"#);
        assert_eq!(found[0]["type"], "value_error");
        assert_eq!(found[0]["loc"], json!(["body", "bee"]));
    }

    #[test]
    fn booleans_are_json_booleans() {
        let parsed: Strict = parse_json_body(br#"{"a": 1, "b": false}"#).unwrap();
        assert_eq!(parsed.b, Some(false));
        for text in ["\"yes\"", "1", "0.0"] {
            let found = issues::<Strict>(&format!(r#"{{"a": 1, "b": {text}}}"#));
            assert_eq!(found[0]["type"], "bool_type", "{text}");
            assert_eq!(found[0]["msg"], "Input should be a valid boolean");
        }
        let found = issues::<Strict>(r#"{"a": true, "b": []}"#);
        assert_eq!(found[0]["type"], "int_type");
        assert_eq!(found[1]["type"], "bool_type");
    }

    fn even<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        let number = i64::deserialize(deserializer)?;
        if number % 2 == 0 {
            Ok(number)
        } else {
            Err(serde::de::Error::custom("must be even"))
        }
    }

    #[derive(Deserialize, JsonSchema, Debug)]
    #[allow(dead_code)]
    struct Pairs {
        #[serde(deserialize_with = "even")]
        count: i64,
    }

    #[test]
    fn what_only_serde_rejects_is_a_value_error() {
        let found = issues::<Pairs>(r#"{"count": 3}"#);
        assert_eq!(
            found,
            vec![
                json!({"type": "value_error", "loc": ["body", "count"], "input": 3,
                "msg": "Value error, must be even"})
            ]
        );
    }

    #[derive(Deserialize, JsonSchema, Debug, PartialEq)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum Action {
        Steal { npc_id: i64 },
        Wait,
        Talk(Item),
    }

    #[derive(Deserialize, JsonSchema, Debug)]
    #[allow(dead_code)]
    struct Plan {
        action: Action,
    }

    #[test]
    fn tagged_enums_are_discriminated_unions() {
        let parsed: Plan =
            parse_json_body(br#"{"action": {"kind": "steal", "npc_id": 4.0}}"#).unwrap();
        assert_eq!(parsed.action, Action::Steal { npc_id: 4 });

        let found = issues::<Plan>(r#"{"action": {"kind": "talk", "name": 1}}"#);
        let locs: Vec<&Value> = found.iter().map(|issue| &issue["loc"]).collect();
        assert_eq!(
            locs,
            vec![
                &json!(["body", "action", "talk", "name"]),
                &json!(["body", "action", "talk", "count"]),
            ]
        );

        let found = issues::<Plan>(r#"{"action": {"kind": "run"}}"#);
        assert_eq!(
            found,
            vec![json!({
                "type": "union_tag_invalid",
                "loc": ["body", "action"],
                "msg": "Input tag 'run' found using 'kind' does not match any of the expected tags: 'steal', 'wait', 'talk'",
                "input": {"kind": "run"},
                "ctx": {"discriminator": "'kind'", "tag": "run", "expected_tags": "'steal', 'wait', 'talk'"},
            })]
        );

        let found = issues::<Plan>(r#"{"action": {}}"#);
        assert_eq!(found[0]["type"], "union_tag_not_found");
        assert_eq!(
            found[0]["msg"],
            "Unable to extract tag using discriminator 'kind'"
        );
    }

    /// Documented variants make schemars emit `oneOf` with one `const` per variant.
    #[derive(Deserialize, JsonSchema, Debug)]
    #[allow(dead_code)]
    enum Slot {
        /// Left.
        Left,
        /// Right.
        Right,
        /// Both.
        Both,
    }

    #[derive(Deserialize, JsonSchema, Debug)]
    #[allow(dead_code)]
    struct Equip {
        slot: Slot,
        spare: Option<Item>,
        tally: HashMap<String, u8>,
        by_id: HashMap<i64, bool>,
        pair: (i64, String),
    }

    #[test]
    fn unions_maps_and_tuples() {
        let body = json!({
            "slot": "Top",
            "spare": 5,
            "tally": {"a": 1, "b": "x"},
            "by_id": {"1": true, "two": false, "3": "nope"},
            "pair": [1],
        });
        let found = issues::<Equip>(&body.to_string());
        assert_eq!(
            found,
            vec![
                json!({"type": "enum", "loc": ["body", "slot"], "input": "Top",
                    "msg": "Input should be 'Left', 'Right' or 'Both'",
                    "ctx": {"expected": "'Left', 'Right' or 'Both'"}}),
                json!({"type": "model_attributes_type", "loc": ["body", "spare"], "input": 5,
                    "msg": "Input should be a valid dictionary or object to extract fields from"}),
                json!({"type": "int_parsing", "loc": ["body", "tally", "b"], "input": "x",
                    "msg": "Input should be a valid integer, unable to parse string as an integer"}),
                json!({"type": "bool_parsing", "loc": ["body", "by_id", "3"], "input": "nope",
                    "msg": "Input should be a valid boolean, unable to interpret input"}),
                json!({"type": "int_parsing", "loc": ["body", "by_id", "two", "[key]"], "input": "two",
                    "msg": "Input should be a valid integer, unable to parse string as an integer"}),
                json!({"type": "missing", "loc": ["body", "pair", 1], "input": [1],
                    "msg": "Field required"}),
            ]
        );

        let body = json!({
            "slot": "Both",
            "spare": null,
            "tally": {},
            "by_id": {"-4": true},
            "pair": [7.0, "seven"],
        });
        let parsed: Equip = parse_json_body(body.to_string().as_bytes()).unwrap();
        assert!(parsed.spare.is_none());
        assert_eq!(parsed.by_id.get(&-4), Some(&true));
        assert_eq!(parsed.pair, (7, "seven".to_owned()));
    }

    #[derive(Deserialize, JsonSchema, Debug, PartialEq)]
    #[serde(untagged)]
    enum Reference {
        Id(i64),
        Name(String),
    }

    #[test]
    fn unions_prefer_an_exact_match() {
        assert_eq!(
            parse_json_body::<Reference>(b"\"5\"").unwrap(),
            Reference::Name("5".into())
        );
        assert_eq!(
            parse_json_body::<Reference>(b"5.0").unwrap(),
            Reference::Id(5)
        );
        let found = issues::<Reference>("[]");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0]["type"], "int_type");
    }

    #[test]
    fn path_and_query_values_read_as_pydantic_reads_them() {
        assert_eq!(parse_field::<i64>("path", "n", "42").unwrap(), 42);
        assert_eq!(parse_field::<i64>("query", "n", " -7 ").unwrap(), -7);
        assert_eq!(parse_field::<i64>("query", "n", "3.00").unwrap(), 3);
        assert_eq!(parse_field::<u32>("query", "n", "1_000").unwrap(), 1000);
        assert_eq!(parse_field::<f64>("path", "n", "2.5").unwrap(), 2.5);
        assert_eq!(parse_field::<f64>("query", "n", "1e3").unwrap(), 1000.0);
        assert!(parse_field::<bool>("query", "n", "yes").unwrap());
        assert!(!parse_field::<bool>("query", "n", "False").unwrap());
        assert!(parse_field::<bool>("path", "n", "1").unwrap());
        assert_eq!(parse_field::<String>("path", "n", "").unwrap(), "");
        assert_eq!(parse_field::<char>("path", "n", "é").unwrap(), 'é');

        assert_eq!(
            field_issues::<i64>("path", "x1"),
            vec![
                json!({"type": "int_parsing", "loc": ["path", "n"], "input": "x1",
                "msg": "Input should be a valid integer, unable to parse string as an integer"})
            ]
        );
        assert_eq!(
            field_issues::<i64>("query", "1.5")[0]["type"],
            "int_parsing"
        );
        assert_eq!(
            field_issues::<f64>("query", "abc"),
            vec![
                json!({"type": "float_parsing", "loc": ["query", "n"], "input": "abc",
                "msg": "Input should be a valid number, unable to parse string as a number"})
            ]
        );
        assert_eq!(
            field_issues::<bool>("query", "maybe"),
            vec![
                json!({"type": "bool_parsing", "loc": ["query", "n"], "input": "maybe",
                "msg": "Input should be a valid boolean, unable to interpret input"})
            ]
        );
        assert_eq!(
            field_issues::<u8>("path", "256"),
            vec![
                json!({"type": "less_than_equal", "loc": ["path", "n"], "input": "256",
                "msg": "Input should be less than or equal to 255", "ctx": {"le": 255}})
            ]
        );
        assert_eq!(
            field_issues::<u32>("query", "-1"),
            vec![
                json!({"type": "greater_than_equal", "loc": ["query", "n"], "input": "-1",
                "msg": "Input should be greater than or equal to 0", "ctx": {"ge": 0}})
            ]
        );
        assert_eq!(
            field_issues::<char>("path", "ab")[0]["type"],
            "string_too_long"
        );
        assert_eq!(
            field_issues::<std::net::Ipv4Addr>("query", "nope"),
            vec![
                json!({"type": "value_error", "loc": ["query", "n"], "input": "nope",
                "msg": "Value error, unable to parse string as Ipv4Addr"})
            ]
        );
    }

    #[derive(Deserialize, JsonSchema, Debug)]
    #[allow(dead_code)]
    struct Tree {
        label: String,
        #[serde(default)]
        children: Vec<Tree>,
    }

    #[test]
    fn recursive_types_and_list_bodies() {
        let body =
            r#"[{"label": "a", "children": [{"label": "b", "children": [{"label": 1}]}]}, {}]"#;
        let found = issues::<Vec<Tree>>(body);
        let locs: Vec<&Value> = found.iter().map(|issue| &issue["loc"]).collect();
        assert_eq!(
            locs,
            vec![
                &json!(["body", 0, "children", 0, "children", 0, "label"]),
                &json!(["body", 1, "label"]),
            ]
        );
        let trees: Vec<Tree> = parse_json_body(br#"[{"label": "root"}]"#).unwrap();
        assert_eq!(trees.len(), 1);
    }

    #[test]
    fn a_missing_query_parameter() {
        assert_eq!(
            missing_field("query", "page"),
            json!({"type": "missing", "loc": ["query", "page"], "msg": "Field required", "input": null})
        );
    }

    #[test]
    fn field_order_comes_from_the_struct() {
        assert_eq!(
            declared_fields::<Pickpocket>(),
            Some(
                &[
                    "npc_id",
                    "slot_id",
                    "base_success_chance",
                    "detection_chance",
                    "session_id",
                    "world_id"
                ][..]
            )
        );
        assert_eq!(declared_fields::<Vec<i64>>(), None);
    }
}
