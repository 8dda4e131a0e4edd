//! Every workload container the operator builds starts with the configuration it needs: each
//! binary's own command line (its clap `Args`) is parsed from exactly the env and args the
//! operator wrote, the way clap reads them in the pod. Pure: no cluster, no services.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::core::ObjectMeta;
use silo_api::{ControlPlane, ControlPlaneSpec, Region, RegionSpec, Store};
use silo_operator::build::{self, DesiredSet, Gate};
use silo_operator::infra::{Provided, SiloInfra, Storage};
use silo_operator::validate::{self, FleetContext};

fn control_plane(mode: &str, database: bool) -> Arc<ControlPlane> {
    let mut spec = serde_json::json!({
        "version": "0.1.0",
        "mode": mode,
        "pods": {"imagePullPolicy": "Never", "nodeSelector": {"silo.dev/node": "real"}},
    });
    if database {
        spec["control"] = serde_json::json!({"database": {"secretName": "control-db"}});
    }
    let mut cp = ControlPlane::new(
        "silo",
        serde_json::from_value::<ControlPlaneSpec>(spec).expect("valid ControlPlane spec"),
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

/// Every store managed (claims from a default class) or, with `external`, Postgres external.
fn infra(stores: &[Store], external: bool) -> SiloInfra {
    let managed = || Provided::Managed {
        sizing: Default::default(),
        storage: Storage::Claim {
            class: None,
            size: Quantity("1Gi".into()),
        },
    };
    let postgres = if external {
        Provided::External {
            source: "pg".into(),
            data: BTreeMap::from([("uri".into(), "postgres://u:p@db:5432/d".into())]),
        }
    } else {
        managed()
    };
    SiloInfra {
        postgres,
        redis: stores.contains(&Store::Redis).then(managed),
        kafka: stores.contains(&Store::Kafka).then(managed),
        retain_on_delete: false,
    }
}

/// The converged state: the migration Job and the workloads at the fleet's version.
const GATE: Gate<'static> = Gate {
    run_job: true,
    workload_version: Some("0.1.0"),
};

fn region_set(external: bool) -> DesiredSet {
    let cp = control_plane("SILOED", true);
    let fleet = FleetContext::new(&cp);
    let regions = vec![region()];
    let directory = validate::fleet_directory(
        &regions,
        &validate::Silos::default(),
        &validate::Retired::default(),
    );
    let validated =
        validate::validate_region(&regions[0], &fleet, &directory).expect("valid region");
    build::build_region(
        &validated,
        &fleet,
        &directory.published,
        "k1",
        &infra(&Store::ALL, external),
        GATE,
    )
}

fn control_set(database: bool) -> DesiredSet {
    let cp = control_plane("SILOED", database);
    let fleet = FleetContext::new(&cp);
    let validated =
        validate::validate_control_plane(&cp, std::slice::from_ref(&cp)).expect("valid cp");
    let directory = validate::fleet_directory(
        &[region()],
        &validate::Silos::default(),
        &validate::Retired::default(),
    )
    .published;
    let postgres = if database {
        Provided::Reference {
            secret: "control-db".into(),
            key: "url".into(),
        }
    } else {
        infra(&[], false).postgres
    };
    let infra = SiloInfra {
        postgres,
        ..infra(&[], false)
    };
    build::build_control(&validated, &fleet, &directory, &infra, GATE)
}

fn monolith_set() -> DesiredSet {
    let cp = control_plane("MONOLITH", false);
    let fleet = FleetContext::new(&cp);
    let validated =
        validate::validate_control_plane(&cp, std::slice::from_ref(&cp)).expect("valid cp");
    let entry = build::monolith_directory_entry(&validated, "monolith");
    let directory = build::PublishedDirectory::of(
        &silo_contract::RegionDirectory::new(vec![entry]).expect("directory"),
    );
    build::build_monolith(
        &validated,
        &fleet,
        &directory,
        &infra(&Store::ALL, false),
        GATE,
    )
}

/// The workload containers of `set`: every Deployment's, and the migration Job's `migrate`.
fn containers(set: &DesiredSet) -> Vec<Container> {
    let job = set
        .job()
        .and_then(|j| j.spec.as_ref())
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers.clone())
        .unwrap_or_default();
    set.deployments()
        .flat_map(|d| {
            d.spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .map(|p| p.containers.clone())
                .unwrap_or_default()
        })
        .chain(job)
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
/// `env =` variable is set, then the rest of the container's command and its args.
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
    // The rest of the command (a subcommand such as `web migrate`), then the args.
    argv.extend(container.command.iter().flatten().skip(1).cloned());
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
        "migrate" => {
            parse_as::<silo_web::cli::Cli>(container, env).and_then(|cli| match cli.command {
                Some(silo_web::cli::Command::Migrate) => Ok(()),
                other => Err(format!(
                    "the migration Job runs {other:?}, not `web migrate`"
                )),
            })
        }
        "consumers" => parse_as::<silo_consumers::args::Args>(container, env).map(drop),
        "postprocess" => parse_as::<silo_postprocess::args::Args>(container, env).map(drop),
        other => Err(format!("unknown workload container {other}")),
    }
}

/// Parse every workload container of `set` from exactly the env the operator wrote.
fn check(set: &DesiredSet) -> Vec<String> {
    let mut parsed = Vec::new();
    for container in containers(set) {
        // The API server refuses a pod template naming a variable twice.
        let names: Vec<&String> = container.env.iter().flatten().map(|v| &v.name).collect();
        let unique: std::collections::BTreeSet<&&String> = names.iter().collect();
        assert_eq!(
            unique.len(),
            names.len(),
            "{}: duplicate env vars in {names:?}",
            container.name
        );
        let env = pod_env(&container);
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
    for external in [false, true] {
        assert_eq!(
            check(&region_set(external)),
            ["consumers", "migrate", "postprocess", "relay", "web"]
        );
    }
}

#[test]
fn control_web_parses_its_configuration_from_the_pod_env() {
    // Managed control database, and the one given by spec.control.database.
    for database in [false, true] {
        assert_eq!(check(&control_set(database)), ["migrate", "web"]);
    }
}

#[test]
fn monolith_workloads_parse_their_configuration_from_the_pod_env() {
    assert_eq!(
        check(&monolith_set()),
        ["consumers", "migrate", "postprocess", "relay", "web"]
    );
}

#[test]
fn a_pod_lacking_a_store_fails_to_parse_naming_the_missing_setting() {
    // The check itself can fail: without its Kafka setting relay names what it lacks.
    let set = region_set(false);
    let relay = containers(&set)
        .into_iter()
        .find(|c| c.name == "relay")
        .expect("relay container");
    let mut env = pod_env(&relay);
    assert_eq!(
        env.remove("KAFKA_BROKERS").as_deref(),
        Some("secret-kafka-credentials-bootstrap.servers")
    );
    let error = parse(&relay, &env).expect_err("relay lacks Kafka");
    assert!(error.contains("--kafka-brokers"), "{error}");
}

#[test]
fn every_store_setting_comes_from_the_silo_s_own_secrets() {
    let set = region_set(false);
    for container in containers(&set) {
        let env = pod_env(&container);
        for (var, want) in [
            ("DATABASE_URL", "secret-postgres-credentials-uri"),
            ("REDIS_URL", "secret-redis-credentials-uri"),
            (
                "KAFKA_BROKERS",
                "secret-kafka-credentials-bootstrap.servers",
            ),
        ] {
            if let Some(value) = env.get(var) {
                assert_eq!(value, want, "{}: {var}", container.name);
            }
        }
    }
    let external = region_set(true);
    let web = containers(&external)
        .into_iter()
        .find(|c| c.name == "web")
        .expect("web");
    assert_eq!(
        pod_env(&web).get("DATABASE_URL").map(String::as_str),
        Some("secret-postgres-external-uri")
    );
}

#[test]
fn workload_pods_are_probed_sized_and_locked_down() {
    for set in [region_set(false), control_set(false), monolith_set()] {
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
