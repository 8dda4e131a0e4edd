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
            if route.silos.served_by(mode) {
                assert_ne!(
                    route.access,
                    Access::Public,
                    "{route:?}: region data must not be public"
                );
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
