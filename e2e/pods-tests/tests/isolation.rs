//! Region isolation, proven on the real node with the node's policy engine enforcing the
//! operator's NetworkPolicies: a pod in `us` cannot open a TCP connection to `de`'s Postgres,
//! Redis, Kafka, web or relay while `de`'s own pods can; the control silo still reaches both
//! regions' web (organizations created and read through the gateway); relay accepts an event
//! sent from the ingress path (a namespace labelled `silo.dev/ingress=true`) and refuses a
//! namespace without the label. Suspending the policies of both regions
//! (`spec.suspendNetworkPolicies`) lets the same connection through, so the refusals come from
//! the policies, not from the network. `us`'s credentials do not authenticate against `de`'s
//! stores, and `us`'s ServiceAccount has no access to the API.
//!
//! Needs what `regions.rs` needs, plus the busybox test image on the real node
//! (`SILO_BUSYBOX_IMAGE`) and the node's policy engine (`e2e/cluster/up.sh --real-node`).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use silo_e2e_pods::fleet;
use silo_e2e_pods::kubectl::{ToolError, Tools};
use silo_e2e_pods::probe::{Probe, Reach};
use silo_e2e_pods::scenario::Scenario;
use silo_e2e_pods::wait::{self, Check};
use silo_e2e_pods::{Error, StepContext, operator};
use silo_pipeline_tests::api::Api as SiloApi;

const CONTROL_PLANE: &str = "e2e-isolation";
const CONTROL_NS: &str = "e2e-isolation-control";
/// A namespace of the ingress path (`silo.dev/ingress=true`) and one outside it.
const INGRESS_NS: &str = "e2e-isolation-ingress";
const OUTSIDE_NS: &str = "e2e-isolation-outside";
const READY: Duration = fleet::READY;
/// How long the policy engine may take to program a change.
const POLICY_SYNC: Duration = Duration::from_secs(90);

fn unexpected(message: impl Into<String>) -> Error {
    Error::Unexpected(message.into())
}

/// `de`'s services a pod of another region must not reach.
const DE_TARGETS: [(&str, u16); 5] = [
    ("postgres.region-de.svc", 5432),
    ("redis.region-de.svc", 6379),
    ("kafka.region-de.svc", 9092),
    ("web.region-de.svc", 8000),
    ("relay.region-de.svc", 3000),
];

async fn ensure_namespace(client: &Client, name: &str, ingress: bool) -> Result<(), Error> {
    let mut labels =
        std::collections::BTreeMap::from([("silo.dev/e2e".to_owned(), "isolation".to_owned())]);
    if ingress {
        labels.insert("silo.dev/ingress".to_owned(), "true".to_owned());
    }
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply("silo-e2e-pods").force(),
            &Patch::Apply(&ns),
        )
        .await
        .step(format!("create namespace {name}"))?;
    Ok(())
}

/// Delete namespace `name` if it exists and wait until it is gone.
async fn remove_namespace(client: &Client, name: &str) -> Result<(), Error> {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(name, &Default::default())
        .await;
    fleet::wait_namespace_gone(client, name).await
}

/// Set `spec.suspendNetworkPolicies` of Region `name` and wait until its policies are gone
/// (`true`) or back (`false`).
async fn suspend_policies(
    client: &Client,
    name: &str,
    id: i32,
    suspend: bool,
) -> Result<(), Error> {
    fleet::apply_region_spec(
        client,
        name,
        json!({"snowflakeId": id, "suspendNetworkPolicies": suspend}),
    )
    .await?;
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &format!("region-{name}"));
    wait::until(
        &format!(
            "region-{name}'s NetworkPolicies to be {}",
            if suspend { "removed" } else { "back" }
        ),
        Duration::from_secs(60),
        || async {
            let names: Vec<String> = policies
                .list(&ListParams::default())
                .await?
                .iter()
                .map(|p| p.name_any())
                .collect();
            let done = if suspend {
                names.is_empty()
            } else {
                names.len() == 2
            };
            Ok(if done {
                Check::Done(())
            } else {
                Check::Pending(format!("{names:?}"))
            })
        },
    )
    .await?;
    Ok(())
}

/// `psql` over TCP in `de`'s Postgres pod as user `silo` with `password`.
fn psql_tcp(tools: &Tools, namespace: &str, password: &str) -> Result<String, ToolError> {
    let env = format!("PGPASSWORD={password}");
    tools.kubectl(&[
        "exec",
        "-n",
        namespace,
        "postgres-0",
        "-c",
        "postgres",
        "--",
        "env",
        &env,
        "psql",
        "-h",
        "127.0.0.1",
        "-U",
        "silo",
        "-d",
        "silo",
        "-tAc",
        "select 1",
    ])
}

/// `redis-cli PING` in `namespace`'s Redis pod authenticating with `password`.
fn redis_ping(tools: &Tools, namespace: &str, password: &str) -> Result<String, ToolError> {
    let env = format!("REDISCLI_AUTH={password}");
    tools.kubectl(&[
        "exec",
        "-n",
        namespace,
        "redis-0",
        "-c",
        "redis",
        "--",
        "env",
        &env,
        "redis-cli",
        "-h",
        "127.0.0.1",
        "ping",
    ])
}

/// The store request relay answers for an event (raw HTTP, as an SDK would send it).
fn store_request(project: &str, key: &str, message: &str) -> String {
    let body = json!({
        "event_id": hex::encode(rand::random::<[u8; 16]>()),
        "message": message,
        "level": "error",
        "platform": "other",
    })
    .to_string();
    format!(
        "POST /api/{project}/store/ HTTP/1.1\r\nHost: relay.region-us.svc:3000\r\n\
         X-Sentry-Auth: Sentry sentry_version=7, sentry_key={key}, sentry_client=e2e-nc/1.0\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_are_isolated_by_enforced_network_policies() -> Result<(), Error> {
    let scenario = Scenario::start().await?;
    let (client, tools, settings) = (scenario.client.clone(), &scenario.tools, &scenario.settings);
    for ns in [INGRESS_NS, OUTSIDE_NS] {
        remove_namespace(&client, ns).await?;
    }

    // 1. A ControlPlane and Regions us and de, Ready with the default policies.
    fleet::apply_control_plane(
        &client,
        settings,
        CONTROL_PLANE,
        "SILOED",
        CONTROL_NS,
        &settings.image_tag,
    )
    .await?;
    fleet::apply_region(&client, "us", 21).await?;
    fleet::apply_region(&client, "de", 22).await?;
    for name in ["us", "de"] {
        fleet::wait_region_ready(&client, name, READY)
            .await
            .map_err(|e| unexpected(format!("{e}\noperator log:\n{}", operator::logs(tools))))?;
    }
    fleet::wait_control_plane_ready(&client, CONTROL_PLANE, READY).await?;
    for ns in ["region-us", "region-de", CONTROL_NS] {
        let names: Vec<String> = Api::<NetworkPolicy>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .step("list NetworkPolicies")?
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(names, ["silo-ingress", "silo-isolation"], "{ns}");
    }

    // 2. Every pod of us runs as us's ServiceAccount, which has no access to the API.
    let pods = Api::<Pod>::namespaced(client.clone(), "region-us")
        .list(&ListParams::default())
        .await
        .step("list us's pods")?;
    assert!(pods.items.len() >= 7, "{} pods", pods.items.len());
    for pod in &pods.items {
        let spec = pod.spec.as_ref().expect("pod spec");
        assert_eq!(
            spec.service_account_name.as_deref(),
            Some("silo"),
            "{}",
            pod.name_any()
        );
        assert_eq!(
            spec.automount_service_account_token,
            Some(false),
            "{}",
            pod.name_any()
        );
    }
    let identity = "system:serviceaccount:region-us:silo";
    let rules = tools.kubectl(&[
        "auth",
        "can-i",
        "--list",
        "--as",
        identity,
        "-n",
        "region-us",
    ])?;
    println!("kubectl auth can-i --list --as={identity} -n region-us:\n{rules}");
    let granted: Vec<&str> = rules
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .filter(|resource| !resource.starts_with('['))
        .filter(|resource| {
            // What every authenticated identity may do: review its own access.
            !matches!(
                *resource,
                "selfsubjectaccessreviews.authorization.k8s.io"
                    | "selfsubjectrulesreviews.authorization.k8s.io"
                    | "selfsubjectreviews.authentication.k8s.io"
            )
        })
        .collect();
    assert!(granted.is_empty(), "{identity} has access to {granted:?}");
    for (verb, resource, ns) in [
        ("get", "secrets", "region-us"),
        ("list", "pods", "region-us"),
        ("get", "secrets", "region-de"),
    ] {
        match tools.kubectl(&["auth", "can-i", verb, resource, "-n", ns, "--as", identity]) {
            Err(ToolError::Failed { .. }) => {}
            other => panic!("{identity} may {verb} {resource} in {ns}: {other:?}"),
        }
    }
    // us's Secrets live in us's namespace only.
    let secrets = Api::<Secret>::all(client.clone())
        .list(&ListParams::default().labels("silo.dev/region=us"))
        .await
        .step("list us's Secrets")?;
    assert!(!secrets.items.is_empty());
    for s in &secrets.items {
        assert_eq!(
            s.namespace().as_deref(),
            Some("region-us"),
            "{}",
            s.name_any()
        );
    }

    // 3. us's credentials do not authenticate against de's stores; de's own do.
    let secret = |ns: &'static str, name: &'static str| {
        let client = client.clone();
        async move { fleet::secret_value(&client, ns, name, "password").await }
    };
    let us_pg = secret("region-us", "postgres-credentials").await?;
    let de_pg = secret("region-de", "postgres-credentials").await?;
    let us_redis = secret("region-us", "redis-credentials").await?;
    let de_redis = secret("region-de", "redis-credentials").await?;
    assert_eq!(
        psql_tcp(tools, "region-de", &de_pg)?.trim(),
        "1",
        "de's password in de"
    );
    match psql_tcp(tools, "region-de", &us_pg) {
        Err(ToolError::Failed { stderr, .. })
            if stderr.contains("password authentication failed") => {}
        other => panic!("us's Postgres password against de: {other:?}"),
    }
    assert_eq!(redis_ping(tools, "region-de", &de_redis)?.trim(), "PONG");
    let wrong = redis_ping(tools, "region-de", &us_redis);
    assert!(
        !matches!(&wrong, Ok(out) if out.trim() == "PONG"),
        "us's Redis password against de: {wrong:?}"
    );
    println!("us's Postgres and Redis passwords refused by de's stores; de's own accepted");

    // 4. The control silo reaches both regions' web: organizations created in each and read
    //    through the gateway.
    let token = fleet::secret_value(&client, CONTROL_NS, "silo-bootstrap-token", "token").await?;
    let gateway = tools.port_forward(CONTROL_NS, "svc/web", 8000).await?;
    let api = SiloApi::new(gateway.url.clone(), token.clone());
    for region in ["us", "de"] {
        let slug = format!("iso-{region}");
        fleet::post_until_created(
            &gateway.url,
            &token,
            "/api/0/organizations/",
            json!({"name": slug, "slug": slug, "region": region}),
        )
        .await?;
        let (status, body) = api
            .get(&format!("/api/0/organizations/{slug}/projects/"))
            .await;
        assert!(
            status.is_success(),
            "gateway -> {region}'s web: {status} {body}"
        );
    }
    api.create_project("iso-us", "web").await;
    let key = api.create_key("iso-us", "web").await;
    let dsn = key["dsn"]["public"].as_str().unwrap_or_default().to_owned();
    let project = dsn.rsplit('/').next().unwrap_or_default().to_owned();
    let public = key["public"].as_str().unwrap_or_default().to_owned();
    assert!(!project.is_empty() && !public.is_empty(), "{key}");

    // 5. From us, every connection to de is refused; from de's own namespace, de's stores and
    //    web answer.
    let us_probe = Probe::start(&client, tools, settings, "region-us", "probe").await?;
    let de_probe = Probe::start(&client, tools, settings, "region-de", "probe").await?;
    for (host, port) in &DE_TARGETS[..4] {
        de_probe.wait_reach(host, *port, true, POLICY_SYNC).await?;
    }
    // The engine programs a new pod's rules asynchronously: once the first attempt is refused,
    // every further one must be.
    us_probe
        .wait_reach(DE_TARGETS[0].0, DE_TARGETS[0].1, false, POLICY_SYNC)
        .await?;
    let (mut made, mut refused) = (0, 0);
    for round in 0..2 {
        for (host, port) in DE_TARGETS {
            made += 1;
            match us_probe.connect(host, port)? {
                Reach::Refused(_) => refused += 1,
                Reach::Connected => panic!("round {round}: region-us reached {host}:{port}"),
            }
        }
    }
    // us's own stores stay reachable from us.
    us_probe
        .wait_reach("postgres.region-us.svc", 5432, true, POLICY_SYNC)
        .await?;

    // 6. The ingress path reaches relay and web and sends an event; another namespace does not.
    ensure_namespace(&client, INGRESS_NS, true).await?;
    ensure_namespace(&client, OUTSIDE_NS, false).await?;
    let ingress = Probe::start(&client, tools, settings, INGRESS_NS, "probe").await?;
    let outside = Probe::start(&client, tools, settings, OUTSIDE_NS, "probe").await?;
    ingress
        .wait_reach("relay.region-us.svc", 3000, true, POLICY_SYNC)
        .await?;
    ingress
        .wait_reach("web.region-us.svc", 8000, true, POLICY_SYNC)
        .await?;
    outside
        .wait_reach("relay.region-us.svc", 3000, false, POLICY_SYNC)
        .await?;
    for (host, port) in [
        ("relay.region-us.svc", 3000),
        ("postgres.region-us.svc", 5432),
    ] {
        made += 1;
        match outside.connect(host, port)? {
            Reach::Refused(_) => refused += 1,
            Reach::Connected => panic!("{OUTSIDE_NS} reached {host}:{port}"),
        }
    }
    made += 1;
    match ingress.connect("postgres.region-us.svc", 5432)? {
        Reach::Refused(_) => refused += 1,
        Reach::Connected => panic!("the ingress path reached us's Postgres"),
    }
    let message = "event through the ingress path";
    let response = wait::until(
        "relay to accept an event from the ingress path",
        Duration::from_secs(90),
        || {
            let answer = ingress.http(
                "relay.region-us.svc",
                3000,
                &store_request(&project, &public, message),
            );
            async move {
                Ok(match answer {
                    Ok(r) if r.starts_with("HTTP/1.1 200") => Check::Done(r),
                    other => Check::Pending(format!("{other:?}")),
                })
            }
        },
    )
    .await?;
    println!(
        "relay from the ingress path: {}",
        response.lines().next().unwrap_or_default()
    );
    fleet::wait_issue_count(&api, "iso-us", "web", message, 1).await?;
    println!(
        "figure: cross-region and outside connection attempts: {made} made, {refused} refused"
    );
    assert_eq!(made, refused);

    // 7. The refusals are the policies': suspended in us only, de's still refuse; suspended in
    //    both, us reaches de; enforced again, refused again.
    suspend_policies(&client, "us", 21, true).await?;
    us_probe
        .wait_reach("postgres.region-de.svc", 5432, false, POLICY_SYNC)
        .await?;
    suspend_policies(&client, "de", 22, true).await?;
    let attempts = us_probe
        .wait_reach("postgres.region-de.svc", 5432, true, POLICY_SYNC)
        .await?;
    println!("policies suspended in us and de: us -> de's Postgres connected (attempt {attempts})");
    us_probe
        .wait_reach("web.region-de.svc", 8000, true, POLICY_SYNC)
        .await?;
    suspend_policies(&client, "us", 21, false).await?;
    suspend_policies(&client, "de", 22, false).await?;
    us_probe
        .wait_reach("postgres.region-de.svc", 5432, false, POLICY_SYNC)
        .await?;
    fleet::wait_region_ready(&client, "us", READY).await?;
    fleet::wait_region_ready(&client, "de", READY).await?;

    for probe in [us_probe, de_probe, ingress, outside] {
        probe.delete(&client).await?;
    }
    for ns in [INGRESS_NS, OUTSIDE_NS] {
        remove_namespace(&client, ns).await?;
    }
    fleet::clean_fleet(&client).await?;
    Ok(())
}
