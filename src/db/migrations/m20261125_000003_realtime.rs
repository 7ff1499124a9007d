//! Single-use tickets that authenticate a WebSocket upgrade without a token in the URL.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WsTicket {
    Table,
    TokenHash,
    UserId,
    SessionId,
    ExpiresAt,
    UsedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(WsTicket::Table)
                .col(string_len(WsTicket::TokenHash, 64).primary_key())
                .col(uuid(WsTicket::UserId))
                .col(uuid(WsTicket::SessionId))
                .col(timestamp_with_time_zone(WsTicket::ExpiresAt))
                .col(timestamp_with_time_zone_null(WsTicket::UsedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_ws_ticket_expires")
                .table(WsTicket::Table)
                .col(WsTicket::ExpiresAt)
                .to_owned(),
        )
        .await
    }
}
