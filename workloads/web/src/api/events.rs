//! Events: an issue's events, one event by id.

use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use silo_store::events::{self, Event};
use silo_store::groups::Condition;
use uuid::Uuid;

use super::{ProjectPath, iso};
use crate::error::{ApiResult, AppError};
use crate::extract::Path;
use crate::pagination::{Paginated, RequestUrl};
use crate::state::AppState;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventJson {
    /// The event id as 32 hex characters.
    pub id: String,
    #[serde(rename = "eventID")]
    pub event_id: String,
    #[serde(rename = "groupID")]
    pub group_id: String,
    #[serde(rename = "projectID")]
    pub project_id: String,
    pub title: String,
    pub message: String,
    pub culprit: String,
    pub platform: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub level: String,
    pub date_created: String,
    pub date_received: String,
    pub tags: Vec<Tag>,
    pub user: Option<Value>,
    pub environment: Option<String>,
    pub release: Option<String>,
    /// Detail only: the interfaces of the event (`exception`, `message`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contexts: Option<Value>,
    /// Detail only: the event's `extra` data, which Sentry's event API calls `context`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdk: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprints: Option<Value>,
}

#[derive(Debug, Serialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// Tags from the payload: Sentry accepts `{"k": "v"}` and `[["k", "v"]]`.
fn tags(data: &Value, level: &str) -> Vec<Tag> {
    // The consumers store tags as pairs with environment, release, ... promoted; `level` is
    // added here, as Sentry lists it.
    let mut out = vec![Tag {
        key: "level".into(),
        value: level.into(),
    }];
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match data.get("tags") {
        Some(Value::Object(map)) => out.extend(map.iter().map(|(k, v)| Tag {
            key: k.clone(),
            value: text(v),
        })),
        Some(Value::Array(pairs)) => out.extend(pairs.iter().filter_map(|p| {
            let pair = p.as_array()?;
            Some(Tag {
                key: pair.first().map(text)?,
                value: pair.get(1).map(text)?,
            })
        })),
        _ => {}
    }
    out
}

fn entries(data: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(exception) = data.get("exception") {
        let values = exception.get("values").unwrap_or(exception);
        out.push(serde_json::json!({"type": "exception", "data": {"values": values}}));
    }
    let message = data
        .get("logentry")
        .or_else(|| data.get("message"))
        .cloned();
    if let Some(message) = message {
        let formatted = match &message {
            Value::String(s) => Value::String(s.clone()),
            Value::Object(m) => m
                .get("formatted")
                .or_else(|| m.get("message"))
                .cloned()
                .unwrap_or(Value::Null),
            _ => Value::Null,
        };
        out.push(serde_json::json!({"type": "message", "data": {"formatted": formatted}}));
    }
    if let Some(breadcrumbs) = data.get("breadcrumbs") {
        let values = breadcrumbs.get("values").unwrap_or(breadcrumbs);
        out.push(serde_json::json!({"type": "breadcrumbs", "data": {"values": values}}));
    }
    if let Some(request) = data.get("request") {
        out.push(serde_json::json!({"type": "request", "data": request}));
    }
    out
}

impl EventJson {
    pub fn new(e: Event, detail: bool) -> Self {
        let hex = e.event_id.simple().to_string();
        let kind = if e.data.get("exception").is_some() {
            "error"
        } else {
            "default"
        };
        EventJson {
            id: hex.clone(),
            event_id: hex,
            group_id: e.group_id.to_string(),
            project_id: e.project_id.to_string(),
            title: e.title,
            message: e.message,
            culprit: e.culprit,
            platform: e.platform,
            kind,
            tags: tags(&e.data, &e.level),
            level: e.level,
            date_created: iso(e.timestamp),
            date_received: iso(e.received),
            user: e.data.get("user").cloned(),
            environment: e.environment,
            release: e.release,
            entries: detail.then(|| entries(&e.data)),
            contexts: detail.then(|| e.data.get("contexts").cloned().unwrap_or(Value::Null)),
            context: detail.then(|| {
                e.data
                    .get("extra")
                    .filter(|v| v.is_object())
                    .cloned()
                    .unwrap_or_else(|| serde_json::json!({}))
            }),
            sdk: detail.then(|| e.data.get("sdk").cloned().unwrap_or(Value::Null)),
            fingerprints: detail.then(|| e.data.get("fingerprint").cloned().unwrap_or(Value::Null)),
        }
    }
}

fn parse_event_id(raw: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| {
        AppError::BadRequest(format!(
            "Invalid event id {raw:?}: expected 32 hex characters (a UUID)."
        ))
    })
}

pub async fn list_for_issue(
    State(state): State<AppState>,
    Path(issue_id): Path<i64>,
    url: RequestUrl,
) -> ApiResult<impl IntoResponse> {
    let group = super::issues::find(&state, issue_id).await?;
    let conditions = search(&url)?;
    let page =
        events::list_for_group(&state.pool, group.id, &conditions, &url.page_request()?).await?;
    let full = url.param("full").is_some_and(|v| v == "1" || v == "true");
    Ok(Paginated::new(&url, page, |e| EventJson::new(e, full)))
}

/// The event lists' `query`: the issue search syntax, over each event (`is:` is the status
/// of its issue); default: every event.
fn search(url: &RequestUrl) -> ApiResult<Vec<Condition>> {
    super::search::parse(url.param("query").unwrap_or(""))
}

/// `/api/0/projects/{org}/{project}/events/`: the project's events, newest first
/// (`full=1` for the detail shape, `query` to search them).
pub async fn list_for_project(
    State(state): State<AppState>,
    Path(path): Path<ProjectPath>,
    url: RequestUrl,
) -> ApiResult<impl IntoResponse> {
    let (_, project) = super::project(&state, &path).await?;
    let conditions = search(&url)?;
    let page = events::list_for_project(&state.pool, project.id, &conditions, &url.page_request()?)
        .await?;
    let full = url.param("full").is_some_and(|v| v == "1" || v == "true");
    Ok(Paginated::new(&url, page, |e| EventJson::new(e, full)))
}

#[derive(Debug, Deserialize)]
pub struct IssueEventPath {
    pub issue_id: i64,
    pub event_id: String,
}

/// `/api/0/issues/{id}/events/{event_id|latest|oldest}/`.
pub async fn detail_for_issue(
    State(state): State<AppState>,
    Path(path): Path<IssueEventPath>,
) -> ApiResult<impl IntoResponse> {
    let group = super::issues::find(&state, path.issue_id).await?;
    let event = match path.event_id.as_str() {
        "latest" | "recommended" => events::edge_of_group(&state.pool, group.id, true).await?,
        "oldest" => events::edge_of_group(&state.pool, group.id, false).await?,
        raw => events::get(&state.pool, group.project_id, parse_event_id(raw)?)
            .await?
            .filter(|e| e.group_id == group.id),
    };
    let event = event.ok_or(AppError::NotFound)?;
    Ok(axum::Json(EventJson::new(event, true)))
}

#[derive(Debug, Deserialize)]
pub struct ProjectEventPath {
    pub organization_id_or_slug: String,
    pub project_id_or_slug: String,
    pub event_id: String,
}

pub async fn detail(
    State(state): State<AppState>,
    Path(path): Path<ProjectEventPath>,
) -> ApiResult<impl IntoResponse> {
    let event_id = parse_event_id(&path.event_id)?;
    let project_path = ProjectPath {
        organization_id_or_slug: path.organization_id_or_slug,
        project_id_or_slug: path.project_id_or_slug,
    };
    let (_, project) = super::project(&state, &project_path).await?;
    let event = events::get(&state.pool, project.id, event_id)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(axum::Json(EventJson::new(event, true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_accept_both_shapes() {
        let obj = tags(&serde_json::json!({"tags": {"a": "1"}}), "error");
        assert_eq!(obj.len(), 2);
        assert_eq!((obj[1].key.as_str(), obj[1].value.as_str()), ("a", "1"));
        let pairs = tags(&serde_json::json!({"tags": [["b", "2"]]}), "info");
        assert_eq!(pairs[0].value, "info");
        assert_eq!((pairs[1].key.as_str(), pairs[1].value.as_str()), ("b", "2"));
    }

    #[test]
    fn entries_from_exception_and_message() {
        let data = serde_json::json!({
            "exception": {"values": [{"type": "E", "value": "v"}]},
            "logentry": {"formatted": "hello"}
        });
        let e = entries(&data);
        assert_eq!(e[0]["type"], "exception");
        assert_eq!(e[0]["data"]["values"][0]["type"], "E");
        assert_eq!(e[1]["data"]["formatted"], "hello");
    }
}
