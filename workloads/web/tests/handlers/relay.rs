//! The relay project-config endpoint: signed requests only, disabled keys, quotas.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;
use silo_contract::SiloMode;
use silo_protocol::relay_auth;

use crate::common::{RELAY_SECRET, Reply, TestApp, raw};

const PATH: &str = "/api/0/relays/projectconfigs/?version=3";

async fn configs(app: &TestApp, body: &serde_json::Value, secret: Option<&str>) -> Reply {
    let bytes = body.to_string();
    let mut request = Request::post(PATH).header("content-type", "application/json");
    if let Some(secret) = secret {
        request = request
            .header(relay_auth::RELAY_ID_HEADER, "relay-test")
            .header(
                relay_auth::SIGNATURE_HEADER,
                relay_auth::sign(secret, bytes.as_bytes()),
            );
    }
    raw(
        &app.router,
        request.body(Body::from(bytes)).expect("request"),
    )
    .await
}

#[tokio::test]
async fn signed_requests_get_configs_and_disabled_keys_are_marked() {
    let app = TestApp::new(SiloMode::Region).await;
    let key = app.org_project_key("acme", "api").await;
    let public = key["public"].as_str().unwrap().to_owned();
    let project_id = key["projectId"].as_i64().unwrap();
    let org_id: i64 = app.get("/api/0/organizations/acme/").await.body["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let limited = app
        .post(
            "/api/0/projects/acme/api/keys/",
            json!({"name": "limited", "rateLimit": {"count": 5, "window": 60}}),
        )
        .await;
    let limited_key = limited.body["public"].as_str().unwrap().to_owned();
    let disabled = app
        .post("/api/0/projects/acme/api/keys/", json!({"isActive": false}))
        .await;
    let disabled_key = disabled.body["public"].as_str().unwrap().to_owned();

    let body = json!({"publicKeys": [public, limited_key, disabled_key, "0123456789abcdef0123456789abcdef"]});
    let r = configs(&app, &body, Some(RELAY_SECRET)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let cfg = &r.body["configs"][&public];
    assert_eq!(cfg["projectId"], project_id);
    assert_eq!(cfg["organizationId"], org_id);
    assert_eq!(cfg["slug"], "api");
    assert_eq!(cfg["disabled"], false);
    assert_eq!(cfg["publicKeys"][0]["publicKey"], public);
    assert_eq!(cfg["publicKeys"][0]["isEnabled"], true);
    assert_eq!(cfg["config"]["quotas"], json!([]));

    let quota = &r.body["configs"][&limited_key]["config"]["quotas"][0];
    assert_eq!(quota["scope"], "key");
    assert_eq!(quota["limit"], 5);
    assert_eq!(quota["window"], 60);
    assert_eq!(quota["reasonCode"], "key_quota");

    assert_eq!(r.body["configs"][&disabled_key], json!({"disabled": true}));
    assert_eq!(
        r.body["configs"]["0123456789abcdef0123456789abcdef"],
        json!({"disabled": true}),
        "unknown keys are disabled"
    );

    // The protocol crate parses the answer.
    let parsed: silo_protocol::ProjectConfigResponse = serde_json::from_value(r.body).unwrap();
    assert_eq!(parsed.configs.len(), 4);

    // Disabling a key through the API is visible to the next fetch.
    app.put(
        &format!("/api/0/projects/acme/api/keys/{public}/"),
        json!({"isActive": false}),
    )
    .await;
    let again = configs(&app, &json!({"publicKeys": [public]}), Some(RELAY_SECRET)).await;
    assert_eq!(again.body["configs"][&public], json!({"disabled": true}));
    app.finish().await;
}

#[tokio::test]
async fn unsigned_or_badly_signed_requests_are_refused() {
    let app = TestApp::new(SiloMode::Region).await;
    let body = json!({"publicKeys": []});
    let unsigned = configs(&app, &body, None).await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
    assert!(
        unsigned.body["detail"]
            .as_str()
            .unwrap()
            .contains("Relay authentication failed")
    );

    let wrong = configs(&app, &body, Some("some-other-secret")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong.body["detail"]
            .as_str()
            .unwrap()
            .contains("does not match")
    );

    // A bearer token is not a relay credential.
    let bearer = crate::common::send(
        &app.router,
        axum::http::Method::POST,
        PATH,
        Some(body.clone()),
        Some(crate::common::TOKEN),
    )
    .await;
    assert_eq!(bearer.status, StatusCode::UNAUTHORIZED);

    // Signed but malformed: 400 naming the expected shape.
    let bad = configs(&app, &json!({"keys": 1}), Some(RELAY_SECRET)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body["detail"].as_str().unwrap().contains("publicKeys"));
    app.finish().await;
}
