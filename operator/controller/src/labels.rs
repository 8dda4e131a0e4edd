//! Names, labels and annotations the operator puts on everything it creates.

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "silo-operator";
/// The field manager of the ControlPlane's `status.retiredSnowflakeIds` records (JSON merge
/// patches of one key each): not [`FIELD_MANAGER`], whose status apply never sets them, so that
/// applying the status keeps every record.
pub const RETIRED_IDS_FIELD_MANAGER: &str = "silo-operator-retired-ids";
/// Finalizer that keeps a Region until its namespace is gone and no directory lists it.
pub const REGION_FINALIZER: &str = "silo.dev/region-cleanup";

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "silo-operator";
pub const PART_OF: &str = "app.kubernetes.io/part-of";
pub const PART_OF_VALUE: &str = "silo";
pub const NAME: &str = "app.kubernetes.io/name";
/// The release a workload (Deployment and its pods) or migration Job runs.
pub const VERSION: &str = "app.kubernetes.io/version";
/// The Region a child belongs to.
pub const REGION: &str = "silo.dev/region";
/// The ControlPlane a child belongs to.
pub const CONTROL_PLANE: &str = "silo.dev/controlplane";
/// `directory`, `rpc-secret`, `relay-secret` or a workload name.
pub const COMPONENT: &str = "silo.dev/component";

/// Hash of the desired object as last applied; unchanged hash means nothing to write.
pub const SPEC_HASH: &str = "silo.dev/spec-hash";
/// Hash of the external stores' connections a pod template was built with (a change rolls it).
pub const CONNECTIONS_HASH: &str = "silo.dev/connections-hash";
/// On a managed store's connection Secret: the `spec.rotateCredentials.token` its password
/// comes from (absent until the first rotation).
pub const CREDENTIALS_TOKEN: &str = "silo.dev/credentials-token";
/// On pod templates: the rotation tokens of the connection Secrets the pods read (a rotation
/// changes it, which rolls them); absent before any rotation.
pub const CREDENTIALS_REVISION: &str = "silo.dev/credentials-revision";
/// On a password rotation's Jobs and their pods: the store rotated.
pub const ROTATION: &str = "silo.dev/rotation";
/// On Deployments and their pod templates: hash of the `RPC_SHARED_SECRET` list the pods read
/// (absent until the fleet's key is first rotated).
pub const RPC_SECRETS_HASH: &str = "silo.dev/rpc-secrets-hash";
/// Hash of the region directory a directory ConfigMap holds.
pub const DIRECTORY_HASH: &str = "silo.dev/directory-hash";

/// Label selector matching every object the operator manages.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY}={MANAGED_BY_VALUE}")
}

/// Namespace of a region silo.
pub fn region_namespace(region: &str) -> String {
    format!("region-{region}")
}

/// The directory ConfigMap (in every silo namespace) and where pods see it.
pub const DIRECTORY_CONFIGMAP: &str = "silo-directory";
pub const DIRECTORY_KEY: &str = "regions.json";
pub const DIRECTORY_MOUNT: &str = "/etc/silo/directory";

/// Secret holding `RPC_SHARED_SECRET` (comma-separated keys) in every silo namespace.
pub const RPC_SECRET: &str = "silo-rpc";
pub const RPC_SECRET_KEY: &str = "secrets";
/// Secret shared by a region's relay and web only.
pub const RELAY_SECRET: &str = "relay-secret";
pub const RELAY_SECRET_KEY: &str = "secret";
/// Secret in the control namespace with a token of every scope, for the first API calls.
pub const BOOTSTRAP_SECRET: &str = "silo-bootstrap-token";
pub const BOOTSTRAP_SECRET_KEY: &str = "token";
/// Env var carrying the relay secret.
pub const RELAY_SECRET_ENV: &str = "RELAY_SHARED_SECRET";
