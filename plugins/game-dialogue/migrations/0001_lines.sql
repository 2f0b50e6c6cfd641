-- Every prompt game-dialogue built, for the session's dialogue history.
CREATE TABLE game_dialogue__lines (
    id AUTO_ID,
    session_id BIGINT NOT NULL,
    npc_id BIGINT NOT NULL,
    player_input TEXT,
    prompt TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX game_dialogue__lines_session ON game_dialogue__lines (session_id, id);
