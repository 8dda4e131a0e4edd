//! Infrastructure decisions of a silo, pure: how each store is provided (managed with a claim
//! or an `emptyDir`, external from a Secret), whether the stores are ready, and the migration
//! gate that decides which version the workloads run.
//!
//! ```text
//!   spec.infrastructure ─┐
//!   external Secrets ────┼─► resolve ─► SiloInfra ─► build (StatefulSets, Secrets, Job, env)
//!   default StorageClass ┘
//!   StatefulSets + pods ─► stores_ready ─┐
//!   migration Job ───────────────────────┼─► gate::decide ─► workload version + conditions
//!   running Deployments' version ────────┘
//! ```

pub mod connection;
pub mod external;
pub mod gate;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use silo_api::{ManagedStore, Store};

pub use external::{ExternalError, resolve_external};

/// Where a managed store keeps its data.
#[derive(Clone, Debug, PartialEq)]
pub enum Storage {
    /// A PersistentVolumeClaim per pod (class `None`: the cluster's default).
    Claim {
        class: Option<String>,
        size: Quantity,
    },
    /// No StorageClass to claim from: an `emptyDir`, lost when the pod is deleted.
    EmptyDir,
}

/// Decide the storage of a managed store. A store that exists keeps the kind it was created
/// with (`existing_claims`: whether its StatefulSet has claim templates), since a StatefulSet's
/// volumes cannot change; a new one claims when a class is named or the cluster has a default.
pub fn storage_for(
    store: Store,
    managed: &ManagedStore,
    default_class: bool,
    existing_claims: Option<bool>,
) -> Storage {
    let claims = match existing_claims {
        Some(claims) => claims,
        None => managed.storage_class_name.is_some() || default_class,
    };
    if claims {
        Storage::Claim {
            class: managed.storage_class_name.clone(),
            size: managed
                .storage
                .clone()
                .unwrap_or_else(|| Quantity(store.default_storage().to_owned())),
        }
    } else {
        Storage::EmptyDir
    }
}

/// How one store of a silo is provided, resolved for the build.
#[derive(Clone, Debug, PartialEq)]
pub enum Provided {
    /// Run by the operator in the silo's namespace.
    Managed {
        sizing: ManagedStore,
        storage: Storage,
    },
    /// A platform team's store; `data` is the normalized copy written into the silo's
    /// namespace (`uri`, or `bootstrap.servers` for Kafka) and `source` names its Secret.
    External {
        source: String,
        data: BTreeMap<String, String>,
    },
    /// A Secret in the silo's namespace holding the URL under `key` (the control database
    /// given by `ControlPlane.spec.control.database`).
    Reference { secret: String, key: String },
}

/// The stores one silo uses: a region and the monolith have all three, the control silo only
/// Postgres.
#[derive(Clone, Debug, PartialEq)]
pub struct SiloInfra {
    pub postgres: Provided,
    pub redis: Option<Provided>,
    pub kafka: Option<Provided>,
    /// Keep the PersistentVolumes when the silo is deleted.
    pub retain_on_delete: bool,
}

impl SiloInfra {
    pub fn get(&self, store: Store) -> Option<&Provided> {
        match store {
            Store::Postgres => Some(&self.postgres),
            Store::Redis => self.redis.as_ref(),
            Store::Kafka => self.kafka.as_ref(),
        }
    }

    /// The stores in use, with how they are provided.
    pub fn stores(&self) -> impl Iterator<Item = (Store, &Provided)> {
        Store::ALL
            .into_iter()
            .filter_map(|s| self.get(s).map(|p| (s, p)))
    }

    /// The managed stores whose data is in an `emptyDir`.
    pub fn ephemeral(&self) -> Vec<Store> {
        self.stores()
            .filter(|(_, p)| {
                matches!(
                    p,
                    Provided::Managed {
                        storage: Storage::EmptyDir,
                        ..
                    }
                )
            })
            .map(|(s, _)| s)
            .collect()
    }
}

impl SiloInfra {
    /// What the silo's external stores' connections hold (store name -> the copied keys), or
    /// `None` when no store is external. Its hash on the pod templates rolls the workloads
    /// when a platform team edits an external store's Secret (a new host or password), since
    /// variables read from a Secret are fixed when a container starts.
    pub fn external_connections(
        &self,
    ) -> Option<BTreeMap<&'static str, &BTreeMap<String, String>>> {
        let connections: BTreeMap<_, _> = self
            .stores()
            .filter_map(|(store, provided)| match provided {
                Provided::External { data, .. } => Some((store.name(), data)),
                _ => None,
            })
            .collect();
        (!connections.is_empty()).then_some(connections)
    }
}

/// Name of the Secret (in the silo's namespace) holding the connection of `store`, and the key
/// of its URL (`uri`; `bootstrap.servers` for Kafka).
pub fn connection_secret(store: Store, provided: &Provided) -> (String, String) {
    let key = match store {
        Store::Kafka => external::KAFKA_SERVERS_KEY,
        Store::Postgres | Store::Redis => external::URI_KEY,
    };
    match provided {
        Provided::Managed { .. } => (format!("{}-credentials", store.name()), key.to_owned()),
        Provided::External { .. } => (format!("{}-external", store.name()), key.to_owned()),
        Provided::Reference { secret, key } => (secret.clone(), key.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_claims_when_a_class_exists_and_keeps_what_exists() {
        let plain = ManagedStore::default();
        let named = ManagedStore {
            storage_class_name: Some("fast".into()),
            storage: Some(Quantity("5Gi".into())),
            ..ManagedStore::default()
        };
        assert_eq!(
            storage_for(Store::Postgres, &plain, true, None),
            Storage::Claim {
                class: None,
                size: Quantity("2Gi".into())
            }
        );
        assert_eq!(
            storage_for(Store::Redis, &plain, false, None),
            Storage::EmptyDir
        );
        assert_eq!(
            storage_for(Store::Kafka, &named, false, None),
            Storage::Claim {
                class: Some("fast".into()),
                size: Quantity("5Gi".into())
            }
        );
        // A default class appearing later does not turn an emptyDir store into a claim.
        assert_eq!(
            storage_for(Store::Postgres, &plain, true, Some(false)),
            Storage::EmptyDir
        );
        assert!(matches!(
            storage_for(Store::Postgres, &plain, false, Some(true)),
            Storage::Claim { .. }
        ));
    }

    #[test]
    fn connection_secrets_name_one_shape_for_every_provider() {
        let managed = Provided::Managed {
            sizing: ManagedStore::default(),
            storage: Storage::EmptyDir,
        };
        assert_eq!(
            connection_secret(Store::Postgres, &managed),
            ("postgres-credentials".into(), "uri".into())
        );
        let external = Provided::External {
            source: "pg".into(),
            data: BTreeMap::new(),
        };
        assert_eq!(
            connection_secret(Store::Kafka, &external),
            ("kafka-external".into(), "bootstrap.servers".into())
        );
        let reference = Provided::Reference {
            secret: "control-db".into(),
            key: "url".into(),
        };
        assert_eq!(
            connection_secret(Store::Postgres, &reference),
            ("control-db".into(), "url".into())
        );
    }
}
