//! Writes of the ingest consumers, a batch at a time: every event of a fetched batch and its
//! issue in one transaction, one statement per step whatever the batch size.
//!
//! ```text
//!  save_batch ─► BEGIN
//!                ├─ SELECT events ⨝ UNNEST(keys)            stored before? (replays: unchanged)
//!                ├─ SELECT groups ⨝ UNNEST(keys) ORDER BY id FOR UPDATE   lock the issues
//!                ├─ (only with a resolved issue) the releases that reopen it: event_regresses
//!                ├─ INSERT groups SELECT UNNEST(...) ON CONFLICT DO NOTHING
//!                │     the missing issues, each named by its first event in Kafka order
//!                │     (an issue another consumer created meanwhile: locked as it committed)
//!                ├─ INSERT events SELECT UNNEST(...) ON CONFLICT DO NOTHING
//!                ├─ INSERT group_users SELECT UNNEST(...) ON CONFLICT DO NOTHING  new users
//!                ├─ UPDATE groups FROM UNNEST(per-issue sums)   counters once per issue
//!                └─ COMMIT
//! ```
//!
//! The result is what [`crate::ingest::save_event`] would give for each event in turn: the
//! first new event of an issue created here `is_new`, the first new event of a resolved issue
//! `is_regression`, an event stored before (or earlier in the batch) a `duplicate`. An event
//! that another consumer stores while this batch runs makes the batch fail with
//! [`StoreError::Conflict`], which is transient: retried, the batch finds it stored.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{FromRow, Postgres, Transaction};
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::ingest::{NewEvent, SavedEvent};

const OP: &str = "store a batch of events";

type EventKey = (i64, Uuid);
type GroupKey<'a> = (i64, &'a str);

/// Store `events` (in Kafka order) and count them on their issues, exactly once per
/// (project, event id); one result per event, in the same order.
pub async fn save_batch(pool: &sqlx::PgPool, events: &[NewEvent]) -> Result<Vec<SavedEvent>> {
    let mut tx = pool.begin().await.map_err(StoreError::db(OP, None))?;
    let stored = stored_events(&mut tx, events).await?;
    let plan = Plan::new(events, &stored);
    if plan.new.is_empty() {
        tx.commit().await.map_err(StoreError::db(OP, None))?;
        return plan.results(events, &stored, &HashMap::new());
    }

    let groups = lock_or_create_groups(&mut tx, events, &plan).await?;
    let regress = regressing_releases(&mut tx, events, &plan, &groups).await?;
    let saved = plan.decide(events, &groups, &regress)?;
    insert_events(&mut tx, events, &plan, &saved).await?;
    let new_users = insert_users(&mut tx, events, &plan, &saved).await?;
    update_groups(&mut tx, events, &plan, &saved, &new_users).await?;
    tx.commit().await.map_err(StoreError::db(OP, None))?;
    plan.results(events, &stored, &saved)
}

/// An issue as this batch found it.
#[derive(Clone, Debug, FromRow)]
struct LockedGroup {
    id: i64,
    project_id: i64,
    fingerprint: String,
    status: String,
    #[sqlx(default)]
    created: bool,
}

#[derive(FromRow)]
struct StoredRow {
    project_id: i64,
    event_id: Uuid,
    group_id: i64,
    is_new: bool,
    is_regression: bool,
}

/// Which events of the batch are new and which issues they need. Pure.
#[derive(Debug, Default)]
struct Plan {
    /// Indexes of the events to insert: not stored before, first of their id in the batch.
    new: Vec<usize>,
    /// The issues of the new events, in order of their first event: (key, that event).
    groups: Vec<(i64, String, usize)>,
}

impl Plan {
    fn new(events: &[NewEvent], stored: &HashMap<EventKey, SavedEvent>) -> Plan {
        let mut plan = Plan::default();
        let mut seen_events: HashSet<EventKey> = HashSet::new();
        let mut seen_groups: HashSet<GroupKey<'_>> = HashSet::new();
        for (i, e) in events.iter().enumerate() {
            let key = (e.project_id, e.event_id);
            if stored.contains_key(&key) || !seen_events.insert(key) {
                continue;
            }
            plan.new.push(i);
            if seen_groups.insert((e.project_id, e.fingerprint.as_str())) {
                plan.groups.push((e.project_id, e.fingerprint.clone(), i));
            }
        }
        plan
    }

    /// What storing each new event does, as `save_event` would decide it event by event: the
    /// first event of an issue created here is new; of a resolved issue, the first event
    /// whose release reopens it (`regress`: issue id and release) is a regression.
    fn decide(
        &self,
        events: &[NewEvent],
        groups: &HashMap<(i64, String), LockedGroup>,
        regress: &HashSet<(i64, Option<String>)>,
    ) -> Result<HashMap<EventKey, SavedEvent>> {
        let mut first_of_group: HashSet<i64> = HashSet::new();
        let mut reopened: HashSet<i64> = HashSet::new();
        let mut saved = HashMap::with_capacity(self.new.len());
        for &i in &self.new {
            let e = &events[i];
            let group = groups
                .get(&(e.project_id, e.fingerprint.clone()))
                .ok_or_else(|| {
                    StoreError::Invalid(format!(
                        "issue {} of project {} was neither found nor created",
                        e.fingerprint, e.project_id
                    ))
                })?;
            let first = first_of_group.insert(group.id);
            let is_regression = !group.created
                && group.status == "resolved"
                && regress.contains(&(group.id, e.release.clone()))
                && reopened.insert(group.id);
            saved.insert(
                (e.project_id, e.event_id),
                SavedEvent {
                    group_id: group.id,
                    is_new: first && group.created,
                    is_regression,
                    duplicate: false,
                },
            );
        }
        Ok(saved)
    }

    /// One result per event: stored before, stored now, or a repeat of an earlier event of
    /// the batch.
    fn results(
        &self,
        events: &[NewEvent],
        stored: &HashMap<EventKey, SavedEvent>,
        saved: &HashMap<EventKey, SavedEvent>,
    ) -> Result<Vec<SavedEvent>> {
        let mut inserted: HashSet<EventKey> = HashSet::new();
        events
            .iter()
            .map(|e| {
                let key = (e.project_id, e.event_id);
                if let Some(s) = stored.get(&key) {
                    return Ok(s.clone());
                }
                let s = saved.get(&key).ok_or_else(|| {
                    StoreError::Invalid(format!("event {} has no result", e.event_id))
                })?;
                Ok(SavedEvent {
                    duplicate: !inserted.insert(key),
                    ..s.clone()
                })
            })
            .collect()
    }
}

/// Events of the batch stored before (replays), as they were stored.
async fn stored_events(
    tx: &mut Transaction<'_, Postgres>,
    events: &[NewEvent],
) -> Result<HashMap<EventKey, SavedEvent>> {
    let projects: Vec<i64> = events.iter().map(|e| e.project_id).collect();
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let rows: Vec<StoredRow> = sqlx::query_as(
        "SELECT e.project_id, e.event_id, e.group_id, e.is_new, e.is_regression \
         FROM events e JOIN UNNEST($1::bigint[], $2::uuid[]) AS k(project_id, event_id) \
           ON e.project_id = k.project_id AND e.event_id = k.event_id",
    )
    .bind(&projects)
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await
    .map_err(StoreError::db(OP, None))?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let saved = SavedEvent {
                group_id: r.group_id,
                is_new: r.is_new,
                is_regression: r.is_regression,
                duplicate: true,
            };
            ((r.project_id, r.event_id), saved)
        })
        .collect())
}

/// Lock the plan's issues (in id order, so that concurrent batches do not deadlock), create
/// the missing ones, and lock those another transaction created first.
async fn lock_or_create_groups(
    tx: &mut Transaction<'_, Postgres>,
    events: &[NewEvent],
    plan: &Plan,
) -> Result<HashMap<(i64, String), LockedGroup>> {
    let keys: Vec<(i64, String)> = plan
        .groups
        .iter()
        .map(|(p, f, _)| (*p, f.clone()))
        .collect();
    let mut found = lock_groups(tx, &keys).await?;
    let missing: Vec<&(i64, String, usize)> = plan
        .groups
        .iter()
        .filter(|(p, f, _)| !found.contains_key(&(*p, f.clone())))
        .collect();
    if missing.is_empty() {
        return Ok(found);
    }
    let first = |i: usize| &events[i];
    let created: Vec<LockedGroup> = sqlx::query_as(
        "INSERT INTO groups (project_id, fingerprint, title, culprit, level, type, first_seen, \
           last_seen, times_seen, first_event_id, last_event_id, metadata) \
         SELECT project_id, fingerprint, title, culprit, level, type, seen, seen, 0, event_id, \
           event_id, metadata \
         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
           $7::timestamptz[], $8::uuid[], $9::jsonb[]) WITH ORDINALITY \
           AS u(project_id, fingerprint, title, culprit, level, type, seen, event_id, metadata, n) \
         ORDER BY n \
         ON CONFLICT (project_id, fingerprint) DO NOTHING \
         RETURNING id, project_id, fingerprint, status, true AS created",
    )
    .bind(missing.iter().map(|g| g.0).collect::<Vec<_>>())
    .bind(missing.iter().map(|g| g.1.clone()).collect::<Vec<_>>())
    .bind(
        missing
            .iter()
            .map(|g| first(g.2).title.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        missing
            .iter()
            .map(|g| first(g.2).culprit.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        missing
            .iter()
            .map(|g| first(g.2).level.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        missing
            .iter()
            .map(|g| first(g.2).group_type.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        missing
            .iter()
            .map(|g| first(g.2).timestamp)
            .collect::<Vec<DateTime<Utc>>>(),
    )
    .bind(
        missing
            .iter()
            .map(|g| first(g.2).event_id)
            .collect::<Vec<_>>(),
    )
    .bind(
        missing
            .iter()
            .map(|g| first(g.2).metadata.clone())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut **tx)
    .await
    .map_err(StoreError::db(OP, None))?;
    let lost: Vec<(i64, String)> = missing
        .iter()
        .filter(|(p, f, _)| {
            !created
                .iter()
                .any(|c| c.project_id == *p && &c.fingerprint == f)
        })
        .map(|(p, f, _)| (*p, f.clone()))
        .collect();
    found.extend(
        created
            .into_iter()
            .map(|g| ((g.project_id, g.fingerprint.clone()), g)),
    );
    if !lost.is_empty() {
        let raced = lock_groups(tx, &lost).await?;
        if raced.len() != lost.len() {
            return Err(StoreError::Invalid(format!(
                "{} issue(s) conflicted but are not stored",
                lost.len() - raced.len()
            )));
        }
        found.extend(raced);
    }
    Ok(found)
}

async fn lock_groups(
    tx: &mut Transaction<'_, Postgres>,
    keys: &[(i64, String)],
) -> Result<HashMap<(i64, String), LockedGroup>> {
    let rows: Vec<LockedGroup> = sqlx::query_as(
        "SELECT g.id, g.project_id, g.fingerprint, g.status \
         FROM groups g JOIN UNNEST($1::bigint[], $2::text[]) AS k(project_id, fingerprint) \
           ON g.project_id = k.project_id AND g.fingerprint = k.fingerprint \
         ORDER BY g.id FOR UPDATE OF g",
    )
    .bind(keys.iter().map(|k| k.0).collect::<Vec<_>>())
    .bind(keys.iter().map(|k| k.1.clone()).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await
    .map_err(StoreError::db(OP, None))?;
    Ok(rows
        .into_iter()
        .map(|g| ((g.project_id, g.fingerprint.clone()), g))
        .collect())
}

/// Of the resolved issues the batch touches, which (issue, release) pairs reopen them
/// (`event_regresses`: resolved in the next release, only a newer release does). No
/// statement when none of them is resolved.
async fn regressing_releases(
    tx: &mut Transaction<'_, Postgres>,
    events: &[NewEvent],
    plan: &Plan,
    groups: &HashMap<(i64, String), LockedGroup>,
) -> Result<HashSet<(i64, Option<String>)>> {
    let mut pairs: Vec<(i64, Option<String>)> = plan
        .new
        .iter()
        .filter_map(|&i| {
            let e = &events[i];
            let g = groups.get(&(e.project_id, e.fingerprint.clone()))?;
            (!g.created && g.status == "resolved").then(|| (g.id, e.release.clone()))
        })
        .collect();
    pairs.sort();
    pairs.dedup();
    if pairs.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT u.id, u.release FROM UNNEST($1::bigint[], $2::text[]) AS u(id, release) \
         JOIN groups g ON g.id = u.id \
         WHERE event_regresses(g.status, g.resolved_in_release_id, u.release)",
    )
    .bind(pairs.iter().map(|p| p.0).collect::<Vec<_>>())
    .bind(pairs.iter().map(|p| p.1.clone()).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await
    .map_err(StoreError::db(OP, None))?;
    Ok(rows.into_iter().collect())
}

/// Insert the new events; every one must be inserted, or another consumer stored some of them
/// meanwhile and the batch is retried.
async fn insert_events(
    tx: &mut Transaction<'_, Postgres>,
    events: &[NewEvent],
    plan: &Plan,
    saved: &HashMap<EventKey, SavedEvent>,
) -> Result<()> {
    let new: Vec<(&NewEvent, &SavedEvent)> = plan
        .new
        .iter()
        .filter_map(|&i| {
            let e = &events[i];
            saved.get(&(e.project_id, e.event_id)).map(|s| (e, s))
        })
        .collect();
    let column =
        |f: &dyn Fn(&NewEvent) -> String| new.iter().map(|(e, _)| f(e)).collect::<Vec<_>>();
    let inserted = sqlx::query(
        "INSERT INTO events (project_id, event_id, group_id, \"timestamp\", received, title, \
           message, culprit, platform, level, environment, release, data, is_new, is_regression, \
           tags) \
         SELECT * FROM UNNEST($1::bigint[], $2::uuid[], $3::bigint[], $4::timestamptz[], \
           $5::timestamptz[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], \
           $11::text[], $12::text[], $13::jsonb[], $14::bool[], $15::bool[], $16::jsonb[]) \
         ON CONFLICT (project_id, event_id) DO NOTHING",
    )
    .bind(new.iter().map(|(e, _)| e.project_id).collect::<Vec<_>>())
    .bind(new.iter().map(|(e, _)| e.event_id).collect::<Vec<_>>())
    .bind(new.iter().map(|(_, s)| s.group_id).collect::<Vec<_>>())
    .bind(new.iter().map(|(e, _)| e.timestamp).collect::<Vec<_>>())
    .bind(new.iter().map(|(e, _)| e.received).collect::<Vec<_>>())
    .bind(column(&|e| e.title.clone()))
    .bind(column(&|e| e.message.clone()))
    .bind(column(&|e| e.culprit.clone()))
    .bind(column(&|e| e.platform.clone()))
    .bind(column(&|e| e.level.clone()))
    .bind(
        new.iter()
            .map(|(e, _)| e.environment.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        new.iter()
            .map(|(e, _)| e.release.clone())
            .collect::<Vec<_>>(),
    )
    .bind(new.iter().map(|(e, _)| e.data.clone()).collect::<Vec<_>>())
    .bind(new.iter().map(|(_, s)| s.is_new).collect::<Vec<_>>())
    .bind(new.iter().map(|(_, s)| s.is_regression).collect::<Vec<_>>())
    .bind(new.iter().map(|(e, _)| e.tags_json()).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db(OP, None))?
    .rows_affected();
    if inserted as usize != new.len() {
        return Err(StoreError::Conflict {
            what: format!(
                "{} of the batch's events (stored by another consumer meanwhile)",
                new.len() - inserted as usize
            ),
        });
    }
    Ok(())
}

/// Record the new events' users on their issues; how many users each issue gained.
async fn insert_users(
    tx: &mut Transaction<'_, Postgres>,
    events: &[NewEvent],
    plan: &Plan,
    saved: &HashMap<EventKey, SavedEvent>,
) -> Result<HashMap<i64, i64>> {
    let mut pairs: Vec<(i64, String)> = plan
        .new
        .iter()
        .filter_map(|&i| {
            let e = &events[i];
            let user = e.user.clone()?;
            Some((saved.get(&(e.project_id, e.event_id))?.group_id, user))
        })
        .collect();
    pairs.sort();
    pairs.dedup();
    if pairs.is_empty() {
        return Ok(HashMap::new());
    }
    let added: Vec<(i64,)> = sqlx::query_as(
        "INSERT INTO group_users (group_id, user_key) \
         SELECT * FROM UNNEST($1::bigint[], $2::text[]) \
         ON CONFLICT DO NOTHING RETURNING group_id",
    )
    .bind(pairs.iter().map(|p| p.0).collect::<Vec<_>>())
    .bind(pairs.iter().map(|p| p.1.clone()).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await
    .map_err(StoreError::db(OP, None))?;
    let mut counts = HashMap::new();
    for (group,) in added {
        *counts.entry(group).or_insert(0) += 1;
    }
    Ok(counts)
}

/// What a batch adds to one issue, folded over its new events in Kafka order.
#[derive(Clone, Debug, PartialEq)]
struct IssueDelta {
    events: i64,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    /// The last event (in order) with the latest timestamp.
    last_event_id: Uuid,
    first_release: Option<String>,
    last_release: Option<String>,
    /// One of the events reopens the resolved issue.
    regressed: bool,
}

impl IssueDelta {
    fn new(e: &NewEvent, regressed: bool) -> IssueDelta {
        IssueDelta {
            regressed,
            events: 1,
            first_seen: e.timestamp,
            last_seen: e.timestamp,
            last_event_id: e.event_id,
            first_release: e.release.clone(),
            last_release: e.release.clone(),
        }
    }

    fn add(&mut self, e: &NewEvent, regressed: bool) {
        self.events += 1;
        self.regressed |= regressed;
        self.first_seen = self.first_seen.min(e.timestamp);
        if e.timestamp >= self.last_seen {
            self.last_seen = e.timestamp;
            self.last_event_id = e.event_id;
        }
        if e.release.is_some() {
            if self.first_release.is_none() {
                self.first_release = e.release.clone();
            }
            self.last_release = e.release.clone();
        }
    }
}

/// Per issue, in order of first appearance: its id and what the batch adds to it. Pure.
fn deltas(
    events: &[NewEvent],
    plan: &Plan,
    saved: &HashMap<EventKey, SavedEvent>,
) -> Vec<(i64, IssueDelta)> {
    let mut out: Vec<(i64, IssueDelta)> = Vec::new();
    let mut index: HashMap<i64, usize> = HashMap::new();
    for &i in &plan.new {
        let e = &events[i];
        let Some(s) = saved.get(&(e.project_id, e.event_id)) else {
            continue;
        };
        match index.get(&s.group_id) {
            Some(&slot) => out[slot].1.add(e, s.is_regression),
            None => {
                index.insert(s.group_id, out.len());
                out.push((s.group_id, IssueDelta::new(e, s.is_regression)));
            }
        }
    }
    out
}

/// Counters, times, releases and status of each issue, once per issue. Resolved issues
/// reopen when one of the events regresses them (decided with `event_regresses`); ignored ones reopen once their snooze is over (time passed, or the
/// count reached by one of this batch's events); ignored-forever issues stay ignored. Every
/// expression reads the row as it was before the batch.
async fn update_groups(
    tx: &mut Transaction<'_, Postgres>,
    events: &[NewEvent],
    plan: &Plan,
    saved: &HashMap<EventKey, SavedEvent>,
    new_users: &HashMap<i64, i64>,
) -> Result<()> {
    let deltas = deltas(events, plan, saved);
    const REOPENS: &str = "(u.regressed OR (g.status = 'ignored' AND \
         (g.ignore_until <= now() OR g.ignore_until_times_seen <= g.times_seen + u.n - 1)))";
    sqlx::query(&format!(
        "UPDATE groups g SET \
           times_seen = g.times_seen + u.n, \
           user_count = g.user_count + u.users, \
           first_seen = LEAST(g.first_seen, u.first_seen), \
           last_event_id = CASE WHEN u.last_seen >= g.last_seen THEN u.last_event \
             ELSE g.last_event_id END, \
           last_seen = GREATEST(g.last_seen, u.last_seen), \
           first_release = COALESCE(g.first_release, u.first_release), \
           last_release = COALESCE(u.last_release, g.last_release), \
           status = CASE WHEN {REOPENS} THEN 'unresolved' ELSE g.status END, \
           status_details = CASE WHEN {REOPENS} THEN '{{}}'::jsonb ELSE g.status_details END, \
           ignore_until = CASE WHEN {REOPENS} THEN NULL ELSE g.ignore_until END, \
           ignore_until_times_seen = CASE WHEN {REOPENS} THEN NULL \
             ELSE g.ignore_until_times_seen END, \
           resolved_at = CASE WHEN {REOPENS} THEN NULL ELSE g.resolved_at END, \
           resolved_in_release_id = CASE WHEN {REOPENS} THEN NULL \
             ELSE g.resolved_in_release_id END \
         FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::timestamptz[], \
           $5::timestamptz[], $6::uuid[], $7::text[], $8::text[], $9::bool[]) \
           AS u(id, n, users, first_seen, last_seen, last_event, first_release, last_release, \
             regressed) \
         WHERE g.id = u.id"
    ))
    .bind(deltas.iter().map(|(id, _)| *id).collect::<Vec<_>>())
    .bind(deltas.iter().map(|(_, d)| d.events).collect::<Vec<_>>())
    .bind(
        deltas
            .iter()
            .map(|(id, _)| new_users.get(id).copied().unwrap_or(0))
            .collect::<Vec<_>>(),
    )
    .bind(deltas.iter().map(|(_, d)| d.first_seen).collect::<Vec<_>>())
    .bind(deltas.iter().map(|(_, d)| d.last_seen).collect::<Vec<_>>())
    .bind(
        deltas
            .iter()
            .map(|(_, d)| d.last_event_id)
            .collect::<Vec<_>>(),
    )
    .bind(
        deltas
            .iter()
            .map(|(_, d)| d.first_release.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        deltas
            .iter()
            .map(|(_, d)| d.last_release.clone())
            .collect::<Vec<_>>(),
    )
    .bind(deltas.iter().map(|(_, d)| d.regressed).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db(OP, None))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn event(n: u128, fingerprint: &str, secs: i64, release: Option<&str>) -> NewEvent {
        NewEvent {
            project_id: 1,
            event_id: Uuid::from_u128(n),
            timestamp: Utc.timestamp_opt(secs, 0).single().expect("time"),
            received: Utc.timestamp_opt(secs, 0).single().expect("time"),
            title: format!("title {n}"),
            message: String::new(),
            culprit: String::new(),
            platform: "rust".into(),
            level: "error".into(),
            environment: None,
            release: release.map(str::to_owned),
            data: json!({}),
            fingerprint: fingerprint.into(),
            group_type: "error".into(),
            metadata: json!({}),
            tags: Vec::new(),
            user: None,
        }
    }

    fn group(
        id: i64,
        fingerprint: &str,
        status: &str,
        created: bool,
    ) -> ((i64, String), LockedGroup) {
        let g = LockedGroup {
            id,
            project_id: 1,
            fingerprint: fingerprint.into(),
            status: status.into(),
            created,
        };
        ((1, fingerprint.into()), g)
    }

    #[test]
    fn replays_and_repeats_are_not_new_and_issues_come_in_order_of_first_event() {
        let events = [
            event(1, "b", 10, None),
            event(2, "a", 11, None),
            event(1, "b", 10, None),
            event(3, "b", 12, None),
            event(4, "c", 13, None),
        ];
        let stored: HashMap<EventKey, SavedEvent> = [(
            (1, Uuid::from_u128(4)),
            SavedEvent {
                group_id: 9,
                is_new: true,
                is_regression: false,
                duplicate: true,
            },
        )]
        .into_iter()
        .collect();
        let plan = Plan::new(&events, &stored);
        assert_eq!(plan.new, vec![0, 1, 3]);
        let order: Vec<(&str, usize)> = plan
            .groups
            .iter()
            .map(|(_, f, i)| (f.as_str(), *i))
            .collect();
        assert_eq!(order, vec![("b", 0), ("a", 1)]);

        let groups = [
            group(5, "b", "unresolved", true),
            group(6, "a", "resolved", false),
        ]
        .into_iter()
        .collect();
        let regress = [(6, None)].into_iter().collect();
        let saved = plan.decide(&events, &groups, &regress).expect("decided");
        let results = plan.results(&events, &stored, &saved).expect("results");
        let flags: Vec<(i64, bool, bool, bool)> = results
            .iter()
            .map(|r| (r.group_id, r.is_new, r.is_regression, r.duplicate))
            .collect();
        assert_eq!(
            flags,
            vec![
                (5, true, false, false),  // creates issue b
                (6, false, true, false),  // first event of resolved a: a regression
                (5, true, false, true),   // repeat of event 1: as stored, a duplicate
                (5, false, false, false), // second event of b
                (9, true, false, true),   // stored before this batch
            ]
        );
    }

    #[test]
    fn an_issue_without_a_row_is_an_error_not_a_guess() {
        let events = [event(1, "a", 10, None)];
        let plan = Plan::new(&events, &HashMap::new());
        assert!(
            plan.decide(&events, &HashMap::new(), &HashSet::new())
                .is_err()
        );
    }

    #[test]
    fn deltas_fold_counts_times_and_releases_in_kafka_order() {
        let events = [
            event(1, "a", 20, None),
            event(2, "a", 10, Some("app@1")),
            event(3, "a", 20, Some("app@2")),
            event(4, "a", 15, None),
        ];
        let plan = Plan::new(&events, &HashMap::new());
        let groups = [group(5, "a", "unresolved", true)].into_iter().collect();
        let saved = plan
            .decide(&events, &groups, &HashSet::new())
            .expect("decided");
        let d = deltas(&events, &plan, &saved);
        assert_eq!(d.len(), 1);
        let (id, d) = &d[0];
        assert_eq!(*id, 5);
        assert_eq!(d.events, 4);
        assert_eq!(d.first_seen.timestamp(), 10);
        assert_eq!(d.last_seen.timestamp(), 20);
        // Of the two latest events, the later one in Kafka order (as event by event).
        assert_eq!(d.last_event_id, Uuid::from_u128(3));
        assert_eq!(d.first_release.as_deref(), Some("app@1"));
        assert_eq!(d.last_release.as_deref(), Some("app@2"));
    }
}
