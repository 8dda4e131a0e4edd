//! The consumers' store step, event by event against a batch per transaction, on the same
//! kind of events in one process: events per second and Postgres statements (round trips) per
//! event, each with its ratio to the event-by-event baseline.
//!
//! ```text
//! e2e/services/up.sh && set -a && . "${XDG_STATE_HOME:-$HOME/.local/state}/silo/services/env" && set +a
//! cargo bench -p silo-consumers --bench ingest_writes -- --events 5000 --issues 50 --batch 100
//! ```
//!
//! Baseline: what the consumer did before batch writes, per fetched batch the first event of
//! each issue and then the others, concurrently, each with `ingest::save_event` (a transaction
//! of 6-8 statements). Batch: `ingest_batch::save_batch`, one transaction per batch.
//! Statements are counted from sqlx's own statement log (target `sqlx::query`, BEGIN and
//! COMMIT included), so both paths are counted the same way. Every count is checked after
//! each phase.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use chrono::Utc;
use clap::Parser;
use futures::future::try_join_all;
use serde_json::json;
use silo_pipeline_tests::seed;
use silo_store::PgPool;
use silo_store::ingest::{self, NewEvent};
use silo_store::ingest_batch;
use silo_testkit::TestDb;
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context as LayerContext, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(
    name = "ingest_writes",
    about = "Event-by-event vs batch writes of the consumers"
)]
struct Args {
    /// Events per phase.
    #[arg(long, env = "BENCH_EVENTS", default_value_t = 5000)]
    events: usize,
    /// Distinct issues the events fall into.
    #[arg(long, env = "BENCH_ISSUES", default_value_t = 50)]
    issues: usize,
    /// Events per fetched batch (the consumers' --batch-size).
    #[arg(long, env = "BENCH_BATCH", default_value_t = 100)]
    batch: usize,
    /// Ignored: cargo bench passes it.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Counts sqlx's statement log events: one per statement sent to Postgres.
struct CountStatements(Arc<AtomicU64>);

impl<S: Subscriber> Layer<S> for CountStatements {
    fn on_event(&self, event: &Event<'_>, _: LayerContext<'_, S>) {
        if event.metadata().target().starts_with("sqlx::query") {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Phase {
    name: &'static str,
    seconds: f64,
    statements: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.events == 0 || args.issues == 0 || args.batch == 0 {
        bail!("--events, --issues and --batch must be positive");
    }
    let statements = Arc::new(AtomicU64::new(0));
    tracing_subscriber::registry()
        .with(CountStatements(statements.clone()))
        .init();

    let db = TestDb::migrated("silo_ingest_bench", &silo_store::MIGRATOR).await;
    println!(
        "ingest_writes: {} events per phase over {} issues, batches of {}, pool of {} connections",
        args.events,
        args.issues,
        args.batch,
        TestDb::MAX_CONNECTIONS
    );
    let mut phases = Vec::new();
    for (name, batched) in [("event by event", false), ("batch", true)] {
        let (_, project) = seed::project(&db.pool, &format!("bench-{}", phases.len())).await;
        let events = generate(project, &args);
        // Warm-up outside the measurement: connections open, statements prepared.
        write(
            &db.pool,
            &generate(project, &Args { events: 20, ..args }),
            20,
            batched,
        )
        .await?;
        let before = statements.load(Ordering::Relaxed);
        let started = Instant::now();
        write(&db.pool, &events, args.batch, batched).await?;
        let seconds = started.elapsed().as_secs_f64();
        let used = statements.load(Ordering::Relaxed) - before;
        check(&db.pool, project, args.events + 20, args.issues).await?;
        phases.push(Phase {
            name,
            seconds,
            statements: used,
        });
    }

    let base = &phases[0];
    let n = args.events as f64;
    println!(
        "{:<16} {:>10} {:>12} {:>12} {:>14} {:>12}",
        "phase", "seconds", "events/s", "vs baseline", "statements/ev", "vs baseline"
    );
    for p in &phases {
        println!(
            "{:<16} {:>10.2} {:>12.0} {:>11.2}x {:>14.3} {:>11.3}x",
            p.name,
            p.seconds,
            n / p.seconds,
            base.seconds / p.seconds,
            p.statements as f64 / n,
            p.statements as f64 / base.statements as f64
        );
    }
    db.drop_database().await;
    Ok(())
}

/// `events` as the consumer would write them in batches of `batch`.
async fn write(
    pool: &PgPool,
    events: &[NewEvent],
    batch: usize,
    batched: bool,
) -> anyhow::Result<()> {
    for chunk in events.chunks(batch) {
        if batched {
            ingest_batch::save_batch(pool, chunk).await?;
            continue;
        }
        let mut seen = HashMap::new();
        let (firsts, rest): (Vec<&NewEvent>, Vec<&NewEvent>) = chunk
            .iter()
            .partition(|e| seen.insert(e.fingerprint.clone(), ()).is_none());
        for step in [firsts, rest] {
            try_join_all(step.into_iter().map(|e| ingest::save_event(pool, e))).await?;
        }
    }
    Ok(())
}

fn generate(project_id: i64, args: &Args) -> Vec<NewEvent> {
    (0..args.events)
        .map(|i| {
            let kind = format!("BenchError{}", i % args.issues);
            NewEvent {
                project_id,
                event_id: Uuid::new_v4(),
                timestamp: Utc::now(),
                received: Utc::now(),
                title: format!("{kind}: request {i} failed"),
                message: String::new(),
                culprit: "app::handler".into(),
                platform: "rust".into(),
                level: "error".into(),
                environment: Some("production".into()),
                release: Some("app@1.0.0".into()),
                data: json!({"exception": {"values": [{"type": kind, "value": format!("request {i} failed")}]},
                             "tags": {"route": "/api"}}),
                fingerprint: kind,
                group_type: "error".into(),
                metadata: json!({}),
                tags: vec![("environment".into(), "production".into())],
                user: Some(format!("id:{}", i % 97)),
            }
        })
        .collect()
}

/// Every event stored and counted once, in the expected number of issues.
async fn check(pool: &PgPool, project: i64, events: usize, issues: usize) -> anyhow::Result<()> {
    let (stored, seen, groups): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM events WHERE project_id = $1), \
           (SELECT COALESCE(sum(times_seen), 0)::bigint FROM groups WHERE project_id = $1), \
           (SELECT count(*) FROM groups WHERE project_id = $1)",
    )
    .bind(project)
    .fetch_one(pool)
    .await
    .context("count what was stored")?;
    let want = (events as i64, events as i64, issues as i64);
    if (stored, seen, groups) != want {
        bail!("stored {stored} events counted {seen} times in {groups} issues; expected {want:?}");
    }
    Ok(())
}
