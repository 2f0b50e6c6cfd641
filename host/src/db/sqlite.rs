//! The embedded SQLite store: rusqlite connections used directly on the calling thread (an
//! actix worker, the delivery task), never through a worker thread of their own.
//!
//! - **Readers**: a small pool of read connections. In WAL mode they read the last
//!   committed state without waiting for the writer.
//! - **The writer**: one connection behind an async lock. A unit of work takes it at its
//!   first write and keeps it until it ends, inside a savepoint of its own.
//! - **Group commit**: a unit that ends releases its savepoint but leaves the transaction
//!   open, and its response waits for the group's commit. The first unit to end in a group
//!   schedules a committer task behind every task already runnable on its thread (the
//!   requests that arrived together); those join the group, and one commit covers them all.
//!   A group is also committed as soon as it holds `MAX_GROUP` units or is `MAX_GROUP_AGE`
//!   old. Commits (writing every changed page to the log) then stop bounding throughput. A
//!   unit that rolls back undoes only its savepoint.
//!
//! Must never: let a unit see another unit's uncommitted writes other than through this
//! shared transaction (whose commit they then share), or answer a unit before the commit
//! that holds its writes.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{oneshot, Mutex as AsyncMutex, OwnedMutexGuard};

use super::sql::{sqlite_script, Conn, DbError};

/// Units one commit covers at most.
const MAX_GROUP: usize = 128;
/// How long a group may stay open before it is committed anyway.
const MAX_GROUP_AGE: Duration = Duration::from_millis(2);
/// Read connections kept for reuse.
const IDLE_READERS: usize = 16;
/// Prepared statements cached per connection.
const STATEMENT_CACHE: usize = 256;

/// The store.
pub struct SqliteStore {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    writer: Arc<AsyncMutex<Writer>>,
}

struct Writer {
    connection: Connection,
    group: Option<Group>,
    groups_started: u64,
}

struct Group {
    id: u64,
    started: Instant,
    /// Whether a committer task is on its way.
    commit_scheduled: bool,
    /// Units whose writes the group holds, waiting for its commit.
    waiters: Vec<oneshot::Sender<Result<(), String>>>,
}

impl SqliteStore {
    /// Opens (creating it if need be) the database file at `path`.
    pub fn open(path: &Path) -> Result<Arc<SqliteStore>, DbError> {
        let writer = open_connection(path, true)?;
        Ok(Arc::new(SqliteStore {
            path: path.to_owned(),
            readers: Mutex::new(Vec::new()),
            writer: Arc::new(AsyncMutex::new(Writer {
                connection: writer,
                group: None,
                groups_started: 0,
            })),
        }))
    }

    /// A connection of its own, for work that manages its transactions itself
    /// (migrations).
    pub fn dedicated_connection(&self) -> Result<Connection, DbError> {
        open_connection(&self.path, true)
    }

    /// A read connection, back to the pool when dropped.
    pub fn reader(self: &Arc<Self>) -> Result<ReaderLease, DbError> {
        let pooled = self.readers.lock().expect("reader pool").pop();
        let connection = match pooled {
            Some(connection) => connection,
            None => open_connection(&self.path, false)?,
        };
        Ok(ReaderLease {
            store: self.clone(),
            connection: Some(connection),
        })
    }

    /// The writer, inside a savepoint of the caller's own (and a group transaction begun if
    /// none is open).
    pub async fn writer(self: &Arc<Self>) -> Result<WriterLease, DbError> {
        let mut guard = self.writer.clone().lock_owned().await;
        // A group that has grown old is committed before anything joins it.
        if guard
            .group
            .as_ref()
            .is_some_and(|g| g.started.elapsed() >= MAX_GROUP_AGE)
        {
            commit_group(&mut guard);
        }
        if guard.group.is_none() {
            sqlite_script(&guard.connection, "BEGIN IMMEDIATE")?;
            guard.groups_started += 1;
            guard.group = Some(Group {
                id: guard.groups_started,
                started: Instant::now(),
                commit_scheduled: false,
                waiters: Vec::new(),
            });
        }
        if let Err(error) = sqlite_script(&guard.connection, "SAVEPOINT unit") {
            // Nothing of ours is in the group; leave it for its members to commit.
            return Err(error.into());
        }
        Ok(WriterLease {
            store: self.clone(),
            guard: Some(guard),
        })
    }

    /// Commits an open group now (shutdown, or a flush before reading another connection's
    /// view).
    pub async fn commit_pending(&self) {
        let mut guard = self.writer.clone().lock_owned().await;
        commit_group(&mut guard);
    }
}

fn open_connection(path: &Path, writable: bool) -> Result<Connection, DbError> {
    let flags = if writable {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let connection = Connection::open_with_flags(path, flags)?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // First: another process (`pixsim7 migrate`, a second start) may hold a lock briefly,
    // even while this one switches the journal mode.
    connection.busy_timeout(Duration::from_secs(10))?;
    if writable {
        // Switching a new file to WAL needs an exclusive lock, which SQLite refuses at once
        // (no busy handler) while another process opens the same file: retry for a while.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match connection.execute_batch("PRAGMA journal_mode = WAL") {
                Err(rusqlite::Error::SqliteFailure(failure, _))
                    if matches!(
                        failure.code,
                        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                    ) && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => break other?,
            }
        }
        // Checkpoints (copying the log into the file, with an fsync) every 10000 pages
        // (about 40 MiB) instead of SQLite's default 1000: a checkpoint runs inside a commit,
        // and at 1000 pages they took about 6 % of the CPU of a write-heavy load.
        connection
            .execute_batch("PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 10000;")?;
    }
    // Pages read through a shared memory map instead of a copy per read, and a larger
    // cache on the writer (which touches the most pages).
    let cache = if writable { "-65536" } else { "-8192" };
    connection.execute_batch(&format!(
        "PRAGMA foreign_keys = ON; PRAGMA mmap_size = 268435456; PRAGMA cache_size = {cache};"
    ))?;
    super::document::register(&connection)?;
    super::confine::install_sqlite(&connection)?;
    Ok(connection)
}

/// Commits the open group, if any, and tells its units how it went.
fn commit_group(writer: &mut Writer) {
    let Some(group) = writer.group.take() else {
        return;
    };
    let outcome = writer
        .connection
        .prepare_cached("COMMIT")
        .and_then(|mut commit| commit.raw_execute())
        .map(drop)
        .map_err(|error| {
            // The transaction is gone either way; make sure nothing of it lingers.
            let _ = writer.connection.execute_batch("ROLLBACK");
            tracing::error!(error = %error, units = group.waiters.len(), "committing a group of units of work failed: {error}");
            error.to_string()
        });
    for waiter in group.waiters {
        let _ = waiter.send(outcome.clone());
    }
}

/// A read connection on loan.
pub struct ReaderLease {
    store: Arc<SqliteStore>,
    connection: Option<Connection>,
}

impl ReaderLease {
    /// The connection.
    pub fn conn(&mut self) -> Conn<'_> {
        Conn::Sqlite(self.connection.as_mut().expect("held until dropped"))
    }
}

impl Drop for ReaderLease {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            let mut readers = self.store.readers.lock().expect("reader pool");
            if readers.len() < IDLE_READERS {
                readers.push(connection);
            }
        }
    }
}

/// The writer on loan to one unit, inside the unit's savepoint.
pub struct WriterLease {
    store: Arc<SqliteStore>,
    guard: Option<OwnedMutexGuard<Writer>>,
}

/// What ending a unit on the writer leaves to wait for.
pub enum Finished {
    /// Done: committed (or nothing of the unit's to commit).
    Done(Result<(), String>),
    /// The unit's writes wait in an open group; the receiver says how its commit went.
    InGroup(u64, oneshot::Receiver<Result<(), String>>),
}

impl WriterLease {
    /// The connection.
    pub fn conn(&mut self) -> Conn<'_> {
        Conn::Sqlite(&mut self.guard.as_mut().expect("held until finished").connection)
    }

    /// `Err` when SQLite rolled the group's transaction back by itself (it does after some
    /// errors, such as a full disk): a statement now would commit on its own, outside any
    /// unit. The group's units are told their commit failed.
    pub fn check_open(&mut self) -> Result<(), DbError> {
        let guard = self.guard.as_mut().expect("held until finished");
        if !guard.connection.is_autocommit() {
            return Ok(());
        }
        if let Some(group) = guard.group.take() {
            for waiter in group.waiters {
                let _ = waiter.send(Err("the database rolled the transaction back".to_owned()));
            }
        }
        Err(DbError::Unavailable(
            "the database rolled the transaction back (after an I/O error or a full disk)"
                .to_owned(),
        ))
    }

    /// Ends the unit's savepoint (kept or undone) and hands the writer on. A kept unit waits
    /// for its group's commit (see the module documentation).
    pub fn finish(mut self, keep: bool) -> Finished {
        self.finish_inner(keep)
    }

    fn finish_inner(&mut self, keep: bool) -> Finished {
        let Some(mut guard) = self.guard.take() else {
            return Finished::Done(Ok(()));
        };
        if guard.group.is_some() && guard.connection.is_autocommit() {
            // SQLite ended the transaction itself (see `check_open`): nothing is kept.
            let group = guard.group.take().expect("checked above");
            for waiter in group.waiters {
                let _ = waiter.send(Err("the database rolled the transaction back".to_owned()));
            }
            return Finished::Done(Err("the database rolled the transaction back".to_owned()));
        }
        let released = if keep {
            sqlite_script(&guard.connection, "RELEASE unit").map_err(|e| e.to_string())
        } else {
            Err(String::new())
        };
        if released.is_err() {
            // Undo the unit alone; the rest of the group stays.
            let undone = sqlite_script(&guard.connection, "ROLLBACK TO unit")
                .and_then(|()| sqlite_script(&guard.connection, "RELEASE unit"));
            if let Err(error) = undone {
                tracing::error!(error = %error, "undoing a unit's savepoint failed: {error}");
                // The group cannot be trusted: end it, telling its units.
                if let Some(group) = guard.group.take() {
                    let _ = guard.connection.execute_batch("ROLLBACK");
                    for waiter in group.waiters {
                        let _ = waiter.send(Err(format!("the group was rolled back: {error}")));
                    }
                }
            }
        }
        if let (true, Err(problem)) = (keep, &released) {
            if guard.group.as_ref().is_some_and(|g| g.waiters.is_empty()) {
                commit_group(&mut guard);
            }
            return Finished::Done(Err(problem.clone()));
        }
        if !keep {
            // Nothing of this unit's to commit; a group with no member left is ended now.
            if guard.group.as_ref().is_some_and(|g| g.waiters.is_empty()) {
                commit_group(&mut guard);
            }
            return Finished::Done(Ok(()));
        }
        let Some(group) = guard.group.as_mut() else {
            return Finished::Done(Err("the unit's group transaction was lost".to_owned()));
        };
        let (done, outcome) = oneshot::channel();
        group.waiters.push(done);
        let id = group.id;
        if group.waiters.len() >= MAX_GROUP || group.started.elapsed() >= MAX_GROUP_AGE {
            commit_group(&mut guard);
            return Finished::Done(ready_outcome(outcome));
        }
        if !group.commit_scheduled {
            group.commit_scheduled = true;
            let store = self.store.clone();
            tokio::spawn(async move {
                // Behind every task already runnable on this thread: the requests that came
                // in together end their units first and join this group.
                tokio::task::yield_now().await;
                let mut guard = store.writer.clone().lock_owned().await;
                if guard.group.as_ref().is_some_and(|g| g.id == id) {
                    commit_group(&mut guard);
                }
            });
        }
        Finished::InGroup(id, outcome)
    }
}

impl Drop for WriterLease {
    fn drop(&mut self) {
        // A unit dropped undecided (its request cut off): undo its savepoint.
        if self.guard.is_some() {
            let _ = self.finish_inner(false);
        }
    }
}

/// Waits for the commit of the group holding a unit's writes. If the group's last member
/// went away without committing, commits it after a short while.
pub async fn wait_for_group(
    store: &Arc<SqliteStore>,
    group_id: u64,
    mut outcome: oneshot::Receiver<Result<(), String>>,
) -> Result<(), String> {
    loop {
        tokio::select! {
            result = &mut outcome => {
                return result.unwrap_or_else(|_| Err("the group ended without a commit".to_owned()));
            }
            () = tokio::time::sleep(MAX_GROUP_AGE * 2) => {
                let mut guard = store.writer.clone().lock_owned().await;
                if guard.group.as_ref().is_some_and(|g| g.id == group_id) {
                    commit_group(&mut guard);
                }
            }
        }
    }
}

/// The outcome of a commit that has already happened (sent before this is called).
fn ready_outcome(mut outcome: oneshot::Receiver<Result<(), String>>) -> Result<(), String> {
    outcome
        .try_recv()
        .unwrap_or_else(|_| Err("the commit did not report".to_owned()))
}
