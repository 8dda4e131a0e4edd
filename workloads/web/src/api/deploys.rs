//! Deploys of a release (`/api/0/organizations/{org}/releases/{version}/deploys/`, what
//! `sentry-cli releases deploys new|list` send), and the commit and repository lists, which
//! are always empty (no repository integration) but answer Sentry's shapes so clients work.
//!
//! ```text
//!  POST {environment, name?, url?, dateStarted?, dateFinished?} ─► 201 deploy
//!       (the release's deployCount and lastDeploy follow)
//!  GET deploys ─► latest finished first, Link header
//!  GET releases/{version}/commits/, GET repos/ ─► [] (404 for an unknown release or org)
//! ```

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use silo_store::deploys::{self, Deploy, NewDeploy};
use silo_store::{Cursor, Page};

use super::releases::{ReleasePath, find, time};
use super::{OrgPath, iso, required};
use crate::error::{ApiResult, AppError};
use crate::extract::{Json, Path};
use crate::pagination::{Paginated, RequestUrl};
use crate::state::AppState;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployJson {
    pub id: String,
    pub environment: String,
    pub name: Option<String>,
    pub url: Option<String>,
    pub date_started: Option<String>,
    pub date_finished: String,
}

impl DeployJson {
    pub fn new(deploy: Deploy) -> Self {
        DeployJson {
            id: deploy.id.to_string(),
            environment: deploy.environment,
            name: deploy.name,
            url: deploy.url,
            date_started: deploy.date_started.map(iso),
            date_finished: iso(deploy.date_finished),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateDeploy {
    pub environment: Option<String>,
    pub name: Option<String>,
    pub url: Option<String>,
    pub date_started: Option<String>,
    pub date_finished: Option<String>,
}

/// Sentry's environment name rule: 1 to 64 characters, no slash or line break.
fn validate_environment(name: &str) -> ApiResult<()> {
    if name.len() > deploys::MAX_ENVIRONMENT_LEN
        || name
            .chars()
            .any(|c| matches!(c, '/' | '\n' | '\r' | '\x0c'))
    {
        return Err(AppError::BadRequest(format!(
            "environment: {name:?} is not a valid environment name: use at most {} characters \
             without slashes or line breaks.",
            deploys::MAX_ENVIRONMENT_LEN
        )));
    }
    Ok(())
}

impl CreateDeploy {
    fn deploy(&self) -> ApiResult<NewDeploy> {
        let environment = required("environment", self.environment.as_deref())?;
        validate_environment(&environment)?;
        let text = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let date_started = time("dateStarted", self.date_started.as_deref())?;
        let date_finished = time("dateFinished", self.date_finished.as_deref())?;
        if let (Some(started), Some(finished)) = (date_started, date_finished)
            && started > finished
        {
            return Err(AppError::BadRequest(
                "dateStarted: must not be after dateFinished.".to_owned(),
            ));
        }
        Ok(NewDeploy {
            environment,
            name: text(&self.name),
            url: text(&self.url),
            date_started,
            date_finished,
        })
    }
}

pub async fn list(
    State(state): State<AppState>,
    Path(path): Path<ReleasePath>,
    url: RequestUrl,
) -> ApiResult<impl IntoResponse> {
    let (_, release) = find(&state, &path).await?;
    let page = deploys::list(&state.pool, release.id, &url.page_request()?).await?;
    Ok(Paginated::new(&url, page, DeployJson::new))
}

pub async fn create(
    State(state): State<AppState>,
    Path(path): Path<ReleasePath>,
    Json(body): Json<CreateDeploy>,
) -> ApiResult<impl IntoResponse> {
    let new = body.deploy()?;
    let (org, release) = find(&state, &path).await?;
    let deploy = deploys::create(&state.pool, release.id, &new).await?;
    tracing::info!(org = %org.slug, version = %release.version, environment = %deploy.environment, "deploy recorded");
    Ok((StatusCode::CREATED, axum::Json(DeployJson::new(deploy))))
}

/// An empty list with Sentry's `Link` header (no further pages).
fn empty(url: &RequestUrl) -> ApiResult<Paginated<Value>> {
    url.page_request()?;
    let at = |is_prev| Cursor {
        value: 0,
        id: 0,
        is_prev,
    };
    let page: Page<Value> = Page {
        items: Vec::new(),
        next: (at(false), false),
        prev: (at(true), false),
    };
    Ok(Paginated::new(url, page, |v| v))
}

/// `GET .../releases/{version}/commits/`: no commits are recorded.
pub async fn commits(
    State(state): State<AppState>,
    Path(path): Path<ReleasePath>,
    url: RequestUrl,
) -> ApiResult<impl IntoResponse> {
    find(&state, &path).await?;
    empty(&url)
}

/// `GET /api/0/organizations/{org}/repos/`: no repositories are connected.
pub async fn repos(
    State(state): State<AppState>,
    Path(path): Path<OrgPath>,
    url: RequestUrl,
) -> ApiResult<impl IntoResponse> {
    super::organization(&state, &path.organization_id_or_slug).await?;
    empty(&url)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deploy(body: Value) -> ApiResult<NewDeploy> {
        serde_json::from_value::<CreateDeploy>(body)
            .unwrap()
            .deploy()
    }

    #[test]
    fn deploy_bodies() {
        let ok = deploy(json!({"environment": "prod", "name": " ", "url": "https://x"})).unwrap();
        assert_eq!(ok.environment, "prod");
        assert_eq!(ok.name, None);
        assert_eq!(ok.url.as_deref(), Some("https://x"));
        for (body, needle) in [
            (json!({}), "environment: This field is required"),
            (json!({"environment": "a/b"}), "a/b"),
            (
                json!({"environment": "prod", "dateStarted": "2024-01-02T00:00:00Z",
                       "dateFinished": "2024-01-01T00:00:00Z"}),
                "dateStarted",
            ),
            (
                json!({"environment": "prod", "dateFinished": "now"}),
                "dateFinished",
            ),
        ] {
            let err = deploy(body.clone()).unwrap_err().to_string();
            assert!(err.contains(needle), "{body}: {err}");
        }
    }
}
