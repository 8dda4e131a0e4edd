//! The ingest handlers: authenticate, read, check quotas, produce, and answer only after Kafka
//! acknowledged every event of the request.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use silo_protocol::{IngestMessage, OutcomeKind};

use crate::auth::{self, Credentials};
use crate::body::{self, BodyError, Extracted};
use crate::envelope;
use crate::error::IngestError;
use crate::metrics::RequestLabels;
use crate::project_config::ProjectState;
use crate::rate_limit::Scoping;
use crate::state::RelayState;

/// Data category of an ingested event.
const CATEGORY: &str = "error";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Envelope,
    Store,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Envelope => "envelope",
            Endpoint::Store => "store",
        }
    }
}

pub async fn envelope(
    State(state): State<Arc<RelayState>>,
    Path(project_id): Path<String>,
    request: Request,
) -> Response {
    handle(state, Endpoint::Envelope, project_id, request).await
}

pub async fn store(
    State(state): State<Arc<RelayState>>,
    Path(project_id): Path<String>,
    request: Request,
) -> Response {
    handle(state, Endpoint::Store, project_id, request).await
}

async fn handle(
    state: Arc<RelayState>,
    endpoint: Endpoint,
    project_id: String,
    request: Request,
) -> Response {
    let mut scoping = None;
    let result = ingest(&state, endpoint, &project_id, request, &mut scoping).await;
    let response = match result {
        Ok(body) => (axum::http::StatusCode::OK, Json(body)).into_response(),
        Err(error) => {
            reject(&state, &error, scoping.as_ref(), project_id.parse().ok());
            error.into_response()
        }
    };
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            endpoint: endpoint.name().to_owned(),
            status: response.status().as_u16(),
        })
        .inc();
    response
}

fn reject(
    state: &RelayState,
    error: &IngestError,
    scoping: Option<&Scoping>,
    url_project: Option<u64>,
) {
    let reason = error.reason();
    state.metrics.rejected(reason, 1);
    let kind = match error {
        IngestError::RateLimited(_) => OutcomeKind::RateLimited,
        // Dependency outages are not the client's fault; the SDK retries, nothing is counted.
        IngestError::Config(_) | IngestError::Kafka(_) => return,
        _ => OutcomeKind::Invalid,
    };
    state
        .outcomes
        .reject(scoping, url_project, kind, reason, CATEGORY, 1);
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// How much of an oversized streamed body is still read (and dropped), as a multiple of the
/// limit, so that a client still sending gets to read the 413 instead of a reset connection.
const DRAIN_FACTOR: usize = 4;

/// Read the body, refusing more than `limit` bytes whether or not Content-Length is sent.
async fn read_body(headers: &HeaderMap, mut body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let declared =
        header_str(headers, header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut kept = BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen <= limit {
            kept.extend_from_slice(&data);
        } else if seen > limit.saturating_mul(DRAIN_FACTOR) {
            break;
        }
    }
    if seen > limit {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(kept.freeze())
}

async fn ingest(
    state: &RelayState,
    endpoint: Endpoint,
    project_id: &str,
    request: Request,
    scoping_out: &mut Option<Scoping>,
) -> Result<serde_json::Value, IngestError> {
    let url_project: u64 = project_id
        .parse()
        .map_err(|_| IngestError::ProjectIdSyntax(project_id.chars().take(40).collect()))?;
    let (parts, body) = request.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let forwarded_for = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    let remote_addr = state
        .trusted_proxies
        .client(peer, forwarded_for)
        .map(|ip| ip.to_string());
    let header_credentials = auth::from_request(
        header_str(&parts.headers, "x-sentry-auth"),
        header_str(&parts.headers, header::AUTHORIZATION.as_str()),
        parts.uri.query(),
    )?;
    let limits = state.limits;
    let raw = read_body(&parts.headers, body, limits.max_envelope_bytes).await?;
    let data = body::decode(
        header_str(&parts.headers, header::CONTENT_ENCODING.as_str()),
        raw,
        limits.max_envelope_bytes,
    )?;

    let (credentials, extracted) = match endpoint {
        Endpoint::Envelope => {
            let env = envelope::parse(data).map_err(BodyError::from)?;
            let credentials = match header_credentials {
                Some(c) => c,
                None => match env.headers.dsn.as_deref() {
                    Some(dsn) => auth::parse_dsn(dsn)?,
                    None => return Err(auth::AuthError::Missing.into()),
                },
            };
            let extracted = body::extract_envelope(&env, limits.max_event_bytes);
            (credentials, extracted)
        }
        Endpoint::Store => {
            let credentials = header_credentials.ok_or(auth::AuthError::Missing)?;
            (
                credentials,
                body::extract_store(&data, limits.max_event_bytes),
            )
        }
    };
    let (config, key_id) = authorize(state, &credentials, url_project).await?;
    let scoping = Scoping {
        organization_id: config.organization_id,
        project_id: config.project_id,
        key_id,
    };
    *scoping_out = Some(scoping);
    let extracted: Extracted = extracted?;
    for ty in &extracted.dropped {
        state.metrics.item_dropped(ty);
    }
    let response_id = extracted
        .events
        .first()
        .map(|e| e.event_id.clone())
        .or(extracted.envelope_event_id.clone());
    if extracted.events.is_empty() {
        return Ok(match response_id {
            Some(id) => serde_json::json!({ "id": id }),
            None => serde_json::json!({}),
        });
    }

    check_quotas(
        state,
        &config.config.quotas,
        &scoping,
        extracted.events.len() as u64,
    )
    .await?;

    let received = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
    let key = config.project_id.to_string();
    let mut messages = Vec::with_capacity(extracted.events.len());
    for event in extracted.events {
        let message = IngestMessage {
            event_id: event.event_id,
            project_id: config.project_id,
            organization_id: config.organization_id,
            key_id,
            received,
            remote_addr: remote_addr.clone(),
            payload: event.payload,
        };
        messages.push(serde_json::to_vec(&message)?);
    }
    let count = messages.len() as u64;
    let topic = state.producer.ingest_topic.as_str();
    let sends = messages
        .iter()
        .map(|payload| state.producer.send(topic, &key, payload));
    for result in futures::future::join_all(sends).await {
        result?;
    }
    state.metrics.events_accepted.inc_by(count);
    Ok(serde_json::json!({ "id": response_id }))
}

/// The config of the key, checked against the project in the URL (and in the DSN).
async fn authorize(
    state: &RelayState,
    credentials: &Credentials,
    url_project: u64,
) -> Result<(Arc<silo_protocol::ProjectConfig>, u64), IngestError> {
    let config = match state.configs.get(&credentials.public_key).await? {
        ProjectState::Enabled(config) => config,
        ProjectState::Disabled => return Err(IngestError::KeyDisabled),
    };
    let Some(key) = config
        .public_keys
        .iter()
        .find(|k| k.public_key == credentials.public_key)
    else {
        return Err(IngestError::KeyDisabled);
    };
    if !key.is_enabled {
        return Err(IngestError::KeyDisabled);
    }
    for claimed in [Some(url_project), credentials.dsn_project_id]
        .into_iter()
        .flatten()
    {
        if claimed != config.project_id {
            return Err(IngestError::ProjectMismatch {
                url_project: claimed,
                key_project: config.project_id,
            });
        }
    }
    let key_id = key.numeric_id;
    Ok((config, key_id))
}

async fn check_quotas(
    state: &RelayState,
    quotas: &[silo_protocol::Quota],
    scoping: &Scoping,
    quantity: u64,
) -> Result<(), IngestError> {
    if quotas.is_empty() {
        return Ok(());
    }
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default();
    match state
        .limiter
        .check(quotas, scoping, CATEGORY, quantity, now)
        .await
    {
        Ok(None) => Ok(()),
        Ok(Some(limited)) => Err(IngestError::RateLimited(limited)),
        Err(error) => {
            // Quotas protect the pipeline; losing events because Redis is down would be worse.
            state.metrics.rate_limit_errors.inc();
            tracing::warn!(%error, "rate limit check failed; accepting the event");
            Ok(())
        }
    }
}
