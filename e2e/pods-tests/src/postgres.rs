//! A Postgres pod for the control silo (the locally built Debian-based image), its Service and
//! the Secret the ControlPlane's `control.database` references.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::pods::wait_ready_on_real_node;
use crate::settings::Settings;
use crate::tls::ServerTls;
use crate::{Error, StepContext};

pub const USER: &str = "silo";
pub const DATABASE: &str = "silo";
/// Name of the Service, the Deployment and the Secret key holder.
pub const NAME: &str = "postgres";
/// Secret holding the control database URL under key `url`.
pub const SECRET: &str = "control-database";

/// The running database: its password and the URL pods use.
pub struct Postgres {
    pub password: String,
    pub url: String,
}

fn apply_params() -> PatchParams {
    PatchParams::apply("silo-e2e-pods").force()
}

/// Start Postgres in `namespace` and wait until it accepts connections (readiness probe).
pub async fn start(
    client: &Client,
    namespace: &str,
    settings: &Settings,
) -> Result<Postgres, Error> {
    start_with_tls(client, namespace, settings, None).await
}

/// Name of the Secret holding the server's certificate and key when it serves TLS.
pub const TLS_SECRET: &str = "postgres-tls";

/// [`start`], serving TLS with `tls`'s certificate when given (`ssl=on`; clients choose).
pub async fn start_with_tls(
    client: &Client,
    namespace: &str,
    settings: &Settings,
    tls: Option<&ServerTls>,
) -> Result<Postgres, Error> {
    let password = hex::encode(rand::random::<[u8; 16]>());
    let url = format!("postgres://{USER}:{password}@{NAME}.{namespace}.svc:5432/{DATABASE}");
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": namespace},
        "stringData": {"url": url, "password": password},
    }))
    .map_err(|e| Error::Unexpected(e.to_string()))?;
    Api::<Secret>::namespaced(client.clone(), namespace)
        .patch(SECRET, &apply_params(), &Patch::Apply(&secret))
        .await
        .step("apply the database Secret")?;
    let labels = json!({"app.kubernetes.io/name": NAME});
    let mut deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": settings.node_selector(),
                    "tolerations": settings.tolerations(),
                    "automountServiceAccountToken": false,
                    "containers": [{
                        "name": "postgres",
                        "image": settings.postgres_image,
                        "imagePullPolicy": settings.pull_policy,
                        "env": [
                            {"name": "POSTGRES_USER", "value": USER},
                            {"name": "POSTGRES_DB", "value": DATABASE},
                            {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "password"}}},
                        ],
                        "ports": [{"name": "postgres", "containerPort": 5432}],
                        "readinessProbe": {"tcpSocket": {"port": "postgres"}, "periodSeconds": 2},
                        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
                        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
                    }],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    });
    if let Some(tls) = tls {
        serve_tls(client, namespace, settings, tls, &mut deployment).await?;
    }
    let deployment: Deployment =
        serde_json::from_value(deployment).map_err(|e| Error::Unexpected(e.to_string()))?;
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .patch(NAME, &apply_params(), &Patch::Apply(&deployment))
        .await
        .step("apply the Postgres Deployment")?;
    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {"selector": labels, "ports": [{"name": "postgres", "port": 5432, "targetPort": "postgres"}]},
    }))
    .map_err(|e| Error::Unexpected(e.to_string()))?;
    Api::<Service>::namespaced(client.clone(), namespace)
        .patch(NAME, &apply_params(), &Patch::Apply(&service))
        .await
        .step("apply the Postgres Service")?;

    wait_ready_on_real_node(
        client,
        namespace,
        &format!("app.kubernetes.io/name={NAME}"),
        "Postgres to be Ready on a real node",
    )
    .await?;
    Ok(Postgres { password, url })
}

/// Make `deployment` serve TLS: the certificate and key in a Secret, copied by an init
/// container into a volume the postgres user owns (postgres refuses a key others can read),
/// and `ssl=on` with those files.
async fn serve_tls(
    client: &Client,
    namespace: &str,
    settings: &Settings,
    tls: &ServerTls,
    deployment: &mut serde_json::Value,
) -> Result<(), Error> {
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": TLS_SECRET, "namespace": namespace},
        "stringData": {"server.crt": tls.cert_pem, "server.key": tls.key_pem},
    }))
    .map_err(|e| Error::Unexpected(e.to_string()))?;
    Api::<Secret>::namespaced(client.clone(), namespace)
        .patch(TLS_SECRET, &apply_params(), &Patch::Apply(&secret))
        .await
        .step("apply the database's TLS Secret")?;
    let spec = &mut deployment["spec"]["template"]["spec"];
    spec["initContainers"] = json!([{
        "name": "tls",
        "image": settings.postgres_image,
        "imagePullPolicy": settings.pull_policy,
        "command": ["sh", "-c", "cp /tls-secret/server.crt /tls-secret/server.key /tls/ && chown postgres:postgres /tls/server.crt /tls/server.key && chmod 0600 /tls/server.key"],
        "volumeMounts": [
            {"name": "tls-secret", "mountPath": "/tls-secret", "readOnly": true},
            {"name": "tls", "mountPath": "/tls"},
        ],
    }]);
    let container = &mut spec["containers"][0];
    container["args"] = json!([
        "postgres",
        "-c",
        "ssl=on",
        "-c",
        "ssl_cert_file=/tls/server.crt",
        "-c",
        "ssl_key_file=/tls/server.key",
    ]);
    if let Some(mounts) = container["volumeMounts"].as_array_mut() {
        mounts.push(json!({"name": "tls", "mountPath": "/tls", "readOnly": true}));
    }
    if let Some(volumes) = spec["volumes"].as_array_mut() {
        volumes.push(json!({"name": "tls-secret", "secret": {"secretName": TLS_SECRET}}));
        volumes.push(json!({"name": "tls", "emptyDir": {}}));
    }
    Ok(())
}
