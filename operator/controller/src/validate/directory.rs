//! The fleet's region directory: every live Region that can be listed, and why the others
//! are not.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::{Resource, ResourceExt};
use silo_api::Region;
use silo_contract::{RegionDirectory, RegionInfo, validate_region_name};

use super::age_key;
use crate::build;
use crate::labels;

/// The region directory of the fleet plus the Regions left out of it because their
/// snowflake id is taken.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FleetDirectory {
    pub directory: RegionDirectory,
    /// Region name -> (its snowflake id, the Region that holds the id).
    pub duplicates: BTreeMap<String, (u16, String)>,
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

/// Every live Region (not being deleted) in the directory; on a snowflake clash the older
/// Region keeps the id and the newer one is listed in `duplicates`.
pub fn fleet_directory(regions: &[Arc<Region>]) -> FleetDirectory {
    let mut live: Vec<&Region> = regions
        .iter()
        .map(AsRef::as_ref)
        .filter(|r| r.meta().deletion_timestamp.is_none())
        .collect();
    live.sort_by_key(|r| age_key(*r));
    let mut holders: BTreeMap<u16, String> = BTreeMap::new();
    let mut entries = Vec::new();
    let mut duplicates = BTreeMap::new();
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
                entries.push(info);
            }
        }
    }
    // Names are unique (they are object names) and ids were de-duplicated above.
    let directory = RegionDirectory::new(entries).unwrap_or_default();
    FleetDirectory {
        directory,
        duplicates,
    }
}
