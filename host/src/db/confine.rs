//! A plugin's own SQL (`db.query`, `db.execute`, its migrations), confined by the database
//! itself to the plugin's own tables, never by looking at words in the statement.
//!
//! - **SQLite**: an authorizer, installed once on every connection, consults the
//!   confinement of the statement being prepared on this thread (none for the host's own
//!   statements): a plugin may read and write its own tables (`<plugin>__*`), read the
//!   caller views, and create its own tables, indexes and views in its migrations. PRAGMA,
//!   ATTACH, transaction control, triggers, virtual tables, temporary objects and every other
//!   table are refused by SQLite when it compiles the statement. Plugin statements are
//!   prepared afresh (never from the statement cache the host's statements share), so every
//!   one is authorized.
//! - **PostgreSQL**: each plugin has a schema owned by a role of its own, with no rights on
//!   the host's tables beyond `REFERENCES (id)` on the game tables and `SELECT` on the caller
//!   views. A statement runs inside a savepoint of the unit of work under `SET LOCAL ROLE`
//!   (read-only calls in a read-only transaction, always rolled back), after PostgreSQL's own
//!   grammar accepted it as one plain statement (`EXPLAIN`: no SET, RESET, transaction
//!   control or DDL). A statement that switches its role or its caller mid-way
//!   (`set_config`) is caught by a check in the same transaction, rolled back, and its rows
//!   are never handed over. Migrations run inside a `SECURITY DEFINER` function owned by the
//!   plugin's role, where PostgreSQL refuses role changes and transaction control; a
//!   migration that leaves a function or a trigger behind is rolled back.
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
};

use plugin_api::db::{Rows, SqlValue};
use rusqlite::{
    hooks::{AuthAction, AuthContext, Authorization},
    types::ValueRef,
    Connection,
};
use sqlx::{postgres::PgRow, Column, Row as _, TypeInfo, ValueRef as _};

use super::sql::DbError;

/// The prefix of a plugin's table names on both databases (`game_dialogue__lines`).
pub fn table_prefix(plugin_id: &str) -> String {
    format!("{}__", plugin_id.replace('-', "_"))
}

/// The host views a plugin may read, filtered by the caller of each call.
pub const CALLER_VIEWS: &[&str] = &["caller_sessions", "caller_worlds"];

/// Game tables a plugin's table may reference by id (a real foreign key).
pub const REFERENCEABLE: &[&str] = &["game_sessions", "game_worlds", "game_npcs", "game_locations"];

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
}

thread_local! {
    static ACTIVE: RefCell<Option<Active>> = const { RefCell::new(None) };
}

/// Installs the authorizer and the caller functions on a new connection.
pub fn install_sqlite(connection: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    connection.authorizer(Some(authorize));
    for (name, sql) in [
        (
            "pixsim7_caller_session_ids",
            "SELECT id FROM game_sessions WHERE ?1 OR user_id = ?2 ORDER BY id",
        ),
        (
            "pixsim7_caller_world_ids",
            "SELECT id FROM game_worlds WHERE ?1 OR owner_id = ?2 ORDER BY id",
        ),
    ] {
        connection.create_scalar_function(name, 0, FunctionFlags::SQLITE_UTF8, move |context| {
            let caller = ACTIVE.with(|active| active.borrow().as_ref().map(|a| a.caller));
            let (all, user) = match caller {
                Some(CallerRows::All) => (true, i64::MIN),
                Some(CallerRows::User(id)) => (false, id),
                Some(CallerRows::Nobody) | None => return Ok("[]".to_owned()),
            };
            // SAFETY: the connection is only used for this nested read, on the thread that is
            // running the statement that called the function, as SQLite allows.
            let connection = unsafe { context.get_connection()? };
            // The host's own query: run it unconfined, then confine again.
            let outer = ACTIVE.with(|active| active.borrow_mut().take());
            let ids = (|| {
                let mut statement = connection.prepare_cached(sql)?;
                let ids = statement
                    .query_map((all, user), |row| row.get::<_, i64>(0))?
                    .collect::<rusqlite::Result<Vec<i64>>>()?;
                Ok::<_, rusqlite::Error>(ids)
            })();
            ACTIVE.with(|active| *active.borrow_mut() = outer);
            Ok(serde_json::to_string(&ids?).expect("ids serialize"))
        })?;
    }
    Ok(())
}

/// The views over those functions (created with the host's schema).
pub const SQLITE_CALLER_VIEWS: &str = "\
    CREATE VIEW IF NOT EXISTS caller_sessions AS \
        SELECT s.id, s.world_id FROM json_each(pixsim7_caller_session_ids()) AS c \
        JOIN game_sessions AS s ON s.id = c.value; \
    CREATE VIEW IF NOT EXISTS caller_worlds AS \
        SELECT CAST(value AS INTEGER) AS id FROM json_each(pixsim7_caller_world_ids());";

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
    let main = context.database_name.is_none_or(|db| db == "main");
    let writes = active.mode != Mode::Read;
    let migrates = active.mode == Mode::Migrate;
    match context.action {
        AuthAction::Select | AuthAction::Recursive => true,
        AuthAction::Read {
            table_name,
            column_name,
        } => {
            main && (own(table_name)
                || CALLER_VIEWS.contains(&table_name)
                || matches!(table_name, "json_each" | "json_tree")
                // A foreign key's check reads the referenced id (ids only).
                || (REFERENCEABLE.contains(&table_name) && column_name == "id")
                // The parent of a view over the caller views.
                || (table_name == "game_sessions" && context.accessor == Some("caller_sessions")
                    && CALLER_VIEW_COLUMNS.contains(&column_name))
                // DDL reads and rewrites the schema table.
                || (migrates && table_name == "sqlite_master"))
        }
        AuthAction::Insert { table_name }
        | AuthAction::Delete { table_name }
        | AuthAction::Update { table_name, .. } => {
            main && ((writes && own(table_name))
                || (writes && table_name == "sqlite_sequence")
                || (migrates && table_name == "sqlite_master"))
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
        AuthAction::CreateIndex { table_name, .. } | AuthAction::DropIndex { table_name, .. } => {
            main && migrates && own(table_name)
        }
        // Everything else: PRAGMA, ATTACH/DETACH, transaction control and savepoints,
        // triggers, temporary objects, virtual tables, ANALYZE, REINDEX, VACUUM...
        _ => false,
    }
}

/// The columns of `game_sessions` the `caller_sessions` view reads.
const CALLER_VIEW_COLUMNS: &[&str] = &["id", "world_id"];

/// Clears the thread's confinement when dropped (also when a statement panics).
struct Confined;

impl Confined {
    fn enter(statement: &PluginStatement<'_>) -> Confined {
        ACTIVE.with(|active| {
            *active.borrow_mut() = Some(Active {
                prefix: table_prefix(statement.plugin_id),
                mode: statement.mode,
                caller: statement.caller,
            });
        });
        Confined
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
    let _confined = Confined::enter(statement);
    // Never from the cache: a cached statement was authorized for whoever prepared it.
    let mut prepared = connection.prepare(statement.sql).map_err(sqlite_refusal)?;
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

/// Runs a plugin's migration script on SQLite, confined to its own tables.
pub fn migrate_sqlite(connection: &Connection, plugin_id: &str, script: &str) -> Result<(), DbError> {
    let statement = PluginStatement {
        plugin_id,
        sql: script,
        params: &[],
        mode: Mode::Migrate,
        caller: CallerRows::Nobody,
    };
    let _confined = Confined::enter(&statement);
    connection.execute_batch(script).map_err(sqlite_refusal)
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
                SqlValue::Json(
                    serde_json::from_str(text)
                        .map_err(|e| decode(format!("declared {declared} but holds text that is not JSON: {e}")))?,
                )
            } else {
                SqlValue::Text(text.to_owned())
            }
        }
        ValueRef::Blob(bytes) => SqlValue::Bytes(bytes.to_vec()),
    })
}

/// SQLite's refusal (`SQLITE_AUTH`) told apart from ordinary SQL errors.
fn sqlite_refusal(error: rusqlite::Error) -> DbError {
    let denied = matches!(
        &error,
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.code == rusqlite::ErrorCode::AuthorizationForStatementDenied
    ) || error.to_string().contains("not authorized");
    if denied {
        refused(format!("SQLite refused it: {error}"))
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
        PgNames {
            schema: format!("plugin_{id}").chars().take(63).collect(),
            role,
        }
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
       OR owner_id = (CASE WHEN current_setting('pixsim7.caller', true) ~ '^-?[0-9]{1,19}$'
                           THEN current_setting('pixsim7.caller', true)::bigint END);
CREATE OR REPLACE FUNCTION pixsim7_confined(expected_role text, expected_caller text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF current_user <> expected_role
       OR coalesce(current_setting('pixsim7.caller', true), '') <> expected_caller THEN
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
        .map(|table| format!("GRANT REFERENCES (id) ON {table} TO \"{role}\";"))
        .collect::<String>();
    let views = CALLER_VIEWS.join(", ");
    format!(
        r#"
DO $$ BEGIN
    CREATE ROLE "{role}" NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
DO $$ BEGIN
    IF NOT pg_has_role(current_user, '{role}', 'SET') THEN
        EXECUTE format('GRANT %I TO %I', '{role}', current_user);
    END IF;
END $$;
CREATE SCHEMA IF NOT EXISTS "{schema}" AUTHORIZATION "{role}";
REVOKE ALL ON SCHEMA "{schema}" FROM PUBLIC;
{references}
GRANT SELECT ON {views} TO "{role}";
DO $$ DECLARE t record; BEGIN
    FOR t IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'p')
               AND c.relname LIKE '{prefix}%'
    LOOP
        EXECUTE format('ALTER TABLE public.%I SET SCHEMA %I', t.relname, '{schema}');
        EXECUTE format('ALTER TABLE %I.%I OWNER TO %I', '{schema}', t.relname, '{role}');
    END LOOP;
END $$;
"#
    )
}

/// Runs a plugin's migration script inside a `SECURITY DEFINER` function owned by its role
/// (PostgreSQL refuses role changes and transaction control there), then checks that it left
/// no function or trigger behind (they would run with the privileges of whoever fires them).
pub fn postgres_migration(names: &PgNames, script: &str) -> String {
    let PgNames { schema, role } = names;
    let quoted = quote_literal(script);
    format!(
        r#"
CREATE FUNCTION "{schema}".pixsim7_migrate() RETURNS void LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = "{schema}", public
AS $pixsim7$ BEGIN EXECUTE {quoted}; END $pixsim7$;
ALTER FUNCTION "{schema}".pixsim7_migrate() OWNER TO "{role}";
SELECT "{schema}".pixsim7_migrate();
DROP FUNCTION "{schema}".pixsim7_migrate();
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

/// `text` as an SQL string literal.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Statements PostgreSQL's `EXPLAIN` accepted for each plugin (one plain statement each).
fn vetted() -> &'static Mutex<HashSet<(String, String)>> {
    static VETTED: OnceLock<Mutex<HashSet<(String, String)>>> = OnceLock::new();
    VETTED.get_or_init(|| Mutex::new(HashSet::new()))
}

/// At most this many vetted statements are remembered (then vetting starts over).
const VETTED_CAPACITY: usize = 4096;

/// Runs one confined plugin statement on PostgreSQL. `in_transaction`: the connection is in
/// the unit's transaction (the statement runs in a savepoint of it); otherwise it is a read
/// in a read-only transaction of its own.
pub async fn run_postgres(
    connection: &mut sqlx::PgConnection,
    in_transaction: bool,
    names: &PgNames,
    statement: &PluginStatement<'_>,
) -> Result<Outcome, DbError> {
    let caller = statement.caller.setting();
    let read_only = statement.mode == Mode::Read;
    let (open, keep, undo) = match (in_transaction, read_only) {
        (true, false) => (
            "SAVEPOINT pixsim7_plugin_sql;",
            "RESET ALL; RESET ROLE; RELEASE SAVEPOINT pixsim7_plugin_sql;",
            "ROLLBACK TO SAVEPOINT pixsim7_plugin_sql; RELEASE SAVEPOINT pixsim7_plugin_sql;",
        ),
        // A read never keeps anything: rolled back whatever it tried.
        (true, true) => (
            "SAVEPOINT pixsim7_plugin_sql; SET LOCAL transaction_read_only = on;",
            "ROLLBACK TO SAVEPOINT pixsim7_plugin_sql; RELEASE SAVEPOINT pixsim7_plugin_sql;",
            "ROLLBACK TO SAVEPOINT pixsim7_plugin_sql; RELEASE SAVEPOINT pixsim7_plugin_sql;",
        ),
        (false, _) => ("BEGIN READ ONLY;", "ROLLBACK;", "ROLLBACK;"),
    };
    if !in_transaction && !read_only {
        return Err(refused("a write outside the unit of work's transaction"));
    }
    let open = format!(
        "{open} SET LOCAL ROLE \"{role}\"; SET LOCAL search_path = \"{schema}\", public; \
         SET LOCAL pixsim7.caller = {caller_literal};",
        role = names.role,
        schema = names.schema,
        caller_literal = quote_literal(&caller),
    );
    pg_simple(connection, &open).await?;
    let outcome = confined_postgres(connection, names, statement, &caller).await;
    match outcome {
        Ok(outcome) => {
            pg_simple(connection, keep).await?;
            Ok(outcome)
        }
        Err(error) => {
            pg_simple(connection, undo).await?;
            Err(error)
        }
    }
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
    // The statement may not have left its role or caller (set_config mid-statement).
    let check = format!(
        "SELECT pixsim7_confined({}, {})",
        quote_literal(&names.role),
        quote_literal(caller)
    );
    pg_simple(connection, &check)
        .await
        .map_err(|error| match error.statement_message() {
            Some(message) => refused(message),
            None => error,
        })?;
    Ok(outcome)
}

// Boxed for the same reason as in `sql`: sqlx's executor traits through a borrowed
// connection trip rustc's `Send` check for every lifetime.
type PgFuture<'c, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, DbError>> + Send + 'c>>;

fn pg_fetch<'c>(
    connection: &'c mut sqlx::PgConnection,
    sql: &'c str,
    params: &'c [SqlValue],
) -> PgFuture<'c, Vec<PgRow>> {
    Box::pin(async move { Ok(pg_query(sql, params).fetch_all(connection).await?) })
}

fn pg_execute<'c>(
    connection: &'c mut sqlx::PgConnection,
    sql: &'c str,
    params: &'c [SqlValue],
) -> PgFuture<'c, u64> {
    Box::pin(async move {
        Ok(pg_query(sql, params)
            .execute(connection)
            .await?
            .rows_affected())
    })
}

fn pg_simple<'c>(connection: &'c mut sqlx::PgConnection, sql: &'c str) -> PgFuture<'c, ()> {
    // `&str` runs through the simple-query protocol, which takes several statements.
    let run = sqlx::Executor::execute(connection, sql);
    Box::pin(async move {
        run.await?;
        Ok(())
    })
}

fn pg_query<'q>(
    sql: &'q str,
    params: &'q [SqlValue],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
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
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => SqlValue::Text(row.try_get(index).map_err(decode)?),
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
