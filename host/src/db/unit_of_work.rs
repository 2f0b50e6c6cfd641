//! One unit of work: the database transaction that every host-service call made while
//! handling one request (or one event delivery, or one lifecycle hook) joins. Whoever
//! created the unit decides its outcome: commit when the request answered below 400 (the
//! hook or delivery succeeded), roll back otherwise; a unit dropped undecided (a client that
//! went away, a timeout) rolls back.
//!
//! The transaction begins lazily, at the unit's first write: a request that only reads
//! holds no transaction and no connection between its calls, and reads made before the
//! first write run on any pooled connection (the game's compare-and-set keeps such
//! read-then-write sequences safe). Once the unit has written, every call, read or write,
//! runs inside its transaction and so sees its own writes.
//!
//! Invariant: nothing outside this module begins, commits or rolls back a unit's
//! transaction, and a unit never commits after it was told to roll back.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use sqlx::{Postgres, Transaction};
use tokio::sync::{Mutex, MutexGuard};

use super::{
    sql::{Conn, DbError},
    sqlite::{wait_for_group, Finished, WriterLease},
    Database, Engine, ReadConnection,
};
use crate::events::EmittedEvent;

tokio::task_local! {
    /// The unit of an event delivery or a lifecycle hook in progress on this task: host
    /// service calls that come without a request context (the plugin is not handling a
    /// request) join it.
    static AMBIENT_UNIT: std::sync::Arc<UnitOfWork>;
}

/// A unit of work; see the module documentation.
pub struct UnitOfWork {
    database: Database,
    state: Mutex<UnitState>,
    /// Events written to the outbox in this unit, counted once it commits.
    emitted: std::sync::Mutex<Vec<EmittedEvent>>,
    /// Set when a step that must finish did not (a confined plugin statement abandoned
    /// half-way): the connection's state is unknown, so the unit takes no further call and
    /// rolls back.
    broken: AtomicBool,
    /// Whether any call has used the unit ([`UNTOUCHED`], [`TOUCHED`], or
    /// [`ENDED_UNTOUCHED`]): most requests never call a host service, and their unit ends
    /// without taking its lock.
    phase: AtomicU8,
}

/// No call has used the unit yet.
const UNTOUCHED: u8 = 0;
/// A call has used the unit: ending it goes through its state.
const TOUCHED: u8 = 1;
/// Ended before any call used it: later calls are refused.
const ENDED_UNTOUCHED: u8 = 2;

enum UnitState {
    /// Nothing written yet.
    Idle,
    /// Written; the transaction holds a connection until the unit ends.
    Open(OpenTransaction),
    /// Committed or rolled back; later calls are refused.
    Ended,
}

enum OpenTransaction {
    /// The SQLite writer, in the unit's savepoint of a group transaction.
    Sqlite(WriterLease),
    /// A PostgreSQL transaction of the unit's own.
    Postgres(Transaction<'static, Postgres>),
}

/// A step of a unit that must run to its end (see [`UnitOfWork::break_unless_finished`]).
pub struct Unfinished<'a> {
    unit: Option<&'a UnitOfWork>,
}

impl Unfinished<'_> {
    /// The step ran to its end.
    pub fn finished(mut self) {
        self.unit = None;
    }
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if let Some(unit) = self.unit {
            unit.broken.store(true, Ordering::Release);
        }
    }
}

/// Why a unit of work could not do what was asked.
#[derive(Debug)]
pub enum UnitError {
    /// The unit already ended (a call made after its request was answered).
    Ended,
    /// The database failed.
    Database(DbError),
}

impl std::fmt::Display for UnitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnitError::Ended => f.write_str("the unit of work has already ended"),
            UnitError::Database(error) => write!(f, "{error}"),
        }
    }
}

impl From<DbError> for UnitError {
    fn from(error: DbError) -> Self {
        UnitError::Database(error)
    }
}

impl From<sqlx::Error> for UnitError {
    fn from(error: sqlx::Error) -> Self {
        UnitError::Database(DbError::Postgres(error))
    }
}

/// A connection lent for one host-service call: the unit's transaction, or a read
/// connection for a read before the unit's first write.
pub struct UnitConnection<'a>(Lent<'a>);

enum Lent<'a> {
    /// A read outside any transaction.
    Read(ReadConnection),
    /// The unit's transaction (held exclusively for the call).
    InTransaction(MutexGuard<'a, UnitState>),
}

impl UnitConnection<'_> {
    /// Whether this is the unit's transaction (not a connection for a read).
    pub fn in_transaction(&self) -> bool {
        matches!(self.0, Lent::InTransaction(_))
    }

    /// The connection.
    pub fn conn(&mut self) -> Conn<'_> {
        match &mut self.0 {
            Lent::Read(connection) => connection.conn(),
            Lent::InTransaction(state) => match &mut **state {
                UnitState::Open(OpenTransaction::Sqlite(lease)) => lease.conn(),
                UnitState::Open(OpenTransaction::Postgres(transaction)) => {
                    Conn::Postgres(transaction)
                }
                _ => unreachable!("lent only while open"),
            },
        }
    }
}

/// What ending a unit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Nothing had been written: there was nothing to commit or roll back.
    NothingWritten,
    /// The transaction committed.
    Committed,
    /// The transaction rolled back.
    RolledBack,
}

impl UnitOfWork {
    /// A unit that begins its transaction at its first write.
    pub fn new(database: &Database) -> UnitOfWork {
        UnitOfWork {
            database: database.clone(),
            state: Mutex::new(UnitState::Idle),
            emitted: std::sync::Mutex::new(Vec::new()),
            broken: AtomicBool::new(false),
            phase: AtomicU8::new(UNTOUCHED),
        }
    }

    /// A unit whose transaction is already open (an event delivery, which locks its cursor
    /// first).
    pub async fn begin(database: &Database) -> Result<UnitOfWork, DbError> {
        let transaction = begin_transaction(database).await?;
        Ok(UnitOfWork {
            database: database.clone(),
            state: Mutex::new(UnitState::Open(transaction)),
            emitted: std::sync::Mutex::new(Vec::new()),
            broken: AtomicBool::new(false),
            phase: AtomicU8::new(TOUCHED),
        })
    }

    /// The database the unit works on.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// A guard for a step that must run to its end: dropped before
    /// [`Unfinished::finished`], it breaks the unit.
    pub fn break_unless_finished(&self) -> Unfinished<'_> {
        Unfinished { unit: Some(self) }
    }

    fn check_not_broken(&self) -> Result<(), DbError> {
        if self.broken.load(Ordering::Acquire) {
            return Err(DbError::Unavailable(
                "a plugin statement of this unit of work was abandoned half-way; the unit is rolled back".to_owned(),
            ));
        }
        Ok(())
    }

    /// A connection for one call; `write` begins the transaction if it is not open yet.
    pub async fn connection(&self, write: bool) -> Result<UnitConnection<'_>, UnitError> {
        self.check_not_broken()?;
        self.touch()?;
        let mut state = self.state.lock().await;
        match &mut *state {
            UnitState::Open(OpenTransaction::Sqlite(lease)) => {
                lease.check_open()?;
                return Ok(UnitConnection(Lent::InTransaction(state)));
            }
            UnitState::Open(_) => return Ok(UnitConnection(Lent::InTransaction(state))),
            UnitState::Ended => return Err(UnitError::Ended),
            UnitState::Idle if write => {}
            UnitState::Idle => {
                drop(state);
                return Ok(UnitConnection(Lent::Read(
                    self.database.read_connection().await?,
                )));
            }
        }
        *state = UnitState::Open(begin_transaction(&self.database).await?);
        Ok(UnitConnection(Lent::InTransaction(state)))
    }

    /// The unit's transaction, begun if need be (for host-made writes such as the outbox).
    pub async fn transaction(&self) -> Result<UnitConnection<'_>, UnitError> {
        self.connection(true).await
    }

    /// Marks the unit used; refused once it ended untouched.
    fn touch(&self) -> Result<(), UnitError> {
        match self
            .phase
            .compare_exchange(UNTOUCHED, TOUCHED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) | Err(TOUCHED) => Ok(()),
            Err(_) => Err(UnitError::Ended),
        }
    }

    /// Ends a unit no call has used, without taking its lock: nothing was read in it,
    /// written or emitted. False once a call has used it.
    fn end_untouched(&self) -> bool {
        self.phase
            .compare_exchange(
                UNTOUCHED,
                ENDED_UNTOUCHED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Commits what the unit wrote (on SQLite, waits for the group commit that holds it).
    /// After this, the unit refuses further calls.
    pub async fn commit(&self) -> Result<Ending, DbError> {
        if let Err(error) = self.check_not_broken() {
            self.rollback().await;
            return Err(error);
        }
        if self.end_untouched() {
            return Ok(Ending::NothingWritten);
        }
        let previous = std::mem::replace(&mut *self.state.lock().await, UnitState::Ended);
        match previous {
            UnitState::Open(OpenTransaction::Postgres(transaction)) => {
                transaction.commit().await?;
                Ok(Ending::Committed)
            }
            UnitState::Open(OpenTransaction::Sqlite(lease)) => {
                let outcome = match lease.finish(true) {
                    Finished::Done(outcome) => outcome,
                    Finished::InGroup(group, receiver) => match &self.database.engine {
                        Engine::Sqlite(store) => wait_for_group(store, group, receiver).await,
                        Engine::Postgres(_) => unreachable!("an SQLite lease"),
                    },
                };
                outcome
                    .map(|()| Ending::Committed)
                    .map_err(|why| DbError::Unavailable(format!("the commit failed: {why}")))
            }
            UnitState::Idle | UnitState::Ended => Ok(Ending::NothingWritten),
        }
    }

    /// Rolls back what the unit wrote. After this, the unit refuses further calls.
    pub async fn rollback(&self) -> Ending {
        if self.end_untouched() {
            return Ending::NothingWritten;
        }
        let previous = std::mem::replace(&mut *self.state.lock().await, UnitState::Ended);
        match previous {
            UnitState::Open(OpenTransaction::Postgres(transaction)) => {
                if let Err(error) = transaction.rollback().await {
                    // The connection is closed by the pool; the transaction is gone either way.
                    tracing::warn!(error = %error, "rolling back a unit of work failed");
                }
                Ending::RolledBack
            }
            UnitState::Open(OpenTransaction::Sqlite(lease)) => {
                let _ = lease.finish(false);
                Ending::RolledBack
            }
            UnitState::Idle | UnitState::Ended => Ending::NothingWritten,
        }
    }

    /// Notes an event written to the outbox in this unit.
    pub fn record_emitted(&self, event: EmittedEvent) {
        self.emitted.lock().expect("unit lock").push(event);
    }

    /// The events written in this unit so far, in order, leaving none.
    pub fn take_emitted(&self) -> Vec<EmittedEvent> {
        std::mem::take(&mut *self.emitted.lock().expect("unit lock"))
    }

    /// Runs `work` with this unit as the ambient one: host-service calls made during it
    /// without a request context join this unit.
    pub async fn run_ambient<F: std::future::Future>(
        self: &std::sync::Arc<Self>,
        work: F,
    ) -> F::Output {
        AMBIENT_UNIT.scope(self.clone(), work).await
    }

    /// The ambient unit of the task being polled, if any.
    pub fn ambient() -> Option<std::sync::Arc<UnitOfWork>> {
        AMBIENT_UNIT.try_with(|unit| unit.clone()).ok()
    }
}

impl Drop for UnitOfWork {
    fn drop(&mut self) {
        // Undecided: the SQLite lease undoes its savepoint when dropped, and sqlx rolls a
        // dropped transaction back before its connection is reused. Say so, since it means a
        // request or hook was cut off.
        if let UnitState::Open(_) = self.state.get_mut() {
            tracing::debug!("a unit of work ended undecided; its transaction rolls back");
        }
    }
}

/// Opens a unit's transaction: on SQLite, a savepoint on the writer (in a group
/// transaction); on PostgreSQL, a transaction of its own.
/// The wait (for SQLite's writer, or a pooled PostgreSQL connection) is measured.
async fn begin_transaction(database: &Database) -> Result<OpenTransaction, DbError> {
    let started = std::time::Instant::now();
    let transaction = match &database.engine {
        Engine::Sqlite(store) => OpenTransaction::Sqlite(store.writer().await?),
        Engine::Postgres(pool) => OpenTransaction::Postgres(pool.begin().await?),
    };
    crate::metrics::observe_pool_wait(started.elapsed());
    Ok(transaction)
}
