//! The event bus, as a transactional outbox: an event is a row of `pixsim7_events`, written
//! in the unit of work of whoever emitted it, so a rolled-back request publishes nothing and
//! a committed one can never lose its events. Each subscribing plugin has a delivery task
//! that reads the table after its cursor and calls `on_event` one event at a time.
//!
//! Delivery modes (chosen by the subscriber's manifest):
//! - *cluster* (the default): the cursor is a row of `pixsim7_event_cursors`, locked while
//!   an instance delivers (`FOR UPDATE SKIP LOCKED` on PostgreSQL) and advanced in the same
//!   transaction as the subscriber's own writes. Each event is applied once per database,
//!   in order, across crashes, restarts and instances.
//! - *instance*: the cursor lives in memory, starting at the end of the table when the
//!   instance starts; every instance sees every event (caches and other in-memory state).
//!
//! Wake-ups: a commit that wrote events wakes this instance's tasks; on PostgreSQL it also
//! sends `NOTIFY pixsim7_events`, which wakes the other instances. The table stays the truth:
//! each task also looks every `poll_interval`, so a lost wake-up only delays.
//!
//! Reading after a position is a range scan: `(tx_id, id) > ($1, $2)` on PostgreSQL (a row
//! comparison its `(tx_id, id)` index answers), `id > $2` on SQLite (whose planner would scan
//! every delivered event for the row comparison; there `tx_id` is always 0).
//!
//! Ordering on PostgreSQL: event ids are taken when rows are inserted, not when they commit,
//! so a reader could see id 6 before id 5 commits and skip 5 for good. Rows are therefore
//! ordered by the id of the transaction that wrote them and read only once every older
//! transaction has ended (`tx_id < pg_snapshot_xmin`). On SQLite writers commit one at a
//! time, so id order is commit order.
//!
//! Must never: deliver an event of a unit that rolled back, advance a cluster cursor in a
//! transaction other than the one holding the subscriber's writes (except to skip an event
//! whose handler failed, after rolling those writes back), or let one subscriber's failure
//! touch another.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use abi_stable::std_types::{RString, RVec};
use plugin_api::{abi::PluginModule_Ref, EventDelivery};
use serde::Serialize;
use serde_json::Value;

use tokio::sync::watch;

use crate::{
    config::EventSettings,
    db::{
        sql::{query, Conn, DbError, Row, SqlValue},
        unit_of_work::{Ending, UnitError, UnitOfWork},
        unix_now, Backend, Database,
    },
    plugins::lifecycle::run_hook,
    request_context::event_delivery_context,
};

/// The tracing target of per-event delivery lines (debug level).
pub const EVENTS_TARGET: &str = "pixsim7::events";

/// The name counters use for events the host itself emits.
pub const HOST_EMITTER: &str = "host";

/// The PostgreSQL notification channel that says "new events were committed".
const NOTIFY_CHANNEL: &str = "pixsim7_events";

/// Events read from the outbox per query.
const BATCH: i64 = 128;

/// How often delivered events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Counts of one plugin and one topic, in this instance since it started.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct TopicCounters {
    /// Events this plugin emitted on this topic (committed).
    pub emitted: u64,
    /// Events on this topic this plugin's `on_event` handled.
    pub delivered: u64,
    /// Events on this topic this plugin's `on_event` failed on (error, panic, timeout); its
    /// writes for the event were rolled back and the event skipped.
    pub failed: u64,
}

/// A position in the outbox: events are ordered by `(tx_id, id)`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// The writing transaction's id (0 on SQLite).
    pub tx_id: i64,
    /// The event's id.
    pub event_id: i64,
}

/// An event emitted in a unit of work, kept by the unit until it commits (for counters).
#[derive(Debug, Clone)]
pub struct EmittedEvent {
    /// The emitting plugin, or `host`.
    pub emitter: String,
    /// The topic.
    pub topic: String,
}

/// An event as the outbox holds it.
pub struct StoredEvent {
    /// Where it is in the outbox.
    pub position: Position,
    /// Who emitted it (a plugin id, or `host`).
    pub source: String,
    /// Its topic.
    pub topic: String,
    /// Its JSON payload, as text.
    pub payload: String,
    /// The user on whose behalf it was emitted.
    pub user_id: Option<i64>,
}

struct Subscriber {
    plugin_id: String,
    patterns: Vec<String>,
    module: PluginModule_Ref,
    mode: EventDelivery,
    /// The position this subscriber has handled up to, as this instance last saw it.
    reached: watch::Sender<Position>,
    /// Set to stop the delivery task once it is idle.
    stop: watch::Sender<bool>,
}

/// The bus. Shared by the request path, the host services and the lifecycle.
pub struct EventBus {
    database: Database,
    settings: EventSettings,
    hook_timeout: Duration,
    subscribers: Mutex<Vec<Arc<Subscriber>>>,
    counters: Mutex<BTreeMap<String, BTreeMap<String, TopicCounters>>>,
    /// Bumped whenever events may have been committed.
    wake: watch::Sender<u64>,
    /// Each subscriber's delivery task, once started.
    deliveries: Mutex<BTreeMap<String, tokio::task::JoinHandle<()>>>,
    /// The PostgreSQL listener and the pruner.
    background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl EventBus {
    /// A bus over `database`'s outbox.
    pub fn new(database: &Database, settings: EventSettings, hook_timeout: Duration) -> Arc<Self> {
        Arc::new(EventBus {
            database: database.clone(),
            settings,
            hook_timeout,
            subscribers: Mutex::new(Vec::new()),
            counters: Mutex::new(BTreeMap::new()),
            wake: watch::channel(0).0,
            deliveries: Mutex::new(BTreeMap::new()),
            background: Mutex::new(Vec::new()),
        })
    }

    /// The database the outbox lives in.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Registers `plugin_id` for events matching `patterns`. A cluster subscriber seen for the
    /// first time starts at the end of the outbox (it is not handed the history); one seen
    /// before resumes where it stopped. Events are handed over once delivery starts.
    pub async fn subscribe(
        &self,
        plugin_id: &str,
        patterns: &[String],
        module: PluginModule_Ref,
        mode: EventDelivery,
    ) -> Result<(), DbError> {
        let head = self.head().await?;
        let start = match mode {
            EventDelivery::Instance => head,
            EventDelivery::Cluster => {
                let unit = UnitOfWork::new(&self.database);
                let cursor = {
                    let mut connection = unit.transaction().await.map_err(unit_db_error)?;
                    let mut conn = connection.conn();
                    query(
                        "INSERT INTO pixsim7_event_cursors (subscriber, tx_id, event_id, updated_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (subscriber) DO NOTHING",
                    )
                    .bind(plugin_id)
                    .bind(head.tx_id)
                    .bind(head.event_id)
                    .bind(unix_now())
                    .execute(&mut conn)
                    .await?;
                    read_cursor(&mut conn, plugin_id).await?.unwrap_or(head)
                };
                unit.commit().await?;
                cursor
            }
        };
        self.subscribers
            .lock()
            .expect("bus lock")
            .push(Arc::new(Subscriber {
                plugin_id: plugin_id.to_owned(),
                patterns: patterns.to_vec(),
                module,
                mode,
                reached: watch::channel(start).0,
                stop: watch::channel(false).0,
            }));
        Ok(())
    }

    /// Removes a plugin's subscription before delivery starts (a plugin that failed to load).
    /// A cluster cursor stays in the database, so the events it has not handled wait for it.
    pub fn unsubscribe(&self, plugin_id: &str) {
        self.subscribers
            .lock()
            .expect("bus lock")
            .retain(|s| s.plugin_id != plugin_id);
    }

    /// Writes an event into `unit`'s transaction: it is delivered only if the unit commits.
    /// `user_id` is the user on whose behalf it is emitted (subscribers act for them).
    pub async fn emit_in(
        &self,
        unit: &UnitOfWork,
        emitter: &str,
        user_id: Option<i64>,
        topic: &str,
        payload: &Value,
    ) -> Result<(), UnitError> {
        let mut connection = unit.transaction().await?;
        let mut conn = connection.conn();
        let tx_id = match self.database.backend {
            Backend::Sqlite => "0",
            Backend::Postgres => "pg_current_xact_id()::text::bigint",
        };
        query(&format!(
            "INSERT INTO pixsim7_events (tx_id, source, topic, payload, created_at, user_id) \
             VALUES ({tx_id}, $1, $2, $3, $4, $5)"
        ))
        .bind(emitter)
        .bind(topic)
        .bind(payload.to_string())
        .bind(unix_now())
        .bind(user_id)
        .execute(&mut conn)
        .await?;
        if self.database.backend == Backend::Postgres {
            // Sent at commit (and only then); several in one transaction fold into one.
            query("SELECT pg_notify($1, '')")
                .bind(NOTIFY_CHANNEL)
                .execute(&mut conn)
                .await?;
        }
        drop(connection);
        unit.record_emitted(EmittedEvent {
            emitter: emitter.to_owned(),
            topic: topic.to_owned(),
        });
        Ok(())
    }

    /// Emits a host event in a unit of its own (lifecycle announcements). A failure is
    /// logged: the host's own announcements never stop startup or shutdown.
    pub async fn emit_now(&self, emitter: &str, topic: &str, payload: &Value) {
        let unit = UnitOfWork::new(&self.database);
        let outcome = match self.emit_in(&unit, emitter, None, topic, payload).await {
            Ok(()) => self.settle(&unit, true).await.map(|_| ()),
            Err(UnitError::Database(error)) => Err(error),
            Err(UnitError::Ended) => unreachable!("a fresh unit has not ended"),
        };
        if let Err(error) = outcome {
            tracing::error!(topic, error = %error, "could not write the event {topic} to the outbox: {error}");
        }
    }

    /// Ends `unit`: commits it if `succeeded` (then counts and announces its events), rolls it
    /// back otherwise. A failed commit is an error: nothing the unit did was kept.
    pub async fn settle(&self, unit: &UnitOfWork, succeeded: bool) -> Result<Ending, DbError> {
        if !succeeded {
            let ending = unit.rollback().await;
            if ending == Ending::NothingWritten {
                return Ok(ending);
            }
            let discarded = unit.take_emitted();
            if !discarded.is_empty() {
                tracing::debug!(
                    target: EVENTS_TARGET,
                    count = discarded.len(),
                    "discarded the events of a unit of work that failed"
                );
            }
            return Ok(ending);
        }
        let ending = unit.commit().await?;
        if ending == Ending::NothingWritten {
            // Events are written with the unit's transaction: none without one.
            return Ok(ending);
        }
        let emitted = unit.take_emitted();
        if !emitted.is_empty() {
            for event in &emitted {
                self.count(&event.emitter, &event.topic, |c| c.emitted += 1);
            }
            self.wake.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(ending)
    }

    /// Starts one delivery task per subscriber, the PostgreSQL listener and the pruner (on
    /// the current actix runtime).
    pub fn start_delivery(self: &Arc<Self>) {
        let subscribers = self.subscribers.lock().expect("bus lock").clone();
        let mut deliveries = self.deliveries.lock().expect("bus lock");
        for subscriber in subscribers {
            if deliveries.contains_key(&subscriber.plugin_id) {
                continue;
            }
            let bus = self.clone();
            let plugin_id = subscriber.plugin_id.clone();
            let task = actix_web::rt::spawn(async move { bus.deliver(subscriber).await });
            deliveries.insert(plugin_id, task);
        }
        drop(deliveries);
        let mut background = self.background.lock().expect("bus lock");
        if background.is_empty() {
            let bus = self.clone();
            background.push(actix_web::rt::spawn(
                async move { bus.prune_forever().await },
            ));
            if self.database.backend == Backend::Postgres {
                let bus = self.clone();
                background.push(actix_web::rt::spawn(
                    async move { bus.listen_forever().await },
                ));
            }
        }
    }

    /// Stops giving a plugin new events: waits (at most `patience`) until it has handled
    /// everything committed so far, then ends its delivery task. After this its `on_event`
    /// is not called again.
    pub async fn retire(&self, plugin_id: &str, patience: Duration) {
        let subscriber = self.subscriber(plugin_id);
        let Some(subscriber) = subscriber else {
            return;
        };
        let caught_up = match self.head().await {
            Ok(head) => tokio::time::timeout(patience, self.reach(&subscriber, head))
                .await
                .is_ok(),
            Err(_) => false,
        };
        subscriber.stop.send_replace(true);
        self.unsubscribe(plugin_id);
        let delivery = self.deliveries.lock().expect("bus lock").remove(plugin_id);
        if let Some(delivery) = delivery {
            let abort = delivery.abort_handle();
            if tokio::time::timeout(patience, delivery).await.is_err() {
                // Cut off mid-event: its transaction rolls back and the event waits for the
                // next start.
                abort.abort();
            }
        }
        if !caught_up {
            tracing::warn!(
                plugin = plugin_id,
                "plugin {plugin_id} did not handle its pending events within {} s; they stay in the outbox for the next start",
                patience.as_secs()
            );
        }
    }

    /// Ends the listener and the pruner (after the plugins were retired, before the database
    /// closes): their connections are dropped while the runtime still runs.
    pub async fn stop_background(&self) {
        let tasks: Vec<_> = self
            .background
            .lock()
            .expect("bus lock")
            .drain(..)
            .collect();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }

    /// Waits until every subscriber of this instance has handled every event committed
    /// before this call.
    pub async fn flush(&self) {
        let Ok(head) = self.head().await else {
            return;
        };
        let subscribers = self.subscribers.lock().expect("bus lock").clone();
        for subscriber in subscribers {
            self.reach(&subscriber, head).await;
        }
    }

    async fn reach(&self, subscriber: &Subscriber, target: Position) {
        let mut reached = subscriber.reached.subscribe();
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
        let _ = reached.wait_for(|position| *position >= target).await;
    }

    /// The counters of one plugin, by topic.
    pub fn counters(&self, plugin_id: &str) -> BTreeMap<String, TopicCounters> {
        self.counters
            .lock()
            .expect("counters lock")
            .get(plugin_id)
            .cloned()
            .unwrap_or_default()
    }

    fn subscriber(&self, plugin_id: &str) -> Option<Arc<Subscriber>> {
        self.subscribers
            .lock()
            .expect("bus lock")
            .iter()
            .find(|s| s.plugin_id == plugin_id)
            .cloned()
    }

    /// Events in the outbox that `plugin_id` subscribes to and has not handled yet (`None`
    /// when it subscribes to nothing here).
    pub async fn lag(&self, plugin_id: &str) -> Result<Option<u64>, DbError> {
        let subscriber = self.subscriber(plugin_id);
        let Some(subscriber) = subscriber else {
            return Ok(None);
        };
        let mut connection = self.database.read_connection().await?;
        let mut conn = connection.conn();
        let position = match subscriber.mode {
            EventDelivery::Cluster => read_cursor(&mut conn, plugin_id).await?.unwrap_or_default(),
            EventDelivery::Instance => *subscriber.reached.borrow(),
        };
        let (filter, values) = topic_filter(&subscriber.patterns, 3);
        let after = after_position(self.database.backend);
        let sql = format!("SELECT COUNT(*) FROM pixsim7_events WHERE {after} AND ({filter})");
        let count: i64 = query(&sql)
            .bind(position.tx_id)
            .bind(position.event_id)
            .bind_all(values.into_iter().map(SqlValue::from))
            .fetch_one(&mut conn)
            .await?
            .try_get(0usize)?;
        Ok(Some(u64::try_from(count).unwrap_or_default()))
    }

    /// One subscriber's delivery task: hands it every event after its cursor, then waits to
    /// be woken (or for the poll interval) and looks again, until stopped.
    async fn deliver(self: Arc<Self>, subscriber: Arc<Subscriber>) {
        let mut wake = self.wake.subscribe();
        let mut stop = subscriber.stop.subscribe();
        let mut failures_in_a_row = 0u32;
        let mut backlog = Backlog::default();
        loop {
            wake.mark_unchanged();
            let step = self.deliver_next(&subscriber, &mut backlog).await;
            if step.is_err() {
                backlog = Backlog::default();
            }
            match step {
                Ok(Step::Progress) => {
                    failures_in_a_row = 0;
                    continue;
                }
                Ok(Step::Idle) => failures_in_a_row = 0,
                Err(error) => {
                    failures_in_a_row += 1;
                    // Once per outage, not once per poll.
                    if failures_in_a_row == 1 {
                        tracing::error!(
                            plugin = %subscriber.plugin_id,
                            error = %error,
                            "event delivery to plugin {} cannot read the outbox: {error}; retrying every {} ms",
                            subscriber.plugin_id,
                            self.settings.poll_interval.as_millis()
                        );
                    }
                }
            }
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                _ = wake.changed() => {}
                _ = stop.changed() => {}
                () = tokio::time::sleep(self.settings.poll_interval) => {}
            }
        }
    }

    /// Delivers the next event for `subscriber`, or skips past events it does not want.
    async fn deliver_next(
        &self,
        subscriber: &Subscriber,
        backlog: &mut Backlog,
    ) -> Result<Step, UnitError> {
        match subscriber.mode {
            EventDelivery::Cluster => self.deliver_next_in_cluster(subscriber, backlog).await,
            EventDelivery::Instance => self.deliver_next_in_instance(subscriber, backlog).await,
        }
    }

    async fn deliver_next_in_cluster(
        &self,
        subscriber: &Subscriber,
        backlog: &mut Backlog,
    ) -> Result<Step, UnitError> {
        let unit = Arc::new(UnitOfWork::begin(&self.database).await?);
        let plugin_id = subscriber.plugin_id.as_str();
        let cursor = {
            let mut connection = unit.transaction().await?;
            let mut conn = connection.conn();
            let lock = match self.database.backend {
                Backend::Postgres => " FOR UPDATE SKIP LOCKED",
                // One writer at a time already (the unit holds the writer).
                Backend::Sqlite => "",
            };
            let row = query(&format!(
                "SELECT tx_id, event_id FROM pixsim7_event_cursors WHERE subscriber = $1{lock}"
            ))
            .bind(plugin_id)
            .fetch_optional(&mut conn)
            .await?;
            let Some(row) = row else {
                // Another instance is delivering to this subscriber right now.
                drop(connection);
                unit.rollback().await;
                self.note_reached(subscriber).await;
                return Ok(Step::Idle);
            };
            let cursor = Position {
                tx_id: row.try_get(0usize)?,
                event_id: row.try_get(1usize)?,
            };
            // Read on only when the events read before are used up, or another instance
            // moved the cursor meanwhile.
            if !backlog.continues_from(cursor) {
                *backlog = self.read_backlog(&mut conn, cursor).await?;
            }
            cursor
        };
        let Some(next) = backlog.next_wanted(subscriber) else {
            unit.rollback().await;
            subscriber.reached.send_replace(cursor);
            return Ok(Step::Idle);
        };
        let event = match next {
            Next::SkipTo(position) => {
                // Nothing here for it: move its cursor past what it does not want.
                write_cursor(&mut unit.transaction().await?.conn(), plugin_id, position).await?;
                unit.commit().await?;
                backlog.moved_to(subscriber, position);
                return Ok(Step::Progress);
            }
            Next::Deliver(event) => event,
        };
        write_cursor(
            &mut unit.transaction().await?.conn(),
            plugin_id,
            event.position,
        )
        .await?;
        let outcome = unit
            .run_ambient(self.run_on_event(subscriber, &event, unit.clone()))
            .await;
        if !self
            .settle_delivery(&unit, plugin_id, &event, outcome)
            .await?
        {
            // Skip it: a new transaction moves the cursor past it, unless another instance
            // already has.
            let skip = UnitOfWork::begin(&self.database).await?;
            query(
                "UPDATE pixsim7_event_cursors SET tx_id = $2, event_id = $3, updated_at = $4 \
                     WHERE subscriber = $1 AND (tx_id, event_id) < ($2, $3)",
            )
            .bind(plugin_id)
            .bind(event.position.tx_id)
            .bind(event.position.event_id)
            .bind(unix_now())
            .execute(&mut skip.transaction().await?.conn())
            .await?;
            skip.commit().await?;
        }
        backlog.moved_to(subscriber, event.position);
        Ok(Step::Progress)
    }

    async fn deliver_next_in_instance(
        &self,
        subscriber: &Subscriber,
        backlog: &mut Backlog,
    ) -> Result<Step, UnitError> {
        let cursor = *subscriber.reached.borrow();
        if !backlog.continues_from(cursor) {
            let mut connection = self.database.read_connection().await?;
            *backlog = self.read_backlog(&mut connection.conn(), cursor).await?;
        }
        let event = match backlog.next_wanted(subscriber) {
            None => return Ok(Step::Idle),
            Some(Next::SkipTo(position)) => {
                backlog.moved_to(subscriber, position);
                return Ok(Step::Progress);
            }
            Some(Next::Deliver(event)) => event,
        };
        let unit = Arc::new(UnitOfWork::new(&self.database));
        let outcome = unit
            .run_ambient(self.run_on_event(subscriber, &event, unit.clone()))
            .await;
        self.settle_delivery(&unit, &subscriber.plugin_id, &event, outcome)
            .await?;
        backlog.moved_to(subscriber, event.position);
        Ok(Step::Progress)
    }

    /// Ends a delivery's unit by the handler's outcome, counting and logging it; whether the
    /// handler succeeded.
    pub async fn settle_delivery(
        &self,
        unit: &UnitOfWork,
        plugin_id: &str,
        event: &StoredEvent,
        outcome: Result<(), String>,
    ) -> Result<bool, DbError> {
        match outcome {
            Ok(()) => {
                self.settle(unit, true).await?;
                self.count(plugin_id, &event.topic, |c| c.delivered += 1);
                log_delivered(plugin_id, event);
                Ok(true)
            }
            Err(reason) => {
                self.settle(unit, false).await?;
                self.record_failure(plugin_id, event, &reason);
                Ok(false)
            }
        }
    }

    async fn run_on_event(
        &self,
        subscriber: &Subscriber,
        event: &StoredEvent,
        unit: Arc<UnitOfWork>,
    ) -> Result<(), String> {
        let context = event_delivery_context(event.position.event_id, event.user_id, unit);
        let hook = (subscriber.module.on_event())(
            RString::from(event.source.as_str()),
            RString::from(event.topic.as_str()),
            RVec::from(event.payload.as_bytes()),
            context,
        );
        run_hook(hook, self.hook_timeout).await
    }

    fn record_failure(&self, plugin_id: &str, event: &StoredEvent, reason: &str) {
        let topic = event.topic.as_str();
        self.count(plugin_id, topic, |c| c.failed += 1);
        tracing::error!(
            plugin = %plugin_id,
            topic,
            event_id = event.position.event_id,
            "plugin {plugin_id} failed to handle event {topic}: {reason}; its writes for this event were rolled back and the event is skipped"
        );
    }

    /// Where another instance has taken a cluster subscriber to (read without a lock).
    async fn note_reached(&self, subscriber: &Subscriber) {
        if let Ok(mut connection) = self.database.read_connection().await {
            if let Ok(Some(position)) =
                read_cursor(&mut connection.conn(), &subscriber.plugin_id).await
            {
                subscriber.reached.send_replace(position);
            }
        }
    }

    /// The events after `cursor`, as a fresh backlog.
    async fn read_backlog(
        &self,
        connection: &mut Conn<'_>,
        cursor: Position,
    ) -> Result<Backlog, DbError> {
        Ok(Backlog {
            after: cursor,
            events: self.events_after(connection, cursor).await?.into(),
        })
    }

    /// The next events after `cursor` (at most a batch), read outside any unit of work.
    pub async fn read_after(&self, cursor: Position) -> Result<Vec<StoredEvent>, DbError> {
        let mut connection = self.database.read_connection().await?;
        self.events_after(&mut connection.conn(), cursor).await
    }

    /// The next events after `cursor` that every reader will see the same way (on
    /// PostgreSQL, those whose transaction is older than every transaction still running).
    async fn events_after(
        &self,
        connection: &mut Conn<'_>,
        cursor: Position,
    ) -> Result<Vec<StoredEvent>, DbError> {
        let settled = match self.database.backend {
            Backend::Sqlite => "",
            Backend::Postgres => {
                " AND tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
            }
        };
        let (after, order) = (
            after_position(self.database.backend),
            position_order(self.database.backend),
        );
        let rows = query(&format!(
            "SELECT tx_id, id, source, topic, payload, user_id FROM pixsim7_events \
             WHERE {after}{settled} ORDER BY {order} LIMIT {BATCH}"
        ))
        .bind(cursor.tx_id)
        .bind(cursor.event_id)
        .fetch_all(connection)
        .await?;
        rows.iter().map(stored_event).collect()
    }

    /// The last event in the outbox (the start of a new subscriber, the target of a flush).
    async fn head(&self) -> Result<Position, DbError> {
        let mut connection = self.database.read_connection().await?;
        let row =
            query("SELECT tx_id, id FROM pixsim7_events ORDER BY tx_id DESC, id DESC LIMIT 1")
                .fetch_optional(&mut connection.conn())
                .await?;
        match row {
            Some(row) => Ok(Position {
                tx_id: row.try_get(0usize)?,
                event_id: row.try_get(1usize)?,
            }),
            None => Ok(Position::default()),
        }
    }

    /// Deletes events older than the retention that every cluster subscriber has handled.
    /// A cursor not moved for longer than the retention (a plugin no longer installed) does
    /// not hold events back.
    async fn prune(&self) -> Result<u64, DbError> {
        let cutoff =
            unix_now() - i64::try_from(self.settings.retention.as_secs()).unwrap_or(i64::MAX);
        let unit = UnitOfWork::new(&self.database);
        let mut connection = unit.transaction().await.map_err(unit_db_error)?;
        let done = query(
            "DELETE FROM pixsim7_events WHERE created_at <= $1 AND NOT EXISTS ( \
                SELECT 1 FROM pixsim7_event_cursors c WHERE c.updated_at >= $1 \
                AND (c.tx_id, c.event_id) < (pixsim7_events.tx_id, pixsim7_events.id))",
        )
        .bind(cutoff)
        .execute(&mut connection.conn())
        .await?;
        drop(connection);
        unit.commit().await?;
        Ok(done)
    }

    async fn prune_forever(self: Arc<Self>) {
        loop {
            match self.prune().await {
                Ok(0) => {}
                Ok(count) => {
                    tracing::debug!(target: EVENTS_TARGET, count, "pruned {count} delivered events")
                }
                Err(error) => {
                    tracing::warn!(error = %error, "pruning the event outbox failed: {error}")
                }
            }
            tokio::time::sleep(PRUNE_EVERY).await;
        }
    }

    /// Wakes this instance's subscribers whenever another instance commits events.
    async fn listen_forever(self: Arc<Self>) {
        loop {
            match sqlx::postgres::PgListener::connect(self.database.url()).await {
                Ok(mut listener) => {
                    if let Err(error) = listener.listen(NOTIFY_CHANNEL).await {
                        tracing::warn!(error = %error, "cannot LISTEN {NOTIFY_CHANNEL}: {error}; events from other instances arrive by polling");
                    } else {
                        // Anything committed while not listening is found by this wake.
                        self.wake.send_modify(|n| *n = n.wrapping_add(1));
                        while listener.recv().await.is_ok() {
                            self.wake.send_modify(|n| *n = n.wrapping_add(1));
                        }
                        tracing::warn!("the LISTEN connection for events was lost; reconnecting");
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %error, "cannot open a LISTEN connection: {error}; events from other instances arrive by polling");
                }
            }
            tokio::time::sleep(self.settings.poll_interval).await;
        }
    }

    fn count(&self, plugin_id: &str, topic: &str, change: impl FnOnce(&mut TopicCounters)) {
        let mut counters = self.counters.lock().expect("counters lock");
        let per_topic = counters.entry(plugin_id.to_owned()).or_default();
        match per_topic.get_mut(topic) {
            Some(existing) => change(existing),
            None => {
                let mut fresh = TopicCounters::default();
                change(&mut fresh);
                per_topic.insert(topic.to_owned(), fresh);
            }
        }
    }
}

/// Events read from the outbox and not handled yet: exactly the events after `after`, in
/// order (a prefix of them), so a subscriber does not read the table once per event.
#[derive(Default)]
struct Backlog {
    after: Position,
    events: std::collections::VecDeque<StoredEvent>,
}

/// What a subscriber does next with its backlog.
enum Next {
    /// Hand it this event.
    Deliver(StoredEvent),
    /// Move past events it does not want, up to this position.
    SkipTo(Position),
}

impl Backlog {
    /// Whether it still holds the events right after `cursor`.
    fn continues_from(&self, cursor: Position) -> bool {
        self.after == cursor && !self.events.is_empty()
    }

    /// Records that `subscriber` has handled everything up to `position`.
    fn moved_to(&mut self, subscriber: &Subscriber, position: Position) {
        self.after = position;
        subscriber.reached.send_replace(position);
    }

    /// Takes the next event `subscriber` wants, or, when none is left, the position past
    /// those it does not want (`None` when the backlog is empty).
    fn next_wanted(&mut self, subscriber: &Subscriber) -> Option<Next> {
        let mut skipped = None;
        while let Some(event) = self.events.pop_front() {
            if subscriber.wants(&event.topic) {
                // The cursor moves to it, past the unwanted ones before it.
                return Some(Next::Deliver(event));
            }
            skipped = Some(event.position);
        }
        skipped.map(Next::SkipTo)
    }
}

/// What one delivery step did.
enum Step {
    /// Delivered or skipped events; look again at once.
    Progress,
    /// Nothing to do (or another instance is on it).
    Idle,
}

impl Subscriber {
    fn wants(&self, topic: &str) -> bool {
        self.patterns
            .iter()
            .any(|p| plugin_api::events::matches(p, topic))
    }
}

fn log_delivered(plugin_id: &str, event: &StoredEvent) {
    let topic = event.topic.as_str();
    tracing::debug!(target: EVENTS_TARGET, plugin = %plugin_id, topic, event_id = event.position.event_id, "delivered {topic} to plugin {plugin_id}");
}

fn stored_event(row: &Row) -> Result<StoredEvent, DbError> {
    Ok(StoredEvent {
        position: Position {
            tx_id: row.try_get(0usize)?,
            event_id: row.try_get(1usize)?,
        },
        source: row.try_get(2usize)?,
        topic: row.try_get(3usize)?,
        payload: row.try_get(4usize)?,
        user_id: row.try_get(5usize)?,
    })
}

/// A unit's failure as a database error (a unit made here has not ended).
fn unit_db_error(error: UnitError) -> DbError {
    match error {
        UnitError::Database(error) => error,
        UnitError::Ended => DbError::Unavailable(error.to_string()),
    }
}

async fn read_cursor(
    connection: &mut Conn<'_>,
    subscriber: &str,
) -> Result<Option<Position>, DbError> {
    let row = query("SELECT tx_id, event_id FROM pixsim7_event_cursors WHERE subscriber = $1")
        .bind(subscriber)
        .fetch_optional(&mut *connection)
        .await?;
    row.map(|row| {
        Ok(Position {
            tx_id: row.try_get(0)?,
            event_id: row.try_get(1)?,
        })
    })
    .transpose()
}

async fn write_cursor(
    connection: &mut Conn<'_>,
    subscriber: &str,
    position: Position,
) -> Result<(), DbError> {
    query(
        "UPDATE pixsim7_event_cursors SET tx_id = $2, event_id = $3, updated_at = $4 WHERE subscriber = $1",
    )
    .bind(subscriber)
    .bind(position.tx_id)
    .bind(position.event_id)
    .bind(unix_now())
    .execute(connection)
    .await?;
    Ok(())
}

/// The SQL condition "after the position `($1, $2)`" for `backend`, as a range scan.
fn after_position(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "(tx_id, id) > ($1, $2)",
        // `tx_id` is always 0 here; `$1` is bound and unused.
        Backend::Sqlite => "id > $2",
    }
}

/// The outbox's order for `backend` (the order `after_position` scans in).
fn position_order(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "tx_id, id",
        Backend::Sqlite => "id",
    }
}

/// An SQL condition on `topic` matching any of `patterns`, with its parameters numbered from
/// `first` (`namespace:*` compares the prefix, so `_` in a name is never a wildcard).
fn topic_filter(patterns: &[String], first: usize) -> (String, Vec<String>) {
    let mut clauses = Vec::with_capacity(patterns.len());
    let mut values = Vec::with_capacity(patterns.len());
    for (offset, pattern) in patterns.iter().enumerate() {
        let n = first + offset;
        match pattern.strip_suffix('*') {
            Some(prefix) => {
                clauses.push(format!("substr(topic, 1, {}) = ${n}", prefix.len()));
                values.push(prefix.to_owned());
            }
            None => {
                clauses.push(format!("topic = ${n}"));
                values.push(pattern.clone());
            }
        }
    }
    if clauses.is_empty() {
        return ("1 = 0".to_owned(), values);
    }
    (clauses.join(" OR "), values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_filters_compare_prefixes_not_like_patterns() {
        let (sql, values) = topic_filter(&["stealth:*".into(), "app:startup".into()], 3);
        assert_eq!(sql, "substr(topic, 1, 8) = $3 OR topic = $4");
        assert_eq!(values, ["stealth:", "app:startup"]);
        assert_eq!(topic_filter(&[], 1).0, "1 = 0");
    }

    #[test]
    fn positions_order_by_transaction_then_id() {
        let p = |tx_id, event_id| Position { tx_id, event_id };
        assert!(p(5, 9) < p(6, 1));
        assert!(p(6, 1) < p(6, 2));
    }
}
