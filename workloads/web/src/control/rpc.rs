//! The RPC receiver: `POST /api/0/internal/rpc/<service>/<method>/`.
//!
//! ```text
//!  request ─► Access::Rpc: verify `Rpcsignature rpc0:<hex>` over path + ":" + body
//!             against every key of RPC_SHARED_SECRET ─► 401, nothing executed
//!          ─► organization/create (region silo)  ─► org_changes::create (+ outbox)
//!          ─► outbox/apply        (control silo) ─► control_directory::apply
//!  reply {"meta": {}, "value": ...}
//! ```

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use silo_contract::rpc;
use silo_store::control_directory::{self, InboundMessage, Receipt};
use silo_store::org_changes::{self, OrganizationSnapshot};

use super::metrics::RpcLabels;
use crate::api::validate_slug;
use crate::auth::Principal;
use crate::error::{ApiResult, AppError};
use crate::extract::Path;
use crate::state::AppState;

/// Largest RPC request body.
pub const MAX_RPC_BODY: usize = 16 * 1024 * 1024;

/// Check the RPC signature of `request`; on success hand the request on with its body intact.
pub async fn verify_request(
    state: &AppState,
    request: Request,
) -> Result<(Principal, Request), AppError> {
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, MAX_RPC_BODY).await.map_err(|_| {
        AppError::BadRequest(format!(
            "RPC body is unreadable or larger than {MAX_RPC_BODY} bytes."
        ))
    })?;
    let keys = state.cross.contract().rpc_secrets.clone();
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Err(error) = rpc::verify(&keys, parts.uri.path(), &bytes, header) {
        tracing::warn!(path = parts.uri.path(), %error, "refused RPC request");
        return Err(AppError::Unauthorized(format!(
            "RPC authentication failed: {error}"
        )));
    }
    Ok((
        Principal::Rpc,
        Request::from_parts(parts, Body::from(bytes)),
    ))
}

#[derive(Debug, Deserialize)]
pub struct MethodPath {
    pub method: String,
}

#[derive(Debug, Deserialize)]
struct Envelope<A> {
    #[serde(default)]
    #[allow(dead_code)]
    meta: serde_json::Value,
    args: A,
}

fn args<A: DeserializeOwned>(body: &[u8]) -> ApiResult<A> {
    serde_json::from_slice::<Envelope<A>>(body)
        .map(|e| e.args)
        .map_err(|e| {
            AppError::BadRequest(format!(
                "Invalid RPC body: {e}. Send {{\"meta\": {{}}, \"args\": {{...}}}}."
            ))
        })
}

fn reply<T: Serialize>(value: T) -> Response {
    axum::Json(serde_json::json!({ "meta": {}, "value": value })).into_response()
}

fn unknown(service: &str, method: &str) -> AppError {
    AppError::BadRequest(format!("Unknown RPC method {service}/{method}."))
}

fn count(state: &AppState, service: &str, method: &str, response: &Response) {
    let outcome = if response.status().is_success() {
        "ok".to_owned()
    } else {
        response.status().as_u16().to_string()
    };
    state
        .cross
        .metrics()
        .rpc_received
        .get_or_create(&RpcLabels {
            service: service.to_owned(),
            method: method.to_owned(),
            outcome,
        })
        .inc();
}

/// Arguments of `organization/create`.
#[derive(Debug, Serialize, Deserialize)]
pub struct CreateOrganizationArgs {
    pub id: i64,
    pub slug: String,
    pub name: String,
}

/// `organization/<method>` in the region silo.
pub async fn organization_service(
    State(state): State<AppState>,
    Path(path): Path<MethodPath>,
    body: bytes::Bytes,
) -> Response {
    let response = match path.method.as_str() {
        "create" => create_organization(&state, &body).await,
        other => Err(unknown("organization", other)),
    }
    .unwrap_or_else(IntoResponse::into_response);
    count(&state, "organization", &path.method, &response);
    response
}

async fn create_organization(state: &AppState, body: &[u8]) -> ApiResult<Response> {
    let args: CreateOrganizationArgs = args(body)?;
    validate_slug("organization", &args.slug)?;
    if args.name.trim().is_empty() {
        return Err(AppError::BadRequest("name: This field is required.".into()));
    }
    let org = org_changes::create(&state.pool, args.id, &args.slug, args.name.trim()).await?;
    state.cross.wake_outbox();
    tracing::info!(org = %org.slug, id = org.id, "organization created by RPC");
    Ok(reply(OrganizationSnapshot::from(&org)))
}

/// Arguments of `outbox/apply`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApplyOutboxArgs {
    pub region: String,
    pub messages: Vec<InboundMessage>,
}

/// The answer of `outbox/apply`: one receipt per message, in order.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApplyOutboxValue {
    pub receipts: Vec<Receipt>,
}

/// `outbox/<method>` in the control silo.
pub async fn outbox_service(
    State(state): State<AppState>,
    Path(path): Path<MethodPath>,
    body: bytes::Bytes,
) -> Response {
    let response = match path.method.as_str() {
        "apply" => apply_outbox(&state, &body).await,
        other => Err(unknown("outbox", other)),
    }
    .unwrap_or_else(IntoResponse::into_response);
    count(&state, "outbox", &path.method, &response);
    response
}

async fn apply_outbox(state: &AppState, body: &[u8]) -> ApiResult<Response> {
    let args: ApplyOutboxArgs = args(body)?;
    silo_contract::validate_region_name(&args.region)
        .map_err(|e| AppError::BadRequest(format!("region: {e}")))?;
    if state.cross.contract().directory.get(&args.region).is_none() {
        tracing::warn!(region = %args.region, "outbox messages from a region missing from the directory");
    }
    let receipts = control_directory::apply(&state.pool, &args.region, &args.messages).await?;
    Ok((StatusCode::OK, reply(ApplyOutboxValue { receipts })).into_response())
}
