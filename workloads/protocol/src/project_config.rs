//! `POST /api/0/relays/projectconfigs/?version=3`: relay asks web for the state of DSN keys.
//!
//! Request `{"publicKeys": ["<key>", ...]}`; response `{"configs": {"<key>": <config>}}` where a
//! config is either a full [`ProjectConfig`] or `{"disabled": true}` (unknown or disabled key).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Path of the project-config endpoint on web.
pub const PATH: &str = "/api/0/relays/projectconfigs/";
/// Most keys relay asks for in one request.
pub const MAX_KEYS_PER_REQUEST: usize = 100;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectConfigRequest {
    pub public_keys: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProjectConfigResponse {
    pub configs: BTreeMap<String, ProjectConfigEntry>,
}

/// One key's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProjectConfigEntry {
    Enabled(Box<ProjectConfig>),
    Disabled(DisabledConfig),
}

impl ProjectConfigEntry {
    pub fn disabled() -> Self {
        Self::Disabled(DisabledConfig { disabled: true })
    }
}

/// `{"disabled": true}`: the key is unknown or switched off; relay rejects its events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisabledConfig {
    pub disabled: bool,
}

/// The state of a project as relay needs it (Sentry's `ProjectState` field names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectConfig {
    pub project_id: u64,
    pub organization_id: u64,
    pub slug: String,
    /// Always `false` here; disabled keys are answered with [`DisabledConfig`].
    #[serde(default)]
    pub disabled: bool,
    pub public_keys: Vec<KeyState>,
    pub config: ProjectOptions,
    /// RFC 3339 time of the last change, for cache invalidation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyState {
    pub public_key: String,
    pub numeric_id: u64,
    pub is_enabled: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectOptions {
    #[serde(default)]
    pub quotas: Vec<Quota>,
    #[serde(default)]
    pub allowed_domains: Vec<String>,
}

/// What a quota counts per window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuotaScope {
    Organization,
    Project,
    Key,
}

impl QuotaScope {
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaScope::Organization => "organization",
            QuotaScope::Project => "project",
            QuotaScope::Key => "key",
        }
    }
}

/// A fixed-window rate limit: at most `limit` items of `categories` per `window` seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    pub id: String,
    /// Data categories counted (`error`, `default`, ...); empty means all.
    #[serde(default)]
    pub categories: Vec<String>,
    pub scope: QuotaScope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_id: Option<String>,
    pub limit: u64,
    pub window: u64,
    pub reason_code: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_and_enabled_entries_parse_from_sentry_shapes() {
        let json = r#"{"configs":{
            "abc":{"disabled":true},
            "def":{"projectId":7,"organizationId":1,"slug":"web","disabled":false,
                   "publicKeys":[{"publicKey":"def","numericId":3,"isEnabled":true}],
                   "config":{"quotas":[{"id":"key-3","categories":["error"],"scope":"key",
                   "scopeId":"3","limit":10,"window":60,"reasonCode":"key_quota"}]}}}}"#;
        let resp: ProjectConfigResponse = serde_json::from_str(json).unwrap();
        assert_eq!(resp.configs["abc"], ProjectConfigEntry::disabled());
        let ProjectConfigEntry::Enabled(cfg) = &resp.configs["def"] else {
            panic!("def should be enabled");
        };
        assert_eq!(cfg.project_id, 7);
        assert_eq!(cfg.config.quotas[0].limit, 10);
        assert_eq!(cfg.config.quotas[0].scope, QuotaScope::Key);
        let back = serde_json::to_value(&resp).unwrap();
        assert_eq!(back["configs"]["def"]["publicKeys"][0]["numericId"], 3);
        assert_eq!(
            back["configs"]["abc"],
            serde_json::json!({"disabled": true})
        );
    }

    #[test]
    fn request_uses_camel_case() {
        let req = ProjectConfigRequest {
            public_keys: vec!["k".into()],
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"publicKeys":["k"]}"#
        );
    }
}
