//! A MONOLITH ControlPlane serves the whole flow from one namespace: its own Postgres, Redis
//! and Kafka, migrations, an organization and a DSN through the monolith's web, events from
//! the official SDK through its relay, the issue read back.
//!
//! Needs what `regions.rs` needs.

use std::time::Duration;

use serde_json::json;
use silo_e2e_pods::fleet;
use silo_e2e_pods::scenario::Scenario;
use silo_e2e_pods::{Error, operator};
use silo_pipeline_tests::api::Api as SiloApi;
use silo_pipeline_tests::sdk::Sdk;

const CONTROL_PLANE: &str = "e2e-monolith";
const NAMESPACE: &str = "e2e-monolith";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monolith_serves_sdk_events_from_one_namespace() -> Result<(), Error> {
    let scenario = Scenario::start().await?;
    let (client, tools, settings) = (scenario.client.clone(), &scenario.tools, &scenario.settings);

    fleet::apply_control_plane(
        &client,
        settings,
        CONTROL_PLANE,
        "MONOLITH",
        NAMESPACE,
        &settings.image_tag,
    )
    .await?;
    let cp = fleet::wait_control_plane_ready(&client, CONTROL_PLANE, fleet::READY)
        .await
        .map_err(|e| Error::Unexpected(format!("{e}\noperator log:\n{}", operator::logs(tools))))?;
    let conditions = &cp.status.as_ref().expect("status").conditions;
    for condition in [
        "InfrastructureReady",
        "MigrationsComplete",
        "WorkloadsReady",
    ] {
        assert!(
            fleet::true_since(conditions, condition).is_some(),
            "{condition} in {conditions:?}"
        );
    }
    for store in ["postgres", "redis", "kafka"] {
        let pods = fleet::running_pods(
            &client,
            NAMESPACE,
            &format!("app.kubernetes.io/name={store}"),
        )
        .await?;
        assert_eq!(pods.len(), 1, "{store}: {pods:?}");
    }

    let token = fleet::secret_value(&client, NAMESPACE, "silo-bootstrap-token", "token").await?;
    let web = tools.port_forward(NAMESPACE, "svc/web", 8000).await?;
    let api = SiloApi::new(web.url.clone(), token);
    api.post(
        "/api/0/organizations/",
        json!({"name": "Solo", "slug": "solo"}),
    )
    .await;
    api.create_project("solo", "app").await;
    let key = api.create_key("solo", "app").await;
    let dsn = key["dsn"]["public"].as_str().unwrap_or_default().to_owned();
    assert!(
        dsn.contains(&format!("relay.{NAMESPACE}.svc:3000")),
        "{dsn}"
    );

    let relay = tools.port_forward(NAMESPACE, "svc/relay", 3000).await?;
    let sender = fleet::envelope_sender(&relay.url, &dsn, &key);
    // The SDK drops what relay refuses: send once relay accepts (its project config loaded).
    fleet::wait_accepting(&sender).await?;
    let sdk = Sdk::new(&fleet::dsn_via(&dsn, &relay.url)?);
    for _ in 0..2 {
        sdk.capture_message("monolith checkout failed", sentry::Level::Error);
    }
    assert!(sdk.flush(Duration::from_secs(30)), "the SDK could not send");
    let issue = fleet::wait_issue_count(&api, "solo", "app", "monolith checkout failed", 2)
        .await
        .map_err(|e| Error::Unexpected(format!("{e}\n{}", fleet::silo_logs(tools, NAMESPACE))))?;
    assert_eq!(issue["count"], "2", "{issue}");

    fleet::clean_fleet(&client).await?;
    Ok(())
}
