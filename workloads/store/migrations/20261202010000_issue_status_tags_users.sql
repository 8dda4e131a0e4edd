-- Sentry compatibility beyond ingest: ignored issues (with snooze conditions), the event tags
-- the consumers promote (indexed for search), distinct users per issue, and first/last release.

ALTER TABLE groups DROP CONSTRAINT IF EXISTS groups_status_check;
ALTER TABLE groups
    ADD CONSTRAINT groups_status_check CHECK (status IN ('unresolved', 'resolved', 'ignored')),
    -- What the last status change asked for (Sentry's statusDetails: ignoreDuration,
    -- ignoreCount, inNextRelease, ...), returned as given.
    ADD COLUMN status_details JSONB NOT NULL DEFAULT '{}'::jsonb,
    -- An ignored issue reopens on an event after this time ...
    ADD COLUMN ignore_until   TIMESTAMPTZ,
    -- ... or once times_seen exceeds this.
    ADD COLUMN ignore_until_times_seen BIGINT,
    ADD COLUMN user_count     BIGINT NOT NULL DEFAULT 0 CHECK (user_count >= 0),
    ADD COLUMN first_release  TEXT,
    ADD COLUMN last_release   TEXT;

-- Every tag of the event as {"key": "value"} (the event's own tags plus environment, release,
-- dist, server_name, transaction and user).
ALTER TABLE events ADD COLUMN tags JSONB NOT NULL DEFAULT '{}'::jsonb;

-- Distinct users (Sentry's `user` tag value: id:..., email:..., ...) per issue.
CREATE TABLE group_users (
    group_id BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_key TEXT NOT NULL,
    PRIMARY KEY (group_id, user_key)
);
