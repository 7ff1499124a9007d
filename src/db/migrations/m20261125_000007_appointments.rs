//! Appointments: availability, busy blocks, appointments, the slot claims that make double
//! booking impossible (see docs/adr/0003-no-double-booking.md), calendar feeds, reminders.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Availability {
    Table,
    UserId,
    Timezone,
    Rules,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum BusyBlock {
    Table,
    Id,
    UserId,
    StartsAt,
    EndsAt,
    Reason,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Appointment {
    Table,
    Id,
    AttorneyId,
    ClientId,
    CaseId,
    StartsAt,
    EndsAt,
    Title,
    Location,
    Notes,
    Status,
    Sequence,
    ScheduledAt,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AppointmentClaim {
    Table,
    UserId,
    Bucket,
    AppointmentId,
}

#[derive(DeriveIden)]
enum CalendarFeed {
    Table,
    UserId,
    TokenHash,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AppointmentReminder {
    Table,
    AppointmentId,
    OffsetMinutes,
    CreatedAt,
}

#[derive(DeriveIden)]
enum MailOutbox {
    Table,
    Kind,
    Status,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // The admin outbox list filters by status or kind, newest first.
        for (name, col) in [
            ("ix_mail_outbox_status_created", MailOutbox::Status),
            ("ix_mail_outbox_kind_created", MailOutbox::Kind),
        ] {
            m.create_index(
                Index::create()
                    .name(name)
                    .table(MailOutbox::Table)
                    .col(col)
                    .col(MailOutbox::CreatedAt)
                    .to_owned(),
            )
            .await?;
        }
        m.create_table(
            Table::create()
                .table(Availability::Table)
                .col(uuid(Availability::UserId).primary_key())
                .col(string_len(Availability::Timezone, 64))
                // JSON array of {weekday,start,end}; validated by the service.
                .col(text(Availability::Rules))
                .col(timestamp_with_time_zone(Availability::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(BusyBlock::Table)
                .col(uuid(BusyBlock::Id).primary_key())
                .col(uuid(BusyBlock::UserId))
                .col(timestamp_with_time_zone(BusyBlock::StartsAt))
                .col(timestamp_with_time_zone(BusyBlock::EndsAt))
                .col(string_len_null(BusyBlock::Reason, 200))
                .col(uuid_null(BusyBlock::CreatedBy))
                .col(timestamp_with_time_zone(BusyBlock::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_busy_block_user_start")
                .table(BusyBlock::Table)
                .col(BusyBlock::UserId)
                .col(BusyBlock::StartsAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Appointment::Table)
                .col(uuid(Appointment::Id).primary_key())
                .col(uuid(Appointment::AttorneyId))
                .col(uuid_null(Appointment::ClientId))
                .col(uuid_null(Appointment::CaseId))
                .col(timestamp_with_time_zone(Appointment::StartsAt))
                .col(timestamp_with_time_zone(Appointment::EndsAt))
                .col(string_len(Appointment::Title, 300))
                .col(string_len_null(Appointment::Location, 300))
                .col(text_null(Appointment::Notes))
                .col(string_len(Appointment::Status, 16))
                .col(integer(Appointment::Sequence).default(0))
                // When the current time was chosen: reminders whose moment had already
                // passed then are not sent.
                .col(timestamp_with_time_zone(Appointment::ScheduledAt))
                .col(uuid_null(Appointment::CreatedBy))
                .col(timestamp_with_time_zone(Appointment::CreatedAt))
                .col(timestamp_with_time_zone(Appointment::UpdatedAt))
                .to_owned(),
        )
        .await?;
        for (name, col) in [
            ("ix_appointment_attorney_start", Appointment::AttorneyId),
            ("ix_appointment_client_start", Appointment::ClientId),
            ("ix_appointment_creator_start", Appointment::CreatedBy),
        ] {
            m.create_index(
                Index::create()
                    .name(name)
                    .table(Appointment::Table)
                    .col(col)
                    .col(Appointment::StartsAt)
                    .to_owned(),
            )
            .await?;
        }
        // The reminder scan and the dashboards: upcoming by start time.
        m.create_index(
            Index::create()
                .name("ix_appointment_start")
                .table(Appointment::Table)
                .col(Appointment::StartsAt)
                .col(Appointment::Status)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AppointmentClaim::Table)
                .col(uuid(AppointmentClaim::UserId))
                // Minutes since the Unix epoch / 5: one row per user per 5-minute bucket.
                .col(big_integer(AppointmentClaim::Bucket))
                .col(uuid(AppointmentClaim::AppointmentId))
                .primary_key(
                    Index::create()
                        .col(AppointmentClaim::UserId)
                        .col(AppointmentClaim::Bucket),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_appointment_claim_appointment")
                .table(AppointmentClaim::Table)
                .col(AppointmentClaim::AppointmentId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(CalendarFeed::Table)
                .col(uuid(CalendarFeed::UserId).primary_key())
                .col(string_len(CalendarFeed::TokenHash, 64).unique_key())
                .col(timestamp_with_time_zone(CalendarFeed::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AppointmentReminder::Table)
                .col(uuid(AppointmentReminder::AppointmentId))
                .col(integer(AppointmentReminder::OffsetMinutes))
                .col(timestamp_with_time_zone(AppointmentReminder::CreatedAt))
                .primary_key(
                    Index::create()
                        .col(AppointmentReminder::AppointmentId)
                        .col(AppointmentReminder::OffsetMinutes),
                )
                .to_owned(),
        )
        .await
    }
}
