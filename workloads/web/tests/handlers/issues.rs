//! Issues, events and alert rules over rows shaped like the ingest consumers write them.

use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use silo_contract::SiloMode;
use silo_store::PgPool;
use uuid::Uuid;

use crate::common::TestApp;

/// Store an issue with `events` events, the newest at `last_seen`; returns (group id, event ids).
async fn issue(
    pool: &PgPool,
    project_id: i64,
    fingerprint: &str,
    title: &str,
    last_seen: DateTime<Utc>,
    events: usize,
) -> (i64, Vec<Uuid>) {
    let ids: Vec<Uuid> = (0..events).map(|_| Uuid::new_v4()).collect();
    let first_seen = last_seen - Duration::seconds(events as i64);
    let (group_id,): (i64,) = sqlx::query_as(
        "INSERT INTO groups (project_id, fingerprint, title, culprit, level, type, first_seen, \
           last_seen, times_seen, first_event_id, last_event_id, metadata) \
         VALUES ($1, $2, $3, 'app.main', 'error', 'error', $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(project_id)
    .bind(fingerprint)
    .bind(title)
    .bind(first_seen)
    .bind(last_seen)
    .bind(events as i64)
    .bind(ids[0])
    .bind(ids[events - 1])
    .bind(json!({"type": title, "value": "boom"}))
    .fetch_one(pool)
    .await
    .expect("insert issue");
    for (i, id) in ids.iter().enumerate() {
        sqlx::query(
            "INSERT INTO events (project_id, event_id, group_id, \"timestamp\", title, message, \
               culprit, platform, level, environment, data) \
             VALUES ($1, $2, $3, $4, $5, 'boom', 'app.main', 'python', 'error', 'prod', $6)",
        )
        .bind(project_id)
        .bind(id)
        .bind(group_id)
        .bind(first_seen + Duration::seconds(i as i64 + 1))
        .bind(title)
        .bind(json!({
            "exception": {"values": [{"type": title, "value": "boom"}]},
            "tags": {"server": "a"},
            "user": {"id": "u1"},
        }))
        .execute(pool)
        .await
        .expect("insert event");
    }
    (group_id, ids)
}

fn titles(body: &serde_json::Value) -> Vec<String> {
    body.as_array()
        .expect("a list")
        .iter()
        .map(|i| i["title"].as_str().expect("title").to_owned())
        .collect()
}

#[tokio::test]
async fn issues_list_sort_filter_paginate_and_resolve() {
    let app = TestApp::new(SiloMode::Monolith).await;
    app.org_project_key("acme", "api").await;
    let project_id: i64 = app.get("/api/0/projects/acme/api/").await.body["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let now = Utc::now();
    let (old, _) = issue(
        &app.db.pool,
        project_id,
        "f1",
        "OldError",
        now - Duration::hours(2),
        5,
    )
    .await;
    let (mid, _) = issue(
        &app.db.pool,
        project_id,
        "f2",
        "MidError",
        now - Duration::hours(1),
        1,
    )
    .await;
    let (new, _) = issue(&app.db.pool, project_id, "f3", "NewError", now, 2).await;

    let list = app.get("/api/0/projects/acme/api/issues/").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert_eq!(titles(&list.body), ["NewError", "MidError", "OldError"]);
    let first = &list.body[0];
    assert_eq!(first["id"], new.to_string());
    assert_eq!(first["shortId"], "API-3");
    assert_eq!(first["count"], "2");
    assert_eq!(first["status"], "unresolved");
    assert_eq!(first["project"]["slug"], "api");
    assert_eq!(first["metadata"]["value"], "boom");
    assert_eq!(
        first["permalink"],
        format!("http://api.test/organizations/acme/issues/{new}/")
    );

    let freq = app.get("/api/0/projects/acme/api/issues/?sort=freq").await;
    assert_eq!(titles(&freq.body), ["OldError", "NewError", "MidError"]);
    let text = app.get("/api/0/projects/acme/api/issues/?query=mid").await;
    assert_eq!(titles(&text.body), ["MidError"]);

    // Page through two at a time, newest first.
    let page1 = app
        .get("/api/0/organizations/acme/issues/?per_page=2")
        .await;
    assert_eq!(titles(&page1.body), ["NewError", "MidError"]);
    let (next, more) = page1.cursor("next");
    assert!(more);
    let page2 = app
        .get(&format!(
            "/api/0/organizations/acme/issues/?per_page=2&cursor={next}"
        ))
        .await;
    assert_eq!(titles(&page2.body), ["OldError"]);
    assert!(!page2.cursor("next").1);

    // Resolve one: it leaves the default (unresolved) list and shows under is:resolved.
    let resolved = app
        .put(
            &format!("/api/0/issues/{mid}/"),
            json!({"status": "resolved"}),
        )
        .await;
    assert_eq!(resolved.status, StatusCode::OK, "{}", resolved.body);
    assert_eq!(resolved.body["status"], "resolved");
    assert!(resolved.body["statusDetails"]["resolvedAt"].is_string());
    let open = app.get("/api/0/projects/acme/api/issues/").await;
    assert_eq!(titles(&open.body), ["NewError", "OldError"]);
    let closed = app
        .get("/api/0/projects/acme/api/issues/?query=is:resolved")
        .await;
    assert_eq!(titles(&closed.body), ["MidError"]);
    let bad = app
        .put(
            &format!("/api/0/issues/{mid}/"),
            json!({"status": "ignored-forever"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let detail = app.get(&format!("/api/0/issues/{old}/")).await;
    assert_eq!(detail.body["count"], "5");
    let in_org = app
        .get(&format!("/api/0/organizations/acme/issues/{old}/"))
        .await;
    assert_eq!(in_org.body["id"], old.to_string());
    app.post("/api/0/organizations/", json!({"name": "other"}))
        .await;
    let wrong_org = app
        .get(&format!("/api/0/organizations/other/issues/{old}/"))
        .await;
    assert_eq!(wrong_org.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get("/api/0/issues/999999/").await.status,
        StatusCode::NOT_FOUND
    );
    app.finish().await;
}

#[tokio::test]
async fn issue_events_list_and_detail() {
    let app = TestApp::new(SiloMode::Region).await;
    app.org_project_key("acme", "api").await;
    let project_id: i64 = app.get("/api/0/projects/acme/api/").await.body["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (group, ids) = issue(&app.db.pool, project_id, "f", "KeyError", Utc::now(), 3).await;

    let list = app
        .get(&format!("/api/0/issues/{group}/events/?per_page=2"))
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let got: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventID"].as_str().unwrap())
        .collect();
    let hex = |u: &Uuid| u.simple().to_string();
    assert_eq!(got, [hex(&ids[2]), hex(&ids[1])], "newest first");
    assert!(list.cursor("next").1);
    let event = &list.body[0];
    assert_eq!(event["groupID"], group.to_string());
    assert_eq!(event["projectID"], project_id.to_string());
    assert_eq!(event["type"], "error");
    assert!(
        event["tags"]
            .as_array()
            .unwrap()
            .contains(&json!({"key": "server", "value": "a"}))
    );

    let detail = app
        .get(&format!(
            "/api/0/projects/acme/api/events/{}/",
            hex(&ids[0])
        ))
        .await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.body);
    assert_eq!(detail.body["entries"][0]["type"], "exception");
    assert_eq!(detail.body["environment"], "prod");
    let latest = app
        .get(&format!("/api/0/issues/{group}/events/latest/"))
        .await;
    assert_eq!(latest.body["eventID"], hex(&ids[2]));
    let oldest = app
        .get(&format!("/api/0/issues/{group}/events/oldest/"))
        .await;
    assert_eq!(oldest.body["eventID"], hex(&ids[0]));

    let missing = app
        .get(&format!(
            "/api/0/projects/acme/api/events/{}/",
            hex(&Uuid::new_v4())
        ))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let malformed = app.get("/api/0/projects/acme/api/events/xyz/").await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    app.finish().await;
}

#[tokio::test]
async fn alert_rules_and_notifications() {
    let app = TestApp::new(SiloMode::Region).await;
    app.org_project_key("acme", "api").await;
    let rule = app
        .post(
            "/api/0/projects/acme/api/rules/",
            json!({"name": "burst", "kind": "frequency", "threshold": 10,
                   "intervalSeconds": 60, "webhookUrl": "http://127.0.0.1:9/hook"}),
        )
        .await;
    assert_eq!(rule.status, StatusCode::CREATED, "{}", rule.body);
    assert_eq!(rule.body["kind"], "frequency");
    assert_eq!(rule.body["intervalSeconds"], 60);
    assert_eq!(rule.body["enabled"], true);
    let bad = app
        .post(
            "/api/0/projects/acme/api/rules/",
            json!({"name": "x", "kind": "frequency", "webhookUrl": "http://h"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body["detail"].as_str().unwrap().contains("threshold"));

    let rules = app.get("/api/0/projects/acme/api/rules/").await;
    assert_eq!(rules.body.as_array().unwrap().len(), 1);
    let rule_id = rule.body["id"].as_str().unwrap();

    // A notification as the post-processor records it.
    let project_id: i64 = app.get("/api/0/projects/acme/api/").await.body["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (group, ids) = issue(&app.db.pool, project_id, "f", "E", Utc::now(), 1).await;
    sqlx::query(
        "INSERT INTO notifications (rule_id, group_id, event_id, status, attempts) \
         VALUES ($1, $2, $3, 'delivered', 1)",
    )
    .bind(rule_id.parse::<i64>().unwrap())
    .bind(group)
    .bind(ids[0])
    .execute(&app.db.pool)
    .await
    .unwrap();
    let notes = app
        .get(&format!(
            "/api/0/projects/acme/api/rules/{rule_id}/notifications/"
        ))
        .await;
    assert_eq!(notes.status, StatusCode::OK, "{}", notes.body);
    assert_eq!(notes.body[0]["status"], "delivered");
    assert_eq!(notes.body[0]["issueId"], group.to_string());
    app.finish().await;
}
