//! The whole contract as read by a workload at start-up, validated as one.

use crate::directory::{DirectoryError, RegionConfigSource, RegionDirectory};
use crate::env;
use crate::mode::{SiloMode, UnknownSiloMode};
use crate::region::RegionInfo;

/// What a pod was told about its place in the fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiloContract {
    pub mode: SiloMode,
    /// This pod's region: required in REGION mode; in MONOLITH mode it falls back to
    /// `SENTRY_MONOLITH_REGION`.
    pub region: Option<String>,
    pub directory_source: Option<RegionConfigSource>,
    pub directory: RegionDirectory,
    pub monolith_region: Option<String>,
    pub control_address: Option<String>,
    /// RPC keys; the first signs, any verifies.
    pub rpc_secrets: Vec<String>,
}

/// Why the contract in the environment is unusable. Each message says what to set.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("{var} is invalid: {source}", var = env::SILO_MODE)]
    Mode {
        #[from]
        source: UnknownSiloMode,
    },
    #[error("{var}: {source}", var = env::REGION_CONFIG)]
    Directory {
        #[from]
        source: DirectoryError,
    },
    #[error(
        "{} is REGION but {} is not set; set it to this pod's region name",
        env::SILO_MODE,
        env::REGION
    )]
    MissingRegion,
    #[error(
        "{var}={name:?} names a region that is not in {} (known: {known}); add the region to the directory or fix the name",
        env::REGION_CONFIG
    )]
    UnknownRegion {
        var: &'static str,
        name: String,
        known: String,
    },
    #[error(
        "{} is REGION but {} is empty; every region pod needs the region directory",
        env::SILO_MODE,
        env::REGION_CONFIG
    )]
    EmptyDirectory,
}

impl SiloContract {
    /// Read the contract from the process environment.
    pub fn from_env() -> Result<Self, ContractError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Read the contract through `lookup` (a variable name to its value); blank values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ContractError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mode = match get(env::SILO_MODE) {
            Some(v) => v.parse()?,
            None => SiloMode::Monolith,
        };
        let directory_source = get(env::REGION_CONFIG)
            .map(|v| RegionConfigSource::parse(&v))
            .transpose()?;
        let directory = match &directory_source {
            Some(source) => source.load()?,
            None => RegionDirectory::default(),
        };
        let contract = Self {
            mode,
            region: get(env::REGION).map(|v| v.trim().to_owned()),
            directory_source,
            directory,
            monolith_region: get(env::MONOLITH_REGION).map(|v| v.trim().to_owned()),
            control_address: get(env::CONTROL_ADDRESS)
                .map(|v| v.trim().trim_end_matches('/').to_owned()),
            rpc_secrets: get(env::RPC_SHARED_SECRET)
                .map(|v| env::parse_secret_list(&v))
                .unwrap_or_default(),
        };
        contract.validate()?;
        Ok(contract)
    }

    /// Re-read the directory from its source (a mounted file may have changed) and re-validate.
    pub fn reload(&self) -> Result<Self, ContractError> {
        let mut next = self.clone();
        if let Some(source) = &self.directory_source {
            next.directory = source.load()?;
        }
        next.validate()?;
        Ok(next)
    }

    fn validate(&self) -> Result<(), ContractError> {
        if self.mode == SiloMode::Region {
            if self.region.is_none() {
                return Err(ContractError::MissingRegion);
            }
            if self.directory.is_empty() {
                return Err(ContractError::EmptyDirectory);
            }
        }
        if self.directory.is_empty() {
            return Ok(());
        }
        let check = |var: &'static str, name: &Option<String>| match name {
            Some(name) if self.directory.get(name).is_none() => Err(ContractError::UnknownRegion {
                var,
                name: name.clone(),
                known: self.directory.names().collect::<Vec<_>>().join(", "),
            }),
            _ => Ok(()),
        };
        if self.mode != SiloMode::Control {
            check(env::REGION, &self.region)?;
        }
        // SENTRY_MONOLITH_REGION is checked only where it is the pod's own region (MONOLITH
        // without SENTRY_REGION). Elsewhere it only names the fallback for org-less requests, and
        // the Region it names may be deleted while pods run: refusing the contract then would
        // freeze the directory of every running pod and stop new pods from starting. The
        // fallback is unavailable instead (see `fallback_region`).
        if self.mode == SiloMode::Monolith && self.region.is_none() {
            check(env::MONOLITH_REGION, &self.monolith_region)?;
        }
        Ok(())
    }

    /// The region this process serves data for (REGION: its own; MONOLITH: its own or the
    /// monolith region; CONTROL: none).
    pub fn local_region(&self) -> Option<&str> {
        match self.mode {
            SiloMode::Control => None,
            SiloMode::Region => self.region.as_deref(),
            SiloMode::Monolith => self.region.as_deref().or(self.monolith_region.as_deref()),
        }
    }

    /// The directory entry of the region this process serves, if any.
    pub fn local_region_info(&self) -> Option<&RegionInfo> {
        self.local_region()
            .and_then(|name| self.directory.get(name))
    }

    /// The region that serves requests without an organization: `SENTRY_MONOLITH_REGION`, or
    /// the first region when it is unset. None while the directory does not list the monolith
    /// region ([`Self::unlisted_monolith_region`]): such requests must not land in another
    /// region than the one configured.
    pub fn fallback_region(&self) -> Option<&RegionInfo> {
        match self.monolith_region.as_deref() {
            Some(name) => self.directory.get(name),
            None => self.directory.regions().first(),
        }
    }

    /// `SENTRY_MONOLITH_REGION` when the directory does not list it (e.g. its Region was
    /// deleted), for a message saying why org-less requests are not served.
    pub fn unlisted_monolith_region(&self) -> Option<&str> {
        self.monolith_region
            .as_deref()
            .filter(|name| self.directory.get(name).is_none())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const DIR: &str = r#"[{"name":"us","snowflake_id":1,"address":"http://us","category":"MULTI_TENANT","visible":true},
        {"name":"de","snowflake_id":2,"address":"http://de","category":"MULTI_TENANT","visible":true}]"#;

    fn read(vars: &[(&str, &str)]) -> Result<SiloContract, ContractError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SiloContract::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn region_mode_reads_everything() {
        let c = read(&[
            (env::SILO_MODE, "REGION"),
            (env::REGION, "de"),
            (env::REGION_CONFIG, DIR),
            (env::MONOLITH_REGION, "us"),
            (env::CONTROL_ADDRESS, "http://control/"),
            (env::RPC_SHARED_SECRET, "a,b"),
        ])
        .unwrap();
        assert_eq!(c.mode, SiloMode::Region);
        assert_eq!(c.local_region(), Some("de"));
        assert_eq!(c.local_region_info().map(|r| r.snowflake_id), Some(2));
        assert_eq!(c.fallback_region().map(|r| r.name.as_str()), Some("us"));
        assert_eq!(c.control_address.as_deref(), Some("http://control"));
        assert_eq!(c.rpc_secrets, vec!["a", "b"]);
    }

    #[test]
    fn a_monolith_region_left_out_of_the_directory_leaves_no_fallback() {
        // The operator keeps SENTRY_MONOLITH_REGION when that Region is deleted: running pods
        // take the new directory, new pods start with it, and org-less requests get no region
        // rather than silently another one.
        let path = std::env::temp_dir().join(format!("silo-mono-{}.json", std::process::id()));
        std::fs::write(&path, DIR).unwrap();
        let vars = [
            (env::SILO_MODE, "CONTROL"),
            (env::REGION_CONFIG, path.to_str().unwrap()),
            (env::MONOLITH_REGION, "de"),
        ];
        let running = read(&vars).unwrap();
        assert_eq!(
            running.fallback_region().map(|r| r.name.as_str()),
            Some("de")
        );
        std::fs::write(
            &path,
            r#"[{"name":"us","snowflake_id":1,"address":"http://us","category":"MULTI_TENANT"}]"#,
        )
        .unwrap();
        let reloaded = running.reload();
        let started = read(&vars);
        std::fs::remove_file(&path).unwrap();
        let reloaded = reloaded.unwrap();
        assert_eq!(reloaded, started.unwrap());
        assert_eq!(reloaded.fallback_region(), None);
        assert_eq!(reloaded.unlisted_monolith_region(), Some("de"));
        assert_eq!(running.unlisted_monolith_region(), None);
    }

    #[test]
    fn a_monolith_pod_needs_its_region_listed() {
        // Without SENTRY_REGION the monolith region is the pod's own region.
        let err = read(&[
            (env::SILO_MODE, "MONOLITH"),
            (env::REGION_CONFIG, DIR),
            (env::MONOLITH_REGION, "eu"),
        ])
        .unwrap_err();
        assert!(matches!(err, ContractError::UnknownRegion { .. }), "{err}");
    }

    #[test]
    fn region_mode_without_region_is_refused() {
        let err = read(&[(env::SILO_MODE, "REGION"), (env::REGION_CONFIG, DIR)]).unwrap_err();
        assert!(matches!(err, ContractError::MissingRegion));
        assert!(err.to_string().contains("SENTRY_REGION"));
    }

    #[test]
    fn unknown_region_names_the_known_ones() {
        let err = read(&[
            (env::SILO_MODE, "REGION"),
            (env::REGION, "eu"),
            (env::REGION_CONFIG, DIR),
        ])
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"eu\"") && msg.contains("de, us"), "{msg}");
    }

    #[test]
    fn region_mode_needs_a_directory() {
        let err = read(&[(env::SILO_MODE, "REGION"), (env::REGION, "de")]).unwrap_err();
        assert!(matches!(err, ContractError::EmptyDirectory));
    }

    #[test]
    fn defaults_to_monolith_and_bad_mode_is_refused() {
        let c = read(&[]).unwrap();
        assert_eq!(c.mode, SiloMode::Monolith);
        assert!(c.directory.is_empty());
        let err = read(&[(env::SILO_MODE, "EDGE")]).unwrap_err();
        assert!(err.to_string().contains("SENTRY_SILO_MODE"));
    }

    #[test]
    fn reload_picks_up_a_changed_file() {
        let path = std::env::temp_dir().join(format!("silo-contract-{}.json", std::process::id()));
        std::fs::write(&path, DIR).unwrap();
        let c = read(&[
            (env::SILO_MODE, "CONTROL"),
            (env::REGION_CONFIG, path.to_str().unwrap()),
        ])
        .unwrap();
        assert_eq!(c.directory.len(), 2);
        std::fs::write(
            &path,
            r#"[{"name":"us","snowflake_id":1,"address":"http://us","category":"MULTI_TENANT"}]"#,
        )
        .unwrap();
        let next = c.reload().unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(next.directory.names().collect::<Vec<_>>(), vec!["us"]);
    }
}
