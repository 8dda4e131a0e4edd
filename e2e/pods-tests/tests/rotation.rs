//! Password rotation of a Region's managed Postgres and Redis under a steady event load, on
//! the real node: `spec.rotateCredentials` asks for it, the operator sets the new passwords
//! while the old ones work, moves the connection Secrets, rolls every workload and retires the
//! old passwords. Every envelope sent meanwhile (each a unique event id, from the host through
//! relay's Service) is answered 200 and stored exactly once; the old passwords no longer
//! authenticate from inside the namespace, the new ones do. A request naming Kafka or an
//! unknown store gets a condition naming the valid stores.
//!
//! Needs what `regions.rs` needs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use silo_api::{Region, RotationPhase};
use silo_e2e_pods::kubectl::{ToolError, Tools};
use silo_e2e_pods::scenario::Scenario;
use silo_e2e_pods::wait::{self, Check};
use silo_e2e_pods::{Error, StepContext, fleet, operator};
use silo_pipeline_tests::api::Api as SiloApi;
use silo_pipeline_tests::sdk::{EnvelopeSender, SendError, envelope_bytes};
use tokio::sync::Mutex;

const CONTROL_PLANE: &str = "e2e-rotation";
const CONTROL_NS: &str = "e2e-rotation-control";
const REGION: &str = "rot";
const NAMESPACE: &str = "region-rot";
const SNOWFLAKE_ID: i32 = 41;
/// Envelopes per second the load sends.
const RATE: u64 = 25;
/// How long one envelope may be retried on 429/503 before it counts as failed.
const RETRY_FOR: Duration = Duration::from_secs(30);
const MESSAGE: &str = "rotation load";

fn unexpected(message: impl Into<String>) -> Error {
    Error::Unexpected(message.into())
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    /// Event ids relay answered 200 for.
    accepted: Vec<String>,
    /// Answers 429/503 (or no answer) that were retried, by status.
    retried: BTreeMap<String, u64>,
    /// Envelopes never answered 200: their last answer.
    failed: Vec<String>,
}

/// Send one envelope (a unique event id); retry 429, 5xx and no answer for [`RETRY_FOR`],
/// counting each retry.
async fn send_one(sender: &EnvelopeSender, tally: &Mutex<Tally>) {
    let mut event = sentry::protocol::Event::new();
    event.message = Some(MESSAGE.to_owned());
    event.level = sentry::Level::Error;
    event.platform = "rust".into();
    let id = event.event_id.simple().to_string();
    let body = envelope_bytes(event);
    let start = Instant::now();
    loop {
        match sender.try_send(body.clone()).await {
            Ok(()) => {
                tally.lock().await.accepted.push(id);
                return;
            }
            Err(e) if e.is_retryable() && start.elapsed() < RETRY_FOR => {
                *tally.lock().await.retried.entry(e.kind()).or_insert(0) += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                let why = match &e {
                    SendError::Status { status, body } => format!("{status}: {body}"),
                    SendError::Transport(t) => format!("transport: {t}"),
                };
                tally.lock().await.failed.push(format!("{id}: {why}"));
                return;
            }
        }
    }
}

/// Send [`RATE`] envelopes a second, each on its own task, until `stop`.
async fn load(sender: EnvelopeSender, stop: Arc<AtomicBool>) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let (sender, tally) = (sender.clone(), tally.clone());
        tasks.spawn(async move { send_one(&sender, &tally).await });
    }
    while tasks.join_next().await.is_some() {}
    Arc::try_unwrap(tally)
        .map(Mutex::into_inner)
        .unwrap_or_default()
}

/// `psql -c 'select 1'` over TCP from inside the namespace (in the Postgres pod, to its own
/// address) as `user` with `password`.
fn psql_tcp(tools: &Tools, user: &str, password: &str) -> Result<String, ToolError> {
    let env = format!("PGPASSWORD={password}");
    tools.kubectl(&[
        "exec",
        "-n",
        NAMESPACE,
        "postgres-0",
        "-c",
        "postgres",
        "--",
        "env",
        &env,
        "psql",
        "-h",
        "127.0.0.1",
        "-U",
        user,
        "-d",
        "silo",
        "-tAc",
        "select 1",
    ])
}

/// `redis-cli PING` in the Redis pod authenticating with `password`.
fn redis_ping(tools: &Tools, password: &str) -> String {
    let env = format!("REDISCLI_AUTH={password}");
    tools
        .kubectl(&[
            "exec",
            "-n",
            NAMESPACE,
            "redis-0",
            "-c",
            "redis",
            "--",
            "env",
            &env,
            "redis-cli",
            "-h",
            "127.0.0.1",
            "ping",
        ])
        .unwrap_or_else(|e| e.to_string())
}

/// How many rows of `events` hold each of `ids`: (rows, distinct ids).
fn stored(tools: &Tools, ids: &[String]) -> Result<(u64, u64), Error> {
    let list = ids
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    let sql = format!(
        "select count(*) || ' ' || count(distinct event_id) from events where replace(event_id::text, '-', '') in ({list})"
    );
    let out = silo_e2e_pods::stores::psql(tools, NAMESPACE, &sql)?;
    let mut parts = out.split_whitespace().map(|n| n.parse::<u64>());
    match (parts.next(), parts.next()) {
        (Some(Ok(rows)), Some(Ok(distinct))) => Ok((rows, distinct)),
        _ => Err(unexpected(format!("counting stored events: {out}"))),
    }
}

async fn rotation_status(client: &Client) -> Result<Region, Error> {
    Ok(Api::<Region>::all(client.clone())
        .get(REGION)
        .await
        .step("read the Region")?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passwords_rotate_under_load_without_a_failed_or_lost_event() -> Result<(), Error> {
    let scenario = Scenario::start().await?;
    let (client, tools, settings) = (scenario.client.clone(), &scenario.tools, &scenario.settings);

    // 1. A ControlPlane and Region `rot`, Ready; a project and its key through the gateway.
    fleet::apply_control_plane(
        &client,
        settings,
        CONTROL_PLANE,
        "SILOED",
        CONTROL_NS,
        &settings.image_tag,
    )
    .await?;
    fleet::apply_region(&client, REGION, SNOWFLAKE_ID).await?;
    fleet::wait_region_ready(&client, REGION, fleet::READY)
        .await
        .map_err(|e| unexpected(format!("{e}\noperator log:\n{}", operator::logs(tools))))?;
    fleet::wait_control_plane_ready(&client, CONTROL_PLANE, fleet::READY).await?;
    let token = fleet::secret_value(&client, CONTROL_NS, "silo-bootstrap-token", "token").await?;
    let gateway = tools.port_forward(CONTROL_NS, "svc/web", 8000).await?;
    let api = SiloApi::new(gateway.url.clone(), token.clone());
    fleet::post_until_created(
        &gateway.url,
        &token,
        "/api/0/organizations/",
        json!({"name": "rot", "slug": "rot", "region": REGION}),
    )
    .await?;
    api.create_project("rot", "load").await;
    let key = api.create_key("rot", "load").await;
    let dsn = key["dsn"]["public"].as_str().unwrap_or_default().to_owned();

    // 2. Relay through its Service from the host (kube-proxy spreads over the pods and follows
    //    the roll; a port-forward would stick to one pod).
    let relay_ip = Api::<Service>::namespaced(client.clone(), NAMESPACE)
        .get("relay")
        .await
        .step("read relay's Service")?
        .spec
        .and_then(|s| s.cluster_ip)
        .ok_or_else(|| unexpected("relay's Service has no cluster IP"))?;
    let sender = fleet::envelope_sender(&format!("http://{relay_ip}:3000"), &dsn, &key);
    fleet::wait_accepting(&sender).await?;

    let old_pg_user =
        fleet::secret_value(&client, NAMESPACE, "postgres-credentials", "username").await?;
    let old_pg =
        fleet::secret_value(&client, NAMESPACE, "postgres-credentials", "password").await?;
    let old_redis =
        fleet::secret_value(&client, NAMESPACE, "redis-credentials", "password").await?;
    assert_eq!(psql_tcp(tools, &old_pg_user, &old_pg)?.trim(), "1");

    // 3. Steady load, then the rotation of every managed store; wait until it is done.
    let stop = Arc::new(AtomicBool::new(false));
    let load_task = tokio::spawn(load(sender.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(5)).await; // load before the rotation, not a wait on state
    let started = Instant::now();
    fleet::apply_region_spec(
        &client,
        REGION,
        json!({"snowflakeId": SNOWFLAKE_ID, "rotateCredentials": {"token": "rot-1"}}),
    )
    .await?;
    let done = fleet::wait_region_condition(
        &client,
        REGION,
        "CredentialsRotated",
        "True for token rot-1",
        Duration::from_secs(600),
        |c| c.status == "True" && c.message.contains("rot-1"),
    )
    .await;
    let duration = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let tally = load_task
        .await
        .map_err(|e| unexpected(format!("load task: {e}")))?;
    let done = done.map_err(|e| {
        unexpected(format!(
            "{e}\noperator log:\n{}\n{}",
            operator::logs(tools),
            fleet::silo_logs(tools, NAMESPACE)
        ))
    })?;
    println!("CredentialsRotated: {}: {}", done.reason, done.message);
    let sent = tally.accepted.len() + tally.failed.len();
    println!(
        "figure: password rotation of postgres and redis under {RATE} envelopes/s took {:.1} s; envelopes sent {sent}, answered 200 {}, failed {}, retried answers {:?}",
        duration.as_secs_f64(),
        tally.accepted.len(),
        tally.failed.len(),
        tally.retried
    );
    assert!(
        tally.failed.is_empty(),
        "failed envelopes: {:?}",
        &tally.failed[..tally.failed.len().min(10)]
    );
    let region = rotation_status(&client).await?;
    let credentials = region.status.map(|s| s.credentials).unwrap_or_default();
    for store in ["postgres", "redis"] {
        let entry = credentials
            .iter()
            .find(|c| c.store == store)
            .ok_or_else(|| unexpected(format!("no status.credentials entry for {store}")))?;
        assert_eq!(entry.phase, RotationPhase::OldRetired, "{entry:?}");
        assert_eq!(entry.token, "rot-1");
        println!("status.credentials: {entry:?}");
    }

    // 4. Every accepted event is stored exactly once.
    let accepted = tally.accepted.len() as u64;
    let counts = wait::until(
        "every accepted event to be stored",
        Duration::from_secs(180),
        || async {
            Ok(match stored(tools, &tally.accepted) {
                Ok((rows, distinct)) if distinct >= accepted => Check::Done((rows, distinct)),
                Ok((_, distinct)) => Check::Pending(format!("{distinct} of {accepted} stored")),
                Err(e) => Check::Pending(e.to_string()),
            })
        },
    )
    .await?;
    println!(
        "figure: events accepted during the rotation {accepted}, stored {} (rows {}), lost {}",
        counts.1,
        counts.0,
        accepted - counts.1.min(accepted)
    );
    assert_eq!(counts, (accepted, accepted), "(rows, distinct ids) stored");

    // 5. The old passwords no longer authenticate; the new ones do.
    let new_pg_user =
        fleet::secret_value(&client, NAMESPACE, "postgres-credentials", "username").await?;
    let new_pg =
        fleet::secret_value(&client, NAMESPACE, "postgres-credentials", "password").await?;
    let new_redis =
        fleet::secret_value(&client, NAMESPACE, "redis-credentials", "password").await?;
    assert_ne!(new_pg, old_pg);
    assert_ne!(new_redis, old_redis);
    println!("postgres login {old_pg_user} -> {new_pg_user}");
    match psql_tcp(tools, &old_pg_user, &old_pg) {
        Err(ToolError::Failed { stderr, .. })
            if stderr.contains("password authentication failed") => {}
        other => panic!("the old Postgres password still authenticates: {other:?}"),
    }
    assert_eq!(psql_tcp(tools, &new_pg_user, &new_pg)?.trim(), "1");
    let old = redis_ping(tools, &old_redis);
    assert!(!old.contains("PONG"), "the old Redis password: {old}");
    assert_eq!(redis_ping(tools, &new_redis).trim(), "PONG");
    // No rotation Job is left behind; the Secrets hold no old or next password.
    let jobs = Api::<Job>::namespaced(client.clone(), NAMESPACE);
    wait::until(
        "rotation Jobs to be removed",
        Duration::from_secs(60),
        || async {
            let left: Vec<String> = jobs
                .list(&ListParams::default().labels("silo.dev/rotation"))
                .await?
                .iter()
                .map(|j| j.name_any())
                .collect();
            Ok(if left.is_empty() {
                Check::Done(())
            } else {
                Check::Pending(format!("{left:?}"))
            })
        },
    )
    .await?;
    for name in ["postgres-credentials", "redis-credentials"] {
        for key in ["previous-password", "next-password"] {
            assert!(
                fleet::secret_value(&client, NAMESPACE, name, key)
                    .await
                    .is_err(),
                "{name} still holds {key}"
            );
        }
    }
    println!("old passwords refused, new ones accepted, rotation Jobs and old keys gone");

    // 6. Bad requests: Kafka has no password, an unknown name is named; both list the valid.
    for (stores, expected) in [(json!(["kafka"]), "kafka"), (json!(["mysql"]), "\"mysql\"")] {
        fleet::apply_region_spec(
            &client,
            REGION,
            json!({"snowflakeId": SNOWFLAKE_ID, "rotateCredentials": {"token": "rot-2", "stores": stores}}),
        )
        .await?;
        let c = fleet::wait_region_condition(
            &client,
            REGION,
            "CredentialsRotated",
            "InvalidRotation",
            Duration::from_secs(60),
            |c| c.reason == "InvalidRotation",
        )
        .await?;
        assert!(c.message.contains(expected), "{}", c.message);
        assert!(
            c.message.contains("valid: postgres, redis"),
            "{}",
            c.message
        );
        println!("rotateCredentials.stores {stores}: {}", c.message);
    }

    fleet::clean_fleet(&client).await?;
    Ok(())
}
