//! A plugin's own SQL (`db.query`, `db.execute`, its migrations), confined by the database
//! itself to the plugin's own tables, never by looking at words in the statement.
//!
//! - **SQLite**: an authorizer, installed once on every connection, consults the
//!   confinement of the statement being compiled on this thread (none for the host's own
//!   statements): a plugin may read and write its own tables (`<plugin>__*`), read the caller
//!   views and the `id` of the game tables a foreign key may reference, and create its own
//!   tables, indexes and views in its migrations. PRAGMA, ATTACH, transaction control,
//!   triggers, virtual and temporary tables and every other table are refused by SQLite when
//!   it compiles the statement. Plugin statements are compiled afresh (never from the
//!   statement cache the host's statements share), one per call; a write runs in a savepoint;
//!   a progress handler stops a statement past its deadline. A migration must leave every
//!   schema object and AUTOINCREMENT counter that is not the plugin's as it found them.
//! - **PostgreSQL**: each plugin has a schema (the host's) and a role of its own that owns
//!   its tables, with no rights on the host's tables beyond `REFERENCES (id)` and
//!   `SELECT (id)` on the game tables and `SELECT` on the caller views, and no right to
//!   create anything outside its migrations. A statement runs in a savepoint of the unit of
//!   work under `SET LOCAL ROLE` and `statement_timeout` (reads read-only, always rolled
//!   back), after PostgreSQL's own grammar accepted it as one plain statement (`EXPLAIN`: no
//!   SET, RESET, transaction control or DDL). The role cannot be switched back inside a
//!   statement: `set_config`, `UPDATE pg_settings` and temporary tables are revoked from
//!   `PUBLIC` (or plugin SQL is refused until an administrator revokes them); a check in the
//!   same transaction verifies role, caller and read-only mode anyway, and nothing the
//!   statement returned reaches the plugin unless it passed. A statement abandoned half-way
//!   breaks its unit of work, which then rolls back. Migrations run inside a
//!   `SECURITY DEFINER` function owned by the plugin's role, where PostgreSQL refuses role
//!   changes and transaction control; one that leaves a function or a trigger behind is
//!   rolled back.
//!
//! The caller views `caller_sessions (id, world_id)` and `caller_worlds (id)` list the rows
//! of the user the call acts for (none for a plugin acting as itself, all with a system
//! permission), so a plugin joins its rows to them instead of trusting its own checks.
//!
//! Native plugins remain trusted code (they run in the host's process); this confines their
//! SQL, including SQL that a plugin bug lets a client shape.

use std::{
    cell::RefCell,
    collections::HashSet,
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use plugin_api::db::{Rows, SqlValue};
use rusqlite::{
    hooks::{AuthAction, AuthContext, Authorization},
    types::ValueRef,
    Connection,
};
use sqlx::{postgres::PgRow, Column, Row as _, TypeInfo, ValueRef as _};

use super::{
    sql::{pg_execute_bound, pg_fetch_all_bound, pg_script, DbError, PgQuery},
    unit_of_work::UnitOfWork,
};

/// The prefix of a plugin's table names on both databases (`game_dialogue__lines`).
pub fn table_prefix(plugin_id: &str) -> String {
    format!("{}__", plugin_id.replace('-', "_"))
}

/// The host views a plugin may read, filtered by the caller of each call.
pub const CALLER_VIEWS: &[&str] = &["caller_sessions", "caller_worlds"];

/// Game tables a plugin's table may reference by id (a real foreign key).
pub const REFERENCEABLE: &[&str] = &[
    "game_sessions",
    "game_worlds",
    "game_npcs",
    "game_locations",
];

/// What a confined statement may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read only (`db.query`).
    Read,
    /// Read and change rows of its own tables (`db.execute`).
    Write,
    /// Also create, alter and drop its own tables, indexes and views (its migrations).
    Migrate,
}

/// Whose rows the caller views show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerRows {
    /// This user's.
    User(i64),
    /// Nobody's (an anonymous caller, a plugin acting as itself).
    Nobody,
    /// Everybody's (a plugin with a system permission).
    All,
}

impl CallerRows {
    /// The setting value PostgreSQL's views read.
    fn setting(self) -> String {
        match self {
            CallerRows::User(id) => id.to_string(),
            CallerRows::Nobody => String::new(),
            CallerRows::All => "all".to_owned(),
        }
    }
}

/// One plugin statement to run.
#[derive(Debug, Clone, Copy)]
pub struct PluginStatement<'a> {
    /// The plugin.
    pub plugin_id: &'a str,
    /// The SQL (one statement; a migration may hold several).
    pub sql: &'a str,
    /// Its parameters.
    pub params: &'a [SqlValue],
    /// What it may do.
    pub mode: Mode,
    /// Whose rows the caller views show.
    pub caller: CallerRows,
    /// Longest it may run.
    pub timeout: Duration,
}

/// What a statement produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The rows it returned.
    pub rows: Rows,
    /// Rows it changed.
    pub rows_affected: u64,
}

/// A refusal by the database's confinement, as opposed to an ordinary SQL error.
fn refused(message: impl Into<String>) -> DbError {
    DbError::Refused(message.into())
}

// ---------------------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------------------

/// The confinement of the plugin statement being prepared or stepped on this thread.
struct Active {
    prefix: String,
    mode: Mode,
    caller: CallerRows,
    /// When SQLite's progress handler stops the statement.
    deadline: Instant,
    /// The names of the database's tables and views, lower-case: SQLite reports a read of
    /// no column (`count(*)`) by the name in the FROM clause, which may be a CTE's.
    schema: HashSet<String>,
}

thread_local! {
    static ACTIVE: RefCell<Option<Active>> = const { RefCell::new(None) };
    /// What the authorizer last refused on this thread, for the error message.
    static DENIED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs the authorizer and the caller functions on a new connection.
pub fn install_sqlite(connection: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    connection.authorizer(Some(authorize));
    // Every 1000 virtual-machine steps: a confined statement past its deadline is stopped.
    connection.progress_handler(
        1000,
        Some(|| {
            ACTIVE.with(|active| {
                active
                    .borrow()
                    .as_ref()
                    .is_some_and(|active| Instant::now() >= active.deadline)
            })
        }),
    );
    // SAFETY: the handle is only used by these functions, which SQLite calls on this
    // connection while it is open (they are dropped with it).
    let handle = SqliteHandle(unsafe { connection.handle() });
    for (name, sql) in [
        (
            "pixsim7_caller_sessions",
            c"SELECT id, world_id FROM game_sessions WHERE ?1 OR user_id = ?2 ORDER BY id",
        ),
        (
            "pixsim7_caller_worlds",
            c"SELECT id, NULL FROM game_worlds WHERE ?1 OR owner_user_id = ?2 ORDER BY id",
        ),
    ] {
        let handle = handle.clone();
        connection.create_scalar_function(name, 0, FunctionFlags::SQLITE_UTF8, move |_| {
            let caller = ACTIVE.with(|active| active.borrow().as_ref().map(|a| a.caller));
            let (all, user) = match caller {
                Some(CallerRows::All) => (true, i64::MIN),
                Some(CallerRows::User(id)) => (false, id),
                Some(CallerRows::Nobody) | None => return Ok("[]".to_owned()),
            };
            // The host's own query, unconfined, then confined again.
            let outer = ACTIVE.with(|active| active.borrow_mut().take());
            let rows = handle.pairs(sql, all, user);
            ACTIVE.with(|active| *active.borrow_mut() = outer);
            Ok(serde_json::to_string(&rows?).expect("ids serialize"))
        })?;
    }
    Ok(())
}

/// The raw handle of the connection a caller function belongs to. The function runs a
/// nested query on it through SQLite's C API: rusqlite's `Context::get_connection` would
/// clear the connection's authorizer when its borrowed wrapper is dropped.
#[derive(Clone)]
struct SqliteHandle(*mut rusqlite::ffi::sqlite3);

// SAFETY: a connection is used by one thread at a time, and so is its handle here (only
// inside a function SQLite calls while running a statement on that connection).
unsafe impl Send for SqliteHandle {}

impl SqliteHandle {
    /// Runs `sql` with `?1 = all, ?2 = user`, collecting `(integer, integer or null)` rows.
    fn pairs(
        &self,
        sql: &std::ffi::CStr,
        all: bool,
        user: i64,
    ) -> rusqlite::Result<Vec<(i64, Option<i64>)>> {
        use rusqlite::ffi;
        let failed = |code: std::ffi::c_int| {
            rusqlite::Error::SqliteFailure(
                ffi::Error::new(code),
                Some("the caller view's query failed".to_owned()),
            )
        };
        let mut statement = std::ptr::null_mut();
        // SAFETY: `self.0` is the open connection running the calling statement; the
        // statement prepared here is finalized on every path below.
        unsafe {
            let code = ffi::sqlite3_prepare_v2(
                self.0,
                sql.as_ptr(),
                -1,
                &mut statement,
                std::ptr::null_mut(),
            );
            if code != ffi::SQLITE_OK {
                return Err(failed(code));
            }
            ffi::sqlite3_bind_int(statement, 1, i32::from(all));
            ffi::sqlite3_bind_int64(statement, 2, user);
            let mut rows = Vec::new();
            let outcome = loop {
                match ffi::sqlite3_step(statement) {
                    ffi::SQLITE_ROW => {
                        let second = (ffi::sqlite3_column_type(statement, 1) != ffi::SQLITE_NULL)
                            .then(|| ffi::sqlite3_column_int64(statement, 1));
                        rows.push((ffi::sqlite3_column_int64(statement, 0), second));
                    }
                    ffi::SQLITE_DONE => break Ok(rows),
                    code => break Err(failed(code)),
                }
            };
            ffi::sqlite3_finalize(statement);
            outcome
        }
    }
}

/// The views over those functions (created with the host's schema).
/// The rows come from the host's own query inside the function, so the authorizer never
/// lets a plugin's statement read the game tables themselves.
pub const SQLITE_CALLER_VIEWS: &str = "\
    DROP VIEW IF EXISTS caller_sessions; DROP VIEW IF EXISTS caller_worlds; \
    CREATE VIEW caller_sessions AS \
        SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS world_id \
        FROM json_each(pixsim7_caller_sessions()); \
    CREATE VIEW caller_worlds AS \
        SELECT json_extract(value, '$[0]') AS id FROM json_each(pixsim7_caller_worlds());";

/// Functions a confined statement may not call: extension loading, and the host's own
/// session editor.
const REFUSED_FUNCTIONS: &[&str] = &["load_extension", "pixsim7_patch"];

fn authorize(context: AuthContext<'_>) -> Authorization {
    ACTIVE.with(|active| match &*active.borrow() {
        None => Authorization::Allow,
        Some(active) => {
            if allowed(active, &context) {
                Authorization::Allow
            } else {
                let what = describe(&context.action);
                DENIED.with(|denied| *denied.borrow_mut() = Some(what));
                Authorization::Deny
            }
        }
    })
}

fn allowed(active: &Active, context: &AuthContext<'_>) -> bool {
    let own = |table: &str| {
        table.len() > active.prefix.len()
            && table[..active.prefix.len()].eq_ignore_ascii_case(&active.prefix)
    };
    // SQLite names the indexes of UNIQUE and PRIMARY KEY constraints itself.
    let own_index =
        |index: &str| own(index) || index.strip_prefix("sqlite_autoindex_").is_some_and(own);
    let main = context.database_name.is_none_or(|db| db == "main");
    let writes = active.mode != Mode::Read;
    let migrates = active.mode == Mode::Migrate;
    match context.action {
        AuthAction::Select | AuthAction::Recursive => true,
        AuthAction::Read {
            table_name,
            column_name,
        } => {
            // ALTER TABLE ... RENAME reads the temporary schema too.
            (migrates && table_name == "sqlite_temp_master")
                || main
                    && (own(table_name)
                // No column of a CTE (`WITH n AS (...) SELECT count(*) FROM n`), never of a
                // table, a view or a built-in virtual table.
                || (column_name.is_empty()
                    && !active.schema.contains(&table_name.to_ascii_lowercase())
                    && !is_builtin_table(table_name))
                || CALLER_VIEWS.contains(&table_name)
                || matches!(table_name, "json_each" | "json_tree")
                // A foreign key's check reads the referenced id (ids only).
                || (REFERENCEABLE.contains(&table_name) && column_name == "id")
                // DDL reads and rewrites the schema and the AUTOINCREMENT counters.
                || (migrates && matches!(table_name, "sqlite_master" | "sqlite_sequence")))
        }
        AuthAction::Insert { table_name }
        | AuthAction::Delete { table_name }
        | AuthAction::Update { table_name, .. } => {
            // DDL rewrites the schema (ALTER TABLE ... RENAME the temporary one too), and
            // dropping a table forgets its AUTOINCREMENT counter.
            (migrates && table_name == "sqlite_temp_master")
                || main
                    && ((writes && own(table_name))
                        || (migrates && matches!(table_name, "sqlite_master" | "sqlite_sequence")))
        }
        AuthAction::Function { function_name } => !REFUSED_FUNCTIONS
            .iter()
            .any(|refused| function_name.eq_ignore_ascii_case(refused)),
        AuthAction::CreateTable { table_name, .. }
        | AuthAction::DropTable { table_name, .. }
        | AuthAction::CreateView {
            view_name: table_name,
            ..
        }
        | AuthAction::DropView {
            view_name: table_name,
            ..
        }
        | AuthAction::AlterTable { table_name, .. } => main && migrates && own(table_name),
        AuthAction::CreateIndex {
            index_name,
            table_name,
        }
        | AuthAction::DropIndex {
            index_name,
            table_name,
        } => main && migrates && own(table_name) && own_index(index_name),
        // CREATE INDEX fills the new index.
        AuthAction::Reindex { index_name } => main && migrates && own_index(index_name),
        // Everything else: PRAGMA, ATTACH/DETACH, transaction control and savepoints,
        // triggers, temporary objects, virtual tables, ANALYZE, REINDEX, VACUUM...
        _ => false,
    }
}

/// SQLite's own virtual tables that need no CREATE (table-valued functions and the like).
fn is_builtin_table(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("pragma_")
        || name.starts_with("sqlite_")
        || [
            "dbstat",
            "generate_series",
            "fts3tokenize",
            "json_each",
            "json_tree",
        ]
        .contains(&name.as_str())
}

/// A refused action in words, for the error the plugin (and the log) gets.
fn describe(action: &AuthAction<'_>) -> String {
    match action {
        AuthAction::Read {
            table_name,
            column_name,
        } => format!("reading {table_name}.{column_name}"),
        AuthAction::Insert { table_name } => format!("inserting into {table_name}"),
        AuthAction::Update {
            table_name,
            column_name,
        } => format!("updating {table_name}.{column_name}"),
        AuthAction::Delete { table_name } => format!("deleting from {table_name}"),
        AuthAction::Pragma { pragma_name, .. } => format!("PRAGMA {pragma_name}"),
        AuthAction::Function { function_name } => format!("calling {function_name}()"),
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => {
            "transaction control (the host owns the transaction)".to_owned()
        }
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => "ATTACH/DETACH".to_owned(),
        other => format!("{other:?} (outside what a plugin's statement may do)"),
    }
}

/// Clears the thread's confinement when dropped (also when a statement panics).
struct Confined;

impl Confined {
    fn enter(
        connection: &Connection,
        statement: &PluginStatement<'_>,
    ) -> Result<Confined, DbError> {
        let mut names = connection.prepare_cached(
            "SELECT lower(name) FROM sqlite_master WHERE type IN ('table', 'view')",
        )?;
        let schema = names
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<rusqlite::Result<HashSet<String>>>()?;
        drop(names);
        ACTIVE.with(|active| {
            *active.borrow_mut() = Some(Active {
                prefix: table_prefix(statement.plugin_id),
                mode: statement.mode,
                caller: statement.caller,
                deadline: Instant::now() + statement.timeout,
                schema,
            });
        });
        DENIED.with(|denied| denied.borrow_mut().take());
        Ok(Confined)
    }
}

impl Drop for Confined {
    fn drop(&mut self) {
        ACTIVE.with(|active| *active.borrow_mut() = None);
    }
}

/// Runs one confined plugin statement on SQLite.
pub fn run_sqlite(
    connection: &Connection,
    statement: &PluginStatement<'_>,
) -> Result<Outcome, DbError> {
    // A write runs in a savepoint, so a statement that fails half-way (INSERT OR FAIL, a
    // RETURNING value that cannot be read) keeps nothing.
    let contained = statement.mode != Mode::Read && !connection.is_autocommit();
    if contained {
        super::sql::sqlite_script(connection, "SAVEPOINT pixsim7_plugin_sql")?;
    }
    let outcome = confined_sqlite(connection, statement);
    if contained {
        let end = match outcome {
            Ok(_) => "RELEASE pixsim7_plugin_sql",
            Err(_) => "ROLLBACK TO pixsim7_plugin_sql; RELEASE pixsim7_plugin_sql",
        };
        connection.execute_batch(end)?;
    }
    outcome
}

fn confined_sqlite(
    connection: &Connection,
    statement: &PluginStatement<'_>,
) -> Result<Outcome, DbError> {
    let _confined = Confined::enter(connection, statement)?;
    // Never from the cache: a cached statement was authorized for whoever prepared it.
    // Statement by statement: a second one is refused, never silently ignored.
    let mut batch = rusqlite::Batch::new(connection, statement.sql);
    let Some(mut prepared) = batch.next().map_err(sqlite_refusal)? else {
        return Err(DbError::Statement("the SQL holds no statement".to_owned()));
    };
    if !matches!(batch.next(), Ok(None)) {
        return Err(DbError::Statement(
            "one statement per call: the SQL holds more than one".to_owned(),
        ));
    }
    if prepared.parameter_count() != statement.params.len() {
        return Err(DbError::Statement(format!(
            "the statement has {} parameters, but {} values were given",
            prepared.parameter_count(),
            statement.params.len()
        )));
    }
    for (index, value) in statement.params.iter().enumerate() {
        bind_sqlite(&mut prepared, index + 1, value)?;
    }
    let columns: Vec<String> = prepared
        .column_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let declared: Vec<Option<String>> = prepared
        .columns()
        .iter()
        .map(|c| c.decl_type().map(str::to_ascii_uppercase))
        .collect();
    let mut rows = Vec::new();
    let mut raw = prepared.raw_query();
    while let Some(row) = raw.next().map_err(sqlite_refusal)? {
        let values = (0..columns.len())
            .map(|i| {
                sqlite_value(
                    row.get_ref(i)?,
                    &columns[i],
                    declared[i].as_deref().unwrap_or(""),
                )
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        rows.push(values);
    }
    drop(raw);
    let rows_affected = if prepared.readonly() {
        0
    } else {
        connection.changes()
    };
    Ok(Outcome {
        rows: Rows { columns, rows },
        rows_affected,
    })
}

/// How long a plugin's migration may run on SQLite (the host's hook timeout bounds it too).
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(3600);

/// Runs a plugin's migration script on SQLite, confined to its own tables.
pub fn migrate_sqlite(
    connection: &Connection,
    plugin_id: &str,
    script: &str,
) -> Result<(), DbError> {
    let statement = PluginStatement {
        plugin_id,
        sql: script,
        params: &[],
        mode: Mode::Migrate,
        caller: CallerRows::Nobody,
        timeout: MIGRATION_TIMEOUT,
    };
    let before = foreign_schema(connection, plugin_id)?;
    {
        let _confined = Confined::enter(connection, &statement)?;
        connection.execute_batch(script).map_err(sqlite_refusal)?;
    }
    // DDL needs the schema tables, which the authorizer cannot tell from a plugin writing
    // them for itself; so the migration must have left everything not its own as it was
    // (a table renamed out of its prefix, a counter of the host's changed: refused).
    let after = foreign_schema(connection, plugin_id)?;
    if before != after {
        let changed: Vec<String> = after
            .iter()
            .filter(|entry| !before.contains(entry))
            .chain(before.iter().filter(|entry| !after.contains(entry)))
            .map(|(kind, name, _)| format!("{kind} {name}"))
            .collect();
        return Err(refused(format!(
            "the migration changed what is not the plugin's own: {}",
            changed.join(", ")
        )));
    }
    Ok(())
}

/// Every schema object and AUTOINCREMENT counter that is not `plugin_id`'s.
fn foreign_schema(
    connection: &Connection,
    plugin_id: &str,
) -> Result<Vec<(String, String, String)>, DbError> {
    let prefix = table_prefix(plugin_id);
    let own = |name: &str| {
        let name = name.strip_prefix("sqlite_autoindex_").unwrap_or(name);
        name.len() > prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(&prefix)
    };
    let mut entries = Vec::new();
    let mut schema = connection.prepare_cached(
        "SELECT type, name, tbl_name, COALESCE(sql, '') FROM sqlite_master ORDER BY type, name",
    )?;
    let mut rows = schema.query([])?;
    while let Some(row) = rows.next()? {
        let (kind, name, table, sql): (String, String, String, String) =
            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
        if !(own(&name) && own(&table)) {
            entries.push((kind, name, sql));
        }
    }
    drop(rows);
    let has_counters = entries.iter().any(|(_, name, _)| name == "sqlite_sequence");
    if has_counters {
        let mut counters =
            connection.prepare_cached("SELECT name, seq FROM sqlite_sequence ORDER BY name")?;
        let mut rows = counters.query([])?;
        while let Some(row) = rows.next()? {
            let (name, seq): (String, i64) = (row.get(0)?, row.get(1)?);
            if !own(&name) {
                entries.push(("counter".to_owned(), name, seq.to_string()));
            }
        }
    }
    Ok(entries)
}

fn bind_sqlite(
    statement: &mut rusqlite::Statement<'_>,
    index: usize,
    value: &SqlValue,
) -> Result<(), DbError> {
    match value {
        SqlValue::Null => statement.raw_bind_parameter(index, rusqlite::types::Null),
        SqlValue::Bool(b) => statement.raw_bind_parameter(index, *b),
        SqlValue::Int(i) => statement.raw_bind_parameter(index, *i),
        SqlValue::Float(f) => statement.raw_bind_parameter(index, *f),
        SqlValue::Text(t) => statement.raw_bind_parameter(index, t.as_str()),
        SqlValue::Bytes(b) => statement.raw_bind_parameter(index, b.as_slice()),
        SqlValue::Json(v) => statement.raw_bind_parameter(index, v.to_string()),
    }
    .map_err(DbError::from)
}

/// A value read as its column's declared type: `BOOLEAN` as a boolean, `JSON` as a document
/// (text that is not JSON is an error naming the column), otherwise by storage class.
fn sqlite_value(value: ValueRef<'_>, column: &str, declared: &str) -> Result<SqlValue, DbError> {
    let decode = |problem: String| DbError::Decode {
        column: column.to_owned(),
        problem,
    };
    Ok(match value {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(i) if declared.contains("BOOL") => match i {
            0 => SqlValue::Bool(false),
            1 => SqlValue::Bool(true),
            other => return Err(decode(format!("declared {declared} but holds {other}"))),
        },
        ValueRef::Integer(i) => SqlValue::Int(i),
        ValueRef::Real(f) => SqlValue::Float(f),
        ValueRef::Text(bytes) => {
            let text = std::str::from_utf8(bytes)
                .map_err(|e| decode(format!("text that is not UTF-8: {e}")))?;
            if declared.contains("JSON") {
                SqlValue::Json(serde_json::from_str(text).map_err(|e| {
                    decode(format!(
                        "declared {declared} but holds text that is not JSON: {e}"
                    ))
                })?)
            } else {
                SqlValue::Text(text.to_owned())
            }
        }
        ValueRef::Blob(bytes) => SqlValue::Bytes(bytes.to_vec()),
    })
}

/// SQLite's refusal (`SQLITE_AUTH`) told apart from ordinary SQL errors.
fn sqlite_refusal(error: rusqlite::Error) -> DbError {
    if matches!(&error, rusqlite::Error::SqliteFailure(failure, _)
        if failure.code == rusqlite::ErrorCode::OperationInterrupted)
    {
        return DbError::Statement(
            "the statement ran longer than [game] plugin_statement_timeout_ms and was stopped"
                .to_owned(),
        );
    }
    let denied = matches!(
        &error,
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.code == rusqlite::ErrorCode::AuthorizationForStatementDenied
    ) || error.to_string().contains("not authorized");
    let what = DENIED.with(|denied| denied.borrow_mut().take());
    if denied {
        match what {
            Some(what) => refused(format!("SQLite refused {what}")),
            None => refused(format!("SQLite refused it: {error}")),
        }
    } else {
        DbError::from(error)
    }
}

// ---------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------

/// The names a plugin's objects have on one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgNames {
    /// Its schema (per database).
    pub schema: String,
    /// Its role (per cluster, so named after the database too).
    pub role: String,
}

impl PgNames {
    /// The names for `plugin_id` on the database tagged `database_tag`.
    pub fn new(database_tag: &str, plugin_id: &str) -> PgNames {
        let id = plugin_id.replace('-', "_");
        let role = format!("pixsim7_{database_tag}_{id}");
        // Identifiers are at most 63 bytes; plugin ids are short, but never truncate
        // silently into another plugin's name.
        let role = if role.len() > 63 {
            format!("pixsim7_{database_tag}_{:016x}", fnv(plugin_id))
        } else {
            role
        };
        let schema = format!("plugin_{id}");
        let schema = if schema.len() > 63 {
            format!("plugin_{:016x}", fnv(plugin_id))
        } else {
            schema
        };
        PgNames { schema, role }
    }
}

/// FNV-1a, 64 bits.
pub fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The host's PostgreSQL objects for confinement: the caller views and the check that a
/// statement kept its role and caller. Run under the migration lock at every start.
pub const POSTGRES_SETUP: &str = r#"
CREATE OR REPLACE VIEW caller_sessions WITH (security_barrier) AS
    SELECT id, world_id FROM game_sessions
    WHERE current_setting('pixsim7.caller', true) = 'all'
       OR user_id = (CASE WHEN current_setting('pixsim7.caller', true) ~ '^-?[0-9]{1,19}$'
                          THEN current_setting('pixsim7.caller', true)::bigint END);
CREATE OR REPLACE VIEW caller_worlds WITH (security_barrier) AS
    SELECT id FROM game_worlds
    WHERE current_setting('pixsim7.caller', true) = 'all'
       OR owner_user_id = (CASE WHEN current_setting('pixsim7.caller', true) ~ '^-?[0-9]{1,19}$'
                           THEN current_setting('pixsim7.caller', true)::bigint END);
DO $$ BEGIN
    -- Plugin roles must not be able to change their role, their caller or read-only mode
    -- in the middle of a statement (set_config, or an UPDATE of pg_settings), nor create
    -- temporary tables, which would outlive the statement on a pooled connection and shadow
    -- the host's tables. The host keeps these rights for itself. Where the host's user may
    -- not revoke them, plugin SQL is refused until an administrator does (see
    -- postgres_provision).
    IF has_function_privilege('public', 'pg_catalog.set_config(text,text,boolean)', 'EXECUTE') THEN
        BEGIN
            EXECUTE format('GRANT EXECUTE ON FUNCTION pg_catalog.set_config(text,text,boolean) TO %I', current_user);
            REVOKE EXECUTE ON FUNCTION pg_catalog.set_config(text,text,boolean) FROM PUBLIC;
        EXCEPTION WHEN insufficient_privilege THEN NULL;
        END;
    END IF;
    IF has_table_privilege('public', 'pg_catalog.pg_settings', 'UPDATE') THEN
        BEGIN
            REVOKE UPDATE ON pg_catalog.pg_settings FROM PUBLIC;
        EXCEPTION WHEN insufficient_privilege THEN NULL;
        END;
    END IF;
    IF has_database_privilege('public', current_database(), 'TEMPORARY') THEN
        BEGIN
            EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO %I', current_database(), current_user);
            EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
        EXCEPTION WHEN insufficient_privilege THEN NULL;
        END;
    END IF;
END $$;
CREATE OR REPLACE FUNCTION pixsim7_confined(
    expected_role text, expected_caller text, read_only boolean)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF current_user <> expected_role
       OR coalesce(current_setting('pixsim7.caller', true), '') <> expected_caller
       OR (read_only AND current_setting('transaction_read_only') <> 'on') THEN
        RAISE EXCEPTION 'the statement left its confinement (role %, caller %)',
            current_user, current_setting('pixsim7.caller', true)
            USING ERRCODE = '42501';
    END IF;
END $$;
"#;

/// Creates (or brings up to date) a plugin's role and schema, and moves its tables there
/// from `public` (where hosts before confinement kept them). Idempotent; run before the
/// plugin's migrations, under the migration lock.
pub fn postgres_provision(names: &PgNames, plugin_id: &str) -> String {
    let PgNames { schema, role } = names;
    let prefix = table_prefix(plugin_id).replace('_', "\\_");
    let references = REFERENCEABLE
        .iter()
        .map(|table| format!("GRANT REFERENCES (id), SELECT (id) ON {table} TO \"{role}\";"))
        .collect::<String>();
    let views = CALLER_VIEWS.join(", ");
    format!(
        r#"
DO $$ BEGIN
    CREATE ROLE "{role}" NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
DO $$ BEGIN
    -- The host switches to the role (SET ROLE), so it must be a member that may.
    IF current_setting('server_version_num')::int >= 160000 THEN
        IF NOT pg_has_role(current_user, '{role}', 'SET') THEN
            EXECUTE format('GRANT %I TO %I WITH INHERIT FALSE, SET TRUE', '{role}', current_user);
        END IF;
    ELSIF NOT pg_has_role(current_user, '{role}', 'MEMBER') THEN
        EXECUTE format('GRANT %I TO %I', '{role}', current_user);
    END IF;
    IF has_function_privilege('{role}', 'pg_catalog.set_config(text,text,boolean)', 'EXECUTE')
       OR has_table_privilege('{role}', 'pg_catalog.pg_settings', 'UPDATE')
       OR has_database_privilege('{role}', current_database(), 'TEMPORARY') THEN
        RAISE EXCEPTION 'PostgreSQL cannot confine the plugin''s SQL: every role may still call set_config, update pg_settings or create temporary tables. Run once as a superuser: REVOKE EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) FROM PUBLIC; REVOKE UPDATE ON pg_catalog.pg_settings FROM PUBLIC; REVOKE TEMPORARY ON DATABASE % FROM PUBLIC; GRANT EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) TO %; GRANT TEMPORARY ON DATABASE % TO %',
            quote_ident(current_database()), quote_ident(current_user),
            quote_ident(current_database()), quote_ident(current_user);
    END IF;
END $$;
-- The host owns the schema; the plugin's role owns its tables and may create objects
-- only while its migrations run.
CREATE SCHEMA IF NOT EXISTS "{schema}";
ALTER SCHEMA "{schema}" OWNER TO CURRENT_USER;
REVOKE ALL ON SCHEMA "{schema}" FROM PUBLIC;
REVOKE CREATE ON SCHEMA "{schema}" FROM "{role}";
GRANT USAGE ON SCHEMA "{schema}" TO "{role}";
{references}
GRANT SELECT ON {views} TO "{role}";
GRANT EXECUTE ON FUNCTION public.pixsim7_confined(text, text, boolean) TO "{role}";
DO $$ DECLARE t record; BEGIN
    FOR t IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'p')
               AND c.relname LIKE '{prefix}%'
    LOOP
        EXECUTE format('GRANT CREATE ON SCHEMA %I TO %I', '{schema}', '{role}');
        EXECUTE format('ALTER TABLE public.%I SET SCHEMA %I', t.relname, '{schema}');
        EXECUTE format('ALTER TABLE %I.%I OWNER TO %I', '{schema}', t.relname, '{role}');
        EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM %I', '{schema}', '{role}');
    END LOOP;
END $$;
"#
    )
}

/// Runs a plugin's migration script inside a `SECURITY DEFINER` function owned by its role
/// (PostgreSQL refuses role changes and transaction control there), with the right to create
/// objects in its schema for that time only, then checks that it left no function or trigger
/// behind (they would run with the privileges of whoever fires them).
pub fn postgres_migration(names: &PgNames, script: &str) -> String {
    let PgNames { schema, role } = names;
    let quoted = quote_literal(script);
    // A dollar-quote tag the script does not contain.
    let mut tag = "pixsim7".to_owned();
    while quoted.contains(&format!("${tag}$")) {
        tag.push('_');
    }
    format!(
        r#"
GRANT CREATE ON SCHEMA "{schema}" TO "{role}";
CREATE FUNCTION "{schema}".pixsim7_migrate() RETURNS void LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = "{schema}", public
AS ${tag}$ BEGIN EXECUTE {quoted}; END ${tag}$;
ALTER FUNCTION "{schema}".pixsim7_migrate() OWNER TO "{role}";
SELECT "{schema}".pixsim7_migrate();
DROP FUNCTION "{schema}".pixsim7_migrate();
REVOKE CREATE ON SCHEMA "{schema}" FROM "{role}";
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_proc WHERE pronamespace = '"{schema}"'::regnamespace) THEN
        RAISE EXCEPTION 'plugin migrations may not create functions or procedures';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
               WHERE c.relnamespace = '"{schema}"'::regnamespace AND NOT t.tgisinternal) THEN
        RAISE EXCEPTION 'plugin migrations may not create triggers';
    END IF;
END $$;
"#
    )
}

/// `text` as an SQL string literal, whatever `standard_conforming_strings` says.
fn quote_literal(text: &str) -> String {
    let quoted = text.replace('\'', "''");
    if quoted.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// Statements PostgreSQL's `EXPLAIN` accepted for each plugin (one plain statement each).
fn vetted() -> &'static Mutex<HashSet<(String, String)>> {
    static VETTED: OnceLock<Mutex<HashSet<(String, String)>>> = OnceLock::new();
    VETTED.get_or_init(|| Mutex::new(HashSet::new()))
}

/// At most this many vetted statements are remembered (then vetting starts over).
const VETTED_CAPACITY: usize = 4096;

/// Runs one confined plugin statement on PostgreSQL, in a savepoint of `unit`'s transaction
/// (which `connection` is in), under the plugin's role, for at most `timeout`.
pub async fn run_postgres(
    connection: &mut sqlx::PgConnection,
    unit: &UnitOfWork,
    names: &PgNames,
    statement: &PluginStatement<'_>,
) -> Result<Outcome, DbError> {
    let caller = statement.caller.setting();
    // Whatever a statement left on the session (a held cursor, an advisory lock) goes with it.
    const CLEAN: &str = "CLOSE ALL; SELECT pg_advisory_unlock_all();";
    const UNDO: &str =
        "ROLLBACK TO SAVEPOINT pixsim7_plugin_sql; RELEASE SAVEPOINT pixsim7_plugin_sql;";
    let (read_only, keep) = match statement.mode {
        // A read never keeps anything: rolled back whatever it tried.
        Mode::Read => (" SET LOCAL transaction_read_only = on;", UNDO),
        Mode::Write | Mode::Migrate => (
            "",
            "RESET ALL; RESET ROLE; RELEASE SAVEPOINT pixsim7_plugin_sql;",
        ),
    };
    let open = format!(
        "SAVEPOINT pixsim7_plugin_sql;{read_only} SET LOCAL statement_timeout = {ms}; \
         SET LOCAL ROLE \"{role}\"; SET LOCAL search_path = \"{schema}\", public; \
         SET LOCAL pixsim7.caller = {caller_literal};",
        ms = statement.timeout.as_millis().max(1),
        role = names.role,
        schema = names.schema,
        caller_literal = quote_literal(&caller),
    );
    // Until the connection is back to the host's role and out of the savepoint, the unit may
    // not go on: if this future is dropped (or a step of the bracket fails) on the way, the
    // unit refuses further calls and rolls back.
    let abandoned = unit.break_unless_finished();
    pg_simple(connection, &open).await?;
    let outcome = confined_postgres(connection, names, statement, &caller).await;
    let close = match &outcome {
        Ok(_) => format!("{keep} {CLEAN}"),
        Err(_) => format!("{UNDO} {CLEAN}"),
    };
    pg_simple(connection, &close).await?;
    abandoned.finished();
    outcome
}

async fn confined_postgres(
    connection: &mut sqlx::PgConnection,
    names: &PgNames,
    statement: &PluginStatement<'_>,
    caller: &str,
) -> Result<Outcome, DbError> {
    let key = (statement.plugin_id.to_owned(), statement.sql.to_owned());
    let known = vetted().lock().expect("vetted lock").contains(&key);
    if !known {
        // PostgreSQL's grammar decides: EXPLAIN takes only SELECT, INSERT, UPDATE, DELETE,
        // MERGE, VALUES (and a few that are harmless here), never SET, RESET, transaction
        // control or DDL; it also checks the statement's privileges under the plugin's role.
        let explain = format!("EXPLAIN {}", statement.sql);
        pg_fetch(connection, &explain, statement.params)
            .await
            .map_err(|error| match error.statement_message() {
                Some(message) => refused(format!(
                    "PostgreSQL does not take it as one plain statement on the plugin's tables: {message}"
                )),
                None => error,
            })?;
        let mut vetted = vetted().lock().expect("vetted lock");
        if vetted.len() >= VETTED_CAPACITY {
            vetted.clear();
        }
        vetted.insert(key);
    }
    let mut outcome = Outcome::default();
    if statement.mode == Mode::Read {
        let rows = pg_fetch(connection, statement.sql, statement.params).await?;
        outcome.rows.columns = rows
            .first()
            .map(|row| row.columns().iter().map(|c| c.name().to_owned()).collect())
            .unwrap_or_default();
        outcome.rows.rows = rows
            .iter()
            .map(|row| (0..row.len()).map(|i| postgres_value(row, i)).collect())
            .collect::<Result<_, _>>()?;
    } else {
        outcome.rows_affected = pg_execute(connection, statement.sql, statement.params).await?;
    }
    // The statement may not have left its role, its caller or read-only mode (set_config
    // mid-statement).
    let check = format!(
        "SELECT public.pixsim7_confined({}, {}, {})",
        quote_literal(&names.role),
        quote_literal(caller),
        statement.mode == Mode::Read
    );
    pg_simple(connection, &check)
        .await
        .map_err(|error| match error.statement_message() {
            Some(message) => refused(message),
            None => error,
        })?;
    Ok(outcome)
}

async fn pg_fetch(
    connection: &mut sqlx::PgConnection,
    sql: &str,
    params: &[SqlValue],
) -> Result<Vec<PgRow>, DbError> {
    Ok(pg_fetch_all_bound(connection, pg_query(sql, params)).await?)
}

async fn pg_execute(
    connection: &mut sqlx::PgConnection,
    sql: &str,
    params: &[SqlValue],
) -> Result<u64, DbError> {
    Ok(pg_execute_bound(connection, pg_query(sql, params)).await?)
}

async fn pg_simple(connection: &mut sqlx::PgConnection, sql: &str) -> Result<(), DbError> {
    Ok(pg_script(connection, sql).await?)
}

fn pg_query<'q>(sql: &'q str, params: &'q [SqlValue]) -> PgQuery<'q> {
    let mut query = sqlx::query(sql);
    for value in params {
        query = match value {
            SqlValue::Null => query.bind(UntypedNull),
            SqlValue::Bool(b) => query.bind(*b),
            SqlValue::Int(i) => query.bind(*i),
            SqlValue::Float(f) => query.bind(*f),
            SqlValue::Text(t) => query.bind(t.as_str()),
            SqlValue::Bytes(b) => query.bind(b.as_slice()),
            SqlValue::Json(v) => query.bind(sqlx::types::Json(v)),
        };
    }
    query
}

/// A NULL parameter whose type PostgreSQL infers from where it is used.
struct UntypedNull;

impl sqlx::Type<sqlx::Postgres> for UntypedNull {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_oid(sqlx::postgres::types::Oid(0))
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for UntypedNull {
    fn encode_by_ref(
        &self,
        _: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        Ok(sqlx::encode::IsNull::Yes)
    }
}

/// A PostgreSQL value as the column's type says.
fn postgres_value(row: &PgRow, index: usize) -> Result<SqlValue, DbError> {
    let column = &row.columns()[index];
    let type_name = column.type_info().name();
    let decode = |error: sqlx::Error| DbError::Decode {
        column: column.name().to_owned(),
        problem: format!("{type_name}: {error}"),
    };
    if row.try_get_raw(index).map_err(decode)?.is_null() {
        return Ok(SqlValue::Null);
    }
    Ok(match type_name {
        "BOOL" => SqlValue::Bool(row.try_get(index).map_err(decode)?),
        "INT2" => SqlValue::Int(row.try_get::<i16, _>(index).map_err(decode)?.into()),
        "INT4" => SqlValue::Int(row.try_get::<i32, _>(index).map_err(decode)?.into()),
        "INT8" => SqlValue::Int(row.try_get(index).map_err(decode)?),
        "FLOAT4" => SqlValue::Float(row.try_get::<f32, _>(index).map_err(decode)?.into()),
        "FLOAT8" => SqlValue::Float(row.try_get(index).map_err(decode)?),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => {
            SqlValue::Text(row.try_get(index).map_err(decode)?)
        }
        "JSON" | "JSONB" => SqlValue::Json(row.try_get(index).map_err(decode)?),
        "BYTEA" => SqlValue::Bytes(row.try_get(index).map_err(decode)?),
        other => {
            return Err(DbError::Decode {
                column: column.name().to_owned(),
                problem: format!(
                    "its type {other} is not one plugins read (boolean, integers, floats, text, \
                     bytea, json, jsonb); cast it in the statement, e.g. {}::text",
                    column.name()
                ),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Connection {
        let connection = Connection::open_in_memory().unwrap();
        install_sqlite(&connection).unwrap();
        connection
            .execute_batch(
                "CREATE TABLE game_sessions (id INTEGER PRIMARY KEY, user_id INTEGER, world_id INTEGER, flags TEXT);
                 CREATE TABLE game_worlds (id INTEGER PRIMARY KEY AUTOINCREMENT, owner_user_id INTEGER);
                 INSERT INTO game_worlds (owner_user_id) VALUES (1);
                 INSERT INTO game_sessions (user_id, flags) VALUES (1, '{}'), (2, '{}');
                 CREATE TABLE p__items (id INTEGER PRIMARY KEY AUTOINCREMENT, note TEXT UNIQUE,
                     session_id INTEGER REFERENCES game_sessions (id));",
            )
            .unwrap();
        connection.execute_batch(SQLITE_CALLER_VIEWS).unwrap();
        connection
    }

    fn statement(sql: &str, mode: Mode, caller: CallerRows) -> PluginStatement<'_> {
        PluginStatement {
            plugin_id: "p",
            sql,
            params: &[],
            mode,
            caller,
            timeout: Duration::from_millis(200),
        }
    }

    fn run(
        connection: &Connection,
        sql: &str,
        mode: Mode,
        caller: CallerRows,
    ) -> Result<Outcome, DbError> {
        run_sqlite(connection, &statement(sql, mode, caller))
    }

    #[test]
    fn sqlite_confines_a_plugin_to_its_tables_and_the_caller_views() {
        let connection = store();
        let user = CallerRows::User(1);
        for sql in [
            "SELECT * FROM game_sessions",
            "SELECT flags FROM game_sessions",
            "PRAGMA foreign_keys = OFF",
            "SELECT name FROM pragma_table_list",
        ] {
            let error = run(&connection, sql, Mode::Write, user).unwrap_err();
            assert!(matches!(error, DbError::Refused(_)), "{sql}: {error}");
        }
        run(
            &connection,
            "INSERT INTO p__items (note, session_id) VALUES ('game_sessions', 1)",
            Mode::Write,
            user,
        )
        .unwrap();
        let refused = run(
            &connection,
            "INSERT INTO p__items (note) VALUES ('x')",
            Mode::Read,
            user,
        )
        .unwrap_err();
        assert!(matches!(refused, DbError::Refused(_)), "{refused}");
        let mine = run(
            &connection,
            "SELECT id FROM caller_sessions",
            Mode::Read,
            user,
        )
        .unwrap();
        assert_eq!(mine.rows.rows, vec![vec![SqlValue::Int(1)]]);
        let nobody = run(
            &connection,
            "SELECT id FROM caller_sessions",
            Mode::Read,
            CallerRows::Nobody,
        )
        .unwrap();
        assert!(nobody.rows.rows.is_empty());
        // The host's own statements are not confined, and the authorizer is still installed.
        connection
            .prepare("SELECT flags FROM game_sessions")
            .unwrap();
        assert!(run(
            &connection,
            "SELECT flags FROM game_sessions",
            Mode::Read,
            user
        )
        .is_err());
    }

    #[test]
    fn a_statement_past_its_deadline_is_stopped() {
        let connection = store();
        let error = run(
            &connection,
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n",
            Mode::Read,
            CallerRows::Nobody,
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("plugin_statement_timeout_ms"),
            "{error}"
        );
    }

    #[test]
    fn a_write_that_fails_half_way_keeps_nothing() {
        let connection = store();
        connection.execute_batch("BEGIN").unwrap();
        run(
            &connection,
            "INSERT INTO p__items (note) VALUES ('taken')",
            Mode::Write,
            CallerRows::Nobody,
        )
        .unwrap();
        // The second row breaks the UNIQUE constraint after the first was written.
        let failed = run(
            &connection,
            "INSERT OR FAIL INTO p__items (note) VALUES ('fresh'), ('taken')",
            Mode::Write,
            CallerRows::Nobody,
        );
        assert!(failed.is_err());
        let count: i64 = connection
            .query_row("SELECT COUNT(*) FROM p__items", [], |row| row.get(0))
            .unwrap();
        assert_eq!(count, 1);
        connection.execute_batch("COMMIT").unwrap();
    }

    #[test]
    fn a_migration_may_not_change_what_is_not_its_own() {
        let connection = store();
        migrate_sqlite(
            &connection,
            "p",
            "CREATE TABLE p__more (id INTEGER PRIMARY KEY AUTOINCREMENT, x TEXT UNIQUE); \
             CREATE INDEX p__more_x ON p__more (x); INSERT INTO p__more (x) VALUES ('a');",
        )
        .unwrap();
        for script in [
            "UPDATE sqlite_sequence SET seq = 9223372036854775807 WHERE name = 'game_worlds'",
            "ALTER TABLE p__more RENAME TO escaped",
            "CREATE TABLE game_extra (x)",
            "CREATE TRIGGER p__t AFTER INSERT ON p__more BEGIN DELETE FROM game_sessions; END",
        ] {
            connection.execute_batch("SAVEPOINT m").unwrap();
            let error = migrate_sqlite(&connection, "p", script).unwrap_err();
            connection
                .execute_batch("ROLLBACK TO m; RELEASE m")
                .unwrap();
            assert!(matches!(error, DbError::Refused(_)), "{script}: {error}");
        }
    }
}
