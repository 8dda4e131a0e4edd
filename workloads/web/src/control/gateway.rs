//! The control silo's API gateway: region routes asked of a CONTROL process are proxied to the
//! region that owns the data instead of answering "wrong silo".
//!
//! ```text
//!  request for a region route (CONTROL mode)
//!    ─► check_gateway_access with the control silo's tokens (same scopes as the region
//!       route; a token authenticated less than SILO_GATEWAY_TOKEN_CACHE_TTL ago is reused)
//!    ─► {organization_id_or_slug} in the path? ─► directory (cached for a TTL) ─► region
//!       otherwise (org-less route)            ─► SENTRY_MONOLITH_REGION
//!    ─► region address from SENTRY_REGION_CONFIG (reloaded)
//!    ─► same method, path, query, body and headers (minus hop-by-hop), plus the signed
//!       identity headers (see `identity`)
//!    ◄─ status, headers and a streamed body, plus X-Sentry-Proxy-URL: <region URL>
//!  unknown organization ─► 404; region unreachable ─► 503 naming it; too slow ─► 504
//! ```
//!
//! Relay routes are never proxied: relays talk to their own region.

use axum::body::{Body, to_bytes};
use axum::extract::{RawPathParams, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use silo_contract::SiloMode;
use silo_store::control_directory::{self, OrganizationMapping};

use super::identity;
use super::metrics::RegionOutcome;
use super::upstream::UpstreamError;
use crate::auth::{self, Access, Principal};
use crate::error::AppError;
use crate::silo::{self, RouteDef, Silos};
use crate::state::AppState;

/// Response header naming the region URL that answered.
pub const PROXY_URL_HEADER: &str = "x-sentry-proxy-url";
/// Largest request body the gateway forwards.
pub const MAX_BODY: usize = 20 * 1024 * 1024;
/// Path parameter naming the organization of org-scoped routes.
const ORG_PARAM: &str = "organization_id_or_slug";

/// Headers that describe one connection, never forwarded (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// The region owning the organization in the path.
    Organization,
    /// The monolith region (routes without an organization).
    Fallback,
}

/// The off-silo handler of a CONTROL process: a proxy for region routes, the wrong-silo 404
/// for everything else. Pass it to [`crate::router::router_with`].
pub fn off_silo(state: AppState) -> impl Fn(&RouteDef, SiloMode) -> MethodRouter<AppState> {
    move |route: &RouteDef, mode: SiloMode| {
        if mode != SiloMode::Control
            || route.silos != Silos::Region
            || route.access == Access::Relay
        {
            return silo::wrong_silo(route, mode);
        }
        let target = if route.path.contains(&format!("{{{ORG_PARAM}}}")) {
            Target::Organization
        } else {
            Target::Fallback
        };
        let Ok(filter) = MethodFilter::try_from(route.method.clone()) else {
            return silo::wrong_silo(route, mode);
        };
        let layer = from_fn_with_state((state.clone(), route.access), auth::check_gateway_access);
        on(
            filter,
            move |State(state): State<AppState>, params: RawPathParams, request: Request| async move {
                let org = params
                    .iter()
                    .find(|(name, _)| *name == ORG_PARAM)
                    .map(|(_, value)| value.to_owned());
                proxy(state, target, org, request).await
            },
        )
        .route_layer(layer)
    }
}

async fn proxy(state: AppState, target: Target, org: Option<String>, request: Request) -> Response {
    let region_name = match (target, org) {
        (Target::Organization, Some(org)) => match resolve(&state, &org).await {
            Ok(Some(mapping)) => mapping.region_name,
            Ok(None) => {
                count(&state, "", "unknown_org");
                return AppError::NotFound.into_response();
            }
            Err(error) => return error.into_response(),
        },
        _ => match state.cross.fallback_region() {
            Some(region) => region.name,
            None => return no_fallback(&state.cross.contract()).into_response(),
        },
    };
    let contract = state.cross.contract();
    let Some(region) = contract.directory.get(&region_name) else {
        count(&state, &region_name, "not_in_directory");
        return unavailable(
            &region_name,
            format!(
                "Region {region_name:?} is not in the region directory (SENTRY_REGION_CONFIG)."
            ),
        );
    };
    let (mut parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |pq| pq.as_str());
    let url = format!("{}{path_and_query}", region.address.trim_end_matches('/'));
    let incoming = std::mem::take(&mut parts.headers);
    let Some(headers) = forward_headers(&state, incoming, parts.uri.path(), &parts.extensions)
    else {
        return AppError::Unavailable(
            "RPC_SHARED_SECRET is not set, so the gateway cannot forward the caller's identity."
                .to_owned(),
        )
        .into_response();
    };
    let body = match to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                axum::Json(serde_json::json!({
                    "detail": format!("Request body is unreadable or larger than {MAX_BODY} bytes.")
                })),
            )
                .into_response();
        }
    };
    let Ok(uri) = Uri::try_from(url.as_str()) else {
        count(&state, &region_name, "bad_address");
        return unavailable(
            &region_name,
            format!("Region {region_name:?} has an address that is not a URL: {url:?}."),
        );
    };
    let timeout = state.cross.settings().proxy_timeout;
    let body = if body.is_empty() && parts.method == Method::GET {
        Body::empty()
    } else {
        Body::from(body)
    };
    let mut outgoing = Request::new(body);
    *outgoing.method_mut() = parts.method;
    *outgoing.uri_mut() = uri;
    *outgoing.headers_mut() = headers;
    match state.cross.proxy_client().send(outgoing, timeout).await {
        Ok(response) => {
            count(&state, &region_name, "ok");
            respond(response, &url)
        }
        Err(UpstreamError::Timeout(_)) => {
            count(&state, &region_name, "timeout");
            let body = serde_json::json!({
                "detail": format!("Region {region_name:?} did not answer within {timeout:?}."),
                "region": region_name,
            });
            (StatusCode::GATEWAY_TIMEOUT, axum::Json(body)).into_response()
        }
        Err(error) => {
            count(&state, &region_name, "unavailable");
            tracing::warn!(region = %region_name, %url, %error, "region unreachable");
            unavailable(
                &region_name,
                format!("Region {region_name:?} is unavailable; retry shortly."),
            )
        }
    }
}

async fn resolve(state: &AppState, key: &str) -> Result<Option<OrganizationMapping>, AppError> {
    if let Some(mapping) = state.cross.mappings().get(key) {
        return Ok(Some(mapping));
    }
    let found = control_directory::resolve(&state.pool, key).await?;
    if let Some(mapping) = &found {
        state.cross.mappings().put(key, mapping.clone());
    }
    Ok(found)
}

/// The request headers minus hop-by-hop ones and any client-supplied identity, plus the
/// signed identity of the authenticated caller (edited in place, not copied). `None` when no
/// RPC key can sign it.
fn forward_headers(
    state: &AppState,
    mut headers: HeaderMap,
    path: &str,
    extensions: &axum::http::Extensions,
) -> Option<HeaderMap> {
    strip_hop_by_hop(&mut headers);
    headers.remove(identity::IDENTITY_HEADER);
    headers.remove(identity::SIGNATURE_HEADER);
    headers.remove(header::CONTENT_LENGTH);
    if let Some(Principal::Token(token)) = extensions.get::<Principal>() {
        let forwarded = identity::for_path(token.id, &token.label, &token.scopes, path);
        let (value, signature) = identity::encode(&state.cross.contract().rpc_secrets, &forwarded)?;
        headers.insert(
            HeaderName::from_static(identity::IDENTITY_HEADER),
            HeaderValue::from_str(&value).ok()?,
        );
        headers.insert(
            HeaderName::from_static(identity::SIGNATURE_HEADER),
            HeaderValue::from_str(&signature).ok()?,
        );
    }
    Some(headers)
}

/// Drop from `headers` the hop-by-hop fields and those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|v| HeaderName::from_bytes(v.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The region's answer with its status, its headers (minus hop-by-hop ones, edited in place)
/// and its body streamed. `Content-Length` stays: the body passes unchanged, so the client
/// gets one length-delimited response rather than a re-chunked one.
fn respond(mut response: Response, url: &str) -> Response {
    strip_hop_by_hop(response.headers_mut());
    if let Ok(value) = HeaderValue::from_str(url) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(PROXY_URL_HEADER), value);
    }
    response
}

/// Why requests without an organization have no region to go to.
pub(super) fn no_fallback(contract: &silo_contract::SiloContract) -> AppError {
    match contract.unlisted_monolith_region() {
        Some(region) => AppError::Unavailable(format!(
            "Requests without an organization go to region {region:?} (SENTRY_MONOLITH_REGION), \
             which is not in the region directory; create that region or change the monolith region."
        )),
        None => AppError::Unavailable(
            "No monolith region is configured for requests without an organization; \
             set SENTRY_MONOLITH_REGION."
                .to_owned(),
        ),
    }
}

fn unavailable(region: &str, detail: String) -> Response {
    let body = serde_json::json!({ "detail": detail, "region": region });
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

fn count(state: &AppState, region: &str, outcome: &str) {
    state
        .cross
        .metrics()
        .gateway_requests
        .get_or_create(&RegionOutcome {
            region: region.to_owned(),
            outcome: outcome.to_owned(),
        })
        .inc();
}

#[cfg(test)]
mod tests {
    use silo_contract::{RegionCategory, RegionDirectory, RegionInfo, SiloContract};

    use super::*;

    #[test]
    fn a_monolith_region_missing_from_the_directory_is_named() {
        let us = RegionInfo {
            name: "us".into(),
            snowflake_id: 1,
            address: "http://us".into(),
            category: RegionCategory::MultiTenant,
            visible: true,
        };
        let contract = SiloContract {
            mode: SiloMode::Control,
            region: None,
            directory_source: None,
            directory: RegionDirectory::new(vec![us]).unwrap(),
            monolith_region: Some("de".into()),
            control_address: None,
            rpc_secrets: Vec::new(),
        };
        let error = no_fallback(&contract);
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(error.to_string().contains("\"de\""), "{error}");
        let unset = SiloContract {
            monolith_region: None,
            directory: RegionDirectory::default(),
            ..contract
        };
        assert!(
            no_fallback(&unset)
                .to_string()
                .contains("set SENTRY_MONOLITH_REGION")
        );
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", HeaderValue::from_static("close, x-trace-hop"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        headers.insert("x-trace-hop", HeaderValue::from_static("1"));
        headers.insert("authorization", HeaderValue::from_static("Bearer t"));
        headers.append("accept", HeaderValue::from_static("application/json"));
        strip_hop_by_hop(&mut headers);
        let mut names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, vec!["accept", "authorization"]);
    }
}
