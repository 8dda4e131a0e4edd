//! Condition types and reasons written to `status.conditions`.

/// The resource is fully reconciled and every workload is available at the desired spec.
pub const READY: &str = "Ready";
/// Every Deployment is `Available` at its latest generation.
pub const WORKLOADS_READY: &str = "WorkloadsReady";
/// Every store (Postgres, Redis, Kafka) is running and ready, or its external Secret is usable.
pub const INFRASTRUCTURE_READY: &str = "InfrastructureReady";
/// The migration Job of the desired version succeeded.
pub const MIGRATIONS_COMPLETE: &str = "MigrationsComplete";
/// The desired child objects were applied (False with the API error otherwise).
pub const RECONCILED: &str = "Reconciled";

/// The Region's customer-provided cluster answers (Region with `spec.cluster` only); False
/// with the error class as reason: DNS, TLS, Unauthorized, Forbidden, Timeout, Refused.
pub const CLUSTER_REACHABLE: &str = "ClusterReachable";
/// The credentials of the Region's cluster are valid for longer than the warning period.
pub const CREDENTIALS_VALID: &str = "CredentialsValid";
/// The identity in the Region's cluster has every permission the operator needs.
pub const PERMISSIONS_SUFFICIENT: &str = "PermissionsSufficient";

/// `spec.rollout` is usable and every group of it matches a Region (ControlPlane only).
pub const ROLLOUT_VALID: &str = "RolloutValid";
/// Every namespace selector of `spec.networkPolicies` (ControlPlane), or of the external
/// stores' `egress` (Region), matches a namespace. Absent when the operator writes no
/// NetworkPolicies, and on a Region whose stores name no namespace selector.
pub const NETWORK_POLICIES_VALID: &str = "NetworkPoliciesValid";
/// The Region runs a different version than the rollout gives it (Region only).
pub const UPGRADING: &str = "Upgrading";

/// The password rotation asked by `spec.rotateCredentials` is done (Region only; absent when
/// none was asked).
pub const CREDENTIALS_ROTATED: &str = "CredentialsRotated";

/// Reasons used on the conditions above.
pub mod reason {
    /// All good.
    pub const READY: &str = "Ready";
    pub const AVAILABLE: &str = "Available";
    pub const APPLIED: &str = "Applied";
    /// Deployments exist but are not all available at the desired generation yet.
    pub const PROGRESSING: &str = "Progressing";
    /// Another Region already holds this snowflake id.
    pub const DUPLICATE_SNOWFLAKE_ID: &str = "DuplicateSnowflakeId";
    /// The snowflake id was held by a Region that has been deleted; it is not reused unless
    /// the ControlPlane lists it in `spec.releasedSnowflakeIds`.
    pub const RETIRED_SNOWFLAKE_ID: &str = "RetiredSnowflakeId";
    /// No ControlPlane exists, so there is no version or image to run.
    pub const NO_CONTROL_PLANE: &str = "NoControlPlane";
    /// More than one ControlPlane exists; the operator needs exactly one.
    pub const MULTIPLE_CONTROL_PLANES: &str = "MultipleControlPlanes";
    /// The ControlPlane runs in MONOLITH mode, which deploys no separate region silos.
    pub const MONOLITH_MODE: &str = "MonolithMode";
    /// `spec.suspend` is set: the operator leaves the region's objects alone.
    pub const SUSPENDED: &str = "Suspended";
    /// `spec.address` is not an http(s) URL the region directory accepts; the Region is left
    /// out of the directory until it is fixed.
    pub const INVALID_ADDRESS: &str = "InvalidAddress";
    /// The spec is not usable (the message says what to change).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Talking to the API server failed; the operator retries with backoff.
    pub const APPLY_FAILED: &str = "ApplyFailed";
    /// A store is not ready (the message names it and its pod's reason).
    pub const STORE_NOT_READY: &str = "StoreNotReady";
    /// An external store's Secret is missing or lacks a key (the message names both).
    pub const EXTERNAL_SECRET_INVALID: &str = "ExternalSecretInvalid";
    /// An external store refused the silo's credentials.
    pub const STORE_AUTH_FAILED: &str = "StoreAuthFailed";
    /// The TLS handshake with an external store failed (certificate, CA, protocol).
    pub const STORE_TLS_FAILED: &str = "StoreTlsFailed";
    /// An external store's host name does not resolve.
    pub const STORE_DNS_FAILED: &str = "StoreDnsFailed";
    /// An external store refused the connection or did not answer in time.
    pub const STORE_UNREACHABLE: &str = "StoreUnreachable";
    /// The stores are not ready yet, so migrations wait.
    pub const WAITING_FOR_INFRASTRUCTURE: &str = "WaitingForInfrastructure";
    /// The migration Job is running.
    pub const MIGRATING: &str = "Migrating";
    /// The migration Job failed; the previous version keeps serving.
    pub const MIGRATION_FAILED: &str = "MigrationFailed";
    /// The migration Job succeeded.
    pub const MIGRATED: &str = "Migrated";
    /// `spec.rollout` names a value the planner cannot use (the message names the field).
    pub const INVALID_ROLLOUT: &str = "InvalidRollout";
    /// A namespace selector of `spec.networkPolicies` or of an external store's `egress`
    /// matches no namespace (the policies are applied, but admit nothing through that rule).
    pub const SELECTOR_MATCHES_NOTHING: &str = "SelectorMatchesNothing";
    /// A group of `spec.rollout.groups` matches no Region.
    pub const EMPTY_ROLLOUT_GROUP: &str = "EmptyRolloutGroup";
    /// The rollout strategy is usable.
    pub const VALID: &str = "Valid";
    /// The Region moves to the version the rollout gives it.
    pub const UPGRADING: &str = "Upgrading";
    /// The Region runs the version the rollout gives it.
    pub const UP_TO_DATE: &str = "UpToDate";
    /// The Region's customer-provided cluster cannot be reached or used; only this Region
    /// waits (counted apart by the rollout's failure budget).
    pub const CLUSTER_UNREACHABLE: &str = "ClusterUnreachable";
    /// The cluster answered.
    pub const REACHABLE: &str = "Reachable";
    /// The credentials expire within the warning period: rotate them.
    pub const CREDENTIALS_EXPIRING: &str = "CredentialsExpiring";
    /// The credentials have expired.
    pub const CREDENTIALS_EXPIRED: &str = "CredentialsExpired";
    /// The identity lacks permissions the operator needs (the message lists them).
    pub const MISSING_PERMISSIONS: &str = "MissingPermissions";
    /// The Region is being deleted and its cluster cannot be reached.
    pub const DELETE_BLOCKED: &str = "DeleteBlockedClusterUnreachable";
    /// The monolith region named by the ControlPlane is not a known region.
    pub const UNKNOWN_MONOLITH_REGION: &str = "UnknownMonolithRegion";
    /// Every store named by `spec.rotateCredentials` runs on the new password, the old retired.
    pub const ROTATED: &str = "Rotated";
    /// A password rotation is under way (the message names each store's phase).
    pub const ROTATING: &str = "Rotating";
    /// `spec.rotateCredentials` names a store the operator cannot rotate (unknown, external,
    /// or without a password).
    pub const INVALID_ROTATION: &str = "InvalidRotation";
    /// A rotation step (its Job) failed; the message names it. A new token tries again.
    pub const ROTATION_FAILED: &str = "RotationFailed";
}
