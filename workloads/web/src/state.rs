//! Shared handler state, built once in [`crate::app`].

use std::sync::Arc;

use silo_contract::SiloMode;
use silo_store::PgPool;

use crate::control::CrossSilo;
use crate::metrics::WebMetrics;

/// Settings handlers read.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Base URL SDKs send events to (`http://relay.example:3000`); DSNs are built from it.
    pub relay_public_url: String,
    /// Secret this region's relays sign project-config requests with. `None` refuses all.
    pub relay_secret: Option<String>,
    /// Base URL of this API as clients see it, for `Link` headers and permalinks. When unset
    /// the request's `Host` header is used.
    pub public_url: Option<String>,
}

#[derive(Clone, Debug)]
pub struct AppState {
    pub pool: PgPool,
    pub mode: SiloMode,
    pub settings: Arc<Settings>,
    pub metrics: Arc<WebMetrics>,
    /// Directory, gateway, RPC and outbox handles (see [`crate::control`]).
    pub cross: CrossSilo,
}
