//! Client keys: `/api/0/projects/{org}/{project}/keys/` and `.../keys/{key_id}/`, where the
//! key id is the public key (as in Sentry).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use silo_store::project_keys::{self, KeyUpdate, ProjectKey, RateLimit};

use super::{ProjectPath, iso};
use crate::error::{ApiResult, AppError};
use crate::extract::{Json, JsonOrEmpty, Path};
use crate::pagination::{Paginated, RequestUrl};
use crate::state::AppState;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyJson {
    pub id: String,
    pub name: String,
    pub label: String,
    pub public: String,
    pub secret: String,
    pub project_id: i64,
    pub is_active: bool,
    pub rate_limit: Option<RateLimitJson>,
    pub dsn: DsnJson,
    pub date_created: String,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct RateLimitJson {
    pub count: i32,
    pub window: i32,
}

#[derive(Debug, Serialize)]
pub struct DsnJson {
    pub public: String,
    pub secret: String,
}

/// `http://<public>[:<secret>]@<relay host>/<project id>` from the relay's public URL.
pub fn dsn(relay_public_url: &str, public: &str, secret: Option<&str>, project_id: i64) -> String {
    let url = relay_public_url.trim_end_matches('/');
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let credentials = match secret {
        Some(secret) => format!("{public}:{secret}"),
        None => public.to_owned(),
    };
    format!("{scheme}://{credentials}@{rest}/{project_id}")
}

impl KeyJson {
    pub fn new(relay_public_url: &str, key: ProjectKey) -> Self {
        let rate_limit = key.rate_limit().map(|r| RateLimitJson {
            count: r.count,
            window: r.window,
        });
        KeyJson {
            dsn: DsnJson {
                public: dsn(relay_public_url, &key.public_key, None, key.project_id),
                secret: dsn(
                    relay_public_url,
                    &key.public_key,
                    Some(&key.secret_key),
                    key.project_id,
                ),
            },
            id: key.public_key.clone(),
            name: key.label.clone(),
            label: key.label,
            public: key.public_key,
            secret: key.secret_key,
            project_id: key.project_id,
            is_active: key.is_active,
            rate_limit,
            date_created: iso(key.date_created),
        }
    }
}

pub async fn list(
    State(state): State<AppState>,
    Path(path): Path<ProjectPath>,
    url: RequestUrl,
) -> ApiResult<impl IntoResponse> {
    let (_, project) = super::project(&state, &path).await?;
    let page =
        project_keys::list_for_project(&state.pool, project.id, &url.page_request()?).await?;
    let relay = state.settings.relay_public_url.clone();
    Ok(Paginated::new(&url, page, |k| KeyJson::new(&relay, k)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyBody {
    pub name: Option<String>,
    pub is_active: Option<bool>,
    /// Absent: unchanged; `null`: no limit; `{"count","window"}`: the limit.
    #[serde(default, deserialize_with = "double_option")]
    pub rate_limit: Option<Option<RateLimitJson>>,
}

/// `Some(None)` for an explicit `null`, `None` (with `#[serde(default)]`) for an absent field.
pub(super) fn double_option<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

fn rate_limit(value: Option<RateLimitJson>) -> ApiResult<Option<RateLimit>> {
    match value {
        None => Ok(None),
        Some(r) if r.count >= 0 && r.window > 0 => Ok(Some(RateLimit {
            count: r.count,
            window: r.window,
        })),
        Some(r) => Err(AppError::BadRequest(format!(
            "rateLimit: count must be >= 0 and window > 0 seconds (got count {}, window {}).",
            r.count, r.window
        ))),
    }
}

pub async fn create(
    State(state): State<AppState>,
    Path(path): Path<ProjectPath>,
    JsonOrEmpty(body): JsonOrEmpty<KeyBody>,
) -> ApiResult<impl IntoResponse> {
    let (_, project) = super::project(&state, &path).await?;
    let label = body
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or("Default");
    let limit = rate_limit(body.rate_limit.flatten())?;
    let key = project_keys::create(&state.pool, project.id, label, limit).await?;
    let key = match body.is_active {
        Some(false) => {
            let update = KeyUpdate {
                is_active: Some(false),
                ..KeyUpdate::default()
            };
            project_keys::update(&state.pool, key.id, &update)
                .await?
                .ok_or(AppError::NotFound)?
        }
        _ => key,
    };
    Ok((
        StatusCode::CREATED,
        axum::Json(KeyJson::new(&state.settings.relay_public_url, key)),
    ))
}

#[derive(Debug, Deserialize)]
pub struct KeyPath {
    pub organization_id_or_slug: String,
    pub project_id_or_slug: String,
    pub key_id: String,
}

async fn find_key(state: &AppState, path: KeyPath) -> ApiResult<ProjectKey> {
    let project_path = ProjectPath {
        organization_id_or_slug: path.organization_id_or_slug,
        project_id_or_slug: path.project_id_or_slug,
    };
    let (_, project) = super::project(state, &project_path).await?;
    project_keys::get(&state.pool, project.id, &path.key_id)
        .await?
        .ok_or(AppError::NotFound)
}

pub async fn detail(
    State(state): State<AppState>,
    Path(path): Path<KeyPath>,
) -> ApiResult<impl IntoResponse> {
    let key = find_key(&state, path).await?;
    Ok(axum::Json(KeyJson::new(
        &state.settings.relay_public_url,
        key,
    )))
}

pub async fn update(
    State(state): State<AppState>,
    Path(path): Path<KeyPath>,
    Json(body): Json<KeyBody>,
) -> ApiResult<impl IntoResponse> {
    let key = find_key(&state, path).await?;
    let update = KeyUpdate {
        label: body
            .name
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty()),
        is_active: body.is_active,
        rate_limit: body.rate_limit.map(rate_limit).transpose()?,
    };
    let key = project_keys::update(&state.pool, key.id, &update)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(axum::Json(KeyJson::new(
        &state.settings.relay_public_url,
        key,
    )))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(path): Path<KeyPath>,
) -> ApiResult<impl IntoResponse> {
    let key = find_key(&state, path).await?;
    project_keys::delete(&state.pool, key.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_shapes() {
        assert_eq!(
            dsn("http://relay.example:3000/", "abc", None, 7),
            "http://abc@relay.example:3000/7"
        );
        assert_eq!(
            dsn("https://relay.example", "abc", Some("def"), 7),
            "https://abc:def@relay.example/7"
        );
    }
}
