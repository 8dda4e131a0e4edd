//! One entry of the region directory, and the rules for region names.

use serde::{Deserialize, Serialize};

/// Longest region name: `region-<name>` (and names derived from it) must stay a DNS label.
pub const MAX_REGION_NAME_LEN: usize = 40;
/// Snowflake ids are 12 bits wide.
pub const MAX_SNOWFLAKE_ID: u16 = 4095;

/// Who a region serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RegionCategory {
    MultiTenant,
    SingleTenant,
}

impl RegionCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            RegionCategory::MultiTenant => "MULTI_TENANT",
            RegionCategory::SingleTenant => "SINGLE_TENANT",
        }
    }
}

/// A region as every pod sees it in `SENTRY_REGION_CONFIG`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionInfo {
    pub name: String,
    pub snowflake_id: u16,
    /// Internal base URL of the region's web service, e.g. `http://web.region-de.svc:8000`.
    pub address: String,
    pub category: RegionCategory,
    /// Whether users may pick this region for new organizations.
    #[serde(default = "default_visible")]
    pub visible: bool,
}

fn default_visible() -> bool {
    true
}

/// Why a region name is not usable.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegionNameError {
    #[error("region name is empty")]
    Empty,
    #[error(
        "region name {name:?} is {len} characters; at most {MAX_REGION_NAME_LEN} are allowed so that `region-<name>` stays a valid namespace"
    )]
    TooLong { name: String, len: usize },
    #[error(
        "region name {0:?} must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit"
    )]
    NotDnsLabel(String),
}

/// Check that `name` is a lowercase DNS label of at most [`MAX_REGION_NAME_LEN`] characters.
pub fn validate_region_name(name: &str) -> Result<(), RegionNameError> {
    if name.is_empty() {
        return Err(RegionNameError::Empty);
    }
    if name.len() > MAX_REGION_NAME_LEN {
        return Err(RegionNameError::TooLong {
            name: name.to_owned(),
            len: name.len(),
        });
    }
    let bytes = name.as_bytes();
    let inner_ok = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    let edge_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !inner_ok || !edge_ok(bytes[0]) || !edge_ok(bytes[bytes.len() - 1]) {
        return Err(RegionNameError::NotDnsLabel(name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["de", "us-east-1", "a", "0eu"] {
            assert_eq!(validate_region_name(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_bad_names_with_reason() {
        assert_eq!(validate_region_name(""), Err(RegionNameError::Empty));
        assert!(matches!(
            validate_region_name("De"),
            Err(RegionNameError::NotDnsLabel(_))
        ));
        assert!(matches!(
            validate_region_name("-de"),
            Err(RegionNameError::NotDnsLabel(_))
        ));
        assert!(matches!(
            validate_region_name("de_1"),
            Err(RegionNameError::NotDnsLabel(_))
        ));
        let long = "a".repeat(MAX_REGION_NAME_LEN + 1);
        assert!(matches!(
            validate_region_name(&long),
            Err(RegionNameError::TooLong { .. })
        ));
    }

    #[test]
    fn serializes_with_sentry_field_names() {
        let region = RegionInfo {
            name: "de".into(),
            snowflake_id: 2,
            address: "http://web.region-de.svc:8000".into(),
            category: RegionCategory::MultiTenant,
            visible: true,
        };
        let json = serde_json::to_string(&region).unwrap();
        assert_eq!(
            json,
            r#"{"name":"de","snowflake_id":2,"address":"http://web.region-de.svc:8000","category":"MULTI_TENANT","visible":true}"#
        );
    }
}
