//! The committed CRD YAML (in `crds/` and in the Helm chart) must equal what the types generate.

use std::path::PathBuf;

#[test]
fn committed_crds_match_generated() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let rendered = silo_api::crdgen::render_all().expect("render CRDs");
    for dir in silo_api::crdgen::OUTPUT_DIRS {
        for (file, yaml) in &rendered {
            let path = root.join(dir).join(file);
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == *yaml,
                "{dir}/{file} is out of date with operator/api; regenerate with `cargo run -p silo-api --bin crdgen`"
            );
        }
    }
}
