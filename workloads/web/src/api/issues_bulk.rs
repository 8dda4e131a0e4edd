//! Bulk issue changes: `PUT` and `DELETE` on `/api/0/projects/{org}/{project}/issues/` and
//! `/api/0/organizations/{org}/issues/` (what `sentry-cli issues resolve|unresolve|mute` send).
//!
//! ```text
//!  ?id=1&id=2  (every id must be in scope, else 400 naming the others; nothing is written)
//!  ?status=unresolved | ?query=<search>  (without ids: every matching issue; none: all)
//!  PUT  {"status", "statusDetails", ...} ─► one UPDATE ─► 200 {"status", "statusDetails"}
//!       resolvedInNextRelease: 400 when a selected issue's project has no release
//!  DELETE ─► one DELETE (events go with their issues) ─► 204
//!  nothing matched ─► 204
//! ```

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use silo_store::groups::{
    self, Condition, GroupFilter, GroupScope, GroupStatus, StatusChange, Term,
};

use super::issue_status::UpdateIssue;
use super::{OrgPath, ProjectPath};
use crate::error::{ApiResult, AppError};
use crate::extract::{Json, Path};
use crate::pagination::RequestUrl;
use crate::state::AppState;

/// Most issues one id list may name.
pub const MAX_IDS: usize = 1000;

/// The issues a bulk request selects within its scope.
async fn selection(
    state: &AppState,
    scope: GroupScope,
    url: &RequestUrl,
) -> ApiResult<GroupFilter> {
    let mut ids = Vec::new();
    for raw in url.params("id") {
        let id = raw.parse::<i64>().map_err(|_| {
            AppError::BadRequest(format!("Invalid id {raw:?}: expected an issue id."))
        })?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.len() > MAX_IDS {
        return Err(AppError::BadRequest(format!(
            "Too many ids: at most {MAX_IDS} issues per request."
        )));
    }
    // Without a query, a bulk request selects by ids and status only.
    let mut filter = super::issues::filter(url, "")?;
    if let Some(status) = url.param("status").filter(|s| !s.is_empty()) {
        let status = match status {
            "unresolved" => GroupStatus::Unresolved,
            "resolved" => GroupStatus::Resolved,
            "ignored" | "muted" => GroupStatus::Ignored,
            other => {
                return Err(AppError::BadRequest(format!(
                    "Invalid status {other:?}: expected unresolved, resolved or ignored."
                )));
            }
        };
        filter.conditions.push(Condition::new(Term::Status(status)));
    }
    if !ids.is_empty() {
        let found = groups::ids_in_scope(&state.pool, scope, &ids).await?;
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| !found.contains(id))
            .map(i64::to_string)
            .collect();
        if !missing.is_empty() {
            return Err(AppError::BadRequest(format!(
                "Issues {} do not exist in this {}; nothing was changed.",
                missing.join(", "),
                match scope {
                    GroupScope::Project(_) => "project",
                    GroupScope::Organization(_) => "organization",
                }
            )));
        }
        filter.ids = ids;
    }
    Ok(filter)
}

async fn update(
    state: &AppState,
    scope: GroupScope,
    url: &RequestUrl,
    body: &UpdateIssue,
) -> ApiResult<Response> {
    let change = body.change(chrono::Utc::now())?;
    let filter = selection(state, scope, url).await?;
    check_next_release(state, scope, &filter, &change).await?;
    let changed = groups::set_status(&state.pool, scope, &filter, &change).await?;
    if changed.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let body = serde_json::json!({
        "status": change.status.as_str(),
        "statusDetails": change.details,
        "inbox": null,
    });
    Ok(axum::Json(body).into_response())
}

/// Resolving in the next release needs a release to be newer than: 400 naming the projects
/// of the selected issues that have none (as Sentry refuses it).
pub(super) async fn check_next_release(
    state: &AppState,
    scope: GroupScope,
    filter: &GroupFilter,
    change: &StatusChange,
) -> ApiResult<()> {
    if !change.in_next_release {
        return Ok(());
    }
    let missing = groups::projects_without_release(&state.pool, scope, filter).await?;
    if missing.is_empty() {
        return Ok(());
    }
    Err(AppError::BadRequest(format!(
        "No release data present in the system to form a basis for 'Next Release' (project {}); \
         create a release first or resolve the issues outright.",
        missing.join(", ")
    )))
}

async fn delete(state: &AppState, scope: GroupScope, url: &RequestUrl) -> ApiResult<Response> {
    if url.params("id").next().is_none() && url.param("query").is_none() {
        return Err(AppError::BadRequest(
            "Name the issues to delete with id= (repeated) or a query=.".to_owned(),
        ));
    }
    let filter = selection(state, scope, url).await?;
    groups::delete(&state.pool, scope, &filter).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn update_for_project(
    State(state): State<AppState>,
    Path(path): Path<ProjectPath>,
    url: RequestUrl,
    Json(body): Json<UpdateIssue>,
) -> ApiResult<Response> {
    let (_, project) = super::project(&state, &path).await?;
    update(&state, GroupScope::Project(project.id), &url, &body).await
}

pub async fn update_for_org(
    State(state): State<AppState>,
    Path(path): Path<OrgPath>,
    url: RequestUrl,
    Json(body): Json<UpdateIssue>,
) -> ApiResult<Response> {
    let org = super::organization(&state, &path.organization_id_or_slug).await?;
    update(&state, GroupScope::Organization(org.id), &url, &body).await
}

pub async fn delete_for_project(
    State(state): State<AppState>,
    Path(path): Path<ProjectPath>,
    url: RequestUrl,
) -> ApiResult<Response> {
    let (_, project) = super::project(&state, &path).await?;
    delete(&state, GroupScope::Project(project.id), &url).await
}

pub async fn delete_for_org(
    State(state): State<AppState>,
    Path(path): Path<OrgPath>,
    url: RequestUrl,
) -> ApiResult<Response> {
    let org = super::organization(&state, &path.organization_id_or_slug).await?;
    delete(&state, GroupScope::Organization(org.id), &url).await
}
