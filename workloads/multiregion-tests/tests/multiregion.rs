//! A control process and regions `us` and `de` (each its own database, one directory):
//! organizations created through control land in their region, the gateway routes to them,
//! RPC is signed and rotatable, and region changes reach control through the outbox even
//! across a control outage. A MONOLITH process serves the same API alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use silo_contract::rpc;
use silo_multiregion_tests::{Api, Fleet, FleetOptions, Monolith, Silo};
use silo_testkit::wait::until;

const DEADLINE: Duration = Duration::from_secs(30);

async fn create_org(api: &Api, slug: &str, region: Option<&str>) -> Value {
    let mut body = json!({"name": format!("Org {slug}"), "slug": slug});
    if let Some(region) = region {
        body["region"] = json!(region);
    }
    let r = api.post("/api/0/organizations/", body).await;
    assert_eq!(r.status, 201, "create {slug}: {}", r.body);
    r.body
}

fn slugs(list: &Value) -> Vec<String> {
    let mut slugs: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("expected a list, got {list}"))
        .iter()
        .map(|o| o["slug"].as_str().unwrap_or_default().to_owned())
        .collect();
    slugs.sort();
    slugs
}

/// Post a signed RPC call to `base` with `key`.
async fn rpc_call(base: &str, path: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
    let bytes = body.to_string().into_bytes();
    let mut request = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(bytes.clone());
    if let Some(key) = key {
        request = request.header(
            "authorization",
            format!("{} {}", rpc::SCHEME, rpc::sign(key, path, &bytes)),
        );
    }
    let response = request.send().await.expect("rpc request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizations_live_in_their_region_and_the_gateway_routes_to_them() {
    let mut fleet = Fleet::start(FleetOptions::default()).await;
    let control = fleet.api(Silo::Control);
    let us = fleet.api(Silo::Us);
    let de = fleet.api(Silo::De);

    let in_us = create_org(&control, "acme-us", Some("us")).await;
    let in_de = create_org(&control, "acme-de", Some("de")).await;
    let default = create_org(&control, "acme-default", None).await;
    assert_eq!(in_de["links"]["regionUrl"], fleet.de.base_url());
    assert_eq!(
        default["links"]["regionUrl"],
        fleet.us.base_url(),
        "default is SENTRY_MONOLITH_REGION"
    );
    // Ids are strings, unique across regions.
    let ids: Vec<&str> = [&in_us, &in_de, &default]
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );

    // Slugs are unique across regions; unknown regions are refused with the known ones.
    let dup = control
        .post(
            "/api/0/organizations/",
            json!({"name": "x", "slug": "acme-us", "region": "de"}),
        )
        .await;
    assert_eq!(dup.status, 409, "{}", dup.body);
    let bad = control
        .post(
            "/api/0/organizations/",
            json!({"name": "x", "slug": "x-1", "region": "mars"}),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(
        bad.body["detail"].as_str().unwrap().contains("de, us"),
        "{}",
        bad.body
    );

    // The directory lists all three; each region only its own.
    let listed = control.get("/api/0/organizations/").await;
    assert_eq!(slugs(&listed.body), ["acme-de", "acme-default", "acme-us"]);
    assert_eq!(
        slugs(&us.get("/api/0/organizations/").await.body),
        ["acme-default", "acme-us"]
    );
    assert_eq!(
        slugs(&de.get("/api/0/organizations/").await.body),
        ["acme-de"]
    );

    // Through the gateway: detail, create a project, list with a query, proxy URL header.
    let detail = control.get("/api/0/organizations/acme-de/").await;
    assert_eq!(detail.status, 200, "{}", detail.body);
    assert_eq!(detail.body["id"], in_de["id"]);
    assert_eq!(
        detail.header("x-sentry-proxy-url"),
        Some(format!("{}/api/0/organizations/acme-de/", fleet.de.base_url()).as_str())
    );
    for name in ["api", "web"] {
        let p = control
            .post(
                "/api/0/organizations/acme-de/projects/",
                json!({"name": name, "slug": name, "platform": "rust"}),
            )
            .await;
        assert_eq!(p.status, 201, "{}", p.body);
    }
    let page = control
        .get("/api/0/organizations/acme-de/projects/?per_page=1")
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        page.body.as_array().map(Vec::len),
        Some(1),
        "query per_page=1 preserved"
    );
    assert!(
        page.header("link")
            .unwrap_or_default()
            .contains("results=\"true\"")
    );
    assert!(
        page.header("x-sentry-proxy-url")
            .unwrap()
            .ends_with("/projects/?per_page=1")
    );
    let project = control.get("/api/0/projects/acme-de/api/").await;
    assert_eq!(
        (project.status, project.body["slug"].as_str()),
        (200, Some("api"))
    );

    // The endpoints of issue 15 route like every org-scoped one: to `de`, with the proxy URL,
    // Sentry's status codes kept (201, 208, 400, 204) and the data written only there.
    let de_url = |path: &str| format!("{}{path}", fleet.de.base_url());
    let releases = "/api/0/organizations/acme-de/releases/";
    let created = control
        .post(releases, json!({"version": "app@1.0", "projects": ["api"]}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.header("x-sentry-proxy-url"),
        Some(de_url(releases).as_str())
    );
    let again = control
        .post(releases, json!({"version": "app@1.0", "projects": ["api"]}))
        .await;
    assert_eq!(again.status, 208, "{}", again.body);
    let bad = control
        .post(releases, json!({"version": "a/b", "projects": ["api"]}))
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(
        bad.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("a/b")
    );
    let release = "/api/0/organizations/acme-de/releases/app%401.0/";
    let finalized = control
        .put(release, json!({"dateReleased": "2026-01-02T03:04:05Z"}))
        .await;
    assert_eq!(finalized.status, 200, "{}", finalized.body);
    assert_eq!(
        finalized.body["dateReleased"],
        "2026-01-02T03:04:05.000000Z"
    );
    let deploy = control
        .post(
            &format!("{release}deploys/"),
            json!({"environment": "production"}),
        )
        .await;
    assert_eq!(deploy.status, 201, "{}", deploy.body);
    for path in [
        releases.to_owned(),
        "/api/0/projects/acme-de/api/releases/".to_owned(),
        format!("{release}deploys/"),
        format!("{release}commits/"),
        "/api/0/organizations/acme-de/repos/".to_owned(),
        "/api/0/organizations/acme-de/issues/?query=is:unresolved".to_owned(),
        "/api/0/projects/acme-de/api/issues/".to_owned(),
        "/api/0/projects/acme-de/api/events/?query=environment:production".to_owned(),
    ] {
        let r = control.get(&path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert!(r.body.is_array(), "{path}: {}", r.body);
        assert_eq!(
            r.header("x-sentry-proxy-url"),
            Some(de_url(&path).as_str()),
            "{path}"
        );
    }
    let listed = de.get(releases).await;
    assert_eq!(listed.body[0]["version"], "app@1.0");
    assert_eq!(listed.body[0]["deployCount"], 1);
    assert_eq!(
        us.get(releases).await.status,
        404,
        "nothing of acme-de in us"
    );
    // Bulk issue changes with nothing to change, and a search term that is refused.
    let bulk = control
        .put(
            "/api/0/projects/acme-de/api/issues/?status=unresolved",
            json!({"status": "resolved"}),
        )
        .await;
    assert_eq!(bulk.status, 204, "{}", bulk.body);
    let refused = control
        .get("/api/0/organizations/acme-de/issues/?query=has:user")
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let deleted = control.delete(release).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    // The API index is control's own answer.
    let index = control.get("/api/0/").await;
    assert_eq!(index.status, 200, "{}", index.body);
    assert!(index.header("x-sentry-proxy-url").is_none());
    assert!(index.body["auth"]["scopes"].is_array(), "{}", index.body);

    // Org-less region routes go to the monolith region (`us`).
    let orgless = control.get("/api/0/issues/1/").await;
    assert_eq!(orgless.status, 404, "{}", orgless.body);
    assert_eq!(
        orgless.header("x-sentry-proxy-url"),
        Some(format!("{}/api/0/issues/1/", fleet.us.base_url()).as_str())
    );

    // `de` data is not readable from `us` directly.
    assert_eq!(us.get("/api/0/organizations/acme-de/").await.status, 404);
    assert_eq!(us.get("/api/0/projects/acme-de/api/").await.status, 404);
    assert_eq!(de.get("/api/0/organizations/acme-de/").await.status, 200);

    // Unknown organization, unauthenticated caller, wrong token.
    assert_eq!(control.get("/api/0/organizations/nope/").await.status, 404);
    let anonymous = Api::new(fleet.control.base_url(), "wrong-token");
    assert_eq!(
        anonymous.get("/api/0/organizations/acme-de/").await.status,
        401
    );
    // A forged identity header sent straight to the region is refused.
    let forged = reqwest::Client::new()
        .get(format!(
            "{}/api/0/organizations/acme-de/",
            fleet.de.base_url()
        ))
        .header("x-silo-identity", "eyJ0b2tlbklkIjoxfQ")
        .header("x-silo-identity-signature", "Rpcsignature rpc0:00")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);

    // RPC: unsigned or wrongly signed calls are refused and change nothing.
    let args = json!({"meta": {}, "args": {"id": 42, "slug": "sneaky", "name": "Sneaky"}});
    let path = "/api/0/internal/rpc/organization/create/";
    assert_eq!(
        rpc_call(&fleet.de.base_url(), path, &args, None).await.0,
        401
    );
    assert_eq!(
        rpc_call(&fleet.de.base_url(), path, &args, Some("not-the-secret"))
            .await
            .0,
        401
    );
    assert_eq!(de.get("/api/0/organizations/sneaky/").await.status, 404);
    let (status, reply) = rpc_call(&fleet.de.base_url(), path, &args, Some("fleet-secret-1")).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["value"]["slug"], "sneaky");
    assert!(reply["meta"].is_object());

    // A region that is down: 503 naming it; the other region still answers.
    fleet.process(Silo::De).stop(Duration::from_secs(10)).await;
    let down = control.get("/api/0/organizations/acme-de/").await;
    assert_eq!(down.status, 503, "{}", down.body);
    assert!(
        down.body["detail"].as_str().unwrap().contains("\"de\""),
        "{}",
        down.body
    );
    assert_eq!(
        control.get("/api/0/organizations/acme-us/").await.status,
        200
    );
    let refused = control
        .post(
            "/api/0/organizations/",
            json!({"name": "x", "slug": "late-de", "region": "de"}),
        )
        .await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("region \"de\""),
        "{}",
        refused.body
    );
    // The slug was released: it can be taken in another region.
    create_org(&control, "late-de", Some("us")).await;

    // `de` comes back on another address; the directory file changes and the running control
    // process follows it without a restart.
    fleet.de.addr = silo_testkit::free_addr();
    fleet.write_directory();
    fleet.de.start();
    fleet.de.wait_ready(Duration::from_secs(60)).await;
    let moved = format!("{}/api/0/organizations/acme-de/", fleet.de.base_url());
    until("the gateway to follow the new directory", DEADLINE, || {
        let (control, moved) = (control.clone(), moved.clone());
        async move {
            let r = control.get("/api/0/organizations/acme-de/").await;
            match (r.status, r.header("x-sentry-proxy-url")) {
                (200, Some(url)) if url == moved => Ok(()),
                (status, url) => Err(format!("{status} via {url:?}")),
            }
        }
    })
    .await;

    fleet.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_outage_leaves_a_backlog_that_catches_up() {
    let mut fleet = Fleet::start(FleetOptions::default()).await;
    let control = fleet.api(Silo::Control);
    let de = fleet.api(Silo::De);
    create_org(&control, "keep", Some("de")).await;
    create_org(&control, "doomed", Some("de")).await;
    let de_pool = fleet.de_db.pool.clone();
    let backlog = |pool: sqlx::PgPool| async move {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM region_outbox")
            .fetch_one(&pool)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<i64, String>(n)
    };
    until("the creation messages to drain", DEADLINE, || {
        let pool = de_pool.clone();
        async move {
            match backlog(pool).await? {
                0 => Ok(()),
                n => Err(format!("{n} pending")),
            }
        }
    })
    .await;

    fleet
        .process(Silo::Control)
        .stop(Duration::from_secs(10))
        .await;
    let renamed = de
        .put(
            "/api/0/organizations/keep/",
            json!({"name": "Kept", "slug": "kept"}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    let member = de
        .post(
            "/api/0/organizations/kept/members/",
            json!({"email": "Ana@Example.com", "role": "admin"}),
        )
        .await;
    assert_eq!(member.status, 201, "{}", member.body);
    assert_eq!(member.body["email"], "ana@example.com");
    let fresh = de
        .post(
            "/api/0/organizations/",
            json!({"name": "Direct", "slug": "direct-de"}),
        )
        .await;
    assert_eq!(fresh.status, 201, "{}", fresh.body);
    assert_eq!(de.delete("/api/0/organizations/doomed/").await.status, 202);

    // The backlog stays while control is down (the drain retries with backoff).
    let pending = backlog(de_pool.clone()).await.unwrap();
    assert_eq!(pending, 4, "rename, member, create, delete are queued");

    fleet.process(Silo::Control).start();
    fleet
        .process(Silo::Control)
        .wait_ready(Duration::from_secs(60))
        .await;
    let control = fleet.api(Silo::Control);
    let listed = until("the directory to catch up", DEADLINE, || {
        let control = control.clone();
        async move {
            let list = control.get("/api/0/organizations/").await.body;
            let got = slugs(&list);
            let doomed = list
                .as_array()
                .into_iter()
                .flatten()
                .find(|o| o["slug"] == "doomed");
            let deleted = doomed.is_some_and(|o| o["status"]["id"] == "pending_deletion");
            if got == ["direct-de", "doomed", "kept"] && deleted {
                Ok(list)
            } else {
                Err(list.to_string())
            }
        }
    })
    .await;
    let kept = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["slug"] == "kept")
        .unwrap();
    assert_eq!(kept["name"], "Kept");
    until("the outbox to empty", DEADLINE, || {
        let pool = de_pool.clone();
        async move {
            match backlog(pool).await? {
                0 => Ok(()),
                n => Err(format!("{n} pending")),
            }
        }
    })
    .await;
    let control_pool = fleet.control_db.pool.clone();
    let kept_id: i64 = kept["id"].as_str().unwrap().parse().unwrap();
    let members: Vec<(String,)> = sqlx::query_as(
        "SELECT u.email FROM organization_member_mappings m JOIN users u ON u.id = m.user_id \
         WHERE m.organization_id = $1",
    )
    .bind(kept_id)
    .fetch_all(&control_pool)
    .await
    .unwrap();
    assert_eq!(members, vec![("ana@example.com".to_owned(),)]);
    // The renamed slug routes through the gateway; the old one no longer does.
    let via_gateway = until("the gateway to route the new slug", DEADLINE, || {
        let control = control.clone();
        async move {
            let r = control.get("/api/0/organizations/kept/").await;
            if r.status == 200 {
                Ok(r)
            } else {
                Err(r.body.to_string())
            }
        }
    })
    .await;
    assert_eq!(via_gateway.body["name"], "Kept");
    assert_eq!(control.get("/api/0/organizations/keep/").await.status, 404);

    // Delivering the same messages again changes nothing (receipts make it idempotent).
    let (receipts,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM outbox_receipts WHERE region_name = 'de'")
            .fetch_one(&control_pool)
            .await
            .unwrap();
    let (first_id,): (i64,) =
        sqlx::query_as("SELECT min(outbox_id) FROM outbox_receipts WHERE region_name = 'de'")
            .fetch_one(&control_pool)
            .await
            .unwrap();
    let replay = json!({"meta": {}, "args": {"region": "de", "messages": [{
        "id": first_id, "category": "organization.renamed", "shardId": kept_id, "objectId": kept_id,
        "payload": {"id": kept_id, "slug": "hijacked", "name": "Hijacked", "status": "active",
                    "dateCreated": "2026-01-01T00:00:00Z"}
    }]}});
    let (status, reply) = rpc_call(
        &fleet.control.base_url(),
        "/api/0/internal/rpc/outbox/apply/",
        &replay,
        Some("fleet-secret-1"),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["value"]["receipts"][0]["outcome"], "duplicate");
    assert_eq!(
        control.get("/api/0/organizations/hijacked/").await.status,
        404
    );
    let (after,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM outbox_receipts WHERE region_name = 'de'")
            .fetch_one(&control_pool)
            .await
            .unwrap();
    assert_eq!(after, receipts);
    de_pool.close().await;
    control_pool.close().await;
    fleet.finish().await;
}

/// The value of `series` (a metric name with its label set) in a Prometheus text
/// exposition, 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|line| line.strip_prefix(series))
        .filter_map(|rest| rest.trim().parse::<f64>().ok())
        .next()
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_reuses_an_authenticated_token_only_for_its_ttl() {
    let fleet = Fleet::start(FleetOptions {
        env: vec![("SILO_GATEWAY_TOKEN_CACHE_TTL".into(), "2s".into())],
        ..FleetOptions::default()
    })
    .await;
    let control = fleet.api(Silo::Control);
    create_org(&control, "tok-de", Some("de")).await;

    // A second token, known to the control silo only.
    let secret = "gateway-cache-test-token";
    let pool = fleet.control_db.pool.clone();
    silo_store::api_tokens::upsert(&pool, secret, "cache test", &["org:read".to_owned()])
        .await
        .expect("store token");
    let reader = Api::new(fleet.control.base_url(), secret);
    let path = "/api/0/organizations/tok-de/";
    for _ in 0..5 {
        let r = reader.get(path).await;
        assert_eq!(r.status, 200, "through the gateway: {}", r.body);
        assert_eq!(r.body["slug"], "tok-de");
    }
    let metrics = reqwest::get(format!("{}/metrics", fleet.control.base_url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    let (cached, looked_up) = (
        metric(
            &metrics,
            "silo_web_gateway_token_lookups_total{source=\"cache\"}",
        ),
        metric(
            &metrics,
            "silo_web_gateway_token_lookups_total{source=\"database\"}",
        ),
    );
    assert!(cached >= 1.0, "no token came from the cache:\n{metrics}");
    assert!(
        looked_up >= 1.0,
        "the first use was not looked up:\n{metrics}"
    );

    // Delete the token: control's own routes refuse it at once, the gateway once its
    // cached authentication is older than the TTL.
    let deleted = sqlx::query("DELETE FROM api_tokens WHERE label = 'cache test'")
        .execute(&pool)
        .await
        .expect("delete token");
    assert_eq!(deleted.rows_affected(), 1);
    let own = reader.get("/api/0/organizations/").await;
    assert_eq!(own.status, 401, "control's own route: {}", own.body);
    until(
        "the gateway to refuse the deleted token",
        DEADLINE,
        || async {
            let r = reader.get(path).await;
            if r.status == 401 {
                Ok(())
            } else {
                Err(format!("{} {}", r.status, r.body))
            }
        },
    )
    .await;
    fleet.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_secret_rotates_without_failed_requests() {
    let mut fleet = Fleet::start(FleetOptions {
        rpc_secret: "old".into(),
        ..FleetOptions::default()
    })
    .await;
    let control = fleet.api(Silo::Control);
    create_org(&control, "rot-de", Some("de")).await;
    create_org(&control, "rot-us", Some("us")).await;

    // Traffic through the gateway during the whole rotation: no answer may be a 401/403
    // (secret mismatch); a 503 is allowed only while the region behind it restarts.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let traffic = {
        let (stop, ok, control) = (stop.clone(), ok.clone(), control.clone());
        tokio::spawn(async move {
            let mut refused = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for slug in ["rot-de", "rot-us"] {
                    match control
                        .try_send(Method::GET, &format!("/api/0/organizations/{slug}/"), None)
                        .await
                    {
                        Ok(r) if r.status == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) if r.status == 401 || r.status == 403 || r.status == 500 => {
                            refused.push(format!("{slug}: {} {}", r.status, r.body));
                        }
                        // 503 while a region restarts; connection refused while control does.
                        _ => {}
                    }
                }
            }
            refused
        })
    };

    // 1. every process learns the new key (still signing with the old one);
    // 2. every process signs with the new key; 3. the old key is dropped.
    let mut created = 0;
    for value in ["old,new", "new,old", "new"] {
        for silo in [Silo::De, Silo::Us, Silo::Control] {
            fleet
                .process(silo)
                .restart_with(&[("RPC_SHARED_SECRET", value)], Duration::from_secs(60))
                .await;
            // Cross-silo writes work at every step (control -> region RPC).
            let control = fleet.api(Silo::Control);
            created += 1;
            create_org(
                &control,
                &format!("rot-{created}"),
                Some(if created % 2 == 0 { "us" } else { "de" }),
            )
            .await;
        }
    }
    let before = ok.load(Ordering::Relaxed);
    until("traffic to flow after the rotation", DEADLINE, || {
        let ok = ok.clone();
        async move {
            let now = ok.load(Ordering::Relaxed);
            if now > before + 10 {
                Ok(())
            } else {
                Err(format!("{now} successful requests"))
            }
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let refused = traffic.await.unwrap();
    assert!(
        refused.is_empty(),
        "requests refused during rotation: {refused:?}"
    );

    // The old key no longer opens anything.
    let args = json!({"meta": {}, "args": {"id": 7, "slug": "old-key", "name": "Old"}});
    let path = "/api/0/internal/rpc/organization/create/";
    assert_eq!(
        rpc_call(&fleet.de.base_url(), path, &args, Some("old"))
            .await
            .0,
        401
    );
    assert_eq!(
        rpc_call(&fleet.de.base_url(), path, &args, Some("new"))
            .await
            .0,
        200
    );
    // Region changes still reach control with the new key.
    let de = fleet.api(Silo::De);
    assert_eq!(
        de.put("/api/0/organizations/rot-de/", json!({"name": "Rotated"}))
            .await
            .status,
        200
    );
    until("the rename to reach control", DEADLINE, || {
        let control = control.clone();
        async move {
            let list = control.get("/api/0/organizations/").await.body;
            let found = list
                .as_array()
                .into_iter()
                .flatten()
                .any(|o| o["slug"] == "rot-de" && o["name"] == "Rotated");
            if found { Ok(()) } else { Err(list.to_string()) }
        }
    })
    .await;
    fleet.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monolith_serves_the_same_api_from_one_process() {
    let mono = Monolith::start().await;
    let api = mono.api();
    let org = create_org(&api, "solo", None).await;
    assert_eq!(org["links"]["regionUrl"], mono.process.base_url());
    assert_eq!(
        create_org(&api, "solo-2", Some("us")).await["slug"],
        "solo-2"
    );
    assert_eq!(
        slugs(&api.get("/api/0/organizations/").await.body),
        ["solo", "solo-2"]
    );
    let detail = api.get("/api/0/organizations/solo/").await;
    assert_eq!((detail.status, &detail.body["id"]), (200, &org["id"]));
    assert!(
        detail.header("x-sentry-proxy-url").is_none(),
        "served locally"
    );
    let p = api
        .post(
            "/api/0/organizations/solo/projects/",
            json!({"name": "api", "slug": "api"}),
        )
        .await;
    assert_eq!(p.status, 201, "{}", p.body);
    assert_eq!(api.get("/api/0/projects/solo/api/").await.status, 200);
    // Region changes reach the directory in the same process.
    assert_eq!(
        api.put(
            "/api/0/organizations/solo/",
            json!({"name": "Solo Renamed"})
        )
        .await
        .status,
        200
    );
    assert_eq!(
        api.post(
            "/api/0/organizations/solo/members/",
            json!({"email": "bo@example.com"})
        )
        .await
        .status,
        201
    );
    let pool = mono.db.pool.clone();
    until(
        "the monolith outbox to drain into the directory",
        DEADLINE,
        || {
            let (api, pool) = (api.clone(), pool.clone());
            async move {
                let list = api.get("/api/0/organizations/").await.body;
                let renamed = list
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|o| o["name"] == "Solo Renamed");
                let (members,): (i64,) =
                    sqlx::query_as("SELECT count(*) FROM organization_member_mappings")
                        .fetch_one(&pool)
                        .await
                        .map_err(|e| e.to_string())?;
                if renamed && members == 1 {
                    Ok(())
                } else {
                    Err(format!("renamed={renamed} members={members}: {list}"))
                }
            }
        },
    )
    .await;
    pool.close().await;
    mono.finish().await;
}
