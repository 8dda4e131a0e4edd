//! `/api/0/organizations/{org}/members/` in the region: list and add (the addition reaches
//! the control silo through the outbox).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use silo_store::org_changes::{self, Member};

use crate::api::{self, OrgPath, iso, required};
use crate::error::{ApiResult, AppError};
use crate::extract::{Json, Path};
use crate::state::AppState;

/// Roles an organization member can hold (Sentry's organization roles).
pub const ROLES: [&str; 5] = ["member", "admin", "manager", "owner", "billing"];

/// A member as Sentry renders it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberJson {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: String,
    pub role_name: String,
    pub org_role: String,
    pub pending: bool,
    pub expired: bool,
    pub date_created: String,
}

impl From<Member> for MemberJson {
    fn from(m: Member) -> Self {
        let mut role_name = m.role.clone();
        if let Some(first) = role_name.get_mut(..1) {
            first.make_ascii_uppercase();
        }
        MemberJson {
            id: m.id.to_string(),
            name: m.email.clone(),
            email: m.email,
            org_role: m.role.clone(),
            role: m.role,
            role_name,
            pending: false,
            expired: false,
            date_created: iso(m.date_added),
        }
    }
}

pub async fn list(State(state): State<AppState>, Path(path): Path<OrgPath>) -> ApiResult<Response> {
    let org = api::organization(&state, &path.organization_id_or_slug).await?;
    let members = org_changes::members(&state.pool, org.id).await?;
    let json: Vec<MemberJson> = members.into_iter().map(MemberJson::from).collect();
    Ok(axum::Json(json).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct AddMember {
    pub email: Option<String>,
    #[serde(alias = "orgRole")]
    pub role: Option<String>,
}

pub async fn add(
    State(state): State<AppState>,
    Path(path): Path<OrgPath>,
    Json(body): Json<AddMember>,
) -> ApiResult<Response> {
    let org = api::organization(&state, &path.organization_id_or_slug).await?;
    let email = required("email", body.email.as_deref())?.to_ascii_lowercase();
    if !email.contains('@') || email.len() > 200 {
        return Err(AppError::BadRequest(format!(
            "email: {email:?} is not an email address."
        )));
    }
    let role = body.role.as_deref().map(str::trim).unwrap_or("member");
    if !ROLES.contains(&role) {
        return Err(AppError::BadRequest(format!(
            "role: unknown role {role:?}; use one of {}.",
            ROLES.join(", ")
        )));
    }
    let member = org_changes::add_member(&state.pool, org.id, &email, role).await?;
    state.cross.wake_outbox();
    Ok((StatusCode::CREATED, axum::Json(MemberJson::from(member))).into_response())
}
