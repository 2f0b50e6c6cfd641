-- The game state several plugins share: worlds, sessions, NPCs (with expressions and
-- schedules) and locations (with hotspots). JSON columns are TEXT holding a JSON object.

CREATE TABLE game_worlds (
    id AUTO_ID,
    owner_user_id BIGINT,
    name TEXT NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}',
    world_time DOUBLE PRECISION NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE game_sessions (
    id AUTO_ID,
    user_id BIGINT,
    world_id BIGINT REFERENCES game_worlds (id) ON DELETE SET NULL,
    scene_id BIGINT,
    current_node_id BIGINT,
    flags TEXT NOT NULL DEFAULT '{}',
    relationships TEXT NOT NULL DEFAULT '{}',
    world_time DOUBLE PRECISION NOT NULL DEFAULT 0,
    version BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE game_locations (
    id AUTO_ID,
    name TEXT NOT NULL,
    asset_id BIGINT,
    default_spawn TEXT,
    meta TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE game_hotspots (
    id AUTO_ID,
    location_id BIGINT NOT NULL REFERENCES game_locations (id) ON DELETE CASCADE,
    object_name TEXT NOT NULL,
    hotspot_id TEXT NOT NULL,
    linked_scene_id BIGINT,
    meta TEXT
);
CREATE INDEX game_hotspots_location ON game_hotspots (location_id);

CREATE TABLE game_npcs (
    id AUTO_ID,
    name TEXT NOT NULL,
    world_id BIGINT REFERENCES game_worlds (id) ON DELETE SET NULL,
    home_location_id BIGINT REFERENCES game_locations (id) ON DELETE SET NULL,
    personality TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE game_npc_expressions (
    id AUTO_ID,
    npc_id BIGINT NOT NULL REFERENCES game_npcs (id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    asset_id BIGINT NOT NULL,
    crop TEXT,
    meta TEXT
);
CREATE INDEX game_npc_expressions_npc ON game_npc_expressions (npc_id);

CREATE TABLE game_npc_schedules (
    id AUTO_ID,
    npc_id BIGINT NOT NULL REFERENCES game_npcs (id) ON DELETE CASCADE,
    day_of_week BIGINT NOT NULL,
    start_time DOUBLE PRECISION NOT NULL,
    end_time DOUBLE PRECISION NOT NULL,
    location_id BIGINT NOT NULL REFERENCES game_locations (id) ON DELETE CASCADE
);
CREATE INDEX game_npc_schedules_day ON game_npc_schedules (day_of_week, npc_id);
