//! Silo-aware routing: every route declares the silos that serve it and who may call it.
//!
//! ```text
//!  RouteDef { method, path, silos, access, handler }  (api::routes(), later control routes)
//!        │
//!  compose(mode) ── silos.served_by(mode)? ──yes──► access layer ──► handler
//!                                          └─no───► off-silo handler (default: 404 + reason)
//! ```
//!
//! A MONOLITH process serves every route; REGION serves region and shared routes; CONTROL
//! serves control and shared routes. A route the process does not serve still matches, and
//! answers with the off-silo handler, so a client is told which silo to ask instead of getting a
//! bare 404 (or, worse, a silent success on the wrong data).

use std::fmt;

use axum::Router;
use axum::extract::Request;
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use serde::Serialize;
use silo_contract::SiloMode;

use crate::auth::{self, Access};
use crate::state::AppState;

/// The silos a route belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Silos {
    /// Region data: organizations, projects, issues, events, relay configs.
    Region,
    /// Control data: directory, users, gateway, RPC.
    Control,
    /// Served by every process.
    All,
}

impl Silos {
    pub fn served_by(self, mode: SiloMode) -> bool {
        match self {
            Silos::All => true,
            Silos::Region => mode.serves_region(),
            Silos::Control => mode.serves_control(),
        }
    }

    /// The modes that serve this route, for error bodies.
    pub fn modes(self) -> Vec<SiloMode> {
        SiloMode::ALL
            .into_iter()
            .filter(|m| self.served_by(*m))
            .collect()
    }
}

impl fmt::Display for Silos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Silos::Region => "region",
            Silos::Control => "control",
            Silos::All => "all",
        })
    }
}

/// One endpoint: where it lives, who serves it, who may call it, and its handler.
pub struct RouteDef {
    pub method: Method,
    /// axum path syntax (`/api/0/organizations/{organization_slug}/`).
    pub path: &'static str,
    pub silos: Silos,
    pub access: Access,
    handler: MethodRouter<AppState>,
}

impl fmt::Debug for RouteDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteDef")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("silos", &self.silos)
            .field("access", &self.access)
            .finish()
    }
}

impl RouteDef {
    pub fn new<H, T>(
        method: Method,
        path: &'static str,
        silos: Silos,
        access: Access,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone())
            .unwrap_or_else(|_| unreachable!("routes use standard methods"));
        RouteDef {
            method,
            path,
            silos,
            access,
            handler: on(filter, handler),
        }
    }

    fn filter(&self) -> MethodFilter {
        MethodFilter::try_from(self.method.clone())
            .unwrap_or_else(|_| unreachable!("routes use standard methods"))
    }
}

/// What a process answers for a route that its silo does not serve. The control silo's
/// gateway replaces the default for org-scoped region routes with a proxy.
pub type OffSiloHandler = dyn Fn(&RouteDef, SiloMode) -> MethodRouter<AppState>;

/// The default off-silo answer: 404 with a body naming the silo that serves the route.
pub fn wrong_silo(route: &RouteDef, mode: SiloMode) -> MethodRouter<AppState> {
    let silos = route.silos;
    let filter = route.filter();
    on(filter, move |_req: Request| async move {
        wrong_silo_response(silos, mode)
    })
}

/// The 404 body for a route served by `silos`, asked of a process in `mode`.
pub fn wrong_silo_response(silos: Silos, mode: SiloMode) -> Response {
    let body = serde_json::json!({
        "detail": format!(
            "This endpoint is served by the {silos} silo; this process runs in {mode} mode. \
             Send the request to a {} process.",
            silos.modes().iter().map(|m| m.as_str()).collect::<Vec<_>>().join(" or "),
        ),
        "silo": silos,
        "servedBy": silos.modes(),
        "siloMode": mode,
    });
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

/// Build the router for `mode` from `routes`. Routes the mode serves get their access layer
/// and handler; the others get `off_silo`.
pub fn compose(
    state: &AppState,
    routes: Vec<RouteDef>,
    mode: SiloMode,
    off_silo: &OffSiloHandler,
) -> Router<AppState> {
    let mut router = Router::new();
    for route in routes {
        let method_router = if route.silos.served_by(mode) {
            let layer = from_fn_with_state((state.clone(), route.access), auth::check_access);
            route.handler.route_layer(layer)
        } else {
            off_silo(&route, mode)
        };
        router = router.route(route.path, method_router);
    }
    router
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monolith_serves_every_silo_and_the_others_only_their_own() {
        use SiloMode::{Control, Monolith, Region};
        let table = [
            (Silos::Region, [false, true, true]),
            (Silos::Control, [true, false, true]),
            (Silos::All, [true, true, true]),
        ];
        for (silos, expected) in table {
            let got = [Control, Region, Monolith].map(|m| silos.served_by(m));
            assert_eq!(got, expected, "{silos}");
        }
        assert_eq!(Silos::Region.modes(), vec![Region, Monolith]);
    }
}
