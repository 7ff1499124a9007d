//! SQLite message search narrowed to the caller inside the full-text index.
//!
//! `message_fts` gains an `audience` column: an `s<user id hex>` token for the sender and an
//! `r<user id hex>` token for each recipient. A search matches the body *and* the caller's
//! token for the box searched, so FTS5 intersects the two doclists and ranks only messages
//! the caller received (or sent); before, every firm-wide match was ranked and then filtered,
//! which grows with the firm rather than with the caller.
//! Recipients are written after their message, so the row is no longer filled by a trigger on
//! `message`: the service writes it once the recipients are known (`messages::search_index`).
//! PostgreSQL is unchanged (its tsvector is a generated column; the query joins the recipient
//! row instead).

use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Ids are 16-byte BLOBs, so a token is `s` or `r` and 32 lower-case hex digits, as
/// `messages::search_index` writes them.
const REBUILD: &[&str] = &[
    "DROP TRIGGER IF EXISTS message_fts_ai",
    "DROP TRIGGER IF EXISTS message_fts_ad",
    "DROP TABLE IF EXISTS message_fts",
    "CREATE VIRTUAL TABLE message_fts USING fts5(body, audience, message_id UNINDEXED,
       tokenize='unicode61 remove_diacritics 2')",
    "INSERT INTO message_fts(body, audience, message_id)
       SELECT m.body,
              's' || lower(hex(m.sender_id)) || coalesce(' ' || (
                  SELECT group_concat('r' || lower(hex(r.user_id)), ' ')
                    FROM message_recipient r WHERE r.message_id = m.id), ''),
              m.id
         FROM message m",
    "CREATE TRIGGER message_fts_ad AFTER DELETE ON message BEGIN
       DELETE FROM message_fts WHERE message_id = old.id; END",
];

const RESTORE: &[&str] = &[
    "DROP TRIGGER IF EXISTS message_fts_ad",
    "DROP TABLE IF EXISTS message_fts",
    "CREATE VIRTUAL TABLE message_fts USING fts5(body, message_id UNINDEXED,
       tokenize='unicode61 remove_diacritics 2')",
    "INSERT INTO message_fts(body, message_id) SELECT body, id FROM message",
    "CREATE TRIGGER message_fts_ai AFTER INSERT ON message BEGIN
       INSERT INTO message_fts(body, message_id) VALUES (new.body, new.id); END",
    "CREATE TRIGGER message_fts_ad AFTER DELETE ON message BEGIN
       DELETE FROM message_fts WHERE message_id = old.id; END",
];

async fn run(m: &SchemaManager<'_>, sql: &[&str]) -> Result<(), DbErr> {
    if m.get_database_backend() != DbBackend::Sqlite {
        return Ok(());
    }
    let conn = m.get_connection();
    for s in sql {
        conn.execute_unprepared(s).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction on every backend, so every statement runs on one connection: SQLite
    /// checks a DDL name against the connection's cached schema, and a pooled connection that
    /// had not yet seen a `DROP` refused the `CREATE` of the same name ("already exists",
    /// intermittently in CI). The migration and its record also land together or not at all.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        run(m, REBUILD).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        run(m, RESTORE).await
    }
}
