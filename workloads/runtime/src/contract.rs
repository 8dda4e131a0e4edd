//! The silo contract of this process, kept current: a directory file that changes on disk (a
//! mounted ConfigMap) is re-read without a restart.

use std::sync::Arc;
use std::time::Duration;

use silo_contract::{ContractError, RegionConfigSource, SiloContract};
use tokio::sync::watch;

use crate::shutdown::Shutdown;

#[derive(Debug, thiserror::Error)]
#[error("invalid silo contract")]
pub struct ContractLoadError {
    #[from]
    source: ContractError,
}

/// A shared, reloading view of the contract.
#[derive(Clone, Debug)]
pub struct ContractHandle {
    rx: watch::Receiver<Arc<SiloContract>>,
    tx: Arc<watch::Sender<Arc<SiloContract>>>,
}

impl ContractHandle {
    /// Read and validate the contract from the environment; refuses an invalid one.
    pub fn from_env() -> Result<Self, ContractLoadError> {
        Ok(Self::new(SiloContract::from_env()?))
    }

    /// A handle over an already-built contract (tests, embedded use).
    pub fn new(contract: SiloContract) -> Self {
        let (tx, rx) = watch::channel(Arc::new(contract));
        Self {
            rx,
            tx: Arc::new(tx),
        }
    }

    /// The contract as of now.
    pub fn current(&self) -> Arc<SiloContract> {
        self.rx.borrow().clone()
    }

    /// A receiver that sees every reload.
    pub fn subscribe(&self) -> watch::Receiver<Arc<SiloContract>> {
        self.rx.clone()
    }

    /// Re-read the directory now; on success publish it and return whether it changed.
    /// An invalid new directory is refused and the last good one stays in force.
    pub fn reload(&self) -> Result<bool, ContractLoadError> {
        let current = self.current();
        let next = current.reload()?;
        if next == *current {
            return Ok(false);
        }
        tracing::info!(regions = next.directory.len(), "region directory reloaded");
        self.tx.send_replace(Arc::new(next));
        Ok(true)
    }

    /// Poll the directory file every `interval` until shutdown (no-op for an inline directory).
    pub fn spawn_reloader(&self, interval: Duration, shutdown: Shutdown) {
        if !matches!(
            self.current().directory_source,
            Some(RegionConfigSource::File(_))
        ) {
            return;
        }
        let handle = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = ticker.tick() => {}
                }
                if let Err(error) = handle.reload() {
                    tracing::warn!(%error, "keeping the previous region directory");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use silo_contract::env;

    use super::*;

    fn dir(names: &[&str]) -> String {
        let entries: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                format!(
                    r#"{{"name":"{n}","snowflake_id":{i},"address":"http://{n}","category":"MULTI_TENANT"}}"#
                )
            })
            .collect();
        format!("[{}]", entries.join(","))
    }

    #[tokio::test]
    async fn reloader_publishes_file_changes_and_keeps_last_good() {
        let path = std::env::temp_dir().join(format!("silo-rt-{}.json", std::process::id()));
        std::fs::write(&path, dir(&["de", "us"])).unwrap();
        let path_str = path.to_str().unwrap().to_owned();
        let contract = SiloContract::from_lookup(|k| match k {
            env::SILO_MODE => Some("REGION".into()),
            env::REGION => Some("de".into()),
            env::REGION_CONFIG => Some(path_str.clone()),
            _ => None,
        })
        .unwrap();
        let handle = ContractHandle::new(contract);
        let shutdown = Shutdown::new();
        let mut rx = handle.subscribe();
        handle.spawn_reloader(Duration::from_millis(20), shutdown.clone());

        std::fs::write(&path, dir(&["de", "eu", "us"])).unwrap();
        tokio::time::timeout(Duration::from_secs(10), rx.changed())
            .await
            .expect("reload within deadline")
            .unwrap();
        assert_eq!(handle.current().directory.len(), 3);

        // A directory without this pod's region is refused; the last good one stays.
        std::fs::write(&path, dir(&["us"])).unwrap();
        assert!(handle.reload().is_err());
        assert_eq!(handle.current().directory.len(), 3);
        shutdown.trigger();
        std::fs::remove_file(&path).unwrap();
    }
}
