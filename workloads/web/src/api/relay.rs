//! `POST /api/0/relays/projectconfigs/?version=3`: the state of DSN keys for this region's
//! relays. The access layer has already verified the relay signature over the body.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::IntoResponse;
use bytes::Bytes;
use silo_protocol::project_config::MAX_KEYS_PER_REQUEST;
use silo_protocol::{
    KeyState, ProjectConfig, ProjectConfigEntry, ProjectConfigRequest, ProjectConfigResponse,
    ProjectOptions, Quota, QuotaScope,
};
use silo_store::project_keys::{self, RelayKey};

use crate::error::{ApiResult, AppError};
use crate::metrics::ConfigLabels;
use crate::pagination::RequestUrl;
use crate::state::AppState;

/// The config relay gets for an enabled key.
pub fn config_for(key: &RelayKey) -> ProjectConfig {
    let quotas = match (key.rate_limit_count, key.rate_limit_window) {
        (Some(count), Some(window)) => vec![Quota {
            id: format!("key-{}", key.key_id),
            categories: Vec::new(),
            scope: QuotaScope::Key,
            scope_id: Some(key.key_id.to_string()),
            limit: u64::try_from(count).unwrap_or(0),
            window: u64::try_from(window).unwrap_or(1),
            reason_code: "key_quota".to_owned(),
        }],
        _ => Vec::new(),
    };
    ProjectConfig {
        project_id: u64::try_from(key.project_id).unwrap_or_default(),
        organization_id: u64::try_from(key.organization_id).unwrap_or_default(),
        slug: key.project_slug.clone(),
        disabled: false,
        public_keys: vec![KeyState {
            public_key: key.public_key.clone(),
            numeric_id: u64::try_from(key.key_id).unwrap_or_default(),
            is_enabled: true,
        }],
        config: ProjectOptions {
            quotas,
            allowed_domains: vec!["*".to_owned()],
        },
        last_change: None,
    }
}

pub async fn project_configs(
    State(state): State<AppState>,
    url: RequestUrl,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    if let Some(version) = url.param("version")
        && !matches!(version, "2" | "3")
    {
        return Err(AppError::BadRequest(format!(
            "Unsupported project config version {version:?}: use version=3."
        )));
    }
    let request: ProjectConfigRequest = serde_json::from_slice(&body).map_err(|e| {
        AppError::BadRequest(format!(
            "Invalid JSON body: {e}. Expected {{\"publicKeys\": [\"<key>\", ...]}}."
        ))
    })?;
    if request.public_keys.len() > MAX_KEYS_PER_REQUEST {
        return Err(AppError::BadRequest(format!(
            "Too many publicKeys: {} (at most {MAX_KEYS_PER_REQUEST} per request).",
            request.public_keys.len()
        )));
    }
    let found = project_keys::lookup_for_relay(&state.pool, &request.public_keys).await?;
    let by_key: BTreeMap<&str, &RelayKey> =
        found.iter().map(|k| (k.public_key.as_str(), k)).collect();
    let mut configs = BTreeMap::new();
    for public_key in &request.public_keys {
        let (entry, label) = match by_key.get(public_key.as_str()) {
            Some(key) if key.is_active && key.organization_status == "active" => (
                ProjectConfigEntry::Enabled(Box::new(config_for(key))),
                "enabled",
            ),
            Some(_) => (ProjectConfigEntry::disabled(), "disabled"),
            None => (ProjectConfigEntry::disabled(), "unknown"),
        };
        state
            .metrics
            .project_configs
            .get_or_create(&ConfigLabels {
                state: label.to_owned(),
            })
            .inc();
        configs.insert(public_key.clone(), entry);
    }
    Ok(axum::Json(ProjectConfigResponse { configs }))
}
