//! A plugin's SQL on its own tables (`db.query` needs `db:read`, `db.execute` needs
//! `db:write`), run in the caller's unit of work and confined by the database itself (see
//! `db::confine`): no word list, so harmless SQL that mentions anything at all in a string
//! literal works, and whatever leaves the plugin's tables is refused by SQLite's authorizer or
//! PostgreSQL's privileges.

use crate::{
    config::GameLimits,
    db::{
        confine::{self, CallerRows, Mode, PgNames, PluginStatement},
        sql::{Conn, DbError},
        unit_of_work::UnitOfWork,
    },
};
use plugin_api::{
    abi::{ServiceError, ServiceErrorKind},
    game::calls::{Executed, Sql},
};

use super::{database_error, parse, service_error, Scope};

/// Runs `db.query` (`write == false`) or `db.execute` for `plugin_id` on `db`, a connection
/// of `unit` (in its transaction on PostgreSQL), answering JSON.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    db: &mut Conn<'_>,
    unit: &UnitOfWork,
    limits: &GameLimits,
    plugin_id: &str,
    scope: Scope,
    write: bool,
    payload: &[u8],
) -> Result<Vec<u8>, ServiceError> {
    let call: Sql = parse(payload)?;
    let statement = PluginStatement {
        plugin_id,
        sql: &call.sql,
        params: &call.params,
        mode: if write { Mode::Write } else { Mode::Read },
        caller: caller_rows(scope),
        timeout: limits.plugin_statement_timeout,
    };
    let outcome = match db {
        Conn::Sqlite(connection) => confine::run_sqlite(connection, &statement),
        Conn::Postgres(connection) => {
            let names = PgNames::new(unit.database().tag(), plugin_id);
            confine::run_postgres(connection, unit, &names, &statement).await
        }
    }
    .map_err(|error| sql_error(plugin_id, error))?;
    let answer = if write {
        serde_json::to_vec(&Executed {
            rows_affected: outcome.rows_affected,
        })
    } else {
        serde_json::to_vec(&outcome.rows)
    };
    Ok(answer.expect("rows serialize"))
}

/// Whose rows the caller views show for a call in `scope`.
pub fn caller_rows(scope: Scope) -> CallerRows {
    match scope {
        Scope::Caller(Some(user_id)) => CallerRows::User(user_id),
        Scope::Caller(None) | Scope::Plugin => CallerRows::Nobody,
        Scope::System => CallerRows::All,
    }
}

/// A refusal by the database's confinement is a permission error; other errors in the
/// plugin's own SQL are the plugin's to fix (a bad call, with the database's message, which
/// goes to the log, not to the client).
fn sql_error(plugin_id: &str, error: DbError) -> ServiceError {
    match error {
        DbError::Refused(why) => {
            tracing::warn!(
                target: crate::plugins::services::AUDIT_TARGET,
                plugin = plugin_id,
                outcome = "refused",
                "the database refused a statement of plugin {plugin_id}: {why}"
            );
            service_error(
                ServiceErrorKind::PermissionDenied,
                format!("the database refused the statement of plugin {plugin_id}, which may only use its own tables: {why}"),
            )
        }
        other => match other.statement_message() {
            Some(message) => {
                service_error(ServiceErrorKind::BadCall, format!("SQL error: {message}"))
            }
            None => database_error(other),
        },
    }
}
