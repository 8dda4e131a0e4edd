//! Organizations, projects, keys: create/list/detail, pagination, auth, bad input.

use axum::http::{Method, StatusCode};
use serde_json::json;
use silo_contract::SiloMode;

use crate::common::{RELAY_URL, TestApp, send};

#[tokio::test]
async fn organizations_create_list_detail_and_conflict() {
    let app = TestApp::new(SiloMode::Region).await;
    let r = app
        .post("/api/0/organizations/", json!({"name": "Acme Corp"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["slug"], "acme-corp");
    assert_eq!(r.body["name"], "Acme Corp");
    assert_eq!(r.body["status"]["id"], "active");
    assert!(r.body["id"].is_string(), "ids are strings: {}", r.body);
    assert!(r.body["dateCreated"].as_str().unwrap().ends_with('Z'));

    let dup = app
        .post(
            "/api/0/organizations/",
            json!({"name": "x", "slug": "acme-corp"}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert!(dup.body["detail"].as_str().unwrap().contains("acme-corp"));

    let detail = app.get("/api/0/organizations/acme-corp/").await;
    assert_eq!(detail.status, StatusCode::OK);
    assert_eq!(detail.body["id"], r.body["id"]);

    let list = app.get("/api/0/organizations/").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    assert!(!list.cursor("next").1 && !list.cursor("previous").1);

    let missing = app.get("/api/0/organizations/nope/").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.body["detail"],
        "The requested resource does not exist"
    );
    app.finish().await;
}

#[tokio::test]
async fn bad_input_is_a_400_with_a_reason() {
    let app = TestApp::new(SiloMode::Region).await;
    let bad_slug = app
        .post(
            "/api/0/organizations/",
            json!({"name": "x", "slug": "Not Valid"}),
        )
        .await;
    assert_eq!(bad_slug.status, StatusCode::BAD_REQUEST);
    assert!(bad_slug.body["detail"].as_str().unwrap().contains("slug"));

    let no_name = app.post("/api/0/organizations/", json!({})).await;
    assert_eq!(no_name.status, StatusCode::BAD_REQUEST);
    assert!(no_name.body["detail"].as_str().unwrap().contains("name"));

    let request = axum::http::Request::post("/api/0/organizations/")
        .header("authorization", format!("Bearer {}", crate::common::TOKEN))
        .header("content-type", "application/json")
        .body(axum::body::Body::from("{not json"))
        .unwrap();
    let bad_json = crate::common::raw(&app.router, request).await;
    assert_eq!(bad_json.status, StatusCode::BAD_REQUEST);
    assert!(
        bad_json.body["detail"]
            .as_str()
            .unwrap()
            .contains("Invalid JSON"),
        "{}",
        bad_json.body
    );

    let bad_id = app.get("/api/0/issues/not-a-number/").await;
    assert_eq!(bad_id.status, StatusCode::BAD_REQUEST);
    assert!(
        bad_id.body["detail"]
            .as_str()
            .unwrap()
            .contains("Invalid path")
    );

    let bad_cursor = app.get("/api/0/organizations/?cursor=garbage").await;
    assert_eq!(bad_cursor.status, StatusCode::BAD_REQUEST);
    assert!(
        bad_cursor.body["detail"]
            .as_str()
            .unwrap()
            .contains("cursor")
    );
    app.finish().await;
}

#[tokio::test]
async fn authentication_and_scopes() {
    let app = TestApp::new(SiloMode::Region).await;
    let none = send(
        &app.router,
        Method::GET,
        "/api/0/organizations/",
        None,
        None,
    )
    .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert!(none.body["detail"].as_str().unwrap().contains("Bearer"));
    assert_eq!(none.headers["www-authenticate"], "Bearer");

    let wrong = send(
        &app.router,
        Method::GET,
        "/api/0/organizations/",
        None,
        Some("not-a-token"),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body["detail"], "Invalid token.");

    silo_store::api_tokens::upsert(&app.db.pool, "reader", "ro", &["org:read".to_owned()])
        .await
        .unwrap();
    let read = send(
        &app.router,
        Method::GET,
        "/api/0/organizations/",
        None,
        Some("reader"),
    )
    .await;
    assert_eq!(read.status, StatusCode::OK);
    let write = send(
        &app.router,
        Method::POST,
        "/api/0/organizations/",
        Some(json!({"name": "x"})),
        Some("reader"),
    )
    .await;
    assert_eq!(write.status, StatusCode::FORBIDDEN);
    assert!(write.body["detail"].as_str().unwrap().contains("org:write"));
    app.finish().await;
}

#[tokio::test]
async fn pagination_walks_forward_and_back_with_link_headers() {
    let app = TestApp::new(SiloMode::Region).await;
    for i in 0..5 {
        let r = app
            .post("/api/0/organizations/", json!({"name": format!("org {i}")}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let slugs = |r: &crate::common::Reply| -> Vec<String> {
        r.body
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["slug"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = app.get("/api/0/organizations/?per_page=2").await;
    assert_eq!(slugs(&first), ["org-0", "org-1"]);
    assert!(
        first.link().contains("rel=\"next\"; results=\"true\""),
        "{}",
        first.link()
    );
    assert!(
        first
            .link()
            .starts_with("<http://api.test/api/0/organizations/?per_page=2&cursor=")
    );
    let (next, more) = first.cursor("next");
    assert!(more);

    let second = app
        .get(&format!("/api/0/organizations/?per_page=2&cursor={next}"))
        .await;
    assert_eq!(slugs(&second), ["org-2", "org-3"]);
    let (prev, has_prev) = second.cursor("previous");
    assert!(has_prev);

    let third = app
        .get(&format!(
            "/api/0/organizations/?per_page=2&cursor={}",
            second.cursor("next").0
        ))
        .await;
    assert_eq!(slugs(&third), ["org-4"]);
    assert!(!third.cursor("next").1, "last page has no next results");

    let back = app
        .get(&format!("/api/0/organizations/?per_page=2&cursor={prev}"))
        .await;
    assert_eq!(slugs(&back), ["org-0", "org-1"]);
    assert!(
        !back.cursor("previous").1,
        "first page has nothing before it"
    );

    let bad = app.get("/api/0/organizations/?per_page=0").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    app.finish().await;
}

#[tokio::test]
async fn projects_and_keys_with_dsn() {
    let app = TestApp::new(SiloMode::Region).await;
    let key = app.org_project_key("acme", "backend").await;
    let project = app.get("/api/0/projects/acme/backend/").await;
    assert_eq!(project.status, StatusCode::OK);
    let project_id = project.body["id"].as_str().unwrap().to_owned();
    assert_eq!(project.body["platform"], "rust");
    assert_eq!(project.body["organization"]["slug"], "acme");

    let public = key["public"].as_str().unwrap();
    let secret = key["secret"].as_str().unwrap();
    assert_eq!(public.len(), 32);
    assert_eq!(key["id"], public);
    assert_eq!(key["isActive"], true);
    assert_eq!(key["rateLimit"], serde_json::Value::Null);
    assert_eq!(key["projectId"].to_string(), project_id);
    let host = RELAY_URL.trim_start_matches("http://");
    assert_eq!(
        key["dsn"]["public"],
        format!("http://{public}@{host}/{project_id}")
    );
    assert_eq!(
        key["dsn"]["secret"],
        format!("http://{public}:{secret}@{host}/{project_id}")
    );

    // Same slug in the same org conflicts; another org may reuse it.
    let dup = app
        .post(
            "/api/0/organizations/acme/projects/",
            json!({"name": "backend"}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    app.post("/api/0/organizations/", json!({"name": "other"}))
        .await;
    let team = app
        .post(
            "/api/0/teams/other/any-team/projects/",
            json!({"name": "backend"}),
        )
        .await;
    assert_eq!(team.status, StatusCode::CREATED, "{}", team.body);

    let list = app.get("/api/0/organizations/acme/projects/").await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);

    // Update: disable and rate-limit the key, then clear the limit.
    let path = format!("/api/0/projects/acme/backend/keys/{public}/");
    let updated = app
        .put(
            &path,
            json!({"isActive": false, "rateLimit": {"count": 10, "window": 60}}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["isActive"], false);
    assert_eq!(
        updated.body["rateLimit"],
        json!({"count": 10, "window": 60})
    );
    let cleared = app.put(&path, json!({"rateLimit": null})).await;
    assert_eq!(cleared.body["rateLimit"], serde_json::Value::Null);
    assert_eq!(
        cleared.body["isActive"], false,
        "absent fields stay as they were"
    );
    let bad = app
        .put(&path, json!({"rateLimit": {"count": 1, "window": 0}}))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let second = app
        .post("/api/0/projects/acme/backend/keys/", json!({"name": "CI"}))
        .await;
    assert_eq!(second.body["name"], "CI");
    let keys = app.get("/api/0/projects/acme/backend/keys/").await;
    assert_eq!(keys.body.as_array().unwrap().len(), 2);

    let deleted = send(
        &app.router,
        Method::DELETE,
        &path,
        None,
        Some(crate::common::TOKEN),
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path).await.status, StatusCode::NOT_FOUND);
    app.finish().await;
}
