//! Appending to, verifying and reading the hash chain.

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, Iterable, ModelTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement, TransactionTrait,
    sea_query::{Alias, CommonTableExpression, Expr, Query, ValueTuple},
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    AuditWriter, NewEntry,
    entity::{entry, head},
};
use crate::{
    auth::Principal,
    db::Db,
    error::{Error, Result},
    http::pagination::{Limit, Page, decode_cursor, page_from},
    users::domain::Role,
};

/// The bytes that are hashed: a JSON array in fixed order, so the encoding is canonical.
fn canonical(m: &entry::Model) -> String {
    serde_json::json!([
        m.id,
        m.at.to_rfc3339_opts(SecondsFormat::Micros, true),
        m.actor_id,
        m.action,
        m.resource_type,
        m.resource_id,
        m.case_id,
        m.outcome,
        m.ip,
        m.user_agent,
        m.details,
    ])
    .to_string()
}

fn chain_hash(prev_hash: &str, m: &entry::Model) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(canonical(m).as_bytes());
    hex::encode(h.finalize())
}

/// The chain row for `e` at position `id` after `prev_hash`.
fn link(e: NewEntry, id: i64, at: DateTime<Utc>, prev_hash: &str) -> entry::Model {
    let mut m = entry::Model {
        id,
        at: e.at.unwrap_or(at),
        actor_id: e.actor_id,
        action: e.action,
        resource_type: e.resource_type,
        resource_id: e.resource_id,
        case_id: e.case_id,
        outcome: e.outcome.as_str().into(),
        ip: e.ip,
        user_agent: e.user_agent,
        details: e.details.to_string(),
        prev_hash: prev_hash.to_owned(),
        hash: String::new(),
    };
    m.hash = chain_hash(prev_hash, &m);
    m
}

/// The values of `m`, in the order of `entry::Column::iter()` (the model's fields).
fn values(m: &entry::Model) -> Vec<sea_orm::Value> {
    entry::Column::iter().map(|c| m.get(c)).collect()
}

/// Rows per multi-row `INSERT` of a bulk load: 13 columns × 2,000 = 26,000 bound values,
/// under SQLite's 32,766 and PostgreSQL's 65,535.
const BULK_ROWS_PER_STATEMENT: usize = 2_000;

/// Bulk-load `total` entries made by `make(i)` onto the chain (the scale generator, into an
/// otherwise idle database). The hashes are computed on a thread of their own, one batch
/// ahead of the inserts, so the strictly sequential SHA-256 chain overlaps the database work.
/// Each batch of `batch` entries is one transaction that locks the head, checks it is still
/// where the hashing thread started from (anything else appending in between fails the load
/// instead of forking the chain), inserts in large multi-row statements, and moves the head.
/// The rows and hashes are exactly those [`append_in`] would write.
pub async fn append_bulk<F>(
    db: &Db,
    total: usize,
    batch: usize,
    make: F,
    mut progress: impl FnMut(usize),
) -> anyhow::Result<()>
where
    F: FnMut(usize) -> NewEntry + Send + 'static,
{
    let conn = db.conn();
    let backend = conn.get_database_backend();
    let head = head::Entity::find_by_id(1)
        .one(conn)
        .await?
        .ok_or_else(|| anyhow::anyhow!("audit_head is missing"))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(i64, String, Vec<entry::Model>)>(2);
    let hashing = std::thread::spawn(move || {
        let mut make = make;
        let (mut id, mut hash) = (head.last_id, head.last_hash);
        let mut start = 0;
        while start < total {
            let end = (start + batch.max(1)).min(total);
            let (prev_id, prev_hash) = (id, hash.clone());
            let at = crate::db::now();
            let rows: Vec<entry::Model> = (start..end)
                .map(|i| {
                    id += 1;
                    let m = link(make(i), id, at, &hash);
                    hash.clone_from(&m.hash);
                    m
                })
                .collect();
            if tx.blocking_send((prev_id, prev_hash, rows)).is_err() {
                return; // the loader stopped; its error is reported there
            }
            start = end;
        }
    });
    while let Some((prev_id, prev_hash, rows)) = rx.recv().await {
        let txn = conn.begin().await?;
        let Head {
            last_id: at_id,
            last_hash: at_hash,
        } = lock_head(&txn).await?;
        anyhow::ensure!(
            at_id == prev_id && at_hash == prev_hash,
            "the audit chain moved during a bulk load (head {at_id}, expected {prev_id})"
        );
        for chunk in rows.chunks(BULK_ROWS_PER_STATEMENT) {
            let mut insert = sea_orm::sea_query::Query::insert();
            insert
                .into_table(entry::Entity)
                .columns(entry::Column::iter());
            for m in chunk {
                insert.values_panic(values(m).into_iter().map(Expr::from));
            }
            txn.execute_raw(backend.build(&insert)).await?;
        }
        // SQLite's trigger `audit_log_chain` has moved the head row by row.
        if backend == DbBackend::Postgres {
            let last = rows.last().expect("batches are never empty");
            move_head(&txn, last.id, &last.hash).await?;
        }
        txn.commit().await?;
        progress(rows.len());
    }
    hashing
        .join()
        .map_err(|_| anyhow::anyhow!("the audit hashing thread panicked"))?;
    Ok(())
}

/// Where the chain ends: the last entry's id and hash, as `audit_head` records them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub last_id: i64,
    pub last_hash: String,
}

/// Read the head, locked for the rest of the transaction (`FOR UPDATE` on PostgreSQL; SQLite
/// has one writer at a time).
async fn lock_head<C: ConnectionTrait>(conn: &C) -> std::result::Result<Head, sea_orm::DbErr> {
    let backend = conn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => "SELECT last_id, last_hash FROM audit_head WHERE id = 1 FOR UPDATE",
        _ => "SELECT last_id, last_hash FROM audit_head WHERE id = 1",
    };
    let row = conn
        .query_one_raw(Statement::from_string(backend, sql))
        .await?
        .ok_or_else(|| sea_orm::DbErr::RecordNotFound("audit_head".into()))?;
    Ok(Head {
        last_id: row.try_get("", "last_id")?,
        last_hash: row.try_get("", "last_hash")?,
    })
}

/// PostgreSQL: move the head to the last appended entry (SQLite's trigger `audit_log_chain`
/// moves it with each row).
async fn move_head<C: ConnectionTrait>(
    conn: &C,
    last_id: i64,
    last_hash: &str,
) -> std::result::Result<(), sea_orm::DbErr> {
    head::Entity::update_many()
        .col_expr(head::Column::LastId, Expr::value(last_id))
        .col_expr(head::Column::LastHash, Expr::value(last_hash.to_owned()))
        .filter(head::Column::Id.eq(1))
        .exec(conn)
        .await?;
    Ok(())
}

/// `entries` linked onto the chain after `head`, and the head after them.
fn chain(head: &Head, entries: Vec<NewEntry>) -> (Vec<entry::Model>, Head) {
    let at = crate::db::now();
    let mut next = head.clone();
    let rows = entries
        .into_iter()
        .map(|e| {
            next.last_id += 1;
            let m = link(e, next.last_id, at, &next.last_hash);
            next.last_hash.clone_from(&m.hash);
            m
        })
        .collect();
    (rows, next)
}

/// Entries per multi-row `INSERT` of [`append_at_head`]: 13 columns each.
pub const ROWS_PER_INSERT: usize = 500;

/// The row counts of [`append_in`]'s multi-row `INSERT`s: `n` as a sum of powers of two, at
/// most 256, largest first. Each row count is another statement text, which the pooled
/// connection that runs it prepares and keeps (up to 100 per connection); one text per batch
/// size made the server's memory grow with the variety of batch sizes it had seen (the
/// spool's moves on SQLite, the writer's batches on PostgreSQL). Nine texts at most, whatever
/// the batches: RSS after the load benchmark's six case paths 158–166 → 127–136 MiB
/// (docs/benchmarks.md, round 16).
pub(crate) fn insert_sizes(mut n: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if n == 0 {
            return None;
        }
        let size = if n >= 256 { 256 } else { 1 << n.ilog2() };
        n -= size;
        Some(size)
    })
}

/// Append entries inside the caller's transaction and return the new head. The head row is
/// locked for the rest of the transaction (`FOR UPDATE` on PostgreSQL; SQLite has one writer
/// at a time), so call it after the transaction's other writes: a row locked after the head
/// by one transaction and before it by another (a case row, a membership row through a
/// trigger) deadlocks them. On SQLite the trigger `audit_log_chain` moves the head with each
/// row (migration `m20261206_000001`); PostgreSQL moves it here.
pub async fn append_in<C: ConnectionTrait>(
    conn: &C,
    entries: Vec<NewEntry>,
) -> std::result::Result<Option<Head>, sea_orm::DbErr> {
    if entries.is_empty() {
        return Ok(None);
    }
    let head = lock_head(conn).await?;
    let (rows, next) = chain(&head, entries);
    let mut rows = rows.into_iter().map(entry::ActiveModel::from);
    for size in insert_sizes(rows.len()) {
        entry::Entity::insert_many(rows.by_ref().take(size))
            .exec_without_returning(conn)
            .await?;
    }
    if conn.get_database_backend() == DbBackend::Postgres {
        move_head(conn, next.last_id, &next.last_hash).await?;
    }
    Ok(Some(next))
}

/// Append 1 to [`ROWS_PER_INSERT`] entries after `head`, which the caller believes current,
/// in one statement (its own transaction): one round trip instead of a transaction's five.
/// If the head is elsewhere (someone else appended), nothing is written and the statement
/// fails. SQLite: the trigger `audit_log_chain` checks each row against the stored head and
/// moves it. PostgreSQL: the rows are inserted only if the head update in the statement's
/// `WITH` clause found the head at `head`; that update waits for a transaction holding the head
/// lock and then sees where it left the head.
pub async fn append_at_head<C: ConnectionTrait>(
    conn: &C,
    head: &Head,
    entries: Vec<NewEntry>,
) -> std::result::Result<Head, sea_orm::DbErr> {
    if entries.is_empty() || entries.len() > ROWS_PER_INSERT {
        return Err(sea_orm::DbErr::Custom(
            "append_at_head takes 1 to ROWS_PER_INSERT entries".into(),
        ));
    }
    let (rows, next) = chain(head, entries);
    let backend = conn.get_database_backend();
    if backend != DbBackend::Postgres {
        entry::Entity::insert_many(rows.into_iter().map(entry::ActiveModel::from))
            .exec_without_returning(conn)
            .await?;
        return Ok(next);
    }
    let moved = Query::update()
        .table(head::Entity)
        .value(head::Column::LastId, next.last_id)
        .value(head::Column::LastHash, next.last_hash.clone())
        .and_where(head::Column::Id.eq(1))
        .and_where(head::Column::LastId.eq(head.last_id))
        .and_where(head::Column::LastHash.eq(head.last_hash.clone()))
        .returning_col(head::Column::Id)
        .to_owned();
    let v = Alias::new("v");
    let rows_if_moved = Query::select()
        .exprs(
            (1..=entry::Column::iter().len())
                .map(|i| Expr::col((v.clone(), Alias::new(format!("column{i}"))))),
        )
        .from_values(rows.iter().map(|m| ValueTuple::Many(values(m))), v.clone())
        .and_where(Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from(Alias::new("moved"))
                .to_owned(),
        ))
        .to_owned();
    let insert = Query::insert()
        .with_cte(
            CommonTableExpression::new()
                .query(moved)
                .table_name(Alias::new("moved"))
                .to_owned(),
        )
        .into_table(entry::Entity)
        .columns(entry::Column::iter())
        .select_from(rows_if_moved)
        .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?
        .to_owned();
    let written = conn
        .execute_raw(backend.build(&insert))
        .await?
        .rows_affected();
    if written != rows.len() as u64 {
        return Err(sea_orm::DbErr::Custom(format!(
            "the audit head is no longer entry {}: nothing appended",
            head.last_id
        )));
    }
    Ok(next)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VerifyReport {
    pub ok: bool,
    pub entries_checked: u64,
    pub first_bad_id: Option<i64>,
}

/// Recompute the chain from the first entry, in pages, and compare it with the head.
pub async fn verify_chain(db: &Db) -> Result<VerifyReport> {
    // The head first, and the chain up to it: entries appended while this runs (a busy
    // server) are after it, and an append moves the head in the same transaction, so every
    // entry up to it is already visible.
    let h = read_head(db).await?;
    let mut expected_prev = "0".repeat(64);
    let mut expected_id = 1i64;
    let mut checked = 0u64;
    loop {
        let batch = entry::Entity::find()
            .filter(entry::Column::Id.gte(expected_id))
            .filter(entry::Column::Id.lte(h.last_id))
            .order_by_asc(entry::Column::Id)
            .limit(2000)
            .all(db.conn())
            .await?;
        if batch.is_empty() {
            break;
        }
        for m in batch {
            let bad = m.id != expected_id
                || m.prev_hash != expected_prev
                || chain_hash(&m.prev_hash, &m) != m.hash;
            if bad {
                return Ok(VerifyReport {
                    ok: false,
                    entries_checked: checked,
                    first_bad_id: Some(expected_id),
                });
            }
            checked += 1;
            expected_prev = m.hash;
            expected_id += 1;
        }
    }
    // The head catches a deleted tail: it remembers where the chain must end.
    if h.last_id != expected_id - 1 || h.last_hash != expected_prev {
        return Ok(VerifyReport {
            ok: false,
            entries_checked: checked,
            first_bad_id: Some(expected_id),
        });
    }
    // Rows past the head are new appends, unless the head has not moved: then they were put
    // there without extending the chain.
    let past_head = entry::Entity::find()
        .filter(entry::Column::Id.gt(h.last_id))
        .one(db.conn())
        .await?
        .is_some();
    if past_head && read_head(db).await?.last_id == h.last_id {
        return Ok(VerifyReport {
            ok: false,
            entries_checked: checked,
            first_bad_id: Some(h.last_id + 1),
        });
    }
    Ok(VerifyReport {
        ok: true,
        entries_checked: checked,
        first_bad_id: None,
    })
}

async fn read_head(db: &Db) -> Result<head::Model> {
    head::Entity::find_by_id(1)
        .one(db.conn())
        .await?
        .ok_or(Error::NotFound)
}

/// `GET /audit/verify` and the audit page's button: admins only.
pub async fn verify(db: &Db, audit: &AuditWriter, p: &Principal) -> Result<VerifyReport> {
    if !p.is_admin() {
        return Err(Error::Forbidden("Only admins may verify the audit chain."));
    }
    audit.settle().await?;
    verify_chain(db).await
}

/// An audit entry as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub case_id: Option<Uuid>,
    pub outcome: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl From<entry::Model> for AuditEntry {
    fn from(m: entry::Model) -> Self {
        Self {
            id: m.id,
            at: m.at,
            actor_id: m.actor_id,
            action: m.action,
            resource_type: m.resource_type,
            resource_id: m.resource_id,
            case_id: m.case_id,
            outcome: m.outcome,
            ip: m.ip,
            user_agent: m.user_agent,
            details: serde_json::from_str(&m.details).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub actor_id: Option<Uuid>,
    pub action: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// Entries about one case.
    pub case_id: Option<Uuid>,
    pub outcome: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// `GET /audit`: admins see everything; attorneys only entries about cases they are on.
pub async fn list(
    db: &Db,
    audit: &AuditWriter,
    p: &Principal,
    f: AuditFilter,
    limit: Limit,
    cursor: Option<&str>,
) -> Result<Page<AuditEntry>> {
    let case_scope = match p.role {
        Role::Admin => None,
        Role::Attorney => {
            Some(crate::cases::access::case_ids_of(db.conn(), p.user_id, true).await?)
        }
        _ => {
            return Err(Error::Forbidden(
                "Only admins and attorneys may read the audit trail.",
            ));
        }
    };
    // Every entry acknowledged before this request is on the list (the spool, ADR 0008).
    audit.settle().await?;
    query(db, f, limit, cursor, case_scope).await
}

/// `GET /me/activity`: the caller's own entries.
pub async fn my_activity(
    db: &Db,
    audit: &AuditWriter,
    p: &Principal,
    limit: Limit,
    cursor: Option<&str>,
) -> Result<Page<AuditEntry>> {
    audit.settle().await?;
    let f = AuditFilter {
        actor_id: Some(p.user_id),
        ..Default::default()
    };
    query(db, f, limit, cursor, None).await
}

async fn query(
    db: &Db,
    f: AuditFilter,
    limit: Limit,
    cursor: Option<&str>,
    case_scope: Option<Vec<Uuid>>,
) -> Result<Page<AuditEntry>> {
    let after: Option<i64> = decode_cursor(cursor)?;
    let mut q = entry::Entity::find();
    if let Some(v) = f.actor_id {
        q = q.filter(entry::Column::ActorId.eq(v));
    }
    if let Some(v) = f.action {
        q = q.filter(entry::Column::Action.eq(v));
    }
    if let Some(v) = f.resource_type {
        q = q.filter(entry::Column::ResourceType.eq(v));
    }
    if let Some(v) = f.resource_id {
        q = q.filter(entry::Column::ResourceId.eq(v));
    }
    if let Some(v) = f.case_id {
        q = q.filter(entry::Column::CaseId.eq(v));
    }
    if let Some(v) = f.outcome {
        q = q.filter(entry::Column::Outcome.eq(v));
    }
    if let Some(v) = f.from {
        q = q.filter(entry::Column::At.gte(v));
    }
    if let Some(v) = f.to {
        q = q.filter(entry::Column::At.lt(v));
    }
    if let Some(ids) = case_scope {
        q = q.filter(entry::Column::CaseId.is_in(ids));
    }
    if let Some(id) = after {
        q = q.filter(entry::Column::Id.lt(id));
    }
    let rows = q
        .order_by_desc(entry::Column::Id)
        .limit(limit.get() + 1)
        .all(db.conn())
        .await?;
    let rows: Vec<AuditEntry> = rows.into_iter().map(Into::into).collect();
    Ok(page_from(rows, limit, |e| e.id))
}

#[cfg(test)]
mod tests {
    use super::insert_sizes;

    #[test]
    fn inserts_come_in_nine_sizes_that_add_up() {
        assert_eq!(insert_sizes(0).count(), 0);
        assert_eq!(insert_sizes(1).collect::<Vec<_>>(), [1]);
        assert_eq!(insert_sizes(200).collect::<Vec<_>>(), [128, 64, 8]);
        assert_eq!(
            insert_sizes(500).collect::<Vec<_>>(),
            [256, 128, 64, 32, 16, 4]
        );
        let mut seen = std::collections::BTreeSet::new();
        for n in 0..=2_000 {
            let sizes: Vec<usize> = insert_sizes(n).collect();
            assert_eq!(sizes.iter().sum::<usize>(), n);
            assert!(sizes.is_sorted_by(|a, b| a >= b), "{n}: {sizes:?}");
            seen.extend(sizes);
        }
        assert_eq!(seen.len(), 9, "{seen:?}");
        assert!(seen.iter().all(|s| s.is_power_of_two() && *s <= 256));
    }
}
