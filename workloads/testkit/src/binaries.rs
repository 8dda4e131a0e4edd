//! Building and finding the workspace's binaries for tests that run them as processes.
//!
//! `cargo test` and `cargo run` export the running package's `CARGO_PKG_*`/`CARGO_MANIFEST_*`
//! variables to the process. Build scripts that declare `rerun-if-env-changed` on those names
//! (ring does) would see them change between the outer and the nested `cargo build` and rebuild
//! half the dependency tree each time, so the nested build runs without them.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Variables cargo sets for the crate it runs; never passed to a nested `cargo build`.
const CRATE_VARS: [&str; 8] = [
    "CARGO_PKG_",
    "CARGO_MANIFEST_",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_BIN_EXE_",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
];

/// The repository root (this crate lives two levels below it).
pub fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// `target/<profile>` of the running executable (tests run from `target/<profile>/deps/`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("no current exe: {e}"));
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().map(Path::to_path_buf).unwrap_or(dir)
    } else {
        dir
    }
}

/// Whether the running executable was built with the release profile.
pub fn is_release() -> bool {
    profile_dir().file_name().is_some_and(|n| n == "release")
}

/// Build each `(package, binary)` not built yet by this process, with the profile of the
/// running executable. Panics when cargo fails.
pub fn ensure_built(binaries: &[(&str, &str)]) {
    if std::env::var("SILO_SKIP_BUILD").is_ok_and(|v| v == "1") {
        return;
    }
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    let missing: Vec<(&str, &str)> = binaries
        .iter()
        .copied()
        .filter(|(_, bin)| !built.iter().any(|b| b == bin))
        .collect();
    if missing.is_empty() {
        return;
    }
    let mut cmd = cargo();
    cmd.current_dir(repo_root()).args(["build", "--quiet"]);
    if is_release() {
        cmd.arg("--release");
    }
    for (package, bin) in &missing {
        cmd.args(["-p", package, "--bin", bin]);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo build: {e}"));
    assert!(status.success(), "cargo build of {missing:?} failed");
    built.extend(missing.iter().map(|(_, bin)| (*bin).to_owned()));
}

/// The path of a built binary; panics naming the build command when it is missing.
pub fn binary(package: &str, bin: &str) -> PathBuf {
    let path = profile_dir().join(bin);
    assert!(
        path.exists(),
        "{} is missing; build it with `cargo build -p {package} --bin {bin}`",
        path.display()
    );
    path
}

/// A `cargo` command (the one running the tests, if any) without the running crate's
/// variables (see the crate docs).
pub fn cargo() -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if is_crate_var(name) {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn is_crate_var(name: &str) -> bool {
    name == "OUT_DIR" || CRATE_VARS.iter().any(|prefix| name.starts_with(prefix))
}

/// A free loopback address (bound, then released), below the kernel's ephemeral port range.
///
/// A port from the ephemeral range (what binding port 0 returns) can be taken by any outgoing
/// connection on the machine between this check and the process that binds it; the local
/// cluster's node components open many. Ports 10000-19999 are never handed out for outgoing
/// connections, and the cluster scripts allocate theirs from 20000 up.
pub fn free_addr() -> SocketAddr {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919);
    for _ in 0..10_000 {
        let offset = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = 10_000 + (start.wrapping_add(offset.wrapping_mul(97)) % 10_000) as u16;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return listener
                .local_addr()
                .unwrap_or_else(|e| panic!("local addr: {e}"));
        }
    }
    panic!("no free loopback port in 10000-19999")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_addresses_are_distinct_and_below_the_ephemeral_range() {
        let a = free_addr();
        let b = free_addr();
        assert_ne!(a, b);
        assert!((10_000..20_000).contains(&a.port()), "{a}");
    }

    #[test]
    fn only_the_running_crates_variables_are_dropped() {
        assert!(is_crate_var("CARGO_PKG_NAME"));
        assert!(is_crate_var("CARGO_MANIFEST_DIR"));
        assert!(is_crate_var("CARGO_BIN_EXE_web"));
        assert!(is_crate_var("OUT_DIR"));
        assert!(!is_crate_var("CARGO_HOME"));
        assert!(!is_crate_var("CARGO_TARGET_DIR"));
        assert!(!is_crate_var("CARGO"));
    }
}
