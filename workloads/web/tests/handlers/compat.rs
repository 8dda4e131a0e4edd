//! Sentry compatibility beyond ingest (issue 15): the API index, bulk issue changes, the
//! `ignored` status, search terms, the project events list and `context` from `extra`, over
//! rows shaped like the ingest consumers now write them (tags promoted into `events.tags`).

use axum::http::{Method, StatusCode};
use chrono::{Duration, Utc};
use serde_json::{Value, json};
use silo_contract::SiloMode;
use silo_store::PgPool;
use uuid::Uuid;

use crate::common::{TOKEN, TestApp, send};

/// One issue with one event carrying `tags` (also in the `tags` column) and `extra`.
async fn issue_with_event(
    pool: &PgPool,
    project_id: i64,
    title: &str,
    level: &str,
    environment: &str,
    release: &str,
    tags: Value,
) -> (i64, Uuid) {
    let event_id = Uuid::new_v4();
    let seen = Utc::now() - Duration::minutes(1);
    let (group_id,): (i64,) = sqlx::query_as(
        "INSERT INTO groups (project_id, fingerprint, title, culprit, level, type, first_seen, \
           last_seen, times_seen, first_event_id, last_event_id, metadata, user_count) \
         VALUES ($1, $2, $2, 'app.main', $3, 'error', $4, $4, 1, $5, $5, '{}', 1) RETURNING id",
    )
    .bind(project_id)
    .bind(title)
    .bind(level)
    .bind(seen)
    .bind(event_id)
    .fetch_one(pool)
    .await
    .expect("insert issue");
    let pairs: Vec<Value> = tags
        .as_object()
        .expect("tags object")
        .iter()
        .map(|(k, v)| json!([k, v]))
        .collect();
    sqlx::query(
        "INSERT INTO events (project_id, event_id, group_id, \"timestamp\", title, message, \
           culprit, platform, level, environment, release, data, tags) \
         VALUES ($1, $2, $3, $4, $5, '', 'app.main', 'rust', $6, $7, $8, $9, $10)",
    )
    .bind(project_id)
    .bind(event_id)
    .bind(group_id)
    .bind(seen)
    .bind(title)
    .bind(level)
    .bind(environment)
    .bind(release)
    .bind(json!({
        "tags": pairs,
        "user": {"id": tags["user"].as_str().unwrap_or("").trim_start_matches("id:")},
        "extra": {"order": 42},
    }))
    .bind(&tags)
    .execute(pool)
    .await
    .expect("insert event");
    (group_id, event_id)
}

async fn project_id(app: &TestApp, org: &str, project: &str) -> i64 {
    app.get(&format!("/api/0/projects/{org}/{project}/"))
        .await
        .body["id"]
        .as_str()
        .expect("project id")
        .parse()
        .expect("numeric project id")
}

fn titles(body: &Value) -> Vec<String> {
    let mut out: Vec<String> = body
        .as_array()
        .unwrap_or_else(|| panic!("a list: {body}"))
        .iter()
        .map(|i| i["title"].as_str().expect("title").to_owned())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn api_index_reports_the_tokens_scopes() {
    let app = TestApp::new(SiloMode::Monolith).await;
    let anonymous = send(&app.router, Method::GET, "/api/0/", None, None).await;
    assert_eq!(anonymous.status, StatusCode::OK, "{}", anonymous.body);
    assert_eq!(
        anonymous.body,
        json!({"version": "0", "auth": null, "user": null})
    );
    let authed = app.get("/api/0/").await;
    assert_eq!(authed.status, StatusCode::OK);
    let scopes = authed.body["auth"]["scopes"].as_array().unwrap();
    assert!(scopes.contains(&json!("event:write")), "{}", authed.body);
    let bad = send(&app.router, Method::GET, "/api/0/", None, Some("nope")).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    app.finish().await;
}

#[tokio::test]
async fn bulk_updates_resolve_ignore_and_reopen_only_issues_in_scope() {
    let app = TestApp::new(SiloMode::Monolith).await;
    app.org_project_key("acme", "api").await;
    app.org_project_key("other", "web").await;
    let api = project_id(&app, "acme", "api").await;
    let web = project_id(&app, "other", "web").await;
    let t = || json!({"user": "id:1"});
    let pool = &app.db.pool;
    let (a, _) = issue_with_event(pool, api, "A", "error", "prod", "1.0", t()).await;
    let (b, _) = issue_with_event(pool, api, "B", "error", "prod", "1.0", t()).await;
    let (c, _) = issue_with_event(pool, api, "C", "error", "prod", "1.0", t()).await;
    let (foreign, _) = issue_with_event(pool, web, "X", "error", "prod", "1.0", t()).await;
    let bulk = |query: String| format!("/api/0/projects/acme/api/issues/?{query}");

    // sentry-cli issues resolve -i A -i B
    let r = app
        .put(
            &bulk(format!("id={a}&id={b}")),
            json!({"status": "resolved"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "resolved");
    let open = app.get("/api/0/projects/acme/api/issues/").await;
    assert_eq!(titles(&open.body), ["C"]);
    let resolved = app
        .get("/api/0/projects/acme/api/issues/?query=is:resolved")
        .await;
    assert_eq!(titles(&resolved.body), ["A", "B"]);

    // sentry-cli issues mute -i C (legacy status "muted"), listed under is:ignored.
    let r = app
        .put(&bulk(format!("id={c}")), json!({"status": "muted"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "ignored");
    let ignored = app
        .get("/api/0/projects/acme/api/issues/?query=is:ignored")
        .await;
    assert_eq!(titles(&ignored.body), ["C"]);
    assert_eq!(ignored.body[0]["status"], "ignored");

    // An id of another project: 400 naming it, and nothing changes.
    let r = app
        .put(
            &bulk(format!("id={c}&id={foreign}")),
            json!({"status": "unresolved"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains(&foreign.to_string())
    );
    let still = app.get(&format!("/api/0/issues/{c}/")).await;
    assert_eq!(still.body["status"], "ignored");
    // Unknown statuses are refused.
    let r = app
        .put(&bulk(format!("id={a}")), json!({"status": "sleeping"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body["detail"].as_str().unwrap().contains("sleeping"));

    // sentry-cli issues unresolve -s resolved: every resolved issue of the project.
    let r = app
        .put(
            &bulk("status=resolved".into()),
            json!({"status": "unresolved"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let open = app.get("/api/0/projects/acme/api/issues/").await;
    assert_eq!(titles(&open.body), ["A", "B"]);
    // Nothing left to match: 204.
    let r = app
        .put(
            &bulk("status=resolved".into()),
            json!({"status": "unresolved"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // The other organization's issue was never touched.
    let x = app.get(&format!("/api/0/issues/{foreign}/")).await;
    assert_eq!(x.body["status"], "unresolved");

    // Single update: ignored for 30 minutes, echoed in statusDetails.
    let r = app
        .put(
            &format!("/api/0/issues/{a}/"),
            json!({"status": "ignored", "statusDetails": {"ignoreDuration": 30}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "ignored");
    assert_eq!(r.body["statusDetails"]["ignoreDuration"], 30);
    assert!(r.body["statusDetails"]["ignoreUntil"].is_string());
    assert_eq!(r.body["userCount"], 1);

    // Organization-wide bulk update by query (resolving in the next release needs a release
    // to be newer than), then bulk delete by id.
    let r = app
        .put(
            "/api/0/organizations/acme/issues/?query=is:unresolved",
            json!({"status": "resolvedInNextRelease"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = app
        .post(
            "/api/0/organizations/acme/releases/",
            json!({"version": "1.0", "projects": ["api"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app
        .put(
            "/api/0/organizations/acme/issues/?query=is:unresolved",
            json!({"status": "resolvedInNextRelease"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["statusDetails"]["inNextRelease"], true);
    let b_now = app.get(&format!("/api/0/issues/{b}/")).await;
    assert_eq!(b_now.body["status"], "resolved");
    assert_eq!(b_now.body["statusDetails"]["inNextRelease"], true);
    let r = send(
        &app.router,
        Method::DELETE,
        &bulk(format!("id={b}")),
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(
        app.get(&format!("/api/0/issues/{b}/")).await.status,
        StatusCode::NOT_FOUND
    );
    app.finish().await;
}

#[tokio::test]
async fn search_terms_select_issues_by_their_events() {
    let app = TestApp::new(SiloMode::Region).await;
    app.org_project_key("acme", "api").await;
    let p = project_id(&app, "acme", "api").await;
    let pool = &app.db.pool;
    issue_with_event(
        pool,
        p,
        "Prod",
        "error",
        "prod",
        "app@1.0",
        json!({"environment": "prod", "release": "app@1.0", "browser": "Firefox 120", "user": "id:7"}),
    )
    .await;
    issue_with_event(
        pool,
        p,
        "Staging",
        "warning",
        "staging",
        "app@2.0",
        json!({"environment": "staging", "release": "app@2.0", "browser": "Chrome", "user": "id:8"}),
    )
    .await;
    let a = &app;
    let search = |q: &str| {
        let path = format!("/api/0/projects/acme/api/issues/?query={}", urlencode(q));
        async move { a.get(&path).await }
    };
    for (query, want) in [
        ("environment:prod", vec!["Prod"]),
        ("!environment:prod", vec!["Staging"]),
        ("level:warning", vec!["Staging"]),
        ("release:app@2.0", vec!["Staging"]),
        (r#"browser:"Firefox 120""#, vec!["Prod"]),
        ("user.id:8", vec!["Staging"]),
        (
            "is:unresolved environment:staging level:warning",
            vec!["Staging"],
        ),
        ("environment:nowhere", vec![]),
        ("prod", vec!["Prod"]),
    ] {
        let r = search(query).await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.body);
        assert_eq!(titles(&r.body), want, "{query}");
    }
    for (query, needle) in [
        (r#"release:"app"#, "never closed"),
        ("has:user", "has:user"),
        ("is:sleeping", "is:sleeping"),
    ] {
        let r = search(query).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            r.body["detail"].as_str().unwrap().contains(needle),
            "{query}: {}",
            r.body
        );
    }
    let org = app
        .get("/api/0/organizations/acme/issues/?query=environment:staging")
        .await;
    assert_eq!(titles(&org.body), ["Staging"]);
    app.finish().await;
}

#[tokio::test]
async fn project_events_list_and_context_from_extra() {
    let app = TestApp::new(SiloMode::Region).await;
    app.org_project_key("acme", "api").await;
    let p = project_id(&app, "acme", "api").await;
    let (_, first) = issue_with_event(
        &app.db.pool,
        p,
        "One",
        "error",
        "prod",
        "1.0",
        json!({"environment": "prod"}),
    )
    .await;
    issue_with_event(
        &app.db.pool,
        p,
        "Two",
        "error",
        "prod",
        "1.0",
        json!({"environment": "prod"}),
    )
    .await;
    let list = app.get("/api/0/projects/acme/api/events/?per_page=1").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    assert!(list.cursor("next").1);
    let all = app.get("/api/0/projects/acme/api/events/").await;
    assert_eq!(all.body.as_array().unwrap().len(), 2);
    let detail = app
        .get(&format!(
            "/api/0/projects/acme/api/events/{}/",
            first.simple()
        ))
        .await;
    assert_eq!(detail.body["context"], json!({"order": 42}));
    assert!(
        detail.body["tags"]
            .as_array()
            .unwrap()
            .contains(&json!({"key": "environment", "value": "prod"}))
    );
    app.finish().await;
}

/// (title, status) of every issue of `acme/api`, any status, sorted.
async fn statuses(app: &TestApp) -> Vec<(String, String)> {
    let list = app
        .get("/api/0/projects/acme/api/issues/?query=&per_page=100")
        .await;
    let mut out: Vec<(String, String)> = list
        .body
        .as_array()
        .unwrap_or_else(|| panic!("a list: {}", list.body))
        .iter()
        .map(|i| {
            let text = |k: &str| i[k].as_str().unwrap_or_default().to_owned();
            (text("title"), text("status"))
        })
        .collect();
    out.sort();
    out
}

/// Every refused bulk request answers 400 with a reason and changes none of the issues it
/// named, in either scope: an id of another project or organization, an unknown status (in the
/// body or as a selector), an unbalanced quote or unsupported term in the query, a bad id.
#[tokio::test]
async fn refused_bulk_changes_write_nothing() {
    let app = TestApp::new(SiloMode::Monolith).await;
    app.org_project_key("acme", "api").await;
    app.org_project_key("other", "web").await;
    let api = project_id(&app, "acme", "api").await;
    let web = project_id(&app, "other", "web").await;
    let t = || json!({"environment": "prod"});
    let pool = &app.db.pool;
    let (a, _) = issue_with_event(pool, api, "A", "error", "prod", "1.0", t()).await;
    let (b, _) = issue_with_event(pool, api, "B", "error", "prod", "1.0", t()).await;
    let (foreign, _) = issue_with_event(pool, web, "X", "error", "prod", "1.0", t()).await;
    // A second project of acme: inside the organization, outside acme/api.
    let r = app
        .post(
            "/api/0/organizations/acme/projects/",
            json!({"name": "jobs", "slug": "jobs", "platform": "rust"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let jobs = project_id(&app, "acme", "jobs").await;
    let (sibling, _) = issue_with_event(pool, jobs, "J", "error", "prod", "1.0", t()).await;
    let before = statuses(&app).await;
    assert_eq!(
        before,
        [
            ("A".into(), "unresolved".into()),
            ("B".into(), "unresolved".into())
        ]
    );

    let project = "/api/0/projects/acme/api/issues/";
    let org = "/api/0/organizations/acme/issues/";
    let resolve = json!({"status": "resolved"});
    for (path, query, body, needle) in [
        (
            project,
            format!("id={a}&id={b}&id={foreign}"),
            &resolve,
            foreign.to_string(),
        ),
        (
            project,
            format!("id={a}&id={sibling}"),
            &resolve,
            sibling.to_string(),
        ),
        (
            org,
            format!("id={a}&id={b}&id={foreign}"),
            &resolve,
            foreign.to_string(),
        ),
        (
            project,
            format!("id={a}&id=abc"),
            &resolve,
            "abc".to_owned(),
        ),
        (
            project,
            format!("id={a}"),
            &json!({"status": "sleeping"}),
            "sleeping".to_owned(),
        ),
        (
            project,
            format!("id={a}"),
            &json!({"status": "ignored", "statusDetails": {"ignoreCount": -3}}),
            "ignoreCount".to_owned(),
        ),
        (
            org,
            "status=sleeping".to_owned(),
            &resolve,
            "sleeping".to_owned(),
        ),
        (
            project,
            format!("query={}", urlencode(r#"release:"1.0"#)),
            &resolve,
            "never closed".to_owned(),
        ),
        (
            org,
            format!("query={}", urlencode("is:unresolved has:user")),
            &resolve,
            "has:user".to_owned(),
        ),
    ] {
        let r = app.put(&format!("{path}?{query}"), body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{path}?{query}: {}",
            r.body
        );
        let detail = r.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(&needle), "{path}?{query}: {detail}");
        assert_eq!(
            statuses(&app).await,
            before,
            "{path}?{query} wrote something"
        );
    }
    // Deletes are refused the same way and delete nothing.
    for (path, query, needle) in [
        (project, format!("id={a}&id={foreign}"), foreign.to_string()),
        (org, format!("id={b}&id={foreign}"), foreign.to_string()),
        (
            project,
            format!("query={}", urlencode(r#"title:"A"#)),
            "never closed".to_owned(),
        ),
        (project, String::new(), "id=".to_owned()),
    ] {
        let r = send(
            &app.router,
            Method::DELETE,
            &format!("{path}?{query}"),
            None,
            Some(TOKEN),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "DELETE {path}?{query}: {}",
            r.body
        );
        let detail = r.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(&needle), "DELETE {path}?{query}: {detail}");
        assert_eq!(
            statuses(&app).await,
            before,
            "DELETE {path}?{query} deleted something"
        );
    }
    for id in [foreign, sibling] {
        let other = app.get(&format!("/api/0/issues/{id}/")).await;
        assert_eq!(other.body["status"], "unresolved", "{}", other.body);
    }
    // The same selection without the foreign id is accepted.
    let r = app
        .put(&format!("{project}?id={a}&id={b}"), resolve.clone())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        statuses(&app).await,
        [
            ("A".into(), "resolved".into()),
            ("B".into(), "resolved".into())
        ]
    );
    app.finish().await;
}

/// The event lists take the issue search syntax, applied to each event.
#[tokio::test]
async fn event_lists_take_search_queries() {
    let app = TestApp::new(SiloMode::Region).await;
    app.org_project_key("acme", "api").await;
    let p = project_id(&app, "acme", "api").await;
    let pool = &app.db.pool;
    let (prod, prod_event) = issue_with_event(
        pool,
        p,
        "Checkout failed",
        "error",
        "prod",
        "app@1.0",
        json!({"environment": "prod", "release": "app@1.0", "browser": "Firefox 120", "user": "id:7"}),
    )
    .await;
    let (_, staging_event) = issue_with_event(
        pool,
        p,
        "Cache miss",
        "warning",
        "staging",
        "app@2.0",
        json!({"environment": "staging", "release": "app@2.0", "user": "id:8"}),
    )
    .await;
    let ids = |body: &Value| -> Vec<String> {
        let mut out: Vec<String> = body
            .as_array()
            .unwrap_or_else(|| panic!("a list: {body}"))
            .iter()
            .map(|e| e["eventID"].as_str().expect("eventID").to_owned())
            .collect();
        out.sort();
        out
    };
    let prod_id = prod_event.simple().to_string();
    let staging_id = staging_event.simple().to_string();
    let mut both = vec![prod_id.clone(), staging_id.clone()];
    both.sort();
    for (query, want) in [
        ("", both.clone()),
        ("environment:prod", vec![prod_id.clone()]),
        ("!environment:prod", vec![staging_id.clone()]),
        ("level:warning", vec![staging_id.clone()]),
        ("release:app@1.0", vec![prod_id.clone()]),
        ("user.id:8", vec![staging_id.clone()]),
        (r#"browser:"Firefox 120""#, vec![prod_id.clone()]),
        ("!browser:Chrome", both.clone()),
        ("checkout", vec![prod_id.clone()]),
        ("is:unresolved", both.clone()),
        ("is:resolved", vec![]),
    ] {
        let path = format!(
            "/api/0/projects/acme/api/events/?query={}",
            urlencode(query)
        );
        let r = app.get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.body);
        assert_eq!(ids(&r.body), want, "{query}");
    }
    let issue_events = |q: &str| format!("/api/0/issues/{prod}/events/?query={}", urlencode(q));
    assert_eq!(
        ids(&app.get(&issue_events("user.id:7")).await.body),
        std::slice::from_ref(&prod_id)
    );
    assert_eq!(
        ids(&app.get(&issue_events("user.id:8")).await.body),
        Vec::<String>::new()
    );
    for (query, needle) in [(r#"release:"app"#, "never closed"), ("age:-1h", "age:-1h")] {
        for path in [
            format!(
                "/api/0/projects/acme/api/events/?query={}",
                urlencode(query)
            ),
            issue_events(query),
        ] {
            let r = app.get(&path).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.body);
            assert!(
                r.body["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(needle),
                "{path}: {}",
                r.body
            );
        }
    }
    app.finish().await;
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}
