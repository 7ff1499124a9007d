//! Secure messaging: messages of a case, per-recipient state (delivered, read, hidden),
//! attachments (document ids), mail-notice coalescing, and full text over bodies
//! (FTS5 on SQLite, tsvector + GIN on PostgreSQL). Rows are never deleted: hiding is per person.

use sea_orm_migration::{prelude::*, schema::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Message {
    Table,
    Id,
    CaseId,
    SenderId,
    SenderRole,
    ParentId,
    Body,
    CreatedAt,
    SenderDeletedAt,
}

#[derive(DeriveIden)]
enum MessageRecipient {
    Table,
    MessageId,
    UserId,
    CaseId,
    DeliveredAt,
    ReadAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum MessageAttachment {
    Table,
    MessageId,
    DocumentId,
}

#[derive(DeriveIden)]
enum MessageMailNotice {
    Table,
    UserId,
    CaseId,
    LastSentAt,
}

#[derive(DeriveIden)]
enum LegalCase {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum AppUser {
    Table,
    Id,
}

fn idx(name: &str, table: impl IntoIden + 'static, cols: &[&'static str]) -> IndexCreateStatement {
    let mut i = Index::create();
    i.name(name).table(table);
    for c in cols {
        i.col(Alias::new(*c));
    }
    i.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Message::Table)
                .col(uuid(Message::Id).primary_key())
                .col(uuid(Message::CaseId))
                .col(uuid(Message::SenderId))
                // The sender's role on the case when sending (response-time statistics).
                .col(string_len(Message::SenderRole, 16))
                .col(uuid_null(Message::ParentId))
                .col(text(Message::Body))
                .col(timestamp_with_time_zone(Message::CreatedAt))
                .col(timestamp_with_time_zone_null(Message::SenderDeletedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_message_case")
                        .from(Message::Table, Message::CaseId)
                        .to(LegalCase::Table, LegalCase::Id),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_message_sender")
                        .from(Message::Table, Message::SenderId)
                        .to(AppUser::Table, AppUser::Id),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_message_parent")
                        .from(Message::Table, Message::ParentId)
                        .to(Message::Table, Message::Id),
                )
                .to_owned(),
        )
        .await?;
        // Case threads newest first; the sender's box and the send rate window; replies.
        m.create_index(idx(
            "ix_message_case_created",
            Message::Table,
            &["case_id", "created_at", "id"],
        ))
        .await?;
        m.create_index(idx(
            "ix_message_sender_created",
            Message::Table,
            &["sender_id", "created_at", "id"],
        ))
        .await?;
        m.create_index(idx("ix_message_parent", Message::Table, &["parent_id"]))
            .await?;

        m.create_table(
            Table::create()
                .table(MessageRecipient::Table)
                .col(uuid(MessageRecipient::MessageId))
                .col(uuid(MessageRecipient::UserId))
                // Copied from the message so unread counts per case need no join.
                .col(uuid(MessageRecipient::CaseId))
                .col(timestamp_with_time_zone(MessageRecipient::DeliveredAt))
                .col(timestamp_with_time_zone_null(MessageRecipient::ReadAt))
                .col(timestamp_with_time_zone_null(MessageRecipient::DeletedAt))
                .primary_key(
                    Index::create()
                        .col(MessageRecipient::MessageId)
                        .col(MessageRecipient::UserId),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_message_recipient_message")
                        .from(MessageRecipient::Table, MessageRecipient::MessageId)
                        .to(Message::Table, Message::Id),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_message_recipient_user")
                        .from(MessageRecipient::Table, MessageRecipient::UserId)
                        .to(AppUser::Table, AppUser::Id),
                )
                .to_owned(),
        )
        .await?;
        // The inbox and unread counts: by user, then state, then case.
        m.create_index(idx(
            "ix_message_recipient_user",
            MessageRecipient::Table,
            &["user_id", "deleted_at", "read_at", "case_id"],
        ))
        .await?;
        m.create_index(idx(
            "ix_message_recipient_user_message",
            MessageRecipient::Table,
            &["user_id", "message_id"],
        ))
        .await?;

        // No foreign key to documents: that capability lands separately; the service checks.
        m.create_table(
            Table::create()
                .table(MessageAttachment::Table)
                .col(uuid(MessageAttachment::MessageId))
                .col(uuid(MessageAttachment::DocumentId))
                .primary_key(
                    Index::create()
                        .col(MessageAttachment::MessageId)
                        .col(MessageAttachment::DocumentId),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_message_attachment_message")
                        .from(MessageAttachment::Table, MessageAttachment::MessageId)
                        .to(Message::Table, Message::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(idx(
            "ix_message_attachment_document",
            MessageAttachment::Table,
            &["document_id"],
        ))
        .await?;

        // When a recipient was last mailed about new messages in a case (coalescing).
        m.create_table(
            Table::create()
                .table(MessageMailNotice::Table)
                .col(uuid(MessageMailNotice::UserId))
                .col(uuid(MessageMailNotice::CaseId))
                .col(timestamp_with_time_zone(MessageMailNotice::LastSentAt))
                .primary_key(
                    Index::create()
                        .col(MessageMailNotice::UserId)
                        .col(MessageMailNotice::CaseId),
                )
                .to_owned(),
        )
        .await?;

        let conn = m.get_connection();
        match m.get_database_backend() {
            DbBackend::Postgres => {
                conn.execute_unprepared(
                    "ALTER TABLE message ADD COLUMN search tsvector
                       GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED;
                     CREATE INDEX ix_message_search ON message USING GIN (search);",
                )
                .await?;
            }
            _ => {
                // The index keeps its own copy keyed by message id, not by rowid: SQLite may
                // renumber the rowids of a table without an INTEGER PRIMARY KEY (VACUUM, VACUUM
                // INTO for backups), which would silently detach an external-content index.
                for sql in [
                    "CREATE VIRTUAL TABLE message_fts USING fts5(body, message_id UNINDEXED,
                       tokenize='unicode61 remove_diacritics 2')",
                    "CREATE TRIGGER message_fts_ai AFTER INSERT ON message BEGIN
                       INSERT INTO message_fts(body, message_id) VALUES (new.body, new.id); END",
                    "CREATE TRIGGER message_fts_ad AFTER DELETE ON message BEGIN
                       DELETE FROM message_fts WHERE message_id = old.id; END",
                ] {
                    conn.execute_unprepared(sql).await?;
                }
            }
        }
        Ok(())
    }
}
