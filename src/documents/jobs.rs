//! Background upkeep: objects of uploads that never completed (crash, killed connection) are
//! removed, and soft-deleted documents past the retention period are purged — never while
//! a legal hold (on the document or its case) is on. Safe to run on every instance at once:
//! each step tolerates objects and rows that are already gone.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::entity::{case_hold, document, upload, version};
use crate::{AppState, audit::NewEntry, error::Result};

/// How often the sweeps run.
const EVERY: Duration = Duration::from_secs(15 * 60);
/// An upload older than this without a version is abandoned (no upload takes a day).
const ABANDONED_AFTER: chrono::Duration = chrono::Duration::hours(24);
const BATCH: u64 = 100;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub abandoned_objects: usize,
    pub purged_documents: usize,
}

/// Run the sweeps every [`EVERY`] until shutdown (also when it began before this started).
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    let mut stop = state.shutdown.subscribe();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if let Err(e) = run_once(&state, crate::db::now()).await {
                tracing::warn!(error = %e, "document sweep failed; retrying later");
            }
        }
    })
}

/// One pass of both sweeps as of `now` (tests pass a time in the future).
pub async fn run_once(state: &AppState, now: DateTime<Utc>) -> Result<SweepReport> {
    Ok(SweepReport {
        abandoned_objects: sweep_uploads(state, now - ABANDONED_AFTER).await?,
        purged_documents: purge_deleted(
            state,
            now - chrono::Duration::days(state.config.document_retention_days),
        )
        .await?,
    })
}

async fn sweep_uploads(state: &AppState, before: DateTime<Utc>) -> Result<usize> {
    let stale = upload::Entity::find()
        .filter(upload::Column::StartedAt.lt(before))
        .order_by_asc(upload::Column::StartedAt)
        .limit(BATCH)
        .all(state.db.conn())
        .await?;
    for u in &stale {
        super::upload::discard(state, &u.object_key).await;
    }
    Ok(stale.len())
}

async fn purge_deleted(state: &AppState, before: DateTime<Utc>) -> Result<usize> {
    let held_cases = sea_orm::sea_query::Query::select()
        .column(case_hold::Column::CaseId)
        .from(case_hold::Entity)
        .to_owned();
    let docs = document::Entity::find()
        .filter(document::Column::DeletedAt.lt(before))
        .filter(document::Column::LegalHold.eq(false))
        .filter(document::Column::CaseId.not_in_subquery(held_cases))
        .limit(BATCH)
        .all(state.db.conn())
        .await?;
    let mut purged = 0;
    for d in &docs {
        let txn = state.db.begin_write().await?;
        // Re-check inside the transaction: a hold placed meanwhile wins.
        let still = document::Entity::find_by_id(d.id)
            .filter(document::Column::LegalHold.eq(false))
            .one(&*txn)
            .await?;
        if still.is_none()
            || case_hold::Entity::find_by_id(d.case_id)
                .one(&*txn)
                .await?
                .is_some()
        {
            continue;
        }
        let keys: Vec<String> = version::Entity::find()
            .select_only()
            .column(version::Column::ObjectKey)
            .filter(version::Column::DocumentId.eq(d.id))
            .into_tuple()
            .all(&*txn)
            .await?;
        // The objects go back on the list of unowned uploads in the same transaction that
        // drops the rows, so a crash before they are removed leaves them to the next sweep.
        if !keys.is_empty() {
            let epoch = DateTime::<Utc>::UNIX_EPOCH;
            upload::Entity::insert_many(keys.iter().map(|k| upload::ActiveModel {
                object_key: Set(k.clone()),
                started_at: Set(epoch),
                claimed_at: Set(None),
            }))
            .exec_without_returning(&*txn)
            .await?;
        }
        document::Entity::delete_by_id(d.id).exec(&*txn).await?;
        crate::audit::service::append_in(
            &*txn,
            vec![
                NewEntry::new("document.purge", "document")
                    .resource(d.id)
                    .case(d.case_id)
                    .details(serde_json::json!({"versions": keys.len()})),
            ],
        )
        .await?;
        txn.commit().await?;
        for k in &keys {
            super::upload::discard(state, k).await;
        }
        purged += 1;
    }
    Ok(purged)
}
