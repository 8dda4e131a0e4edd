//! Writes every CRD to `crds/<name>.yaml` and to the Helm chart's `crds/` folder
//! (or only to the directory given as the first argument).

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dirs = match std::env::args_os().nth(1) {
        Some(dir) => vec![PathBuf::from(dir)],
        None => silo_api::crdgen::OUTPUT_DIRS
            .iter()
            .map(|dir| root.join(dir))
            .collect(),
    };
    let rendered = silo_api::crdgen::render_all()?;
    for dir in dirs {
        std::fs::create_dir_all(&dir)?;
        for (file, yaml) in &rendered {
            let path = dir.join(file);
            std::fs::write(&path, yaml)?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}
