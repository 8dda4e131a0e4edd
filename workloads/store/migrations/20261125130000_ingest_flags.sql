-- What the ingest consumers decided when they stored each event (first event of a new issue,
-- event that reopened a resolved issue), so a replayed Kafka message republishes the same
-- eventstream record instead of guessing.
ALTER TABLE events
    ADD COLUMN is_new        BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN is_regression BOOLEAN NOT NULL DEFAULT FALSE;
