//! The database: one sqlx `Any` pool over SQLite (the embedded default, a file created on
//! first start, WAL, foreign keys on) or PostgreSQL (for several instances), chosen by URL.
//! The same code and the same migrations serve both.
//!
//! Invariant: only the host touches the database; plugins reach it through host services.

pub mod migrate;
pub mod unit_of_work;

use std::time::Duration;

use anyhow::Context;
use sqlx::{
    any::{AnyConnectOptions, AnyPoolOptions},
    AnyPool, Executor,
};

/// Which database the URL named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite://path`
    Sqlite,
    /// `postgres://...`
    Postgres,
}

/// A connected database.
#[derive(Clone)]
pub struct Database {
    /// The pool.
    pub pool: AnyPool,
    /// Which database it is.
    pub backend: Backend,
    /// The URL it was opened with (for a PostgreSQL listener connection; never logged
    /// unredacted).
    url: String,
}

impl Database {
    /// Connects to `url` (`sqlite://file.db` is created when missing).
    pub async fn connect(url: &str) -> anyhow::Result<Database> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            anyhow::bail!(
                "database URL {} is neither sqlite://... nor postgres://...",
                redact(url)
            );
        };
        let url = match backend {
            // `mode=rwc` creates the file on first start.
            Backend::Sqlite if !url.contains("mode=") => {
                let separator = if url.contains('?') { '&' } else { '?' };
                format!("{url}{separator}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let options: AnyConnectOptions = url
            .parse()
            .with_context(|| format!("invalid database URL {}", redact(&url)))?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                // SQLite has one writer at a time; several connections only make writers
                // collide and sleep in SQLite's busy handler (seconds under load). One
                // connection queues them in the pool instead, without sleeping.
                Backend::Sqlite => 1,
                Backend::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        connection
                            .execute(
                                "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
                                 PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL;",
                            )
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .with_context(|| format!("cannot connect to the database {}", redact(&url)))?;
        Ok(Database { pool, backend, url })
    }

    /// The URL the database was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Closes every connection (at shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
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
