-- The user on whose behalf an event was emitted (the caller of the request that emitted
-- it; NULL for host events and events a plugin emitted outside any request). A subscriber's
-- handler acts for that user, so it sees that user's data and no one else's.

ALTER TABLE pixsim7_events ADD COLUMN user_id BIGINT;
