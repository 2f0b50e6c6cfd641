-- The history belongs to sessions: a real foreign key (a line goes when its session goes),
-- and lines of sessions that no longer exist are dropped. Rebuilt rather than altered, so
-- the same SQL runs on SQLite (which cannot add a foreign key to a table) and PostgreSQL.
CREATE TABLE game_dialogue__lines_v2 (
    id AUTO_ID,
    session_id BIGINT NOT NULL REFERENCES game_sessions (id) ON DELETE CASCADE,
    npc_id BIGINT NOT NULL,
    player_input TEXT,
    prompt TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
-- New ids, in the old order (the history is read newest id first); copying the old ids
-- would leave PostgreSQL's identity behind them.
INSERT INTO game_dialogue__lines_v2 (session_id, npc_id, player_input, prompt, created_at)
    SELECT l.session_id, l.npc_id, l.player_input, l.prompt, l.created_at
    FROM game_dialogue__lines AS l
    WHERE l.session_id IN (SELECT id FROM game_sessions)
    ORDER BY l.id;
DROP TABLE game_dialogue__lines;
ALTER TABLE game_dialogue__lines_v2 RENAME TO game_dialogue__lines;
CREATE INDEX game_dialogue__lines_by_session ON game_dialogue__lines (session_id, id);
