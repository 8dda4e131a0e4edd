//! Command-line flags (every one also settable through its environment variable).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use silo_runtime::LogArgs;
use silo_runtime::args::parse_duration;

/// Reconciles silo.dev ControlPlanes and Regions into running silos.
#[derive(Clone, Debug, Parser)]
#[command(name = "silo-operator", version)]
pub struct Args {
    /// Address serving `/healthz` and `/metrics`.
    #[arg(long, env = "SILO_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Kubeconfig file to use; without it the in-cluster config or `KUBECONFIG` is used.
    #[arg(long, env = "SILO_OPERATOR_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Most reconciles running at once, per controller.
    #[arg(long, env = "SILO_OPERATOR_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,

    /// How often a settled object is re-checked (in-memory only, no requests unless drifted).
    #[arg(long, env = "SILO_OPERATOR_RESYNC", default_value = "10m", value_parser = parse_duration)]
    pub resync: Duration,

    /// Quiet time after a Region or ControlPlane change before every silo's directory is
    /// recomputed; bursts of changes collapse into one pass.
    #[arg(long, env = "SILO_OPERATOR_FLEET_DEBOUNCE", default_value = "500ms", value_parser = parse_duration)]
    pub fleet_debounce: Duration,

    /// Shortest time between two Region status writes that only change condition messages
    /// (the Deployments a rollout still waits for); transitions are written at once.
    #[arg(long, env = "SILO_OPERATOR_STATUS_MESSAGE_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub status_message_interval: Duration,

    /// Name reported on Events (the operator pod's name in a cluster).
    #[arg(long, env = "POD_NAME", default_value = "silo-operator")]
    pub instance: String,

    /// The operator's own namespace, where external stores' Secrets are read from.
    #[arg(long, env = "POD_NAMESPACE", default_value = "silo-system")]
    pub namespace: String,

    /// Take part in leader election on a Lease in the operator's namespace; only the leader
    /// reconciles. Turn off only when exactly one replica runs.
    #[arg(long, env = "SILO_OPERATOR_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,

    /// Name of the leader Lease (in the operator's namespace).
    #[arg(
        long,
        env = "SILO_OPERATOR_LEASE_NAME",
        default_value = "silo-operator"
    )]
    pub lease_name: String,

    /// How long the lease stays valid after its last renewal: the longest a standby waits
    /// after the leader died (whole seconds).
    #[arg(long, env = "SILO_OPERATOR_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// How long the leader keeps reconciling without a successful renewal before it stops
    /// writing and exits; shorter than the lease duration by the tolerated clock skew. The
    /// lease is renewed every half of it.
    #[arg(long, env = "SILO_OPERATOR_LEASE_RENEW_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    pub lease_renew_deadline: Duration,

    #[command(flatten)]
    pub clusters: ClusterArgs,

    /// Without a command the operator runs.
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub log: LogArgs,
}

/// What else the binary does.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Command {
    /// Create the operator's least-privilege identity in a customer-provided cluster, write
    /// its kubeconfig Secret here, and print (or apply) the Region.
    Onboard(crate::onboard::OnboardCommand),
}

/// Customer-provided clusters (Regions with `spec.cluster`).
#[derive(Clone, Debug, clap::Args)]
pub struct ClusterArgs {
    /// How often a Region in a customer-provided cluster is reconciled again, listing its
    /// namespace there to find drift (remote clusters are not watched).
    #[arg(long, env = "SILO_OPERATOR_CLUSTER_RESYNC", default_value = "30s", value_parser = parse_duration)]
    pub cluster_resync: Duration,

    /// Most requests in flight to one customer-provided cluster.
    #[arg(
        long = "cluster-max-in-flight",
        env = "SILO_OPERATOR_CLUSTER_MAX_IN_FLIGHT",
        default_value_t = 4
    )]
    pub cluster_max_in_flight: usize,

    /// Longest wait between two attempts to reach a failing cluster (attempts double from
    /// 1s up to it, with jitter).
    #[arg(long, env = "SILO_OPERATOR_CLUSTER_MAX_BACKOFF", default_value = "30s", value_parser = parse_duration)]
    pub cluster_max_backoff: Duration,

    /// How often the operator reviews again what its identity may do in a customer-provided
    /// cluster (SelfSubjectAccessReviews; always after new credentials).
    #[arg(long, env = "SILO_OPERATOR_CLUSTER_PERMISSION_CHECK", default_value = "10m", value_parser = parse_duration)]
    pub cluster_permission_check: Duration,

    /// How long before a cluster's credentials expire its Regions warn (condition
    /// `CredentialsValid=False` and an Event).
    #[arg(long, env = "SILO_OPERATOR_CREDENTIALS_WARN_BEFORE", default_value = "168h", value_parser = parse_duration)]
    pub credentials_warn_before: Duration,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn help_lists_only_what_the_operator_uses() {
        let help = Args::command().render_long_help().to_string();
        assert!(help.contains("--log-format"));
        // The workloads' directory reload and drain timeout do nothing in the operator.
        assert!(!help.contains("--directory-reload-interval"));
        assert!(!help.contains("--shutdown-timeout"));
    }
}
