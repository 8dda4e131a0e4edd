//! The region silo's API, shaped like Sentry's `/api/0/...` (same paths, camelCase JSON).
//!
//! One module per resource; [`routes`] lists every endpoint with its silos and access.

pub mod deploys;
pub mod events;
pub mod index;
pub mod issue_status;
pub mod issues;
pub mod issues_bulk;
pub mod keys;
pub mod organizations;
pub mod projects;
pub mod relay;
pub mod releases;
pub mod rules;
pub mod search;

use axum::http::Method;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use silo_store::organizations::Organization;
use silo_store::projects::Project;

use crate::auth::Access;
use crate::error::{ApiResult, AppError};
use crate::silo::{RouteDef, Silos};
use crate::state::AppState;

/// Every region-silo endpoint (the organization list and create live in
/// [`crate::control::routes`]).
pub fn routes() -> Vec<RouteDef> {
    use Method as M;
    use Silos::Region as R;
    let s = Access::Scope;
    vec![
        // The API index (`sentry-cli info`): every silo answers it from its own tokens.
        RouteDef::new(M::GET, INDEX, Silos::All, Access::Public, index::index),
        // Organizations (`GET`/`POST /api/0/organizations/` are in `control::routes`: they
        // answer from the region or the directory depending on the silo).
        RouteDef::new(M::GET, ORG, R, s("org:read"), organizations::detail),
        // Projects.
        RouteDef::new(M::GET, ORG_PROJECTS, R, s("project:read"), projects::list),
        RouteDef::new(
            M::POST,
            ORG_PROJECTS,
            R,
            s("project:write"),
            projects::create,
        ),
        RouteDef::new(
            M::POST,
            TEAM_PROJECTS,
            R,
            s("project:write"),
            projects::create_for_team,
        ),
        RouteDef::new(M::GET, PROJECT, R, s("project:read"), projects::detail),
        // Client keys.
        RouteDef::new(M::GET, KEYS, R, s("project:read"), keys::list),
        RouteDef::new(M::POST, KEYS, R, s("project:write"), keys::create),
        RouteDef::new(M::GET, KEY, R, s("project:read"), keys::detail),
        RouteDef::new(M::PUT, KEY, R, s("project:write"), keys::update),
        RouteDef::new(M::DELETE, KEY, R, s("project:admin"), keys::delete),
        // Issues.
        RouteDef::new(
            M::GET,
            PROJECT_ISSUES,
            R,
            s("event:read"),
            issues::list_for_project,
        ),
        RouteDef::new(
            M::PUT,
            PROJECT_ISSUES,
            R,
            s("event:write"),
            issues_bulk::update_for_project,
        ),
        RouteDef::new(
            M::DELETE,
            PROJECT_ISSUES,
            R,
            s("event:admin"),
            issues_bulk::delete_for_project,
        ),
        RouteDef::new(M::GET, ORG_ISSUES, R, s("event:read"), issues::list_for_org),
        RouteDef::new(
            M::PUT,
            ORG_ISSUES,
            R,
            s("event:write"),
            issues_bulk::update_for_org,
        ),
        RouteDef::new(
            M::DELETE,
            ORG_ISSUES,
            R,
            s("event:admin"),
            issues_bulk::delete_for_org,
        ),
        RouteDef::new(M::GET, ORG_ISSUE, R, s("event:read"), issues::detail_in_org),
        RouteDef::new(M::GET, ISSUE, R, s("event:read"), issues::detail),
        RouteDef::new(M::PUT, ISSUE, R, s("event:write"), issues::update),
        // Events.
        RouteDef::new(
            M::GET,
            ISSUE_EVENTS,
            R,
            s("event:read"),
            events::list_for_issue,
        ),
        RouteDef::new(
            M::GET,
            ISSUE_EVENT,
            R,
            s("event:read"),
            events::detail_for_issue,
        ),
        RouteDef::new(
            M::GET,
            PROJECT_EVENTS,
            R,
            s("event:read"),
            events::list_for_project,
        ),
        RouteDef::new(M::GET, PROJECT_EVENT, R, s("event:read"), events::detail),
        // Alert rules.
        RouteDef::new(M::GET, RULES, R, s("alerts:read"), rules::list),
        RouteDef::new(M::POST, RULES, R, s("alerts:write"), rules::create),
        RouteDef::new(M::GET, RULE, R, s("alerts:read"), rules::detail),
        RouteDef::new(M::DELETE, RULE, R, s("alerts:write"), rules::delete),
        RouteDef::new(
            M::GET,
            RULE_NOTIFICATIONS,
            R,
            s("alerts:read"),
            rules::notifications,
        ),
        // Releases, deploys, commits and repositories.
        RouteDef::new(
            M::GET,
            ORG_RELEASES,
            R,
            s("project:read"),
            releases::list_for_org,
        ),
        RouteDef::new(
            M::POST,
            ORG_RELEASES,
            R,
            s("project:write"),
            releases::create_for_org,
        ),
        RouteDef::new(M::GET, RELEASE, R, s("project:read"), releases::detail),
        RouteDef::new(M::PUT, RELEASE, R, s("project:write"), releases::update),
        RouteDef::new(M::DELETE, RELEASE, R, s("project:admin"), releases::delete),
        RouteDef::new(
            M::GET,
            PROJECT_RELEASES,
            R,
            s("project:read"),
            releases::list_for_project,
        ),
        RouteDef::new(
            M::POST,
            PROJECT_RELEASES,
            R,
            s("project:write"),
            releases::create_for_project,
        ),
        RouteDef::new(M::GET, DEPLOYS, R, s("project:read"), deploys::list),
        RouteDef::new(M::POST, DEPLOYS, R, s("project:write"), deploys::create),
        RouteDef::new(M::GET, COMMITS, R, s("project:read"), deploys::commits),
        RouteDef::new(M::GET, REPOS, R, s("org:read"), deploys::repos),
        // Relay.
        RouteDef::new(
            M::POST,
            silo_protocol::project_config::PATH,
            R,
            Access::Relay,
            relay::project_configs,
        ),
    ]
}

const INDEX: &str = "/api/0/";
const ORG: &str = "/api/0/organizations/{organization_id_or_slug}/";
const ORG_PROJECTS: &str = "/api/0/organizations/{organization_id_or_slug}/projects/";
const TEAM_PROJECTS: &str = "/api/0/teams/{organization_id_or_slug}/{team_id_or_slug}/projects/";
const PROJECT: &str = "/api/0/projects/{organization_id_or_slug}/{project_id_or_slug}/";
const KEYS: &str = "/api/0/projects/{organization_id_or_slug}/{project_id_or_slug}/keys/";
const KEY: &str = "/api/0/projects/{organization_id_or_slug}/{project_id_or_slug}/keys/{key_id}/";
const PROJECT_ISSUES: &str =
    "/api/0/projects/{organization_id_or_slug}/{project_id_or_slug}/issues/";
const ORG_ISSUES: &str = "/api/0/organizations/{organization_id_or_slug}/issues/";
const ORG_ISSUE: &str = "/api/0/organizations/{organization_id_or_slug}/issues/{issue_id}/";
const ISSUE: &str = "/api/0/issues/{issue_id}/";
const ISSUE_EVENTS: &str = "/api/0/issues/{issue_id}/events/";
const ISSUE_EVENT: &str = "/api/0/issues/{issue_id}/events/{event_id}/";
const PROJECT_EVENTS: &str =
    "/api/0/projects/{organization_id_or_slug}/{project_id_or_slug}/events/";
const PROJECT_EVENT: &str =
    "/api/0/projects/{organization_id_or_slug}/{project_id_or_slug}/events/{event_id}/";
const ORG_RELEASES: &str = "/api/0/organizations/{organization_id_or_slug}/releases/";
const RELEASE: &str = "/api/0/organizations/{organization_id_or_slug}/releases/{version}/";
const PROJECT_RELEASES: &str =
    "/api/0/projects/{organization_id_or_slug}/{project_id_or_slug}/releases/";
const DEPLOYS: &str = "/api/0/organizations/{organization_id_or_slug}/releases/{version}/deploys/";
const COMMITS: &str = "/api/0/organizations/{organization_id_or_slug}/releases/{version}/commits/";
const REPOS: &str = "/api/0/organizations/{organization_id_or_slug}/repos/";
const RULES: &str = "/api/0/projects/{organization_id_or_slug}/{project_id_or_slug}/rules/";
const RULE: &str =
    "/api/0/projects/{organization_id_or_slug}/{project_id_or_slug}/rules/{rule_id}/";
const RULE_NOTIFICATIONS: &str =
    "/api/0/projects/{organization_id_or_slug}/{project_id_or_slug}/rules/{rule_id}/notifications/";

/// Path of org-scoped routes.
#[derive(Debug, Deserialize)]
pub struct OrgPath {
    pub organization_id_or_slug: String,
}

/// Path of project-scoped routes.
#[derive(Debug, Deserialize)]
pub struct ProjectPath {
    pub organization_id_or_slug: String,
    pub project_id_or_slug: String,
}

/// An RFC 3339 UTC timestamp with microseconds, as Sentry renders dates.
pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The organization named by slug (or numeric id), or 404.
pub async fn organization(state: &AppState, id_or_slug: &str) -> ApiResult<Organization> {
    let found = match id_or_slug.parse::<i64>() {
        Ok(id) => silo_store::organizations::get(&state.pool, id).await?,
        Err(_) => silo_store::organizations::get_by_slug(&state.pool, id_or_slug).await?,
    };
    found.ok_or(AppError::NotFound)
}

/// The project named by org and project slug (or ids), or 404.
pub async fn project(state: &AppState, path: &ProjectPath) -> ApiResult<(Organization, Project)> {
    let org = organization(state, &path.organization_id_or_slug).await?;
    let found = match path.project_id_or_slug.parse::<i64>() {
        Ok(id) => silo_store::projects::get(&state.pool, id)
            .await?
            .filter(|p| p.organization_id == org.id),
        Err(_) => {
            silo_store::projects::get_by_slug(&state.pool, org.id, &path.project_id_or_slug).await?
        }
    };
    found.map(|p| (org, p)).ok_or(AppError::NotFound)
}

/// Sentry's slug rule: 1-50 of `a-z 0-9 - _`, not only digits.
pub fn validate_slug(kind: &str, slug: &str) -> ApiResult<()> {
    let ok_chars = slug
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if slug.is_empty() || slug.len() > 50 || !ok_chars || slug.chars().all(|c| c.is_ascii_digit()) {
        return Err(AppError::BadRequest(format!(
            "Invalid {kind} slug {slug:?}: use 1 to 50 lowercase letters, digits, hyphens or \
             underscores, not only digits."
        )));
    }
    Ok(())
}

/// A slug derived from a display name (`"My Org!"` -> `"my-org"`).
pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() || c == '_' {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    slug.chars()
        .take(50)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned()
}

/// A required non-blank string field of a request body.
pub fn required(field: &str, value: Option<&str>) -> ApiResult<String> {
    match value.map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v.to_owned()),
        _ => Err(AppError::BadRequest(format!(
            "{field}: This field is required."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slugify("My Org!"), "my-org");
        assert_eq!(slugify("  a  b "), "a-b");
        assert!(validate_slug("organization", "my-org").is_ok());
        assert!(validate_slug("organization", "123").is_err());
        assert!(validate_slug("organization", "Bad").is_err());
        assert!(validate_slug("organization", "").is_err());
    }
}
