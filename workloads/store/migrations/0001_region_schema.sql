-- Region-silo schema: organizations, projects, keys, API tokens, issues (groups), events,
-- alert rules and their notifications. Field names follow Sentry's vocabulary.

CREATE TABLE organizations (
    id           BIGSERIAL PRIMARY KEY,
    slug         TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    -- active | pending_deletion | deletion_in_progress
    status       TEXT NOT NULL DEFAULT 'active'
                 CHECK (status IN ('active', 'pending_deletion', 'deletion_in_progress')),
    date_created TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE projects (
    id              BIGSERIAL PRIMARY KEY,
    organization_id BIGINT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    slug            TEXT NOT NULL,
    name            TEXT NOT NULL,
    platform        TEXT,
    -- Last issue short id handed out in this project (see groups_assign_short_id).
    group_counter   BIGINT NOT NULL DEFAULT 0,
    date_created    TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (organization_id, slug)
);

CREATE TABLE project_keys (
    id                BIGSERIAL PRIMARY KEY,
    project_id        BIGINT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    public_key        TEXT NOT NULL UNIQUE,
    secret_key        TEXT NOT NULL,
    label             TEXT NOT NULL DEFAULT 'Default',
    is_active         BOOLEAN NOT NULL DEFAULT TRUE,
    -- Both set or both null: at most rate_limit_count events per rate_limit_window seconds.
    rate_limit_count  INTEGER CHECK (rate_limit_count IS NULL OR rate_limit_count >= 0),
    rate_limit_window INTEGER CHECK (rate_limit_window IS NULL OR rate_limit_window > 0),
    date_created      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((rate_limit_count IS NULL) = (rate_limit_window IS NULL))
);
CREATE INDEX project_keys_project ON project_keys (project_id, id);

-- Bearer tokens for the API; only the SHA-256 of the token is stored.
CREATE TABLE api_tokens (
    id              BIGSERIAL PRIMARY KEY,
    token_hash      TEXT NOT NULL UNIQUE,
    token_last_four TEXT NOT NULL,
    label           TEXT NOT NULL DEFAULT '',
    scopes          TEXT[] NOT NULL DEFAULT '{}',
    expires_at      TIMESTAMPTZ,
    date_created    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Issues. `fingerprint` is the stable hash of the grouping fingerprint.
CREATE TABLE groups (
    id             BIGSERIAL PRIMARY KEY,
    project_id     BIGINT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    fingerprint    TEXT NOT NULL,
    short_id       BIGINT NOT NULL,
    title          TEXT NOT NULL,
    culprit        TEXT NOT NULL DEFAULT '',
    level          TEXT NOT NULL DEFAULT 'error',
    -- error | default (message events)
    type           TEXT NOT NULL DEFAULT 'error',
    status         TEXT NOT NULL DEFAULT 'unresolved'
                   CHECK (status IN ('unresolved', 'resolved')),
    resolved_at    TIMESTAMPTZ,
    first_seen     TIMESTAMPTZ NOT NULL,
    last_seen      TIMESTAMPTZ NOT NULL,
    times_seen     BIGINT NOT NULL DEFAULT 1 CHECK (times_seen >= 0),
    first_event_id UUID NOT NULL,
    last_event_id  UUID NOT NULL,
    metadata       JSONB NOT NULL DEFAULT '{}'::jsonb,
    UNIQUE (project_id, fingerprint),
    UNIQUE (project_id, short_id)
);
CREATE INDEX groups_project_last_seen ON groups (project_id, last_seen DESC, id DESC);
CREATE INDEX groups_project_first_seen ON groups (project_id, first_seen DESC, id DESC);
CREATE INDEX groups_project_times_seen ON groups (project_id, times_seen DESC, id DESC);

-- Inserting a group without a short_id takes the next number of its project. The project row
-- stays locked until the inserting transaction ends, so numbers are unique and increasing.
-- When the fingerprint already has a group (an `INSERT ... ON CONFLICT DO UPDATE` that will
-- take the update path), the existing number is reused and the project row is not touched.
CREATE FUNCTION groups_assign_short_id() RETURNS trigger AS $$
BEGIN
    IF NEW.short_id IS NULL THEN
        SELECT short_id INTO NEW.short_id FROM groups
         WHERE project_id = NEW.project_id AND fingerprint = NEW.fingerprint;
    END IF;
    IF NEW.short_id IS NULL THEN
        UPDATE projects SET group_counter = group_counter + 1
         WHERE id = NEW.project_id
        RETURNING group_counter INTO NEW.short_id;
        IF NEW.short_id IS NULL THEN
            RAISE EXCEPTION 'project % does not exist', NEW.project_id
                USING ERRCODE = 'foreign_key_violation';
        END IF;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER groups_short_id BEFORE INSERT ON groups
    FOR EACH ROW EXECUTE FUNCTION groups_assign_short_id();

-- Stored events. (project_id, event_id) is unique so replayed messages are no-ops.
CREATE TABLE events (
    id          BIGSERIAL PRIMARY KEY,
    project_id  BIGINT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    event_id    UUID NOT NULL,
    group_id    BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    "timestamp" TIMESTAMPTZ NOT NULL,
    received    TIMESTAMPTZ NOT NULL DEFAULT now(),
    title       TEXT NOT NULL DEFAULT '',
    message     TEXT NOT NULL DEFAULT '',
    culprit     TEXT NOT NULL DEFAULT '',
    platform    TEXT NOT NULL DEFAULT 'other',
    level       TEXT NOT NULL DEFAULT 'error',
    environment TEXT,
    release     TEXT,
    data        JSONB NOT NULL DEFAULT '{}'::jsonb,
    UNIQUE (project_id, event_id)
);
CREATE INDEX events_group_timestamp ON events (group_id, "timestamp" DESC, id DESC);
CREATE INDEX events_project_timestamp ON events (project_id, "timestamp" DESC, id DESC);

CREATE TABLE alert_rules (
    id               BIGSERIAL PRIMARY KEY,
    project_id       BIGINT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    -- new_issue: a group is first seen; regression: a resolved group sees a new event;
    -- frequency: more than `threshold` events of one group within `interval_seconds`.
    kind             TEXT NOT NULL CHECK (kind IN ('new_issue', 'regression', 'frequency')),
    threshold        BIGINT CHECK (threshold IS NULL OR threshold > 0),
    interval_seconds BIGINT CHECK (interval_seconds IS NULL OR interval_seconds > 0),
    webhook_url      TEXT NOT NULL,
    enabled          BOOLEAN NOT NULL DEFAULT TRUE,
    date_created     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (kind <> 'frequency' OR (threshold IS NOT NULL AND interval_seconds IS NOT NULL))
);
CREATE INDEX alert_rules_project ON alert_rules (project_id, id);

-- One row per (rule, group, event) that fired; unique so replays do not notify twice.
CREATE TABLE notifications (
    id             BIGSERIAL PRIMARY KEY,
    rule_id        BIGINT NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    group_id       BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    event_id       UUID NOT NULL,
    -- pending | delivered | failed
    status         TEXT NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    date_created   TIMESTAMPTZ NOT NULL DEFAULT now(),
    date_delivered TIMESTAMPTZ,
    UNIQUE (rule_id, group_id, event_id)
);
CREATE INDEX notifications_pending ON notifications (status, id) WHERE status = 'pending';
CREATE INDEX notifications_rule ON notifications (rule_id, id DESC);
