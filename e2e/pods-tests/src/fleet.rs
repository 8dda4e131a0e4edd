//! A fleet in real pods: ControlPlane and Regions with managed stores, their conditions, the
//! bootstrap token, and what runs in a silo's namespace.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::Value;
use serde_json::json;
use silo_api::{ControlPlane, Region};
use silo_pipeline_tests::api::Api as SiloApi;
use silo_pipeline_tests::sdk::{EnvelopeSender, envelope_bytes};

use crate::settings::Settings;
use crate::wait::{self, Check};
use crate::{Error, StepContext};

const MANAGER: &str = "silo-e2e-pods";
/// How long a silo may take to become Ready (stores, migrations, workloads) on 2 cores.
pub const READY: Duration = Duration::from_secs(420);

fn unexpected(message: impl Into<String>) -> Error {
    Error::Unexpected(message.into())
}

/// Server-side apply a ControlPlane with managed stores from the local images.
pub async fn apply_control_plane(
    client: &Client,
    settings: &Settings,
    name: &str,
    mode: &str,
    namespace: &str,
    version: &str,
) -> Result<ControlPlane, Error> {
    let cp: ControlPlane = serde_json::from_value(json!({
        "apiVersion": "silo.dev/v1alpha1",
        "kind": "ControlPlane",
        "metadata": {"name": name},
        "spec": {
            "version": version,
            "mode": mode,
            "namespace": namespace,
            "pods": settings.pods(),
            "infrastructure": {"images": settings.store_images()},
        },
    }))
    .map_err(|e| Error::Unexpected(e.to_string()))?;
    Ok(Api::<ControlPlane>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&cp),
        )
        .await
        .step("apply the ControlPlane")?)
}

/// Server-side apply Region `name` (all stores managed).
pub async fn apply_region(client: &Client, name: &str, snowflake_id: i32) -> Result<(), Error> {
    apply_region_spec(client, name, json!({"snowflakeId": snowflake_id})).await
}

/// Server-side apply Region `name` with `spec` (fields this manager leaves out are removed).
pub async fn apply_region_spec(client: &Client, name: &str, spec: Value) -> Result<(), Error> {
    let region: Region = serde_json::from_value(json!({
        "apiVersion": "silo.dev/v1alpha1",
        "kind": "Region",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .map_err(|e| Error::Unexpected(e.to_string()))?;
    Api::<Region>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&region),
        )
        .await
        .step("apply a Region")?;
    Ok(())
}

/// When condition `type_` of `conditions` became True, if it is True.
pub fn true_since(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<Timestamp> {
    conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| c.last_transition_time.0)
}

/// Wait until Region `name` is Ready at its current generation; the conditions on failure.
pub async fn wait_region_ready(
    client: &Client,
    name: &str,
    timeout: Duration,
) -> Result<Region, Error> {
    let regions: Api<Region> = Api::all(client.clone());
    Ok(
        wait::until(&format!("Region {name} to be Ready"), timeout, || async {
            let region = regions.get(name).await?;
            if region.is_ready() {
                return Ok(Check::Done(region));
            }
            let conditions: Vec<String> = region
                .status
                .iter()
                .flat_map(|s| s.conditions.iter())
                .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
                .collect();
            Ok(Check::Pending(conditions.join(" | ")))
        })
        .await?,
    )
}

/// Wait until condition `type_` of Region `name`, at its current generation, is one `accept`
/// takes (`what` says which, for the timeout's message); that condition.
pub async fn wait_region_condition(
    client: &Client,
    name: &str,
    type_: &str,
    what: &str,
    timeout: Duration,
    accept: impl Fn(&Condition) -> bool,
) -> Result<Condition, Error> {
    let regions = &Api::<Region>::all(client.clone());
    let accept = &accept;
    Ok(wait::until(
        &format!("Region {name}'s {type_} condition: {what}"),
        timeout,
        || async move {
            let region = regions.get(name).await?;
            let Some(s) = region.status.as_ref() else {
                return Ok(Check::Pending("no status".into()));
            };
            let current = s.observed_generation == region.metadata.generation;
            Ok(match s.conditions.iter().find(|c| c.type_ == type_) {
                Some(c) if current && accept(c) => Check::Done(c.clone()),
                other => Check::Pending(format!("current: {current}, {other:?}")),
            })
        },
    )
    .await?)
}

/// Wait until the ControlPlane is Ready at its current generation.
pub async fn wait_control_plane_ready(
    client: &Client,
    name: &str,
    timeout: Duration,
) -> Result<ControlPlane, Error> {
    let cps: Api<ControlPlane> = Api::all(client.clone());
    Ok(wait::until(
        &format!("ControlPlane {name} to be Ready"),
        timeout,
        || async {
            let cp = cps.get(name).await?;
            let status = cp.status.clone().unwrap_or_default();
            let current = status.observed_generation == cp.metadata.generation;
            let ready = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .cloned();
            Ok(match ready {
                Some(c) if current && c.status == "True" => Check::Done(cp),
                other => Check::Pending(format!("{other:?}")),
            })
        },
    )
    .await?)
}

/// The value of `key` of Secret `name` in `namespace`.
pub async fn secret_value(
    client: &Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<String, Error> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .step("read a Secret")?;
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .ok_or_else(|| Error::Unexpected(format!("Secret {namespace}/{name} has no key {key}")))
}

/// Pod name -> (uid, restarts summed over containers) of every pod in `namespace`.
pub async fn pod_identities(
    client: &Client,
    namespace: &str,
) -> Result<BTreeMap<String, (String, i32)>, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods.list(&ListParams::default()).await.step("list pods")?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| {
            // Finished migration Job pods are not serving pods.
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        })
        .map(|p| {
            let restarts = p
                .status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
                .map(|c| c.restart_count)
                .sum();
            (
                p.metadata.name.clone().unwrap_or_default(),
                (p.metadata.uid.clone().unwrap_or_default(), restarts),
            )
        })
        .collect())
}

/// Running pods in `namespace` matching `selector`, as `name@node`.
pub async fn running_pods(
    client: &Client,
    namespace: &str,
    selector: &str,
) -> Result<Vec<(String, String)>, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .step("list pods")?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .map(|p| {
            (
                p.metadata.name.clone().unwrap_or_default(),
                p.spec.and_then(|s| s.node_name).unwrap_or_default(),
            )
        })
        .collect())
}

/// Remove every ControlPlane and the scenario's Regions left by other runs.
pub async fn clean_fleet(client: &Client) -> Result<(), Error> {
    let cps: Api<ControlPlane> = Api::all(client.clone());
    let regions: Api<Region> = Api::all(client.clone());
    for r in regions
        .list(&ListParams::default())
        .await
        .step("list Regions")?
    {
        let _ = regions
            .delete(&r.name_any(), &DeleteParams::default())
            .await;
    }
    for cp in cps
        .list(&ListParams::default())
        .await
        .step("list ControlPlanes")?
    {
        let _ = cps.delete(&cp.name_any(), &DeleteParams::default()).await;
    }
    wait::until("no Region and no ControlPlane to exist", READY, || async {
        let r = regions.list(&ListParams::default()).await?.items.len();
        let c = cps.list(&ListParams::default()).await?.items.len();
        Ok(if r + c == 0 {
            Check::Done(())
        } else {
            Check::Pending(format!("{r} Regions, {c} ControlPlanes"))
        })
    })
    .await?;
    Ok(())
}

/// `dsn` with its host replaced by `base` (a port-forward to the region's relay).
pub fn dsn_via(dsn: &str, base: &str) -> Result<String, Error> {
    let (scheme_key, rest) = dsn
        .split_once('@')
        .ok_or_else(|| unexpected(format!("DSN without key: {dsn}")))?;
    let key = scheme_key.rsplit('/').next().unwrap_or_default();
    let project = rest.rsplit('/').next().unwrap_or_default();
    let host = base.trim_start_matches("http://");
    Ok(format!("http://{key}@{host}/{project}"))
}

/// Issues of the project as the gateway answers, once `count` events are grouped.
pub async fn wait_issue_count(
    api: &SiloApi,
    org: &str,
    project: &str,
    title: &str,
    count: u64,
) -> Result<Value, Error> {
    Ok(wait::until(
        &format!("issue {title:?} to count {count} events"),
        Duration::from_secs(180),
        || async {
            let issues = api.issues(org, project).await.unwrap_or_default();
            let found = issues
                .into_iter()
                .find(|i| i["title"].as_str().is_some_and(|t| t.contains(title)));
            let seen = found
                .as_ref()
                .and_then(|i| i["count"].as_str().and_then(|c| c.parse::<u64>().ok()));
            Ok(match (found, seen) {
                (Some(issue), Some(n)) if n >= count => Check::Done(issue),
                (_, n) => Check::Pending(format!("count {n:?}")),
            })
        },
    )
    .await?)
}

/// A sender of raw envelopes to `relay_url` (a port-forward to a relay) for the project of
/// `dsn`, authenticated with the public key of `key` (a project key as the API answers it).
pub fn envelope_sender(relay_url: &str, dsn: &str, key: &Value) -> EnvelopeSender {
    EnvelopeSender::new(
        relay_url,
        dsn.rsplit('/').next().unwrap_or_default(),
        key["public"].as_str().unwrap_or_default(),
    )
}

/// Wait until Namespace `name` is gone.
pub async fn wait_namespace_gone(client: &Client, name: &str) -> Result<(), Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    Ok(
        wait::until(&format!("namespace {name} to be gone"), READY, || async {
            Ok(match namespaces.get_opt(name).await? {
                None => Check::Done(()),
                Some(ns) => Check::Pending(format!("{:?}", ns.status)),
            })
        })
        .await?,
    )
}

/// Wait until relay accepts an event again (its own, titled apart from the load).
pub async fn wait_accepting(sender: &EnvelopeSender) -> Result<(), Error> {
    Ok(wait::until(
        "relay to accept events",
        Duration::from_secs(120),
        || async {
            let mut event = sentry::protocol::Event::new();
            event.message = Some("relay probe".to_owned());
            Ok(match sender.send(envelope_bytes(event)).await {
                Ok(()) => Check::Done(()),
                Err(why) => Check::Pending(why),
            })
        },
    )
    .await?)
}

/// The last lines of relay's and consumers' logs in `namespace` (for failure messages).
pub fn silo_logs(tools: &crate::kubectl::Tools, namespace: &str) -> String {
    ["relay", "consumers"]
        .iter()
        .map(|w| {
            let log = tools
                .kubectl(&[
                    "logs",
                    "-n",
                    namespace,
                    &format!("deploy/{w}"),
                    "--tail",
                    "15",
                ])
                .unwrap_or_else(|e| e.to_string());
            format!("--- {namespace}/{w}:\n{log}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// POST `body` to the API until it answers 2xx, retrying 503 (a silo that just became Ready
/// may not be reachable from the gateway for a moment: Service routes, DNS); other answers
/// fail at once with the status and body.
pub async fn post_until_created(
    base: &str,
    token: &str,
    path: &str,
    body: Value,
) -> Result<Value, Error> {
    let client = reqwest::Client::new();
    let answer = wait::until(
        &format!("POST {path} to succeed"),
        Duration::from_secs(90),
        || async {
            let r = client
                .post(format!("{base}{path}"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await;
            let r = match r {
                Ok(r) => r,
                Err(e) => return Ok(Check::Pending(e.to_string())),
            };
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            if status.is_success() {
                return Ok(Check::Done(Ok(
                    serde_json::from_str(&text).unwrap_or(Value::Null)
                )));
            }
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                return Ok(Check::Pending(format!("{status}: {text}")));
            }
            Ok(Check::Done(Err(format!(
                "POST {path} answered {status}: {text}"
            ))))
        },
    )
    .await?;
    answer.map_err(unexpected)
}
