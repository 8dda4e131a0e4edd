//! `silo-operator onboard`: give the operator a least-privilege identity in a customer's
//! cluster and the kubeconfig Secret a Region with `spec.cluster` refers to.
//!
//! ```text
//!   admin kubeconfig (customer) ─► namespaces, ServiceAccount, Role + ClusterRole (SSA)
//!        └► anchor Secret ─► TokenRequest bound to it (expiry) ─► kubeconfig
//!   management cluster ◄─ kubeconfig Secret (key `value`, expiry annotation) ◄─┘
//!   stdout ◄─ the Region to apply (or applied with --apply)
//! ```
//!
//! Idempotent: everything is server-side applied; an existing token is kept while it is
//! valid for longer than `--renew-before`. `rotate` always issues a new token, writes it,
//! waits until the Regions using the Secret show its new version in status (the operator
//! uses the new token), then deletes the old anchor Secrets, which invalidates the old
//! tokens at once.

pub mod objects;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Config, Resource, ResourceExt};
use serde::Serialize;
use silo_api::cluster::{DEFAULT_NAMESPACE_PREFIX, TOKEN_EXPIRES_ANNOTATION};
use silo_runtime::args::parse_duration;

use objects::{FOR_REGION, Identity, MANAGER, RegionInput};

/// Onboard a customer-provided cluster for one Region.
#[derive(Clone, Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct OnboardCommand {
    #[command(subcommand)]
    pub action: Option<OnboardAction>,
    #[command(flatten)]
    pub args: Option<OnboardArgs>,
}

/// What else `onboard` can do.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum OnboardAction {
    /// Issue a new token for an onboarded Region, write it, and invalidate the old ones.
    Rotate(OnboardArgs),
}

/// Where to onboard, and what.
#[derive(Clone, Debug, clap::Args)]
pub struct OnboardArgs {
    /// Admin kubeconfig of the customer cluster (used once, never stored).
    #[arg(long, env = "SILO_ONBOARD_KUBECONFIG")]
    pub kubeconfig: PathBuf,

    /// Name of the Region that runs in that cluster.
    #[arg(long, env = "SILO_ONBOARD_REGION")]
    pub region: String,

    /// Kubeconfig of the management cluster (where the operator runs); default: KUBECONFIG
    /// or the in-cluster config.
    #[arg(long, env = "SILO_ONBOARD_MANAGEMENT_KUBECONFIG")]
    pub management_kubeconfig: Option<PathBuf>,

    /// The operator's namespace in the management cluster, where the Secret is written.
    #[arg(
        long,
        env = "SILO_ONBOARD_OPERATOR_NAMESPACE",
        default_value = "silo-system"
    )]
    pub operator_namespace: String,

    /// Name of the kubeconfig Secret; default `<region>-kubeconfig`.
    #[arg(long, env = "SILO_ONBOARD_SECRET_NAME")]
    pub secret_name: Option<String>,

    /// Namespace in the customer cluster holding the operator's ServiceAccount.
    #[arg(
        long,
        env = "SILO_ONBOARD_IDENTITY_NAMESPACE",
        default_value = "silo-system"
    )]
    pub identity_namespace: String,

    /// Prefix of the Region's namespace in the customer cluster (`<prefix><region>`).
    #[arg(long, env = "SILO_ONBOARD_NAMESPACE_PREFIX")]
    pub namespace_prefix: Option<String>,

    /// API server URL the operator uses to reach the customer cluster; default: the
    /// admin kubeconfig's.
    #[arg(long, env = "SILO_ONBOARD_SERVER")]
    pub server: Option<String>,

    /// Lifetime of the token (the API server may cap it).
    #[arg(long, env = "SILO_ONBOARD_TOKEN_TTL", default_value = "720h", value_parser = parse_duration)]
    pub token_ttl: Duration,

    /// A plain `onboard` issues a new token when the current one expires within this.
    #[arg(long, env = "SILO_ONBOARD_RENEW_BEFORE", default_value = "168h", value_parser = parse_duration)]
    pub renew_before: Duration,

    /// How long `rotate` (or a renewal) waits for the Regions using the Secret to switch to
    /// the new token before it revokes the old one.
    #[arg(long, env = "SILO_ONBOARD_SWITCH_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub switch_timeout: Duration,

    /// Snowflake id of the Region (for the printed or applied Region).
    #[arg(long, env = "SILO_ONBOARD_SNOWFLAKE_ID", default_value_t = 0)]
    pub snowflake_id: i32,

    /// Externally reachable base URL the Region publishes in the directory.
    #[arg(long, env = "SILO_ONBOARD_ADDRESS")]
    pub address: Option<String>,

    /// Apply the Region in the management cluster instead of printing it.
    #[arg(long, env = "SILO_ONBOARD_APPLY")]
    pub apply: bool,

    /// Print every object that would be written (the token redacted) and write nothing.
    #[arg(long, env = "SILO_ONBOARD_DRY_RUN")]
    pub dry_run: bool,
}

/// Onboarding failed; each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum OnboardError {
    #[error("cannot read the admin kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("the admin kubeconfig {path} has no cluster for its current context; pass --server")]
    NoServer { path: PathBuf },
    #[error("cannot configure a client for {what}: {message}")]
    Client { what: &'static str, message: String },
    #[error("{action} failed in the {cluster} cluster: {source}")]
    Api {
        action: String,
        cluster: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("the API server returned no token for ServiceAccount {0}")]
    NoToken(String),
    #[error(
        "--address is required with --apply: the externally reachable URL of the Region's web service"
    )]
    NoAddress,
    #[error("{0}")]
    Invalid(String),
}

/// What was read from the admin kubeconfig.
struct CustomerCluster {
    client: Option<Client>,
    server: String,
    ca_data: Option<String>,
    insecure: bool,
}

async fn customer_cluster(args: &OnboardArgs) -> Result<CustomerCluster, OnboardError> {
    let path = &args.kubeconfig;
    let kubeconfig = Kubeconfig::read_from(path).map_err(|source| OnboardError::Kubeconfig {
        path: path.clone(),
        source,
    })?;
    let context = kubeconfig
        .current_context
        .as_ref()
        .and_then(|name| kubeconfig.contexts.iter().find(|c| &c.name == name))
        .and_then(|c| c.context.as_ref());
    let cluster = context
        .and_then(|ctx| kubeconfig.clusters.iter().find(|c| c.name == ctx.cluster))
        .and_then(|c| c.cluster.clone())
        .ok_or_else(|| OnboardError::NoServer { path: path.clone() })?;
    let ca_data = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) => Some(data.clone()),
        (None, Some(file)) => {
            use base64::Engine;
            let bytes = std::fs::read(file).map_err(|e| {
                OnboardError::Invalid(format!("cannot read certificate-authority {file}: {e}"))
            })?;
            Some(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        (None, None) => None,
    };
    let server = args
        .server
        .clone()
        .or(cluster.server.clone())
        .ok_or_else(|| OnboardError::NoServer { path: path.clone() })?;
    let client = if args.dry_run {
        None
    } else {
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| OnboardError::Client {
                what: "the customer cluster",
                message: e.to_string(),
            })?;
        Some(Client::try_from(config).map_err(|e| OnboardError::Client {
            what: "the customer cluster",
            message: e.to_string(),
        })?)
    };
    Ok(CustomerCluster {
        client,
        server,
        ca_data,
        insecure: cluster.insecure_skip_tls_verify.unwrap_or(false),
    })
}

async fn management_client(args: &OnboardArgs) -> Result<Client, OnboardError> {
    let failed = |e: String| OnboardError::Client {
        what: "the management cluster",
        message: e,
    };
    let config = match &args.management_kubeconfig {
        Some(path) => {
            let kubeconfig =
                Kubeconfig::read_from(path).map_err(|source| OnboardError::Kubeconfig {
                    path: path.clone(),
                    source,
                })?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| failed(e.to_string()))?
        }
        None => Config::infer().await.map_err(|e| failed(e.to_string()))?,
    };
    Client::try_from(config).map_err(|e| failed(e.to_string()))
}

/// Server-side apply `obj` through `api`.
async fn apply<K>(api: Api<K>, cluster: &'static str, obj: &K) -> Result<(), OnboardError>
where
    K: Resource<DynamicType = ()>
        + Clone
        + Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let mut body = serde_json::to_value(obj).map_err(|e| OnboardError::Invalid(e.to_string()))?;
    body["apiVersion"] = K::api_version(&()).into();
    body["kind"] = K::kind(&()).into();
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|source| OnboardError::Api {
        action: format!("applying {} {name}", K::kind(&())),
        cluster,
        source,
    })?;
    eprintln!("applied {} {name} ({cluster} cluster)", K::kind(&()));
    Ok(())
}

fn print_yaml<K: Serialize + Resource<DynamicType = ()>>(obj: &K) {
    let mut value = serde_json::to_value(obj).unwrap_or_default();
    value["apiVersion"] = K::api_version(&()).into();
    value["kind"] = K::kind(&()).into();
    print!("---\n{}", serde_yaml::to_string(&value).unwrap_or_default());
}

/// Run `onboard` or `onboard rotate`.
pub async fn run(command: OnboardCommand) -> Result<(), OnboardError> {
    match (command.action, command.args) {
        (Some(OnboardAction::Rotate(args)), _) => onboard(&args, true).await,
        (None, Some(args)) => onboard(&args, false).await,
        (None, None) => Err(OnboardError::Invalid(
            "onboard needs --kubeconfig and --region (see --help)".to_owned(),
        )),
    }
}

async fn onboard(args: &OnboardArgs, rotate: bool) -> Result<(), OnboardError> {
    silo_contract::validate_region_name(&args.region)
        .map_err(|e| OnboardError::Invalid(format!("--region: {e}")))?;
    if args.apply && args.address.is_none() {
        return Err(OnboardError::NoAddress);
    }
    let prefix = args
        .namespace_prefix
        .clone()
        .unwrap_or_else(|| DEFAULT_NAMESPACE_PREFIX.to_owned());
    let identity = Identity {
        region: args.region.clone(),
        namespace: format!("{prefix}{}", args.region),
        identity_namespace: args.identity_namespace.clone(),
    };
    let secret_name = args
        .secret_name
        .clone()
        .unwrap_or_else(|| format!("{}-kubeconfig", args.region));
    let customer = customer_cluster(args).await?;
    let serial = Timestamp::now().as_second().to_string();
    let anchor = identity.token_anchor(&serial);
    let region = objects::region(&RegionInput {
        region: &args.region,
        snowflake_id: args.snowflake_id,
        address: args
            .address
            .as_deref()
            .unwrap_or("https://<external address of the region>"),
        secret: &secret_name,
        namespace_prefix: args.namespace_prefix.as_deref(),
    });
    let Some(client) = customer.client.clone() else {
        // --dry-run: every object, the token redacted.
        for ns in identity.namespaces() {
            print_yaml(&ns);
        }
        print_yaml(&identity.service_account());
        print_yaml(&identity.role());
        print_yaml(&identity.role_binding());
        print_yaml(&identity.cluster_role());
        print_yaml(&identity.cluster_role_binding());
        print_yaml(&anchor);
        let config = objects::kubeconfig(
            &args.region,
            &customer.server,
            customer.ca_data.as_deref(),
            customer.insecure,
            "<token bound to the anchor Secret>",
        );
        print_yaml(&objects::kubeconfig_secret(
            &secret_name,
            &args.operator_namespace,
            &args.region,
            &config,
            "<expiry of the token>",
        ));
        print!(
            "---\n{}",
            serde_yaml::to_string(&region).unwrap_or_default()
        );
        return Ok(());
    };
    let c = "customer";
    for ns in identity.namespaces() {
        apply(Api::all(client.clone()), c, &ns).await?;
    }
    let in_identity = identity.identity_namespace.as_str();
    let in_region = identity.namespace.as_str();
    apply(
        Api::namespaced(client.clone(), in_identity),
        c,
        &identity.service_account(),
    )
    .await?;
    apply(
        Api::namespaced(client.clone(), in_region),
        c,
        &identity.role(),
    )
    .await?;
    apply(
        Api::namespaced(client.clone(), in_region),
        c,
        &identity.role_binding(),
    )
    .await?;
    apply(Api::all(client.clone()), c, &identity.cluster_role()).await?;
    apply(
        Api::all(client.clone()),
        c,
        &identity.cluster_role_binding(),
    )
    .await?;

    let management = management_client(args).await?;
    let secrets: Api<Secret> = Api::namespaced(management.clone(), &args.operator_namespace);
    let existing = secrets
        .get_opt(&secret_name)
        .await
        .map_err(|source| OnboardError::Api {
            action: format!("reading Secret {}/{secret_name}", args.operator_namespace),
            cluster: "management",
            source,
        })?;
    let renew_by = Timestamp::now()
        .checked_add(
            k8s_openapi::jiff::SignedDuration::try_from(args.renew_before).unwrap_or_default(),
        )
        .unwrap_or(Timestamp::MAX);
    let still_valid = existing
        .as_ref()
        .and_then(|s| s.annotations().get(TOKEN_EXPIRES_ANNOTATION).cloned())
        .and_then(|t| t.parse::<Timestamp>().ok())
        .is_some_and(|t| t > renew_by);
    if rotate || !still_valid {
        let (expires_at, version) = issue_token(
            args,
            &client,
            &identity,
            &customer,
            &anchor,
            &secrets,
            &secret_name,
        )
        .await?;
        eprintln!("token for {} expires at {expires_at}", identity.name());
        // The old token keeps working until the operator uses the new one: no reconcile fails.
        wait_for_switch(&management, &secret_name, &version, args.switch_timeout).await?;
        remove_old_anchors(&client, &identity, &anchor.name_any()).await?;
    } else {
        eprintln!(
            "the token in Secret {secret_name} is still valid; nothing to renew (use `onboard rotate` to force)"
        );
    }
    if args.apply {
        let api = Api::<DynamicObject>::all_with(
            management,
            &ApiResource::from_gvk(&GroupVersionKind::gvk(
                silo_api::GROUP,
                silo_api::VERSION,
                "Region",
            )),
        );
        api.patch(
            &args.region,
            &PatchParams::apply(MANAGER),
            &Patch::Apply(&region),
        )
        .await
        .map_err(|source| OnboardError::Api {
            action: format!("applying Region {}", args.region),
            cluster: "management",
            source,
        })?;
        eprintln!("applied Region {}", args.region);
    } else if !rotate {
        print!("{}", serde_yaml::to_string(&region).unwrap_or_default());
    }
    Ok(())
}

/// Wait until every Region using Secret `secret` shows its version `version` in
/// `status.cluster.secretVersion` (the operator reconciled with the new credentials), at most
/// `timeout`.
async fn wait_for_switch(
    management: &Client,
    secret: &str,
    version: &str,
    timeout: Duration,
) -> Result<(), OnboardError> {
    let regions: Api<silo_api::Region> = Api::all(management.clone());
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let list = regions
            .list(&ListParams::default())
            .await
            .map_err(|source| OnboardError::Api {
                action: "listing Regions".to_owned(),
                cluster: "management",
                source,
            })?;
        let waiting: Vec<String> = list
            .items
            .iter()
            .filter(|r| {
                r.spec
                    .cluster
                    .as_ref()
                    .is_some_and(|c| c.kubeconfig_secret == secret)
            })
            .filter(|r| {
                r.status
                    .as_ref()
                    .and_then(|s| s.cluster.as_ref())
                    .and_then(|c| c.secret_version.as_deref())
                    != Some(version)
            })
            .map(|r| r.name_any())
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            eprintln!(
                "warning: {} did not switch to the new credentials within {timeout:?}; the old token is revoked anyway",
                waiting.join(", ")
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Create the anchor Secret, request a token bound to it, and write the kubeconfig Secret;
/// returns the token's expiry and the Secret's new resourceVersion.
async fn issue_token(
    args: &OnboardArgs,
    client: &Client,
    identity: &Identity,
    customer: &CustomerCluster,
    anchor: &Secret,
    secrets: &Api<Secret>,
    secret_name: &str,
) -> Result<(String, String), OnboardError> {
    let anchors: Api<Secret> = Api::namespaced(client.clone(), &identity.identity_namespace);
    let created = anchors
        .create(&PostParams::default(), anchor)
        .await
        .map_err(|source| OnboardError::Api {
            action: format!("creating token anchor Secret {}", anchor.name_any()),
            cluster: "customer",
            source,
        })?;
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(args.token_ttl.as_secs() as i64),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Secret".to_owned()),
                name: created.metadata.name.clone(),
                uid: created.metadata.uid.clone(),
            }),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let accounts: Api<ServiceAccount> =
        Api::namespaced(client.clone(), &identity.identity_namespace);
    let answer = accounts
        .create_token_request(&identity.name(), &PostParams::default(), &request)
        .await
        .map_err(|source| OnboardError::Api {
            action: format!("requesting a token for ServiceAccount {}", identity.name()),
            cluster: "customer",
            source,
        })?;
    let status = answer.status.unwrap_or_default();
    let (Some(token), Some(expires)) = (status.token, status.expiration_timestamp) else {
        return Err(OnboardError::NoToken(identity.name()));
    };
    let expires_at = expires.0.to_string();
    let config = objects::kubeconfig(
        &args.region,
        &customer.server,
        customer.ca_data.as_deref(),
        customer.insecure,
        &token,
    );
    let secret = objects::kubeconfig_secret(
        secret_name,
        &args.operator_namespace,
        &args.region,
        &config,
        &expires_at,
    );
    let mut body =
        serde_json::to_value(&secret).map_err(|e| OnboardError::Invalid(e.to_string()))?;
    body["apiVersion"] = "v1".into();
    body["kind"] = "Secret".into();
    let written = secrets
        .patch(
            secret_name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|source| OnboardError::Api {
            action: format!("writing Secret {}/{secret_name}", args.operator_namespace),
            cluster: "management",
            source,
        })?;
    eprintln!("wrote Secret {}/{secret_name}", args.operator_namespace);
    Ok((expires_at, written.resource_version().unwrap_or_default()))
}

/// Delete every anchor Secret of the identity but `keep`: tokens bound to them stop working.
async fn remove_old_anchors(
    client: &Client,
    identity: &Identity,
    keep: &str,
) -> Result<(), OnboardError> {
    let anchors: Api<Secret> = Api::namespaced(client.clone(), &identity.identity_namespace);
    let params = ListParams::default().labels(&format!("{FOR_REGION}={}", identity.region));
    let list = anchors
        .list(&params)
        .await
        .map_err(|source| OnboardError::Api {
            action: "listing token anchor Secrets".to_owned(),
            cluster: "customer",
            source,
        })?;
    for old in list
        .items
        .iter()
        .map(|s| s.name_any())
        .filter(|n| n != keep)
    {
        match anchors.delete(&old, &DeleteParams::default()).await {
            Ok(_) => eprintln!("deleted old token anchor {old}: its token no longer works"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                return Err(OnboardError::Api {
                    action: format!("deleting old token anchor {old}"),
                    cluster: "customer",
                    source,
                });
            }
        }
    }
    Ok(())
}
