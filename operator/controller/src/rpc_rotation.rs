//! Rotation of the fleet's `RPC_SHARED_SECRET` (`ControlPlane.spec.rotateRpcSecret`).
//!
//! ```text
//!  spec.rotateRpcSecret.token ─┐
//!  status.rpcSecretRotation ───┤
//!  the key list (silo-rpc) ────┼─► step (pure) ─► Start: record the new key's fingerprint,
//!  silos whose Deployments ────┘                    then append the key (the old one signs)
//!  do not run the list yet                        Promote: the new key first (it signs)
//!                                                 Retire: the new key alone
//!                                                 Wait / Complete / Idle
//! ```
//!
//! Every list change rolls every silo (the list's hash is on the pod templates) and the next
//! step waits until every silo's Deployments run pods with it, so a key signs only once every
//! silo accepts it, and is dropped only once no silo signs with it. The phase is derived from
//! where the new key (known by its fingerprint) stands in the list, so a restart between two
//! writes resumes at the right step.

use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};
use silo_api::{ControlPlane, Region, RpcRotationPhase, RpcSecretRotationStatus};
use silo_contract::env::{join_secret_list, parse_secret_list};

use crate::build;
use crate::context::Context;
use crate::labels;
use crate::records::DeploymentRecord;
use crate::status;

/// Field manager of `status.rpcSecretRotation` (a merge patch that other status writes keep).
const FIELD_MANAGER: &str = "silo-operator-rpc-rotation";
/// How many waiting silos a status message names.
const NAMED: usize = 5;

/// What the rotation step sees.
#[derive(Debug)]
pub struct Snapshot<'a> {
    /// `spec.rotateRpcSecret.token`.
    pub request: Option<&'a str>,
    pub status: Option<&'a RpcSecretRotationStatus>,
    /// The current key list, signing key first.
    pub keys: &'a [String],
    /// Silos whose Deployments do not run pods with `keys` yet.
    pub waiting: &'a [String],
}

/// What to do next.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Nothing asked, or the request is done.
    Idle,
    /// Make a new key for `token`: record its fingerprint first, then append it.
    Start { token: String },
    /// Write `keys` (the status records `phase`).
    Write {
        keys: Vec<String>,
        phase: RpcRotationPhase,
    },
    /// The silos have not caught up with the current list.
    Wait { phase: RpcRotationPhase },
    /// Every silo runs the new key alone.
    Complete,
}

/// A key's public name: a prefix of its SHA-256.
pub fn fingerprint(key: &str) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..6])
}

/// The phase a list shows for the key with `fingerprint`; `None` when the list lacks it.
fn phase_of(keys: &[String], fingerprint_of_new: &str) -> Option<RpcRotationPhase> {
    let at = keys
        .iter()
        .position(|k| fingerprint(k) == fingerprint_of_new)?;
    Some(match (at, keys.len()) {
        (0, 1) => RpcRotationPhase::Retiring,
        (0, _) => RpcRotationPhase::Signing,
        _ => RpcRotationPhase::Accepting,
    })
}

/// Decide the next step of the rotation.
pub fn step(s: &Snapshot<'_>) -> Step {
    // A rotation under way finishes first, even when the request changed meanwhile.
    let active = match s.status {
        Some(st) if st.phase != RpcRotationPhase::Complete => st,
        Some(st) if Some(st.token.as_str()) == s.request => return Step::Idle,
        _ => {
            return match s.request {
                Some(token) => Step::Start {
                    token: token.to_owned(),
                },
                None => Step::Idle,
            };
        }
    };
    let Some(phase) = phase_of(s.keys, &active.key_fingerprint) else {
        // The key was recorded but never written (a restart in between): make another.
        return Step::Start {
            token: active.token.clone(),
        };
    };
    if !s.waiting.is_empty() {
        return Step::Wait { phase };
    }
    let new = s
        .keys
        .iter()
        .find(|k| fingerprint(k) == active.key_fingerprint)
        .cloned()
        .unwrap_or_default();
    match phase {
        RpcRotationPhase::Accepting => {
            let mut keys = vec![new.clone()];
            keys.extend(s.keys.iter().filter(|k| **k != new).cloned());
            Step::Write {
                keys,
                phase: RpcRotationPhase::Signing,
            }
        }
        RpcRotationPhase::Signing => Step::Write {
            keys: vec![new],
            phase: RpcRotationPhase::Retiring,
        },
        RpcRotationPhase::Retiring | RpcRotationPhase::Complete => Step::Complete,
    }
}

/// The hash the silos' pod templates carry for `keys`, once the fleet has rotated its key
/// (before that, none: pods of a fleet that never rotated are not rolled for it).
pub fn pod_hash(cp: &ControlPlane, keys: Option<&str>) -> Option<String> {
    let rotated = cp
        .status
        .as_ref()
        .is_some_and(|s| s.rpc_secret_rotation.is_some());
    match (rotated, keys) {
        (true, Some(keys)) => Some(build::content_hash(&keys)),
        _ => None,
    }
}

/// The silos (control namespace, and each Region not suspended) whose Deployments do not all
/// run pods with `hash` yet, by name.
pub fn waiting_silos(
    deployments: &Store<DeploymentRecord>,
    regions: &Store<Region>,
    cp: &ControlPlane,
    hash: &str,
) -> Vec<String> {
    let mut silos: Vec<(String, String, &str)> = vec![(
        cp.spec.namespace.clone(),
        format!("control silo ({})", cp.spec.namespace),
        labels::CONTROL_PLANE,
    )];
    for region in regions.state() {
        if region.spec.suspend || region.meta().deletion_timestamp.is_some() {
            continue;
        }
        let name = region.name_any();
        silos.push((
            labels::region_namespace(&name),
            format!("Region {name}"),
            labels::REGION,
        ));
    }
    let deployments = deployments.state();
    let mut by_namespace: HashMap<&str, Vec<&DeploymentRecord>> = HashMap::new();
    for d in &deployments {
        if let Some(ns) = d.meta.namespace.as_deref() {
            by_namespace.entry(ns).or_default().push(d);
        }
    }
    let behind = |d: &DeploymentRecord| {
        d.meta.rpc_secrets_hash.as_deref() != Some(hash) || status::deployment_available(d).is_err()
    };
    // A silo without workloads yet gets the current list when they are created.
    silos
        .into_iter()
        .filter(|(namespace, _, owner_label)| {
            by_namespace.get(namespace.as_str()).is_some_and(|ds| {
                ds.iter()
                    .any(|d| d.meta.owner_label(owner_label).is_some() && behind(d))
            })
        })
        .map(|(_, name, _)| name)
        .collect()
}

/// Why a rotation step failed (retried with the ControlPlane's backoff).
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("writing the RPC key list of {namespace} failed: {source}")]
    Secret {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("recording the RPC key rotation of {name} failed: {source}")]
    Status {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Run one step of `cp`'s rotation; `true` when it waits on the silos (re-check soon).
pub async fn run(cp: &ControlPlane, ctx: &Context) -> Result<bool, RotationError> {
    let namespace = cp.spec.namespace.as_str();
    let Some(list) = ctx.stores.rpc_secret(namespace) else {
        return Ok(false); // created with the control silo; rotations start after that
    };
    let keys = parse_secret_list(&list);
    let status = cp
        .status
        .as_ref()
        .and_then(|s| s.rpc_secret_rotation.as_ref());
    let request = cp.spec.rotate_rpc_secret.as_ref().map(|r| r.token.as_str());
    let waiting = match status {
        Some(st) if st.phase != RpcRotationPhase::Complete => waiting_silos(
            &ctx.stores.deployments,
            &ctx.stores.regions,
            cp,
            &build::content_hash(&list.as_str()),
        ),
        _ => Vec::new(),
    };
    let now = || Time(k8s_openapi::jiff::Timestamp::now());
    let snapshot = Snapshot {
        request,
        status,
        keys: &keys,
        waiting: &waiting,
    };
    match step(&snapshot) {
        Step::Idle => Ok(false),
        Step::Start { token } => {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            let key = hex::encode(bytes);
            let recorded = RpcSecretRotationStatus {
                token,
                key_fingerprint: fingerprint(&key),
                phase: RpcRotationPhase::Accepting,
                started_at: Some(now()),
                finished_at: None,
                message: Some(
                    "the new key is accepted next to the old one; waiting for every silo".into(),
                ),
            };
            // Status first: a restart before the key is written makes another key.
            write_status(ctx, cp, &recorded).await?;
            let mut next = keys.clone();
            next.push(key);
            write_keys(ctx, namespace, &next).await?;
            publish(
                ctx,
                cp,
                "RpcKeyRotationStarted",
                "a new RPC key is accepted by every silo next to the old one",
            )
            .await;
            Ok(true)
        }
        Step::Write { keys: next, phase } => {
            let mut recorded = status.cloned().expect("a rotation under way has a status");
            recorded.phase = phase;
            recorded.message = Some(match phase {
                RpcRotationPhase::Signing => {
                    "every silo accepts the new key; it now signs, the old one is still accepted"
                        .into()
                }
                _ => "every silo signs with the new key; the old one is removed".into(),
            });
            write_keys(ctx, namespace, &next).await?;
            write_status(ctx, cp, &recorded).await?;
            Ok(true)
        }
        Step::Wait { phase } => {
            let mut recorded = status.cloned().expect("a rotation under way has a status");
            let named: Vec<_> = waiting.iter().take(NAMED).cloned().collect();
            let more = waiting.len().saturating_sub(NAMED);
            recorded.phase = phase;
            recorded.message = Some(format!(
                "waiting for {} silo(s) to run the current key list: {}{}",
                waiting.len(),
                named.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ));
            if Some(&recorded) != status {
                write_status(ctx, cp, &recorded).await?;
            }
            Ok(true)
        }
        Step::Complete => {
            let mut recorded = status.cloned().expect("a rotation under way has a status");
            recorded.phase = RpcRotationPhase::Complete;
            recorded.finished_at = Some(now());
            recorded.message = Some("every silo runs with the new key alone".into());
            write_status(ctx, cp, &recorded).await?;
            publish(
                ctx,
                cp,
                "RpcKeyRotated",
                "every silo signs and verifies with the new RPC key alone",
            )
            .await;
            Ok(false)
        }
    }
}

async fn publish(ctx: &Context, cp: &ControlPlane, reason: &str, note: &str) {
    let event = Event {
        type_: EventType::Normal,
        reason: reason.to_owned(),
        note: Some(note.to_owned()),
        action: "RotateRpcSecret".to_owned(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &cp.object_ref(&())).await {
        tracing::warn!(%error, "publishing an RPC key rotation event failed");
    }
    tracing::info!(reason, "{note}");
}

async fn write_keys(ctx: &Context, namespace: &str, keys: &[String]) -> Result<(), RotationError> {
    let api: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(ctx.client.clone(), namespace);
    let patch = json!({"stringData": {labels::RPC_SECRET_KEY: join_secret_list(keys)}});
    api.patch(
        labels::RPC_SECRET,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
    .map_err(|source| RotationError::Secret {
        namespace: namespace.to_owned(),
        source,
    })
}

async fn write_status(
    ctx: &Context,
    cp: &ControlPlane,
    recorded: &RpcSecretRotationStatus,
) -> Result<(), RotationError> {
    let api: Api<ControlPlane> = Api::all(ctx.client.clone());
    let patch = json!({"status": {"rpcSecretRotation": recorded}});
    let name = cp.name_any();
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
    .map_err(|source| RotationError::Status { name, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(token: &str, key: &str, phase: RpcRotationPhase) -> RpcSecretRotationStatus {
        RpcSecretRotationStatus {
            token: token.into(),
            key_fingerprint: fingerprint(key),
            phase,
            started_at: None,
            finished_at: None,
            message: None,
        }
    }

    fn keys(list: &[&str]) -> Vec<String> {
        list.iter().map(|k| (*k).to_owned()).collect()
    }

    fn step_of(
        request: Option<&str>,
        status: Option<&RpcSecretRotationStatus>,
        list: &[&str],
        waiting: &[&str],
    ) -> Step {
        let keys = keys(list);
        let waiting: Vec<String> = waiting.iter().map(|w| (*w).to_owned()).collect();
        step(&Snapshot {
            request,
            status,
            keys: &keys,
            waiting: &waiting,
        })
    }

    #[test]
    fn nothing_asked_is_idle_and_a_new_token_starts() {
        assert_eq!(step_of(None, None, &["old"], &[]), Step::Idle);
        assert_eq!(
            step_of(Some("t1"), None, &["old"], &[]),
            Step::Start { token: "t1".into() }
        );
        let done = status("t1", "new", RpcRotationPhase::Complete);
        assert_eq!(step_of(Some("t1"), Some(&done), &["new"], &[]), Step::Idle);
        assert_eq!(
            step_of(Some("t2"), Some(&done), &["new"], &[]),
            Step::Start { token: "t2".into() }
        );
    }

    #[test]
    fn each_step_waits_for_every_silo_then_moves_the_new_key() {
        let st = status("t1", "new", RpcRotationPhase::Accepting);
        // Accepting: the old key signs; while a silo lags, nothing changes.
        assert_eq!(
            step_of(Some("t1"), Some(&st), &["old", "new"], &["Region de"]),
            Step::Wait {
                phase: RpcRotationPhase::Accepting
            }
        );
        assert_eq!(
            step_of(Some("t1"), Some(&st), &["old", "new"], &[]),
            Step::Write {
                keys: keys(&["new", "old"]),
                phase: RpcRotationPhase::Signing
            }
        );
        // Signing (derived from the list, whatever status says): then the new key alone.
        assert_eq!(
            step_of(
                Some("t1"),
                Some(&st),
                &["new", "old"],
                &["control silo (c)"]
            ),
            Step::Wait {
                phase: RpcRotationPhase::Signing
            }
        );
        assert_eq!(
            step_of(Some("t1"), Some(&st), &["new", "old"], &[]),
            Step::Write {
                keys: keys(&["new"]),
                phase: RpcRotationPhase::Retiring
            }
        );
        assert_eq!(
            step_of(Some("t1"), Some(&st), &["new"], &["Region us"]),
            Step::Wait {
                phase: RpcRotationPhase::Retiring
            }
        );
        assert_eq!(
            step_of(Some("t1"), Some(&st), &["new"], &[]),
            Step::Complete
        );
    }

    #[test]
    fn a_rotation_under_way_finishes_before_a_new_request_and_a_lost_key_is_made_again() {
        let st = status("t1", "new", RpcRotationPhase::Signing);
        assert_eq!(
            step_of(Some("t2"), Some(&st), &["new", "old"], &[]),
            Step::Write {
                keys: keys(&["new"]),
                phase: RpcRotationPhase::Retiring
            }
        );
        // The request was withdrawn: the rotation still completes (the old key must go).
        assert_eq!(
            step_of(None, Some(&st), &["new", "old"], &[]),
            Step::Write {
                keys: keys(&["new"]),
                phase: RpcRotationPhase::Retiring
            }
        );
        // The fingerprint was recorded but the key never written (restart in between).
        let lost = status("t1", "never-written", RpcRotationPhase::Accepting);
        assert_eq!(
            step_of(Some("t1"), Some(&lost), &["old"], &[]),
            Step::Start { token: "t1".into() }
        );
    }

    #[test]
    fn fingerprints_name_keys_without_revealing_them() {
        let f = fingerprint("secret-key");
        assert_eq!(f.len(), 12);
        assert!(!f.contains("secret"));
        assert_ne!(f, fingerprint("other-key"));
    }
}
