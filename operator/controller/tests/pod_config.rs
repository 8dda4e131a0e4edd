//! Every workload container the operator builds starts with the configuration it needs: each
//! binary's own command line (its clap `Args`) is parsed from exactly the env and args the
//! operator wrote, the way clap reads them in the pod. Pure: no cluster, no services.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Container;
use kube::core::ObjectMeta;
use silo_api::{ControlPlane, ControlPlaneSpec, Region, RegionSpec};
use silo_operator::build::{self, DesiredSet};
use silo_operator::validate::{self, FleetContext};

/// Settings the per-region infrastructure (its own Postgres, Redis and Kafka) will provide;
/// until then region pods lack exactly these. The test fails when one of them appears, so that
/// this list shrinks with the code.
const REGION_STORE_GAPS: [(&str, &str); 6] = [
    ("relay", "KAFKA_BROKERS"),
    ("relay", "REDIS_URL"),
    ("consumers", "DATABASE_URL"),
    ("consumers", "KAFKA_BROKERS"),
    ("postprocess", "DATABASE_URL"),
    ("postprocess", "KAFKA_BROKERS"),
];
/// Web of a region silo: the region database.
const REGION_WEB_GAPS: [(&str, &str); 1] = [("web", "DATABASE_URL")];

fn control_plane() -> Arc<ControlPlane> {
    let mut cp = ControlPlane::new(
        "silo",
        serde_json::from_value::<ControlPlaneSpec>(serde_json::json!({
            "version": "0.1.0",
            "control": {"database": {"secretName": "control-db"}},
            "pods": {"imagePullPolicy": "Never", "nodeSelector": {"silo.dev/node": "real"}},
        }))
        .expect("valid ControlPlane spec"),
    );
    cp.metadata = ObjectMeta {
        name: Some("silo".into()),
        uid: Some("uid-cp".into()),
        ..ObjectMeta::default()
    };
    Arc::new(cp)
}

fn region() -> Arc<Region> {
    let spec: RegionSpec =
        serde_json::from_value(serde_json::json!({"snowflakeId": 1})).expect("valid Region spec");
    let mut region = Region::new("us", spec);
    region.metadata.uid = Some("uid-us".into());
    Arc::new(region)
}

fn region_set() -> DesiredSet {
    let cp = control_plane();
    let fleet = FleetContext::new(&cp);
    let regions = vec![region()];
    let directory = validate::fleet_directory(&regions);
    let validated =
        validate::validate_region(&regions[0], &fleet, &directory).expect("valid region");
    build::build_region(&validated, &fleet, &directory.directory, "k1")
}

fn control_set() -> DesiredSet {
    let cp = control_plane();
    let fleet = FleetContext::new(&cp);
    let validated =
        validate::validate_control_plane(&cp, std::slice::from_ref(&cp)).expect("valid cp");
    let directory = validate::fleet_directory(&[region()]).directory;
    build::build_control(&validated, &fleet, &directory)
}

fn containers(set: &DesiredSet) -> Vec<Container> {
    set.deployments()
        .flat_map(|d| {
            d.spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .map(|p| p.containers.clone())
                .unwrap_or_default()
        })
        .collect()
}

/// The container's environment as the kubelet hands it over: plain values as written,
/// Secret and field references as a placeholder (the Secret exists; its value is opaque).
fn pod_env(container: &Container) -> BTreeMap<String, String> {
    container
        .env
        .iter()
        .flatten()
        .map(|var| {
            let value = match (&var.value, &var.value_from) {
                (Some(value), _) => value.clone(),
                (None, Some(source)) => match &source.secret_key_ref {
                    Some(secret) => format!("secret-{}-{}", secret.name, secret.key),
                    None => "from-field".to_owned(),
                },
                (None, None) => String::new(),
            };
            (var.name.clone(), value)
        })
        .collect()
}

/// argv equivalent to what clap reads from `env`: `--flag=value` for every argument whose
/// `env =` variable is set, then the container's own args.
fn argv(cmd: &clap::Command, container: &Container, env: &BTreeMap<String, String>) -> Vec<String> {
    let binary = container
        .command
        .as_ref()
        .and_then(|c| c.first())
        .cloned()
        .unwrap_or_default();
    let mut argv = vec![binary];
    for arg in cmd.get_arguments() {
        let (Some(var), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        if let Some(value) = var.to_str().and_then(|v| env.get(v)) {
            argv.push(format!("--{long}={value}"));
        }
    }
    argv.extend(container.args.iter().flatten().cloned());
    argv
}

/// Parse `T` from the container's env and args only: clap's own environment lookup is turned
/// off, so variables of the test process (e.g. the services' URLs) cannot fill a gap.
fn parse_as<T: clap::Parser>(
    container: &Container,
    env: &BTreeMap<String, String>,
) -> Result<T, String> {
    let cmd = T::command();
    let argv = argv(&cmd, container, env);
    let mut cmd = cmd.mut_args(|arg| arg.env(None::<&str>));
    let matches = cmd
        .try_get_matches_from_mut(argv)
        .map_err(|e| e.to_string())?;
    T::from_arg_matches(&matches).map_err(|e| e.to_string())
}

fn parse(container: &Container, env: &BTreeMap<String, String>) -> Result<(), String> {
    match container.name.as_str() {
        "relay" => parse_as::<silo_relay::cli::Cli>(container, env).map(drop),
        "web" => parse_as::<silo_web::cli::Cli>(container, env)?
            .serve
            .validate(),
        "consumers" => parse_as::<silo_consumers::args::Args>(container, env).map(drop),
        "postprocess" => parse_as::<silo_postprocess::args::Args>(container, env).map(drop),
        other => Err(format!("unknown workload container {other}")),
    }
}

/// Parse every container of `set`; `gaps` are settings known to be missing, which must be
/// missing (and are filled with placeholders to check everything else).
fn check(set: &DesiredSet, gaps: &[(&str, &str)]) -> Vec<String> {
    let mut parsed = Vec::new();
    for container in containers(set) {
        let mut env = pod_env(&container);
        for (workload, var) in gaps.iter().filter(|(w, _)| *w == container.name) {
            assert!(
                !env.contains_key(*var),
                "{workload} now gets {var}: remove it from the known gaps of this test"
            );
            env.insert((*var).to_owned(), format!("placeholder-{var}"));
        }
        if let Err(error) = parse(&container, &env) {
            panic!(
                "{} cannot start with the environment the operator wrote:\n{error}\nenv: {env:#?}",
                container.name
            );
        }
        parsed.push(container.name.clone());
    }
    parsed.sort();
    parsed
}

#[test]
fn region_workloads_parse_their_configuration_from_the_pod_env() {
    let set = region_set();
    let gaps: Vec<_> = REGION_STORE_GAPS
        .iter()
        .chain(REGION_WEB_GAPS.iter())
        .copied()
        .collect();
    assert_eq!(
        check(&set, &gaps),
        ["consumers", "postprocess", "relay", "web"]
    );
}

#[test]
fn control_web_parses_its_configuration_from_the_pod_env() {
    // The control database comes from spec.control.database: no gap.
    assert_eq!(check(&control_set(), &[]), ["web"]);
}

#[test]
fn region_pods_without_stores_fail_to_parse_naming_the_missing_setting() {
    // The check itself can fail: without the placeholders, relay names what it lacks.
    let set = region_set();
    let relay = containers(&set)
        .into_iter()
        .find(|c| c.name == "relay")
        .expect("relay container");
    let error = parse(&relay, &pod_env(&relay)).expect_err("relay lacks its stores");
    assert!(error.contains("--kafka-brokers"), "{error}");
}

#[test]
fn workload_pods_are_probed_sized_and_locked_down() {
    for set in [region_set(), control_set()] {
        for deployment in set.deployments() {
            let pod = deployment
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .expect("pod spec");
            let grace = pod.termination_grace_period_seconds.expect("grace period");
            assert!(grace > 20, "grace {grace}s must cover the 20s drain");
            assert_eq!(
                pod.node_selector
                    .as_ref()
                    .and_then(|s| s.get("silo.dev/node")),
                Some(&"real".to_owned())
            );
            let c = &pod.containers[0];
            let env = pod_env(c);
            assert_eq!(
                env.get("SILO_SHUTDOWN_TIMEOUT").map(String::as_str),
                Some("20s")
            );
            assert_eq!(c.image_pull_policy.as_deref(), Some("Never"));
            for probe in [&c.liveness_probe, &c.readiness_probe, &c.startup_probe] {
                let port = probe
                    .as_ref()
                    .and_then(|p| p.http_get.as_ref())
                    .map(|h| h.port.clone())
                    .expect("http probe");
                let named = c.ports.iter().flatten().any(|p| {
                    port == k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(
                        p.name.clone().unwrap_or_default(),
                    )
                });
                assert!(named, "{}: probe port {port:?} is a container port", c.name);
            }
            let listen_var = match c.name.as_str() {
                "relay" => "SILO_RELAY_LISTEN",
                "web" => "SILO_WEB_LISTEN",
                _ => "SILO_ADMIN_ADDR",
            };
            let port = c.ports.as_ref().expect("ports")[0].container_port;
            assert_eq!(
                env.get(listen_var),
                Some(&format!("0.0.0.0:{port}")),
                "{}",
                c.name
            );
            let requests = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .expect("resource requests");
            assert!(requests.contains_key("cpu") && requests.contains_key("memory"));
            let security = c.security_context.as_ref().expect("security context");
            assert_eq!(security.run_as_non_root, Some(true));
            assert_eq!(security.allow_privilege_escalation, Some(false));
        }
    }
}
