//! What the directory ConfigMap holds, and that changes of the fleet change only it.

use super::*;

#[test]
fn directory_configmap_is_the_contract_json_of_every_region() {
    let regions = vec![
        region("de", 2, 10),
        region("us", 1, 20),
        region("acme", 7, 30),
    ];
    let set = build_for(&regions[0], &regions);
    let Some(Child::ConfigMap(cm)) = set
        .children
        .iter()
        .find(|c| c.kind() == ChildKind::ConfigMap)
    else {
        panic!("no directory ConfigMap");
    };
    let json = cm.data.as_ref().unwrap().get("regions.json").unwrap();
    let directory = RegionDirectory::from_json(json).unwrap();
    assert_eq!(
        directory.names().collect::<Vec<_>>(),
        vec!["acme", "de", "us"]
    );
    assert_eq!(
        directory.get("de").unwrap().address,
        "http://web.region-de.svc:8000"
    );
    // The workloads read exactly this through the contract crate.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("regions.json");
    std::fs::write(&path, json).unwrap();
    let env = env_of(deployment(&set, "web"));
    let contract = SiloContract::from_lookup(|name| match name {
        "SENTRY_REGION_CONFIG" => Some(path.display().to_string()),
        _ => env_value(&env, name),
    })
    .unwrap();
    assert_eq!(contract.local_region(), Some("de"));
}

/// Builds `target` in fleet `before` and in fleet `after`: only the directory differs, and the
/// web pod's contract reads with the new directory (a running pod reloads it, a new one starts).
fn assert_only_directory_changes(target: &Region, before: &[Arc<Region>], after: &[Arc<Region>]) {
    let old = build_for(target, before);
    let new = build_for(target, after);
    for (a, b) in old.children.iter().zip(&new.children) {
        assert_eq!(a.key(), b.key());
        if a.kind() == ChildKind::ConfigMap {
            assert_ne!(a.hash(), b.hash(), "directory must change");
        } else {
            assert_eq!(a, b, "{} must not change with the fleet", a.key());
        }
    }
    let json = validate::fleet_directory(after, &Silos::default(), &Retired::default())
        .directory
        .to_json();
    let env = env_of(deployment(&new, "web"));
    let contract = SiloContract::from_lookup(|name| match name {
        "SENTRY_REGION_CONFIG" => Some(json.clone()),
        _ => env_value(&env, name),
    });
    assert!(contract.is_ok(), "{contract:?}");
}

#[test]
fn adding_a_region_changes_only_the_directory() {
    let before = vec![region("de", 2, 10), region("us", 1, 20)];
    let mut after = before.clone();
    after.push(region("jp", 3, 30));
    assert_only_directory_changes(&before[0], &before, &after);
}

#[test]
fn deleting_the_monolith_region_changes_only_the_directory() {
    // The ControlPlane names `us` as monolithRegion: its pods keep SENTRY_MONOLITH_REGION=us
    // (the ControlPlane reports UnknownMonolithRegion) and still accept the directory.
    let before = vec![region("de", 2, 10), region("us", 1, 20)];
    let after = vec![region("de", 2, 10)];
    assert_only_directory_changes(&before[0], &before, &after);
}
