//! The fleet's region directory: every live Region that can be listed, and why the others
//! are not.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use silo_api::{ControlPlane, Region};
use silo_contract::directory::check_entry;
use silo_contract::{RegionDirectory, RegionInfo, validate_region_name};

use super::{active_control_plane, age_key};
use crate::build::{self, PublishedDirectory};
use crate::labels;
use crate::records::{Meta, MetaRecord};
use crate::stores::Stores;

/// The fleet's directory as the stores show it now: the one place it is computed, so that the
/// directories written, the fleet signature and the finalizer's wait all agree.
///
/// Every reconcile asks for it, and it changes only when a Region's listing inputs, a silo
/// namespace or the retired ids do (not on the status writes a rollout makes by the
/// thousand): it is rebuilt only when the [`fingerprint`] of those inputs moved.
pub fn current(stores: &Stores) -> Arc<FleetDirectory> {
    let regions = stores.regions.state();
    let namespaces = stores.namespaces.state();
    let control_planes = stores.control_planes.state();
    let print = fingerprint(&regions, &namespaces, &control_planes);
    if let Some(cached) = stores.directory_cache.get(print) {
        return cached;
    }
    let silos = Silos::from_namespaces(namespaces.iter().map(|n| &n.meta));
    let retired = active_control_plane(&control_planes)
        .map(Retired::of)
        .unwrap_or_default();
    let fleet = Arc::new(fleet_directory(&regions, &silos, &retired));
    stores.directory_cache.put(print, fleet.clone());
    fleet
}

/// A hash of everything [`fleet_directory`] reads: per Region its name, age, deletion and
/// the spec fields of its entry; per namespace its name, Region label and deletion; the
/// ControlPlanes' age, deletion, retired and released ids. Nothing it hashes allocates.
pub fn fingerprint(
    regions: &[Arc<Region>],
    namespaces: &[Arc<MetaRecord<Namespace>>],
    control_planes: &[Arc<ControlPlane>],
) -> u64 {
    fn meta(h: &mut DefaultHasher, m: &ObjectMeta) {
        m.name.hash(h);
        m.creation_timestamp.as_ref().map(|t| t.0).hash(h);
        m.deletion_timestamp.is_some().hash(h);
    }
    let mut h = DefaultHasher::new();
    regions.len().hash(&mut h);
    for r in regions {
        meta(&mut h, &r.metadata);
        let s = &r.spec;
        (s.snowflake_id, &s.address, s.category, s.visible, s.suspend).hash(&mut h);
        s.cluster.is_some().hash(&mut h);
    }
    namespaces.len().hash(&mut h);
    for n in namespaces {
        (&n.meta.name, n.meta.deleting, &n.meta.region).hash(&mut h);
    }
    control_planes.len().hash(&mut h);
    for cp in control_planes {
        meta(&mut h, &cp.metadata);
        cp.spec.released_snowflake_ids.hash(&mut h);
        cp.status
            .as_ref()
            .map(|s| &s.retired_snowflake_ids)
            .hash(&mut h);
    }
    h.finish()
}

/// The last directory built, by the fingerprint of its inputs.
#[derive(Debug, Default)]
pub struct DirectoryCache(Mutex<Option<(u64, Arc<FleetDirectory>)>>);

impl DirectoryCache {
    fn get(&self, print: u64) -> Option<Arc<FleetDirectory>> {
        let guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .as_ref()
            .filter(|(p, _)| *p == print)
            .map(|(_, d)| d.clone())
    }

    fn put(&self, print: u64, directory: Arc<FleetDirectory>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((print, directory));
    }
}

/// The Regions whose silo exists: the operator created their namespace `region-<name>` and
/// it is not being deleted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Silos(BTreeSet<String>);

impl Silos {
    /// From the metadata of the namespaces the operator manages.
    pub fn from_namespaces<'a>(namespaces: impl IntoIterator<Item = &'a Meta>) -> Self {
        let names = namespaces
            .into_iter()
            .filter(|ns| !ns.deleting)
            .filter_map(|ns| {
                let region = ns.region.as_ref()?;
                let own = ns.name == labels::region_namespace(region);
                own.then(|| region.clone())
            })
            .collect();
        Self(names)
    }

    pub fn contains(&self, region: &str) -> bool {
        self.0.contains(region)
    }
}

/// The snowflake ids no Region may take: those the ControlPlane records as retired (held by a
/// Region since deleted) and does not list as released.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Retired {
    /// Retired and not released: id -> the Region that held it.
    ids: BTreeMap<u16, String>,
    /// `spec.releasedSnowflakeIds`: ids that may be used again.
    released: BTreeSet<u16>,
}

impl Retired {
    /// The ids recorded as retired (id -> the Region that held it) without the `released` ones.
    pub fn new(
        recorded: impl IntoIterator<Item = (u16, String)>,
        released: impl IntoIterator<Item = u16>,
    ) -> Self {
        let released: BTreeSet<u16> = released.into_iter().collect();
        let ids = recorded
            .into_iter()
            .filter(|(id, _)| !released.contains(id))
            .collect();
        Self { ids, released }
    }

    /// `status.retiredSnowflakeIds` of `cp` without its `spec.releasedSnowflakeIds`. A key that
    /// is not an id (nobody but the operator writes them) retires nothing.
    pub fn of(cp: &ControlPlane) -> Self {
        let recorded = cp
            .status
            .iter()
            .flat_map(|s| &s.retired_snowflake_ids)
            .filter_map(|(id, holder)| Some((id.parse::<u16>().ok()?, holder.clone())));
        let released = cp
            .spec
            .released_snowflake_ids
            .iter()
            .filter_map(|id| u16::try_from(*id).ok());
        Self::new(recorded, released)
    }

    /// The Region that held `id`, when `id` is retired and not released.
    pub fn get(&self, id: u16) -> Option<&str> {
        self.ids.get(&id).map(String::as_str)
    }

    /// Whether `id` is listed in `spec.releasedSnowflakeIds`.
    pub fn is_released(&self, id: u16) -> bool {
        self.released.contains(&id)
    }
}

/// The region directory of the fleet plus the Regions left out of it, with the reason.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FleetDirectory {
    pub directory: RegionDirectory,
    /// `directory` as the silos' ConfigMaps publish it.
    pub published: PublishedDirectory,
    /// Snowflake id -> the Region that holds it: the oldest Region with that id, live or being
    /// deleted, listed or not; for a retired id only a Region whose silo exists.
    pub holders: BTreeMap<u16, String>,
    /// Region name -> (its snowflake id, the Region that holds the id).
    pub duplicates: BTreeMap<String, (u16, String)>,
    /// Region name -> (its snowflake id, the Region that held the id): the id is retired, or
    /// its holder is being deleted and its finalizer retires it.
    pub retired: BTreeMap<String, (u16, String)>,
    /// Region name -> the entry it would publish and why the directory refuses it (a
    /// `spec.address` that is not an http(s) URL). Only that Region is left out.
    pub refused: BTreeMap<String, Refused>,
    /// Listed Regions of the operator's own cluster whose address is cluster-internal (a
    /// `.svc` host, the derived one when `spec.address` is absent): pods in a customer
    /// cluster find them in their directory but cannot reach them there.
    pub cluster_internal: Vec<String>,
}

impl FleetDirectory {
    /// The snowflake id `region` holds, which its deletion retires: `None` for a Region that
    /// never held its id (a duplicate, or refused because the id is retired).
    pub fn held_id(&self, region: &Region) -> Option<u16> {
        let id = u16::try_from(region.spec.snowflake_id).ok()?;
        let name = region.name_any();
        (self.holders.get(&id) == Some(&name)).then_some(id)
    }
}

/// A directory entry the directory refuses.
#[derive(Clone, Debug, PartialEq)]
pub struct Refused {
    pub address: String,
    /// What is wrong with the entry, from the directory's own check.
    pub problem: String,
}

/// The directory entry a Region publishes.
fn region_info(region: &Region) -> Option<RegionInfo> {
    let name = region.name_any();
    validate_region_name(&name).ok()?;
    let snowflake_id = u16::try_from(region.spec.snowflake_id).ok()?;
    Some(RegionInfo {
        address: region
            .spec
            .address
            .clone()
            .unwrap_or_else(|| build::region_address(&labels::region_namespace(&name))),
        name,
        snowflake_id,
        category: region.spec.category.into(),
        visible: region.spec.visible,
    })
}

/// Whether `address` is only reachable inside its own cluster: its host is a Service name
/// (`<name>.<namespace>.svc`, optionally followed by the cluster domain). The same test as
/// the Region schema's rule for `spec.address` of a Region with `spec.cluster`.
pub fn is_cluster_internal(address: &str) -> bool {
    let Some(rest) = address
        .strip_prefix("http://")
        .or_else(|| address.strip_prefix("https://"))
    else {
        return false;
    };
    let host = rest.split(['/', ':']).next().unwrap_or_default();
    host.ends_with(".svc") || host.contains(".svc.")
}

/// The listed Regions in the operator's own cluster that pods in another cluster cannot reach
/// at their directory address, by name.
pub fn cluster_internal(regions: &[&Region], directory: &RegionDirectory) -> Vec<String> {
    let local: BTreeSet<String> = regions
        .iter()
        .filter(|r| !r.is_remote())
        .map(|r| r.name_any())
        .collect();
    directory
        .regions()
        .iter()
        .filter(|info| local.contains(&info.name) && is_cluster_internal(&info.address))
        .map(|info| info.name.clone())
        .collect()
}

/// Whether `region` is listed. A Region that is not suspended is listed from the start: the
/// operator creates its silo while the directories are written. A suspended one is listed
/// only while its silo exists: one that never ran has no Service behind its address, one that
/// runs keeps serving (suspending leaves its objects as they are). A Region being deleted is
/// never listed.
fn listed(region: &Region, silos: &Silos) -> bool {
    let live = region.meta().deletion_timestamp.is_none();
    live && (!region.spec.suspend || silos.contains(&region.name_any()))
}

/// Every live (not being deleted), [`listed`] Region in the directory.
///
/// Snowflake ids: the oldest Region with an id holds it and later ones are listed in
/// `duplicates`. A Region left out still holds its id, so that listing it later never takes
/// the id from another Region; so does a Region being deleted, until it is gone. A `retired`
/// id is held by nobody: a Region with it is left out and named in `retired`, unless its silo
/// exists (it took the id while the id was released and keeps it). While the holder of an id
/// is being deleted, later Regions with that id are named in `retired` too (its finalizer
/// retires the id), unless the id is released.
///
/// An entry the directory would refuse is left out and named in `refused`, so one bad Region
/// never empties the directory of the whole fleet.
pub fn fleet_directory(
    regions: &[Arc<Region>],
    silos: &Silos,
    retired: &Retired,
) -> FleetDirectory {
    let mut fleet: Vec<&Region> = regions.iter().map(AsRef::as_ref).collect();
    fleet.sort_by_key(|r| age_key(*r));
    let mut holders: BTreeMap<u16, String> = BTreeMap::new();
    // Ids whose holder is being deleted and will retire them.
    let mut retiring: BTreeMap<u16, String> = BTreeMap::new();
    let mut entries = Vec::new();
    let mut duplicates = BTreeMap::new();
    let mut retired_regions = BTreeMap::new();
    let mut refused = BTreeMap::new();
    for &region in &fleet {
        let Some(info) = region_info(region) else {
            continue;
        };
        let id = info.snowflake_id;
        if let Some(holder) = retiring.get(&id) {
            retired_regions.insert(info.name.clone(), (id, holder.clone()));
            continue;
        }
        if let Some(holder) = holders.get(&id) {
            duplicates.insert(info.name.clone(), (id, holder.clone()));
            continue;
        }
        if let Some(holder) = retired.get(id)
            && !silos.contains(&info.name)
        {
            retired_regions.insert(info.name.clone(), (id, holder.to_owned()));
            continue;
        }
        holders.insert(id, info.name.clone());
        if region.meta().deletion_timestamp.is_some() && !retired.is_released(id) {
            // Its finalizer records the id as retired. A released id stays held until the
            // Region is gone, then goes to the next Region with it.
            retiring.insert(id, info.name.clone());
        }
        if !listed(region, silos) {
            continue;
        }
        match check_entry(&info) {
            Ok(()) => entries.push(info),
            Err(problem) => {
                let entry = Refused {
                    address: info.address.clone(),
                    problem: problem.to_string(),
                };
                refused.insert(info.name, entry);
            }
        }
    }
    // Every entry passed `check_entry`, names are unique (they are object names) and ids were
    // de-duplicated above, so the directory accepts them all; the fallback is never taken.
    let directory = RegionDirectory::new(entries).unwrap_or_default();
    FleetDirectory {
        published: PublishedDirectory::of(&directory),
        cluster_internal: cluster_internal(&fleet, &directory),
        directory,
        holders,
        duplicates,
        retired: retired_regions,
        refused,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use silo_api::{ControlPlane, ControlPlaneSpec, RegionSpec};

    use super::*;
    use crate::validate::{FleetContext, ValidateError, validate_region};

    fn region(name: &str, id: i32, created: i64, address: Option<&str>) -> Arc<Region> {
        let mut spec: RegionSpec =
            serde_json::from_value(serde_json::json!({ "snowflakeId": id })).unwrap();
        spec.address = address.map(str::to_owned);
        let mut r = Region::new(name, spec);
        r.metadata.uid = Some(format!("uid-{name}"));
        r.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(created).unwrap(),
        ));
        Arc::new(r)
    }

    fn fleet() -> FleetContext {
        let spec: ControlPlaneSpec =
            serde_json::from_value(serde_json::json!({ "version": "1.0.0" })).unwrap();
        FleetContext::new(&ControlPlane::new("silo", spec))
    }

    #[test]
    fn a_bad_address_leaves_out_its_region_only_and_is_reported_on_it() {
        let regions = [
            region("de", 1, 10, None),
            region("blank", 2, 20, Some(" ")),
            region("us", 3, 30, Some("http://web.region-us.svc:8000")),
            region("nourl", 4, 40, Some("web.region-x.svc:8000")),
        ];
        let fleet_dir = fleet_directory(&regions, &Silos::default(), &Retired::default());
        assert_eq!(
            fleet_dir.directory.names().collect::<Vec<_>>(),
            vec!["de", "us"]
        );
        for bad in [&regions[1], &regions[3]] {
            let err = validate_region(bad, &fleet(), &fleet_dir).unwrap_err();
            assert_eq!(err.reason(), "InvalidAddress", "{err}");
            let message = err.to_string();
            assert!(message.contains("spec.address"), "{message}");
            assert!(message.contains("http://"), "says what to set: {message}");
        }
        for good in [&regions[0], &regions[2]] {
            assert!(validate_region(good, &fleet(), &fleet_dir).is_ok());
        }
    }

    #[test]
    fn cluster_internal_addresses_are_service_hosts() {
        for internal in [
            "http://web.region-de.svc:8000",
            "http://web.region-de.svc",
            "https://web.region-de.svc/",
            "http://web.region-de.svc.cluster.local:8000/api",
        ] {
            assert!(is_cluster_internal(internal), "{internal}");
        }
        for external in [
            "https://de.sentry.example.com",
            "http://svc.example.com:8000",
            "https://web.svcs.example.com",
            "http://10.89.0.7:8000",
            "web.region-de.svc:8000",
        ] {
            assert!(!is_cluster_internal(external), "{external}");
        }
    }

    #[test]
    fn local_regions_without_an_external_address_are_named_for_remote_directories() {
        let mut remote = (*region("acme", 4, 40, Some("https://acme.example.com"))).clone();
        remote.spec.cluster = Some(
            serde_json::from_value(serde_json::json!({"kubeconfigSecret": "acme-kubeconfig"}))
                .unwrap(),
        );
        let regions = [
            region("de", 1, 10, None),
            region("us", 2, 20, Some("https://us.sentry.example.com")),
            region(
                "it",
                3,
                30,
                Some("http://web.region-it.svc.cluster.local:8000"),
            ),
            Arc::new(remote),
            region("broken", 5, 50, Some(" ")),
        ];
        let fleet_dir = fleet_directory(&regions, &Silos::default(), &Retired::default());
        // Every Region stays listed (the directory's contract needs an address for each; a
        // remote silo still learns their names and ids); the unreachable ones are named.
        assert_eq!(
            fleet_dir.directory.names().collect::<Vec<_>>(),
            vec!["acme", "de", "it", "us"]
        );
        assert_eq!(fleet_dir.cluster_internal, vec!["de", "it"]);
        // Giving them an external address clears them.
        let fixed: Vec<Arc<Region>> = regions
            .iter()
            .map(|r| {
                let mut r = (**r).clone();
                if r.spec.address.as_deref().is_none_or(is_cluster_internal) {
                    r.spec.address = Some(format!("https://{}.sentry.example.com", r.name_any()));
                }
                Arc::new(r)
            })
            .collect();
        let fleet_dir = fleet_directory(&fixed, &Silos::default(), &Retired::default());
        assert!(fleet_dir.cluster_internal.is_empty());
    }

    #[test]
    fn a_region_with_a_bad_address_keeps_its_snowflake_id() {
        // The older Region holds id 5 although it is not listed: fixing its address must not
        // take the id away from a Region that already runs with it.
        let regions = [region("old", 5, 10, Some(" ")), region("new", 5, 20, None)];
        let fleet_dir = fleet_directory(&regions, &Silos::default(), &Retired::default());
        assert!(fleet_dir.directory.is_empty());
        assert_eq!(
            fleet_dir.duplicates.get("new"),
            Some(&(5, "old".to_owned()))
        );
    }

    fn suspended(region: &Arc<Region>) -> Arc<Region> {
        let mut r = (**region).clone();
        r.spec.suspend = true;
        Arc::new(r)
    }

    fn namespace(name: &str, region: &str, terminating: bool) -> Meta {
        Meta {
            name: name.to_owned(),
            region: Some(region.to_owned()),
            deleting: terminating,
            ..Meta::default()
        }
    }

    #[test]
    fn a_suspended_region_is_listed_only_while_its_silo_exists() {
        let regions = [
            region("de", 1, 10, None),
            suspended(&region("fresh", 2, 20, None)),
            suspended(&region("running", 3, 30, None)),
            suspended(&region("leaving", 4, 40, None)),
        ];
        let namespaces = [
            namespace("region-running", "running", false),
            namespace("region-leaving", "leaving", true),
        ];
        let silos = Silos::from_namespaces(&namespaces);
        let fleet_dir = fleet_directory(&regions, &silos, &Retired::default());
        assert_eq!(
            fleet_dir.directory.names().collect::<Vec<_>>(),
            vec!["de", "running"]
        );
    }

    #[test]
    fn an_unlisted_suspended_region_keeps_its_snowflake_id() {
        let regions = [
            suspended(&region("held", 7, 10, None)),
            region("later", 7, 20, None),
        ];
        let fleet_dir = fleet_directory(&regions, &Silos::default(), &Retired::default());
        assert!(fleet_dir.directory.is_empty());
        assert_eq!(
            fleet_dir.duplicates.get("later"),
            Some(&(7, "held".to_owned()))
        );
    }

    #[test]
    fn silos_are_the_namespaces_the_operator_made_for_their_region() {
        let silos = Silos::from_namespaces(&[
            namespace("region-de", "de", false),
            namespace("elsewhere", "us", false),
            Meta {
                name: "region-eu".into(),
                ..Meta::default()
            },
        ]);
        assert!(silos.contains("de"));
        assert!(!silos.contains("us"));
        assert!(!silos.contains("eu"));
    }

    fn deleting(region: &Arc<Region>) -> Arc<Region> {
        let mut r = (**region).clone();
        r.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        r.metadata.finalizers = Some(vec![labels::REGION_FINALIZER.to_owned()]);
        Arc::new(r)
    }

    fn retired(ids: &[(u16, &str)], released: &[u16]) -> Retired {
        Retired::new(
            ids.iter().map(|(id, r)| (*id, (*r).to_owned())),
            released.iter().copied(),
        )
    }

    #[test]
    fn a_region_being_deleted_keeps_its_snowflake_id_until_it_is_gone() {
        let holder = region("de", 3002, 10, None);
        let regions = [deleting(&holder), region("dup", 3002, 20, None)];
        let fleet_dir = fleet_directory(&regions, &Silos::default(), &Retired::default());
        assert!(
            fleet_dir.directory.is_empty(),
            "a deleting Region is not listed"
        );
        assert_eq!(fleet_dir.holders.get(&3002).map(String::as_str), Some("de"));
        assert_eq!(fleet_dir.held_id(&regions[0]), Some(3002));
        // Its finalizer retires the id, so the waiting Region is told so from the start.
        assert_eq!(fleet_dir.retired.get("dup"), Some(&(3002, "de".to_owned())));
        let err = validate_region(&regions[1], &fleet(), &fleet_dir).unwrap_err();
        assert_eq!(err.reason(), "RetiredSnowflakeId", "{err}");
    }

    #[test]
    fn a_released_id_of_a_region_being_deleted_goes_to_the_next_region_once_it_is_gone() {
        let holder = region("de", 3002, 10, None);
        let dup = region("dup", 3002, 20, None);
        let released = retired(&[], &[3002]);
        let finalizing = fleet_directory(
            &[deleting(&holder), dup.clone()],
            &Silos::default(),
            &released,
        );
        assert_eq!(
            finalizing.duplicates.get("dup"),
            Some(&(3002, "de".to_owned()))
        );
        let gone = fleet_directory(
            std::slice::from_ref(&dup),
            &Silos::default(),
            &retired(&[(3002, "de")], &[3002]),
        );
        assert_eq!(gone.directory.names().collect::<Vec<_>>(), vec!["dup"]);
        assert!(validate_region(&dup, &fleet(), &gone).is_ok());
    }

    #[test]
    fn a_retired_id_is_refused_and_names_the_region_that_held_it() {
        let regions = [
            region("us", 3001, 10, None),
            region("dup", 3002, 20, None),
            region("dup2", 3002, 30, None),
        ];
        let fleet_dir =
            fleet_directory(&regions, &Silos::default(), &retired(&[(3002, "de")], &[]));
        assert_eq!(fleet_dir.directory.names().collect::<Vec<_>>(), vec!["us"]);
        assert_eq!(
            fleet_dir.holders.get(&3002),
            None,
            "nobody holds a retired id"
        );
        for name in ["dup", "dup2"] {
            assert_eq!(
                fleet_dir.retired.get(name),
                Some(&(3002, "de".to_owned())),
                "{name}"
            );
        }
        let err = validate_region(&regions[1], &fleet(), &fleet_dir).unwrap_err();
        assert_eq!(
            err,
            ValidateError::RetiredSnowflakeId {
                id: 3002,
                holder: "de".into()
            }
        );
        assert_eq!(err.reason(), "RetiredSnowflakeId");
        let message = err.to_string();
        for part in [
            "3002",
            "Region de",
            "unused id",
            "spec.releasedSnowflakeIds",
        ] {
            assert!(message.contains(part), "{part}: {message}");
        }
        assert!(validate_region(&regions[0], &fleet(), &fleet_dir).is_ok());
    }

    #[test]
    fn a_released_id_is_accepted_by_the_oldest_region_with_it() {
        let regions = [
            region("dup", 3002, 20, None),
            region("dup2", 3002, 30, None),
        ];
        let fleet_dir = fleet_directory(
            &regions,
            &Silos::default(),
            &retired(&[(3002, "de")], &[3002]),
        );
        assert_eq!(fleet_dir.directory.names().collect::<Vec<_>>(), vec!["dup"]);
        assert!(fleet_dir.retired.is_empty());
        assert!(validate_region(&regions[0], &fleet(), &fleet_dir).is_ok());
        assert_eq!(
            fleet_dir.duplicates.get("dup2"),
            Some(&(3002, "dup".to_owned()))
        );
    }

    #[test]
    fn a_region_running_with_an_id_keeps_it_when_the_release_is_withdrawn() {
        // `dup` took 3002 while it was released; removing the release again must not take a
        // running silo out of the directory.
        let regions = [
            region("dup", 3002, 20, None),
            region("later", 3002, 30, None),
        ];
        let silos = Silos::from_namespaces(&[namespace("region-dup", "dup", false)]);
        let fleet_dir = fleet_directory(&regions, &silos, &retired(&[(3002, "de")], &[]));
        assert_eq!(fleet_dir.directory.names().collect::<Vec<_>>(), vec!["dup"]);
        assert_eq!(fleet_dir.held_id(&regions[0]), Some(3002));
        assert_eq!(
            fleet_dir.duplicates.get("later"),
            Some(&(3002, "dup".to_owned()))
        );
        // Once its silo is gone, the record is in force again.
        let gone = fleet_directory(&regions, &Silos::default(), &retired(&[(3002, "de")], &[]));
        assert!(gone.directory.is_empty());
        assert_eq!(gone.retired.get("dup"), Some(&(3002, "de".to_owned())));
    }

    #[test]
    fn only_the_holder_of_an_id_retires_it() {
        let holder = region("de", 3002, 10, None);
        let dup = region("dup", 3002, 20, None);
        let refused = region("again", 3003, 30, None);
        let regions = [holder.clone(), deleting(&dup), deleting(&refused)];
        let fleet_dir = fleet_directory(
            &regions,
            &Silos::default(),
            &retired(&[(3003, "acme")], &[]),
        );
        assert_eq!(fleet_dir.held_id(&regions[0]), Some(3002));
        assert_eq!(fleet_dir.held_id(&regions[1]), None, "a duplicate");
        assert_eq!(
            fleet_dir.held_id(&regions[2]),
            None,
            "refused: 3003 is retired"
        );
        // A Region with an unusable id holds nothing either.
        let out_of_range = region("big", 70_000, 40, None);
        assert_eq!(fleet_dir.held_id(&out_of_range), None);
    }

    #[test]
    fn retired_ids_are_the_recorded_ones_without_the_released_ones() {
        let spec: ControlPlaneSpec = serde_json::from_value(serde_json::json!({
            "version": "1.0.0",
            "releasedSnowflakeIds": [7],
        }))
        .unwrap();
        let mut cp = ControlPlane::new("silo", spec);
        cp.status = Some(
            serde_json::from_value(serde_json::json!({
                "retiredSnowflakeIds": {"7": "old", "8": "de", "not-an-id": "x"},
            }))
            .unwrap(),
        );
        let retired = Retired::of(&cp);
        assert_eq!(retired.get(7), None);
        assert!(retired.is_released(7));
        assert_eq!(retired.get(8), Some("de"));
        assert_eq!(retired, Retired::new([(8, "de".to_owned())], [7]));
    }

    #[test]
    fn the_fingerprint_moves_with_listing_inputs_only() {
        let regions = vec![region("de", 1, 10, None), region("us", 2, 20, None)];
        let print = |regions: &[Arc<Region>]| fingerprint(regions, &[], &[]);
        let base = print(&regions);
        assert_eq!(base, print(&regions.clone()), "same inputs, same print");

        // A status write (what a rollout does all the time) leaves it alone.
        let mut status_only = (*regions[0]).clone();
        status_only.status = Some(silo_api::RegionStatus {
            desired_version: Some("2.0.0".into()),
            ..Default::default()
        });
        status_only.metadata.resource_version = Some("42".into());
        assert_eq!(base, print(&[Arc::new(status_only), regions[1].clone()]));

        // Anything an entry or an id holder depends on moves it.
        let mut moved = (*regions[0]).clone();
        moved.spec.address = Some("http://web.elsewhere.svc:8000".into());
        assert_ne!(base, print(&[Arc::new(moved), regions[1].clone()]));
        let mut deleting = (*regions[1]).clone();
        deleting.metadata.deletion_timestamp = regions[1].metadata.creation_timestamp.clone();
        assert_ne!(base, print(&[regions[0].clone(), Arc::new(deleting)]));
        let mut suspended = (*regions[1]).clone();
        suspended.spec.suspend = true;
        assert_ne!(base, print(&[regions[0].clone(), Arc::new(suspended)]));
        assert_ne!(base, print(&regions[..1]), "a Region gone");
    }
}
