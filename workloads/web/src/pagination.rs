//! Cursor pagination with Sentry's `Link` header:
//! `<url?cursor=c>; rel="previous"; results="false"; cursor="c", <...>; rel="next"; ...`.

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::header::{HOST, LINK};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use silo_store::{Cursor, Page, PageRequest};

use crate::error::AppError;
use crate::state::AppState;

/// The URL a request was made to, split for building links: base (`http://host`), path, and
/// the query pairs other than `cursor`.
#[derive(Clone, Debug)]
pub struct RequestUrl {
    pub base: String,
    pub path: String,
    pub query: Vec<(String, String)>,
}

impl RequestUrl {
    /// The absolute URL of `path` on this API.
    pub fn absolute(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The value of query parameter `name`, if present (first occurrence).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated query parameter (`project=1&project=2`).
    pub fn params(&self, name: &str) -> impl Iterator<Item = &str> {
        self.query
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The page requested by `cursor` and `per_page`.
    pub fn page_request(&self) -> Result<PageRequest, AppError> {
        let cursor = match self.param("cursor").filter(|c| !c.is_empty()) {
            Some(c) => Some(
                c.parse::<Cursor>()
                    .map_err(|e| AppError::BadRequest(e.to_string()))?,
            ),
            None => None,
        };
        let limit = match self.param("per_page") {
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=PageRequest::MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    AppError::BadRequest(format!(
                        "Invalid per_page {v:?}: expected a number from 1 to {}.",
                        PageRequest::MAX_LIMIT
                    ))
                })?,
            None => PageRequest::DEFAULT_LIMIT,
        };
        Ok(PageRequest { cursor, limit })
    }

    fn link(&self, cursor: Cursor) -> String {
        let mut pairs: Vec<(&str, String)> = self
            .query
            .iter()
            .filter(|(k, _)| k != "cursor")
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        pairs.push(("cursor", cursor.to_string()));
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        format!("{}{}?{query}", self.base, self.path)
    }

    /// Sentry's `Link` header for a page.
    pub fn link_header<T>(&self, page: &Page<T>) -> String {
        let entry = |(cursor, results): (Cursor, bool), rel: &str| {
            format!(
                "<{}>; rel=\"{rel}\"; results=\"{results}\"; cursor=\"{cursor}\"",
                self.link(cursor)
            )
        };
        format!(
            "{}, {}",
            entry(page.prev, "previous"),
            entry(page.next, "next")
        )
    }
}

fn base_url(settings_url: Option<&str>, headers: &HeaderMap) -> String {
    if let Some(url) = settings_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

impl FromRequestParts<AppState> for RequestUrl {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let uri = parts
            .extensions
            .get::<OriginalUri>()
            .map(|u| u.0.clone())
            .unwrap_or_else(|| parts.uri.clone());
        let query: Vec<(String, String)> = match uri.query() {
            Some(q) => serde_urlencoded::from_str(q)
                .map_err(|e| AppError::BadRequest(format!("Invalid query string: {e}")))?,
            None => Vec::new(),
        };
        Ok(RequestUrl {
            base: base_url(state.settings.public_url.as_deref(), &parts.headers),
            path: uri.path().to_owned(),
            query,
        })
    }
}

/// A JSON list with its `Link` header.
pub struct Paginated<T>(pub Vec<T>, pub String);

impl<T: Serialize> Paginated<T> {
    pub fn new<R>(url: &RequestUrl, page: Page<R>, render: impl FnMut(R) -> T) -> Self {
        let link = url.link_header(&page);
        Paginated(page.items.into_iter().map(render).collect(), link)
    }
}

impl<T: Serialize> IntoResponse for Paginated<T> {
    fn into_response(self) -> Response {
        let mut response = axum::Json(self.0).into_response();
        if let Ok(value) = HeaderValue::from_str(&self.1) {
            response.headers_mut().insert(LINK, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_keeps_other_params_and_replaces_cursor() {
        let url = RequestUrl {
            base: "http://api".into(),
            path: "/api/0/organizations/".into(),
            query: vec![
                ("query".into(), "is:unresolved".into()),
                ("cursor".into(), "1:1:0".into()),
            ],
        };
        let page = Page {
            items: vec![1],
            next: ("5:5:0".parse().unwrap(), true),
            prev: ("5:5:1".parse().unwrap(), false),
        };
        let link = url.link_header(&page);
        assert_eq!(
            link,
            "<http://api/api/0/organizations/?query=is%3Aunresolved&cursor=5%3A5%3A1>; \
             rel=\"previous\"; results=\"false\"; cursor=\"5:5:1\", \
             <http://api/api/0/organizations/?query=is%3Aunresolved&cursor=5%3A5%3A0>; \
             rel=\"next\"; results=\"true\"; cursor=\"5:5:0\""
        );
    }

    #[test]
    fn base_url_prefers_configured_url() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("web:9000"));
        assert_eq!(
            base_url(Some("https://api.example/"), &headers),
            "https://api.example"
        );
        assert_eq!(base_url(None, &headers), "http://web:9000");
    }
}
