//! SQLite: how far each audit spool file has been moved onto the chain (ADR 0008). Written
//! in the same transaction as the moved entries, so a crash never chains an entry twice.
//! PostgreSQL has no spool.

use super::exec_per_backend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &["CREATE TABLE audit_spool (
       spool_id TEXT PRIMARY KEY NOT NULL,
       moved_seq INTEGER NOT NULL
     )"];

const DOWN: &[&str] = &["DROP TABLE IF EXISTS audit_spool"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        exec_per_backend(m, UP, &[]).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        exec_per_backend(m, DOWN, &[]).await
    }
}
