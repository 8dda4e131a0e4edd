//! One control process and regions `us` and `de`, or a single MONOLITH process.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use silo_testkit::services::database_url;
use silo_testkit::{TestDb, free_addr, unique_suffix};

use crate::api::Api;
use crate::process::{WebProcess, ensure_built};

/// The bootstrap token every process stores with every scope.
pub const TOKEN: &str = "multiregion-admin-token";
/// How long a process may take to become ready.
pub const READY: Duration = Duration::from_secs(60);

/// Which process of the fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Silo {
    Control,
    Us,
    De,
}

/// Knobs of a fleet.
#[derive(Clone, Debug)]
pub struct FleetOptions {
    /// `RPC_SHARED_SECRET` of every process.
    pub rpc_secret: String,
    /// Extra environment for every process.
    pub env: Vec<(String, String)>,
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self {
            rpc_secret: "fleet-secret-1".into(),
            env: Vec::new(),
        }
    }
}

/// A running control + `us` + `de` fleet.
pub struct Fleet {
    pub control: WebProcess,
    pub us: WebProcess,
    pub de: WebProcess,
    pub control_db: TestDb,
    pub us_db: TestDb,
    pub de_db: TestDb,
    pub directory: PathBuf,
}

fn region_entry(name: &str, snowflake: u16, addr: std::net::SocketAddr) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "snowflake_id": snowflake,
        "address": format!("http://{addr}"),
        "category": "MULTI_TENANT",
        "visible": true,
    })
}

fn base_env(
    db: &TestDb,
    directory: &std::path::Path,
    options: &FleetOptions,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("DATABASE_URL".into(), db.url.clone());
    env.insert(
        "SENTRY_REGION_CONFIG".into(),
        directory.display().to_string(),
    );
    env.insert("SENTRY_MONOLITH_REGION".into(), "us".into());
    env.insert("RPC_SHARED_SECRET".into(), options.rpc_secret.clone());
    env.insert("SILO_BOOTSTRAP_TOKEN".into(), TOKEN.into());
    env.insert("SILO_OUTBOX_DRAIN_INTERVAL".into(), "200ms".into());
    env.insert("SILO_GATEWAY_CACHE_TTL".into(), "500ms".into());
    env.insert("SILO_RPC_TIMEOUT".into(), "5s".into());
    env.insert("SILO_GATEWAY_TIMEOUT".into(), "10s".into());
    env.insert("SILO_WEB_DATABASE_MAX_CONNECTIONS".into(), "8".into());
    env.insert("SILO_DIRECTORY_RELOAD_INTERVAL".into(), "200ms".into());
    env.extend(options.env.iter().cloned());
    env
}

fn write_directory(path: &std::path::Path, us: std::net::SocketAddr, de: std::net::SocketAddr) {
    let regions = serde_json::json!([region_entry("us", 1, us), region_entry("de", 2, de)]);
    // Write then rename, so a reloading process never reads a half-written file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, regions.to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

impl Fleet {
    /// Rewrite the directory file from the current process addresses (running processes
    /// re-read it on their reload interval).
    pub fn write_directory(&self) {
        write_directory(&self.directory, self.us.addr, self.de.addr);
    }

    /// Create the three databases, write the directory and start the three processes.
    pub async fn start(options: FleetOptions) -> Fleet {
        ensure_built();
        let admin = database_url();
        let run = unique_suffix();
        let control_db = TestDb::create_named(&admin, &format!("silo_mr_{run}_control")).await;
        let us_db = TestDb::create_named(&admin, &format!("silo_mr_{run}_us")).await;
        let de_db = TestDb::create_named(&admin, &format!("silo_mr_{run}_de")).await;
        let (control_addr, us_addr, de_addr) = (free_addr(), free_addr(), free_addr());
        let directory = std::env::temp_dir().join(format!("silo-mr-regions-{run}.json"));
        write_directory(&directory, us_addr, de_addr);

        let mut control_env = base_env(&control_db, &directory, &options);
        control_env.insert("SENTRY_SILO_MODE".into(), "CONTROL".into());
        let region_env = |db: &TestDb, name: &str| {
            let mut env = base_env(db, &directory, &options);
            env.insert("SENTRY_SILO_MODE".into(), "REGION".into());
            env.insert("SENTRY_REGION".into(), name.into());
            env.insert(
                "SENTRY_CONTROL_ADDRESS".into(),
                format!("http://{control_addr}"),
            );
            env
        };
        let mut us = WebProcess::spawn("us", us_addr, region_env(&us_db, "us"));
        let mut de = WebProcess::spawn("de", de_addr, region_env(&de_db, "de"));
        let mut control = WebProcess::spawn("control", control_addr, control_env);
        us.wait_ready(READY).await;
        de.wait_ready(READY).await;
        control.wait_ready(READY).await;
        Fleet {
            control,
            us,
            de,
            control_db,
            us_db,
            de_db,
            directory,
        }
    }

    pub fn process(&mut self, silo: Silo) -> &mut WebProcess {
        match silo {
            Silo::Control => &mut self.control,
            Silo::Us => &mut self.us,
            Silo::De => &mut self.de,
        }
    }

    /// A client of one process with the bootstrap token.
    pub fn api(&self, silo: Silo) -> Api {
        let process = match silo {
            Silo::Control => &self.control,
            Silo::Us => &self.us,
            Silo::De => &self.de,
        };
        Api::new(process.base_url(), TOKEN)
    }

    /// Stop every process and drop the databases.
    pub async fn finish(mut self) {
        for silo in [Silo::Control, Silo::Us, Silo::De] {
            self.process(silo).stop(Duration::from_secs(10)).await;
        }
        for db in [&self.control_db, &self.us_db, &self.de_db] {
            db.drop_database().await;
        }
        let _ = std::fs::remove_file(&self.directory);
    }
}

/// A single MONOLITH process serving control and region `us` from one database.
pub struct Monolith {
    pub process: WebProcess,
    pub db: TestDb,
    pub directory: PathBuf,
}

impl Monolith {
    pub async fn start() -> Monolith {
        ensure_built();
        let admin = database_url();
        let run = unique_suffix();
        let db = TestDb::create_named(&admin, &format!("silo_mr_{run}_mono")).await;
        let addr = free_addr();
        let directory = std::env::temp_dir().join(format!("silo-mr-mono-{run}.json"));
        std::fs::write(
            &directory,
            serde_json::json!([region_entry("us", 1, addr)]).to_string(),
        )
        .unwrap_or_else(|e| panic!("write {}: {e}", directory.display()));
        let mut env = base_env(&db, &directory, &FleetOptions::default());
        env.insert("SENTRY_SILO_MODE".into(), "MONOLITH".into());
        env.insert("SENTRY_REGION".into(), "us".into());
        let mut process = WebProcess::spawn("monolith", addr, env);
        process.wait_ready(READY).await;
        Monolith {
            process,
            db,
            directory,
        }
    }

    pub fn api(&self) -> Api {
        Api::new(self.process.base_url(), TOKEN)
    }

    pub async fn finish(mut self) {
        self.process.stop(Duration::from_secs(10)).await;
        self.db.drop_database().await;
        let _ = std::fs::remove_file(&self.directory);
    }
}
