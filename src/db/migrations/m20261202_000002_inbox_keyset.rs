//! The inbox in index order: each recipient row carries its message's `created_at`, so the
//! attorney-wide inbox (and its unread view) walks one index range of the recipient's rows,
//! newest first, and stops at the page limit instead of reading every message of every case.
//! Case numbers sort numerically by `(year, seq)` (the text sorts "2026-10000" before
//! "2026-9999"); both columns already exist, this adds the index for that order.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let conn = m.get_connection();
        let add = match m.get_database_backend() {
            // Nullable while backfilling, then required (no default: every writer sets it).
            DbBackend::Postgres => vec![
                "ALTER TABLE message_recipient ADD COLUMN message_created_at timestamptz",
                "UPDATE message_recipient SET message_created_at = message.created_at
                   FROM message WHERE message.id = message_recipient.message_id",
                "ALTER TABLE message_recipient ALTER COLUMN message_created_at SET NOT NULL",
            ],
            // SQLite cannot add NOT NULL later; the placeholder default is overwritten at once
            // by the backfill (same text format as message.created_at, copied verbatim).
            _ => vec![
                "ALTER TABLE message_recipient ADD COLUMN message_created_at
                   timestamp_with_timezone_text NOT NULL DEFAULT '1970-01-01T00:00:00+00:00'",
                "UPDATE message_recipient SET message_created_at =
                   (SELECT created_at FROM message WHERE message.id = message_recipient.message_id)",
            ],
        };
        for sql in add {
            conn.execute_unprepared(sql).await?;
        }
        // Partial indexes in the keyset order `(message_created_at, message_id)` newest first:
        // the visible inbox, and its unread part. The same SQL on both backends.
        for sql in [
            "CREATE INDEX ix_message_recipient_inbox ON message_recipient
               (user_id, message_created_at, message_id) WHERE deleted_at IS NULL",
            "CREATE INDEX ix_message_recipient_unread ON message_recipient
               (user_id, message_created_at, message_id) WHERE deleted_at IS NULL AND read_at IS NULL",
            "CREATE INDEX ix_legal_case_number_order ON legal_case (year, seq, id)",
        ] {
            conn.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
