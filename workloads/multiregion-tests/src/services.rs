//! Where the loopback services are: `DATABASE_URL` from the environment or from the env file
//! written by `e2e/services/up.sh`.

use std::path::PathBuf;

/// `${SILO_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/silo}`.
pub fn state_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SILO_STATE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var("XDG_STATE_HOME")
        .unwrap_or_else(|_| format!("{}/.local/state", std::env::var("HOME").unwrap_or_default()));
    PathBuf::from(base).join("silo")
}

/// The superuser URL of the test Postgres; panics with what to do when it is missing.
pub fn admin_database_url() -> String {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        return url;
    }
    let path = state_dir().join("services/env");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "these tests need Postgres: run e2e/services/up.sh (which writes {}) or set \
             DATABASE_URL; reading it failed: {e}",
            path.display()
        )
    });
    text.lines()
        .filter_map(|l| l.trim().trim_start_matches("export ").split_once('='))
        .find(|(k, _)| *k == "DATABASE_URL")
        .map(|(_, v)| v.trim_matches('"').to_owned())
        .unwrap_or_else(|| {
            panic!(
                "{} has no DATABASE_URL line; re-run e2e/services/up.sh",
                path.display()
            )
        })
}

pub use silo_testkit::repo_root;
