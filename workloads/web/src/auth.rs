//! Who may call a route: bearer tokens with scopes, or signed relay requests.
//!
//! ```text
//!  request ──► check_access(route.access)
//!     Access::Scope(s): Authorization: Bearer <token> ─► api_tokens (sha256) ─► has scope s?
//!                       or X-Silo-Identity signed by the gateway (control::identity)
//!     Access::Relay:    X-Sentry-Relay-Signature = HMAC(relay secret, body) ?
//!     Access::Rpc:      Authorization: Rpcsignature rpc0:<hmac> (control::rpc)
//!     Access::Public:   nothing to check
//!  ──► Principal in request extensions ──► handler
//! ```

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use silo_protocol::relay_auth;
use silo_store::api_tokens::{self, ApiToken};

use crate::control::identity;
use crate::control::metrics::TokenSource;
use crate::error::AppError;
use crate::state::AppState;

/// Largest relay request body read for signature checking.
pub const MAX_RELAY_BODY: usize = 1024 * 1024;

/// Every scope a token can hold (Sentry's names).
pub const ALL_SCOPES: [&str; 11] = [
    "org:read",
    "org:write",
    "org:admin",
    "project:read",
    "project:write",
    "project:admin",
    "event:read",
    "event:write",
    "event:admin",
    "alerts:read",
    "alerts:write",
];

/// What a route requires of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "scope")]
pub enum Access {
    /// No credentials (health checks, public metadata).
    Public,
    /// A bearer token holding this scope.
    Scope(&'static str),
    /// A request signed by one of this region's relays.
    Relay,
    /// A cross-silo RPC call signed with `RPC_SHARED_SECRET`.
    Rpc,
}

/// The authenticated caller, available to handlers as `Extension<Principal>`.
#[derive(Clone, Debug)]
pub enum Principal {
    Anonymous,
    Token(ApiToken),
    Relay {
        relay_id: String,
    },
    /// Another silo, proven by the RPC signature.
    Rpc,
}

/// Where bearer tokens are looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenLookup {
    /// In the database, on every request.
    Database,
    /// Through the gateway's token cache (see `SILO_GATEWAY_TOKEN_CACHE_TTL`).
    GatewayCache,
}

/// Middleware installed per route by [`crate::silo::compose`].
pub async fn check_access(
    State((state, access)): State<(AppState, Access)>,
    request: Request,
    next: Next,
) -> Response {
    authorize(&state, access, TokenLookup::Database, request, next).await
}

/// [`check_access`] for the requests the control silo's gateway proxies to a region: a token
/// authenticated less than `SILO_GATEWAY_TOKEN_CACHE_TTL` ago is not looked up again.
pub async fn check_gateway_access(
    State((state, access)): State<(AppState, Access)>,
    request: Request,
    next: Next,
) -> Response {
    authorize(&state, access, TokenLookup::GatewayCache, request, next).await
}

async fn authorize(
    state: &AppState,
    access: Access,
    lookup: TokenLookup,
    mut request: Request,
    next: Next,
) -> Response {
    let principal = match access {
        Access::Public => Ok((Principal::Anonymous, request)),
        Access::Scope(scope) if request.headers().contains_key(identity::IDENTITY_HEADER) => {
            forwarded(state, &request, scope).map(|token| (Principal::Token(token), request))
        }
        Access::Scope(scope) => {
            let header = request.headers().get(AUTHORIZATION).cloned();
            bearer(state, header, scope, lookup)
                .await
                .map(|token| (Principal::Token(token), request))
        }
        Access::Relay => relay(state, request).await,
        Access::Rpc => crate::control::rpc::verify_request(state, request).await,
    };
    match principal {
        Ok((principal, req)) => {
            request = req;
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

async fn bearer(
    state: &AppState,
    header: Option<HeaderValue>,
    scope: &str,
    lookup: TokenLookup,
) -> Result<ApiToken, AppError> {
    let header = header.ok_or_else(|| {
        AppError::Unauthorized(
            "Authentication credentials were not provided. Send Authorization: Bearer <token>."
                .to_owned(),
        )
    })?;
    let header = header
        .to_str()
        .map_err(|_| AppError::Unauthorized("Invalid Authorization header.".to_owned()))?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            AppError::Unauthorized(
                "Invalid Authorization header: expected \"Bearer <token>\".".to_owned(),
            )
        })?;
    let token = match lookup {
        TokenLookup::Database => api_tokens::authenticate(&state.pool, token).await?,
        TokenLookup::GatewayCache => authenticate_cached(state, token).await?,
    }
    .ok_or_else(|| AppError::Unauthorized("Invalid token.".to_owned()))?;
    if !grants(&token.scopes, scope) {
        return Err(AppError::Forbidden(format!(
            "You do not have permission to perform this action: the token lacks the {scope:?} scope."
        )));
    }
    Ok(token)
}

/// `token` from the gateway's cache while it is fresh and unexpired, else from the database
/// (unknown tokens are not cached, so a token created elsewhere works at once).
async fn authenticate_cached(state: &AppState, token: &str) -> Result<Option<ApiToken>, AppError> {
    let key = api_tokens::hash_token(token);
    let cache = state.cross.tokens();
    let lookups = &state.cross.metrics().gateway_token_lookups;
    if let Some(found) = cache.get(&key) {
        if found.expires_at.is_none_or(|at| at > chrono::Utc::now()) {
            lookups
                .get_or_create(&TokenSource { source: "cache" })
                .inc();
            return Ok(Some(found));
        }
        cache.remove(&key);
    }
    lookups
        .get_or_create(&TokenSource { source: "database" })
        .inc();
    let found = api_tokens::authenticate(&state.pool, token).await?;
    if let Some(found) = &found {
        cache.put(&key, found.clone());
    }
    Ok(found)
}

/// The caller identity forwarded by the control silo's gateway (see [`identity`]).
fn forwarded(state: &AppState, request: &Request, scope: &str) -> Result<ApiToken, AppError> {
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    let value = header(identity::IDENTITY_HEADER).unwrap_or_default();
    let forwarded = identity::verify(
        &state.cross.contract().rpc_secrets,
        request.uri().path(),
        value,
        header(identity::SIGNATURE_HEADER),
    )
    .map_err(|error| {
        tracing::warn!(%error, "refused forwarded identity");
        AppError::Unauthorized(format!("Invalid forwarded identity: {error}."))
    })?;
    if !grants(&forwarded.scopes, scope) {
        return Err(AppError::Forbidden(format!(
            "You do not have permission to perform this action: the token lacks the {scope:?} scope."
        )));
    }
    Ok(ApiToken {
        id: forwarded.token_id,
        token_last_four: String::new(),
        label: forwarded.label,
        scopes: forwarded.scopes,
        expires_at: None,
        date_created: chrono::Utc::now(),
    })
}

/// Whether `held` scopes allow `needed`: `x:admin` implies `x:write`, which implies `x:read`.
pub fn grants(held: &[String], needed: &str) -> bool {
    let Some((resource, level)) = needed.split_once(':') else {
        return held.iter().any(|s| s == needed);
    };
    let rank = |level: &str| match level {
        "read" => Some(0),
        "write" => Some(1),
        "admin" => Some(2),
        _ => None,
    };
    held.iter().any(|h| {
        if h == needed {
            return true;
        }
        match (h.split_once(':'), rank(level)) {
            (Some((r, l)), Some(want)) => r == resource && rank(l).is_some_and(|have| have >= want),
            _ => false,
        }
    })
}

async fn relay(state: &AppState, request: Request) -> Result<(Principal, Request), AppError> {
    let (parts, body) = request.into_parts();
    let relay_id = parts
        .headers
        .get(relay_auth::RELAY_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let signature = parts
        .headers
        .get(relay_auth::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = to_bytes(body, MAX_RELAY_BODY).await.map_err(|_| {
        AppError::BadRequest(format!(
            "Relay request body is unreadable or larger than {MAX_RELAY_BODY} bytes."
        ))
    })?;
    let secret = state.settings.relay_secret.as_deref().unwrap_or_default();
    let verified = match relay_id {
        None => Err(relay_auth::RelayAuthError::Missing),
        Some(_) => relay_auth::verify(secret, &bytes, signature.as_deref()),
    };
    if let Err(error) = verified {
        tracing::warn!(%error, "refused relay request");
        return Err(AppError::Unauthorized(format!(
            "Relay authentication failed: {error}"
        )));
    }
    let principal = Principal::Relay {
        relay_id: relay_id.unwrap_or_default(),
    };
    Ok((principal, Request::from_parts(parts, Body::from(bytes))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_levels_imply_lower_ones_of_the_same_resource() {
        let held = vec!["project:admin".to_owned(), "event:read".to_owned()];
        assert!(grants(&held, "project:read"));
        assert!(grants(&held, "project:write"));
        assert!(grants(&held, "event:read"));
        assert!(!grants(&held, "event:write"));
        assert!(!grants(&held, "org:read"));
        assert!(!grants(&[], "org:read"));
    }
}
