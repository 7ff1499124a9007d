//! Message search and the inbox at scale, bounded by the reader's own messages.
//!
//! PostgreSQL: `message` gains `audience`, a tsvector of exact lexemes — `s<sender id hex>`
//! and `r<recipient id hex>` per recipient, the tokens SQLite's `message_fts` already holds —
//! and one GIN index over `(audience, search)`. A search asks for "this text" *and* "received
//! by me" in one index scan, so GIN intersects the two posting lists and only the reader's
//! matches are fetched and ranked. Before, the received box was read through the recipient
//! rows and each message's tsvector checked: 10,000 heap fetches for an attorney of the
//! scale-100 firm (93 ms). The multicolumn index also serves text-only conditions, so it
//! replaces `ix_message_search`. The column is written with the recipients
//! (`messages::search_index::add`), in the sending transaction.
//!
//! Both backends: the inbox and unread indexes also carry `case_id` and the columns of their
//! condition, so the page of a reader's received rows (filtered to their current cases) is
//! read from the index alone, before any message row is fetched. The unread view's planner
//! estimate of that filter is far off on PostgreSQL (38 of 2,004 rows at scale 100), and it
//! then joined every unread message before sorting; with the page taken from the index first,
//! a wrong estimate costs an index-only sort at worst. New names: on SQLite a pooled
//! connection may still hold the old schema and refuse to re-create a name just dropped.

use sea_orm::DbBackend;

use super::exec_all;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &[&str] = &[
    // A constant default: no table rewrite; every row is filled just below.
    "ALTER TABLE message ADD COLUMN audience tsvector NOT NULL DEFAULT ''::tsvector",
    "UPDATE message m SET audience = array_to_tsvector(
         ARRAY['s' || replace(m.sender_id::text, '-', '')] || coalesce((
             SELECT array_agg('r' || replace(r.user_id::text, '-', ''))
               FROM message_recipient r WHERE r.message_id = m.id), ARRAY[]::text[]))",
    "CREATE INDEX ix_message_search_audience ON message USING GIN (audience, search)",
    "DROP INDEX ix_message_search",
];

const POSTGRES_DOWN: &[&str] = &[
    "CREATE INDEX ix_message_search ON message USING GIN (search)",
    "DROP INDEX ix_message_search_audience",
    "ALTER TABLE message DROP COLUMN audience",
];

const BOTH_UP: &[&str] = &[
    "CREATE INDEX ix_message_recipient_inbox_page ON message_recipient
       (user_id, message_created_at, message_id, case_id, deleted_at) WHERE deleted_at IS NULL",
    "CREATE INDEX ix_message_recipient_unread_page ON message_recipient
       (user_id, message_created_at, message_id, case_id, deleted_at, read_at)
       WHERE deleted_at IS NULL AND read_at IS NULL",
    "DROP INDEX ix_message_recipient_inbox",
    "DROP INDEX ix_message_recipient_unread",
];

const BOTH_DOWN: &[&str] = &[
    "CREATE INDEX ix_message_recipient_inbox ON message_recipient
       (user_id, message_created_at, message_id) WHERE deleted_at IS NULL",
    "CREATE INDEX ix_message_recipient_unread ON message_recipient
       (user_id, message_created_at, message_id) WHERE deleted_at IS NULL AND read_at IS NULL",
    "DROP INDEX ix_message_recipient_inbox_page",
    "DROP INDEX ix_message_recipient_unread_page",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction on every backend: one connection sees every DDL statement (SQLite's
    /// per-connection schema cache), and the migration lands with its record or not at all.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() == DbBackend::Postgres {
            exec_all(m, POSTGRES_UP).await?;
        }
        exec_all(m, BOTH_UP).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        exec_all(m, BOTH_DOWN).await?;
        if m.get_database_backend() == DbBackend::Postgres {
            exec_all(m, POSTGRES_DOWN).await?;
        }
        Ok(())
    }
}
