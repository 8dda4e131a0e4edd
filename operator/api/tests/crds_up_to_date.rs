//! The committed `crds/*.yaml` must equal what the Rust types generate.

use std::path::PathBuf;

#[test]
fn committed_crds_match_generated() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../crds");
    for (file, yaml) in silo_api::crdgen::render_all().expect("render CRDs") {
        let path = dir.join(&file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == yaml,
            "{} is out of date with operator/api; regenerate with `cargo run -p silo-api --bin crdgen`",
            path.display()
        );
    }
}
