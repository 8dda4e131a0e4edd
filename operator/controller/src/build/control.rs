//! The control silo (SILOED) or the monolith (MONOLITH) of a ControlPlane.

use k8s_openapi::api::core::v1::Namespace;
use silo_api::{Category, Workload};
use silo_contract::{RegionCategory, RegionInfo, SiloMode};

use super::pod::{self, PublishedDirectory, Silo};
use super::{Child, DesiredSet, Gate, Isolation, Side, push_gated, push_isolation};
use crate::infra::SiloInfra;
use crate::labels;
use crate::validate::{FleetContext, ValidatedControlPlane};

fn namespace_and_secrets(
    cp: &ValidatedControlPlane,
    fleet: &FleetContext,
    set: &mut DesiredSet,
    side: Side,
) {
    let owner = &cp.owner;
    let ns = cp.namespace.as_str();
    set.push(Child::Namespace(Namespace {
        metadata: owner.meta(None, ns, "namespace"),
        ..Namespace::default()
    }));
    let isolation = fleet.network.enabled.then(|| Isolation {
        side,
        settings: &fleet.network,
        control_namespace: ns,
        egress: fleet.network.control_egress.clone(),
    });
    push_isolation(set, owner, ns, isolation.as_ref());
    set.generated.push(pod::generated_secret(
        owner,
        ns,
        labels::RPC_SECRET,
        labels::RPC_SECRET_KEY,
        "rpc-secret",
    ));
    // The first API token (every scope), stored by the control web at start-up; read it with
    // `kubectl get secret silo-bootstrap-token`.
    set.generated.push(pod::generated_secret(
        owner,
        ns,
        labels::BOOTSTRAP_SECRET,
        labels::BOOTSTRAP_SECRET_KEY,
        "bootstrap-token",
    ));
    if side == Side::Monolith {
        set.generated.push(pod::generated_secret(
            owner,
            ns,
            labels::RELAY_SECRET,
            labels::RELAY_SECRET_KEY,
            "relay-secret",
        ));
    }
}

/// SILOED: the control namespace with its Postgres, the migration Job and the control web
/// Deployment and Service (as far as `gate` allows).
pub fn build_control(
    cp: &ValidatedControlPlane,
    fleet: &FleetContext,
    directory: &PublishedDirectory,
    infra: &SiloInfra,
    gate: Gate<'_>,
) -> DesiredSet {
    let mut set = DesiredSet::default();
    namespace_and_secrets(cp, fleet, &mut set, Side::Control);
    let ns = cp.namespace.as_str();
    set.push(Child::ConfigMap(pod::directory_configmap(
        &cp.owner, ns, directory,
    )));
    let image = fleet.image_for(&fleet.version);
    let api_url = fleet.control_url();
    let silo = Silo {
        mode: SiloMode::Control,
        namespace: ns,
        region: None,
        monolith_region: fleet.monolith_region.as_deref(),
        control_address: &fleet.control_address,
        image: &image,
        version: &fleet.version,
        owner: &cp.owner,
        pods: &fleet.pods,
        infra,
        images: &fleet.images,
        api_url: &api_url,
        ingest_url: "",
        rpc_hash: fleet.rpc_hash.as_deref(),
    };
    push_gated(&silo, &mut set, gate, fleet, |silo, set| {
        let sizing = silo_api::WorkloadSpec {
            replicas: Some(cp.replicas),
            resources: None,
        };
        set.push(Child::Deployment(Box::new(pod::deployment(
            silo,
            Workload::Web,
            Some(&sizing),
            Vec::new(),
        ))));
        if let Some(service) = pod::service(silo, Workload::Web) {
            set.push(Child::Service(Box::new(service)));
        }
    });
    set
}

/// The one region a monolith serves, as listed in its directory.
pub fn monolith_directory_entry(cp: &ValidatedControlPlane, region: &str) -> RegionInfo {
    RegionInfo {
        name: region.to_owned(),
        snowflake_id: 0,
        address: pod::region_address(&cp.namespace),
        category: RegionCategory::from(Category::MultiTenant),
        visible: true,
    }
}

/// MONOLITH: one namespace running its stores and all four workloads in MONOLITH mode.
pub fn build_monolith(
    cp: &ValidatedControlPlane,
    fleet: &FleetContext,
    directory: &PublishedDirectory,
    infra: &SiloInfra,
    gate: Gate<'_>,
) -> DesiredSet {
    let mut set = DesiredSet::default();
    namespace_and_secrets(cp, fleet, &mut set, Side::Monolith);
    let ns = cp.namespace.as_str();
    set.push(Child::ConfigMap(pod::directory_configmap(
        &cp.owner, ns, directory,
    )));
    let image = fleet.image_for(&fleet.version);
    let region = fleet.monolith_region.clone().unwrap_or_default();
    let api_url = fleet.control_url();
    let ingest_url = fleet.ingest_url_in(&region, ns);
    let silo = Silo {
        mode: SiloMode::Monolith,
        namespace: ns,
        region: fleet.monolith_region.as_deref(),
        monolith_region: fleet.monolith_region.as_deref(),
        control_address: &fleet.control_address,
        image: &image,
        version: &fleet.version,
        owner: &cp.owner,
        pods: &fleet.pods,
        infra,
        images: &fleet.images,
        api_url: &api_url,
        ingest_url: &ingest_url,
        rpc_hash: fleet.rpc_hash.as_deref(),
    };
    push_gated(&silo, &mut set, gate, fleet, |silo, set| {
        for workload in Workload::ALL {
            let sizing = silo_api::WorkloadSpec {
                replicas: Some(if workload == Workload::Web {
                    cp.replicas
                } else {
                    1
                }),
                resources: None,
            };
            set.push(Child::Deployment(Box::new(pod::deployment(
                silo,
                workload,
                Some(&sizing),
                Vec::new(),
            ))));
            if let Some(service) = pod::service(silo, workload) {
                set.push(Child::Service(Box::new(service)));
            }
        }
    });
    set
}
