//! The API server itself rejects invalid Regions, with messages that say what is wrong.

mod common;

use common::*;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use silo_api::Region;

fn region_json(name: &str, spec: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "silo.dev/v1alpha1",
        "kind": "Region",
        "metadata": {"name": name},
        "spec": spec,
    })
}

async fn rejection(api: &Api<Region>, body: serde_json::Value) -> String {
    let region: Region = match serde_json::from_value(body.clone()) {
        Ok(r) => r,
        // Bodies the Rust type cannot even hold are sent as raw JSON.
        Err(_) => {
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let err = api
                .patch(
                    &name,
                    &PatchParams::apply("silo-tests"),
                    &Patch::Apply(&body),
                )
                .await
                .expect_err("the API server must reject this Region");
            return err.to_string();
        }
    };
    api.create(&PostParams::default(), &region)
        .await
        .expect_err("the API server must reject this Region")
        .to_string()
}

#[tokio::test]
async fn invalid_regions_are_rejected_by_the_api_server() {
    let client = admin_client().await;
    install_crds(&client).await;
    let api: Api<Region> = Api::all(client);

    let message = rejection(
        &api,
        region_json("it-badid", serde_json::json!({"snowflakeId": 5000})),
    )
    .await;
    assert!(
        message.contains("snowflakeId") && message.contains("4095"),
        "{message}"
    );

    let message = rejection(
        &api,
        region_json(
            "it-badcat",
            serde_json::json!({"snowflakeId": 9, "category": "SHARED"}),
        ),
    )
    .await;
    assert!(
        message.contains("category") && message.contains("MULTI_TENANT"),
        "{message}"
    );

    let long = "a".repeat(41);
    let message = rejection(
        &api,
        region_json(&long, serde_json::json!({"snowflakeId": 9})),
    )
    .await;
    assert!(message.contains("at most 40 characters"), "{message}");

    // TLS and SASL settings of one store cannot go on another.
    let message = rejection(
        &api,
        region_json(
            "it-redis-sslmode",
            serde_json::json!({"snowflakeId": 9, "infrastructure": {"redis": {"external": {
                "secretName": "cache", "tls": {"sslMode": "verify-full"},
            }}}}),
        ),
    )
    .await;
    assert!(
        message.contains("redis.external.tls.sslMode") && message.contains("Postgres"),
        "{message}"
    );
    let message = rejection(
        &api,
        region_json(
            "it-pg-sasl",
            serde_json::json!({"snowflakeId": 9, "infrastructure": {"postgres": {"external": {
                "secretName": "db", "sasl": {"mechanism": "PLAIN"},
            }}}}),
        ),
    )
    .await;
    assert!(message.contains("Kafka's setting"), "{message}");
    let message = rejection(
        &api,
        region_json(
            "it-pg-sslmode",
            serde_json::json!({"snowflakeId": 9, "infrastructure": {"postgres": {"external": {
                "secretName": "db", "tls": {"sslMode": "allow"},
            }}}}),
        ),
    )
    .await;
    assert!(message.contains("sslMode"), "{message}");

    // snowflakeId cannot change once set.
    let _ = api.delete("it-immutable", &DeleteParams::default()).await;
    let region: Region = serde_json::from_value(region_json(
        "it-immutable",
        serde_json::json!({"snowflakeId": 4000}),
    ))
    .expect("fixture");
    let _ = api
        .patch(
            "it-immutable",
            &PatchParams::apply("silo-tests").force(),
            &Patch::Apply(&region),
        )
        .await
        .expect("create a valid Region");
    let err = api
        .patch(
            "it-immutable",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"snowflakeId": 4001}})),
        )
        .await
        .expect_err("changing snowflakeId must be rejected");
    assert!(
        err.to_string().contains("snowflakeId is immutable"),
        "{err}"
    );
    api.delete("it-immutable", &DeleteParams::default())
        .await
        .expect("delete test Region");
}

#[tokio::test]
async fn a_remote_region_must_publish_an_external_address() {
    let client = admin_client().await;
    install_crds(&client).await;
    let api: Api<Region> = Api::all(client);
    let cluster = serde_json::json!({"kubeconfigSecret": "it-kubeconfig"});

    for spec in [
        serde_json::json!({"snowflakeId": 9, "cluster": cluster}),
        serde_json::json!({"snowflakeId": 9, "cluster": cluster,
            "address": "http://web.region-it-remote.svc:8000"}),
        serde_json::json!({"snowflakeId": 9, "cluster": cluster,
            "address": "http://web.region-it-remote.svc.cluster.local"}),
    ] {
        let message = rejection(&api, region_json("it-remote", spec)).await;
        assert!(
            message.contains("spec.address") && message.contains(".svc"),
            "{message}"
        );
    }
    let message = rejection(
        &api,
        region_json(
            "it-remote",
            serde_json::json!({"snowflakeId": 9, "address": "https://it.example",
                "cluster": {"kubeconfigSecret": "it-kubeconfig", "namespacePrefix": "Bad_"}}),
        ),
    )
    .await;
    assert!(message.contains("namespacePrefix"), "{message}");

    let valid: Region = serde_json::from_value(region_json(
        "it-remote",
        serde_json::json!({"snowflakeId": 9, "address": "https://it.example", "cluster": cluster}),
    ))
    .expect("fixture");
    api.create(
        &PostParams {
            dry_run: true,
            ..PostParams::default()
        },
        &valid,
    )
    .await
    .expect("a remote Region with an external address is accepted");
}
