//! Releases, deploys, commits and repositories; releases named by ingested events; issues
//! resolved in the next release.

use axum::http::{Method, StatusCode};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use silo_contract::SiloMode;
use silo_store::PgPool;
use silo_store::ingest::{self, NewEvent, SavedEvent};
use silo_store::releases;
use uuid::Uuid;

use crate::common::{TOKEN, TestApp, send};

const RELEASES: &str = "/api/0/organizations/acme/releases/";

/// `acme` with projects `api` (and `web`); returns the id of `api`.
async fn org_with_projects(app: &TestApp) -> i64 {
    let key = app.org_project_key("acme", "api").await;
    let r = app
        .post(
            "/api/0/organizations/acme/projects/",
            json!({"name": "web", "slug": "web", "platform": "javascript"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    key["projectId"].as_i64().expect("project id")
}

async fn delete(app: &TestApp, path: &str) -> crate::common::Reply {
    send(&app.router, Method::DELETE, path, None, Some(TOKEN)).await
}

fn slugs(release: &Value) -> Vec<&str> {
    release["projects"]
        .as_array()
        .expect("projects")
        .iter()
        .map(|p| p["slug"].as_str().expect("slug"))
        .collect()
}

fn versions(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|r| r["version"].as_str().expect("version"))
        .collect()
}

fn detail(message: &Value) -> &str {
    message["detail"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn releases_create_list_detail_finalize_and_delete() {
    let app = TestApp::new(SiloMode::Monolith).await;
    org_with_projects(&app).await;
    let version = "app@1.0.0+build.1";

    let r = app
        .post(
            RELEASES,
            json!({"version": version, "projects": ["api"], "ref": "abc123"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let release = &r.body;
    assert_eq!(release["version"], version);
    assert_eq!(release["shortVersion"], "1.0.0+build.1");
    assert_eq!(release["versionInfo"]["package"], "app");
    assert_eq!(release["ref"], "abc123");
    assert_eq!(release["dateReleased"], Value::Null);
    assert!(release["dateCreated"].as_str().unwrap().ends_with('Z'));
    assert_eq!(release["newGroups"], 0);
    assert_eq!(release["commitCount"], 0);
    assert_eq!(release["deployCount"], 0);
    assert_eq!(release["lastDeploy"], Value::Null);
    assert_eq!(release["authors"], json!([]));
    assert_eq!(release["firstEvent"], Value::Null);
    assert_eq!(slugs(release), ["api"]);
    assert!(release["projects"][0]["id"].is_i64());

    // The same version again: 208 Already Reported, with the new project linked.
    let again = app
        .post(
            RELEASES,
            json!({"version": version, "projects": ["api", "web"]}),
        )
        .await;
    assert_eq!(again.status, StatusCode::ALREADY_REPORTED, "{}", again.body);
    assert_eq!(again.body["id"], release["id"]);
    assert_eq!(
        again.body["ref"], "abc123",
        "an existing release keeps its fields"
    );
    assert_eq!(slugs(&again.body), ["api", "web"]);

    for (body, needle) in [
        (
            json!({"projects": ["api"]}),
            "version: This field is required",
        ),
        (json!({"version": " ", "projects": ["api"]}), "version"),
        (json!({"version": "a/b", "projects": ["api"]}), "a/b"),
        (json!({"version": "2.0"}), "projects"),
        (
            json!({"version": "2.0", "projects": ["api", "nope"]}),
            "nope",
        ),
        (
            json!({"version": "2.0", "projects": ["api"], "dateReleased": "today"}),
            "dateReleased",
        ),
    ] {
        let bad = app.post(RELEASES, body.clone()).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{body}: {}", bad.body);
        assert!(detail(&bad.body).contains(needle), "{body}: {}", bad.body);
    }

    let beta = app
        .post(
            RELEASES,
            json!({"version": "2.0-beta", "projects": ["web"]}),
        )
        .await;
    assert_eq!(beta.status, StatusCode::CREATED, "{}", beta.body);

    // Newest first, filtered by part of the version, paginated.
    let list = app.get(RELEASES).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(versions(&list.body), ["2.0-beta", version]);
    let list = app.get(&format!("{RELEASES}?query=BETA")).await;
    assert_eq!(versions(&list.body), ["2.0-beta"]);
    let first = app.get(&format!("{RELEASES}?per_page=1")).await;
    assert_eq!(versions(&first.body), ["2.0-beta"]);
    let (cursor, more) = first.cursor("next");
    assert!(more, "{}", first.link());
    let second = app
        .get(&format!("{RELEASES}?per_page=1&cursor={cursor}"))
        .await;
    assert_eq!(versions(&second.body), [version]);
    assert!(!second.cursor("next").1);
    let for_project = app.get("/api/0/projects/acme/web/releases/").await;
    assert_eq!(versions(&for_project.body), ["2.0-beta", version]);
    let for_project = app.get("/api/0/projects/acme/api/releases/").await;
    assert_eq!(versions(&for_project.body), [version]);

    // Detail by the raw or the percent-encoded version.
    let encoded = format!("{RELEASES}app%401.0.0%2Bbuild.1/");
    let got = app.get(&encoded).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.body["version"], version);
    let raw = app.get(&format!("{RELEASES}{version}/")).await;
    assert_eq!(raw.body["id"], got.body["id"]);

    // Finalize (what sentry-cli sends), then clear the ref.
    let finalized = app
        .put(
            &encoded,
            json!({"dateReleased": "2024-05-01T12:00:00.5Z", "url": "https://ci/1"}),
        )
        .await;
    assert_eq!(finalized.status, StatusCode::OK, "{}", finalized.body);
    assert_eq!(
        finalized.body["dateReleased"],
        "2024-05-01T12:00:00.500000Z"
    );
    assert_eq!(finalized.body["url"], "https://ci/1");
    assert_eq!(finalized.body["ref"], "abc123");
    let cleared = app.put(&encoded, json!({"ref": null})).await;
    assert_eq!(cleared.body["ref"], Value::Null);
    assert_eq!(cleared.body["dateReleased"], "2024-05-01T12:00:00.500000Z");
    let bad = app.put(&encoded, json!({"dateReleased": "soon"})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // Unknown organization or release: 404.
    for path in [
        "/api/0/organizations/nope/releases/".to_owned(),
        "/api/0/organizations/nope/releases/1.0/".to_owned(),
        format!("{RELEASES}9.9.9/"),
        "/api/0/projects/acme/nope/releases/".to_owned(),
    ] {
        let missing = app.get(&path).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            detail(&missing.body),
            "The requested resource does not exist"
        );
    }
    let missing = app
        .put(&format!("{RELEASES}9.9.9/"), json!({"ref": "x"}))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let deleted = delete(&app, &encoded).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    assert_eq!(app.get(&encoded).await.status, StatusCode::NOT_FOUND);
    assert_eq!(delete(&app, &encoded).await.status, StatusCode::NOT_FOUND);
    assert_eq!(versions(&app.get(RELEASES).await.body), ["2.0-beta"]);
    app.finish().await;
}

#[tokio::test]
async fn project_releases_deploys_commits_and_repos() {
    let app = TestApp::new(SiloMode::Region).await;
    org_with_projects(&app).await;
    let project_releases = "/api/0/projects/acme/api/releases/";
    let r = app.post(project_releases, json!({"version": "1.0"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(slugs(&r.body), ["api"]);
    let again = app.post(project_releases, json!({"version": "1.0"})).await;
    assert_eq!(again.status, StatusCode::ALREADY_REPORTED);
    // An existing release newly added to another project is created for that project.
    let web = app
        .post(
            "/api/0/projects/acme/web/releases/",
            json!({"version": "1.0"}),
        )
        .await;
    assert_eq!(web.status, StatusCode::CREATED, "{}", web.body);
    assert_eq!(slugs(&web.body), ["api", "web"]);
    let bad = app.post(project_releases, json!({})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(detail(&bad.body).contains("version"), "{}", bad.body);

    let deploys = format!("{RELEASES}1.0/deploys/");
    let empty = app.get(&deploys).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(empty.body, json!([]));
    let bad = app.post(&deploys, json!({"name": "no env"})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        detail(&bad.body).contains("environment: This field is required"),
        "{}",
        bad.body
    );
    let staging = app
        .post(
            &deploys,
            json!({"environment": "staging", "dateStarted": "2024-05-01T10:00:00Z",
                   "dateFinished": "2024-05-01T10:05:00Z"}),
        )
        .await;
    assert_eq!(staging.status, StatusCode::CREATED, "{}", staging.body);
    assert_eq!(staging.body["environment"], "staging");
    assert_eq!(staging.body["dateStarted"], "2024-05-01T10:00:00.000000Z");
    assert!(staging.body["id"].is_string());
    let prod = app
        .post(
            &deploys,
            json!({"environment": "production", "name": "deploy 7", "url": "https://ci/7"}),
        )
        .await;
    assert_eq!(prod.status, StatusCode::CREATED, "{}", prod.body);
    assert_eq!(prod.body["dateStarted"], Value::Null);
    assert!(prod.body["dateFinished"].as_str().unwrap().ends_with('Z'));

    let list = app.get(&deploys).await;
    let environments: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["environment"].as_str().unwrap())
        .collect();
    assert_eq!(environments, ["production", "staging"], "latest first");
    let release = app.get(&format!("{RELEASES}1.0/")).await;
    assert_eq!(release.body["deployCount"], 2);
    assert_eq!(release.body["lastDeploy"], prod.body);
    let listed = app.get(RELEASES).await;
    assert_eq!(listed.body[0]["lastDeploy"]["name"], "deploy 7");

    let commits = app.get(&format!("{RELEASES}1.0/commits/")).await;
    assert_eq!(commits.status, StatusCode::OK);
    assert_eq!(commits.body, json!([]));
    assert!(!commits.cursor("next").1);
    let repos = app.get("/api/0/organizations/acme/repos/").await;
    assert_eq!(repos.status, StatusCode::OK);
    assert_eq!(repos.body, json!([]));
    for path in [
        format!("{RELEASES}2.0/commits/"),
        format!("{RELEASES}2.0/deploys/"),
        "/api/0/organizations/nope/repos/".to_owned(),
    ] {
        assert_eq!(app.get(&path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    let missing = app
        .post(
            &format!("{RELEASES}2.0/deploys/"),
            json!({"environment": "prod"}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    app.finish().await;
}

/// An event of `project_id` in issue `fingerprint` from `release`, at `at`.
fn event(project_id: i64, fingerprint: &str, release: Option<&str>, at: DateTime<Utc>) -> NewEvent {
    NewEvent {
        project_id,
        event_id: Uuid::new_v4(),
        timestamp: at,
        received: at,
        title: fingerprint.to_owned(),
        message: fingerprint.to_owned(),
        culprit: String::new(),
        platform: "rust".to_owned(),
        level: "error".to_owned(),
        environment: Some("prod".to_owned()),
        release: release.map(str::to_owned),
        data: json!({}),
        fingerprint: fingerprint.to_owned(),
        group_type: "default".to_owned(),
        metadata: json!({}),
        tags: Vec::new(),
        user: None,
    }
}

/// What the consumers do with a batch: record its releases, then store its events.
async fn ingest_batch(pool: &PgPool, events: &[NewEvent]) -> Vec<SavedEvent> {
    releases::record_seen(pool, &releases::seen_in(events))
        .await
        .expect("record releases");
    let mut saved = Vec::new();
    for event in events {
        saved.push(ingest::save_event(pool, event).await.expect("save event"));
    }
    saved
}

#[tokio::test]
async fn an_ingested_event_creates_and_links_its_release() {
    let app = TestApp::new(SiloMode::Region).await;
    let api = org_with_projects(&app).await;
    let t0 = Utc::now() - Duration::minutes(10);
    let saved = ingest_batch(
        &app.db.pool,
        &[
            event(api, "boom", Some("2.1.0"), t0 + Duration::seconds(5)),
            event(api, "boom", Some("2.1.0"), t0),
            event(api, "other", None, t0),
            event(api, "bad", Some("latest"), t0),
        ],
    )
    .await;
    assert!(saved[0].is_new);

    let release = app.get(&format!("{RELEASES}2.1.0/")).await;
    assert_eq!(release.status, StatusCode::OK, "{}", release.body);
    assert_eq!(slugs(&release.body), ["api"]);
    assert_eq!(release.body["newGroups"], 1);
    assert_eq!(release.body["projects"][0]["newGroups"], 1);
    let at = |t: DateTime<Utc>| Value::from(silo_web::api::iso(t));
    assert_eq!(release.body["firstEvent"], at(t0));
    assert_eq!(release.body["lastEvent"], at(t0 + Duration::seconds(5)));
    assert_eq!(versions(&app.get(RELEASES).await.body), ["2.1.0"]);

    // A later batch moves lastEvent; replaying an old one changes nothing.
    let later = t0 + Duration::minutes(1);
    ingest_batch(&app.db.pool, &[event(api, "boom", Some("2.1.0"), later)]).await;
    ingest_batch(&app.db.pool, &[event(api, "boom", Some("2.1.0"), t0)]).await;
    let release = app.get(&format!("{RELEASES}2.1.0/")).await;
    assert_eq!(release.body["firstEvent"], at(t0));
    assert_eq!(release.body["lastEvent"], at(later));
    assert_eq!(release.body["newGroups"], 1);

    // A release created through the API first keeps its fields when events arrive.
    let r = app
        .post(
            RELEASES,
            json!({"version": "3.0", "projects": ["web"], "ref": "main"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    ingest_batch(&app.db.pool, &[event(api, "boom", Some("3.0"), later)]).await;
    let release = app.get(&format!("{RELEASES}3.0/")).await;
    assert_eq!(release.body["ref"], "main");
    assert_eq!(slugs(&release.body), ["api", "web"]);
    assert_eq!(release.body["newGroups"], 0, "boom was first seen in 2.1.0");

    // Issues first seen in a release keep it from being deleted.
    let refused = delete(&app, &format!("{RELEASES}2.1.0/")).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        detail(&refused.body).contains("referenced"),
        "{}",
        refused.body
    );
    app.finish().await;
}

#[tokio::test]
async fn resolved_in_next_release_reopens_only_for_a_newer_release() {
    let app = TestApp::new(SiloMode::Region).await;
    let api = org_with_projects(&app).await;
    let pool = &app.db.pool;
    let now = Utc::now();
    let bulk = |id: i64| format!("/api/0/projects/acme/api/issues/?id={id}");
    let next = json!({"status": "resolvedInNextRelease"});

    // Without any release there is nothing to be newer than.
    let first = ingest_batch(pool, &[event(api, "boom", None, now)]).await;
    let group = first[0].group_id;
    let refused = app.put(&bulk(group), next.clone()).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(
        detail(&refused.body).contains("No release data"),
        "{}",
        refused.body
    );

    ingest_batch(pool, &[event(api, "other", Some("0.9"), now)]).await;
    ingest_batch(pool, &[event(api, "boom", Some("1.0"), now)]).await;
    let resolved = app.put(&bulk(group), next.clone()).await;
    assert_eq!(resolved.status, StatusCode::OK, "{}", resolved.body);
    assert_eq!(resolved.body["status"], "resolved");
    assert_eq!(
        resolved.body["statusDetails"],
        json!({"inNextRelease": true})
    );
    let issue = app.get(&format!("/api/0/issues/{group}/")).await;
    assert_eq!(issue.body["status"], "resolved");
    assert_eq!(issue.body["statusDetails"]["inNextRelease"], true);

    // The release current at resolve time, no release, or an older release: still resolved.
    let saved = ingest_batch(
        pool,
        &[
            event(api, "boom", Some("1.0"), now),
            event(api, "boom", None, now),
            event(api, "boom", Some("0.9"), now),
        ],
    )
    .await;
    assert!(saved.iter().all(|s| !s.is_regression), "{saved:?}");
    let issue = app.get(&format!("/api/0/issues/{group}/")).await;
    assert_eq!(issue.body["status"], "resolved", "{}", issue.body);

    // An event from a release added after the resolution is a regression.
    let saved = ingest_batch(pool, &[event(api, "boom", Some("1.1"), now)]).await;
    assert!(saved[0].is_regression, "{saved:?}");
    let issue = app.get(&format!("/api/0/issues/{group}/")).await;
    assert_eq!(issue.body["status"], "unresolved");
    assert_eq!(issue.body["statusDetails"], json!({}));

    // The single-issue update resolves in the next release too (1.1 is now the newest);
    // resolved outright, any event reopens.
    let one = app.put(&format!("/api/0/issues/{group}/"), next).await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.body);
    assert_eq!(one.body["statusDetails"]["inNextRelease"], true);
    let saved = ingest_batch(pool, &[event(api, "boom", Some("1.0"), now)]).await;
    assert!(!saved[0].is_regression);
    app.put(&bulk(group), json!({"status": "resolved"})).await;
    let saved = ingest_batch(pool, &[event(api, "boom", Some("1.0"), now)]).await;
    assert!(saved[0].is_regression);
    app.finish().await;
}
