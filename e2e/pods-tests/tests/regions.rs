//! `kubectl apply` of Regions gives working, isolated regions in real pods: each region's own
//! Postgres, Redis and Kafka, migrations in a Job, an event from the official Sentry SDK
//! through the region's relay, read back through the control silo's gateway, stored in that
//! region's database only; a Region added reaches running pods' directory without restarts;
//! a Region deleted takes its data with it; store pods deleted under load lose no accepted
//! event.
//!
//! Needs what `control_silo.rs` needs, plus the store images (`e2e/images/build.sh all`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};
use silo_api::Region;
use silo_e2e_pods::fleet::{self, true_since};
use silo_e2e_pods::kubectl::Tools;
use silo_e2e_pods::scenario::Scenario;
use silo_e2e_pods::wait::{self, Check};
use silo_e2e_pods::{Error, StepContext, operator, stores};
use silo_pipeline_tests::api::Api as SiloApi;
use silo_pipeline_tests::sdk::{EnvelopeSender, Sdk, envelope_bytes};

const CONTROL_PLANE: &str = "e2e-regions";
const CONTROL_NS: &str = "e2e-regions-control";
const READY: Duration = fleet::READY;

fn unexpected(message: impl Into<String>) -> Error {
    Error::Unexpected(message.into())
}

/// The directory a running web pod of `namespace` reads, by region name.
fn directory_in(tools: &Tools, namespace: &str) -> Result<Vec<String>, Error> {
    let out = tools.kubectl(&[
        "exec",
        "-n",
        namespace,
        "deploy/web",
        "--",
        "web",
        "regions",
    ])?;
    let regions: Vec<Value> =
        serde_json::from_str(out.trim()).map_err(|e| unexpected(format!("{e}: {out}")))?;
    let mut names: Vec<String> = regions
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

/// Send envelopes one by one for `duration` while `disrupt` runs; how many relay accepted
/// (200) and refused (the reasons, e.g. 503 while Kafka is down).
async fn send_during(
    sender: &EnvelopeSender,
    message: &str,
    until: impl Fn() -> bool,
) -> (u64, BTreeMap<String, u64>) {
    let mut accepted = 0;
    let mut refused = BTreeMap::new();
    while !until() {
        let mut event = sentry::protocol::Event::new();
        event.message = Some(message.to_owned());
        event.level = sentry::Level::Error;
        event.platform = "rust".into();
        match sender.send(envelope_bytes(event)).await {
            Ok(()) => accepted += 1,
            Err(why) => {
                let code = why.split(':').next().unwrap_or_default().to_owned();
                *refused.entry(code).or_insert(0) += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    (accepted, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_run_on_their_own_stores_and_serve_sdk_events() -> Result<(), Error> {
    let scenario = Scenario::start().await?;
    let (client, tools, settings) = (scenario.client.clone(), &scenario.tools, &scenario.settings);

    // 1. A ControlPlane and Regions us and de: each Ready on its own stores.
    fleet::apply_control_plane(
        &client,
        settings,
        CONTROL_PLANE,
        "SILOED",
        CONTROL_NS,
        &settings.image_tag,
    )
    .await?;
    let applied = k8s_openapi::jiff::Timestamp::now();
    fleet::apply_region(&client, "us", 11).await?;
    fleet::apply_region(&client, "de", 12).await?;
    let mut ready = BTreeMap::new();
    for name in ["us", "de"] {
        let region = fleet::wait_region_ready(&client, name, READY)
            .await
            .map_err(|e| unexpected(format!("{e}\noperator log:\n{}", operator::logs(tools))))?;
        ready.insert(name, region);
    }
    for (name, region) in &ready {
        let conditions = &region.status.as_ref().expect("status").conditions;
        let at = |t| true_since(conditions, t).map(|ts| (ts - applied).get_seconds());
        println!(
            "figure: Region {name} apply -> InfrastructureReady {:?} s, MigrationsComplete {:?} s, Ready {:?} s (two regions at once)",
            at("InfrastructureReady"),
            at("MigrationsComplete"),
            at("Ready")
        );
    }
    fleet::wait_control_plane_ready(&client, CONTROL_PLANE, READY).await?;

    // Each region has its own store pods on the real node and its own credentials.
    let mut passwords = Vec::new();
    for name in ["us", "de"] {
        let ns = format!("region-{name}");
        for store in ["postgres", "redis", "kafka"] {
            let pods =
                fleet::running_pods(&client, &ns, &format!("app.kubernetes.io/name={store}"))
                    .await?;
            assert_eq!(pods.len(), 1, "{ns}: {store} pods {pods:?}");
            let node = Api::<Node>::all(client.clone())
                .get(&pods[0].1)
                .await
                .step("get the store pod's node")?;
            let (key, value) = silo_e2e_pods::settings::REAL_NODE_LABEL;
            assert_eq!(
                node.labels().get(key).map(String::as_str),
                Some(value),
                "{ns}: {store} runs on {} which is no real node",
                pods[0].1
            );
        }
        for secret in ["postgres-credentials", "redis-credentials"] {
            passwords.push(fleet::secret_value(&client, &ns, secret, "password").await?);
        }
    }
    let distinct: std::collections::BTreeSet<_> = passwords.iter().collect();
    assert_eq!(
        distinct.len(),
        passwords.len(),
        "credentials reused across stores or regions"
    );

    // 2. Through the gateway: an organization in de, a project, a DSN.
    let token = fleet::secret_value(&client, CONTROL_NS, "silo-bootstrap-token", "token").await?;
    let gateway = tools.port_forward(CONTROL_NS, "svc/web", 8000).await?;
    let api = SiloApi::new(gateway.url.clone(), token.clone());
    let org = fleet::post_until_created(
        &gateway.url,
        &token,
        "/api/0/organizations/",
        json!({"name": "Acme DE", "slug": "acme-de", "region": "de"}),
    )
    .await?;
    assert_eq!(org["slug"], "acme-de", "{org}");
    api.create_project("acme-de", "checkout").await;
    let key = api.create_key("acme-de", "checkout").await;
    let dsn = key["dsn"]["public"]
        .as_str()
        .ok_or_else(|| unexpected(format!("no DSN in {key}")))?
        .to_owned();
    assert!(
        dsn.contains("relay.region-de.svc:3000"),
        "the DSN names de's ingest endpoint: {dsn}"
    );
    println!("DSN (in-cluster): {dsn}");

    // 3. The official SDK sends to de's relay; the issue is read back through the gateway.
    let relay = tools.port_forward("region-de", "svc/relay", 3000).await?;
    let sender = fleet::envelope_sender(&relay.url, &dsn, &key);
    // The SDK drops what relay refuses: send once relay accepts (its project config loaded).
    fleet::wait_accepting(&sender).await?;
    let sdk = Sdk::new(&fleet::dsn_via(&dsn, &relay.url)?);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(sdk.capture_message("checkout failed in de", sentry::Level::Error));
    }
    assert!(sdk.flush(Duration::from_secs(30)), "the SDK could not send");
    let issue = fleet::wait_issue_count(&api, "acme-de", "checkout", "checkout failed in de", 3)
        .await
        .map_err(|e| unexpected(format!("{e}\n{}", fleet::silo_logs(tools, "region-de"))))?;
    println!("issue via the gateway: {}", issue["title"]);
    let id = ids[0].simple().to_string();
    let query =
        format!("select count(*) from events where replace(event_id::text, '-', '') = '{id}'");
    assert_eq!(
        stores::psql(tools, "region-de", &query)?,
        "1",
        "event {id} in de's Postgres"
    );
    assert_eq!(
        stores::psql(tools, "region-us", &query)?,
        "0",
        "event {id} must not be in us"
    );
    let orgs = "select count(*) from organizations where slug = 'acme-de'";
    assert_eq!(stores::psql(tools, "region-us", orgs)?, "0");

    // 4. A third Region reaches every running pod's directory without a restart.
    let watched = ["region-us", "region-de", CONTROL_NS];
    let mut before = BTreeMap::new();
    for ns in watched {
        before.insert(ns, fleet::pod_identities(&client, ns).await?);
    }
    let added = Instant::now();
    fleet::apply_region(&client, "jp", 13).await?;
    fleet::wait_region_ready(&client, "jp", READY).await?;
    println!(
        "figure: third Region apply -> Ready: {:.1} s",
        added.elapsed().as_secs_f64()
    );
    for ns in watched {
        let names = wait::until(
            &format!("the directory file in {ns}'s running web pod to list jp"),
            Duration::from_secs(180),
            || async {
                Ok(match directory_in(tools, ns) {
                    Ok(names) if names.iter().any(|n| n == "jp") => Check::Done(names),
                    other => Check::Pending(format!("{other:?}")),
                })
            },
        )
        .await?;
        assert_eq!(names, ["de", "jp", "us"], "{ns}");
    }
    println!(
        "figure: Region added -> listed in every running pod's directory file: {:.1} s",
        added.elapsed().as_secs_f64()
    );
    for ns in watched {
        let after = fleet::pod_identities(&client, ns).await?;
        assert_eq!(
            before[ns], after,
            "{ns}: pods were restarted or replaced when a Region was added"
        );
    }

    // 5. Deleting it removes its namespace, pods, claims, volumes and directory entry.
    let jp_volumes: Vec<String> = stores::volumes_of(&client, "region-jp")
        .await?
        .iter()
        .map(|pv| pv.name_any())
        .collect();
    assert_eq!(
        jp_volumes.len(),
        3,
        "jp's stores claim volumes: {jp_volumes:?}"
    );
    Api::<Region>::all(client.clone())
        .delete("jp", &DeleteParams::default())
        .await
        .step("delete Region jp")?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    wait::until("jp's namespace and volumes to be gone", READY, || async {
        let ns = namespaces.get_opt("region-jp").await?.is_some();
        let mut left = Vec::new();
        for v in &jp_volumes {
            if volumes.get_opt(v).await?.is_some() {
                left.push(v.clone());
            }
        }
        Ok(if !ns && left.is_empty() {
            Check::Done(())
        } else {
            Check::Pending(format!("namespace exists: {ns}, volumes left: {left:?}"))
        })
    })
    .await?;
    wait::until(
        "us's running web pod to drop jp from its directory",
        Duration::from_secs(180),
        || async {
            Ok(match directory_in(tools, "region-us") {
                Ok(names) if names == ["de", "us"] => Check::Done(()),
                other => Check::Pending(format!("{other:?}")),
            })
        },
    )
    .await?;
    let (status, _) = api
        .get("/api/0/projects/acme-de/checkout/issues/?query=")
        .await;
    assert!(
        status.is_success(),
        "de keeps serving after jp is gone: {status}"
    );

    // 6. Kafka, then Postgres, deleted under load: relay refuses (503) rather than loses,
    //    consumers retry; every accepted event is stored, none twice.
    let mut accepted_total = 0;
    for store in ["kafka-0", "postgres-0"] {
        let title = format!("store {store} restarted under load");
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let load = {
            let sender = sender.clone();
            let title = title.clone();
            tokio::spawn(async move {
                send_during(&sender, &title, || {
                    flag.load(std::sync::atomic::Ordering::SeqCst)
                })
                .await
            })
        };
        fleet::wait_accepting(&sender).await?;
        let back = stores::restart(&client, "region-de", store).await?;
        // Keep the load on until relay accepts again after the store is back.
        fleet::wait_accepting(&sender).await?;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let (accepted, refused) = load.await.map_err(|e| unexpected(e.to_string()))?;
        println!(
            "figure: {store} deleted under load: back Ready in {back:.1} s; relay accepted {accepted}, refused {refused:?}"
        );
        assert!(
            accepted > 0,
            "no event accepted around the {store} restart (refused {refused:?})"
        );
        let issue = fleet::wait_issue_count(&api, "acme-de", "checkout", &title, accepted).await?;
        let stored = issue["count"]
            .as_str()
            .and_then(|c| c.parse::<u64>().ok())
            .unwrap_or(0);
        // Nothing accepted is lost. A refused event may still have reached Kafka (its
        // acknowledgement was what timed out): an SDK resends it under the same event id,
        // which the consumers deduplicate; this load uses a fresh id per event.
        let unconfirmed: u64 = refused.values().sum();
        assert!(
            (accepted..=accepted + unconfirmed).contains(&stored),
            "{store}: accepted {accepted}, refused {refused:?}, stored {stored}"
        );
        accepted_total += accepted;
    }
    println!("events accepted during store restarts, all stored: {accepted_total}");
    operator::still_ready(&client).await?;

    fleet::clean_fleet(&client).await?;
    Ok(())
}
