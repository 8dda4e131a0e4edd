//! Alert rules: `/api/0/projects/{org}/{project}/rules/` and their notifications.
//!
//! A rule is `{"name", "kind": "new_issue"|"regression"|"frequency", "threshold",
//! "intervalSeconds", "webhookUrl", "enabled"}`; frequency rules fire when an issue sees more
//! than `threshold` events within `intervalSeconds`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use silo_store::alert_rules::{self, AlertRule, NewRule, RuleKind};
use silo_store::notifications::{self, Notification};

use super::{ProjectPath, iso, required};
use crate::error::{ApiResult, AppError};
use crate::extract::{Json, Path};
use crate::pagination::{Paginated, RequestUrl};
use crate::state::AppState;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleJson {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub threshold: Option<i64>,
    pub interval_seconds: Option<i64>,
    pub webhook_url: String,
    pub enabled: bool,
    pub project_id: String,
    pub date_created: String,
}

impl From<AlertRule> for RuleJson {
    fn from(r: AlertRule) -> Self {
        RuleJson {
            id: r.id.to_string(),
            name: r.name,
            kind: r.kind,
            threshold: r.threshold,
            interval_seconds: r.interval_seconds,
            webhook_url: r.webhook_url,
            enabled: r.enabled,
            project_id: r.project_id.to_string(),
            date_created: iso(r.date_created),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationJson {
    pub id: String,
    pub rule_id: String,
    pub issue_id: String,
    pub event_id: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub date_created: String,
    pub date_delivered: Option<String>,
}

impl From<Notification> for NotificationJson {
    fn from(n: Notification) -> Self {
        NotificationJson {
            id: n.id.to_string(),
            rule_id: n.rule_id.to_string(),
            issue_id: n.group_id.to_string(),
            event_id: n.event_id.simple().to_string(),
            status: n.status,
            attempts: n.attempts,
            last_error: n.last_error,
            date_created: iso(n.date_created),
            date_delivered: n.date_delivered.map(iso),
        }
    }
}

pub async fn list(
    State(state): State<AppState>,
    Path(path): Path<ProjectPath>,
    url: RequestUrl,
) -> ApiResult<impl IntoResponse> {
    let (_, project) = super::project(&state, &path).await?;
    let page = alert_rules::list_for_project(&state.pool, project.id, &url.page_request()?).await?;
    Ok(Paginated::new(&url, page, RuleJson::from))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateRule {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub threshold: Option<i64>,
    pub interval_seconds: Option<i64>,
    pub webhook_url: Option<String>,
    pub enabled: Option<bool>,
}

fn validate(project_id: i64, body: CreateRule) -> ApiResult<NewRule> {
    let name = required("name", body.name.as_deref())?;
    let kind_raw = required("kind", body.kind.as_deref())?;
    let kind = RuleKind::parse(&kind_raw).ok_or_else(|| {
        AppError::BadRequest(format!(
            "kind: {kind_raw:?} is not one of new_issue, regression, frequency."
        ))
    })?;
    let webhook_url = required("webhookUrl", body.webhook_url.as_deref())?;
    if !(webhook_url.starts_with("http://") || webhook_url.starts_with("https://")) {
        return Err(AppError::BadRequest(format!(
            "webhookUrl: {webhook_url:?} must be an http:// or https:// URL."
        )));
    }
    let positive = |field: &str, v: Option<i64>| match v {
        Some(n) if n <= 0 => Err(AppError::BadRequest(format!(
            "{field}: must be a positive number."
        ))),
        other => Ok(other),
    };
    let threshold = positive("threshold", body.threshold)?;
    let interval_seconds = positive("intervalSeconds", body.interval_seconds)?;
    if kind == RuleKind::Frequency && (threshold.is_none() || interval_seconds.is_none()) {
        return Err(AppError::BadRequest(
            "frequency rules need threshold and intervalSeconds.".to_owned(),
        ));
    }
    Ok(NewRule {
        project_id,
        name,
        kind,
        threshold,
        interval_seconds,
        webhook_url,
        enabled: body.enabled.unwrap_or(true),
    })
}

pub async fn create(
    State(state): State<AppState>,
    Path(path): Path<ProjectPath>,
    Json(body): Json<CreateRule>,
) -> ApiResult<impl IntoResponse> {
    let (_, project) = super::project(&state, &path).await?;
    let rule = alert_rules::create(&state.pool, &validate(project.id, body)?).await?;
    Ok((StatusCode::CREATED, axum::Json(RuleJson::from(rule))))
}

#[derive(Debug, Deserialize)]
pub struct RulePath {
    pub organization_id_or_slug: String,
    pub project_id_or_slug: String,
    pub rule_id: i64,
}

async fn find(state: &AppState, path: RulePath) -> ApiResult<AlertRule> {
    let project_path = ProjectPath {
        organization_id_or_slug: path.organization_id_or_slug,
        project_id_or_slug: path.project_id_or_slug,
    };
    let (_, project) = super::project(state, &project_path).await?;
    alert_rules::get(&state.pool, project.id, path.rule_id)
        .await?
        .ok_or(AppError::NotFound)
}

pub async fn detail(
    State(state): State<AppState>,
    Path(path): Path<RulePath>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(RuleJson::from(find(&state, path).await?)))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(path): Path<RulePath>,
) -> ApiResult<impl IntoResponse> {
    let rule = find(&state, path).await?;
    alert_rules::delete(&state.pool, rule.project_id, rule.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn notifications(
    State(state): State<AppState>,
    Path(path): Path<RulePath>,
    url: RequestUrl,
) -> ApiResult<impl IntoResponse> {
    let rule = find(&state, path).await?;
    let page = notifications::list_for_rule(&state.pool, rule.id, &url.page_request()?).await?;
    Ok(Paginated::new(&url, page, NotificationJson::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(kind: &str, threshold: Option<i64>, url: &str) -> CreateRule {
        CreateRule {
            name: Some("r".into()),
            kind: Some(kind.into()),
            threshold,
            interval_seconds: threshold.map(|_| 60),
            webhook_url: Some(url.into()),
            enabled: None,
        }
    }

    #[test]
    fn validation() {
        assert!(validate(1, body("new_issue", None, "http://hook")).is_ok());
        assert!(validate(1, body("frequency", Some(10), "https://hook")).is_ok());
        assert!(validate(1, body("frequency", None, "http://hook")).is_err());
        assert!(validate(1, body("sometimes", None, "http://hook")).is_err());
        assert!(validate(1, body("new_issue", None, "ftp://hook")).is_err());
        assert!(validate(1, body("frequency", Some(0), "http://hook")).is_err());
    }
}
