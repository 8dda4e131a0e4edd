-- Releases (Sentry's releases API and the release of ingested events), the projects each
-- release belongs to, its deploys, and "resolved in next release" on issues.

-- An organization's release versions. Created through the API or implicitly by the first
-- event naming the version.
CREATE TABLE releases (
    id              BIGSERIAL PRIMARY KEY,
    organization_id BIGINT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    version         TEXT NOT NULL CHECK (length(version) BETWEEN 1 AND 250),
    ref             TEXT,
    url             TEXT,
    -- Sentry's dateCreated: also what "newer release" means for resolved-in-next-release.
    date_added      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Set when the release is finalized (sentry-cli releases finalize).
    date_released   TIMESTAMPTZ,
    UNIQUE (organization_id, version)
);
CREATE INDEX releases_organization_date_added
    ON releases (organization_id, date_added DESC, id DESC);

-- Projects of a release, with the first and last event seen for it in that project.
CREATE TABLE release_projects (
    release_id  BIGINT NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    project_id  BIGINT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    first_event TIMESTAMPTZ,
    last_event  TIMESTAMPTZ,
    PRIMARY KEY (release_id, project_id)
);
CREATE INDEX release_projects_project ON release_projects (project_id, release_id);

-- Deploys of a release to an environment.
CREATE TABLE deploys (
    id            BIGSERIAL PRIMARY KEY,
    release_id    BIGINT NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    environment   TEXT NOT NULL CHECK (length(environment) BETWEEN 1 AND 64),
    name          TEXT,
    url           TEXT,
    date_started  TIMESTAMPTZ,
    date_finished TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX deploys_release_date_finished ON deploys (release_id, date_finished DESC, id DESC);

-- Sentry's newGroups: issues first seen in a release, counted per project.
CREATE INDEX groups_project_first_release
    ON groups (project_id, first_release) WHERE first_release IS NOT NULL;

-- Resolved in next release: the project's newest release when the issue was resolved. An event
-- reopens the issue only when it comes from a release added after that one.
ALTER TABLE groups
    ADD COLUMN resolved_in_release_id BIGINT REFERENCES releases (id) ON DELETE SET NULL;
CREATE INDEX groups_resolved_in_release
    ON groups (resolved_in_release_id) WHERE resolved_in_release_id IS NOT NULL;

-- Whether an event of `event_release` reopens an issue in state (`status`,
-- `resolved_in_release_id`) as a regression. Resolved outright: always. Resolved in next
-- release: only from a release other than the resolution's that is not known to be older
-- than it (an event without a release, or from an older release, leaves the issue resolved).
CREATE FUNCTION event_regresses(status TEXT, resolved_in_release_id BIGINT, event_release TEXT)
    RETURNS BOOLEAN
    LANGUAGE sql STABLE
AS $$
    SELECT CASE
        WHEN status <> 'resolved' THEN false
        WHEN resolved_in_release_id IS NULL THEN true
        WHEN event_release IS NULL THEN false
        ELSE NOT EXISTS (
            SELECT 1 FROM releases r
            WHERE r.id = resolved_in_release_id
              AND (r.version = event_release OR EXISTS (
                  SELECT 1 FROM releases older
                  WHERE older.organization_id = r.organization_id
                    AND older.version = event_release
                    AND older.date_added <= r.date_added)))
    END
$$;
