//! The databases game tests run on: always a fresh SQLite file; also a fresh PostgreSQL
//! database when `PIXSIM7_TEST_DATABASE_URL` is set (CI sets it), created for the test and
//! dropped after it, so runs never see each other's data.

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

use sqlx::{AnyConnection, Connection, Executor, PgConnection};

/// One database for one test.
pub struct TestDatabase {
    /// `sqlite` or `postgres`, for assertion messages.
    pub kind: &'static str,
    /// The URL to hand to `pixsim7`.
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    File(PathBuf),
    Postgres { admin_url: String, name: String },
}

/// Every database this machine offers the tests.
pub fn test_databases() -> Vec<TestDatabase> {
    let mut databases = vec![sqlite()];
    if let Ok(admin_url) = std::env::var("PIXSIM7_TEST_DATABASE_URL") {
        if !admin_url.is_empty() {
            databases.push(postgres(&admin_url));
        }
    }
    databases
}

impl TestDatabase {
    /// How a plugin's table is named from outside: in the plugin's schema on PostgreSQL
    /// (`plugin_<id>.<id>__<table>`), as is on SQLite.
    pub fn plugin_table(&self, plugin_id: &str, table: &str) -> String {
        let id = plugin_id.replace('-', "_");
        match self.kind {
            "postgres" => format!("plugin_{id}.{id}__{table}"),
            _ => format!("{id}__{table}"),
        }
    }

    /// The integer one query answers (a count), read straight from the database: what a test
    /// checks the host left behind.
    #[track_caller]
    pub fn scalar(&self, sql: &str) -> i64 {
        block_on(async {
            sqlx::any::install_default_drivers();
            let mut connection = AnyConnection::connect(&self.url)
                .await
                .unwrap_or_else(|e| panic!("{}: cannot connect: {e}", self.kind));
            let value: i64 = sqlx::query_scalar(sql)
                .fetch_one(&mut connection)
                .await
                .unwrap_or_else(|e| panic!("{sql} on {}: {e}", self.kind));
            let _ = connection.close().await;
            value
        })
    }
}

fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(work)
}

fn unique_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "pixsim7_test_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn sqlite() -> TestDatabase {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}.db", unique_name()));
    TestDatabase {
        kind: "sqlite",
        url: format!("sqlite://{}", path.display()),
        cleanup: Cleanup::File(path),
    }
}

fn postgres(admin_url: &str) -> TestDatabase {
    let name = unique_name();
    run_admin(admin_url, &format!("CREATE DATABASE {name}"));
    // Same server and credentials, other database; keep any query string.
    let (base, query) = admin_url
        .split_once('?')
        .map_or((admin_url, None), |(b, q)| (b, Some(q)));
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    let url = match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    };
    TestDatabase {
        kind: "postgres",
        url,
        cleanup: Cleanup::Postgres {
            admin_url: admin_url.to_owned(),
            name,
        },
    }
}

fn run_admin(admin_url: &str, statement: &str) {
    block_on(async {
        let mut connection = PgConnection::connect(admin_url)
            .await
            .unwrap_or_else(|e| panic!("PIXSIM7_TEST_DATABASE_URL: cannot connect: {e}"));
        connection
            .execute(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        let _ = connection.close().await;
    });
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::Postgres { admin_url, name } => {
                run_admin(
                    admin_url,
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                );
                // The plugins' roles are the cluster's, named after the database's tag.
                let tag = format!("{:08x}", fnv(name) as u32);
                run_admin(
                    admin_url,
                    &format!(
                        "DO $$ DECLARE r record; BEGIN \
                         FOR r IN SELECT rolname FROM pg_roles WHERE rolname LIKE 'pixsim7\\_{tag}\\_%' \
                         LOOP EXECUTE format('DROP ROLE %I', r.rolname); END LOOP; END $$"
                    ),
                );
            }
        }
    }
}

/// FNV-1a, 64 bits: how the host tags a database in its plugins' role names.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
