-- Registered users. Usernames are stored lower-case and unique; passwords as argon2id PHC
-- strings; roles as a JSON list.
CREATE TABLE auth__users (
    id AUTO_ID,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    roles TEXT NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL
);
