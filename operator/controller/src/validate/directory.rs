//! The fleet's region directory: every live Region that can be listed, and why the others
//! are not.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use silo_api::Region;
use silo_contract::directory::check_entry;
use silo_contract::{RegionDirectory, RegionInfo, validate_region_name};

use super::age_key;
use crate::build;
use crate::labels;
use crate::stores::Stores;

/// The fleet's directory as the stores show it now: the one place it is computed, so that the
/// directories written, the fleet signature and the finalizer's wait all agree.
pub fn current(stores: &Stores) -> FleetDirectory {
    let namespaces = stores.namespaces.state();
    let silos = Silos::from_namespaces(namespaces.iter().map(|n| &n.metadata));
    fleet_directory(&stores.regions.state(), &silos)
}

/// The Regions whose silo exists: the operator created their namespace `region-<name>` and
/// it is not being deleted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Silos(BTreeSet<String>);

impl Silos {
    /// From the metadata of the namespaces the operator manages.
    pub fn from_namespaces<'a>(namespaces: impl IntoIterator<Item = &'a ObjectMeta>) -> Self {
        let names = namespaces
            .into_iter()
            .filter(|ns| ns.deletion_timestamp.is_none())
            .filter_map(|ns| {
                let region = ns.labels.as_ref()?.get(labels::REGION)?;
                let own = ns.name.as_deref() == Some(labels::region_namespace(region).as_str());
                own.then(|| region.clone())
            })
            .collect();
        Self(names)
    }

    pub fn contains(&self, region: &str) -> bool {
        self.0.contains(region)
    }
}

/// The region directory of the fleet plus the Regions left out of it, with the reason.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FleetDirectory {
    pub directory: RegionDirectory,
    /// Region name -> (its snowflake id, the Region that holds the id).
    pub duplicates: BTreeMap<String, (u16, String)>,
    /// Region name -> the entry it would publish and why the directory refuses it (a
    /// `spec.address` that is not an http(s) URL). Only that Region is left out.
    pub refused: BTreeMap<String, Refused>,
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

/// Whether `region` is listed. A Region that is not suspended is listed from the start: the
/// operator creates its silo while the directories are written. A suspended one is listed
/// only while its silo exists: one that never ran has no Service behind its address, one that
/// runs keeps serving (suspending leaves its objects as they are).
fn listed(region: &Region, silos: &Silos) -> bool {
    !region.spec.suspend || silos.contains(&region.name_any())
}

/// Every live (not being deleted), [`listed`] Region in the directory. On a snowflake clash
/// the older Region keeps the id and the newer one is listed in `duplicates`; a Region left out
/// still holds its id, so that listing it later never takes the id from another Region. An
/// entry the directory would refuse is left out and named in `refused`, so one bad Region
/// never empties the directory of the whole fleet.
pub fn fleet_directory(regions: &[Arc<Region>], silos: &Silos) -> FleetDirectory {
    let mut live: Vec<&Region> = regions
        .iter()
        .map(AsRef::as_ref)
        .filter(|r| r.meta().deletion_timestamp.is_none())
        .collect();
    live.sort_by_key(|r| age_key(*r));
    let mut holders: BTreeMap<u16, String> = BTreeMap::new();
    let mut entries = Vec::new();
    let mut duplicates = BTreeMap::new();
    let mut refused = BTreeMap::new();
    for region in live {
        let Some(info) = region_info(region) else {
            continue;
        };
        match holders.get(&info.snowflake_id) {
            Some(holder) => {
                duplicates.insert(info.name.clone(), (info.snowflake_id, holder.clone()));
            }
            None => {
                holders.insert(info.snowflake_id, info.name.clone());
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
        }
    }
    // Every entry passed `check_entry`, names are unique (they are object names) and ids were
    // de-duplicated above, so the directory accepts them all; the fallback is never taken.
    let directory = RegionDirectory::new(entries).unwrap_or_default();
    FleetDirectory {
        directory,
        duplicates,
        refused,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use silo_api::{ControlPlane, ControlPlaneSpec, RegionSpec};

    use super::*;
    use crate::validate::{FleetContext, validate_region};

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
        let fleet_dir = fleet_directory(&regions, &Silos::default());
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
    fn a_region_with_a_bad_address_keeps_its_snowflake_id() {
        // The older Region holds id 5 although it is not listed: fixing its address must not
        // take the id away from a Region that already runs with it.
        let regions = [region("old", 5, 10, Some(" ")), region("new", 5, 20, None)];
        let fleet_dir = fleet_directory(&regions, &Silos::default());
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

    fn namespace(name: &str, region: &str, terminating: bool) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([(
                labels::REGION.to_owned(),
                region.to_owned(),
            )])),
            deletion_timestamp: terminating.then(|| Time(k8s_openapi::jiff::Timestamp::now())),
            ..ObjectMeta::default()
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
        let fleet_dir = fleet_directory(&regions, &silos);
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
        let fleet_dir = fleet_directory(&regions, &Silos::default());
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
            ObjectMeta {
                name: Some("region-eu".into()),
                ..ObjectMeta::default()
            },
        ]);
        assert!(silos.contains("de"));
        assert!(!silos.contains("us"));
        assert!(!silos.contains("eu"));
    }
}
