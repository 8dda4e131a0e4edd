//! The benchmark fleet: one ControlPlane and N Regions in memory, and the same child objects
//! the operator would create, built with the operator's own pure build step.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use silo_api::{Category, ControlPlane, ControlPlaneSpec, Mode, Region, RegionSpec, Store};
use silo_operator::build::{self, Child, Gate};
use silo_operator::infra::{Provided, SiloInfra, Storage};
use silo_operator::validate::{self, FleetContext};

/// Name of the benchmark ControlPlane.
pub const CONTROL_PLANE: &str = "bench";

/// Name of region `i`.
pub fn region_name(i: usize) -> String {
    format!("bench-{i:04}")
}

/// The ControlPlane the benchmark applies.
pub fn control_plane() -> ControlPlane {
    ControlPlane::new(
        CONTROL_PLANE,
        ControlPlaneSpec {
            version: "0.1.0".into(),
            image: "ghcr.io/silo-dev/silo".into(),
            mode: Mode::Siloed,
            monolith_region: Some(region_name(0)),
            namespace: "silo-bench-control".into(),
            control: Default::default(),
            pods: Default::default(),
            network_policies: Default::default(),
            infrastructure: Default::default(),
            urls: Default::default(),
            rollout: Default::default(),
            released_snowflake_ids: Vec::new(),
            rotate_rpc_secret: None,
        },
    )
}

/// Region `i` (snowflake id `i`; every tenth one single-tenant).
pub fn region(i: usize) -> Region {
    Region::new(
        &region_name(i),
        RegionSpec {
            category: if i % 10 == 9 {
                Category::SingleTenant
            } else {
                Category::MultiTenant
            },
            snowflake_id: i32::try_from(i).unwrap_or(i32::MAX),
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
    )
}

/// A copy with a uid, as if read back from the API server (owner references need one).
fn with_uid<K: kube::Resource>(mut obj: K, uid: String) -> K {
    obj.meta_mut().uid = Some(uid);
    obj
}

/// Every child object of the fleet of `n` Regions, grouped per owner (the control silo first),
/// without owner references (the baseline has no owners to point at) and with generated
/// secrets filled in. Namespaces come first in each group.
pub fn baseline_objects(n: usize) -> Result<Vec<Vec<Child>>, validate::ValidateError> {
    let cp = Arc::new(with_uid(control_plane(), "bench-cp".into()));
    let regions: Vec<Arc<Region>> = (0..n)
        .map(|i| Arc::new(with_uid(region(i), format!("bench-region-{i}"))))
        .collect();
    let fleet = FleetContext::new(&cp);
    let directory = validate::fleet_directory(
        &regions,
        &validate::Silos::default(),
        &validate::Retired::default(),
    );
    let control = validate::validate_control_plane(&cp, std::slice::from_ref(&cp))?;
    // The converged fleet: every store managed (the benchmark cluster has no StorageClass),
    // migrations done, workloads at the fleet's version.
    let gate = Gate {
        run_job: true,
        workload_version: Some(&fleet.version),
    };
    let managed = |stores: &[Store]| {
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
    };
    let control_infra = managed(&[Store::Postgres]);
    let region_infra = managed(&Store::ALL);
    let mut groups = vec![finish(build::build_control(
        &control,
        &fleet,
        &directory.published,
        &control_infra,
        gate,
    ))];
    for region in &regions {
        let valid = validate::validate_region(region, &fleet, &directory)?;
        groups.push(finish(build::build_region(
            &valid,
            &fleet,
            &directory.published,
            "bench-rpc-key",
            &region_infra,
            gate,
        )));
    }
    Ok(groups)
}

fn finish(set: build::DesiredSet) -> Vec<Child> {
    let generated = set.generated.into_iter().map(|g| {
        let data = g
            .data("bench-generated")
            .into_iter()
            .map(|(k, v)| (k, ByteString(v.into_bytes())))
            .collect::<BTreeMap<_, _>>();
        let mut secret = g.secret;
        secret.data = Some(data);
        Child::Secret(secret)
    });
    let mut children: Vec<Child> = set.children.into_iter().chain(generated).collect();
    for child in &mut children {
        child.meta_mut().owner_references = None;
    }
    children.sort_by_key(|c| c.kind() != build::ChildKind::Namespace);
    children
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_matches_what_the_operator_builds() {
        let groups = baseline_objects(3).unwrap();
        assert_eq!(groups.len(), 4, "control silo plus one group per region");
        for group in &groups {
            assert_eq!(group[0].kind(), build::ChildKind::Namespace);
            assert!(group.iter().all(|c| c.meta().owner_references.is_none()));
        }
        let deployments = groups
            .iter()
            .flatten()
            .filter(|c| c.kind() == build::ChildKind::Deployment)
            .count();
        assert_eq!(deployments, 1 + 3 * 4);
        assert_eq!(region(9).spec.category, Category::SingleTenant);
    }
}
