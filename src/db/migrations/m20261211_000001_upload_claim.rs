//! An upload's registration can be claimed for removal (`claimed_at`) before its object is
//! removed, and is deleted only after: a version's transaction takes only unclaimed rows, so
//! it never adopts an object being removed, and a crash mid-removal leaves the row for the
//! sweeper (documents::upload::discard).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Alias::new("document_upload"))
                .add_column(timestamp_with_time_zone_null(Alias::new("claimed_at")))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Alias::new("document_upload"))
                .drop_column(Alias::new("claimed_at"))
                .to_owned(),
        )
        .await
    }
}
