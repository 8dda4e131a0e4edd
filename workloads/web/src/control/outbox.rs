//! The region's outbox drain: delivers `region_outbox` messages to the control silo.
//!
//! ```text
//!  wake (local write) or every interval ─► pending_shards (oldest first)
//!    per shard: tx { advisory lock (skip if another replica drains it)
//!                    batch in id order ─► sink ─► receipts ─► delete delivered } commit
//!    sink: REGION   ─► RPC outbox/apply at SENTRY_CONTROL_ADDRESS (retries, then backoff)
//!          MONOLITH ─► control_directory::apply in this process
//!  failure ─► shard's first message gets attempts+1 and last_error; the whole pass backs off,
//!             so a control outage leaves the backlog in place until it returns
//! ```
//!
//! The control silo records each (region, outbox id) it applied, so a batch delivered twice
//! (acknowledgement lost, two replicas) changes nothing the second time. Messages of one shard
//! (organization) are delivered strictly in order: a failed batch stops its shard.

use std::time::Duration;

use silo_contract::SiloMode;
use silo_runtime::{Backoff, Shutdown};
use silo_store::control_directory::{self, InboundMessage, Receipt};
use silo_store::outbox::{self, OutboxRow};
use silo_store::{PgPool, StoreError};

use super::CrossSilo;
use super::rpc::{ApplyOutboxArgs, ApplyOutboxValue};
use super::rpc_client::RpcError;

/// Messages per delivery.
pub const BATCH: i64 = 100;
/// Shards looked at per pass.
const SHARDS_PER_PASS: i64 = 64;

/// Why a drain pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("outbox database: {0}")]
    Store(#[from] StoreError),
    #[error("delivering to the control silo: {0}")]
    Rpc(#[from] RpcError),
    #[error("SENTRY_CONTROL_ADDRESS is not set; region changes cannot reach the control silo")]
    NoControlAddress,
    #[error("the control silo acknowledged {got} of {sent} messages")]
    ShortAcknowledgement { sent: usize, got: usize },
}

/// Start the drain for a REGION or MONOLITH process (no-op for CONTROL).
pub fn spawn(pool: PgPool, cross: CrossSilo, mode: SiloMode, shutdown: Shutdown) {
    if !mode.serves_region() {
        return;
    }
    tokio::spawn(async move {
        let interval = cross.settings().outbox_interval;
        let mut backoff = Backoff::new(Duration::from_secs(30));
        loop {
            match drain(&pool, &cross, mode).await {
                Ok(delivered) => {
                    backoff.reset();
                    if delivered > 0 {
                        // More may be waiting behind a full batch.
                        continue;
                    }
                    tokio::select! {
                        _ = shutdown.wait() => return,
                        _ = cross.outbox_woken() => {}
                        _ = tokio::time::sleep(interval) => {}
                    }
                }
                Err(error) => {
                    cross.metrics().outbox_failures.inc();
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, retry_in = ?delay, "outbox delivery failed; keeping the backlog");
                    tokio::select! {
                        _ = shutdown.wait() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    });
}

/// One pass over every shard with pending messages; returns how many were delivered.
pub async fn drain(pool: &PgPool, cross: &CrossSilo, mode: SiloMode) -> Result<usize, DrainError> {
    let backlog = outbox::backlog(pool).await?;
    cross.metrics().outbox_backlog.set(backlog);
    if backlog == 0 {
        return Ok(0);
    }
    let mut delivered = 0;
    for (scope, shard) in outbox::pending_shards(pool, SHARDS_PER_PASS).await? {
        let mut tx = pool
            .begin()
            .await
            .map_err(StoreError::db("begin transaction", None))?;
        if !outbox::lock_shard(&mut tx, shard).await? {
            continue;
        }
        let rows = outbox::batch(&mut tx, &scope, shard, BATCH).await?;
        if rows.is_empty() {
            continue;
        }
        match deliver(pool, cross, mode, &rows).await {
            Ok(receipts) => {
                let ids: Vec<i64> = receipts.iter().map(|r| r.id).collect();
                outbox::delete_delivered(&mut tx, &ids).await?;
                tx.commit()
                    .await
                    .map_err(StoreError::db("commit transaction", None))?;
                cross.metrics().outbox_delivered.inc_by(ids.len() as u64);
                delivered += ids.len();
            }
            Err(error) => {
                drop(tx);
                outbox::record_failure(pool, rows[0].id, &error.to_string()).await?;
                return Err(error);
            }
        }
    }
    let left = outbox::backlog(pool).await?;
    cross.metrics().outbox_backlog.set(left);
    Ok(delivered)
}

async fn deliver(
    pool: &PgPool,
    cross: &CrossSilo,
    mode: SiloMode,
    rows: &[OutboxRow],
) -> Result<Vec<Receipt>, DrainError> {
    let region = cross.local_region_name();
    let messages: Vec<InboundMessage> = rows
        .iter()
        .map(|row| InboundMessage {
            id: row.id,
            category: row.category.clone(),
            shard_id: row.shard_id,
            object_id: row.object_id,
            payload: row.payload.clone(),
        })
        .collect();
    let receipts = if mode == SiloMode::Monolith {
        control_directory::apply(pool, &region, &messages).await?
    } else {
        let address = cross
            .contract()
            .control_address
            .clone()
            .ok_or(DrainError::NoControlAddress)?;
        let args = ApplyOutboxArgs { region, messages };
        let value: ApplyOutboxValue = cross
            .rpc()
            .call("the control silo", &address, "outbox", "apply", &args)
            .await?;
        value.receipts
    };
    if receipts.len() != rows.len() || receipts.iter().zip(rows).any(|(r, row)| r.id != row.id) {
        return Err(DrainError::ShortAcknowledgement {
            sent: rows.len(),
            got: receipts.len(),
        });
    }
    Ok(receipts)
}
