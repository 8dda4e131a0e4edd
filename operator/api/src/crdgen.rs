//! Rendering the CRDs as the YAML committed under `crds/`.

use kube::CustomResourceExt;

use crate::{ControlPlane, Region};

/// Why a CRD could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum CrdGenError {
    #[error("cannot render CRD {name} as YAML: {source}")]
    Yaml {
        name: String,
        #[source]
        source: serde_yaml::Error,
    },
}

/// Where the generated CRDs are committed, relative to the repository root.
pub const OUTPUT_DIRS: [&str; 2] = ["crds", "charts/silo-operator/crds"];

/// Every CRD as `(file name, YAML text)`, in a stable order.
pub fn render_all() -> Result<Vec<(String, String)>, CrdGenError> {
    [ControlPlane::crd(), Region::crd()]
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let yaml = serde_yaml::to_string(&crd).map_err(|source| CrdGenError::Yaml {
                name: name.clone(),
                source,
            })?;
            let header = "# Generated from operator/api by `cargo run -p silo-api --bin crdgen`; do not edit.\n";
            Ok((format!("{name}.yaml"), format!("{header}{yaml}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd_yaml(file: &str) -> String {
        render_all()
            .unwrap()
            .into_iter()
            .find(|(name, _)| name == file)
            .map(|(_, yaml)| yaml)
            .unwrap()
    }

    #[test]
    fn region_crd_carries_schema_validation() {
        let yaml = crd_yaml("regions.silo.dev.yaml");
        assert!(yaml.contains("scope: Cluster"));
        assert!(yaml.contains("rule: self == oldSelf"));
        assert!(yaml.contains("maximum: 4095"));
        assert!(yaml.contains("- MULTI_TENANT\n"));
        assert!(yaml.contains("- SINGLE_TENANT\n"));
        assert!(yaml.contains("self.metadata.name.size() <= 40"));
        assert!(yaml.contains("status: {}"), "status subresource enabled");
        for column in ["Category", "Desired", "Running", "Ready", "Age"] {
            assert!(yaml.contains(&format!("name: {column}\n")), "{column}");
        }
    }

    #[test]
    fn region_address_must_be_an_http_url() {
        let yaml = crd_yaml("regions.silo.dev.yaml");
        assert!(
            yaml.contains(r"rule: self.matches('^https?://\\S+$')"),
            "{yaml}"
        );
        assert!(yaml.contains("spec.address must be an http:// or https:// URL"));
    }

    #[test]
    fn controlplane_crd_is_cluster_scoped_with_columns() {
        let yaml = crd_yaml("controlplanes.silo.dev.yaml");
        assert!(yaml.contains("scope: Cluster"));
        for column in ["Version", "Regions-Ready", "Regions"] {
            assert!(yaml.contains(&format!("name: {column}\n")), "{column}");
        }
    }

    #[test]
    fn controlplane_records_retired_and_released_snowflake_ids() {
        let yaml = crd_yaml("controlplanes.silo.dev.yaml");
        let released = yaml
            .split_once("releasedSnowflakeIds:")
            .map(|(_, rest)| rest.split("urls:").next().unwrap_or_default())
            .unwrap_or_default();
        assert!(released.contains("maximum: 4095"), "{released}");
        assert!(released.contains("type: array"), "{released}");
        let retired = yaml
            .split_once("retiredSnowflakeIds:")
            .map(|(_, rest)| rest.split("runningVersion:").next().unwrap_or_default())
            .unwrap_or_default();
        assert!(retired.contains("additionalProperties:"), "{retired}");
        assert!(retired.contains("spec.releasedSnowflakeIds"), "{retired}");
        let spec: crate::ControlPlaneSpec =
            serde_json::from_str(r#"{"version": "1.2.0"}"#).unwrap();
        assert!(spec.released_snowflake_ids.is_empty());
        let status = serde_json::to_value(crate::ControlPlaneStatus::default()).unwrap();
        assert!(
            status.get("retiredSnowflakeIds").is_none(),
            "an empty record is not written, so a status apply never claims it: {status}"
        );
    }

    #[test]
    fn region_spec_defaults_apply_when_fields_are_omitted() {
        let spec: crate::RegionSpec = serde_json::from_str(r#"{"snowflakeId": 7}"#).unwrap();
        assert_eq!(spec.category, crate::Category::MultiTenant);
        assert!(spec.visible);
        assert!(!spec.suspend);
        assert_eq!(spec.version, None);
    }

    #[test]
    fn controlplane_defaults_and_image_reference() {
        let spec: crate::ControlPlaneSpec =
            serde_json::from_str(r#"{"version": "1.2.0"}"#).unwrap();
        assert_eq!(spec.image_for("1.2.0"), "ghcr.io/silo-dev/silo:1.2.0");
        assert_eq!(spec.mode, crate::Mode::Siloed);
        assert_eq!(spec.effective_monolith_region(), None);
        let mono: crate::ControlPlaneSpec =
            serde_json::from_str(r#"{"version": "1", "mode": "MONOLITH"}"#).unwrap();
        assert_eq!(mono.effective_monolith_region(), Some("monolith"));
    }
}
