//! The organization directory and the region outbox against a real Postgres database:
//! changes and their outbox rows commit together, delivery is idempotent, a message that can
//! never apply is rejected without blocking, and a region cannot take over another's org.

use silo_store::control_directory::{self, InboundMessage};
use silo_store::org_changes;
use silo_store::outbox::{self, OutboxRow};
use silo_store::{PgPool, StoreError};
use silo_testkit::TestDb;

/// A fresh migrated database; dropped by [`TestDb::drop_database`] at the end.
async fn database() -> TestDb {
    TestDb::migrated("silo_store_dir", &silo_store::MIGRATOR).await
}

async fn pending(pool: &PgPool, shard: i64) -> Vec<OutboxRow> {
    let mut tx = pool.begin().await.expect("tx");
    assert!(outbox::lock_shard(&mut tx, shard).await.expect("lock"));
    outbox::batch(&mut tx, outbox::ORGANIZATION_SCOPE, shard, 100)
        .await
        .expect("batch")
}

fn inbound(rows: &[OutboxRow]) -> Vec<InboundMessage> {
    rows.iter()
        .map(|r| InboundMessage {
            id: r.id,
            category: r.category.clone(),
            shard_id: r.shard_id,
            object_id: r.object_id,
            payload: r.payload.clone(),
        })
        .collect()
}

#[tokio::test]
async fn changes_queue_in_order_and_apply_once() {
    let region = database().await;
    let control = database().await;
    let org = org_changes::create(&region.pool, 1_000_001, "acme", "Acme")
        .await
        .expect("create");
    // Same id and slug again: no second message.
    org_changes::create(&region.pool, 1_000_001, "acme", "Acme")
        .await
        .expect("idempotent create");
    org_changes::rename(&region.pool, org.id, Some("Acme Inc"), Some("acme-inc"))
        .await
        .expect("rename");
    org_changes::add_member(&region.pool, org.id, "a@example.com", "owner")
        .await
        .expect("member");
    let rows = pending(&region.pool, org.id).await;
    let categories: Vec<&str> = rows.iter().map(|r| r.category.as_str()).collect();
    assert_eq!(
        categories,
        [
            "organization.created",
            "organization.renamed",
            "member.added"
        ]
    );

    let receipts = control_directory::apply(&control.pool, "de", &inbound(&rows))
        .await
        .expect("apply");
    assert!(
        receipts.iter().all(|r| r.outcome == "applied"),
        "{receipts:?}"
    );
    let again = control_directory::apply(&control.pool, "de", &inbound(&rows))
        .await
        .expect("apply again");
    assert!(again.iter().all(|r| r.outcome == "duplicate"), "{again:?}");
    let mapping = control_directory::resolve(&control.pool, "acme-inc")
        .await
        .expect("resolve")
        .expect("mapped");
    assert_eq!(
        (mapping.region_name.as_str(), mapping.name.as_str()),
        ("de", "Acme Inc")
    );
    assert!(
        control_directory::resolve(&control.pool, "acme")
            .await
            .expect("resolve")
            .is_none()
    );
    assert_eq!(
        control_directory::member_emails(&control.pool, org.id)
            .await
            .expect("members"),
        ["a@example.com"]
    );
    region.drop_database().await;
    control.drop_database().await;
}

#[tokio::test]
async fn conflicts_are_rejected_without_blocking_and_regions_keep_their_orgs() {
    let region = database().await;
    let control = database().await;
    // Control already maps "taken" to an organization in us.
    let reserved = control_directory::reserve(&control.pool, 5, "taken", "Taken", "us")
        .await
        .expect("reserve");
    assert_eq!(reserved.status, "pending");
    let dup = control_directory::reserve(&control.pool, 6, "taken", "Other", "de").await;
    assert!(matches!(dup, Err(StoreError::Conflict { .. })), "{dup:?}");
    let snapshot = org_changes::OrganizationSnapshot {
        id: 5,
        slug: "taken".into(),
        name: "Taken".into(),
        status: "active".into(),
        date_created: chrono::Utc::now(),
    };
    control_directory::activate(&control.pool, "us", &snapshot)
        .await
        .expect("activate");

    // A de organization with the same slug, and a later message of its shard.
    let org = org_changes::create(&region.pool, 7, "taken", "Taken in de")
        .await
        .expect("create");
    org_changes::rename(&region.pool, org.id, None, Some("free"))
        .await
        .expect("rename");
    let rows = pending(&region.pool, org.id).await;
    let receipts = control_directory::apply(&control.pool, "de", &inbound(&rows))
        .await
        .expect("apply");
    assert_eq!(receipts[0].outcome, "rejected", "{receipts:?}");
    assert_eq!(receipts[1].outcome, "applied", "the shard is not blocked");
    assert_eq!(
        control_directory::resolve(&control.pool, "free")
            .await
            .expect("resolve")
            .map(|m| m.region_name),
        Some("de".to_owned())
    );

    // Region de cannot overwrite us's organization 5.
    let hijack = InboundMessage {
        id: 999,
        category: "organization.renamed".into(),
        shard_id: 5,
        object_id: 5,
        payload: serde_json::to_value(&org_changes::OrganizationSnapshot {
            slug: "stolen".into(),
            ..snapshot
        })
        .expect("json"),
    };
    let receipts = control_directory::apply(&control.pool, "de", &[hijack])
        .await
        .expect("apply");
    assert_eq!(receipts[0].outcome, "rejected");
    let kept = control_directory::resolve(&control.pool, "5")
        .await
        .expect("resolve");
    assert_eq!(kept.map(|m| m.slug), Some("taken".to_owned()));
    region.drop_database().await;
    control.drop_database().await;
}
