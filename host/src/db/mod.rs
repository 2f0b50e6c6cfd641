//! The database: SQLite (the embedded default, a file created on first start, WAL, foreign
//! keys on) through rusqlite on the calling thread, or PostgreSQL (for several instances)
//! through an sqlx pool, chosen by URL. The same SQL (`$1` parameters, see `sql`) and the
//! same migrations serve both.
//!
//! Invariant: only the host touches the database; plugins reach it through host services,
//! and every host service call runs in a unit of work (`unit_of_work`).

pub mod confine;
pub mod document;
pub mod migrate;
pub mod sql;
pub mod sqlite;
pub mod unit_of_work;

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use sqlx::{pool::PoolConnection, postgres::PgPoolOptions, PgPool, Postgres};

use self::{
    sql::{Conn, DbError},
    sqlite::{ReaderLease, SqliteStore},
};

/// Which database the URL named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite://path`
    Sqlite,
    /// `postgres://...`
    Postgres,
}

/// How the database is reached.
#[derive(Clone)]
pub enum Engine {
    /// The embedded store.
    Sqlite(Arc<SqliteStore>),
    /// A connection pool.
    Postgres(PgPool),
}

/// A connected database.
#[derive(Clone)]
pub struct Database {
    /// How it is reached.
    pub engine: Engine,
    /// Which database it is.
    pub backend: Backend,
    /// The URL it was opened with (for a PostgreSQL listener connection; never logged
    /// unredacted).
    url: String,
    /// On PostgreSQL, a short tag of the database's name, in the cluster-wide names of
    /// plugins' roles (`db::confine`); empty on SQLite.
    tag: Arc<str>,
}

/// A connection for reads outside any unit of work.
pub enum ReadConnection {
    /// An SQLite read connection.
    Sqlite(ReaderLease),
    /// A pooled PostgreSQL connection.
    Postgres(PoolConnection<Postgres>),
}

impl ReadConnection {
    /// The connection.
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            ReadConnection::Sqlite(lease) => lease.conn(),
            ReadConnection::Postgres(connection) => Conn::Postgres(connection),
        }
    }
}

impl Database {
    /// Connects to `url` (`sqlite://file.db` is created when missing).
    pub async fn connect(url: &str) -> anyhow::Result<Database> {
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.trim_start_matches("//");
            let path = path.split('?').next().unwrap_or(path);
            anyhow::ensure!(
                !path.is_empty() && path != ":memory:",
                "database URL {url} names no file: use sqlite://path/to/file.db"
            );
            let store = SqliteStore::open(std::path::Path::new(path))
                .with_context(|| format!("cannot open the SQLite database {path}"))?;
            return Ok(Database {
                engine: Engine::Sqlite(store),
                backend: Backend::Sqlite,
                url: url.to_owned(),
                tag: Arc::from(""),
            });
        }
        anyhow::ensure!(
            url.starts_with("postgres://") || url.starts_with("postgresql://"),
            "database URL {} is neither sqlite://... nor postgres://...",
            redact(url)
        );
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .with_context(|| format!("cannot connect to the database {}", redact(url)))?;
        let name: (String,) = sqlx::query_as("SELECT current_database()")
            .fetch_one(&pool)
            .await
            .with_context(|| format!("cannot query the database {}", redact(url)))?;
        let tag = format!("{:08x}", confine::fnv(&name.0) as u32);
        Ok(Database {
            engine: Engine::Postgres(pool),
            backend: Backend::Postgres,
            url: url.to_owned(),
            tag: Arc::from(tag),
        })
    }

    /// The database's tag in the names of plugins' PostgreSQL roles (empty on SQLite).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The URL the database was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A connection for reads that belong to no unit of work.
    pub async fn read_connection(&self) -> Result<ReadConnection, DbError> {
        match &self.engine {
            Engine::Sqlite(store) => Ok(ReadConnection::Sqlite(store.reader()?)),
            Engine::Postgres(pool) => {
                let started = std::time::Instant::now();
                let connection = pool.acquire().await?;
                crate::metrics::observe_pool_wait(started.elapsed());
                Ok(ReadConnection::Postgres(connection))
            }
        }
    }

    /// Whether the database answers a query now (for `/readyz`).
    pub async fn ping(&self) -> Result<(), DbError> {
        let mut connection = self.read_connection().await?;
        sql::query("SELECT 1")
            .fetch_one(&mut connection.conn())
            .await?;
        Ok(())
    }

    /// Commits what is pending and closes every connection (at shutdown).
    pub async fn close(&self) {
        match &self.engine {
            Engine::Sqlite(store) => store.commit_pending().await,
            Engine::Postgres(pool) => pool.close().await,
        }
    }
}

/// The URL without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Seconds since the Unix epoch, for `created_at` columns.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(
            super::redact("postgres://app:s3cret@db:5432/game"),
            "postgres://app:***@db:5432/game"
        );
        assert_eq!(super::redact("sqlite://pixsim7.db"), "sqlite://pixsim7.db");
    }
}
