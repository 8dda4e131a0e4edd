//! How every fleet scenario starts: the primary cluster, its tools and settings, the operator
//! installed by Helm (uninstalled when the scenario drops, even after a failed assertion), and
//! no ControlPlane or Region left from an earlier run.

use kube::Client;
use silo_e2e_cluster::cluster::{self, Which};

use crate::kubectl::{OnDrop, Tools};
use crate::settings::Settings;
use crate::{Error, fleet, operator};

pub struct Scenario {
    pub client: Client,
    pub tools: Tools,
    pub settings: Settings,
    _uninstall: OnDrop,
}

impl Scenario {
    pub async fn start() -> Result<Self, Error> {
        let cluster = cluster::connect(Which::Primary).await?;
        let client = cluster.client.clone();
        let tools = Tools::new(&cluster.kubeconfig);
        let settings = Settings::from_env();
        let (uninstall, _) = operator::install(&client, &tools, &settings).await?;
        fleet::clean_fleet(&client).await?;
        Ok(Self {
            client,
            tools,
            settings,
            _uninstall: uninstall,
        })
    }
}
