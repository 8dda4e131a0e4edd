//! `/api/0/organizations/`: list, create, detail.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use silo_store::organizations::{self, Organization};

use super::{OrgPath, iso, required, slugify, validate_slug};
use crate::error::ApiResult;
use crate::extract::{Json, Path};
use crate::pagination::{Paginated, RequestUrl};
use crate::state::AppState;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationJson {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub status: StatusJson,
    pub date_created: String,
    pub is_early_adopter: bool,
    #[serde(rename = "require2FA")]
    pub require_2fa: bool,
    pub features: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct StatusJson {
    pub id: String,
    pub name: String,
}

impl From<Organization> for OrganizationJson {
    fn from(org: Organization) -> Self {
        OrganizationJson {
            id: org.id.to_string(),
            slug: org.slug,
            name: org.name,
            status: StatusJson {
                id: org.status.clone(),
                name: org.status,
            },
            date_created: iso(org.date_created),
            is_early_adopter: false,
            require_2fa: false,
            features: Vec::new(),
        }
    }
}

pub async fn list(State(state): State<AppState>, url: RequestUrl) -> ApiResult<impl IntoResponse> {
    let page = organizations::list(&state.pool, &url.page_request()?).await?;
    Ok(Paginated::new(&url, page, OrganizationJson::from))
}

#[derive(Debug, Deserialize)]
pub struct CreateOrganization {
    pub name: Option<String>,
    pub slug: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    Json(body): Json<CreateOrganization>,
) -> ApiResult<impl IntoResponse> {
    let name = required("name", body.name.as_deref())?;
    let slug = match body.slug.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => s.to_owned(),
        _ => slugify(&name),
    };
    validate_slug("organization", &slug)?;
    let id = state.cross.next_id(&state.cross.local_region_name());
    let org = silo_store::org_changes::create(&state.pool, id, &slug, &name).await?;
    state.cross.wake_outbox();
    tracing::info!(org = %org.slug, id = org.id, "organization created");
    Ok((StatusCode::CREATED, axum::Json(OrganizationJson::from(org))))
}

pub async fn detail(
    State(state): State<AppState>,
    Path(path): Path<OrgPath>,
) -> ApiResult<impl IntoResponse> {
    let org = super::organization(&state, &path.organization_id_or_slug).await?;
    Ok(axum::Json(OrganizationJson::from(org)))
}
