//! SQLite: each `message_fts` row takes its message's rowid, as `document_fts` already does.
//!
//! A search in date order walks the caller's messages newest first and asks, per message,
//! whether it matches; with the rowids aligned that question is a probe of the set of matching
//! rowids, which FTS5 lists from its index alone (2,876 of them in about a millisecond on the
//! scale-100 firm), where an unaligned row had to be read from the content table for its
//! `message_id` (6 ms for the same set). `lawfirm-pro backup` realigns its copy and
//! `lawfirm-pro recount` a live database, should rowids ever be renumbered. The rows are
//! rebuilt from `message` and `message_recipient`, as `m20261202_000010_message_search_audience`
//! built them; the delete trigger finds the row by rowid instead of scanning for its
//! `message_id`.
//! PostgreSQL is unchanged (the tsvectors are columns of `message`).

use super::exec_per_backend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const REBUILD: &[&str] = &[
    "DROP TRIGGER IF EXISTS message_fts_ad",
    "DROP TABLE IF EXISTS message_fts",
    "CREATE VIRTUAL TABLE message_fts USING fts5(body, audience, message_id UNINDEXED,
       tokenize='unicode61 remove_diacritics 2')",
    "INSERT INTO message_fts(rowid, body, audience, message_id)
       SELECT m.rowid, m.body,
              's' || lower(hex(m.sender_id)) || coalesce(' ' || (
                  SELECT group_concat('r' || lower(hex(r.user_id)), ' ')
                    FROM message_recipient r WHERE r.message_id = m.id), ''),
              m.id
         FROM message m",
    "CREATE TRIGGER message_fts_ad AFTER DELETE ON message BEGIN
       DELETE FROM message_fts WHERE rowid = old.rowid; END",
];

/// The aligned rows serve the older code as they are; only the trigger goes back.
const RESTORE: &[&str] = &[
    "DROP TRIGGER IF EXISTS message_fts_ad",
    "CREATE TRIGGER message_fts_ad AFTER DELETE ON message BEGIN
       DELETE FROM message_fts WHERE message_id = old.id; END",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction, so every statement runs on one connection (see
    /// `m20261202_000010_message_search_audience`) and the rebuild lands whole or not at all.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        exec_per_backend(m, REBUILD, &[]).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        exec_per_backend(m, RESTORE, &[]).await
    }
}
