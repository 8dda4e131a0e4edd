-- Cross-silo tables. Every silo database gets the same schema (a MONOLITH process keeps both
-- silos in one database); a region database leaves the control tables empty and the control
-- database leaves the region tables empty.

-- Region side: organization members, and the transactional outbox of changes the control silo
-- must learn about. Rows are written in the same transaction as the change they describe and
-- deleted once the control silo acknowledged them.
CREATE TABLE organization_members (
    id              BIGSERIAL PRIMARY KEY,
    organization_id BIGINT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email           TEXT NOT NULL,
    role            TEXT NOT NULL DEFAULT 'member',
    date_added      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (organization_id, email)
);

CREATE TABLE region_outbox (
    id          BIGSERIAL PRIMARY KEY,
    -- Messages of one shard (one organization) are delivered in id order.
    shard_scope TEXT NOT NULL,
    shard_id    BIGINT NOT NULL,
    -- organization.created | organization.renamed | organization.deleted | member.added
    category    TEXT NOT NULL,
    object_id   BIGINT NOT NULL,
    payload     JSONB NOT NULL,
    date_added  TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT
);
CREATE INDEX region_outbox_shard ON region_outbox (shard_scope, shard_id, id);

-- Control side: people, the organization directory (which region owns which organization),
-- memberships as the control silo knows them, and the outbox messages already applied.
CREATE TABLE users (
    id          BIGSERIAL PRIMARY KEY,
    email       TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL DEFAULT '',
    date_joined TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE organization_mappings (
    -- Globally unique: snowflake ids carry the owning region's snowflake_id.
    organization_id BIGINT PRIMARY KEY,
    slug            TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    region_name     TEXT NOT NULL,
    -- pending (reserved, region call in flight) | active | pending_deletion | deletion_in_progress
    status          TEXT NOT NULL DEFAULT 'active'
                    CHECK (status IN ('pending', 'active', 'pending_deletion', 'deletion_in_progress')),
    date_created    TIMESTAMPTZ NOT NULL DEFAULT now(),
    date_updated    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX organization_mappings_region ON organization_mappings (region_name);

CREATE TABLE organization_member_mappings (
    organization_id BIGINT NOT NULL,
    user_id         BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            TEXT NOT NULL,
    region_name     TEXT NOT NULL,
    date_added      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, user_id)
);

CREATE TABLE outbox_receipts (
    region_name    TEXT NOT NULL,
    outbox_id      BIGINT NOT NULL,
    category       TEXT NOT NULL,
    -- applied | rejected (with the reason)
    outcome        TEXT NOT NULL,
    detail         TEXT,
    date_processed TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (region_name, outbox_id)
);
