//! Rotation of the fleet's `RPC_SHARED_SECRET`: the request on the ControlPlane and its
//! progress in status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `spec.rotateRpcSecret`: replace the key every silo signs cross-silo RPC with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RpcSecretRotationRequest {
    /// Any string naming this request (a date, a ticket): a new value rotates again once the
    /// previous rotation is complete; the same value again is a no-op.
    #[schemars(length(min = 1, max = 63))]
    pub token: String,
}

/// Where a rotation of `RPC_SHARED_SECRET` stands. Each step waits until every silo's
/// Deployments run pods with the list of the step before the next list is written, so a key
/// signs only once every silo accepts it and is dropped only once no silo signs with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RpcRotationPhase {
    /// The new key is accepted everywhere next to the old one, which still signs.
    Accepting,
    /// The new key signs; the old one is still accepted.
    Signing,
    /// The old key is removed from every silo.
    Retiring,
    /// Every silo runs with the new key alone.
    Complete,
}

/// `status.rpcSecretRotation`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RpcSecretRotationStatus {
    /// The `spec.rotateRpcSecret.token` this rotation answers.
    pub token: String,
    /// A fingerprint of the new key (a prefix of its SHA-256), never the key.
    pub key_fingerprint: String,
    pub phase: RpcRotationPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// What the current step waits for (the silos whose pods do not run the list yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
