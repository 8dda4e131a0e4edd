//! Projects: `/api/0/organizations/{org}/projects/`, `/api/0/teams/{org}/{team}/projects/`
//! (teams are not modelled: a project belongs to its organization) and
//! `/api/0/projects/{org}/{project}/`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use silo_store::organizations::Organization;
use silo_store::projects::{self, Project};

use super::{OrgPath, ProjectPath, iso, required, slugify, validate_slug};
use crate::error::ApiResult;
use crate::extract::{Json, Path};
use crate::pagination::{Paginated, RequestUrl};
use crate::state::AppState;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectJson {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub platform: Option<String>,
    pub date_created: String,
    pub status: &'static str,
    pub organization: OrgSummary,
}

/// The organization block embedded in project JSON.
#[derive(Debug, Serialize)]
pub struct OrgSummary {
    pub id: String,
    pub slug: String,
    pub name: String,
}

impl ProjectJson {
    pub fn new(org: &Organization, project: Project) -> Self {
        ProjectJson {
            id: project.id.to_string(),
            slug: project.slug,
            name: project.name,
            platform: project.platform,
            date_created: iso(project.date_created),
            status: "active",
            organization: OrgSummary {
                id: org.id.to_string(),
                slug: org.slug.clone(),
                name: org.name.clone(),
            },
        }
    }
}

pub async fn list(
    State(state): State<AppState>,
    Path(path): Path<OrgPath>,
    url: RequestUrl,
) -> ApiResult<impl IntoResponse> {
    let org = super::organization(&state, &path.organization_id_or_slug).await?;
    let page = projects::list_for_organization(&state.pool, org.id, &url.page_request()?).await?;
    Ok(Paginated::new(&url, page, |p| ProjectJson::new(&org, p)))
}

#[derive(Debug, Deserialize)]
pub struct CreateProject {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub platform: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    Path(path): Path<OrgPath>,
    Json(body): Json<CreateProject>,
) -> ApiResult<impl IntoResponse> {
    create_in(&state, &path.organization_id_or_slug, body).await
}

/// `POST /api/0/teams/{org}/{team}/projects/`: the team segment is accepted for client
/// compatibility; projects belong to the organization.
pub async fn create_for_team(
    State(state): State<AppState>,
    Path((org_slug, _team)): Path<(String, String)>,
    Json(body): Json<CreateProject>,
) -> ApiResult<impl IntoResponse> {
    create_in(&state, &org_slug, body).await
}

async fn create_in(
    state: &AppState,
    org_slug: &str,
    body: CreateProject,
) -> ApiResult<impl IntoResponse + use<>> {
    let org = super::organization(state, org_slug).await?;
    let name = required("name", body.name.as_deref())?;
    let slug = match body.slug.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => s.to_owned(),
        _ => slugify(&name),
    };
    validate_slug("project", &slug)?;
    let platform = body
        .platform
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty());
    let project = projects::create(&state.pool, org.id, &slug, &name, platform).await?;
    tracing::info!(org = %org.slug, project = %project.slug, id = project.id, "project created");
    Ok((
        StatusCode::CREATED,
        axum::Json(ProjectJson::new(&org, project)),
    ))
}

pub async fn detail(
    State(state): State<AppState>,
    Path(path): Path<ProjectPath>,
) -> ApiResult<impl IntoResponse> {
    let (org, project) = super::project(&state, &path).await?;
    Ok(axum::Json(ProjectJson::new(&org, project)))
}
