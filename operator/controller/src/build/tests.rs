//! Unit tests of the pure validate + build steps (no API server).

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::EnvVar;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::ObjectMeta;
use silo_api::{Category, ControlPlane, ControlPlaneSpec, Mode, Region, RegionSpec};
use silo_contract::{RegionDirectory, SiloContract};

use super::*;
use crate::infra::{Provided, SiloInfra, Storage};
use crate::validate::{self, FleetContext, Retired, Silos, ValidateError};

mod directory;
mod network;

fn region(name: &str, id: i32, created: i64) -> Arc<Region> {
    let mut r = Region::new(
        name,
        RegionSpec {
            category: Category::MultiTenant,
            snowflake_id: id,
            address: None,
            version: None,
            visible: true,
            workloads: Default::default(),
            infrastructure: Default::default(),
            suspend: false,
            suspend_network_policies: false,
            cluster: None,
            rotate_credentials: None,
        },
    );
    r.metadata.uid = Some(format!("uid-{name}"));
    r.metadata.creation_timestamp = Some(Time(
        k8s_openapi::jiff::Timestamp::from_second(created).unwrap(),
    ));
    Arc::new(r)
}

fn control_plane(mode: Mode) -> Arc<ControlPlane> {
    let mut cp = ControlPlane::new(
        "silo",
        serde_json::from_value::<ControlPlaneSpec>(serde_json::json!({
            "version": "1.4.0",
            "mode": mode,
            "monolithRegion": if mode == Mode::Monolith { "local" } else { "us" },
        }))
        .unwrap(),
    );
    cp.metadata = ObjectMeta {
        name: Some("silo".into()),
        uid: Some("uid-cp".into()),
        ..ObjectMeta::default()
    };
    Arc::new(cp)
}

/// `region`, the only Region of the fleet of `cp`, built on `infra` at the converged gate.
fn build_alone(cp: &ControlPlane, region: &Arc<Region>, infra: &SiloInfra) -> DesiredSet {
    let fleet = FleetContext::new(cp);
    let directory = validate::fleet_directory(
        std::slice::from_ref(region),
        &Silos::default(),
        &Retired::default(),
    );
    let validated = validate::validate_region(region, &fleet, &directory).unwrap();
    build_region(
        &validated,
        &fleet,
        &directory.published,
        "k1",
        infra,
        CONVERGED,
    )
}

/// The control silo of `cp` (SILOED) with Region us in the directory, converged.
fn build_control_for(cp: &Arc<ControlPlane>) -> DesiredSet {
    let validated = validate::validate_control_plane(cp, std::slice::from_ref(cp)).unwrap();
    let fleet = FleetContext::new(cp);
    let directory = validate::fleet_directory(
        &[region("us", 1, 1)],
        &Silos::default(),
        &Retired::default(),
    )
    .published;
    build_control(
        &validated,
        &fleet,
        &directory,
        &managed(&[silo_api::Store::Postgres]),
        CONVERGED,
    )
}

fn build_for(target: &Region, all: &[Arc<Region>]) -> DesiredSet {
    let fleet = FleetContext::new(&control_plane(Mode::Siloed));
    let directory = validate::fleet_directory(all, &Silos::default(), &Retired::default());
    let validated = validate::validate_region(target, &fleet, &directory).unwrap();
    build_region(
        &validated,
        &fleet,
        &directory.published,
        "k1,k0",
        &managed(&silo_api::Store::ALL),
        Gate {
            run_job: true,
            workload_version: Some(&validated.version),
        },
    )
}

/// The migration Job and the workloads at the fleet's version.
const CONVERGED: Gate<'static> = Gate {
    run_job: true,
    workload_version: Some("1.4.0"),
};

/// Every store of `stores` managed, data in an emptyDir.
fn managed(stores: &[silo_api::Store]) -> SiloInfra {
    use silo_api::Store;
    let provided = || Provided::Managed {
        sizing: Default::default(),
        storage: Storage::EmptyDir,
    };
    SiloInfra {
        postgres: provided(),
        redis: stores.contains(&Store::Redis).then(provided),
        kafka: stores.contains(&Store::Kafka).then(provided),
        retain_on_delete: false,
    }
}

fn deployment<'a>(set: &'a DesiredSet, name: &str) -> &'a Deployment {
    set.deployments()
        .find(|d| d.metadata.name.as_deref() == Some(name))
        .unwrap()
}

fn env_of(d: &Deployment) -> Vec<EnvVar> {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .env
        .clone()
        .unwrap()
}

fn env_value(env: &[EnvVar], name: &str) -> Option<String> {
    env.iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

fn secret_ref(env: &[EnvVar], name: &str) -> Option<(String, String)> {
    let source = env.iter().find(|e| e.name == name)?.value_from.as_ref()?;
    let key_ref = source.secret_key_ref.as_ref()?;
    Some((key_ref.name.clone(), key_ref.key.clone()))
}

#[test]
fn region_silo_has_namespace_workloads_services_and_directory() {
    let regions = vec![region("de", 2, 10), region("us", 1, 20)];
    let set = build_for(&regions[0], &regions);
    let keys: Vec<String> = set.children.iter().map(|c| c.key().to_string()).collect();
    for expected in [
        "Namespace/region-de",
        "ConfigMap/region-de/silo-directory",
        "Secret/region-de/silo-rpc",
        "Deployment/region-de/relay",
        "Deployment/region-de/consumers",
        "Deployment/region-de/web",
        "Deployment/region-de/postprocess",
        "Service/region-de/relay",
        "Service/region-de/web",
        "StatefulSet/region-de/postgres",
        "StatefulSet/region-de/redis",
        "StatefulSet/region-de/kafka",
        "Secret/region-de/kafka-credentials",
        "Job/region-de/migrate-1.4.0",
    ] {
        assert!(
            keys.contains(&expected.to_owned()),
            "missing {expected} in {keys:?}"
        );
    }

    // Plus a client and a headless Service per store, the ServiceAccount and two policies.
    assert_eq!(set.children.len(), 23, "{keys:?}");
    let generated: Vec<String> = set.generated.iter().map(|g| g.key().to_string()).collect();
    assert_eq!(
        generated,
        [
            "Secret/region-de/relay-secret",
            "Secret/region-de/postgres-credentials",
            "Secret/region-de/redis-credentials"
        ]
    );
    for child in &set.children {
        let meta = child.meta();
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(
            labels.get(crate::labels::REGION).map(String::as_str),
            Some("de")
        );
        assert_eq!(
            labels.get(crate::labels::MANAGED_BY).map(String::as_str),
            Some("silo-operator")
        );
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Region", "de"));
        assert_eq!(owner.controller, Some(true));
        assert!(!child.hash().is_empty());
    }
}

#[test]
fn every_pod_template_carries_the_silo_contract() {
    let regions = vec![region("de", 2, 10), region("us", 1, 20)];
    let set = build_for(&regions[0], &regions);
    for name in ["relay", "consumers", "web", "postprocess"] {
        let d = deployment(&set, name);
        let env = env_of(d);
        assert_eq!(
            env_value(&env, "SENTRY_SILO_MODE").as_deref(),
            Some("REGION")
        );
        assert_eq!(env_value(&env, "SENTRY_REGION").as_deref(), Some("de"));
        assert_eq!(
            env_value(&env, "SENTRY_REGION_CONFIG").as_deref(),
            Some("/etc/silo/directory/regions.json")
        );
        assert_eq!(
            env_value(&env, "SENTRY_MONOLITH_REGION").as_deref(),
            Some("us")
        );
        assert_eq!(
            env_value(&env, "SENTRY_CONTROL_ADDRESS").as_deref(),
            Some("http://web.silo-control.svc:8000")
        );
        assert_eq!(
            secret_ref(&env, "RPC_SHARED_SECRET"),
            Some(("silo-rpc".into(), "secrets".into()))
        );
        let listen = match name {
            "relay" => env_value(&env, "SILO_RELAY_LISTEN"),
            "web" => env_value(&env, "SILO_WEB_LISTEN"),
            // consumers and postprocess serve only their admin endpoints (probes, metrics).
            _ => env_value(&env, "SILO_ADMIN_ADDR"),
        };
        let container = &d
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0];
        let port = container.ports.as_ref().map(|p| p[0].container_port);
        assert_eq!(listen, port.map(|p| format!("0.0.0.0:{p}")), "{name}");
        let relay_secret = secret_ref(&env, "RELAY_SHARED_SECRET");
        if matches!(name, "relay" | "web") {
            assert_eq!(relay_secret, Some(("relay-secret".into(), "secret".into())));
        } else {
            assert_eq!(relay_secret, None, "{name} must not see the relay secret");
        }
        assert_eq!(
            container.image.as_deref(),
            Some("ghcr.io/silo-dev/silo:1.4.0")
        );
    }
}

#[test]
fn version_pin_and_sizing_are_honoured() {
    let mut pinned = (*region("de", 2, 10)).clone();
    pinned.spec.version = Some("1.3.9".into());
    pinned.spec.workloads.relay = Some(silo_api::WorkloadSpec {
        replicas: Some(3),
        resources: None,
    });
    let all = vec![Arc::new(pinned.clone())];
    let set = build_for(&pinned, &all);
    let relay = deployment(&set, "relay");
    assert_eq!(relay.spec.as_ref().unwrap().replicas, Some(3));
    let container = &relay
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("ghcr.io/silo-dev/silo:1.3.9")
    );
    assert_eq!(
        deployment(&set, "web").spec.as_ref().unwrap().replicas,
        Some(1)
    );
}

#[test]
fn later_region_with_a_taken_snowflake_is_left_out_and_named() {
    let regions = [
        region("late", 5, 50),
        region("early", 5, 10),
        region("gone", 6, 1),
    ];
    let mut deleting = (*regions[2]).clone();
    deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    let regions = vec![regions[0].clone(), regions[1].clone(), Arc::new(deleting)];
    let fleet_dir = validate::fleet_directory(&regions, &Silos::default(), &Retired::default());
    assert_eq!(
        fleet_dir.directory.names().collect::<Vec<_>>(),
        vec!["early"]
    );
    let fleet = FleetContext::new(&control_plane(Mode::Siloed));
    let err = validate::validate_region(&regions[0], &fleet, &fleet_dir).unwrap_err();
    assert_eq!(
        err,
        ValidateError::DuplicateSnowflakeId {
            id: 5,
            other: "early".into()
        }
    );
    assert_eq!(err.reason(), "DuplicateSnowflakeId");
    assert!(err.to_string().contains("Region early"));
    assert!(validate::validate_region(&regions[1], &fleet, &fleet_dir).is_ok());
}

#[test]
fn region_with_a_retired_snowflake_is_left_out_and_named_until_released() {
    let regions = vec![region("us", 1, 10), region("dup", 5, 50)];
    let fleet = FleetContext::new(&control_plane(Mode::Siloed));
    let recorded = || [(5, "de".to_owned())];
    let retired = Retired::new(recorded(), []);
    let fleet_dir = validate::fleet_directory(&regions, &Silos::default(), &retired);
    assert_eq!(fleet_dir.directory.names().collect::<Vec<_>>(), vec!["us"]);
    let err = validate::validate_region(&regions[1], &fleet, &fleet_dir).unwrap_err();
    assert_eq!(
        err,
        ValidateError::RetiredSnowflakeId {
            id: 5,
            holder: "de".into()
        }
    );
    assert_eq!(err.reason(), "RetiredSnowflakeId");
    assert!(err.to_string().contains("Region de"));

    let released = Retired::new(recorded(), [5]);
    let fleet_dir = validate::fleet_directory(&regions, &Silos::default(), &released);
    assert_eq!(
        fleet_dir.directory.names().collect::<Vec<_>>(),
        vec!["dup", "us"]
    );
    let validated = validate::validate_region(&regions[1], &fleet, &fleet_dir).unwrap();
    assert_eq!(validated.snowflake_id, 5);
}

#[test]
fn regions_are_not_deployed_in_monolith_mode() {
    let regions = vec![region("de", 2, 10)];
    let fleet = FleetContext::new(&control_plane(Mode::Monolith));
    let dir = validate::fleet_directory(&regions, &Silos::default(), &Retired::default());
    let err = validate::validate_region(&regions[0], &fleet, &dir).unwrap_err();
    assert_eq!(err.reason(), "MonolithMode");
}

#[test]
fn oldest_control_plane_is_active_and_others_are_refused() {
    let first = control_plane(Mode::Siloed);
    let mut second = (*control_plane(Mode::Siloed)).clone();
    second.metadata.name = Some("zz-second".into());
    let all = vec![first.clone(), Arc::new(second.clone())];
    assert!(validate::validate_control_plane(&first, &all).is_ok());
    let err = validate::validate_control_plane(&second, &all).unwrap_err();
    assert_eq!(err.reason(), "MultipleControlPlanes");
    assert!(validate::active_control_plane(&[]).is_err());
}

#[test]
fn control_silo_runs_web_in_control_mode() {
    let cp = control_plane(Mode::Siloed);
    let set = build_control_for(&cp);
    let names: Vec<_> = set
        .deployments()
        .map(|d| d.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, vec!["web"]);
    let env = env_of(deployment(&set, "web"));
    assert_eq!(
        env_value(&env, "SENTRY_SILO_MODE").as_deref(),
        Some("CONTROL")
    );
    assert_eq!(env_value(&env, "SENTRY_REGION"), None);
    assert_eq!(secret_ref(&env, "RELAY_SHARED_SECRET"), None);
    assert_eq!(
        set.generated[0].key().to_string(),
        "Secret/silo-control/silo-rpc"
    );
}

#[test]
fn monolith_runs_all_four_workloads_in_one_namespace() {
    let cp = control_plane(Mode::Monolith);
    let validated = validate::validate_control_plane(&cp, std::slice::from_ref(&cp)).unwrap();
    let fleet = FleetContext::new(&cp);
    let entry = monolith_directory_entry(&validated, "local");
    let directory = PublishedDirectory::of(&RegionDirectory::new(vec![entry]).unwrap());
    let set = build_monolith(
        &validated,
        &fleet,
        &directory,
        &managed(&silo_api::Store::ALL),
        CONVERGED,
    );
    let names: Vec<_> = set
        .deployments()
        .map(|d| d.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, vec!["relay", "consumers", "web", "postprocess"]);
    for d in set.deployments() {
        assert_eq!(d.metadata.namespace.as_deref(), Some("silo-control"));
        let env = env_of(d);
        assert_eq!(
            env_value(&env, "SENTRY_SILO_MODE").as_deref(),
            Some("MONOLITH")
        );
        assert_eq!(env_value(&env, "SENTRY_REGION").as_deref(), Some("local"));
    }
}

#[test]
fn a_region_gets_its_own_stores_and_credentials_in_its_namespace() {
    let us = region("us", 1, 1);
    let set = build_for(&us, std::slice::from_ref(&us));
    let stores: Vec<_> = set
        .stateful_sets()
        .map(|s| {
            assert_eq!(s.metadata.namespace.as_deref(), Some("region-us"));
            s.metadata.name.clone().unwrap()
        })
        .collect();
    assert_eq!(stores, ["postgres", "redis", "kafka"]);
    for name in [
        "postgres",
        "postgres-headless",
        "redis",
        "kafka",
        "kafka-headless",
    ] {
        let key = ChildKey {
            kind: ChildKind::Service,
            namespace: "region-us".into(),
            name: name.into(),
        };
        assert!(set.contains(&key), "{key} missing");
    }
    let generated: Vec<String> = set.generated.iter().map(|g| g.key().to_string()).collect();
    assert!(generated.contains(&"Secret/region-us/postgres-credentials".to_owned()));
    assert!(generated.contains(&"Secret/region-us/redis-credentials".to_owned()));
    let pg = set
        .generated
        .iter()
        .find(|g| g.key().name == "postgres-credentials")
        .unwrap();
    let data = pg.data("s3cret");
    assert_eq!(
        data["uri"],
        "postgres://silo:s3cret@postgres.region-us.svc:5432/silo"
    );
    assert_eq!(data["password"], "s3cret");
    // Every generated secret lives in the region's own namespace.
    assert!(
        set.generated
            .iter()
            .all(|g| g.secret.metadata.namespace.as_deref() == Some("region-us"))
    );
}

#[test]
fn the_gate_holds_back_the_job_and_the_workloads() {
    let us = region("us", 1, 1);
    let fleet = FleetContext::new(&control_plane(Mode::Siloed));
    let directory = validate::fleet_directory(
        std::slice::from_ref(&us),
        &Silos::default(),
        &Retired::default(),
    );
    let validated = validate::validate_region(&us, &fleet, &directory).unwrap();
    let build = |gate| {
        build_region(
            &validated,
            &fleet,
            &directory.published,
            "k1",
            &managed(&silo_api::Store::ALL),
            gate,
        )
    };
    let stores_only = build(Gate {
        run_job: false,
        workload_version: None,
    });
    assert!(stores_only.job().is_none());
    assert_eq!(stores_only.deployments().count(), 0);
    assert_eq!(stores_only.stateful_sets().count(), 3);
    // The previous version keeps running while the new one migrates.
    let migrating = build(Gate {
        run_job: true,
        workload_version: Some("1.3.0"),
    });
    let job = migrating.job().expect("migration job");
    assert_eq!(job.metadata.name.as_deref(), Some("migrate-1.4.0"));
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(
        pod.containers[0].command.as_deref(),
        Some(&["web".to_owned(), "migrate".to_owned()][..])
    );
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("ghcr.io/silo-dev/silo:1.4.0")
    );
    let init = pod.init_containers.as_ref().expect("store steps");
    let names: Vec<&str> = init.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["redis", "topics"],
        "Redis is checked, then topics created"
    );
    let script = init[1].command.as_ref().unwrap().join(" ");
    for topic in TOPICS {
        assert!(script.contains(topic), "{script}");
    }
    // The Redis step pings the workloads' own URL and gives up with the client's words.
    let redis = &init[0];
    assert_eq!(
        secret_ref(redis.env.as_ref().unwrap(), "REDIS_URL"),
        Some(("redis-credentials".to_owned(), "uri".to_owned()))
    );
    let ping = &redis.command.as_ref().unwrap()[2];
    assert!(
        ping.contains("redis-cli") && ping.contains("ping"),
        "{ping}"
    );
    for step in init {
        assert_eq!(
            step.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError"),
            "{} ends its log with the reason it failed",
            step.name
        );
    }
    for d in migrating.deployments() {
        let image = d
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .image
            .clone();
        assert_eq!(image.as_deref(), Some("ghcr.io/silo-dev/silo:1.3.0"));
        assert_eq!(
            d.metadata.labels.as_ref().unwrap()[crate::labels::VERSION],
            "1.3.0"
        );
    }
}

#[test]
fn job_names_are_dns_labels_and_distinct() {
    assert_eq!(job_name("1.4.0"), "migrate-1.4.0");
    let odd = job_name("2.0.0+Build_7");
    assert!(odd.starts_with("migrate-2.0.0-build-7-"), "{odd}");
    assert_ne!(odd, job_name("2.0.0+build_7"));
    let long = job_name(&"9".repeat(120));
    assert!(long.len() <= 63, "{long}");
}

#[test]
fn kafka_cluster_ids_are_stable_per_silo_and_distinct() {
    let a = kafka_cluster_id("uid-us");
    assert_eq!(a.len(), 22);
    assert_eq!(a, kafka_cluster_id("uid-us"));
    assert_ne!(a, kafka_cluster_id("uid-de"));
}

#[test]
fn public_urls_fill_dsn_host_and_links() {
    let mut cp = (*control_plane(Mode::Siloed)).clone();
    cp.spec.urls.api = Some("https://{region}.sentry.example.com".into());
    cp.spec.urls.ingest = Some("https://ingest.{region}.sentry.example.com".into());
    let fleet = FleetContext::new(&cp);
    let us = region("us", 1, 1);
    let directory = validate::fleet_directory(
        std::slice::from_ref(&us),
        &Silos::default(),
        &Retired::default(),
    );
    let validated = validate::validate_region(&us, &fleet, &directory).unwrap();
    let set = build_region(
        &validated,
        &fleet,
        &directory.published,
        "k1",
        &managed(&silo_api::Store::ALL),
        CONVERGED,
    );
    let web = env_of(deployment(&set, "web"));
    assert_eq!(
        env_value(&web, "SILO_RELAY_PUBLIC_URL").as_deref(),
        Some("https://ingest.us.sentry.example.com")
    );
    assert_eq!(
        env_value(&web, "SILO_WEB_PUBLIC_URL").as_deref(),
        Some("https://us.sentry.example.com")
    );
    // Defaults: the in-cluster addresses.
    let fleet = FleetContext::new(&control_plane(Mode::Siloed));
    assert_eq!(fleet.ingest_url("us"), "http://relay.region-us.svc:3000");
    assert_eq!(fleet.api_url("us"), "http://web.region-us.svc:8000");
}

#[test]
fn an_edited_external_connection_rolls_the_workloads() {
    let us = region("us", 1, 1);
    let cp = control_plane(Mode::Siloed);
    let build = |infra: &SiloInfra| {
        let set = build_alone(&cp, &us, infra);
        let template = deployment(&set, "web").spec.clone().unwrap().template;
        template
            .metadata
            .and_then(|m| m.annotations)
            .and_then(|a| a.get(crate::labels::CONNECTIONS_HASH).cloned())
    };
    let external = |uri: &str| {
        let mut infra = managed(&silo_api::Store::ALL);
        infra.postgres = Provided::External {
            source: "us-db".into(),
            data: [("uri".to_owned(), uri.to_owned())].into(),
        };
        infra
    };
    assert_eq!(build(&managed(&silo_api::Store::ALL)), None, "managed only");
    let before = build(&external("postgres://u:old@db:5432/silo")).expect("hash");
    let same = build(&external("postgres://u:old@db:5432/silo")).expect("hash");
    let after = build(&external("postgres://u:new@db:5432/silo")).expect("hash");
    assert_eq!(before, same);
    assert_ne!(before, after, "a new password changes the pod template");
}

#[test]
fn a_remote_region_has_no_owner_references_and_reaches_control_externally() {
    let r = region("us", 1, 10);
    let set = build_for(&r, std::slice::from_ref(&r));
    let detached = set.clone().detached();
    assert_eq!(set.children.len(), detached.children.len());
    assert_eq!(
        detached.clone().detached(),
        detached,
        "detaching twice changes nothing"
    );
    for (local, remote) in set.children.iter().zip(&detached.children) {
        assert!(local.meta().owner_references.is_some(), "{}", local.key());
        assert!(remote.meta().owner_references.is_none(), "{}", remote.key());
        assert!(!remote.hash().is_empty());
        assert_ne!(local.hash(), remote.hash(), "{}", remote.key());
    }
    assert!(
        detached
            .generated
            .iter()
            .all(|g| g.secret.metadata.owner_references.is_none())
    );
    let mut fleet = FleetContext::new(&control_plane(Mode::Siloed));
    assert_eq!(fleet.for_remote().control_address, fleet.control_address);
    fleet.external_control_address = Some("https://control.example.com".to_owned());
    assert_eq!(
        fleet.for_remote().control_address,
        "https://control.example.com"
    );
}

#[test]
fn external_stores_with_tls_mount_their_ca_and_set_kafka_security() {
    use crate::infra::external::{ca_bundle_path, resolve_external};
    use k8s_openapi::ByteString;
    use silo_api::{ExternalStore, KafkaSasl, SaslMechanism, Store, StoreTls};

    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
    let secret = |pairs: &[(&str, &str)]| k8s_openapi::api::core::v1::Secret {
        data: Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    let tls = Some(StoreTls {
        ca_bundle_key: Some("ca.pem".into()),
        ssl_mode: None,
    });
    let spec = |name: &str, sasl| ExternalStore {
        secret_name: name.into(),
        egress: Vec::new(),
        tls: tls.clone(),
        sasl,
    };
    let resolve = |store, spec: &ExternalStore, s| {
        let data = resolve_external(store, "silo-system", spec, Some(&s)).expect("valid");
        Provided::External {
            source: spec.secret_name.clone(),
            data,
        }
    };
    let mut infra = managed(&Store::ALL);
    infra.postgres = resolve(
        Store::Postgres,
        &spec("db", None),
        secret(&[("uri", "postgres://u:p@db/silo"), ("ca.pem", pem)]),
    );
    infra.kafka = Some(resolve(
        Store::Kafka,
        &spec(
            "events",
            Some(KafkaSasl {
                mechanism: SaslMechanism::ScramSha256,
            }),
        ),
        secret(&[
            ("bootstrap.servers", "k:9093"),
            ("username", "u"),
            ("password", "p"),
            ("ca.pem", pem),
        ]),
    ));
    let set = build_alone(&control_plane(Mode::Siloed), &region("us", 1, 1), &infra);
    let consumers = deployment(&set, "consumers");
    let env = env_of(consumers);
    assert_eq!(
        env_value(&env, "KAFKA_SECURITY_PROTOCOL").as_deref(),
        Some("SASL_SSL")
    );
    assert_eq!(
        env_value(&env, "KAFKA_SASL_MECHANISM").as_deref(),
        Some("SCRAM-SHA-256")
    );
    assert_eq!(
        secret_ref(&env, "KAFKA_SASL_PASSWORD"),
        Some(("kafka-external".into(), "sasl.password".into()))
    );
    assert_eq!(
        env_value(&env, "KAFKA_SSL_CA_LOCATION"),
        Some(ca_bundle_path(Store::Kafka))
    );
    // Both CA bundles are mounted where the settings point; managed Redis gets nothing.
    let pod = consumers.spec.clone().unwrap().template.spec.unwrap();
    let mounts: Vec<_> = pod.containers[0]
        .volume_mounts
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|m| (m.name, m.mount_path))
        .collect();
    assert!(
        mounts.contains(&("postgres-ca".into(), "/etc/silo/stores/postgres".into()))
            && mounts.contains(&("kafka-ca".into(), "/etc/silo/stores/kafka".into())),
        "{mounts:?}"
    );
    assert!(!mounts.iter().any(|(name, _)| name == "redis-ca"));
    let volumes = pod.volumes.unwrap_or_default();
    let postgres_ca = volumes
        .iter()
        .find(|v| v.name == "postgres-ca")
        .and_then(|v| v.secret.clone())
        .expect("postgres CA volume");
    assert_eq!(
        postgres_ca.secret_name.as_deref(),
        Some("postgres-external")
    );
    let relay = env_of(deployment(&set, "relay"));
    assert_eq!(env_value(&relay, "REDIS_CA_FILE"), None);
    // The migration Job's topics step gets the same Kafka settings and CA.
    let job = set.job().expect("the migration Job").clone();
    let init = job
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .init_containers
        .unwrap();
    let topics: Vec<_> = init.iter().filter(|c| c.name == "topics").collect();
    let topics_env = topics[0].env.clone().unwrap_or_default();
    assert_eq!(
        env_value(&topics_env, "KAFKA_SECURITY_PROTOCOL").as_deref(),
        Some("SASL_SSL")
    );
    assert!(
        topics[0].command.as_ref().unwrap()[2].contains("--command-config"),
        "the topics tool reads the client settings"
    );
}
