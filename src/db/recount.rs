//! `lawfirm-pro recount`: rebuild the read models that triggers keep (migrations
//! `m20261203_000002`, `m20261204_*`, `m20261209_000001`, `m20261210_000001`) and SQLite's
//! full-text rows keyed by rowids: messages' (`m20261205_000001`) and members' case search
//! rows (`m20261210_000002`) from their sources, and say how many rows were out of step.
//!
//! The triggers keep them exact on every write path; this is the repair for what no trigger
//! sees: hand edits of the database, a restore from a partial dump, a bug. Run it with the
//! server stopped (on PostgreSQL a write racing the recount could be counted from a snapshot
//! that misses it).

use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::messages::search_index;

use super::Db;

/// Rows corrected, by read model.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recount {
    /// Membership rows whose copies of their case's sort keys, status, phase or priority
    /// differed from the case.
    pub case_copies: u64,
    /// Membership rows whose unread or unbilled counter differed from a recount.
    pub counters: u64,
    /// `member_deadline` rows removed or added.
    pub deadlines: u64,
    /// Membership rows whose newest-document bound was below a document of the case.
    pub document_bounds: u64,
    /// `member_document` rows removed or added.
    pub member_documents: u64,
    /// SQLite: full-text rows under another message's rowid or none, plus messages without
    /// one (a row can count twice); any at all rebuilds every row. PostgreSQL keeps them in the
    /// message row itself.
    pub search_rows: u64,
    /// SQLite: `case_member_fts` rows under a key no membership has, plus memberships without
    /// one; the rows are rebuilt either way.
    pub member_search_rows: u64,
}

/// SQLite's full-text rows keyed by other tables' rowids, which `VACUUM` or a dump reloaded
/// without `--preserve-rowids` may renumber: for each, what counts the rows out of step, what
/// rebuilds them all, and whether to rebuild them even when the count finds nothing (the
/// members' case search rows hold copies of case text the count cannot read back).
pub const SQLITE_ROWID_KEYED: [(&str, &[&str], bool); 2] = [
    (
        search_index::SQLITE_OUT_OF_STEP,
        &search_index::SQLITE_REBUILD,
        false,
    ),
    (
        crate::cases::search_index::SQLITE_OUT_OF_STEP,
        &crate::cases::search_index::SQLITE_REBUILD,
        true,
    ),
];

/// The case columns each membership row copies (`m20261203_000002`, `m20261210_000001`).
const COPIED: &str = "c.updated_at, c.opened_at, c.status, c.phase, c.priority";
const UNREAD: &str = "(SELECT COUNT(*) FROM message_recipient r
    WHERE r.user_id = case_member.user_id AND r.case_id = case_member.case_id
      AND r.deleted_at IS NULL AND r.read_at IS NULL)";
const UNBILLED: &str = "(SELECT COALESCE(SUM(t.minutes), 0) FROM time_entry t
    WHERE t.case_id = case_member.case_id AND t.invoice_id IS NULL AND t.billable)";
const NEWEST_DOCUMENT: &str = "(SELECT d.id FROM document d
    WHERE d.case_id = case_member.case_id ORDER BY d.id DESC LIMIT 1)";

/// Recompute every counter, mirror row and bound in one transaction.
pub async fn recount(db: &Db) -> anyhow::Result<Recount> {
    let txn = db.begin_write().await?;
    let exec = |sql: String| {
        let txn = &txn;
        async move {
            anyhow::Ok(
                txn.execute_raw(Statement::from_string(db.backend(), sql))
                    .await?
                    .rows_affected(),
            )
        }
    };
    let case_copies = exec(format!(
        "UPDATE case_member SET
           (case_updated_at, case_opened_at, case_status, case_phase, case_priority) =
           (SELECT {COPIED} FROM legal_case c WHERE c.id = case_member.case_id)
         WHERE EXISTS (SELECT 1 FROM legal_case c WHERE c.id = case_member.case_id
           AND (c.updated_at, c.opened_at, c.status, c.phase, c.priority) IS DISTINCT FROM
               (case_member.case_updated_at, case_member.case_opened_at, case_member.case_status,
                case_member.case_phase, case_member.case_priority))"
    ))
    .await?;
    let counters = exec(format!(
        "UPDATE case_member SET unread_messages = {UNREAD}, case_unbilled_minutes = {UNBILLED}
         WHERE unread_messages <> {UNREAD} OR case_unbilled_minutes <> {UNBILLED}"
    ))
    .await?;
    let removed = exec(
        "DELETE FROM member_deadline WHERE NOT EXISTS (
           SELECT 1 FROM case_deadline d JOIN case_member m ON m.case_id = d.case_id
            WHERE d.id = member_deadline.deadline_id AND m.user_id = member_deadline.user_id
              AND d.case_id = member_deadline.case_id AND d.due_on = member_deadline.due_on
              AND d.completed_at IS NULL AND m.role <> 'client')"
            .into(),
    )
    .await?;
    let added = exec(
        "INSERT INTO member_deadline (user_id, due_on, deadline_id, case_id)
         SELECT m.user_id, d.due_on, d.id, d.case_id
           FROM case_deadline d JOIN case_member m ON m.case_id = d.case_id
          WHERE d.completed_at IS NULL AND m.role <> 'client'
            AND NOT EXISTS (SELECT 1 FROM member_deadline w
                             WHERE w.user_id = m.user_id AND w.deadline_id = d.id)"
            .into(),
    )
    .await?;
    let document_bounds = exec(format!(
        "UPDATE case_member SET case_last_document_id = {NEWEST_DOCUMENT}
         WHERE EXISTS (SELECT 1 FROM document d WHERE d.case_id = case_member.case_id
           AND (case_member.case_last_document_id IS NULL
                OR d.id > case_member.case_last_document_id))"
    ))
    .await?;
    let removed_documents = exec(
        "DELETE FROM member_document WHERE NOT EXISTS (
           SELECT 1 FROM document d JOIN case_member m ON m.case_id = d.case_id
            WHERE d.id = member_document.document_id AND m.user_id = member_document.user_id)"
            .into(),
    )
    .await?;
    let added_documents = exec(
        "INSERT INTO member_document (user_id, document_id)
         SELECT m.user_id, d.id FROM document d JOIN case_member m ON m.case_id = d.case_id
          WHERE NOT EXISTS (SELECT 1 FROM member_document w
                             WHERE w.user_id = m.user_id AND w.document_id = d.id)"
            .into(),
    )
    .await?;
    let mut off = [0u64; SQLITE_ROWID_KEYED.len()];
    if db.backend() == DbBackend::Sqlite {
        for ((count, rebuild, always), off) in SQLITE_ROWID_KEYED.iter().zip(&mut off) {
            let n: i64 = txn
                .query_one_raw(Statement::from_string(DbBackend::Sqlite, *count))
                .await?
                .map(|r| r.try_get("", "n"))
                .transpose()?
                .unwrap_or(0);
            if n > 0 || *always {
                for sql in *rebuild {
                    exec((*sql).into()).await?;
                }
            }
            *off = n as u64;
        }
    }
    txn.commit().await?;
    Ok(Recount {
        case_copies,
        counters,
        deadlines: removed + added,
        document_bounds,
        member_documents: removed_documents + added_documents,
        search_rows: off[0],
        member_search_rows: off[1],
    })
}
