//! The mail outbox: every email is a row written in the same transaction as the change that
//! causes it, then sent by a background worker (at-least-once, stable Message-ID).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MailOutbox {
    Table,
    Id,
    Kind,
    ToAddress,
    ToUserId,
    Subject,
    BodyText,
    Attachments,
    Status,
    Attempts,
    NextAttemptAt,
    LockedUntil,
    LastError,
    CreatedAt,
    SentAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(MailOutbox::Table)
                .col(uuid(MailOutbox::Id).primary_key())
                .col(string_len(MailOutbox::Kind, 40))
                .col(string_len(MailOutbox::ToAddress, 320))
                .col(uuid_null(MailOutbox::ToUserId))
                .col(string_len(MailOutbox::Subject, 300))
                .col(text(MailOutbox::BodyText))
                // JSON array of {filename, content_type, data_base64}; small parts only (.ics).
                .col(text_null(MailOutbox::Attachments))
                .col(string_len(MailOutbox::Status, 16))
                .col(integer(MailOutbox::Attempts).default(0))
                .col(timestamp_with_time_zone(MailOutbox::NextAttemptAt))
                .col(timestamp_with_time_zone_null(MailOutbox::LockedUntil))
                .col(text_null(MailOutbox::LastError))
                .col(timestamp_with_time_zone(MailOutbox::CreatedAt))
                .col(timestamp_with_time_zone_null(MailOutbox::SentAt))
                .to_owned(),
        )
        .await?;
        // The worker's scan: pending mail due now, oldest first.
        m.create_index(
            Index::create()
                .name("ix_mail_outbox_due")
                .table(MailOutbox::Table)
                .col(MailOutbox::Status)
                .col(MailOutbox::NextAttemptAt)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_mail_outbox_created")
                .table(MailOutbox::Table)
                .col(MailOutbox::CreatedAt)
                .col(MailOutbox::Id)
                .to_owned(),
        )
        .await
    }
}
