//! Cross-silo pieces driven directly: the RPC client against a real loopback server (503
//! retries, timeouts), the RPC receiver (signature before anything runs, key rotation) and
//! forwarded identities at a region.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use prometheus_client::registry::Registry;
use silo_contract::{SiloContract, SiloMode, rpc};
use silo_runtime::ContractHandle;
use silo_web::control::identity;
use silo_web::control::{CrossSilo, CrossSiloMetrics, CrossSiloSettings, RpcClient, RpcError};

use crate::common::{database, raw, send, state};

fn contract(mode: SiloMode, keys: &[&str]) -> ContractHandle {
    ContractHandle::new(SiloContract {
        mode,
        region: None,
        directory_source: None,
        directory: silo_contract::RegionDirectory::default(),
        monolith_region: None,
        control_address: None,
        rpc_secrets: keys.iter().map(|k| (*k).to_owned()).collect(),
    })
}

fn metrics() -> Arc<CrossSiloMetrics> {
    Arc::new(CrossSiloMetrics::register(&mut Registry::default()))
}

/// A loopback server answering 503 for the first `failures` calls, then the RPC reply; it
/// checks the signature of every call.
async fn flaky_server(failures: usize, hits: Arc<AtomicUsize>) -> String {
    let app = axum::Router::new().route(
        "/api/0/internal/rpc/{service}/{method}/",
        axum::routing::post(move |request: Request<Body>| {
            let hits = hits.clone();
            async move {
                let n = hits.fetch_add(1, Ordering::SeqCst);
                let (parts, body) = request.into_parts();
                let bytes = axum::body::to_bytes(body, 1 << 20).await.expect("body");
                let auth = parts.headers.get("authorization").and_then(|v| v.to_str().ok());
                if rpc::verify(&["k".to_owned()], parts.uri.path(), &bytes, auth).is_err() {
                    return (StatusCode::UNAUTHORIZED, "bad signature".to_owned());
                }
                if n < failures {
                    return (StatusCode::SERVICE_UNAVAILABLE, r#"{"detail":"busy"}"#.to_owned());
                }
                let args: serde_json::Value = serde_json::from_slice(&bytes).expect("json args");
                (
                    StatusCode::OK,
                    serde_json::json!({"meta": {}, "value": {"echo": args["args"], "attempt": n + 1}})
                        .to_string(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn rpc_client_retries_503_and_gives_up_after_its_attempts() {
    let hits = Arc::new(AtomicUsize::new(0));
    let base = flaky_server(2, hits.clone()).await;
    let client = RpcClient::new(
        contract(SiloMode::Control, &["k"]),
        Duration::from_secs(5),
        4,
        metrics(),
    );
    let value: serde_json::Value = client
        .call(
            "region \"de\"",
            &base,
            "organization",
            "create",
            &serde_json::json!({"x": 1}),
        )
        .await
        .unwrap();
    assert_eq!(value["echo"]["x"], 1);
    assert_eq!(value["attempt"], 3, "two 503s, then success");

    let hits = Arc::new(AtomicUsize::new(0));
    let base = flaky_server(usize::MAX, hits.clone()).await;
    let client = RpcClient::new(
        contract(SiloMode::Control, &["k"]),
        Duration::from_secs(5),
        3,
        metrics(),
    );
    let err = client
        .call::<_, serde_json::Value>("region \"de\"", &base, "organization", "create", &1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RpcError::Unavailable { attempts: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("region \"de\""), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    // A key the server does not know is refused at once, without retries.
    let hits = Arc::new(AtomicUsize::new(0));
    let base = flaky_server(0, hits.clone()).await;
    let client = RpcClient::new(
        contract(SiloMode::Control, &["other"]),
        Duration::from_secs(5),
        3,
        metrics(),
    );
    let err = client
        .call::<_, serde_json::Value>("the control silo", &base, "outbox", "apply", &1)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RpcError::Rejected { .. } | RpcError::Unauthorized { .. }
        ),
        "{err}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn rpc_client_times_out_a_silent_peer() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(std::future::pending::<()>);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = RpcClient::new(
        contract(SiloMode::Control, &["k"]),
        Duration::from_millis(200),
        2,
        metrics(),
    );
    let err = client
        .call::<_, serde_json::Value>(
            "region \"us\"",
            &format!("http://{addr}"),
            "organization",
            "create",
            &1,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, RpcError::Unavailable { attempts: 2, .. }),
        "{err}"
    );
}

fn cross_state(pool: silo_store::PgPool, mode: SiloMode, keys: &[&str]) -> silo_web::AppState {
    let mut app_state = state(pool, mode);
    app_state.cross = CrossSilo::new(
        contract(mode, keys),
        CrossSiloSettings::default(),
        metrics(),
    );
    app_state
}

#[tokio::test]
async fn rpc_receiver_checks_the_signature_before_running_and_accepts_every_key() {
    let db = database().await;
    let router = silo_web::router(cross_state(
        db.pool.clone(),
        SiloMode::Region,
        &["new", "old"],
    ));
    let path = "/api/0/internal/rpc/organization/create/";
    let body =
        serde_json::json!({"meta": {}, "args": {"id": 99, "slug": "rpc-org", "name": "RPC"}})
            .to_string();
    let call = |key: Option<&str>| {
        let mut builder = Request::post(path).header("content-type", "application/json");
        if let Some(key) = key {
            builder = builder.header(
                "authorization",
                format!("Rpcsignature {}", rpc::sign(key, path, body.as_bytes())),
            );
        }
        builder.body(Body::from(body.clone())).unwrap()
    };
    for key in [None, Some("stale")] {
        let reply = raw(&router, call(key)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
        assert!(
            reply.body["detail"]
                .as_str()
                .unwrap()
                .contains("RPC authentication failed")
        );
    }
    assert!(
        silo_store::organizations::get(&db.pool, 99)
            .await
            .unwrap()
            .is_none(),
        "nothing ran"
    );
    // Signed with the second (older) key: accepted during a rotation.
    let reply = raw(&router, call(Some("old"))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["value"]["id"], 99);
    assert_eq!(reply.body["meta"], serde_json::json!({}));
    // The same call again is harmless (same id and slug).
    assert_eq!(raw(&router, call(Some("new"))).await.status, StatusCode::OK);
    let (queued,): (i64,) = sqlx::query_as("SELECT count(*) FROM region_outbox")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(queued, 1, "one organization.created message");
    db.drop_database().await;
}

#[tokio::test]
async fn region_accepts_a_signed_forwarded_identity_with_its_scopes_only() {
    let db = database().await;
    let router = silo_web::router(cross_state(db.pool.clone(), SiloMode::Region, &["k"]));
    let path = "/api/0/organizations/";
    let get = |scopes: &[&str], key: &str| {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        let forwarded = identity::for_path(5, "gateway", &scopes, path);
        let (value, signature) = identity::encode(&[key.to_owned()], &forwarded).unwrap();
        Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(identity::IDENTITY_HEADER, value)
            .header(identity::SIGNATURE_HEADER, signature)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        raw(&router, get(&["org:admin"], "k")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        raw(&router, get(&["project:read"], "k")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        raw(&router, get(&["org:read"], "wrong")).await.status,
        StatusCode::UNAUTHORIZED
    );
    // No identity and no token: still 401.
    assert_eq!(
        send(&router, Method::GET, path, None, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    db.drop_database().await;
}
