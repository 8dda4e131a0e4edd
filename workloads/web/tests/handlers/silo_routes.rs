//! Every registered route declares its silos and access, and each mode answers accordingly.
//! These checks never reach the database: wrong-silo and unauthenticated requests are
//! answered before any query.

use std::collections::HashSet;

use axum::http::StatusCode;
use silo_contract::SiloMode;
use silo_web::auth::Access;
use silo_web::{Silos, routes};

use crate::common::{TOKEN, send, state, unreachable_pool};

/// A concrete path for a route template.
fn concrete(template: &str) -> String {
    let mut path = template.to_owned();
    for (placeholder, value) in [
        ("{organization_id_or_slug}", "acme"),
        ("{project_id_or_slug}", "api"),
        ("{team_id_or_slug}", "team"),
        ("{key_id}", "0123456789abcdef0123456789abcdef"),
        ("{issue_id}", "1"),
        ("{event_id}", "0123456789abcdef0123456789abcdef"),
        ("{rule_id}", "1"),
        ("{method}", "create"),
        ("{version}", "app@1.0.0+build"),
    ] {
        path = path.replace(placeholder, value);
    }
    assert!(!path.contains('{'), "unknown placeholder in {template}");
    path
}

#[test]
fn routes_are_unique_and_shaped_like_sentry() {
    let mut seen = HashSet::new();
    let all = routes();
    assert!(
        all.len() >= 20,
        "expected the full API, got {} routes",
        all.len()
    );
    for route in &all {
        assert!(
            route.path.starts_with("/api/0/") && route.path.ends_with('/'),
            "{route:?} should look like /api/0/.../"
        );
        assert!(
            seen.insert((route.method.clone(), route.path)),
            "{route:?} is registered twice"
        );
        assert!(
            !route.silos.modes().is_empty(),
            "{route:?} is served by no silo mode"
        );
        assert!(
            route.silos.served_by(SiloMode::Monolith),
            "{route:?}: MONOLITH serves everything"
        );
    }
}

#[tokio::test]
async fn every_route_in_every_mode_answers_for_its_silo() {
    let pool = unreachable_pool();
    for mode in SiloMode::ALL {
        let router = silo_web::router(state(pool.clone(), mode));
        for route in routes() {
            let path = concrete(route.path);
            let body = (route.method == axum::http::Method::POST
                || route.method == axum::http::Method::PUT)
                .then(|| serde_json::json!({}));
            let reply = send(&router, route.method.clone(), &path, body, None).await;
            if route.silos.served_by(mode) && route.access == Access::Public {
                assert_eq!(
                    route.silos,
                    Silos::All,
                    "{route:?}: region data must not be public"
                );
                assert_eq!(
                    reply.status,
                    StatusCode::OK,
                    "{mode} {route:?}: {}",
                    reply.body
                );
            } else if route.silos.served_by(mode) {
                assert_eq!(
                    reply.status,
                    StatusCode::UNAUTHORIZED,
                    "{mode} {route:?} without credentials: {}",
                    reply.body
                );
                assert!(reply.body.get("siloMode").is_none());
            } else {
                assert_eq!(reply.status, StatusCode::NOT_FOUND, "{mode} {route:?}");
                assert_eq!(reply.body["siloMode"], mode.as_str(), "{}", reply.body);
                assert_eq!(reply.body["silo"], route.silos.to_string());
                let detail = reply.body["detail"].as_str().unwrap();
                assert!(
                    detail.contains(&format!("{} silo", route.silos)),
                    "{detail}"
                );
                assert!(detail.contains("REGION or MONOLITH") || route.silos != Silos::Region);
            }
        }
    }
}

#[tokio::test]
async fn control_mode_sends_region_requests_elsewhere_even_with_a_token() {
    let router = silo_web::router(state(unreachable_pool(), SiloMode::Control));
    let reply = send(
        &router,
        axum::http::Method::GET,
        "/api/0/organizations/acme/issues/",
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.body["silo"], "region");
    assert_eq!(
        reply.body["servedBy"],
        serde_json::json!(["REGION", "MONOLITH"])
    );
    let unknown = send(
        &router,
        axum::http::Method::GET,
        "/api/0/nothing/",
        None,
        None,
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.body.get("siloMode").is_none());
}

#[tokio::test]
async fn database_down_is_a_503_with_retry_after() {
    let router = silo_web::router(state(unreachable_pool(), SiloMode::Region));
    let reply = send(
        &router,
        axum::http::Method::GET,
        "/api/0/organizations/",
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert!(reply.body["detail"].as_str().unwrap().contains("database"));
    assert_eq!(reply.headers["retry-after"], "5");
}

/// The CONTROL process as deployed: region routes go through the gateway, which still
/// authenticates first; relay routes stay "wrong silo"; control and shared routes are served.
#[tokio::test]
async fn control_gateway_authenticates_before_proxying_and_keeps_relay_routes_local() {
    let router = silo_web::app_router(state(unreachable_pool(), SiloMode::Control));
    for route in routes() {
        let path = concrete(route.path);
        let body = (route.method == axum::http::Method::POST
            || route.method == axum::http::Method::PUT)
            .then(|| serde_json::json!({}));
        let reply = send(&router, route.method.clone(), &path, body, None).await;
        if route.access == Access::Relay {
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{route:?}");
            assert_eq!(reply.body["siloMode"], "CONTROL", "{}", reply.body);
        } else if route.access == Access::Public {
            assert_eq!(reply.status, StatusCode::OK, "{route:?}: {}", reply.body);
        } else {
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "CONTROL {route:?} without credentials: {}",
                reply.body
            );
        }
    }
}

#[test]
fn new_cross_silo_routes_declare_their_silos() {
    let all = routes();
    let find = |method: axum::http::Method, path: &str| {
        all.iter()
            .find(|r| r.method == method && r.path == path)
            .unwrap_or_else(|| panic!("{method} {path} is not registered"))
    };
    use axum::http::Method as M;
    assert_eq!(find(M::GET, "/api/0/organizations/").silos, Silos::All);
    assert_eq!(find(M::POST, "/api/0/organizations/").silos, Silos::All);
    let rpc_org = find(M::POST, "/api/0/internal/rpc/organization/{method}/");
    assert_eq!(
        (rpc_org.silos, rpc_org.access),
        (Silos::Region, Access::Rpc)
    );
    let rpc_outbox = find(M::POST, "/api/0/internal/rpc/outbox/{method}/");
    assert_eq!(
        (rpc_outbox.silos, rpc_outbox.access),
        (Silos::Control, Access::Rpc)
    );
    assert_eq!(
        find(
            M::POST,
            "/api/0/organizations/{organization_id_or_slug}/members/"
        )
        .silos,
        Silos::Region
    );
}

/// The endpoints of issue 15 with the silos and access each must declare: the API index is
/// answered everywhere without credentials, the rest is region data.
fn issue_15_endpoints() -> Vec<(axum::http::Method, &'static str, Silos, Access)> {
    use axum::http::Method as M;
    const ORG: &str = "/api/0/organizations/{organization_id_or_slug}";
    const PROJECT: &str = "/api/0/projects/{organization_id_or_slug}/{project_id_or_slug}";
    let r = |method: M, path: String, scope: &'static str| {
        let path: &'static str = Box::leak(path.into_boxed_str());
        (method, path, Silos::Region, Access::Scope(scope))
    };
    vec![
        (M::GET, "/api/0/", Silos::All, Access::Public),
        // Releases, deploys, commits, repositories.
        r(M::GET, format!("{ORG}/releases/"), "project:read"),
        r(M::POST, format!("{ORG}/releases/"), "project:write"),
        r(
            M::GET,
            format!("{ORG}/releases/{{version}}/"),
            "project:read",
        ),
        r(
            M::PUT,
            format!("{ORG}/releases/{{version}}/"),
            "project:write",
        ),
        r(
            M::DELETE,
            format!("{ORG}/releases/{{version}}/"),
            "project:admin",
        ),
        r(M::GET, format!("{PROJECT}/releases/"), "project:read"),
        r(M::POST, format!("{PROJECT}/releases/"), "project:write"),
        r(
            M::GET,
            format!("{ORG}/releases/{{version}}/deploys/"),
            "project:read",
        ),
        r(
            M::POST,
            format!("{ORG}/releases/{{version}}/deploys/"),
            "project:write",
        ),
        r(
            M::GET,
            format!("{ORG}/releases/{{version}}/commits/"),
            "project:read",
        ),
        r(M::GET, format!("{ORG}/repos/"), "org:read"),
        // Issue lists and bulk changes.
        r(M::GET, format!("{PROJECT}/issues/"), "event:read"),
        r(M::PUT, format!("{PROJECT}/issues/"), "event:write"),
        r(M::DELETE, format!("{PROJECT}/issues/"), "event:admin"),
        r(M::GET, format!("{ORG}/issues/"), "event:read"),
        r(M::PUT, format!("{ORG}/issues/"), "event:write"),
        r(M::DELETE, format!("{ORG}/issues/"), "event:admin"),
        r(
            M::PUT,
            "/api/0/issues/{issue_id}/".to_owned(),
            "event:write",
        ),
        // Events (searchable lists, detail with `context`).
        r(
            M::GET,
            "/api/0/issues/{issue_id}/events/".to_owned(),
            "event:read",
        ),
        r(M::GET, format!("{PROJECT}/events/"), "event:read"),
        r(
            M::GET,
            format!("{PROJECT}/events/{{event_id}}/"),
            "event:read",
        ),
    ]
}

/// Walks the registered routes and the routers built from them: every endpoint of issue 15 is
/// registered once with its silos and access; each silo mode serves it or names the silo that
/// does; the CONTROL process authenticates and proxies it (org-scoped ones to the region that
/// owns the organization, like every other org-scoped route) and answers the index itself.
#[tokio::test]
async fn sentry_compat_routes_declare_their_silos() {
    let all = routes();
    let pool = unreachable_pool();
    let gateway = silo_web::app_router(state(pool.clone(), SiloMode::Control));
    for (method, path, silos, access) in issue_15_endpoints() {
        let found: Vec<_> = all
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .collect();
        assert_eq!(found.len(), 1, "{method} {path} registered once");
        let route = found[0];
        assert_eq!(
            (route.silos, route.access),
            (silos, access),
            "{method} {path}"
        );
        if silos == Silos::Region && !path.starts_with("/api/0/issues/") {
            assert!(
                path.contains("{organization_id_or_slug}"),
                "{method} {path}: the gateway routes region data by organization"
            );
        }

        let concrete_path = concrete(path);
        let body = (method == axum::http::Method::POST || method == axum::http::Method::PUT)
            .then(|| serde_json::json!({}));
        for mode in SiloMode::ALL {
            let router = silo_web::router(state(pool.clone(), mode));
            let reply = send(&router, method.clone(), &concrete_path, body.clone(), None).await;
            let want = match (silos.served_by(mode), access) {
                (true, Access::Public) => StatusCode::OK,
                (true, _) => StatusCode::UNAUTHORIZED,
                (false, _) => StatusCode::NOT_FOUND,
            };
            assert_eq!(reply.status, want, "{mode} {method} {path}: {}", reply.body);
            if !silos.served_by(mode) {
                assert_eq!(reply.body["silo"], silos.to_string(), "{}", reply.body);
                assert_eq!(reply.body["siloMode"], mode.as_str());
            }
        }
        // Through the gateway: the index is answered by control itself, region routes are
        // authenticated before anything is proxied (no region is asked without a token).
        let reply = send(&gateway, method.clone(), &concrete_path, body, None).await;
        let want = if access == Access::Public {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(
            reply.status, want,
            "gateway {method} {path}: {}",
            reply.body
        );
        assert!(reply.body.get("siloMode").is_none(), "{}", reply.body);
    }
}
