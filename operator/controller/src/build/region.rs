//! A region silo: namespace `region-<name>`, its stores, the migration Job, four workloads,
//! two Services, the directory and the secrets.

use k8s_openapi::api::core::v1::Namespace;
use silo_api::{Store, Workload};
use silo_contract::SiloMode;

use super::pod::{self, PublishedDirectory, Silo};
use super::{Child, DesiredSet, Gate, Isolation, Side, push_gated, push_isolation};
use crate::infra::SiloInfra;
use crate::labels;
use crate::validate::{FleetContext, ValidatedRegion};

/// Desired objects of one region silo: stores always, the migration Job and the workloads as
/// far as `gate` allows.
pub fn build_region(
    region: &ValidatedRegion,
    fleet: &FleetContext,
    directory: &PublishedDirectory,
    rpc_secrets: &str,
    infra: &SiloInfra,
    gate: Gate<'_>,
) -> DesiredSet {
    let owner = &region.owner;
    let ns = region.namespace.as_str();
    let image = fleet.image_for(&region.version);
    let api_url = fleet.api_url(&region.name);
    let ingest_url = fleet.ingest_url(&region.name);
    let silo = Silo {
        mode: SiloMode::Region,
        namespace: ns,
        region: Some(&region.name),
        monolith_region: fleet.monolith_region.as_deref(),
        control_address: &fleet.control_address,
        image: &image,
        version: &region.version,
        owner,
        pods: &fleet.pods,
        infra,
        images: &fleet.images,
        api_url: &api_url,
        ingest_url: &ingest_url,
        rpc_hash: fleet.rpc_hash.as_deref(),
    };
    let mut set = DesiredSet::default();
    set.push(Child::Namespace(Namespace {
        metadata: owner.meta(None, ns, "namespace"),
        ..Namespace::default()
    }));
    let isolation = region_isolation(region, fleet);
    push_isolation(&mut set, owner, ns, isolation.as_ref());
    set.push(Child::ConfigMap(pod::directory_configmap(
        owner, ns, directory,
    )));
    set.push(Child::Secret(pod::rpc_secret_copy(owner, ns, rpc_secrets)));
    set.generated.push(pod::generated_secret(
        owner,
        ns,
        labels::RELAY_SECRET,
        labels::RELAY_SECRET_KEY,
        "relay-secret",
    ));
    push_gated(&silo, &mut set, gate, fleet, |silo, set| {
        for workload in Workload::ALL {
            let sizing = region.workloads.get(workload);
            set.push(Child::Deployment(Box::new(pod::deployment(
                silo,
                workload,
                sizing,
                Vec::new(),
            ))));
            if let Some(service) = pod::service(silo, workload) {
                set.push(Child::Service(Box::new(service)));
            }
        }
    });
    set
}

/// The region's NetworkPolicy input: none when policies are off for the fleet or suspended for
/// the region; egress to its external stores as their specs describe.
fn region_isolation<'a>(
    region: &ValidatedRegion,
    fleet: &'a FleetContext,
) -> Option<Isolation<'a>> {
    if !fleet.network.enabled || region.suspend_network_policies {
        return None;
    }
    let egress = Store::ALL
        .into_iter()
        .filter_map(|store| region.infrastructure.get(store).external.as_ref())
        .flat_map(|external| external.egress.iter().cloned())
        .collect();
    Some(Isolation {
        side: Side::Region,
        settings: &fleet.network,
        control_namespace: &fleet.control_namespace,
        egress,
    })
}
