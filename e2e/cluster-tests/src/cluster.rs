//! Connect to a cluster named by a kubeconfig environment variable.

use std::path::PathBuf;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Which of the two local clusters a test talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// `SILO_KUBECONFIG`, or `KUBECONFIG` when that is unset; started by `up.sh`.
    Primary,
    /// `SILO_KUBECONFIG_2`; a second, independent cluster started by `up.sh silo-2`.
    Secondary,
}

impl Which {
    fn variables(self) -> &'static [&'static str] {
        match self {
            Which::Primary => &["SILO_KUBECONFIG", "KUBECONFIG"],
            Which::Secondary => &["SILO_KUBECONFIG_2"],
        }
    }

    fn up_command(self) -> &'static str {
        match self {
            Which::Primary => {
                "e2e/cluster/up.sh && export SILO_KUBECONFIG=<state dir>/clusters/silo/kubeconfig"
            }
            Which::Secondary => {
                "e2e/cluster/up.sh silo-2 && export SILO_KUBECONFIG_2=<state dir>/clusters/silo-2/kubeconfig"
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no cluster configured: set {vars}; start a local cluster with `{up}` \
         (state dir: $SILO_STATE_DIR or ~/.local/state/silo)"
    )]
    NotConfigured { vars: String, up: &'static str },
    #[error("cannot read kubeconfig {path} (from {var}): {source}; is the cluster up? run `{up}`")]
    Kubeconfig {
        var: &'static str,
        path: PathBuf,
        up: &'static str,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("cannot build a client from kubeconfig {path}: {source}")]
    Client {
        path: PathBuf,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the API server in kubeconfig {path} does not answer: {source}; is the cluster up? run `{up}`"
    )]
    Unreachable {
        path: PathBuf,
        up: &'static str,
        #[source]
        source: kube::Error,
    },
}

/// A connected cluster and where its configuration came from.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    pub kubeconfig: PathBuf,
    /// The client configuration, for clients with other credentials on the same server.
    pub config: kube::Config,
}

/// Connect to the cluster named by the environment, checking that its API server answers.
pub async fn connect(which: Which) -> Result<Cluster, Error> {
    let up = which.up_command();
    let (var, path) = which
        .variables()
        .iter()
        .find_map(|var| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(|v| (*var, PathBuf::from(v)))
        })
        .ok_or_else(|| Error::NotConfigured {
            vars: which.variables().join(" or "),
            up,
        })?;
    let kubeconfig = Kubeconfig::read_from(&path).map_err(|source| Error::Kubeconfig {
        var,
        path: path.clone(),
        up,
        source,
    })?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| Error::Kubeconfig {
            var,
            path: path.clone(),
            up,
            source,
        })?;
    let client = Client::try_from(config.clone()).map_err(|source| Error::Client {
        path: path.clone(),
        source,
    })?;
    client
        .apiserver_version()
        .await
        .map_err(|source| Error::Unreachable {
            path: path.clone(),
            up,
            source,
        })?;
    Ok(Cluster {
        client,
        kubeconfig: path,
        config,
    })
}
