//! Project configs by public key: memory -> Redis -> web, with concurrent misses coalesced.
//!
//! ```text
//!  get(key) ─ memory hit ─► state
//!     └─ miss ─► in-flight map (joins a pending lookup, or queues the key)
//!                   └─► batcher (collects keys for `batch_window`, up to 100)
//!                         ├─ Redis MGET relay:projectconfig:<key>
//!                         └─ rest: signed POST /api/0/relays/projectconfigs/?version=3
//!                               └─► Redis SET EX + memory, then every waiter is answered
//! ```
//! Enabled configs live `ttl`, unknown/disabled keys `negative_ttl`, in memory and in Redis
//! (so a config may be up to twice `ttl` old). Upstream failures are not cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use silo_protocol::project_config::{MAX_KEYS_PER_REQUEST, PATH};
use silo_protocol::{
    ProjectConfig, ProjectConfigEntry, ProjectConfigRequest, ProjectConfigResponse, relay_auth,
};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::{RelayMetrics, SourceLabels};
use crate::redis_conn::RedisHandle;

/// Why a config could not be had; cheap to clone for every waiter of a batch.
#[derive(Clone, Debug, thiserror::Error)]
#[error("project config unavailable: {0}")]
pub struct ConfigError(pub(crate) Arc<str>);

/// What relay knows about a key.
#[derive(Clone, Debug, PartialEq)]
pub enum ProjectState {
    Enabled(Arc<ProjectConfig>),
    /// Unknown or disabled key.
    Disabled,
}

impl From<ProjectConfigEntry> for ProjectState {
    fn from(entry: ProjectConfigEntry) -> Self {
        match entry {
            ProjectConfigEntry::Enabled(cfg) if !cfg.disabled => Self::Enabled(Arc::new(*cfg)),
            _ => Self::Disabled,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ConfigSettings {
    /// Base URL of web (`http://web:9000`).
    pub upstream: String,
    pub relay_id: String,
    pub secret: String,
    pub ttl: Duration,
    pub negative_ttl: Duration,
    pub batch_window: Duration,
    pub upstream_timeout: Duration,
}

type Waiter = oneshot::Sender<Result<ProjectState, ConfigError>>;

struct Inner {
    settings: ConfigSettings,
    memory: Mutex<HashMap<String, (ProjectState, Instant)>>,
    inflight: Mutex<HashMap<String, Vec<Waiter>>>,
    queue: mpsc::UnboundedSender<String>,
    http: reqwest::Client,
    redis: Arc<RedisHandle>,
    metrics: Arc<RelayMetrics>,
}

#[derive(Clone)]
pub struct ProjectConfigs {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn redis_key(redis: &RedisHandle, public_key: &str) -> String {
    redis.key(&format!("projectconfig:v1:{public_key}"))
}

impl ProjectConfigs {
    /// Start the batcher task (on the current runtime).
    pub fn start(
        settings: ConfigSettings,
        redis: Arc<RedisHandle>,
        metrics: Arc<RelayMetrics>,
    ) -> Result<Self, ConfigError> {
        let http = reqwest::Client::builder()
            .timeout(settings.upstream_timeout)
            .build()
            .map_err(|e| ConfigError(format!("cannot build HTTP client: {e}").into()))?;
        let (queue, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            settings,
            memory: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            queue,
            http,
            redis,
            metrics,
        });
        tokio::spawn(batcher(Arc::downgrade(&inner), rx));
        Ok(Self { inner })
    }

    fn count(&self, source: &str) {
        self.inner
            .metrics
            .config_lookups
            .get_or_create(&SourceLabels {
                source: source.to_owned(),
            })
            .inc();
    }

    /// The state of `public_key`, fetching it when not cached.
    pub async fn get(&self, public_key: &str) -> Result<ProjectState, ConfigError> {
        if let Some((state, expires)) = lock(&self.inner.memory).get(public_key)
            && *expires > Instant::now()
        {
            self.count("memory");
            return Ok(state.clone());
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut inflight = lock(&self.inner.inflight);
            match inflight.get_mut(public_key) {
                Some(waiters) => waiters.push(tx),
                None => {
                    inflight.insert(public_key.to_owned(), vec![tx]);
                    self.inner
                        .queue
                        .send(public_key.to_owned())
                        .map_err(|_| ConfigError("config fetcher stopped".into()))?;
                }
            }
        }
        rx.await
            .map_err(|_| ConfigError("config fetcher stopped".into()))?
    }
}

async fn batcher(inner: std::sync::Weak<Inner>, mut rx: mpsc::UnboundedReceiver<String>) {
    while let Some(first) = rx.recv().await {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let window = strong.settings.batch_window;
        drop(strong);
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + window;
        while batch.len() < MAX_KEYS_PER_REQUEST {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(key)) => batch.push(key),
                Ok(None) | Err(_) => break,
            }
        }
        let Some(strong) = inner.upgrade() else {
            return;
        };
        tokio::spawn(async move { resolve(&strong, batch).await });
    }
}

/// Answer every waiter of `keys` from Redis or web.
async fn resolve(inner: &Inner, keys: Vec<String>) {
    let mut results: HashMap<String, Result<ProjectState, ConfigError>> = HashMap::new();
    let mut missing = Vec::new();
    match from_redis(inner, &keys).await {
        Ok(found) => {
            for (key, entry) in keys.iter().zip(found) {
                match entry {
                    Some(entry) => {
                        count(inner, "redis");
                        let state = ProjectState::from(entry);
                        remember(inner, key, &state);
                        results.insert(key.clone(), Ok(state));
                    }
                    None => missing.push(key.clone()),
                }
            }
        }
        Err(error) => {
            tracing::warn!(%error, "project config cache in Redis unavailable; asking web");
            missing = keys.clone();
        }
    }
    if !missing.is_empty() {
        match from_upstream(inner, &missing).await {
            Ok(mut response) => {
                let mut to_store = Vec::new();
                for key in &missing {
                    let result = match response.configs.remove(key) {
                        Some(entry) => {
                            count(inner, "upstream");
                            let ttl = match &entry {
                                ProjectConfigEntry::Enabled(_) => inner.settings.ttl,
                                ProjectConfigEntry::Disabled(_) => inner.settings.negative_ttl,
                            };
                            if let Ok(json) = serde_json::to_string(&entry) {
                                to_store.push((redis_key(&inner.redis, key), json, ttl));
                            }
                            let state = ProjectState::from(entry);
                            remember(inner, key, &state);
                            Ok(state)
                        }
                        None => {
                            count(inner, "error");
                            Err(ConfigError(
                                format!("web returned no config for key {key}").into(),
                            ))
                        }
                    };
                    results.insert(key.clone(), result);
                }
                if let Err(error) = store_redis(inner, to_store).await {
                    tracing::warn!(%error, "cannot cache project configs in Redis");
                }
            }
            Err(error) => {
                tracing::warn!(%error, keys = missing.len(), "project config fetch failed");
                for key in &missing {
                    count(inner, "error");
                    results.insert(key.clone(), Err(error.clone()));
                }
            }
        }
    }
    let mut inflight = lock(&inner.inflight);
    for (key, result) in results {
        for waiter in inflight.remove(&key).unwrap_or_default() {
            let _ = waiter.send(result.clone());
        }
    }
}

fn count(inner: &Inner, source: &str) {
    inner
        .metrics
        .config_lookups
        .get_or_create(&SourceLabels {
            source: source.to_owned(),
        })
        .inc();
}

fn remember(inner: &Inner, key: &str, state: &ProjectState) {
    let ttl = match state {
        ProjectState::Enabled(_) => inner.settings.ttl,
        ProjectState::Disabled => inner.settings.negative_ttl,
    };
    lock(&inner.memory).insert(key.to_owned(), (state.clone(), Instant::now() + ttl));
}

async fn from_redis(
    inner: &Inner,
    keys: &[String],
) -> Result<Vec<Option<ProjectConfigEntry>>, ConfigError> {
    let mut conn = inner
        .redis
        .conn()
        .await
        .map_err(|e| ConfigError(e.to_string().into()))?;
    let redis_keys: Vec<String> = keys.iter().map(|k| redis_key(&inner.redis, k)).collect();
    let values: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&redis_keys)
        .query_async(&mut conn)
        .await
        .map_err(|e| ConfigError(format!("Redis MGET failed: {e}").into()))?;
    Ok(values
        .into_iter()
        .map(|v| v.and_then(|json| serde_json::from_str(&json).ok()))
        .collect())
}

async fn store_redis(
    inner: &Inner,
    entries: Vec<(String, String, Duration)>,
) -> Result<(), ConfigError> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut conn = inner
        .redis
        .conn()
        .await
        .map_err(|e| ConfigError(e.to_string().into()))?;
    let mut pipe = redis::pipe();
    for (key, json, ttl) in entries {
        pipe.set_ex(key, json, ttl.as_secs().max(1)).ignore();
    }
    pipe.query_async::<()>(&mut conn)
        .await
        .map_err(|e| ConfigError(format!("Redis SET failed: {e}").into()))
}

async fn from_upstream(
    inner: &Inner,
    keys: &[String],
) -> Result<ProjectConfigResponse, ConfigError> {
    let settings = &inner.settings;
    let url = format!(
        "{}{PATH}?version=3",
        settings.upstream.trim_end_matches('/')
    );
    let body = serde_json::to_vec(&ProjectConfigRequest {
        public_keys: keys.to_vec(),
    })
    .map_err(|e| ConfigError(format!("cannot encode request: {e}").into()))?;
    let signature = relay_auth::sign(&settings.secret, &body);
    let response = inner
        .http
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(relay_auth::RELAY_ID_HEADER, &settings.relay_id)
        .header(relay_auth::SIGNATURE_HEADER, signature)
        .body(body)
        .send()
        .await
        .map_err(|e| ConfigError(format!("POST {url} failed: {e}").into()))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        let excerpt: String = text.chars().take(300).collect();
        return Err(ConfigError(
            format!("POST {url} answered {status}: {excerpt}").into(),
        ));
    }
    response
        .json()
        .await
        .map_err(|e| ConfigError(format!("POST {url}: invalid response: {e}").into()))
}
