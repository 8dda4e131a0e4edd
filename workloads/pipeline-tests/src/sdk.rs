//! Sending events the way applications do: through the official Sentry SDK (`sentry` crate)
//! pointed at the region's DSN, or as SDK-built envelopes posted one by one when a test needs
//! relay's answer to each event.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use sentry::protocol::{Envelope, Event};
use sentry::{ClientOptions, Hub, Level, Scope};
use uuid::Uuid;

/// An SDK client with its own hub (tests run in parallel; the global hub is not used).
pub struct Sdk {
    hub: Arc<Hub>,
    client: Arc<sentry::Client>,
}

impl Sdk {
    pub fn new(dsn: &str) -> Self {
        Self::with_release(dsn, "pipeline-tests@1.0.0", "test")
    }

    /// A client that tags every event with `release` and `environment`.
    pub fn with_release(dsn: &str, release: &str, environment: &str) -> Self {
        // Already installed by an earlier client: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut options = ClientOptions::new();
        options.dsn = Some(
            dsn.parse()
                .unwrap_or_else(|e| panic!("invalid DSN {dsn}: {e}")),
        );
        options.release = Some(release.to_owned().into());
        options.environment = Some(environment.to_owned().into());
        let options = sentry::apply_defaults(options);
        let client = Arc::new(sentry::Client::from(options));
        let hub = Arc::new(Hub::new(Some(client.clone()), Arc::new(Scope::default())));
        Sdk { hub, client }
    }

    pub fn capture_error(&self, error: &(dyn Error + 'static)) -> Uuid {
        self.hub.capture_error(error)
    }

    pub fn capture_message(&self, message: &str, level: Level) -> Uuid {
        self.hub.capture_message(message, level)
    }

    /// Capture `error` with an explicit grouping fingerprint.
    pub fn capture_error_with_fingerprint(
        &self,
        error: &(dyn Error + 'static),
        fingerprint: &[&str],
    ) -> Uuid {
        self.hub.with_scope(
            |scope| scope.set_fingerprint(Some(fingerprint)),
            || self.hub.capture_error(error),
        )
    }

    /// Capture `error` in a scope set up by `configure` (tags, user, ...).
    pub fn capture_error_with(
        &self,
        error: &(dyn Error + 'static),
        configure: impl FnOnce(&mut Scope),
    ) -> Uuid {
        self.hub
            .with_scope(configure, || self.hub.capture_error(error))
    }

    /// Capture a whole event (the client adds release, environment and SDK data).
    pub fn capture_event(&self, event: Event<'static>) -> Uuid {
        self.hub.capture_event(event)
    }

    /// Wait until everything captured was sent; false when `timeout` passed first.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.client.flush(Some(timeout))
    }
}

/// The SDK's event for `error` (exception type from its `Debug`, value from `Display`).
pub fn error_event(error: &(dyn Error + 'static)) -> Event<'static> {
    let mut event = sentry::event_from_error(error);
    event.platform = "rust".into();
    event
}

/// An envelope as the SDK serializes it.
pub fn envelope_bytes(event: Event<'static>) -> Vec<u8> {
    let mut out = Vec::new();
    Envelope::from(event)
        .to_writer(&mut out)
        .unwrap_or_else(|e| panic!("serializing an envelope: {e}"));
    out
}

/// Why relay did not answer 200 to an envelope.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Relay answered, but not with 200.
    #[error("relay answered {status}: {body}")]
    Status { status: u16, body: String },
    /// No answer: connection refused or reset, or no response within the request timeout.
    #[error("request to relay failed: {0}")]
    Transport(#[source] reqwest::Error),
}

impl SendError {
    /// Worth sending again: no answer, a rate limit (429) or a server error (5xx). Other 4xx
    /// answers say the envelope itself is wrong.
    pub fn is_retryable(&self) -> bool {
        match self {
            SendError::Status { status, .. } => *status == 429 || *status >= 500,
            SendError::Transport(_) => true,
        }
    }

    /// A short label for counting failures: the status code or `transport`.
    pub fn kind(&self) -> String {
        match self {
            SendError::Status { status, .. } => status.to_string(),
            SendError::Transport(_) => "transport".to_owned(),
        }
    }
}

/// Longest wait for relay's answer to one envelope.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Posts SDK-built envelopes to relay and reports each answer.
#[derive(Clone)]
pub struct EnvelopeSender {
    client: reqwest::Client,
    url: String,
    auth: String,
}

impl EnvelopeSender {
    /// `relay_url` is the relay's base URL, `project_id` and `public_key` from the DSN.
    pub fn new(relay_url: &str, project_id: &str, public_key: &str) -> Self {
        EnvelopeSender {
            client: reqwest::Client::builder()
                .timeout(SEND_TIMEOUT)
                .build()
                .unwrap_or_else(|e| panic!("building the HTTP client: {e}")),
            url: format!("{relay_url}/api/{project_id}/envelope/"),
            auth: format!(
                "Sentry sentry_key={public_key}, sentry_version=7, sentry_client=sentry.rust/{}",
                sentry::types::random_uuid().simple()
            ),
        }
    }

    /// POST one envelope; `Ok` when relay answered 200, else the status and body.
    pub async fn send(&self, body: Vec<u8>) -> Result<(), String> {
        self.try_send(body).await.map_err(|e| e.to_string())
    }

    /// POST one envelope; `Ok` when relay answered 200.
    pub async fn try_send(&self, body: impl Into<reqwest::Body>) -> Result<(), SendError> {
        self.send_for_answer(body).await.map(|_| ())
    }

    /// POST one envelope; relay's JSON answer (`{"id": "<event id>"}`) when it answered 200.
    pub async fn send_for_answer(
        &self,
        body: impl Into<reqwest::Body>,
    ) -> Result<serde_json::Value, SendError> {
        let r = self
            .client
            .post(&self.url)
            .header("X-Sentry-Auth", &self.auth)
            .header("Content-Type", "application/x-sentry-envelope")
            .body(body)
            .send()
            .await
            .map_err(SendError::Transport)?;
        let status = r.status();
        if status.is_success() {
            Ok(r.json().await.unwrap_or(serde_json::Value::Null))
        } else {
            Err(SendError::Status {
                status: status.as_u16(),
                body: r.text().await.unwrap_or_default(),
            })
        }
    }
}

pub use sentry::Level as SdkLevel;
