//! Where the loopback services are: the environment, else the env file `up.sh` writes.

use std::path::PathBuf;

/// Connection settings of the running services.
#[derive(Clone, Debug)]
pub struct Services {
    pub database_url: String,
    pub redis_url: String,
    pub kafka_brokers: String,
}

/// `${SILO_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/silo}`.
pub fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SILO_STATE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".local/state")
        });
    base.join("silo")
}

impl Services {
    /// Read the settings; panics with what to run when the services were never started.
    pub fn get() -> Self {
        let file = state_dir().join("services/env");
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let from_file = |name: &str| {
            text.lines().find_map(|line| {
                let rest = line.trim().strip_prefix("export ")?;
                let (k, v) = rest.split_once('=')?;
                (k == name).then(|| v.trim_matches('"').to_owned())
            })
        };
        let get = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .or_else(|| from_file(name))
                .unwrap_or_else(|| {
                    panic!(
                        "{name} is not set and {} does not define it: start the services with \
                         e2e/services/up.sh (or export {name})",
                        file.display()
                    )
                })
        };
        Services {
            database_url: get("DATABASE_URL"),
            redis_url: get("REDIS_URL"),
            kafka_brokers: get("KAFKA_BROKERS"),
        }
    }
}

pub use silo_testkit::repo_root;

/// Run `e2e/services/ctl.sh <action> <component>`; panics with its output on failure.
pub fn ctl(action: &str, component: &str) {
    let out = std::process::Command::new("bash")
        .arg(repo_root().join("e2e/services/ctl.sh"))
        .args([action, component])
        .output()
        .unwrap_or_else(|e| panic!("cannot run e2e/services/ctl.sh: {e}"));
    assert!(
        out.status.success(),
        "ctl.sh {action} {component} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
