//! The control silo and everything that crosses silos: organization directory, API gateway,
//! signed RPC (client and receiver), forwarded identities and the outbox drain.
//!
//! ```text
//!  client ─► control ── /api/0/organizations/ ─► directory (organization_mappings)
//!               │            POST ─► reserve slug ─► RPC organization/create ─► region
//!               └── org-scoped region route ─► gateway ─► owning region (signed identity)
//!  region ── org change + outbox row (one tx) ─► drainer ─► RPC outbox/apply ─► control
//! ```
//!
//! A MONOLITH process is both sides at once: region calls and outbox deliveries stay in the
//! process instead of going over HTTP.

pub mod args;
pub mod cache;
pub mod gateway;
pub mod identity;
pub mod members;
pub mod metrics;
pub mod organizations;
pub mod outbox;
pub mod rpc;
pub mod rpc_client;
pub mod upstream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::Method;
use silo_contract::{RegionInfo, SiloContract, SiloMode};
use silo_runtime::ContractHandle;
use silo_store::api_tokens::ApiToken;
use silo_store::control_directory::OrganizationMapping;
use silo_store::snowflake::SnowflakeGenerator;
use tokio::sync::Notify;

pub use args::CrossSiloArgs;
pub use metrics::CrossSiloMetrics;
pub use rpc_client::{RpcClient, RpcError};

use self::cache::TtlCache;
use crate::auth::Access;
use crate::silo::{RouteDef, Silos};

/// Name of the region a MONOLITH process serves when no directory names one (Sentry's
/// default for `SENTRY_MONOLITH_REGION`).
pub const DEFAULT_MONOLITH_REGION: &str = "--monolith--";

/// Most entries each gateway cache holds.
const CACHE_CAPACITY: usize = 10_000;

/// Cross-silo handles every handler can reach through `AppState::cross`.
#[derive(Clone, Debug)]
pub struct CrossSilo {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    contract: ContractHandle,
    rpc: RpcClient,
    proxy: upstream::Upstream,
    settings: CrossSiloSettings,
    ids: Mutex<HashMap<u16, Arc<SnowflakeGenerator>>>,
    mappings: TtlCache<OrganizationMapping>,
    tokens: TtlCache<ApiToken>,
    outbox_wake: Notify,
    metrics: Arc<CrossSiloMetrics>,
}

/// Tunables of the gateway, RPC client and outbox drain.
#[derive(Clone, Debug)]
pub struct CrossSiloSettings {
    pub rpc_timeout: Duration,
    pub rpc_attempts: u32,
    pub proxy_timeout: Duration,
    pub mapping_cache_ttl: Duration,
    pub token_cache_ttl: Duration,
    pub outbox_interval: Duration,
}

impl Default for CrossSiloSettings {
    fn default() -> Self {
        Self {
            rpc_timeout: Duration::from_secs(10),
            rpc_attempts: 4,
            proxy_timeout: Duration::from_secs(30),
            mapping_cache_ttl: Duration::from_secs(2),
            token_cache_ttl: Duration::from_secs(5),
            outbox_interval: Duration::from_secs(1),
        }
    }
}

impl CrossSilo {
    pub fn new(
        contract: ContractHandle,
        settings: CrossSiloSettings,
        metrics: Arc<CrossSiloMetrics>,
    ) -> Self {
        let rpc = RpcClient::new(
            contract.clone(),
            settings.rpc_timeout,
            settings.rpc_attempts,
            metrics.clone(),
        );
        let proxy = upstream::Upstream::default();
        let mappings = TtlCache::new(settings.mapping_cache_ttl, CACHE_CAPACITY);
        let tokens = TtlCache::new(settings.token_cache_ttl, CACHE_CAPACITY);
        Self {
            inner: Arc::new(Inner {
                contract,
                rpc,
                proxy,
                settings,
                ids: Mutex::new(HashMap::new()),
                mappings,
                tokens,
                outbox_wake: Notify::new(),
                metrics,
            }),
        }
    }

    /// A context with an empty directory for `mode` (tests and single-process use).
    pub fn standalone(mode: SiloMode) -> Self {
        let contract = SiloContract {
            mode,
            region: None,
            directory_source: None,
            directory: silo_contract::RegionDirectory::default(),
            monolith_region: None,
            control_address: None,
            rpc_secrets: Vec::new(),
        };
        let mut registry = prometheus_client::registry::Registry::default();
        Self::new(
            ContractHandle::new(contract),
            CrossSiloSettings::default(),
            Arc::new(CrossSiloMetrics::register(&mut registry)),
        )
    }

    pub fn contract(&self) -> Arc<SiloContract> {
        self.inner.contract.current()
    }

    pub fn rpc(&self) -> &RpcClient {
        &self.inner.rpc
    }

    pub fn settings(&self) -> &CrossSiloSettings {
        &self.inner.settings
    }

    pub fn metrics(&self) -> &CrossSiloMetrics {
        &self.inner.metrics
    }

    pub(crate) fn proxy_client(&self) -> &upstream::Upstream {
        &self.inner.proxy
    }

    /// The region this process stores data for (its own, the monolith region, or the
    /// built-in monolith name when the directory is empty).
    pub fn local_region_name(&self) -> String {
        let contract = self.contract();
        contract
            .local_region()
            .map(str::to_owned)
            .unwrap_or_else(|| DEFAULT_MONOLITH_REGION.to_owned())
    }

    /// The snowflake id of a region (0 for a region missing from the directory).
    fn snowflake_id(&self, region: &str) -> u16 {
        self.contract()
            .directory
            .get(region)
            .map_or(0, |r| r.snowflake_id)
    }

    /// A new globally unique organization id for `region`.
    pub fn next_id(&self, region: &str) -> i64 {
        let snowflake = self.snowflake_id(region);
        let generator = {
            let mut ids = self.inner.ids.lock().unwrap_or_else(|p| p.into_inner());
            ids.entry(snowflake)
                .or_insert_with(|| Arc::new(SnowflakeGenerator::new(snowflake)))
                .clone()
        };
        generator.next_id()
    }

    /// The region that owns org-less requests.
    pub fn fallback_region(&self) -> Option<RegionInfo> {
        self.contract().fallback_region().cloned()
    }

    /// Tell the outbox drainer that new messages are waiting.
    pub fn wake_outbox(&self) {
        self.inner.outbox_wake.notify_one();
    }

    pub(crate) async fn outbox_woken(&self) {
        self.inner.outbox_wake.notified().await;
    }

    /// Organization -> region lookups of the gateway (`SILO_GATEWAY_CACHE_TTL`).
    pub(crate) fn mappings(&self) -> &TtlCache<OrganizationMapping> {
        &self.inner.mappings
    }

    /// Tokens the gateway authenticated, by token hash (`SILO_GATEWAY_TOKEN_CACHE_TTL`).
    pub(crate) fn tokens(&self) -> &TtlCache<ApiToken> {
        &self.inner.tokens
    }
}

/// Routes owned by this module: the directory's organization list/create (answered per silo),
/// organization changes and members in the region, and the RPC receivers.
pub fn routes() -> Vec<RouteDef> {
    use Method as M;
    let s = Access::Scope;
    vec![
        RouteDef::new(
            M::GET,
            "/api/0/organizations/",
            Silos::All,
            s("org:read"),
            organizations::list,
        ),
        RouteDef::new(
            M::POST,
            "/api/0/organizations/",
            Silos::All,
            s("org:write"),
            organizations::create,
        ),
        RouteDef::new(
            M::PUT,
            ORG,
            Silos::Region,
            s("org:write"),
            organizations::update,
        ),
        RouteDef::new(
            M::DELETE,
            ORG,
            Silos::Region,
            s("org:admin"),
            organizations::delete,
        ),
        RouteDef::new(M::GET, MEMBERS, Silos::Region, s("org:read"), members::list),
        RouteDef::new(
            M::POST,
            MEMBERS,
            Silos::Region,
            s("org:write"),
            members::add,
        ),
        RouteDef::new(
            M::POST,
            "/api/0/internal/rpc/organization/{method}/",
            Silos::Region,
            Access::Rpc,
            rpc::organization_service,
        ),
        RouteDef::new(
            M::POST,
            "/api/0/internal/rpc/outbox/{method}/",
            Silos::Control,
            Access::Rpc,
            rpc::outbox_service,
        ),
    ]
}

const ORG: &str = "/api/0/organizations/{organization_id_or_slug}/";
const MEMBERS: &str = "/api/0/organizations/{organization_id_or_slug}/members/";
