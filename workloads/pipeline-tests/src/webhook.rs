//! A local webhook receiver standing in for the external recipient of alert notifications.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

#[derive(Clone, Default)]
pub struct WebhookReceiver {
    pub url: String,
    received: Arc<Mutex<Vec<Value>>>,
}

async fn record(State(r): State<Arc<Mutex<Vec<Value>>>>, Json(body): Json<Value>) -> StatusCode {
    r.lock().unwrap_or_else(|p| p.into_inner()).push(body);
    StatusCode::OK
}

impl WebhookReceiver {
    /// Listen on a free loopback port; every POST body is recorded and answered 200.
    pub async fn start() -> Self {
        let received: Arc<Mutex<Vec<Value>>> = Arc::default();
        let app = Router::new()
            .route("/hook", post(record))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind webhook receiver: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("webhook receiver address: {e}"));
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("webhook receiver stopped: {e}");
            }
        });
        WebhookReceiver {
            url: format!("http://{addr}/hook"),
            received,
        }
    }

    pub fn received(&self) -> Vec<Value> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
