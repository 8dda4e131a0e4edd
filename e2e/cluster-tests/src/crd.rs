//! A CustomResourceDefinition with a CEL validation rule (`x-kubernetes-validations`).
//!
//! The API server compiles the rule when the CRD is created and evaluates it on every write:
//! an object breaking it is rejected with the rule's message, a valid one is stored.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};

use crate::wait::{self, Check};
use crate::{Error, StepContext};

pub const GROUP: &str = "e2e.silo.dev";
pub const VERSION: &str = "v1";
/// Message of the CEL rule; the API server must return it when the rule fails.
pub const RULE_MESSAGE: &str = "minReplicas must not exceed maxReplicas";

const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(60);

/// A namespaced `Range<suffix>` kind whose spec must satisfy `minReplicas <= maxReplicas`.
/// `suffix` (lowercase letters and digits) keeps concurrent runs from sharing one CRD.
pub fn build(suffix: &str) -> Result<(CustomResourceDefinition, ApiResource), Error> {
    let plural = format!("ranges{suffix}");
    let kind = format!("Range{suffix}");
    let crd = serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": format!("{plural}.{GROUP}") },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": { "plural": plural, "singular": format!("range{suffix}"), "kind": kind },
            "versions": [{
                "name": VERSION,
                "served": true,
                "storage": true,
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": { "spec": {
                        "type": "object",
                        "required": ["minReplicas", "maxReplicas"],
                        "properties": {
                            "minReplicas": { "type": "integer", "minimum": 0 },
                            "maxReplicas": { "type": "integer", "minimum": 0 }
                        },
                        "x-kubernetes-validations": [{
                            "rule": "self.minReplicas <= self.maxReplicas",
                            "message": RULE_MESSAGE
                        }]
                    }}
                }}
            }]
        }
    });
    let crd: CustomResourceDefinition = serde_json::from_value(crd)
        .map_err(|e| Error::Unexpected(format!("CRD manifest does not deserialize: {e}")))?;
    let gvk = GroupVersionKind::gvk(GROUP, VERSION, &kind);
    Ok((crd, ApiResource::from_gvk_with_plural(&gvk, &plural)))
}

fn object(ar: &ApiResource, name: &str, min: i64, max: i64) -> DynamicObject {
    DynamicObject::new(name, ar).data(serde_json::json!({
        "spec": { "minReplicas": min, "maxReplicas": max }
    }))
}

/// Create the CRD and wait until it is Established and its endpoint serves requests.
async fn establish(
    client: &kube::Client,
    crd: &CustomResourceDefinition,
    ar: &ApiResource,
    ns: &str,
) -> Result<(), Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().unwrap_or_default();
    crds.create(&PostParams::default(), crd)
        .await
        .step(format!("create CRD {name}"))?;
    let objects: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    wait::until(
        &format!("CRD {name} to be Established and served"),
        ESTABLISH_TIMEOUT,
        || async {
            let current = crds.get(&name).await?;
            let established = current
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if !established {
                return Ok(Check::Pending("not Established".to_owned()));
            }
            // The resource handler may lag the condition by a moment.
            match objects.list(&Default::default()).await {
                Ok(_) => Ok(Check::Done(())),
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    Ok(Check::Pending("endpoint 404".to_owned()))
                }
                Err(e) => Err(e),
            }
        },
    )
    .await?;
    Ok(())
}

/// Apply the CRD, see an invalid object rejected with the rule's message and a valid one stored,
/// then delete the CRD again. Returns the rejection message.
pub async fn cel_validation(
    client: &kube::Client,
    ns: &str,
    suffix: &str,
) -> Result<String, Error> {
    let (crd, ar) = build(suffix)?;
    establish(client, &crd, &ar, ns).await?;
    let result = check_rule(client, ns, &ar).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().unwrap_or_default();
    let cleanup = crds
        .delete(&name, &DeleteParams::default())
        .await
        .step(format!("delete CRD {name}"));
    let message = result?;
    cleanup?;
    Ok(message)
}

async fn check_rule(client: &kube::Client, ns: &str, ar: &ApiResource) -> Result<String, Error> {
    let objects: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    let rejected = objects
        .create(&PostParams::default(), &object(ar, "inverted", 5, 2))
        .await;
    let message = match rejected {
        Ok(_) => {
            return Err(Error::Unexpected(
                "an object with minReplicas > maxReplicas was accepted; the CEL rule did not run"
                    .to_owned(),
            ));
        }
        Err(kube::Error::Api(status)) if status.code == 422 => status.message,
        Err(e) => return Err(e).step("create an object breaking the CEL rule"),
    };
    if !message.contains(RULE_MESSAGE) {
        return Err(Error::Unexpected(format!(
            "rejection message {message:?} does not carry the rule's message {RULE_MESSAGE:?}"
        )));
    }
    let stored = objects
        .create(&PostParams::default(), &object(ar, "valid", 1, 3))
        .await
        .step("create an object satisfying the CEL rule")?;
    let spec = stored.data.get("spec").cloned().unwrap_or_default();
    if spec != serde_json::json!({ "minReplicas": 1, "maxReplicas": 3 }) {
        return Err(Error::Unexpected(format!(
            "stored spec differs from the one sent: {spec}"
        )));
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_names_follow_the_suffix_and_carry_the_rule() {
        let (crd, ar) = build("abc12").expect("CRD builds");
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("rangesabc12.e2e.silo.dev")
        );
        assert_eq!(ar.plural, "rangesabc12");
        assert_eq!(ar.kind, "Rangeabc12");
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).expect("schema serializes");
        let rules = &schema["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"];
        assert_eq!(rules[0]["message"], RULE_MESSAGE);
        assert_eq!(rules[0]["rule"], "self.minReplicas <= self.maxReplicas");
    }
}
