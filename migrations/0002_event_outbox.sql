-- The event outbox: every event is written in the transaction of the request (or event
-- delivery, or hook) that emitted it, and delivered from here. `tx_id` orders events by the
-- transaction that wrote them (PostgreSQL's pg_current_xact_id; 0 on SQLite, whose writers
-- commit one at a time, so `id` order is commit order).

CREATE TABLE pixsim7_events (
    id AUTO_ID,
    tx_id BIGINT NOT NULL DEFAULT 0,
    source TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX pixsim7_events_order ON pixsim7_events (tx_id, id);

-- One row per subscriber delivered once per cluster: the last event it has handled. It is
-- updated in the same transaction as the subscriber's own writes, and locked while an
-- instance delivers to it, so each event is applied once, in order, by one instance.
CREATE TABLE pixsim7_event_cursors (
    subscriber TEXT PRIMARY KEY,
    tx_id BIGINT NOT NULL,
    event_id BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
