//! Drift of a managed child, judged from its content as the API server reports it.
//!
//! ```text
//!  watch event (full metadata) ── fields_digest(managedFields) ──► the child's store record
//!  our server-side apply ── response's managedFields ──► Applied { hash, fields } (Tracker)
//!  needs_apply(desired hash, Observed, Applied) ──► write or skip
//! ```
//!
//! `managedFields` say who set which field: any change by another writer moves the fields it
//! changed to its own entry (or removes them from ours), so a digest of the entries that
//! matter changes with every edit of what the operator owns, and of nothing else (a status
//! update, the Deployment controller's revision annotation). `resourceVersion` is never
//! compared: Kubernetes defines it as opaque.
//!
//! After a restart nothing is recorded: the stamped desired hash decides, unless another
//! writer owns content fields (a `kubectl edit`, `scale` or patch made while the operator was
//! down), which is drift.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use sha2::{Digest, Sha256};

use crate::build::ChildKey;
use crate::labels;

/// How long a store that still shows an object's content from before our write counts as
/// lagging rather than drifted (the watch event of our write is on its way).
pub const STORE_LAG: Duration = Duration::from_secs(30);

/// What the store shows of a child.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The desired-object hash stamped by the operator's last write.
    pub hash: Option<String>,
    /// Digest of the ownership of its fields.
    pub fields: String,
    /// Another writer owns content fields (spec, data, or labels/annotations the operator sets).
    pub foreign: bool,
}

/// What the operator itself last wrote to a child.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub hash: String,
    /// `fields` of the object as the write's response showed it.
    pub fields: String,
    pub at: Instant,
    /// A watch event has shown the object as written (the store caught up).
    pub seen: bool,
}

/// Whether a desired child needs a write, given what the store shows and what was last written.
///
/// - unknown to the store: write, unless this hash was just written (the store lags; a
///   deletion clears the record, so a deleted child is always re-created);
/// - written by us at this hash: write if its fields changed since, unless the store has not
///   yet shown our write (for at most [`STORE_LAG`]);
/// - never written by this process: write unless the stamped hash matches and no other writer
///   owns content fields.
pub fn needs_apply(
    desired_hash: &str,
    observed: Option<&Observed>,
    applied: Option<&Applied>,
    now: Instant,
) -> bool {
    match (observed, applied) {
        (None, Some(a)) => a.hash != desired_hash,
        (None, None) => true,
        (Some(o), Some(a)) if a.hash == desired_hash => {
            let lagging = !a.seen && now.duration_since(a.at) < STORE_LAG;
            o.fields != a.fields && !lagging
        }
        (Some(_), Some(_)) => true,
        (Some(o), None) => o.foreign || o.hash.as_deref() != Some(desired_hash),
    }
}

/// The digest of the entries that matter (the operator's own, and other writers' entries on
/// content fields) and whether there is one of the latter. Timestamps are left out.
pub fn fields_digest(entries: &[ManagedFieldsEntry]) -> (String, bool) {
    let mut parts: Vec<String> = Vec::new();
    let mut foreign = false;
    for entry in entries {
        let subresource = entry.subresource.as_deref().unwrap_or_default();
        if subresource == "status" {
            continue;
        }
        let fields = entry.fields_v1.as_ref().map(|f| &f.0);
        let ours =
            entry.manager.as_deref() == Some(labels::FIELD_MANAGER) && subresource.is_empty();
        if !(ours || subresource == "scale" || fields.is_some_and(touches_content)) {
            continue;
        }
        foreign |= !ours;
        parts.push(
            serde_json::json!([entry.manager, entry.operation, subresource, fields]).to_string(),
        );
    }
    parts.sort();
    let digest = hex::encode(&Sha256::digest(parts.join("\n").as_bytes())[..12]);
    (digest, foreign)
}

/// Whether a `FieldsV1` set holds anything beyond metadata, or labels/annotations of the
/// operator's prefixes.
fn touches_content(fields: &serde_json::Value) -> bool {
    let Some(top) = fields.as_object() else {
        return false;
    };
    top.iter().any(|(key, value)| {
        if key != "f:metadata" {
            return true;
        }
        ["f:labels", "f:annotations"].iter().any(|map| {
            value
                .get(map)
                .and_then(|m| m.as_object())
                .is_some_and(|m| m.keys().any(|k| is_operator_key(k)))
        })
    })
}

fn is_operator_key(field: &str) -> bool {
    let key = field.strip_prefix("f:").unwrap_or(field);
    key.starts_with("silo.dev/") || key.starts_with("app.kubernetes.io/")
}

/// Record of the operator's own writes, so unchanged children are skipped without a request.
#[derive(Debug, Default)]
pub struct Tracker {
    applied: Mutex<HashMap<ChildKey, Applied>>,
}

impl Tracker {
    pub fn get(&self, key: &ChildKey) -> Option<Applied> {
        self.applied.lock().ok()?.get(key).cloned()
    }

    pub fn record(&self, key: ChildKey, applied: Applied) {
        if let Ok(mut map) = self.applied.lock() {
            map.insert(key, applied);
        }
    }

    pub fn forget(&self, key: &ChildKey) {
        if let Ok(mut map) = self.applied.lock() {
            map.remove(key);
        }
    }

    /// A watch event showed `key` with `fields`: if that is our last write, the store has
    /// caught up with it.
    pub fn saw(&self, key: &ChildKey, fields: &str) {
        if let Ok(mut map) = self.applied.lock()
            && let Some(applied) = map.get_mut(key)
            && applied.fields == fields
        {
            applied.seen = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;

    use super::*;

    fn entry(
        manager: &str,
        operation: &str,
        subresource: Option<&str>,
        fields: serde_json::Value,
    ) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.to_owned()),
            operation: Some(operation.to_owned()),
            subresource: subresource.map(str::to_owned),
            fields_v1: Some(FieldsV1(fields)),
            fields_type: Some("FieldsV1".to_owned()),
            api_version: Some("apps/v1".to_owned()),
            time: None,
        }
    }

    fn ours() -> ManagedFieldsEntry {
        entry(
            labels::FIELD_MANAGER,
            "Apply",
            None,
            serde_json::json!({"f:metadata": {"f:labels": {"f:silo.dev/region": {}}}, "f:spec": {"f:replicas": {}}}),
        )
    }

    fn observed(hash: &str, fields: &str) -> Observed {
        Observed {
            hash: Some(hash.to_owned()),
            fields: fields.to_owned(),
            foreign: false,
        }
    }

    fn applied(hash: &str, fields: &str, seen: bool, at: Instant) -> Applied {
        Applied {
            hash: hash.to_owned(),
            fields: fields.to_owned(),
            at,
            seen,
        }
    }

    #[test]
    fn missing_child_is_written_unless_just_written() {
        let now = Instant::now();
        assert!(needs_apply("h", None, None, now));
        assert!(!needs_apply(
            "h",
            None,
            Some(&applied("h", "f", false, now)),
            now
        ));
        assert!(needs_apply(
            "h2",
            None,
            Some(&applied("h", "f", false, now)),
            now
        ));
    }

    #[test]
    fn unchanged_child_is_skipped_and_store_lag_is_tolerated_for_a_while() {
        let now = Instant::now();
        let written = applied("h", "f1", true, now);
        assert!(!needs_apply(
            "h",
            Some(&observed("h", "f1")),
            Some(&written),
            now
        ));
        // The store still shows the object from before our write.
        let fresh = applied("h", "f1", false, now);
        assert!(!needs_apply(
            "h",
            Some(&observed("old", "f0")),
            Some(&fresh),
            now
        ));
        // ... but not forever (the event of our write can be lost in a relist).
        let later = now + STORE_LAG;
        assert!(needs_apply(
            "h",
            Some(&observed("old", "f0")),
            Some(&fresh),
            later
        ));
    }

    #[test]
    fn changes_by_others_and_new_specs_are_written() {
        let now = Instant::now();
        // Someone edited the object after the store had shown our write.
        let written = applied("h", "f1", true, now);
        assert!(needs_apply(
            "h",
            Some(&observed("h", "f2")),
            Some(&written),
            now
        ));
        // Someone reverted it to what it was before our write.
        assert!(needs_apply(
            "h",
            Some(&observed("h", "f0")),
            Some(&written),
            now
        ));
        // The desired spec changed.
        assert!(needs_apply(
            "new",
            Some(&observed("h", "f1")),
            Some(&written),
            now
        ));
    }

    #[test]
    fn after_restart_the_stamp_and_other_writers_decide() {
        let now = Instant::now();
        assert!(!needs_apply("h", Some(&observed("h", "f")), None, now));
        assert!(needs_apply("h", Some(&observed("other", "f")), None, now));
        let edited = Observed {
            foreign: true,
            ..observed("h", "f")
        };
        assert!(needs_apply("h", Some(&edited), None, now));
        let unstamped = Observed {
            hash: None,
            ..observed("h", "f")
        };
        assert!(needs_apply("h", Some(&unstamped), None, now));
    }

    #[test]
    fn digest_follows_edits_of_owned_fields_and_ignores_status_and_timestamps() {
        let (base, foreign) = fields_digest(&[ours()]);
        assert!(!foreign);
        // Status updates and the Deployment controller's revision annotation are not drift.
        let status = entry(
            "kube-controller-manager",
            "Update",
            Some("status"),
            serde_json::json!({"f:status": {}}),
        );
        let revision = entry(
            "kube-controller-manager",
            "Update",
            None,
            serde_json::json!({"f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}}}),
        );
        let mut timed = ours();
        timed.time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        assert_eq!(
            fields_digest(&[timed, status, revision]),
            (base.clone(), false)
        );

        // kubectl scale / edit / a patch of a label the operator sets: another writer.
        for edit in [
            entry(
                "kubectl",
                "Update",
                Some("scale"),
                serde_json::json!({"f:spec": {"f:replicas": {}}}),
            ),
            entry(
                "kubectl-edit",
                "Update",
                None,
                serde_json::json!({"f:spec": {"f:template": {}}}),
            ),
            entry(
                "kubectl-label",
                "Update",
                None,
                serde_json::json!({"f:metadata": {"f:labels": {"f:silo.dev/region": {}}}}),
            ),
        ] {
            let (digest, foreign) = fields_digest(&[ours(), edit.clone()]);
            assert!(foreign, "{edit:?}");
            assert_ne!(digest, base, "{edit:?}");
        }

        // A field removed from the operator's set (deleted by someone) changes the digest too.
        let shrunk = entry(
            labels::FIELD_MANAGER,
            "Apply",
            None,
            serde_json::json!({"f:metadata": {"f:labels": {"f:silo.dev/region": {}}}}),
        );
        assert_ne!(fields_digest(&[shrunk]).0, base);
    }

    #[test]
    fn a_record_keeps_the_digest_of_the_managed_fields() {
        let meta = kube::core::ObjectMeta {
            managed_fields: Some(vec![
                ours(),
                entry(
                    "kubectl-edit",
                    "Update",
                    None,
                    serde_json::json!({"f:data": {"f:x": {}}}),
                ),
            ]),
            ..Default::default()
        };
        let observed = crate::records::Meta::of(meta).observed();
        assert!(observed.foreign);
        assert_eq!(observed.fields.len(), 24);
        let tracker = Tracker::default();
        let key = ChildKey {
            kind: crate::build::ChildKind::ConfigMap,
            namespace: "region-us".to_owned(),
            name: "directory".to_owned(),
        };
        tracker.record(
            key.clone(),
            applied("h", &observed.fields, false, Instant::now()),
        );
        tracker.saw(&key, "other");
        assert!(!tracker.get(&key).unwrap().seen);
        tracker.saw(&key, &observed.fields);
        assert!(tracker.get(&key).unwrap().seen);
    }
}
