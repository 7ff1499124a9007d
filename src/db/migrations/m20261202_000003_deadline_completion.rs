//! Deadlines can be marked done (and reopened): who and when. Done deadlines drop out of
//! a case's `next_deadline` and the upcoming-deadline lists but stay in the case's list.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn a(name: &'static str) -> Alias {
    Alias::new(name)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        m.alter_table(
            Table::alter()
                .table(a("case_deadline"))
                .add_column(timestamp_with_time_zone_null(a("completed_at")))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(a("case_deadline"))
                .add_column(uuid_null(a("completed_by")))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in ["completed_by", "completed_at"] {
            m.alter_table(
                Table::alter()
                    .table(a("case_deadline"))
                    .drop_column(a(col))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
