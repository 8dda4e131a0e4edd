//! Issues (groups): project and organization lists, detail, status update.

use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use silo_store::groups::{self, Group, GroupFilter, GroupScope, GroupSort, GroupStatus};

use super::{OrgPath, ProjectPath, iso};
use crate::error::{ApiResult, AppError};
use crate::extract::{Json, Path};
use crate::pagination::{Paginated, RequestUrl};
use crate::state::AppState;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IssueJson {
    pub id: String,
    pub short_id: String,
    pub title: String,
    pub culprit: String,
    pub permalink: String,
    pub level: String,
    pub status: String,
    pub status_details: serde_json::Value,
    #[serde(rename = "type")]
    pub kind: String,
    pub metadata: serde_json::Value,
    /// Number of events, as a string (Sentry's shape).
    pub count: String,
    pub user_count: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub project: IssueProject,
    pub num_comments: u64,
    pub is_bookmarked: bool,
    pub is_public: bool,
    pub has_seen: bool,
    pub assigned_to: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct IssueProject {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub platform: Option<String>,
}

impl IssueJson {
    pub fn new(url: &RequestUrl, g: Group) -> Self {
        let permalink = url.absolute(&format!(
            "/organizations/{}/issues/{}/",
            g.organization_slug, g.id
        ));
        let status_details = match g.resolved_at {
            Some(at) if g.status == "resolved" => serde_json::json!({ "resolvedAt": iso(at) }),
            _ => serde_json::json!({}),
        };
        IssueJson {
            id: g.id.to_string(),
            short_id: format!("{}-{}", g.project_slug.to_uppercase(), short_id(g.short_id)),
            title: g.title,
            culprit: g.culprit,
            permalink,
            level: g.level,
            status: g.status,
            status_details,
            kind: g.kind,
            metadata: g.metadata,
            count: g.times_seen.to_string(),
            user_count: 0,
            first_seen: iso(g.first_seen),
            last_seen: iso(g.last_seen),
            project: IssueProject {
                id: g.project_id.to_string(),
                name: g.project_name,
                slug: g.project_slug,
                platform: g.project_platform,
            },
            num_comments: 0,
            is_bookmarked: false,
            is_public: false,
            has_seen: false,
            assigned_to: None,
        }
    }
}

/// Sentry renders short ids in base 36 (`PROJ-1A`).
pub fn short_id(n: i64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut n = n.unsigned_abs();
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// `query` (default `is:unresolved`), `sort` and `project` parameters.
fn filter_and_sort(url: &RequestUrl) -> ApiResult<(GroupFilter, GroupSort)> {
    let mut filter = GroupFilter::default();
    let query = url.param("query").unwrap_or("is:unresolved");
    let mut text = Vec::new();
    for token in query.split_whitespace() {
        match token.split_once(':') {
            Some(("is", "unresolved")) => filter.status = Some(GroupStatus::Unresolved),
            Some(("is", "resolved")) => filter.status = Some(GroupStatus::Resolved),
            Some((key, value)) => {
                return Err(AppError::BadRequest(format!(
                    "Unsupported search term {key}:{value}. Supported: is:unresolved, \
                     is:resolved and free text."
                )));
            }
            None => text.push(token),
        }
    }
    if !text.is_empty() {
        filter.text = Some(text.join(" "));
    }
    for project in url.params("project") {
        let id = project.parse::<i64>().map_err(|_| {
            AppError::BadRequest(format!(
                "Invalid project {project:?}: expected a project id."
            ))
        })?;
        if id != -1 {
            filter.project_ids.push(id);
        }
    }
    let sort = match url.param("sort").unwrap_or("date") {
        "date" | "" => GroupSort::LastSeen,
        "new" => GroupSort::FirstSeen,
        "freq" => GroupSort::TimesSeen,
        other => {
            return Err(AppError::BadRequest(format!(
                "Invalid sort {other:?}: expected date, new or freq."
            )));
        }
    };
    Ok((filter, sort))
}

pub async fn list_for_project(
    State(state): State<AppState>,
    Path(path): Path<ProjectPath>,
    url: RequestUrl,
) -> ApiResult<impl IntoResponse> {
    let (_, project) = super::project(&state, &path).await?;
    let (filter, sort) = filter_and_sort(&url)?;
    let page = groups::list(
        &state.pool,
        GroupScope::Project(project.id),
        &filter,
        sort,
        &url.page_request()?,
    )
    .await?;
    Ok(Paginated::new(&url, page, |g| IssueJson::new(&url, g)))
}

pub async fn list_for_org(
    State(state): State<AppState>,
    Path(path): Path<OrgPath>,
    url: RequestUrl,
) -> ApiResult<impl IntoResponse> {
    let org = super::organization(&state, &path.organization_id_or_slug).await?;
    let (filter, sort) = filter_and_sort(&url)?;
    let page = groups::list(
        &state.pool,
        GroupScope::Organization(org.id),
        &filter,
        sort,
        &url.page_request()?,
    )
    .await?;
    Ok(Paginated::new(&url, page, |g| IssueJson::new(&url, g)))
}

/// The issue with this id, or 404.
pub async fn find(state: &AppState, issue_id: i64) -> ApiResult<Group> {
    groups::get(&state.pool, issue_id)
        .await?
        .ok_or(AppError::NotFound)
}

pub async fn detail(
    State(state): State<AppState>,
    Path(issue_id): Path<i64>,
    url: RequestUrl,
) -> ApiResult<impl IntoResponse> {
    let group = find(&state, issue_id).await?;
    Ok(axum::Json(IssueJson::new(&url, group)))
}

#[derive(Debug, Deserialize)]
pub struct OrgIssuePath {
    pub organization_id_or_slug: String,
    pub issue_id: i64,
}

pub async fn detail_in_org(
    State(state): State<AppState>,
    Path(path): Path<OrgIssuePath>,
    url: RequestUrl,
) -> ApiResult<impl IntoResponse> {
    let org = super::organization(&state, &path.organization_id_or_slug).await?;
    let group = find(&state, path.issue_id).await?;
    if group.organization_id != org.id {
        return Err(AppError::NotFound);
    }
    Ok(axum::Json(IssueJson::new(&url, group)))
}

#[derive(Debug, Deserialize)]
pub struct UpdateIssue {
    pub status: Option<String>,
}

pub async fn update(
    State(state): State<AppState>,
    Path(issue_id): Path<i64>,
    url: RequestUrl,
    Json(body): Json<UpdateIssue>,
) -> ApiResult<impl IntoResponse> {
    let status = match body.status.as_deref() {
        Some("resolved") => GroupStatus::Resolved,
        Some("unresolved") => GroupStatus::Unresolved,
        other => {
            return Err(AppError::BadRequest(format!(
                "status: expected \"resolved\" or \"unresolved\", got {other:?}."
            )));
        }
    };
    if !groups::set_status(&state.pool, issue_id, status).await? {
        return Err(AppError::NotFound);
    }
    let group = find(&state, issue_id).await?;
    Ok(axum::Json(IssueJson::new(&url, group)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(query: &[(&str, &str)]) -> RequestUrl {
        RequestUrl {
            base: "http://api".into(),
            path: "/".into(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn default_query_lists_unresolved_by_last_seen() {
        let (filter, sort) = filter_and_sort(&url(&[])).unwrap();
        assert_eq!(filter.status, Some(GroupStatus::Unresolved));
        assert_eq!(sort, GroupSort::LastSeen);
        let (filter, _) = filter_and_sort(&url(&[("query", "")])).unwrap();
        assert_eq!(filter.status, None);
    }

    #[test]
    fn query_terms_text_projects_and_errors() {
        let (filter, sort) = filter_and_sort(&url(&[
            ("query", "is:resolved Type Error"),
            ("sort", "freq"),
            ("project", "3"),
        ]))
        .unwrap();
        assert_eq!(filter.status, Some(GroupStatus::Resolved));
        assert_eq!(filter.text.as_deref(), Some("Type Error"));
        assert_eq!(filter.project_ids, vec![3]);
        assert_eq!(sort, GroupSort::TimesSeen);
        assert!(filter_and_sort(&url(&[("query", "level:error")])).is_err());
        assert!(filter_and_sort(&url(&[("sort", "priority")])).is_err());
        assert!(filter_and_sort(&url(&[("project", "x")])).is_err());
    }

    #[test]
    fn short_ids_are_base36() {
        assert_eq!(short_id(1), "1");
        assert_eq!(short_id(36), "10");
        assert_eq!(short_id(71), "1Z");
    }
}
