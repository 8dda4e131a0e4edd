//! A small client of the region API (bearer token), for setting up and observing a test.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

/// Longest wait for one answer of the API.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct Api {
    pub base: String,
    token: String,
    client: reqwest::Client,
}

impl Api {
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Self {
        Api {
            base: base.into(),
            token: token.into(),
            client: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .unwrap_or_else(|e| panic!("building the HTTP client: {e}")),
        }
    }

    /// GET a path; the status and the JSON body (`null` when not JSON).
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.try_get(path)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// GET a path; the status and the JSON body (`null` when not JSON), or why there was no
    /// answer (within [`REQUEST_TIMEOUT`]).
    pub async fn try_get(&self, path: &str) -> Result<(StatusCode, Value), reqwest::Error> {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = r.status();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// Any request with an optional JSON body, with this API's token unless `anonymous`; the
    /// status and the JSON body (`null` when empty or not JSON).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        anonymous: bool,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if !anonymous {
            req = req.bearer_auth(&self.token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// PUT JSON; the status and the JSON body.
    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(reqwest::Method::PUT, path, Some(body), false)
            .await
    }

    /// DELETE; the status and the JSON body.
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.request(reqwest::Method::DELETE, path, None, false)
            .await
    }

    /// POST JSON; panics unless the answer is 2xx.
    pub async fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert!(status.is_success(), "POST {path} answered {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub async fn create_org(&self, slug: &str) -> Value {
        self.post("/api/0/organizations/", json!({"name": slug, "slug": slug}))
            .await
    }

    pub async fn create_project(&self, org: &str, slug: &str) -> Value {
        self.post(
            &format!("/api/0/organizations/{org}/projects/"),
            json!({"name": slug, "slug": slug, "platform": "rust"}),
        )
        .await
    }

    /// A new key of the project; its public DSN is `["dsn"]["public"]`.
    pub async fn create_key(&self, org: &str, project: &str) -> Value {
        self.post(
            &format!("/api/0/projects/{org}/{project}/keys/"),
            json!({"name": "test"}),
        )
        .await
    }

    pub async fn create_rule(&self, org: &str, project: &str, rule: Value) -> Value {
        self.post(&format!("/api/0/projects/{org}/{project}/rules/"), rule)
            .await
    }

    /// Every issue of the project, any status (first page of 100).
    pub async fn issues(&self, org: &str, project: &str) -> Result<Vec<Value>, String> {
        let path = format!("/api/0/projects/{org}/{project}/issues/?query=&per_page=100");
        match self.get(&path).await {
            (s, Value::Array(items)) if s.is_success() => Ok(items),
            (s, body) => Err(format!("{s}: {body}")),
        }
    }

    /// One event of the project, `None` while it is not stored.
    pub async fn event(&self, org: &str, project: &str, event_id: &str) -> Option<Value> {
        let path = format!("/api/0/projects/{org}/{project}/events/{event_id}/");
        match self.get(&path).await {
            (s, body) if s.is_success() => Some(body),
            _ => None,
        }
    }

    /// The events of one issue (first page of 100).
    pub async fn issue_events(&self, issue_id: &str) -> Result<Vec<Value>, String> {
        match self
            .get(&format!("/api/0/issues/{issue_id}/events/?per_page=100"))
            .await
        {
            (s, Value::Array(items)) if s.is_success() => Ok(items),
            (s, body) => Err(format!("{s}: {body}")),
        }
    }
}
