//! End to end, issue 15 beyond ingest: through the real binaries, with the official `sentry`
//! crate sending and plain HTTP reading, the API index, releases (create, 208, finalize,
//! deploys, commits, repos, delete) linked to events, event processing (promoted tags, users,
//! synthetic exception titles), search on issues and events, bulk issue changes (resolve,
//! ignore for a count, delete), regressions firing postprocess's regression rule (also after
//! "resolved in next release"), and bad input refused with a reason and nothing written.

use std::fmt;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use sentry::protocol::{Event, Exception, Frame, Mechanism, Stacktrace, User};
use serde_json::{Value, json};
use silo_pipeline_tests::Region;
use silo_pipeline_tests::api::Api;
use silo_pipeline_tests::sdk::{Sdk, SdkLevel, error_event};
use silo_pipeline_tests::webhook::WebhookReceiver;
use silo_testkit::wait;

const DEADLINE: Duration = Duration::from_secs(90);

#[derive(Debug)]
struct PaymentDeclined;

impl fmt::Display for PaymentDeclined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("card was declined")
    }
}

impl std::error::Error for PaymentDeclined {}

#[derive(Debug)]
struct InventoryMissing;

impl fmt::Display for InventoryMissing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("item is out of stock")
    }
}

impl std::error::Error for InventoryMissing {}

const CHECKOUT: &str = "PaymentDeclined: card was declined";
const INVENTORY: &str = "InventoryMissing: item is out of stock";
const CACHE: &str = "cache warmed";
const SYNTHETIC: &str = "charge";

/// A checkout failure of `user` with a tag, dist and transaction, as the SDK builds it.
fn checkout_event(user: &str) -> Event<'static> {
    let mut event = error_event(&PaymentDeclined);
    event.dist = Some("7".into());
    event.transaction = Some("/checkout".into());
    event.user = Some(User {
        id: Some(user.to_owned()),
        ..User::default()
    });
    event.tags.insert("team".into(), "Payments Core".into());
    event
}

/// An exception the SDK made up from a message (no real type): titled by its function.
fn synthetic_event() -> Event<'static> {
    Event {
        level: sentry::Level::Error,
        exception: vec![Exception {
            ty: "Error".into(),
            value: Some("charge failed".into()),
            mechanism: Some(Mechanism {
                ty: "generic".into(),
                synthetic: Some(true),
                ..Mechanism::default()
            }),
            stacktrace: Some(Stacktrace {
                frames: vec![Frame {
                    function: Some("charge".into()),
                    module: Some("shop.billing".into()),
                    in_app: Some(true),
                    ..Frame::default()
                }],
                ..Stacktrace::default()
            }),
            ..Exception::default()
        }]
        .into(),
        ..Event::default()
    }
}

fn flush(sdk: &Sdk) {
    assert!(
        sdk.flush(Duration::from_secs(30)),
        "the SDK sent everything"
    );
}

/// Issues of the project by title (any status).
async fn by_title(api: &Api, org: &str, project: &str) -> Result<Vec<(String, Value)>, String> {
    let mut issues: Vec<(String, Value)> = api
        .issues(org, project)
        .await?
        .into_iter()
        .map(|i| (i["title"].as_str().unwrap_or_default().to_owned(), i))
        .collect();
    issues.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(issues)
}

/// Wait until the issue titled `title` has `count` events and `status`; the issue.
async fn wait_issue(
    api: &Api,
    org: &str,
    project: &str,
    title: &str,
    count: u32,
    status: &str,
) -> Value {
    wait::until(
        &format!("{title:?} with {count} events, {status}"),
        DEADLINE,
        || async {
            let issues = by_title(api, org, project).await?;
            let issue = issues
                .iter()
                .find(|(t, _)| t == title)
                .map(|(_, i)| i.clone())
                .ok_or_else(|| format!("no {title:?} in {issues:?}"))?;
            if issue["count"].as_str() == Some(count.to_string().as_str())
                && issue["status"] == status
            {
                Ok(issue)
            } else {
                Err(format!("{} events, {}", issue["count"], issue["status"]))
            }
        },
    )
    .await
}

/// Sorted titles of a JSON list of issues.
fn titles(list: &Value) -> Vec<String> {
    let mut out: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|i| i["title"].as_str().unwrap_or_default().to_owned())
        .collect();
    out.sort();
    out
}

fn encode(s: &str) -> String {
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

fn detail(body: &Value) -> &str {
    body["detail"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn releases_search_and_issue_management_through_the_binaries() {
    let region = Region::start("manage").await;
    let p = region.project("manage").await;
    let other = region.project("elsewhere").await;
    let api = &region.api;
    let (org, slug) = (p.org.as_str(), p.slug.as_str());
    let releases = format!("/api/0/organizations/{org}/releases/");
    let post = |path: String, body: Value| async move {
        api.request(Method::POST, &path, Some(body), false).await
    };

    // The API index, as sentry-cli info reads it.
    let (status, index) = api.get("/api/0/").await;
    assert_eq!(status, StatusCode::OK, "{index}");
    let scopes = index["auth"]["scopes"].as_array().expect("scopes");
    assert!(scopes.contains(&json!("project:write")), "{index}");
    let (status, anonymous) = api.request(Method::GET, "/api/0/", None, true).await;
    assert_eq!((status, &anonymous["auth"]), (StatusCode::OK, &Value::Null));

    // Releases: 201, then 208 for the same version; malformed versions are refused and
    // nothing is created.
    let (status, created) = post(
        releases.clone(),
        json!({"version": "shop@1.0.0", "projects": [slug]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["shortVersion"], "1.0.0");
    let (status, again) = post(
        releases.clone(),
        json!({"version": "shop@1.0.0", "projects": [slug]}),
    )
    .await;
    assert_eq!(
        (status, &again["id"]),
        (StatusCode::ALREADY_REPORTED, &created["id"])
    );
    for bad in ["shop/1.0", "latest", "..", "a\tb", &"x".repeat(201)] {
        let (status, body) = post(
            releases.clone(),
            json!({"version": bad, "projects": [slug]}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
        assert!(
            detail(&body).contains("not a valid release version"),
            "{body}"
        );
    }
    let (_, list) = api.get(&releases).await;
    let versions: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["version"].as_str())
        .collect();
    assert_eq!(
        versions,
        ["shop@1.0.0"],
        "nothing written for the refused versions"
    );
    // Finalize (sentry-cli releases finalize), deploy, commits and repositories.
    let release = format!("{releases}shop%401.0.0/");
    let (status, finalized) = api
        .put(&release, json!({"dateReleased": "2026-01-02T03:04:05Z"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{finalized}");
    assert_eq!(finalized["dateReleased"], "2026-01-02T03:04:05.000000Z");
    let (status, deploy) = post(
        format!("{release}deploys/"),
        json!({"environment": "production", "name": "d1"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{deploy}");
    let (status, deploys) = api.get(&format!("{release}deploys/")).await;
    assert_eq!(
        (status, deploys.as_array().map(Vec::len)),
        (StatusCode::OK, Some(1))
    );
    let (_, with_deploy) = api.get(&release).await;
    assert_eq!(with_deploy["deployCount"], 1);
    assert_eq!(with_deploy["lastDeploy"]["environment"], "production");
    for path in [
        format!("{release}commits/"),
        format!("/api/0/organizations/{org}/repos/"),
    ] {
        let (status, body) = api.get(&path).await;
        assert_eq!((status, body), (StatusCode::OK, json!([])), "{path}");
    }

    // Regressions post to a webhook.
    let hook = WebhookReceiver::start().await;
    api.create_rule(
        org,
        slug,
        json!({"name": "Regressions", "kind": "regression", "webhookUrl": hook.url}),
    )
    .await;

    // Events through the SDK.
    let production = Sdk::with_release(&p.dsn, "shop@1.0.0", "production");
    let staging = Sdk::with_release(&p.dsn, "shop@1.0.0", "staging");
    production.capture_event(checkout_event("u-1"));
    production.capture_event(checkout_event("u-2"));
    production.capture_message(CACHE, SdkLevel::Warning);
    production.capture_event(synthetic_event());
    staging.capture_error_with(&InventoryMissing, |scope| {
        scope.set_user(Some(User {
            id: Some("u-3".into()),
            ..User::default()
        }));
    });
    let elsewhere = Sdk::new(&other.dsn);
    elsewhere.capture_error(&InventoryMissing);
    for sdk in [&production, &staging, &elsewhere] {
        flush(sdk);
    }
    let checkout = wait_issue(api, org, slug, CHECKOUT, 2, "unresolved").await;
    let inventory = wait_issue(api, org, slug, INVENTORY, 1, "unresolved").await;
    let cache = wait_issue(api, org, slug, CACHE, 1, "unresolved").await;
    let synthetic = wait_issue(api, org, slug, SYNTHETIC, 1, "unresolved").await;
    let foreign = wait_issue(api, &other.org, &other.slug, INVENTORY, 1, "unresolved").await;
    let id = |issue: &Value| issue["id"].as_str().expect("issue id").to_owned();
    let (checkout_id, inventory_id, cache_id, foreign_id) =
        (id(&checkout), id(&inventory), id(&cache), id(&foreign));

    // Processing: users counted, releases on the issue, promoted tags, synthetic titles.
    assert_eq!(checkout["userCount"], 2, "{checkout}");
    assert_eq!(checkout["firstRelease"]["version"], "shop@1.0.0");
    assert_eq!(checkout["lastRelease"]["version"], "shop@1.0.0");
    assert_eq!(
        synthetic["culprit"], "shop.billing in charge",
        "{synthetic}"
    );
    let (_, latest) = api
        .get(&format!("/api/0/issues/{checkout_id}/events/latest/"))
        .await;
    let tags: Vec<(String, String)> = latest["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| {
            (
                t["key"].as_str().unwrap_or_default().to_owned(),
                t["value"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for (k, v) in [
        ("environment", "production"),
        ("release", "shop@1.0.0"),
        ("dist", "7"),
        ("transaction", "/checkout"),
        ("team", "Payments Core"),
        ("level", "error"),
    ] {
        assert!(
            tags.contains(&(k.to_owned(), v.to_owned())),
            "{k}={v} in {tags:?}"
        );
    }
    assert!(
        tags.iter()
            .any(|(k, v)| k == "user" && v.starts_with("id:u-")),
        "{tags:?}"
    );
    assert_eq!(latest["release"], "shop@1.0.0");
    // The release knows its events and the issues first seen in it.
    let (_, linked) = api.get(&release).await;
    assert_eq!(linked["newGroups"], 4, "{linked}");
    assert!(
        linked["firstEvent"].is_string() && linked["lastEvent"].is_string(),
        "{linked}"
    );

    // Search, on issues and on events.
    let issues_path = format!("/api/0/projects/{org}/{slug}/issues/");
    let search = |q: &str| format!("{issues_path}?query={}", encode(q));
    for (query, want) in [
        ("environment:production", vec![CHECKOUT, SYNTHETIC, CACHE]),
        ("!environment:production", vec![INVENTORY]),
        ("level:warning", vec![CACHE]),
        (
            "release:shop@1.0.0",
            vec![INVENTORY, CHECKOUT, SYNTHETIC, CACHE],
        ),
        ("user.id:u-3", vec![INVENTORY]),
        (r#"team:"Payments Core""#, vec![CHECKOUT]),
        ("dist:7 transaction:/checkout", vec![CHECKOUT]),
        (
            r#"!team:"Payments Core" level:error"#,
            vec![INVENTORY, SYNTHETIC],
        ),
        ("declined", vec![CHECKOUT]),
    ] {
        let (status, found) = api.get(&search(query)).await;
        assert_eq!(status, StatusCode::OK, "{query}: {found}");
        let mut want: Vec<String> = want.into_iter().map(str::to_owned).collect();
        want.sort();
        assert_eq!(titles(&found), want, "{query}");
    }
    let (_, org_found) = api
        .get(&format!(
            "/api/0/organizations/{org}/issues/?query={}",
            encode("environment:staging")
        ))
        .await;
    assert_eq!(titles(&org_found), [INVENTORY]);
    let events_path = format!("/api/0/projects/{org}/{slug}/events/");
    let (status, events) = api
        .get(&format!("{events_path}?query={}", encode("user.id:u-2")))
        .await;
    assert_eq!(status, StatusCode::OK, "{events}");
    assert_eq!(events.as_array().map(Vec::len), Some(1), "{events}");
    assert_eq!(events[0]["groupID"], checkout_id.as_str());
    let (_, events) = api
        .get(&format!(
            "/api/0/issues/{checkout_id}/events/?query={}",
            encode("!user.id:u-2")
        ))
        .await;
    assert_eq!(events.as_array().map(Vec::len), Some(1), "{events}");
    for (query, needle) in [
        ("has:user", "has:user"),
        (r#"release:"shop"#, "never closed"),
    ] {
        for path in [
            search(query),
            format!("{events_path}?query={}", encode(query)),
        ] {
            let (status, body) = api.get(&path).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
            assert!(detail(&body).contains(needle), "{path}: {body}");
        }
    }

    // Bulk changes that cannot apply are refused whole: nothing is written.
    let statuses = || async {
        let issues = by_title(api, org, slug).await.expect("issues");
        issues
            .into_iter()
            .map(|(t, i)| (t, i["status"].as_str().unwrap_or_default().to_owned()))
            .collect::<Vec<_>>()
    };
    let before = statuses().await;
    let resolve = json!({"status": "resolved"});
    for (query, body, needle) in [
        (
            format!("id={checkout_id}&id={inventory_id}&id={foreign_id}"),
            resolve.clone(),
            foreign_id.clone(),
        ),
        (
            format!("id={checkout_id}"),
            json!({"status": "sleeping"}),
            "sleeping".to_owned(),
        ),
        (
            format!("query={}", encode(r#"release:"shop"#)),
            resolve.clone(),
            "never closed".to_owned(),
        ),
    ] {
        let (status, reply) = api.put(&format!("{issues_path}?{query}"), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {reply}");
        assert!(detail(&reply).contains(&needle), "{query}: {reply}");
        assert_eq!(statuses().await, before, "{query} wrote something");
    }
    let (status, reply) = api
        .delete(&format!("{issues_path}?id={inventory_id}&id={foreign_id}"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(statuses().await, before);
    let (_, still) = api.get(&format!("/api/0/issues/{foreign_id}/")).await;
    assert_eq!(still["status"], "unresolved");

    // sentry-cli issues resolve -i ... ; mute for a number of events (organization route).
    let (status, reply) = api
        .put(
            &format!("{issues_path}?id={checkout_id}&id={inventory_id}"),
            resolve.clone(),
        )
        .await;
    assert_eq!(
        (status, &reply["status"]),
        (StatusCode::OK, &json!("resolved")),
        "{reply}"
    );
    let (_, resolved) = api.get(&search("is:resolved")).await;
    assert_eq!(titles(&resolved), [INVENTORY, CHECKOUT]);
    let (status, reply) = api
        .put(
            &format!("/api/0/organizations/{org}/issues/?id={cache_id}"),
            json!({"status": "ignored", "statusDetails": {"ignoreCount": 2}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        (&reply["status"], &reply["statusDetails"]["ignoreCount"]),
        (&json!("ignored"), &json!(2))
    );
    // Bulk delete by id.
    let (status, _) = api
        .delete(&format!("{issues_path}?id={inventory_id}"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.get(&format!("/api/0/issues/{inventory_id}/")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A resolved issue's next event reopens it and fires the regression rule.
    production.capture_event(checkout_event("u-1"));
    flush(&production);
    wait_issue(api, org, slug, CHECKOUT, 3, "unresolved").await;
    let regressions = || {
        hook.received()
            .into_iter()
            .filter(|b| b["rule"]["kind"] == "regression" && b["id"] == checkout_id.as_str())
            .count()
    };
    wait::until("a regression webhook", DEADLINE, || async {
        match regressions() {
            0 => Err("none yet".to_owned()),
            n => Ok(n),
        }
    })
    .await;

    // Resolved in the next release: an event of the same release leaves it resolved, one of
    // a newer release reopens it, again as a regression.
    let (status, reply) = api
        .put(
            &format!("/api/0/issues/{checkout_id}/"),
            json!({"status": "resolvedInNextRelease"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["statusDetails"]["inNextRelease"], true, "{reply}");
    production.capture_event(checkout_event("u-1"));
    flush(&production);
    wait_issue(api, org, slug, CHECKOUT, 4, "resolved").await;
    let next = Sdk::with_release(&p.dsn, "shop@1.1.0", "production");
    next.capture_event(checkout_event("u-1"));
    flush(&next);
    let reopened = wait_issue(api, org, slug, CHECKOUT, 5, "unresolved").await;
    assert_eq!(
        reopened["lastRelease"]["version"], "shop@1.1.0",
        "{reopened}"
    );
    wait::until("a second regression webhook", DEADLINE, || async {
        match regressions() {
            n if n >= 2 => Ok(n),
            n => Err(format!("{n} so far")),
        }
    })
    .await;

    // Ignored for 2 more events: the third reopens it.
    for _ in 0..2 {
        production.capture_message(CACHE, SdkLevel::Warning);
    }
    flush(&production);
    wait_issue(api, org, slug, CACHE, 3, "ignored").await;
    production.capture_message(CACHE, SdkLevel::Warning);
    flush(&production);
    wait_issue(api, org, slug, CACHE, 4, "unresolved").await;

    // The event created release shop@1.1.0; a release issues were first seen in is kept, an
    // unused one is deleted.
    let (_, list) = api.get(&releases).await;
    let versions: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["version"].as_str())
        .collect();
    assert_eq!(versions, ["shop@1.1.0", "shop@1.0.0"]);
    let (status, body) = api.delete(&release).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(!detail(&body).is_empty());
    let (status, _) = post(
        releases.clone(),
        json!({"version": "shop@0.9.0", "projects": [slug]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = api.delete(&format!("{releases}shop@0.9.0/")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.get(&format!("{releases}shop@0.9.0/")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    region.stop().await;
}
