//! `/api/0/organizations/` per silo, and organization changes in the region.
//!
//! ```text
//!  GET  /organizations/   REGION: this region's orgs   CONTROL/MONOLITH: the directory
//!  POST /organizations/   REGION: create here (+ outbox)
//!                         CONTROL/MONOLITH: reserve slug ─► create in region (RPC, or in
//!                         process when MONOLITH owns it) ─► activate mapping
//!  PUT/DELETE /organizations/{org}/   rename / schedule deletion (+ outbox), region only
//! ```

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use silo_contract::{SiloContract, SiloMode};
use silo_store::control_directory::{self, OrganizationMapping};
use silo_store::org_changes::{self, OrganizationSnapshot};

use super::RpcError;
use super::rpc::CreateOrganizationArgs;
use crate::api::organizations::{CreateOrganization, OrganizationJson, StatusJson};
use crate::api::{self, OrgPath, iso, required, slugify, validate_slug};
use crate::error::{ApiResult, AppError};
use crate::extract::{Json, Path};
use crate::pagination::{Paginated, RequestUrl};
use crate::state::AppState;

/// An organization in the control silo's list: the region's shape plus Sentry's `links`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryOrganizationJson {
    #[serde(flatten)]
    pub organization: OrganizationJson,
    pub links: Links,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Links {
    pub organization_url: String,
    pub region_url: String,
}

impl DirectoryOrganizationJson {
    fn new(mapping: OrganizationMapping, contract: &SiloContract, base: &str) -> Self {
        let region_url = contract
            .directory
            .get(&mapping.region_name)
            .map_or_else(|| base.to_owned(), |r| r.address.clone());
        DirectoryOrganizationJson {
            links: Links {
                organization_url: format!("{base}/organizations/{}/", mapping.slug),
                region_url,
            },
            organization: OrganizationJson {
                id: mapping.organization_id.to_string(),
                slug: mapping.slug,
                name: mapping.name,
                status: StatusJson {
                    id: mapping.status.clone(),
                    name: mapping.status,
                },
                date_created: iso(mapping.date_created),
                is_early_adopter: false,
                require_2fa: false,
                features: Vec::new(),
            },
        }
    }
}

/// `GET /api/0/organizations/`.
pub async fn list(State(state): State<AppState>, url: RequestUrl) -> ApiResult<Response> {
    if state.mode == SiloMode::Region {
        return api::organizations::list(State(state), url)
            .await
            .map(IntoResponse::into_response);
    }
    let page = control_directory::list(&state.pool, &url.page_request()?).await?;
    let contract = state.cross.contract();
    let base = url.absolute("");
    Ok(Paginated::new(&url, page, |m| {
        DirectoryOrganizationJson::new(m, &contract, &base)
    })
    .into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct CreateBody {
    pub name: Option<String>,
    pub slug: Option<String>,
    /// Region to create the organization in (default: `SENTRY_MONOLITH_REGION`).
    pub region: Option<String>,
}

/// `POST /api/0/organizations/`.
pub async fn create(
    State(state): State<AppState>,
    url: RequestUrl,
    Json(body): Json<CreateBody>,
) -> ApiResult<Response> {
    if state.mode == SiloMode::Region {
        let body = CreateOrganization {
            name: body.name,
            slug: body.slug,
        };
        return api::organizations::create(State(state), Json(body))
            .await
            .map(IntoResponse::into_response);
    }
    let name = required("name", body.name.as_deref())?;
    let slug = match body.slug.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => s.to_owned(),
        _ => slugify(&name),
    };
    validate_slug("organization", &slug)?;
    let contract = state.cross.contract();
    let region = target_region(&state, &contract, body.region.as_deref())?;
    let id = state.cross.next_id(&region.name);
    control_directory::reserve(&state.pool, id, &slug, &name, &region.name)
        .await
        .map_err(|e| match e {
            silo_store::StoreError::Conflict { .. } => AppError::Conflict(format!(
                "An organization with the slug {slug:?} already exists."
            )),
            other => other.into(),
        })?;
    let created = match &region.address {
        None => org_changes::create(&state.pool, id, &slug, &name)
            .await
            .map(|org| {
                state.cross.wake_outbox();
                OrganizationSnapshot::from(&org)
            })
            .map_err(AppError::from),
        Some(address) => {
            let args = CreateOrganizationArgs {
                id,
                slug: slug.clone(),
                name: name.clone(),
            };
            let target = format!("region {:?}", region.name);
            state
                .cross
                .rpc()
                .call::<_, OrganizationSnapshot>(&target, address, "organization", "create", &args)
                .await
                .map_err(rpc_error)
        }
    };
    let snapshot = match created {
        Ok(snapshot) => snapshot,
        Err(error) => {
            if let Err(release) = control_directory::release(&state.pool, id).await {
                tracing::error!(%release, id, "cannot release organization reservation");
            }
            return Err(error);
        }
    };
    let mapping = control_directory::activate(&state.pool, &region.name, &snapshot).await?;
    tracing::info!(org = %mapping.slug, id, region = %region.name, "organization created");
    let json = DirectoryOrganizationJson::new(mapping, &contract, &url.absolute(""));
    Ok((StatusCode::CREATED, axum::Json(json)).into_response())
}

/// Where a new organization goes: its name, and its address unless this process serves it.
struct Target {
    name: String,
    address: Option<String>,
}

fn target_region(
    state: &AppState,
    contract: &SiloContract,
    requested: Option<&str>,
) -> ApiResult<Target> {
    let local = (state.mode == SiloMode::Monolith).then(|| state.cross.local_region_name());
    let name = requested
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .or_else(|| contract.monolith_region.clone())
        .or_else(|| local.clone())
        .or_else(|| contract.fallback_region().map(|r| r.name.clone()))
        .ok_or_else(|| {
            AppError::Unavailable(
                "No region is configured: set SENTRY_REGION_CONFIG and SENTRY_MONOLITH_REGION."
                    .to_owned(),
            )
        })?;
    if local.as_deref() == Some(name.as_str()) {
        return Ok(Target {
            name,
            address: None,
        });
    }
    match contract.directory.get(&name) {
        Some(region) if region.visible || requested.is_none() => Ok(Target {
            name,
            address: Some(region.address.clone()),
        }),
        None if requested.is_none() && contract.unlisted_monolith_region().is_some() => {
            Err(super::gateway::no_fallback(contract))
        }
        _ => {
            let known: Vec<&str> = contract
                .directory
                .regions()
                .iter()
                .filter(|r| r.visible)
                .map(|r| r.name.as_str())
                .collect();
            Err(AppError::BadRequest(format!(
                "region: unknown region {name:?}; choose one of: {}.",
                known.join(", ")
            )))
        }
    }
}

fn rpc_error(error: RpcError) -> AppError {
    match error {
        RpcError::Rejected { status, detail, .. } if status == StatusCode::CONFLICT => {
            AppError::Conflict(detail)
        }
        RpcError::Rejected { status, detail, .. } if status.is_client_error() => {
            AppError::BadRequest(detail)
        }
        other => {
            // The region's name helps the client; the transport error text stays in the log.
            let what = match &other {
                RpcError::NoSecret => "Cross-silo RPC".to_owned(),
                RpcError::Unavailable { target, .. }
                | RpcError::Unauthorized { target, .. }
                | RpcError::Rejected { target, .. }
                | RpcError::BadReply { target, .. } => format!("The {target}"),
            };
            AppError::Dependency {
                what,
                detail: other.to_string(),
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct UpdateBody {
    pub name: Option<String>,
    pub slug: Option<String>,
}

/// `PUT /api/0/organizations/{org}/` (region): rename.
pub async fn update(
    State(state): State<AppState>,
    Path(path): Path<OrgPath>,
    Json(body): Json<UpdateBody>,
) -> ApiResult<Response> {
    let org = api::organization(&state, &path.organization_id_or_slug).await?;
    let name = body
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let slug = body
        .slug
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    if let Some(slug) = slug {
        validate_slug("organization", slug)?;
    }
    if name.is_none() && slug.is_none() {
        return Err(AppError::BadRequest(
            "Nothing to change: send \"name\" and/or \"slug\".".to_owned(),
        ));
    }
    let org = org_changes::rename(&state.pool, org.id, name, slug)
        .await?
        .ok_or(AppError::NotFound)?;
    state.cross.wake_outbox();
    Ok(axum::Json(OrganizationJson::from(org)).into_response())
}

/// `DELETE /api/0/organizations/{org}/` (region): schedule deletion.
pub async fn delete(
    State(state): State<AppState>,
    Path(path): Path<OrgPath>,
) -> ApiResult<Response> {
    let org = api::organization(&state, &path.organization_id_or_slug).await?;
    let org = org_changes::delete(&state.pool, org.id)
        .await?
        .ok_or(AppError::NotFound)?;
    state.cross.wake_outbox();
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(OrganizationJson::from(org)),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_that_does_not_answer_is_a_503_whose_detail_is_only_logged() {
        let error = rpc_error(RpcError::Unavailable {
            target: "region \"de\"".into(),
            attempts: 3,
            detail: "error sending request for url (http://web.region-de.svc:8000/)".into(),
        });
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            matches!(&error, AppError::Dependency { what, .. } if what == "The region \"de\""),
            "{error}"
        );
        let refused = rpc_error(RpcError::Rejected {
            target: "region \"de\"".into(),
            status: StatusCode::CONFLICT,
            detail: "slug taken".into(),
        });
        assert!(matches!(refused, AppError::Conflict(d) if d == "slug taken"));
    }
}
