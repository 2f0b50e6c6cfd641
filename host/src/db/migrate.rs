//! Schema migrations for the host and for plugins, tracked per owner in one table, each
//! applied once in a transaction, safe when several instances start at once.

use super::{
    confine::{self, PgNames},
    sql::{execute_script, query, Conn},
    unix_now, Backend, Database, Engine,
};

/// The owner name of the host's own migrations.
pub const HOST_OWNER: &str = "host";

/// The host's migrations, embedded from `migrations/`.
pub const HOST_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "game state",
        include_str!("../../../migrations/0001_game_state.sql"),
    ),
    (
        2,
        "event outbox",
        include_str!("../../../migrations/0002_event_outbox.sql"),
    ),
    (
        3,
        "event user",
        include_str!("../../../migrations/0003_event_user.sql"),
    ),
];

/// Arbitrary, fixed key of the PostgreSQL advisory lock held while migrating.
const ADVISORY_LOCK_KEY: i64 = 0x0070_6978_7369_6d37; // "pixsim7" in ASCII

/// One migration to apply.
#[derive(Debug, Clone)]
pub struct PendingMigration<'a> {
    /// Version, unique per owner.
    pub version: i64,
    /// What it does.
    pub description: &'a str,
    /// The SQL, with `AUTO_ID` still to expand.
    pub sql: &'a str,
}

/// What a migration run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied now.
    pub applied: Vec<i64>,
    /// Versions already applied before.
    pub already_applied: usize,
}

/// Applies the host's migrations.
pub async fn migrate_host(db: &Database) -> anyhow::Result<MigrationReport> {
    let migrations: Vec<PendingMigration<'_>> = HOST_MIGRATIONS
        .iter()
        .map(|&(version, description, sql)| PendingMigration {
            version,
            description,
            sql,
        })
        .collect();
    migrate(db, HOST_OWNER, &migrations).await
}

/// Applies `owner`'s migrations that are not applied yet, in version order. An applied
/// migration whose SQL changed since is an error (its checksum differs).
pub async fn migrate(
    db: &Database,
    owner: &str,
    migrations: &[PendingMigration<'_>],
) -> anyhow::Result<MigrationReport> {
    match &db.engine {
        Engine::Sqlite(store) => {
            // A connection of its own: migrations manage their transactions themselves.
            let mut connection = store.dedicated_connection()?;
            migrate_locked(db, &mut Conn::Sqlite(&mut connection), owner, migrations).await
        }
        Engine::Postgres(pool) => {
            let mut connection = pool.acquire().await?;
            let mut conn = Conn::Postgres(&mut connection);
            // Held by this connection until unlocked; a second instance waits here.
            query("SELECT pg_advisory_lock($1)")
                .bind(ADVISORY_LOCK_KEY)
                .execute(&mut conn)
                .await?;
            let result = migrate_locked(db, &mut conn, owner, migrations).await;
            query("SELECT pg_advisory_unlock($1)")
                .bind(ADVISORY_LOCK_KEY)
                .execute(&mut conn)
                .await?;
            result
        }
    }
}

async fn migrate_locked(
    db: &Database,
    connection: &mut Conn<'_>,
    owner: &str,
    migrations: &[PendingMigration<'_>],
) -> anyhow::Result<MigrationReport> {
    let backend = db.backend;
    let plugin = (owner != HOST_OWNER).then(|| PgNames::new(db.tag(), owner));
    if let (Some(names), Backend::Postgres) = (&plugin, backend) {
        execute_script(connection, &confine::postgres_provision(names, owner))
            .await
            .map_err(|error| {
                anyhow::anyhow!(
                    "cannot set up the PostgreSQL role {} and schema {} of plugin {owner} \
                     (the host's database user needs CREATEROLE, or an administrator creates \
                     them): {error}",
                    names.role,
                    names.schema
                )
            })?;
    }
    execute_script(
        connection,
        "CREATE TABLE IF NOT EXISTS pixsim7_migrations (
            owner TEXT NOT NULL,
            version BIGINT NOT NULL,
            description TEXT NOT NULL,
            checksum TEXT NOT NULL,
            applied_at BIGINT NOT NULL,
            PRIMARY KEY (owner, version)
        )",
    )
    .await?;
    let mut ordered: Vec<&PendingMigration<'_>> = migrations.iter().collect();
    ordered.sort_by_key(|m| m.version);
    let mut report = MigrationReport::default();
    for migration in ordered {
        let checksum = checksum(migration.sql);
        let begin = match backend {
            // IMMEDIATE takes the write lock now, so a concurrent start waits (busy_timeout)
            // instead of failing when both try to upgrade a read transaction.
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        execute_script(connection, begin).await?;
        let outcome = apply_one(db, connection, owner, migration, &checksum).await;
        match outcome {
            Ok(applied) => {
                execute_script(connection, "COMMIT").await?;
                if applied {
                    tracing::info!(
                        owner,
                        version = migration.version,
                        "Applied migration {} {}: {}",
                        owner,
                        migration.version,
                        migration.description
                    );
                    report.applied.push(migration.version);
                } else {
                    report.already_applied += 1;
                }
            }
            Err(error) => {
                let _ = execute_script(connection, "ROLLBACK").await;
                return Err(error);
            }
        }
    }
    if owner == HOST_OWNER {
        // The caller views plugins read (`db::confine`), brought up to date on every start.
        let setup = match backend {
            Backend::Sqlite => confine::SQLITE_CALLER_VIEWS,
            Backend::Postgres => confine::POSTGRES_SETUP,
        };
        execute_script(connection, setup).await?;
    }
    Ok(report)
}

/// Applies one migration inside the caller's transaction; `false` if it was applied before.
/// A plugin's runs confined to its own tables (`db::confine`).
async fn apply_one(
    db: &Database,
    connection: &mut Conn<'_>,
    owner: &str,
    migration: &PendingMigration<'_>,
    checksum: &str,
) -> anyhow::Result<bool> {
    let recorded =
        query("SELECT checksum FROM pixsim7_migrations WHERE owner = $1 AND version = $2")
            .bind(owner)
            .bind(migration.version)
            .fetch_optional(connection)
            .await?;
    if let Some(row) = recorded {
        let recorded: String = row.try_get("checksum")?;
        anyhow::ensure!(
            recorded == checksum,
            "migration {} of {owner} ({}) was changed after it was applied (checksum {recorded}, now {checksum})",
            migration.version,
            migration.description
        );
        return Ok(false);
    }
    let sql = expand_dialect(migration.sql, db.backend);
    let applied = if owner == HOST_OWNER {
        execute_script(connection, &sql).await
    } else {
        match connection {
            Conn::Sqlite(connection) => confine::migrate_sqlite(connection, owner, &sql),
            Conn::Postgres(_) => {
                let names = PgNames::new(db.tag(), owner);
                execute_script(connection, &confine::postgres_migration(&names, &sql)).await
            }
        }
    };
    applied.map_err(|error| {
        anyhow::anyhow!(
            "migration {} of {owner} ({}) failed: {error}",
            migration.version,
            migration.description
        )
    })?;
    query(
        "INSERT INTO pixsim7_migrations (owner, version, description, checksum, applied_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(owner)
    .bind(migration.version)
    .bind(migration.description)
    .bind(checksum)
    .bind(unix_now())
    .execute(connection)
    .await?;
    Ok(true)
}

/// Expands the portable `AUTO_ID` column type for `backend`.
pub fn expand_dialect(sql: &str, backend: Backend) -> String {
    let auto_id = match backend {
        Backend::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
        Backend::Postgres => "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    };
    sql.replace("AUTO_ID", auto_id)
}

/// FNV-1a, 64 bits, hex: enough to notice an edited migration.
fn checksum(sql: &str) -> String {
    let hash = sql.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}
