//! Plugins that own their data (issue 10): a plugin's SQL is confined by the database itself
//! to its own tables (SQLite's authorizer; PostgreSQL's roles, schemas and read-only
//! transactions), joins the request's unit of work, reads typed values, links its rows to
//! sessions with a real foreign key and reads them through the caller views; a plugin acting
//! as itself sees no user's data unless it holds `system:read`.

use serde_json::{json, Value};

use crate::{
    databases::{test_databases, TestDatabase},
    harness::{pixsim7, token_for, HostCommand, PluginDir, RunningHost},
};

const SQL: &str = "/api/v1/fixture-data/sql";

/// The fixture with the plugins that make worlds and sessions.
fn fixture_dir() -> PluginDir {
    PluginDir::with(&["game_sessions", "game_worlds", "fixture_plugin_data"])
}

/// The host over `dir` on `database`.
fn on(dir: &PluginDir, database: &TestDatabase) -> HostCommand {
    pixsim7(dir).env("PIXSIM7_DATABASE_URL", &database.url)
}

/// Runs `sql` through the fixture as `user`; the fixture's answer.
fn run(host: &RunningHost, user: i64, sql: &str, params: Value, write: bool) -> Value {
    let bearer = format!("Bearer {}", token_for(user, &[]));
    let reply = host.request(
        "POST",
        SQL,
        &[
            ("content-type", "application/json"),
            ("authorization", &bearer),
        ],
        json!({"sql": sql, "params": params, "write": write})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(reply.status, 200, "{sql}: {}", reply.body);
    reply.json()
}

/// What must not change: every game table, the outbox, and the plugin's own rows.
fn fingerprint(database: &TestDatabase) -> Vec<i64> {
    let items = database.plugin_table("fixture-plugin-data", "items");
    [
        "SELECT COUNT(*) FROM game_sessions".to_owned(),
        "SELECT CAST(COALESCE(SUM(LENGTH(flags) + LENGTH(relationships) + version), 0) AS BIGINT) \
         FROM game_sessions"
            .to_owned(),
        "SELECT COUNT(*) FROM game_worlds".to_owned(),
        "SELECT COUNT(*) FROM pixsim7_events".to_owned(),
        "SELECT COUNT(*) FROM pixsim7_migrations".to_owned(),
        format!("SELECT COUNT(*) FROM {items}"),
        format!("SELECT CAST(COALESCE(SUM(LENGTH(note)), 0) AS BIGINT) FROM {items}"),
    ]
    .iter()
    .map(|sql| database.scalar(sql))
    .collect()
}

/// Ways out of the plugin's own tables, tried on both databases: `(sql, write)`.
const ESCAPES_EVERYWHERE: &[(&str, bool)] = &[
    ("/* select */ DELETE FROM fixture_plugin_data__items", false),
    ("SELECT * FROM game_sessions", false),
    ("SELECT * FROM \"game_sessions\"", false),
    ("SELECT flags FROM GAME_SESSIONS", false),
    ("SELECT * FROM pixsim7_migrations", false),
    ("WITH s AS (SELECT flags FROM game_sessions) SELECT * FROM s", false),
    (
        "WITH caller_sessions AS (SELECT id, world_id FROM game_sessions) SELECT * FROM caller_sessions",
        false,
    ),
    (
        "SELECT note FROM fixture_plugin_data__items WHERE session_id IN (SELECT user_id FROM game_sessions)",
        false,
    ),
    ("UPDATE game_sessions SET flags = '{}'", true),
    ("DELETE FROM pixsim7_events", true),
    ("INSERT INTO fixture_plugin_data__items (note) SELECT flags FROM game_sessions", true),
    (
        "WITH d AS (DELETE FROM fixture_plugin_data__items RETURNING id) SELECT * FROM d",
        false,
    ),
    ("INSERT INTO fixture_plugin_data__items (note) VALUES ('read-only')", false),
    ("DROP TABLE fixture_plugin_data__items", true),
    (
        "CREATE VIEW fixture_plugin_data__v AS SELECT * FROM game_sessions",
        true,
    ),
    (
        "CREATE TABLE fixture_plugin_data__copy AS SELECT * FROM game_sessions",
        true,
    ),
    ("BEGIN", true),
    ("COMMIT", true),
    ("ROLLBACK", true),
    ("SAVEPOINT x", true),
    ("SELECT 1; DELETE FROM fixture_plugin_data__items", true),
    ("SELECT COUNT(*) AS n FROM pixsim7_events", false),
    ("SELECT user_id FROM game_sessions", false),
];

const ESCAPES_SQLITE: &[(&str, bool)] = &[
    ("SELECT * FROM main.game_sessions", false),
    ("SELECT * FROM [game_sessions]", false),
    ("SELECT * FROM sqlite_master", false),
    ("SELECT * FROM sqlite_schema", false),
    ("SELECT name FROM pragma_table_list", false),
    ("SELECT * FROM pragma_table_info('game_sessions')", false),
    ("PRAGMA foreign_keys = OFF", true),
    ("PRAGMA writable_schema = ON", true),
    ("ATTACH DATABASE ':memory:' AS x", true),
    ("DETACH DATABASE main", true),
    ("VACUUM", true),
    ("ANALYZE", true),
    (
        "CREATE TRIGGER fixture_plugin_data__t AFTER INSERT ON fixture_plugin_data__items \
         BEGIN DELETE FROM game_sessions; END",
        true,
    ),
    ("CREATE TEMP TABLE fixture_plugin_data__tmp (x)", true),
    ("SELECT load_extension('/tmp/x')", false),
    ("SELECT pixsim7_patch('flags', '{}', '[]', 10)", false),
    ("UPDATE sqlite_sequence SET seq = 0", true),
    ("SELECT COUNT(*) FROM dbstat", false),
    ("SELECT * FROM dbstat", false),
];

const ESCAPES_POSTGRES: &[(&str, bool)] = &[
    ("SELECT * FROM public.game_sessions", false),
    ("SELECT * FROM U&\"game\\005fsessions\"", false),
    ("SELECT * FROM pg_authid", false),
    ("SELECT pg_read_file('/etc/passwd')", false),
    ("SELECT lo_import('/etc/passwd')", true),
    ("SET ROLE postgres", true),
    ("RESET ROLE", true),
    ("SET SESSION AUTHORIZATION postgres", true),
    ("SELECT set_config('role', 'none', true)", true),
    (
        "SELECT set_config('role', 'none', true), query_to_xml('SELECT * FROM game_sessions', true, false, '')",
        false,
    ),
    (
        "SELECT set_config('pixsim7.caller', 'all', true), (SELECT COUNT(*) FROM caller_sessions)",
        false,
    ),
    ("SELECT set_config('transaction_read_only', NULL, true)", false),
    ("SELECT set_config('search_path', 'pg_temp', false)", true),
    ("CREATE FUNCTION fixture_plugin_data__f() RETURNS int LANGUAGE sql AS 'SELECT 1'", true),
    ("COPY game_sessions TO STDOUT", true),
    ("LISTEN pixsim7_events", true),
    ("DO $$ BEGIN DELETE FROM game_sessions; END $$", true),
    ("CREATE SCHEMA fixture_plugin_data__s", true),
    ("GRANT SELECT ON fixture_plugin_data__items TO PUBLIC", true),
    // Switching the role for part of a statement and back before it ends.
    (
        "SELECT x FROM (SELECT query_to_xml('SELECT flags FROM public.game_sessions', false, false, '')::text AS x \
         FROM (SELECT set_config('role', 'none', true)) AS s OFFSET 0) AS t \
         WHERE set_config('role', current_user, true) IS NOT NULL",
        false,
    ),
    ("UPDATE pg_settings SET setting = 'none' WHERE name = 'role'", true),
    ("CREATE TEMP TABLE game_sessions AS SELECT 1 AS id", true),
];

#[test]
fn a_plugin_cannot_leave_its_own_tables_and_harmless_sql_works() {
    for database in test_databases() {
        let kind = database.kind;
        let dir = fixture_dir();
        let host = on(&dir, &database).start();
        let world = host.ok("POST", "/api/v1/game/worlds", json!({"name": "W"}));
        let session = host.ok(
            "POST",
            "/api/v1/game/sessions",
            json!({"world_id": world["id"], "flags": {"secret": "s3"}}),
        );
        let session_id = session["id"].as_i64().unwrap();

        // Harmless SQL that names host tables inside literals works, typed both ways.
        let note = "game_over: the pg_ and sqlite_ words are data; DROP TABLE game_sessions;";
        let inserted = run(
            &host,
            1,
            "INSERT INTO fixture_plugin_data__items (note, session_id, flag, doc, data, amount) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            json!([
                {"text": note},
                {"int": session_id},
                {"bool": true},
                {"json": {"k": [1, 2]}},
                {"bytes": [0, 159, 255]},
                {"float": 2.5}
            ]),
            true,
        );
        assert_eq!(inserted, json!({"rows_affected": 1}), "{kind}");
        let counted = run(
            &host,
            1,
            "WITH s AS (SELECT note FROM fixture_plugin_data__items) SELECT COUNT(*) AS n FROM s",
            json!([]),
            false,
        );
        assert_eq!(
            counted["rows"],
            json!([{"n": 1}]),
            "a CTE over its own table on {kind}: {counted}"
        );
        let read = run(
            &host,
            1,
            "SELECT note, session_id, flag, doc, data, amount, NULL AS missing \
             FROM fixture_plugin_data__items",
            json!([]),
            false,
        );
        assert_eq!(
            read["typed"],
            json!([[
                {"text": note},
                {"int": session_id},
                {"bool": true},
                {"json": {"k": [1, 2]}},
                {"bytes": [0, 159, 255]},
                {"float": 2.5},
                "null"
            ]]),
            "typed values come back as stored on {kind}: {read}"
        );

        let mut escapes: Vec<(&str, bool)> = ESCAPES_EVERYWHERE.to_vec();
        escapes.extend_from_slice(if kind == "postgres" {
            ESCAPES_POSTGRES
        } else {
            ESCAPES_SQLITE
        });
        assert!(escapes.len() >= 35, "{kind}: {}", escapes.len());
        let before = fingerprint(&database);
        for (sql, write) in escapes {
            let answer = run(&host, 1, sql, json!([]), write);
            let error = &answer["error"];
            assert!(
                error.is_object(),
                "{kind}: {sql:?} (write {write}) was not refused: {answer}"
            );
            assert_eq!(
                fingerprint(&database),
                before,
                "{kind}: {sql:?} changed something: {answer}"
            );
            // The connection is still good for the next statement.
            let next = run(
                &host,
                1,
                "SELECT COUNT(*) AS n FROM fixture_plugin_data__items",
                json!([]),
                false,
            );
            assert_eq!(next["rows"], json!([{"n": 1}]), "{kind} after {sql:?}");
        }

        // A foreign key to sessions, enforced by the database.
        let orphan = run(
            &host,
            1,
            "INSERT INTO fixture_plugin_data__items (note, session_id) VALUES ('x', $1)",
            json!([{"int": session_id + 1000}]),
            true,
        );
        assert!(
            orphan["error"]["message"]
                .as_str()
                .is_some_and(|m| m.to_lowercase().contains("foreign key")),
            "{kind}: {orphan}"
        );

        // The caller views: the owner sees their row, another user nothing.
        let mine = "SELECT i.note FROM fixture_plugin_data__items AS i \
                    JOIN caller_sessions AS s ON s.id = i.session_id";
        assert_eq!(
            run(&host, 1, mine, json!([]), false)["rows"],
            json!([{"note": note}]),
            "{kind}"
        );
        assert_eq!(
            run(&host, 2, mine, json!([]), false)["rows"],
            json!([]),
            "{kind}"
        );
        assert_eq!(
            run(
                &host,
                2,
                "SELECT COUNT(*) AS n FROM caller_worlds",
                json!([]),
                false
            )["rows"],
            json!([{"n": 0}]),
            "{kind}"
        );

        // A value of an undecodable type is an error naming the column, never null.
        if kind == "postgres" {
            let when = run(&host, 1, "SELECT now() AS stamp", json!([]), false);
            let message = when["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("stamp"), "{when}");
        }
        let exited = host.stop();
        assert!(exited.status.success(), "{kind}: {:?}", exited.logs);
    }
}

#[test]
fn two_inserts_in_a_request_that_then_fails_are_both_rolled_back() {
    for database in test_databases() {
        let kind = database.kind;
        let dir = fixture_dir();
        let host = on(&dir, &database).start();
        let reply = host.post_json(
            "/api/v1/fixture-data/two-inserts-then-fail",
            &json!({"marker": "m"}),
        );
        assert_eq!(reply.status, 500, "{kind}: {}", reply.body);
        let items = database.plugin_table("fixture-plugin-data", "items");
        assert_eq!(
            database.scalar(&format!(
                "SELECT COUNT(*) FROM {items} WHERE note LIKE 'm-%'"
            )),
            0,
            "{kind}"
        );
        host.stop();
    }
}

#[test]
fn a_plugin_acting_as_itself_sees_no_users_data_without_system_read() {
    for database in test_databases() {
        let kind = database.kind;
        let dir = fixture_dir();
        let host = on(&dir, &database).start();
        let world = host.ok("POST", "/api/v1/game/worlds", json!({"name": "W"}));
        host.ok(
            "POST",
            "/api/v1/game/sessions",
            json!({"world_id": world["id"]}),
        );
        host.stop();

        // Denied by the operator: on_load, acting as the plugin, sees nothing.
        let denied = dir.config_file("[plugins.fixture-plugin-data]\ndeny = [\"system:read\"]\n");
        let host = on(&dir, &database).env("PIXSIM7_CONFIG", &denied).start();
        assert_eq!(
            host.ok("GET", "/api/v1/fixture-data/seen-at-load", json!(null)),
            json!({"worlds": 0, "caller_sessions": 0}),
            "{kind}"
        );
        host.stop();

        // Granted: it sees every user's, and the audit log records each use.
        let host = on(&dir, &database).start();
        assert_eq!(
            host.ok("GET", "/api/v1/fixture-data/seen-at-load", json!(null)),
            json!({"worlds": 1, "caller_sessions": 1}),
            "{kind}"
        );
        let audit = host.wait_for_log(
            "plugin fixture-plugin-data used world.list with world:read and system:read (allowed)",
        );
        assert_eq!(audit.0["target"], "pixsim7::audit", "{kind}");
        host.stop();
    }
}
