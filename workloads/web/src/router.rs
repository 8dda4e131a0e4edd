//! The whole HTTP surface of one web process, composed for its silo mode.

use axum::Router;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};

use crate::silo::{self, OffSiloHandler, RouteDef};
use crate::state::AppState;

/// Every route web knows, in every silo. A process serves the ones its mode allows.
pub fn routes() -> Vec<RouteDef> {
    let mut routes = crate::api::routes();
    routes.extend(crate::control::routes());
    routes
}

/// The API router for `state.mode`, with wrong-silo routes answering 404 with a reason.
pub fn router(state: AppState) -> Router {
    router_with(state, routes(), &silo::wrong_silo)
}

/// The router a process serves: in CONTROL mode region routes are proxied to the owning
/// region by the gateway; elsewhere [`router`].
pub fn app_router(state: AppState) -> Router {
    if state.mode == silo_contract::SiloMode::Control {
        let gateway = crate::control::gateway::off_silo(state.clone());
        router_with(state, routes(), &gateway)
    } else {
        router(state)
    }
}

/// The API router from an explicit route list and off-silo handler (the control silo's
/// gateway passes a proxy here).
pub fn router_with(state: AppState, routes: Vec<RouteDef>, off_silo: &OffSiloHandler) -> Router {
    silo::compose(&state, routes, state.mode, off_silo)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(state.clone(), crate::metrics::track))
        .with_state(state)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({"detail": "The requested resource does not exist"})),
    )
        .into_response()
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(serde_json::json!({"detail": "Method not allowed on this endpoint."})),
    )
        .into_response()
}
