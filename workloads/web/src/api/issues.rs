//! Issues (groups): project and organization lists, detail, status update. Bulk updates and
//! deletes are in [`super::issues_bulk`], the search syntax in [`super::search`].

use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use silo_store::groups::{self, Group, GroupFilter, GroupScope, GroupSort};

use super::issue_status::UpdateIssue;
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
    pub first_release: Option<serde_json::Value>,
    pub last_release: Option<serde_json::Value>,
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
        let short_id = g.display_short_id();
        let permalink = url.absolute(&format!(
            "/organizations/{}/issues/{}/",
            g.organization_slug, g.id
        ));
        let mut status_details = match g.status_details {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        if let Some(at) = g.resolved_at.filter(|_| g.status == "resolved") {
            status_details.insert("resolvedAt".into(), iso(at).into());
        }
        let status_details = serde_json::Value::Object(status_details);
        let release = |v: Option<String>| {
            v.map(|version| serde_json::json!({"version": version, "shortVersion": version}))
        };
        IssueJson {
            id: g.id.to_string(),
            short_id,
            title: g.title,
            culprit: g.culprit,
            permalink,
            level: g.level,
            status: g.status,
            status_details,
            kind: g.kind,
            metadata: g.metadata,
            count: g.times_seen.to_string(),
            user_count: u64::try_from(g.user_count).unwrap_or_default(),
            first_seen: iso(g.first_seen),
            last_seen: iso(g.last_seen),
            project: IssueProject {
                id: g.project_id.to_string(),
                name: g.project_name,
                slug: g.project_slug,
                platform: g.project_platform,
            },
            first_release: release(g.first_release),
            last_release: release(g.last_release),
            num_comments: 0,
            is_bookmarked: false,
            is_public: false,
            has_seen: false,
            assigned_to: None,
        }
    }
}

/// `query` (see [`super::search`]; `default_query` when absent) and `project` parameters.
pub fn filter(url: &RequestUrl, default_query: &str) -> ApiResult<GroupFilter> {
    let query = url.param("query").unwrap_or(default_query);
    let mut filter = GroupFilter {
        conditions: super::search::parse(query)?,
        ..GroupFilter::default()
    };
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
    Ok(filter)
}

/// `query`, `sort` and `project` parameters of the issue lists.
fn filter_and_sort(url: &RequestUrl) -> ApiResult<(GroupFilter, GroupSort)> {
    let filter = filter(url, "is:unresolved")?;
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

pub async fn update(
    State(state): State<AppState>,
    Path(issue_id): Path<i64>,
    url: RequestUrl,
    Json(body): Json<UpdateIssue>,
) -> ApiResult<impl IntoResponse> {
    let change = body.change(chrono::Utc::now())?;
    let group = find(&state, issue_id).await?;
    let only = GroupFilter {
        ids: vec![group.id],
        ..GroupFilter::default()
    };
    let scope = GroupScope::Project(group.project_id);
    super::issues_bulk::check_next_release(&state, scope, &only, &change).await?;
    groups::set_status(&state.pool, scope, &only, &change).await?;
    let group = find(&state, issue_id).await?;
    Ok(axum::Json(IssueJson::new(&url, group)))
}

#[cfg(test)]
mod tests {
    use silo_store::groups::{GroupStatus, Term};

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
        assert_eq!(filter.status(), Some(GroupStatus::Unresolved));
        assert_eq!(sort, GroupSort::LastSeen);
        let (filter, _) = filter_and_sort(&url(&[("query", "")])).unwrap();
        assert_eq!(filter.status(), None);
    }

    #[test]
    fn query_terms_text_projects_and_errors() {
        let (filter, sort) = filter_and_sort(&url(&[
            ("query", "is:resolved Type Error"),
            ("sort", "freq"),
            ("project", "3"),
        ]))
        .unwrap();
        assert_eq!(filter.status(), Some(GroupStatus::Resolved));
        assert_eq!(
            filter.conditions[1].term,
            Term::Text("Type Error".to_owned())
        );
        assert_eq!(filter.project_ids, vec![3]);
        assert_eq!(sort, GroupSort::TimesSeen);
        assert!(filter_and_sort(&url(&[("query", "has:user")])).is_err());
        assert!(filter_and_sort(&url(&[("sort", "priority")])).is_err());
        assert!(filter_and_sort(&url(&[("project", "x")])).is_err());
    }
}
