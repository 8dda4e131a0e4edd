//! A Region on a Postgres the platform team runs, on the real node: a Secret in the operator's
//! namespace with Service-Binding keys names it; the operator runs no Postgres of its own for
//! that region, its migration Job migrates the external database, an SDK event sent to its
//! relay lands there, and deleting the Region leaves the external database and its data alone.
//! The database serves TLS and the Region checks its certificate (`tls.caBundleKey`,
//! `verify-full`): every session of the region's pods is encrypted.
//! A Secret with a wrong password gives a `MigrationsComplete` condition that names the refusal,
//! and an external Redis that refuses connections an `InfrastructureReady` condition naming
//! Redis, its host and the refusal.
//!
//! Needs what `regions.rs` needs.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use silo_api::Region;
use silo_e2e_pods::fleet;
use silo_e2e_pods::scenario::Scenario;
use silo_e2e_pods::{Error, StepContext, operator, postgres, stores, tls};
use silo_pipeline_tests::api::Api as SiloApi;
use silo_pipeline_tests::sdk::Sdk;

const CONTROL_PLANE: &str = "e2e-external";
const CONTROL_NS: &str = "e2e-external-control";
/// Where the "platform team's" database runs: a namespace of its own, not the region's.
const DATABASE_NS: &str = "e2e-external-db";
const SECRET: &str = "e2e-external-postgres";
/// The same database with a wrong password, and the Region that uses it.
const BAD_SECRET: &str = "e2e-external-postgres-wrong";
const BAD_REGION: &str = "extbad";
/// A Region whose external Redis refuses connections (a port nothing listens on), its Secret,
/// and the Service that leads there.
const REFUSED_REGION: &str = "extredis";
const REFUSED_SECRET: &str = "e2e-external-redis-refused";
const REFUSED_SERVICE: &str = "refused";
const REGION: &str = "ext";
const READY: Duration = fleet::READY;

fn unexpected(message: impl Into<String>) -> Error {
    Error::Unexpected(message.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_runs_on_an_external_postgres() -> Result<(), Error> {
    let scenario = Scenario::start().await?;
    let (client, tools, settings) = (scenario.client.clone(), &scenario.tools, &scenario.settings);
    let apply = PatchParams::apply("silo-e2e-pods").force();

    // A database left by an interrupted run keeps the password it was initialized with.
    let _ = Api::<Namespace>::all(client.clone())
        .delete(DATABASE_NS, &DeleteParams::default())
        .await;
    fleet::wait_namespace_gone(&client, DATABASE_NS).await?;

    // 1. The external database, in a namespace the operator does not manage, and its Secret
    //    (host, port, username, password, database) in the operator's namespace.
    let namespace: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": DATABASE_NS},
    }))
    .map_err(|e| unexpected(e.to_string()))?;
    Api::<Namespace>::all(client.clone())
        .patch(DATABASE_NS, &apply, &Patch::Apply(&namespace))
        .await
        .step("apply the external database's namespace")?;
    // The database serves TLS with a certificate from a CA of its own; the region is told to
    // check it (verify-full) against that CA.
    let host = format!("{}.{DATABASE_NS}.svc", postgres::NAME);
    let server_tls = tls::server_tls(&[&host])?;
    let database =
        postgres::start_with_tls(&client, DATABASE_NS, settings, Some(&server_tls)).await?;
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": operator::NAMESPACE},
        "stringData": {
            "host": host,
            "port": "5432",
            "username": postgres::USER,
            "password": database.password,
            "database": postgres::DATABASE,
            "ca.crt": server_tls.ca_pem,
        },
    }))
    .map_err(|e| unexpected(e.to_string()))?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), operator::NAMESPACE);
    secrets
        .patch(SECRET, &apply, &Patch::Apply(&secret))
        .await
        .step("apply the external Postgres Secret")?;

    // 2. A Region on it: Ready, with managed Redis and Kafka but no Postgres of its own.
    fleet::apply_control_plane(
        &client,
        settings,
        CONTROL_PLANE,
        "SILOED",
        CONTROL_NS,
        &settings.image_tag,
    )
    .await?;
    fleet::apply_region_spec(
        &client,
        REGION,
        json!({
            "snowflakeId": 41,
            // The region's NetworkPolicies deny egress outside its namespace but to what the
            // store's spec names: the database's namespace, on Postgres's port.
            "infrastructure": {"postgres": {"external": {
                "secretName": SECRET,
                "tls": {"caBundleKey": "ca.crt"},
                "egress": [{
                    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": DATABASE_NS}}}],
                    "ports": [{"port": 5432, "protocol": "TCP"}],
                }],
            }}},
        }),
    )
    .await?;
    fleet::wait_region_ready(&client, REGION, READY)
        .await
        .map_err(|e| unexpected(format!("{e}\noperator log:\n{}", operator::logs(tools))))?;
    fleet::wait_control_plane_ready(&client, CONTROL_PLANE, READY).await?;
    let ns = format!("region-{REGION}");
    for (store, expected) in [("postgres", 0), ("redis", 1), ("kafka", 1)] {
        let pods =
            fleet::running_pods(&client, &ns, &format!("app.kubernetes.io/name={store}")).await?;
        assert_eq!(pods.len(), expected, "{ns}: {store} pods {pods:?}");
    }
    let external_psql = |sql: &str| {
        stores::psql_in(
            tools,
            DATABASE_NS,
            &format!("deploy/{}", postgres::NAME),
            postgres::USER,
            postgres::DATABASE,
            sql,
        )
    };
    let migrations: i64 = external_psql("select count(*) from _sqlx_migrations where success")?
        .parse()
        .map_err(|e| unexpected(format!("migration count: {e}")))?;
    assert!(
        migrations > 0,
        "the region's migration Job migrated the external database"
    );
    println!("external database: {migrations} migrations applied by the region's Job");

    // 3. An organization in the region through the gateway; an SDK event to its relay is
    //    grouped, and stored in the external database.
    let token = fleet::secret_value(&client, CONTROL_NS, "silo-bootstrap-token", "token").await?;
    let gateway = tools.port_forward(CONTROL_NS, "svc/web", 8000).await?;
    let api = SiloApi::new(gateway.url.clone(), token.clone());
    fleet::post_until_created(
        &gateway.url,
        &token,
        "/api/0/organizations/",
        json!({"name": "Acme External", "slug": "acme-ext", "region": REGION}),
    )
    .await?;
    api.create_project("acme-ext", "billing").await;
    let key = api.create_key("acme-ext", "billing").await;
    let dsn = key["dsn"]["public"]
        .as_str()
        .ok_or_else(|| unexpected(format!("no DSN in {key}")))?
        .to_owned();
    let relay = tools.port_forward(&ns, "svc/relay", 3000).await?;
    let sender = fleet::envelope_sender(&relay.url, &dsn, &key);
    fleet::wait_accepting(&sender).await?;
    let sdk = Sdk::new(&fleet::dsn_via(&dsn, &relay.url)?);
    let id = sdk.capture_message(
        "invoice failed on the external database",
        sentry::Level::Error,
    );
    assert!(sdk.flush(Duration::from_secs(30)), "the SDK could not send");
    fleet::wait_issue_count(
        &api,
        "acme-ext",
        "billing",
        "invoice failed on the external database",
        1,
    )
    .await
    .map_err(|e| unexpected(format!("{e}\n{}", fleet::silo_logs(tools, &ns))))?;
    let event = format!(
        "select count(*) from events where replace(event_id::text, '-', '') = '{}'",
        id.simple()
    );
    assert_eq!(
        external_psql(&event)?,
        "1",
        "the event is in the external database"
    );
    // Every connection of the region's pods (over TCP; psql here uses the local socket) is
    // encrypted.
    let sessions = |ssl: bool| {
        external_psql(&format!(
            "select count(*) from pg_stat_activity a join pg_stat_ssl s using (pid) \
             where a.usename = '{}' and a.client_addr is not null and s.ssl = {ssl}",
            postgres::USER
        ))
    };
    let (encrypted, plain) = (sessions(true)?, sessions(false)?);
    println!("region sessions on the external database: {encrypted} over TLS, {plain} in clear");
    assert_eq!(plain, "0", "no session of the region is unencrypted");
    assert_ne!(encrypted, "0", "the region's workloads hold TLS sessions");
    drop((relay, gateway));

    // 4. Deleting the Region removes what the operator made, never the external data.
    Api::<Region>::all(client.clone())
        .delete(REGION, &DeleteParams::default())
        .await
        .step("delete the Region")?;
    fleet::wait_namespace_gone(&client, &ns).await?;
    assert_eq!(
        external_psql("select count(*) from organizations where slug = 'acme-ext'")?,
        "1",
        "the external database keeps the region's data"
    );
    assert_eq!(external_psql(&event)?, "1");
    assert!(
        secrets
            .get_opt(SECRET)
            .await
            .step("get the Secret")?
            .is_some(),
        "the platform team's Secret is theirs: the operator leaves it"
    );

    // 5. A wrong password: the migration Job fails, and the Region's condition says why (the
    //    end of the Job's log), not just that it failed.
    let mut wrong = secret.clone();
    wrong.metadata.name = Some(BAD_SECRET.to_owned());
    wrong.string_data = wrong.string_data.map(|mut d| {
        d.insert("password".to_owned(), "not-the-password".to_owned());
        d
    });
    secrets
        .patch(BAD_SECRET, &apply, &Patch::Apply(&wrong))
        .await
        .step("apply a Secret with a wrong password")?;
    fleet::apply_region_spec(
        &client,
        BAD_REGION,
        json!({
            "snowflakeId": 42,
            "infrastructure": {"postgres": {"external": {
                "secretName": BAD_SECRET,
                "egress": [{
                    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": DATABASE_NS}}}],
                    "ports": [{"port": 5432, "protocol": "TCP"}],
                }],
            }}},
        }),
    )
    .await?;
    let refused = fleet::wait_region_condition(
        &client,
        BAD_REGION,
        "MigrationsComplete",
        "MigrationFailed, naming the refused password",
        READY,
        // While the Job retries, its failed pods already name the cause (reason Error); once
        // it has failed for good the reason is MigrationFailed with the same cause.
        |c| {
            c.status == "False"
                && c.reason == "MigrationFailed"
                && c.message.contains("password authentication failed")
        },
    )
    .await?;
    println!(
        "wrong external password: {}: {}",
        refused.reason, refused.message
    );
    // The store itself is named as what is not ready: which store, where, and the class.
    let store = fleet::wait_region_condition(
        &client,
        BAD_REGION,
        "InfrastructureReady",
        "StoreAuthFailed naming the external Postgres and its host",
        READY,
        |c| {
            c.status == "False"
                && c.reason == "StoreAuthFailed"
                && c.message
                    .contains(&format!("external postgres at {host}:5432: auth error"))
        },
    )
    .await?;
    println!(
        "wrong external password: InfrastructureReady {}: {}",
        store.reason, store.message
    );

    // 6. An external Redis that refuses connections: a Service on the database's pod, on a
    //    port nothing listens on. The migration Job's Redis step gives up with the client's
    //    words, and InfrastructureReady names Redis, its host and the refusal.
    let refused_host = format!("{REFUSED_SERVICE}.{DATABASE_NS}.svc");
    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": REFUSED_SERVICE, "namespace": DATABASE_NS},
        "spec": {
            "selector": {"app.kubernetes.io/name": postgres::NAME},
            "ports": [{"name": "redis", "port": 6379, "targetPort": 6379}],
        },
    }))
    .map_err(|e| unexpected(e.to_string()))?;
    Api::<Service>::namespaced(client.clone(), DATABASE_NS)
        .patch(REFUSED_SERVICE, &apply, &Patch::Apply(&service))
        .await
        .step("apply the Service to a port nothing listens on")?;
    let redis_secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": REFUSED_SECRET, "namespace": operator::NAMESPACE},
        "stringData": {"uri": format!("redis://:unused@{refused_host}:6379/0")},
    }))
    .map_err(|e| unexpected(e.to_string()))?;
    secrets
        .patch(REFUSED_SECRET, &apply, &Patch::Apply(&redis_secret))
        .await
        .step("apply the refusing Redis's Secret")?;
    let to_database = json!([{
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": DATABASE_NS}}}],
        "ports": [{"port": 5432, "protocol": "TCP"}, {"port": 6379, "protocol": "TCP"}],
    }]);
    fleet::apply_region_spec(
        &client,
        REFUSED_REGION,
        json!({
            "snowflakeId": 43,
            "infrastructure": {
                "postgres": {"external": {
                    "secretName": SECRET, "tls": {"caBundleKey": "ca.crt"}, "egress": to_database,
                }},
                "redis": {"external": {"secretName": REFUSED_SECRET, "egress": to_database}},
            },
        }),
    )
    .await?;
    let unreachable = fleet::wait_region_condition(
        &client,
        REFUSED_REGION,
        "InfrastructureReady",
        "StoreUnreachable naming the external Redis, its host and the refusal",
        READY,
        |c| {
            c.status == "False"
                && c.reason == "StoreUnreachable"
                && c.message.contains(&format!(
                    "external redis at {refused_host}:6379: refused error"
                ))
                && c.message.contains("Connection refused")
        },
    )
    .await?;
    println!(
        "refusing external Redis: InfrastructureReady {}: {}",
        unreachable.reason, unreachable.message
    );
    assert!(
        !unreachable.message.contains("unused@"),
        "no credentials in status: {}",
        unreachable.message
    );

    operator::still_ready(&client).await?;
    fleet::clean_fleet(&client).await?;
    secrets
        .delete(REFUSED_SECRET, &DeleteParams::default())
        .await
        .step("delete the refusing Redis's Secret")?;
    secrets
        .delete(BAD_SECRET, &DeleteParams::default())
        .await
        .step("delete the wrong-password Secret")?;
    secrets
        .delete(SECRET, &DeleteParams::default())
        .await
        .step("delete the external Postgres Secret")?;
    Api::<Namespace>::all(client.clone())
        .delete(DATABASE_NS, &DeleteParams::default())
        .await
        .step("delete the external database's namespace")?;
    Ok(())
}
