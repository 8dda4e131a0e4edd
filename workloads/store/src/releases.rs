//! `releases` and `release_projects`: an organization's release versions and the projects
//! each belongs to, written by the releases API and by the ingest consumers.
//!
//! ```text
//!  API  POST releases ─► create (release upserted, projects linked) ─► 201 / 208
//!       PUT, DELETE   ─► update / delete (refused while issues reference it)
//!  consumers, once per batch ─► seen_in(events) (pure: one row per project and version)
//!                            ─► record_seen: one statement upserts the releases, links them
//!                               to their projects and moves first/last event
//!  reads ─► list / get: release + firstEvent, lastEvent (from the links), newGroups (issues
//!           whose first release it is), deployCount; projects_of and
//!           [`crate::deploys::last_of`] for the rest of a page
//! ```

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor, PgPool, Postgres, QueryBuilder};

use crate::error::{Result, StoreError};
use crate::ingest::NewEvent;
use crate::page::{Page, PageRequest, SortKey, time_to_micros};

/// Longest version accepted (Sentry's limit).
pub const MAX_VERSION_LEN: usize = 200;

/// A release with what Sentry derives from its events and deploys.
#[derive(Clone, Debug, FromRow, PartialEq, Eq)]
pub struct Release {
    pub id: i64,
    pub organization_id: i64,
    pub version: String,
    #[sqlx(rename = "ref")]
    pub git_ref: Option<String>,
    pub url: Option<String>,
    pub date_added: DateTime<Utc>,
    pub date_released: Option<DateTime<Utc>>,
    /// Earliest and latest event of the release in any of its projects.
    pub first_event: Option<DateTime<Utc>>,
    pub last_event: Option<DateTime<Utc>>,
    /// Issues first seen in this release.
    pub new_groups: i64,
    pub deploy_count: i64,
}

const SELECT: &str = "SELECT r.id, r.organization_id, r.version, r.ref, r.url, r.date_added, \
     r.date_released, seen.first_event, seen.last_event, \
     (SELECT count(*) FROM groups g JOIN release_projects l ON l.project_id = g.project_id \
        WHERE l.release_id = r.id AND g.first_release = r.version) AS new_groups, \
     (SELECT count(*) FROM deploys d WHERE d.release_id = r.id) AS deploy_count \
     FROM releases r CROSS JOIN LATERAL (SELECT min(l.first_event) AS first_event, \
        max(l.last_event) AS last_event FROM release_projects l WHERE l.release_id = r.id) seen";
/// Newest first, as Sentry lists releases by default.
const ORDER: SortKey = SortKey::time("r.date_added", "r.id", true);

/// Whether Sentry accepts `version` as a release name: not blank, `.`, `..` or `latest`, no
/// slashes, backslashes, tabs or line breaks, at most [`MAX_VERSION_LEN`] bytes.
pub fn is_valid_version(version: &str) -> bool {
    let trimmed = version.trim();
    !trimmed.is_empty()
        && version.len() <= MAX_VERSION_LEN
        && !matches!(trimmed, "." | "..")
        && !trimmed.eq_ignore_ascii_case("latest")
        && !version
            .chars()
            .any(|c| matches!(c, '\r' | '\n' | '\x0c' | '\t' | '/' | '\\'))
}

/// Which releases to list.
#[derive(Clone, Copy, Debug)]
pub struct ReleaseFilter<'a> {
    pub organization_id: i64,
    /// Only releases of this project.
    pub project_id: Option<i64>,
    /// Only versions containing this text (case-insensitive).
    pub query: Option<&'a str>,
}

/// `text` as a literal inside a `LIKE` pattern.
fn like_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub async fn list(
    db: impl PgExecutor<'_>,
    filter: &ReleaseFilter<'_>,
    page: &PageRequest,
) -> Result<Page<Release>> {
    let mut qb = QueryBuilder::<Postgres>::new(SELECT);
    qb.push(" WHERE r.organization_id = ")
        .push_bind(filter.organization_id);
    if let Some(project_id) = filter.project_id {
        qb.push(
            " AND EXISTS (SELECT 1 FROM release_projects p WHERE p.release_id = r.id \
             AND p.project_id = ",
        )
        .push_bind(project_id)
        .push(")");
    }
    if let Some(query) = filter.query.filter(|q| !q.is_empty()) {
        qb.push(" AND r.version ILIKE ")
            .push_bind(format!("%{}%", like_literal(query)));
    }
    ORDER.push_page(&mut qb, page);
    let rows = qb
        .build_query_as()
        .fetch_all(db)
        .await
        .map_err(StoreError::db("list releases", None))?;
    Ok(ORDER.finish(page, rows, |r: &Release| {
        (time_to_micros(r.date_added), r.id)
    }))
}

/// The organization's release `version`.
pub async fn get(
    db: impl PgExecutor<'_>,
    organization_id: i64,
    version: &str,
) -> Result<Option<Release>> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE r.organization_id = $1 AND r.version = $2"
    ))
    .bind(organization_id)
    .bind(version)
    .fetch_optional(db)
    .await
    .map_err(StoreError::db("get release", None))
}

/// A project of a release, as embedded in release JSON.
#[derive(Clone, Debug, FromRow, PartialEq, Eq)]
pub struct ReleaseProject {
    pub release_id: i64,
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub platform: Option<String>,
    /// Issues of this project first seen in the release.
    pub new_groups: i64,
}

/// The projects of each release in `release_ids`, by release then project id.
pub async fn projects_of(
    db: impl PgExecutor<'_>,
    release_ids: &[i64],
) -> Result<Vec<ReleaseProject>> {
    sqlx::query_as(
        "SELECT l.release_id, p.id, p.slug, p.name, p.platform, \
           (SELECT count(*) FROM groups g WHERE g.project_id = p.id \
              AND g.first_release = r.version) AS new_groups \
         FROM release_projects l JOIN projects p ON p.id = l.project_id \
         JOIN releases r ON r.id = l.release_id \
         WHERE l.release_id = ANY($1) ORDER BY l.release_id, p.id",
    )
    .bind(release_ids)
    .fetch_all(db)
    .await
    .map_err(StoreError::db("list release projects", None))
}

/// A release to create; the optional fields apply only when the version is new (as in
/// Sentry, an existing release keeps them).
#[derive(Clone, Debug, Default)]
pub struct NewRelease {
    pub version: String,
    pub git_ref: Option<String>,
    pub url: Option<String>,
    pub date_released: Option<DateTime<Utc>>,
}

/// What [`create`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Created {
    pub release_id: i64,
    /// The version did not exist in the organization.
    pub created: bool,
    /// How many of the projects were not linked to it before.
    pub linked: u64,
}

/// Create the release (or find the existing one) and link it to `project_ids`, in one
/// transaction.
pub async fn create(
    pool: &PgPool,
    organization_id: i64,
    new: &NewRelease,
    project_ids: &[i64],
) -> Result<Created> {
    const OP: &str = "create release";
    let mut tx = pool.begin().await.map_err(StoreError::db(OP, None))?;
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO releases (organization_id, version, ref, url, date_released) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (organization_id, version) DO NOTHING \
         RETURNING id",
    )
    .bind(organization_id)
    .bind(&new.version)
    .bind(&new.git_ref)
    .bind(&new.url)
    .bind(new.date_released)
    .fetch_optional(&mut *tx)
    .await
    .map_err(StoreError::db(OP, None))?;
    let (release_id, created) = match inserted {
        Some(id) => (id, true),
        None => {
            let id = sqlx::query_scalar(
                "SELECT id FROM releases WHERE organization_id = $1 AND version = $2",
            )
            .bind(organization_id)
            .bind(&new.version)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::db(OP, None))?;
            (id, false)
        }
    };
    let linked = sqlx::query(
        "INSERT INTO release_projects (release_id, project_id) \
         SELECT $1, p FROM unnest($2::bigint[]) AS p ORDER BY p ON CONFLICT DO NOTHING",
    )
    .bind(release_id)
    .bind(project_ids)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::db(OP, None))?
    .rows_affected();
    tx.commit().await.map_err(StoreError::db(OP, None))?;
    Ok(Created {
        release_id,
        created,
        linked,
    })
}

/// Changes of `PUT .../releases/{version}/`: `None` leaves a field as it is, `Some(None)`
/// clears it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReleaseUpdate {
    pub git_ref: Option<Option<String>>,
    pub url: Option<Option<String>>,
    pub date_released: Option<Option<DateTime<Utc>>>,
}

pub async fn update(db: impl PgExecutor<'_>, id: i64, update: &ReleaseUpdate) -> Result<()> {
    let mut qb = QueryBuilder::<Postgres>::new("UPDATE releases SET id = id");
    if let Some(git_ref) = &update.git_ref {
        qb.push(", ref = ").push_bind(git_ref.clone());
    }
    if let Some(url) = &update.url {
        qb.push(", url = ").push_bind(url.clone());
    }
    if let Some(date_released) = update.date_released {
        qb.push(", date_released = ").push_bind(date_released);
    }
    qb.push(" WHERE id = ").push_bind(id);
    qb.build()
        .execute(db)
        .await
        .map_err(StoreError::db("update release", None))?;
    Ok(())
}

/// What [`delete`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    /// Issues were first seen in the release or are resolved in its successor; kept.
    Referenced,
}

/// Delete the release (its links and deploys go with it) unless issues refer to it.
pub async fn delete(db: impl PgExecutor<'_>, release: &Release) -> Result<Deleted> {
    let deleted: Option<i64> = sqlx::query_scalar(
        "DELETE FROM releases r WHERE r.id = $1 \
           AND NOT EXISTS (SELECT 1 FROM groups g JOIN projects p ON p.id = g.project_id \
             WHERE p.organization_id = r.organization_id AND g.first_release = r.version) \
           AND NOT EXISTS (SELECT 1 FROM groups g WHERE g.resolved_in_release_id = r.id) \
         RETURNING r.id",
    )
    .bind(release.id)
    .fetch_optional(db)
    .await
    .map_err(StoreError::db("delete release", None))?;
    Ok(match deleted {
        Some(_) => Deleted::Deleted,
        None => Deleted::Referenced,
    })
}

/// A release named by events of one project, with the time of its first and last event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenRelease {
    pub project_id: i64,
    pub version: String,
    pub first_event: DateTime<Utc>,
    pub last_event: DateTime<Utc>,
}

/// The releases named by `events`, one per (project, version), sorted; versions Sentry would
/// not accept as release names are left out. Pure.
pub fn seen_in<'a>(events: impl IntoIterator<Item = &'a NewEvent>) -> Vec<SeenRelease> {
    // (project, version) -> (first, last) event time.
    type Span = (DateTime<Utc>, DateTime<Utc>);
    let mut seen: BTreeMap<(i64, &str), Span> = BTreeMap::new();
    for event in events {
        let Some(version) = event.release.as_deref().filter(|v| is_valid_version(v)) else {
            continue;
        };
        let at = event.timestamp;
        seen.entry((event.project_id, version))
            .and_modify(|(first, last)| {
                *first = (*first).min(at);
                *last = (*last).max(at);
            })
            .or_insert((at, at));
    }
    seen.into_iter()
        .map(
            |((project_id, version), (first_event, last_event))| SeenRelease {
                project_id,
                version: version.to_owned(),
                first_event,
                last_event,
            },
        )
        .collect()
}

/// Record releases seen by the consumers in one statement: create the missing ones (as
/// Sentry does for an event's release), link them to their projects and widen each link's
/// first/last event. Links whose times do not change are not written. Unknown projects are
/// skipped.
///
/// A release created by a concurrent batch after this statement started is not linked by
/// it; the next event of that project and release links it.
pub async fn record_seen(db: impl PgExecutor<'_>, seen: &[SeenRelease]) -> Result<()> {
    if seen.is_empty() {
        return Ok(());
    }
    let projects: Vec<i64> = seen.iter().map(|s| s.project_id).collect();
    let versions: Vec<&str> = seen.iter().map(|s| s.version.as_str()).collect();
    let firsts: Vec<DateTime<Utc>> = seen.iter().map(|s| s.first_event).collect();
    let lasts: Vec<DateTime<Utc>> = seen.iter().map(|s| s.last_event).collect();
    sqlx::query(
        "WITH seen AS ( \
           SELECT s.project_id, p.organization_id, s.version, s.first_event, s.last_event \
           FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::timestamptz[]) \
             AS s (project_id, version, first_event, last_event) \
           JOIN projects p ON p.id = s.project_id), \
         created AS ( \
           INSERT INTO releases (organization_id, version) \
           SELECT DISTINCT organization_id, version FROM seen ORDER BY organization_id, version \
           ON CONFLICT (organization_id, version) DO NOTHING \
           RETURNING id, organization_id, version), \
         known AS ( \
           SELECT id, organization_id, version FROM created \
           UNION ALL \
           SELECT r.id, r.organization_id, r.version FROM releases r \
             JOIN (SELECT DISTINCT organization_id, version FROM seen) v \
             USING (organization_id, version)) \
         INSERT INTO release_projects AS l (release_id, project_id, first_event, last_event) \
         SELECT DISTINCT ON (k.id, s.project_id) k.id, s.project_id, s.first_event, s.last_event \
         FROM seen s JOIN known k USING (organization_id, version) \
         ORDER BY k.id, s.project_id \
         ON CONFLICT (release_id, project_id) DO UPDATE SET \
           first_event = LEAST(l.first_event, EXCLUDED.first_event), \
           last_event = GREATEST(l.last_event, EXCLUDED.last_event) \
         WHERE l.first_event IS DISTINCT FROM LEAST(l.first_event, EXCLUDED.first_event) \
            OR l.last_event IS DISTINCT FROM GREATEST(l.last_event, EXCLUDED.last_event)",
    )
    .bind(projects)
    .bind(versions)
    .bind(firsts)
    .bind(lasts)
    .execute(db)
    .await
    .map_err(StoreError::db("record releases of events", None))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(project_id: i64, release: Option<&str>, at: i64) -> NewEvent {
        let t = DateTime::from_timestamp(at, 0).expect("time");
        NewEvent {
            project_id,
            event_id: uuid::Uuid::new_v4(),
            timestamp: t,
            received: t,
            title: String::new(),
            message: String::new(),
            culprit: String::new(),
            platform: "other".into(),
            level: "error".into(),
            environment: None,
            release: release.map(str::to_owned),
            data: serde_json::json!({}),
            fingerprint: "f".into(),
            group_type: "default".into(),
            metadata: serde_json::json!({}),
            tags: Vec::new(),
            user: None,
        }
    }

    #[test]
    fn versions_sentry_accepts() {
        for ok in ["1.0", "app@1.0.0+build.7", "a b", "0123abcd"] {
            assert!(is_valid_version(ok), "{ok}");
        }
        let long = "x".repeat(MAX_VERSION_LEN + 1);
        for bad in [
            "", "  ", ".", "..", "latest", "LATEST", "a/b", "a\\b", "a\nb", "a\tb",
        ] {
            assert!(!is_valid_version(bad), "{bad:?}");
        }
        assert!(!is_valid_version(&long));
    }

    #[test]
    fn seen_in_keeps_one_row_per_project_and_version_with_first_and_last() {
        let events = [
            event(1, Some("1.0"), 30),
            event(1, Some("1.0"), 10),
            event(1, Some("1.0"), 20),
            event(2, Some("1.0"), 5),
            event(1, None, 1),
            event(1, Some("latest"), 1),
        ];
        let seen = seen_in(&events);
        let at = |s| DateTime::from_timestamp(s, 0).expect("time");
        assert_eq!(
            seen,
            vec![
                SeenRelease {
                    project_id: 1,
                    version: "1.0".into(),
                    first_event: at(10),
                    last_event: at(30),
                },
                SeenRelease {
                    project_id: 2,
                    version: "1.0".into(),
                    first_event: at(5),
                    last_event: at(5),
                },
            ]
        );
    }

    #[test]
    fn like_patterns_are_literal() {
        assert_eq!(like_literal("1.0_%\\"), "1.0\\_\\%\\\\");
    }
}
